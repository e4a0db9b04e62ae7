//! `hashrig selftest` and `hashrig devices` run as a real binary.

use assert_cmd::Command;

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

#[test]
fn selftest_passes_on_every_cpu_kernel() {
    let out = hashrig().args(["selftest", "--threads", "2"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for k in hashrig_sha256d::Kernel::available() {
        assert!(stdout.contains(&format!("ok    cpu [{k}]")), "{k}: {stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn devices_lists_the_cpu_kernels_and_the_other_sections() {
    let out = hashrig().arg("devices").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    for k in ["scalar", "avx2", "sha-ni", "sha-ni-sse"] {
        assert!(stdout.contains(&format!("kernel {k} ")), "{stdout}");
    }
    assert!(stdout.contains("(default)"), "{stdout}");
    for section in ["GPU adapters:", "Serial ports:", "Power sources:"] {
        assert!(stdout.contains(section), "{stdout}");
    }
}

#[test]
fn unknown_subcommands_and_flags_exit_2() {
    assert_eq!(hashrig().arg("frobnicate").output().unwrap().status.code(), Some(2));
    assert_eq!(hashrig().args(["bench", "--turbo"]).output().unwrap().status.code(), Some(2));
    assert_eq!(hashrig().args(["selftest", "--backend", "cpu:9"]).output().unwrap().status.code(), Some(2));
    assert_eq!(hashrig().arg("--help").output().unwrap().status.code(), Some(0));
}

#[test]
fn devices_shows_kernels_masked_off_by_hashrig_cpu_disable() {
    let out = hashrig().env("HASHRIG_CPU_DISABLE", "sha-ni,avx2").arg("devices").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("HASHRIG_CPU_DISABLE masks off: sha, avx2"), "{stdout}");
    assert!(stdout.contains("kernel scalar     available (default)"), "{stdout}");
    for k in ["avx2", "sha-ni", "sha-ni-sse"] {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(&format!("kernel {k} "))).unwrap_or_else(|| panic!("{k}: {stdout}"));
        assert!(!line.contains("available"), "{line}");
    }
    let out = hashrig().env("HASHRIG_CPU_DISABLE", "mmx").arg("devices").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown CPU feature `mmx`"));
}
