//! `hashrig bench --backend emu:...` and `asic:...` run as the real binary: the emulated chain
//! is driven over a real pty by the ASIC driver, and what the JSON says is checked against the
//! emulator's own count.

use assert_cmd::Command;
use serde_json::Value;

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

fn bench(backend: &str, seconds: &str) -> Value {
    let out = hashrig().args(["bench", "--duration", seconds, "--json", "--backend", backend]).output().unwrap();
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

/// z of a two-sided interval that a correct estimate misses once in 100 000 runs: the tests
/// check the truth against it, so they do not flake the way a 95 % check (1 run in 20) would.
const Z_WIDE: f64 = 4.417;
/// z of the 95 % interval the reports carry.
const Z95: f64 = 1.959_964;

/// The two-sided interval of a Poisson mean after `n` events at z standard deviations
/// (Garwood's exact interval via Wilson-Hilferty's chi-square approximation, good to well under
/// 1 % from a few tens of events up).
fn poisson_interval(n: f64, z: f64) -> [f64; 2] {
    let lower = if n == 0.0 { 0.0 } else { (n * (1.0 - 1.0 / (9.0 * n) - z / (3.0 * n.sqrt())).powi(3)).max(0.0) };
    let m = n + 1.0;
    [lower, m * (1.0 - 1.0 / (9.0 * m) + z / (3.0 * m.sqrt())).powi(3)]
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn emulated_bm1366_chain_of_16_reports_an_estimate_consistent_with_the_emulator() {
    let v = bench("emu:bm1366x16", "3");
    assert_eq!(v["kernel"], "bm1366");
    assert_eq!(v["hw_errors"], 0, "no faults, no hardware errors");
    let chain = &v["asic_chains"][0];
    assert_eq!(chain["chips"], 16);
    assert_eq!(chain["expected_chips"], 16);
    assert_eq!(chain["missing_chips"], 0);
    assert_eq!(chain["per_chip"].as_array().unwrap().len(), 16);
    for key in ["hw_errors", "duplicates", "late", "bad_crc", "skipped_bytes", "reinits"] {
        assert_eq!(chain[key], 0, "{key} with no fault injected: {chain}");
    }
    let truth = f(&chain["emulator_true_hashrate"]);
    assert!(truth > 0.0, "{chain}");

    // The driver's estimate: its 95 % interval is the Poisson interval of its own nonce count,
    // and the emulator's true rate lies inside the same count's wide interval.
    let est = &chain["estimate"];
    let n = f(&est["nonces"]);
    assert!(n > 50.0, "too few nonces to judge: {n}");
    let rate = f(&est["rate"]);
    let per = rate / n;
    let [lo, hi] = [f(&est["ci95"][0]), f(&est["ci95"][1])];
    let [want_lo, want_hi] = poisson_interval(n, Z95);
    assert!((lo / per - want_lo).abs() < 0.01 * want_lo && (hi / per - want_hi).abs() < 0.01 * want_hi, "ci95 [{lo}, {hi}] is not the 95 % interval of {n} nonces x {per}");
    assert!(lo < rate && rate < hi, "{est}");
    let [wide_lo, wide_hi] = poisson_interval(n, Z_WIDE).map(|x| x * per);
    assert!(wide_lo <= lo && hi <= wide_hi, "the wide interval holds the 95 % one");
    assert!((wide_lo..=wide_hi).contains(&truth), "driver: emulator's true rate {truth} outside [{wide_lo}, {wide_hi}] (ci95 [{lo}, {hi}], {n} nonces)");

    // The engine's estimate (top level): the device's hash count is its ticket nonces x 2^bits,
    // so the rate is hashes / seconds and the interval is the Poisson interval of that count.
    let [top_lo, top_hi] = [f(&v["hashrate_ci95"][0]), f(&v["hashrate_ci95"][1])];
    let top = f(&v["hashrate"]);
    let seconds = f(&v["seconds"]);
    let hashes = f(&v["hashes"]);
    assert!((top - hashes / seconds).abs() <= 1e-6 * top, "hashrate {top} is not hashes / seconds ({hashes} / {seconds})");
    let per_ticket = f(&chain["ticket_difficulty"]) * 4_294_967_296.0;
    let n_top = (hashes / per_ticket).round();
    assert!((n_top - n).abs() <= 0.02 * n + 2.0, "engine's count {n_top} vs the driver's {n} nonces");
    let per = top / n_top;
    let [want_lo, want_hi] = poisson_interval(n_top, Z95);
    assert!(
        (top_lo / per - want_lo).abs() < 0.01 * want_lo && (top_hi / per - want_hi).abs() < 0.01 * want_hi,
        "hashrate_ci95 [{top_lo}, {top_hi}] is not the 95 % interval of {n_top} nonces x {per}"
    );
    assert!(top_lo < top && top < top_hi, "hashrate {top} outside its own interval [{top_lo}, {top_hi}]");
    let [wide_lo, wide_hi] = poisson_interval(n_top, Z_WIDE).map(|x| x * per);
    assert!((wide_lo..=wide_hi).contains(&truth), "engine: emulator's true rate {truth} outside [{wide_lo}, {wide_hi}] ({n_top} nonces)");
    // Every chip took part.
    assert!(chain["per_chip"].as_array().unwrap().iter().all(|c| c["nonces"].as_u64().unwrap() > 0), "{chain}");
}

/// The fault runs: a 4-chip chain capped at 1 MH/s with a 12-bit emulator ticket (about 240
/// nonces a second, little CPU on a shared CI box).
fn fault_bench(faults: &str, seconds: &str) -> Value {
    bench(&format!("emu:bm1366x4,bits=12,rate=1000000,{faults}"), seconds)
}

/// No hardware error reached the engine or the driver's count.
fn assert_no_bad_share(v: &Value) {
    assert_eq!(v["hw_errors"], 0, "engine: {}", v["stats"]["devices"][0]);
    assert_eq!(v["asic_chains"][0]["hw_errors"], 0, "driver: {}", v["asic_chains"][0]);
}

#[test]
fn dropped_bytes_are_resynced_and_counted() {
    let v = fault_bench("drop=0.1", "2");
    let chain = &v["asic_chains"][0];
    assert!(chain["bad_crc"].as_u64().unwrap() > 0, "{chain}");
    assert!(chain["skipped_bytes"].as_u64().unwrap() > 0, "{chain}");
    assert!(chain["valid_nonces"].as_u64().unwrap() > 50, "the stream kept flowing: {chain}");
    assert_no_bad_share(&v);
}

#[test]
fn late_nonces_in_a_bench_are_superseded_work_not_errors() {
    // The bench's one synthetic job never sends a clean job, so a nonce held back past the next
    // job is for a job replaced without a flush: still valid (counted `superseded`), not `late`.
    // Late nonces after clean jobs are tested on the driver (crates/hasher-asic/tests/asic_faults.rs).
    let v = fault_bench("late=0.3", "3");
    let chain = &v["asic_chains"][0];
    assert!(chain["superseded"].as_u64().unwrap() > 0, "{chain}");
    assert_eq!(chain["late"], 0, "{chain}");
    assert_eq!(chain["flushes"], 0, "{chain}");
    assert_no_bad_share(&v);
}

#[test]
fn a_dead_chip_is_reported_missing() {
    let v = fault_bench("dead=2", "2");
    let chain = &v["asic_chains"][0];
    assert_eq!(chain["chips"], 3, "{chain}");
    assert_eq!(chain["expected_chips"], 4, "{chain}");
    assert_eq!(chain["missing_chips"], 1, "{chain}");
    assert_eq!(chain["per_chip"].as_array().unwrap().len(), 3, "{chain}");
    assert!(chain["valid_nonces"].as_u64().unwrap() > 0, "the live chips work: {chain}");
    assert_no_bad_share(&v);
}

#[test]
fn a_chain_that_stops_answering_is_reinitialised_then_reported() {
    // Heartbeats every second; three missed ones -> re-init, which fails on a silent chain.
    let v = fault_bench("stop-after=100", "6");
    let chain = &v["asic_chains"][0];
    assert!(chain["missed_heartbeats"].as_u64().unwrap() >= 3, "{chain}");
    assert!(chain["reinits"].as_u64().unwrap() >= 1, "{chain}");
    assert!(chain["per_chip"].as_array().unwrap().iter().all(|c| c["answering"] == false), "{chain}");
    let dev = &v["stats"]["devices"][0];
    assert!(dev["device_errors"].as_u64().unwrap() >= 1, "{dev}");
    let err = dev["last_error"].as_str().unwrap();
    assert!(err.contains("stopped answering"), "{err}");
    assert_no_bad_share(&v);
}

#[test]
fn injected_faults_are_counted_and_no_bad_share_is_counted_as_good() {
    let v = bench("emu:bm1368x4,crc=0.05,garbage=0.05,bad-core=1,dup=0.1", "3");
    let chain = &v["asic_chains"][0];
    assert_eq!(chain["chips"], 4, "enumeration survives the noisy link: {chain}");
    for key in ["hw_errors", "duplicates", "bad_crc", "skipped_bytes"] {
        assert!(chain[key].as_u64().unwrap() > 0, "{key} not counted: {chain}");
    }
    // The engine re-verified the bad-core nonces and counted them on chip 1, even cores.
    assert!(v["hw_errors"].as_u64().unwrap() > 0);
    let origins = v["stats"]["devices"][0]["hw_errors_by_origin"].as_array().unwrap();
    assert!(!origins.is_empty());
    for o in origins {
        assert_eq!(o["chip"], 1, "{o}");
        assert_eq!(o["core"].as_u64().unwrap() % 2, 0, "{o}");
    }
    // Per-chip view: only chip 1 has errors.
    for c in chain["per_chip"].as_array().unwrap() {
        assert_eq!(c["hw_errors"].as_u64().unwrap() > 0, c["index"] == 1, "{c}");
    }
}

#[test]
fn bad_emulator_spec_is_bad_input() {
    let out = hashrig().args(["bench", "--duration", "1", "--backend", "emu:bm9999x4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown emulated chain"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = hashrig().args(["bench", "--duration", "1", "--backend", "emu:bm1366x4,crc=2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad emulator option `crc=2`"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn missing_serial_port_fails_with_its_name() {
    let out = hashrig().args(["bench", "--duration", "1", "--backend", "asic:/dev/hashrig-no-such-port"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/hashrig-no-such-port"), "{err}");
}

#[test]
fn devices_lists_a_serial_section() {
    let out = hashrig().args(["devices"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Serial ports:"), "{text}");
    assert!(!text.contains("not built into this command"), "{text}");
}

#[test]
fn devices_probe_names_an_emulated_chain_and_says_plainly_what_is_not_one() {
    use std::time::{Duration, Instant};

    use firmware_protocol::ChipType;
    use firmware_protocol::emulator::{Emulator, EmulatorConfig};
    // The emulator in-process (the library behind `bm13xx-emu`): its pty is a real device the
    // hashrig process opens. A second one that stopped answering is a pty nobody answers on.
    let chain = Emulator::spawn(EmulatorConfig::new(ChipType::Bm1368, 3)).unwrap();
    let silent = Emulator::spawn(EmulatorConfig::new(ChipType::Bm1370, 1)).unwrap();
    silent.stop_answering();
    let chain_path = chain.path().to_str().unwrap().to_owned();
    let silent_path = silent.path().to_str().unwrap().to_owned();
    let t0 = Instant::now();
    let out = hashrig().args(["devices", "--probe", &chain_path, &silent_path, "/dev/null"]).timeout(Duration::from_secs(60)).output().unwrap();
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let serial: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Serial ports:")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(str::trim)
        .collect();
    assert_eq!(serial.len(), 3, "only the named ports are probed: {serial:?}");
    assert_eq!(serial[0], format!("{chain_path}: 3 x BM1368 answered"));
    assert!(
        serial[1].starts_with(&format!("{silent_path}: no BM13xx chip answered on {silent_path}")),
        "a silent pty: {}",
        serial[1]
    );
    assert_eq!(serial[2], "/dev/null: /dev/null is not a serial port (not a terminal device)");
    // The silent port costs three 500 ms waits (one per baud); the rest is the other sections.
    assert!(took < Duration::from_secs(10), "devices --probe took {took:?}");
    assert!(silent.is_silent(), "the silent one stayed silent");

    // Naming ports without --probe is a usage error.
    let out = hashrig().args(["devices", "/dev/null"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--probe"));
}
