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

#[test]
fn emulated_bm1366_chain_of_16_reports_an_estimate_consistent_with_the_emulator() {
    let v = bench("emu:bm1366x16", "3");
    assert_eq!(v["kernel"], "bm1366");
    assert_eq!(v["hw_errors"], 0, "no faults, no hardware errors");
    assert!(v["hashrate_ci95"].is_array(), "an estimated rate comes with its interval");
    let chain = &v["asic_chains"][0];
    assert_eq!(chain["chips"], 16);
    assert_eq!(chain["per_chip"].as_array().unwrap().len(), 16);
    for key in ["hw_errors", "duplicates", "late", "bad_crc", "skipped_bytes", "reinits"] {
        assert_eq!(chain[key], 0, "{key} with no fault injected: {chain}");
    }
    let est = &chain["estimate"];
    let n = est["nonces"].as_f64().unwrap();
    assert!(n > 50.0, "too few nonces to judge: {n}");
    let rate = est["rate"].as_f64().unwrap();
    let truth = chain["emulator_true_hashrate"].as_f64().unwrap();
    // Five standard deviations of the Poisson count: a real disagreement, not bad luck.
    let sigma = rate / n.sqrt();
    assert!((rate - truth).abs() < 5.0 * sigma, "driver estimate {rate} vs emulator {truth} (sigma {sigma})");
    // Every chip took part.
    assert!(chain["per_chip"].as_array().unwrap().iter().all(|c| c["nonces"].as_u64().unwrap() > 0), "{chain}");
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
