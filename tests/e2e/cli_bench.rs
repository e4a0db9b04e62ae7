//! `hashrig bench` run as a real binary.

use assert_cmd::Command;
use hashrig_sha256d::{CpuFeature, Kernel};
use serde_json::Value;

/// Every kernel name the CLI takes.
const KERNELS: [&str; 7] = ["scalar", "avx2", "sha-ni", "sha-ni-sse", "sha-ni-avx512", "avx512", "arm-sha2"];

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

fn bench_json(extra: &[&str]) -> Value {
    let out = hashrig().args(["bench", "--duration", "1", "--threads", "1", "--json"]).args(extra).output().unwrap();
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

#[test]
fn bench_json_reports_counted_hashrate_declared_power_and_j_per_th() {
    let v = bench_json(&["--watts", "50"]);
    for field in ["backend", "kernel", "threads", "hashes", "seconds", "hashrate", "hashrate_ci95", "power_w", "power_source", "j_per_th", "hw_errors"] {
        assert!(v.get(field).is_some(), "missing field {field}: {v}");
    }
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["threads"], 1);
    assert_eq!(v["kernel"], Kernel::best().name(), "without --kernel the best this CPU has");
    let hashes = v["hashes"].as_u64().unwrap();
    let seconds = v["seconds"].as_f64().unwrap();
    let rate = v["hashrate"].as_f64().unwrap();
    assert!(hashes > 100_000, "only {hashes} hashes in a second");
    assert!((0.9..5.0).contains(&seconds), "{seconds} s for a 1 s bench");
    assert!((rate - hashes as f64 / seconds).abs() / rate < 0.01, "hashrate {rate} vs {hashes}/{seconds}");
    assert!(v["hashrate_ci95"].is_null(), "the CPU count is exact: no interval");
    assert!((v["power_w"].as_f64().unwrap() - 50.0).abs() < 1e-6, "{}", v["power_w"]);
    assert_eq!(v["power_source"], "declared: 50 W (--watts)");
    let j_per_th = v["j_per_th"].as_f64().unwrap();
    assert!((j_per_th - 50.0 / (rate / 1e12)).abs() / j_per_th < 1e-9);
    assert_eq!(v["hw_errors"], 0);
}

#[test]
fn bench_economics_follow_from_hashrate_power_and_prices() {
    let v = bench_json(&["--power-cmd", "echo 40 W", "--power-price", "0.10", "--btc-price", "100000", "--difficulty", "1e14"]);
    assert_eq!(v["power_source"], "command: echo 40 W");
    assert!((v["power_w"].as_f64().unwrap() - 40.0).abs() < 1e-9);
    let e = &v["economics"];
    let rate = v["hashrate"].as_f64().unwrap();
    let revenue = rate * 86_400.0 / (1e14 * 4_294_967_296.0) * 3.125 * 100_000.0;
    assert!((e["revenue_usd_day"].as_f64().unwrap() / revenue - 1.0).abs() < 1e-9, "{e}");
    // 40 W all day is 0.96 kWh: 9.6 cents.
    assert!((e["cost_usd_day"].as_f64().unwrap() - 0.096).abs() < 1e-9, "{e}");
    assert!((e["break_even_usd_kwh"].as_f64().unwrap() - revenue / 0.96).abs() / (revenue / 0.96) < 1e-9);
    assert!(e["hashprice_usd_ph_day"].as_f64().unwrap() > 0.0);
    assert_eq!(e["subsidy_btc"], 3.125);
}

#[test]
fn bench_piped_prints_a_summary_and_nothing_animated() {
    let out = hashrig().args(["bench", "--duration", "1", "--threads", "1"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("hashrate") && stdout.contains("H/s"), "{stdout}");
    assert!(stdout.contains("power"), "{stdout}");
    assert!(!stdout.contains('\r') && !stderr.contains('\r'), "carriage returns when piped");
    assert!(!stderr.contains("\x1b["), "terminal escapes when piped");
}

#[test]
fn bench_bad_input_exits_2_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["--duration", "0"], "--duration"),
        (&["--kernel", "neon9"], "unknown kernel"),
        (&["--backend", "fpga"], "unknown backend"),
        (&["--threads", "0"], "--threads"),
        (&["--backend", "gpu", "--kernel", "scalar"], "apply to the cpu backend"),
        (&["--power-price", "0.1", "--btc-price", "90000"], "--difficulty"),
        (&["--power-price", "0.1"], "--btc-price"),
        (&["--watts=-5"], "--watts"),
    ];
    for (args, why) in cases {
        let out = hashrig().arg("bench").args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: expected {why:?} in {stderr}");
    }
}

#[test]
fn the_emulated_asic_chain_benches_with_an_estimated_rate_and_its_interval() {
    let out = hashrig().args(["bench", "--duration", "1", "--backend", "emu:bm1370x4", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "emu:bm1370x4");
    assert_eq!(v["kernel"], "bm1370");
    assert!(v["threads"].is_null(), "threads are a CPU figure: {}", v["threads"]);
    assert!(v["hashes"].as_u64().unwrap() > 0, "{v}");
    let rate = v["hashrate"].as_f64().unwrap();
    let ci = v["hashrate_ci95"].as_array().expect("an ASIC's rate is estimated from nonces: it has an interval");
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(lo <= rate && rate <= hi && lo < hi, "{lo} <= {rate} <= {hi}");
    assert_eq!(v["hw_errors"], 0);
}

#[test]
fn hashrig_kernel_environment_variable_picks_the_kernel_and_bad_names_exit_2() {
    let out = hashrig().env("HASHRIG_KERNEL", "scalar").args(["bench", "--duration", "0.5", "--threads", "1", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kernel"], "scalar");
    let out = hashrig().env("HASHRIG_KERNEL", "neon9").args(["bench", "--duration", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HASHRIG_KERNEL"));
}

#[test]
fn every_kernel_runs_when_the_cpu_has_it_and_exits_2_listing_the_others_when_not() {
    assert_eq!(Kernel::ALL.len(), KERNELS.len(), "a kernel was added: name it here");
    for name in KERNELS {
        let kernel: Kernel = name.parse().unwrap();
        let out = hashrig().args(["bench", "--duration", "0.3", "--threads", "1", "--json", "--kernel", name]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if kernel.is_available() {
            assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["kernel"], name);
            assert!(v["hashes"].as_u64().unwrap() > 0, "{name}: {v}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
            assert!(stderr.contains("not supported by this CPU (available: "), "{name}: {stderr}");
        }
    }
}

/// `hashrig bench` with `HASHRIG_CPU_DISABLE` set (and `HASHRIG_KERNEL` unset).
fn masked_bench(mask: &str, args: &[&str]) -> std::process::Output {
    hashrig()
        .env("HASHRIG_CPU_DISABLE", mask)
        .env_remove("HASHRIG_KERNEL")
        .args(["bench", "--duration", "0.3", "--threads", "1", "--json"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn forcing_a_kernel_the_cpu_lacks_exits_2_and_lists_the_available_kernels() {
    // HASHRIG_CPU_DISABLE makes this CPU lack SHA-NI and AVX2, whatever it really has.
    for name in ["sha-ni", "sha-ni-sse", "avx2"] {
        let out = masked_bench("sha-ni,avx2", &["--kernel", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: no report on bad input");
        assert!(
            stderr.contains(&format!("kernel `{name}` is not supported by this CPU (available: scalar; HASHRIG_CPU_DISABLE masks off sha, avx2)")),
            "{name}: {stderr}"
        );
    }
    // The same through HASHRIG_KERNEL.
    let out = hashrig().env("HASHRIG_CPU_DISABLE", "avx2").env("HASHRIG_KERNEL", "avx2").args(["bench", "--duration", "0.3"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HASHRIG_KERNEL: kernel `avx2` is not supported by this CPU (available: "), "{stderr}");
    assert!(!stderr.contains("available: avx2"), "{stderr}");
}

#[test]
fn auto_detection_falls_back_to_avx512_or_avx2_without_sha_ni_and_to_scalar_without_both() {
    let avx2 = CpuFeature::Avx2.in_hardware() && CpuFeature::Avx.in_hardware();
    let avx512 = avx2 && CpuFeature::Avx512f.in_hardware() && CpuFeature::Avx512bw.in_hardware();
    let without_sha = if avx512 {
        "avx512"
    } else if avx2 {
        "avx2"
    } else {
        "scalar"
    };
    for (mask, want) in [("sha-ni", without_sha), ("sha-ni,avx2", "scalar")] {
        let out = masked_bench(mask, &[]);
        assert_eq!(out.status.code(), Some(0), "{mask}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kernel"], want, "HASHRIG_CPU_DISABLE={mask}");
        assert!(v["hashes"].as_u64().unwrap() > 0);
        assert_eq!(v["hw_errors"], 0);
    }
}

#[test]
fn an_unknown_feature_in_hashrig_cpu_disable_exits_2() {
    let out = masked_bench("sha-ni,neon", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HASHRIG_CPU_DISABLE: unknown CPU feature `neon`"), "{stderr}");
}

/// `hashrig bench --json` with the sysfs power roots pointed at an empty directory, so the
/// machine's own counters (RAPL, hwmon) cannot be found.
fn bench_json_without_power_counters(extra: &[&str]) -> (Value, String) {
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().to_str().unwrap().to_owned();
    let out = hashrig()
        .env("HASHRIG_POWERCAP_ROOT", &root)
        .env("HASHRIG_HWMON_ROOT", &root)
        .args(["bench", "--duration", "1", "--threads", "1", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("one JSON object"), root)
}

#[test]
fn without_a_power_source_power_and_j_per_th_are_unknown_never_guessed() {
    let (v, root) = bench_json_without_power_counters(&[]);
    assert_eq!(v["power_source"], "unknown");
    assert!(v["power_w"].is_null(), "{}", v["power_w"]);
    assert!(v["energy_j"].is_null(), "{}", v["energy_j"]);
    assert!(v["j_per_th"].is_null(), "{}", v["j_per_th"]);
    // The notes say where it looked: the overridden roots, so the override took effect.
    let notes = v["power_notes"].to_string();
    assert!(notes.contains(&format!("rapl: no readable zones under {root}")), "{notes}");
    assert!(notes.contains(&format!("hwmon: no energy counters under {root}")), "{notes}");
    assert!(v["hashes"].as_u64().unwrap() > 0);
}

#[test]
fn declared_watts_give_j_per_th_from_the_hashes_and_seconds() {
    let (v, _) = bench_json_without_power_counters(&["--watts", "30"]);
    assert_eq!(v["power_source"], "declared: 30 W (--watts)");
    let watts = v["power_w"].as_f64().unwrap();
    assert!((watts - 30.0).abs() < 1e-9, "{watts} W declared as 30");
    let hashes = v["hashes"].as_u64().unwrap() as f64;
    let seconds = v["seconds"].as_f64().unwrap();
    let j_per_th = v["j_per_th"].as_f64().expect("J/TH is known with a declared wattage");
    // 30 J each second over hashes/seconds hashes each second, per 10^12 hashes.
    let want = watts * seconds / hashes * 1e12;
    assert!((j_per_th / want - 1.0).abs() < 1e-6, "{j_per_th} J/TH vs {watts} W x {seconds} s / {hashes} hashes = {want}");
    // The meter's energy covers the same run (it starts a moment before the hashers).
    let energy = v["energy_j"].as_f64().unwrap();
    assert!((energy / (30.0 * seconds) - 1.0).abs() < 0.05, "{energy} J over {seconds} s at 30 W");
    assert!((energy / hashes * 1e12 / j_per_th - 1.0).abs() < 0.05, "energy per hash agrees with J/TH");
}

/// On a real pseudo-terminal (util-linux `script` gives the command one): the live line is
/// animated with carriage returns and its first hashrate figure appears within 2 s of start.
#[cfg(target_os = "linux")]
#[test]
fn on_a_terminal_the_first_live_figure_appears_within_two_seconds() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let bin = env!("CARGO_BIN_EXE_hashrig");
    assert!(!bin.contains('\''), "the binary path is quoted with single quotes: {bin}");
    let started = Instant::now();
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &format!("'{bin}' bench --duration 3 --threads 1"), "/dev/null"])
        .env_remove("HASHRIG_KERNEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("util-linux `script` runs the bench on a pseudo-terminal (install util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut first_figure = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if first_figure.is_none() && String::from_utf8_lossy(&seen).contains("H/s now, ") {
            first_figure = Some(started.elapsed());
        }
    }
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{text}");
    let first = first_figure.unwrap_or_else(|| panic!("no live hashrate figure on the terminal: {text:?}"));
    assert!(first < Duration::from_secs(2), "first figure after {first:?}");
    assert!(text.contains("\r\x1b[2K"), "the live line redraws in place on a terminal: {text:?}");
    let updates = text.matches("H/s now, ").count();
    assert!(updates >= 3, "a 3 s run redraws the line every half second, saw {updates}: {text:?}");
    assert!(text.contains("hashrate"), "the summary follows the live line: {text:?}");
}

#[test]
fn bench_with_a_hashprice_gives_econs_figures_for_the_measured_rate() {
    let v = bench_json(&["--watts", "50", "--power-price", "0.1", "--hashprice", "40", "--rent", "0.01"]);
    let rate = v["hashrate"].as_f64().unwrap();
    let d = &v["decision"];
    // Revenue: the rate in PH/s times 40 USD/PH/day. Energy: 50 W all day is 1.2 kWh.
    let revenue = 40.0 / 1e15 * rate;
    let kwh = 50.0 * 24.0 / 1000.0;
    let be = d["break_even_power_price_usd_kwh"].as_f64().unwrap();
    assert!((be / (revenue / kwh) - 1.0).abs() < 1e-9, "{d}");
    assert!((d["mining"]["power_cost_usd_day"].as_f64().unwrap() - 0.12).abs() < 1e-12, "{d}");
    assert!((d["mining"]["profit_usd_day"].as_f64().unwrap() - (revenue - 0.12)).abs() < 1e-9, "{d}");
    // Below it mining stops paying: 0.12 USD/day over the rate in PH/s.
    assert!((d["break_even_hashprice_usd_ph_day"].as_f64().unwrap() / (0.12 / (rate / 1e15)) - 1.0).abs() < 1e-9);
    // Rent: 0.24 a day, 0.12 after power; a CPU earns far less hashing, so rent wins.
    assert!((d["rent"]["profit_usd_day"].as_f64().unwrap() - 0.12).abs() < 1e-12, "{d}");
    assert_eq!(d["best"], "rent");
    // No coin price or difficulty: the network figures are not there.
    assert!(v["economics"].is_null());
}

#[test]
fn bench_price_flags_that_do_not_add_up_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--hashprice", "40"], "--power-price"),
        (&["--power-price", "0.1", "--hashprice", "40", "--btc-price", "1"], "--hashprice"),
        (&["--power-price", "0.1", "--hashprice", "-1"], "negative"),
        (&["--power-price", "0.1", "--hashprice", "40", "--rent", "2$"], "USD"),
    ];
    for (args, why) in cases {
        let out = hashrig().args(["bench", "--duration", "0.2", "--threads", "1"]).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: expected {why:?} in {stderr}");
    }
}
