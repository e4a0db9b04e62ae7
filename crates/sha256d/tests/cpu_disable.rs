//! `HASHRIG_CPU_DISABLE` masks CPU features off at detection time, so the fallbacks and the
//! "kernel this CPU lacks" error run on a CPU that has every kernel.
//!
//! The mask is read once per process, so each masked case runs this test binary again as a
//! child (`child_reports_detection`, ignored when run directly) with the variable set, and the
//! parent checks what the child reports.

use std::collections::BTreeMap;
use std::process::Command;

use hashrig_sha256d::{CPU_DISABLE_ENV, CpuFeature, Error, KERNEL_ENV, Kernel, ScanJob, Scanner, Target, parse_cpu_disable};

/// What the child saw: `best`, `available`, and for each kernel `ok` or the error message of
/// `Scanner::new`; `from_env` for `HASHRIG_KERNEL=sha-ni`.
fn run_child(mask: &str) -> BTreeMap<String, String> {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // Under emulation (CI's aarch64 run under qemu-user) the child must go through the same
    // runner: HASHRIG_TEST_RUNNER is that command line, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu".
    let runner = std::env::var("HASHRIG_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = cmd
        .args(["--exact", "child_reports_detection", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CPU_DISABLE_ENV, mask)
        .env(KERNEL_ENV, "sha-ni")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child with {CPU_DISABLE_ENV}={mask:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: BTreeMap<String, String> = stdout
        .lines()
        // libtest may print "test child_reports_detection ... " on the first line.
        .filter_map(|l| l.split_once("REPORT ").map(|(_, r)| r))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(report.contains_key("best"), "the child printed no report: {stdout}");
    report
}

#[test]
#[ignore = "run by the other tests of this file in a child process with HASHRIG_CPU_DISABLE set"]
fn child_reports_detection() {
    let best = Kernel::best();
    println!("REPORT best={best}");
    println!("REPORT available={}", Kernel::available().iter().map(|k| k.name()).collect::<Vec<_>>().join(", "));
    for k in Kernel::ALL {
        let r = match Scanner::new(k) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        println!("REPORT {k}={r}");
    }
    let from_env = match Scanner::from_env() {
        Ok(s) => format!("ok {}", s.kernel()),
        Err(e) => e.to_string(),
    };
    println!("REPORT from_env={from_env}");
    // The fallback kernel really scans: block 125552's nonce, against the portable digest.
    let header: [u8; 80] = hex::decode(
        "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695",
    )
    .expect("hex")
    .try_into()
    .expect("80 bytes");
    let job = ScanJob::new(&header);
    // The block's own target (nbits 0x1a44b9f2).
    let target: [u8; 32] = hex::decode("00000000000044b9f20000000000000000000000000000000000000000000000")
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let target = Target::from_be_bytes(target);
    let mut found = Vec::new();
    let range = hashrig_sha256d::NonceRange::new(2_504_433_986 - 100, 200).expect("valid");
    let hashes = Scanner::best().scan(&job, range, &target, &mut found);
    println!("REPORT scan={hashes} {found:?}");
}

fn hw(f: CpuFeature) -> bool {
    f.in_hardware()
}

/// The kernels a child with `mask` must report, best first (ignoring the SHA-NI / avx512 race),
/// worked out here from the hardware and the documented rule that masking a feature masks
/// those built on it.
fn expected_available(mask: &str) -> Vec<&'static str> {
    let masked = parse_cpu_disable(mask).expect("test masks parse");
    let usable = |f: CpuFeature| {
        let mut x = Some(f);
        while let Some(y) = x {
            if masked.contains(&y) {
                return false;
            }
            x = y.builds_on();
        }
        f.in_hardware()
    };
    Kernel::ALL.into_iter().filter(|k| k.needs().iter().all(|f| usable(*f))).map(|k| k.name()).collect()
}

fn assert_refused(report: &BTreeMap<String, String>, kernel: &str, mask: &str) {
    let msg = &report[kernel];
    assert!(msg.starts_with(&format!("kernel `{kernel}` is not supported by this CPU (available: ")), "{kernel} with {mask}: {msg}");
    assert!(msg.contains(&format!("available: {}", report["available"])), "the error lists the available kernels: {msg}");
    assert!(msg.contains(CPU_DISABLE_ENV), "the error says the mask is why: {msg}");
}

#[test]
fn masking_sha_ni_falls_back_to_avx2_and_forcing_sha_ni_is_an_error() {
    let r = run_child("sha-ni");
    let avx512 = hw(CpuFeature::Avx512f) && hw(CpuFeature::Avx512bw) && hw(CpuFeature::Avx2);
    let expected = expected_available("sha-ni");
    assert_eq!(r["available"], expected.join(", "), "{r:?}");
    let want = expected[0];
    assert_eq!(r["best"], want, "{r:?}");
    assert!(!r["available"].contains("sha-ni"), "{r:?}");
    assert_refused(&r, "sha-ni", "sha-ni");
    assert_refused(&r, "sha-ni-sse", "sha-ni");
    assert_eq!(r["scalar"], "ok");
    assert_eq!(r["avx2"] == "ok", hw(CpuFeature::Avx2) && hw(CpuFeature::Avx), "{r:?}");
    assert_eq!(r["avx512"] == "ok", avx512, "{r:?}");
    assert_eq!(r["from_env"], r["sha-ni"], "HASHRIG_KERNEL=sha-ni gets the same error");
    assert_eq!(r["scan"], "200 [2504433986]", "the fallback kernel finds block 125552's nonce");
}

#[test]
fn masking_sha_ni_and_avx2_falls_back_to_scalar() {
    let r = run_child("sha-ni,avx2");
    let expected = expected_available("sha-ni,avx2");
    assert!(expected == ["scalar"] || expected == ["arm-sha2", "scalar"], "no x86 SIMD kernel is left: {expected:?}");
    assert_eq!(r["best"], expected[0], "{r:?}");
    assert_eq!(r["available"], expected.join(", "));
    for k in ["sha-ni", "sha-ni-sse", "avx2"] {
        assert_refused(&r, k, "sha-ni,avx2");
    }
    assert!(r["avx2"].ends_with("masks off sha, avx2)"), "{}", r["avx2"]);
    assert_eq!(r["scalar"], "ok");
    assert_eq!(r["scan"], "200 [2504433986]");
}

#[test]
fn masking_avx_takes_the_vex_kernels_and_leaves_sha_ni_sse() {
    let r = run_child(" AVX ");
    let want = expected_available(" AVX ")[0];
    assert!(["sha-ni-sse", "arm-sha2", "scalar"].contains(&want), "{want}");
    assert_eq!(r["best"], want, "{r:?}");
    assert_refused(&r, "sha-ni", "avx");
    assert_refused(&r, "avx2", "avx");
    assert_refused(&r, "avx512", "avx");
    assert_refused(&r, "sha-ni-avx512", "avx");
}

#[test]
fn masking_avx512vl_takes_the_wide_sha_ni_kernel_and_leaves_the_vex_one() {
    let r = run_child("avx512vl");
    assert_refused(&r, "sha-ni-avx512", "avx512vl");
    assert!(!r["available"].contains("sha-ni-avx512"), "{r:?}");
    if hw(CpuFeature::Sha) && hw(CpuFeature::Avx) {
        // sha-ni is first; avx512 (which does not need VL) may win the race against it.
        assert!(["sha-ni", "avx512"].contains(&r["best"].as_str()), "{r:?}");
        assert_eq!(r["from_env"], "ok sha-ni");
    }
    assert_eq!(r["scan"], "200 [2504433986]");
}

#[test]
fn masking_avx2_masks_the_avx512_features_that_build_on_it() {
    use CpuFeature::*;
    assert_eq!(Avx512vl.builds_on(), Some(Avx512f));
    assert_eq!(Avx512bw.builds_on(), Some(Avx512f));
    assert_eq!(Avx512f.builds_on(), Some(Avx2));
    assert_eq!(Avx2.builds_on(), Some(Avx));
    let r = run_child("avx2");
    assert_refused(&r, "sha-ni-avx512", "avx2");
    assert_refused(&r, "avx2", "avx2");
    assert_refused(&r, "avx512", "avx2");
    if hw(CpuFeature::Sha) && hw(CpuFeature::Avx) {
        assert_eq!(r["best"], "sha-ni", "{r:?}");
    }
}

#[test]
fn masking_sha2_takes_the_arm_kernel() {
    let r = run_child("sha2");
    assert_refused(&r, "arm-sha2", "sha2");
    assert_eq!(r["available"], expected_available("sha2").join(", "), "{r:?}");
    assert_eq!(r["scan"], "200 [2504433986]");
}

#[test]
fn an_unknown_feature_in_the_mask_is_an_error_and_masks_everything() {
    let r = run_child("sha-ni,neon");
    let want = Error::UnknownCpuFeature("neon".to_owned()).to_string();
    assert!(want.contains(CPU_DISABLE_ENV) && want.contains("neon"), "{want}");
    for k in Kernel::ALL {
        assert_eq!(r[k.name()], want, "{k}: even scalar is refused until the mask is fixed");
    }
    assert_eq!(r["best"], "scalar");
    assert_eq!(r["available"], "scalar");
}

#[test]
fn an_empty_mask_changes_nothing() {
    let r = run_child("");
    let hardware: Vec<&str> = Kernel::ALL.into_iter().filter(|k| k.needs().iter().all(|f| f.in_hardware())).map(|k| k.name()).collect();
    assert_eq!(r["available"], hardware.join(", "));
    assert!(r["best"] == hardware[0] || (r["best"] == "avx512" && hardware[0].starts_with("sha-ni")), "{r:?}");
}

#[test]
fn mask_values_parse_with_aliases_separators_and_any_case() {
    use CpuFeature::*;
    assert_eq!(parse_cpu_disable(""), Ok(vec![]));
    assert_eq!(parse_cpu_disable(" , "), Ok(vec![]));
    assert_eq!(parse_cpu_disable("sha-ni,avx2"), Ok(vec![Sha, Avx2]));
    assert_eq!(parse_cpu_disable("AVX2 sha_ni shani sha"), Ok(vec![Sha, Avx2]), "sorted, deduplicated");
    assert_eq!(parse_cpu_disable("sse4.1,ssse3,avx"), Ok(vec![Ssse3, Sse41, Avx]));
    assert_eq!(parse_cpu_disable("avx2,avx1024"), Err(Error::UnknownCpuFeature("avx1024".to_owned())));
    assert_eq!(parse_cpu_disable("AVX-512VL avx512 avx512bw"), Ok(vec![Avx512f, Avx512vl, Avx512bw]));
    for f in CpuFeature::ALL {
        assert_eq!(f.name().parse::<CpuFeature>(), Ok(f));
    }
}
