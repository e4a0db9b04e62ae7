//! `hashrig scan` run as a real binary, against real block headers (Bitcoin Core's genesis
//! parameters; block 125552 from the Bitcoin wiki's "Block hashing algorithm" page).

use assert_cmd::Command;
use hashrig_sha256d::Kernel;
use serde_json::Value;

const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
const B125552: &str = "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695";

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

#[test]
fn scan_finds_the_genesis_nonce_with_its_block_hash() {
    let out = hashrig().args(["scan", "--header", GENESIS, "--start", "2083200000", "--count", "100000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("nonce 2083236893 (0x7c2bac1d) hash 000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"), "{stdout}");
}

#[test]
fn scan_json_lists_block_125552_with_every_kernel() {
    let kernels = ["scalar", "avx2", "sha-ni", "sha-ni-sse", "sha-ni-avx512", "avx512", "arm-sha2"];
    assert_eq!(Kernel::ALL.len(), kernels.len(), "a kernel was added: name it here");
    for kernel in kernels {
        let out = hashrig()
            .args(["scan", "--header", B125552, "--start", "2504400000", "--count", "65536", "--json", "--kernel", kernel, "--threads", "1"])
            .output()
            .unwrap();
        if !kernel.parse::<Kernel>().unwrap().is_available() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{kernel}: {stderr}");
            assert!(stderr.contains("not supported by this CPU (available: "), "{kernel}: {stderr}");
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{kernel}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let found = v["found"].as_array().unwrap();
        assert_eq!(found.len(), 1, "{kernel}: {v}");
        assert_eq!(found[0]["nonce"], 2504433986u32);
        assert_eq!(found[0]["hash"], "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d");
        assert_eq!(v["target"], "00000000000044b9f20000000000000000000000000000000000000000000000");
        assert_eq!(v["hashes"], 65536);
        assert_eq!(v["hw_errors"], 0);
    }
}

#[test]
fn scan_exits_1_when_no_nonce_meets_the_target() {
    let out = hashrig().args(["scan", "--header", GENESIS, "--count", "1000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no nonce"));
}

#[test]
fn scan_reaches_the_last_nonce_and_honours_an_easy_difficulty() {
    let max = "f".repeat(64);
    let out = hashrig().args(["scan", "--header", GENESIS, "--start", "4294967294", "--target", &max, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nonces: Vec<u64> = v["found"].as_array().unwrap().iter().map(|f| f["nonce"].as_u64().unwrap()).collect();
    assert_eq!(nonces, vec![4294967294, 4294967295]);
    // Difficulty 2^-16: about 1 in 2^16 hashes meets it, so 2^20 nonces find about 16.
    let d = 1.0 / 65536.0;
    let out = hashrig().args(["scan", "--header", GENESIS, "--count", "1048576", "--difficulty", &d.to_string(), "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = v["found"].as_array().unwrap();
    assert!((3..60).contains(&found.len()), "{} found", found.len());
    for f in found {
        assert!(f["difficulty"].as_f64().unwrap() >= d, "{f}");
    }
}

#[test]
fn scan_bad_input_exits_2_with_a_reason() {
    let short = &GENESIS[..158];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--header", "zz"], "not valid hex"),
        (vec!["--header", short], "must be 80 bytes"),
        (vec!["--header", GENESIS, "--count", "0"], "at least 1"),
        (vec!["--header", GENESIS, "--count", "4294967297"], "2^32"),
        (vec!["--header", GENESIS, "--start", "4294967295", "--count", "2"], "past the last nonce"),
        (vec!["--header", GENESIS, "--start", "4294967296"], "beyond the last nonce"),
        (vec!["--header", GENESIS, "--target", "1234"], "64 hex digits"),
        (vec!["--header", GENESIS, "--difficulty=0"], "difficulty 0"),
        (vec!["--header", GENESIS, "--backend", "quantum"], "unknown backend"),
        (vec!["--header", GENESIS, "--kernel", "avx512000"], "unknown kernel"),
        (vec!["--count", "5"], "--header"),
    ];
    for (args, why) in cases {
        let out = hashrig().arg("scan").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: expected {why:?} in {stderr}");
    }
}

#[test]
fn scan_with_a_kernel_the_cpu_lacks_exits_2_listing_the_available_ones() {
    // HASHRIG_CPU_DISABLE masks the features off, so this runs on a CPU that has every kernel.
    for (mask, kernel, masked) in [("avx2", "avx2", "avx2"), ("sha-ni", "sha-ni", "sha"), ("sha,avx", "sha-ni-sse", "sha, avx")] {
        let out = hashrig()
            .env("HASHRIG_CPU_DISABLE", mask)
            .args(["scan", "--header", B125552, "--start", "2504433986", "--count", "1", "--kernel", kernel])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mask}: {stderr}");
        assert!(stderr.contains(&format!("kernel `{kernel}` is not supported by this CPU (available: ")), "{mask}: {stderr}");
        assert!(stderr.contains(&format!("scalar; HASHRIG_CPU_DISABLE masks off {masked})")), "{mask}: {stderr}");
        assert!(!stderr.contains(&format!("available: {kernel}")) && !stderr.contains(&format!(", {kernel},")), "{mask}: {stderr}");
    }
    // Without --kernel the fallback still finds the block's nonce.
    let out = hashrig()
        .env("HASHRIG_CPU_DISABLE", "sha-ni,avx2")
        .env_remove("HASHRIG_KERNEL")
        .args(["scan", "--header", B125552, "--start", "2504433000", "--count", "2000", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["found"][0]["nonce"], 2504433986u32, "{v}");
}
