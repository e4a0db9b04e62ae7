//! `hashrig decode` run as a real binary on captured BM13xx frames (firmware-protocol's golden
//! data: the reference notes' frames, each naming its source).

use assert_cmd::Command;
use serde_json::Value;

fn hashrig() -> Command {
    Command::cargo_bin("hashrig").expect("the hashrig binary is built")
}

/// The BM1370 Bitaxe Gamma round trip (mujina test_data.rs): job 0x68 and its nonce.
const JOB_H21: &str = "55 AA 21 56 68 01 00 00 00 00 04 3A 02 17 D7 68 54 68 55 19 A7 CB 04 4F 88 72 63 55 91 9E 61 A9 8B CF 71 A0 C2 87 95 EA 54 DB 8C 36 41 4B 06 DD F5 F0 00 00 00 00 00 00 00 00 96 52 01 00 1D 39 96 BC A3 F4 67 0D FC D4 F2 01 C1 62 B9 6D FD 55 64 6B 00 00 00 20 72 1C";
const NONCE_R5: &str = "AA 55 4C 03 52 75 0C D2 05 A2 9C";

fn run_ok(args: &[&str]) -> String {
    let out = hashrig().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn decode_prints_the_fields_of_host_commands() {
    let out = run_ok(&["decode", "--dir", "tx", "55AA51090014000000FF08 55AA520500000A 55AA530500000 3 55aa4005040003"]);
    assert!(out.contains("write-register all reg=0x14 (TICKET_MASK) value=0x000000ff: ticket mask: difficulty 256"), "{out}");
    assert!(out.contains("read-register all reg=0x00 (CHIP_ID)"), "{out}");
    assert!(out.contains("chain-inactive"), "{out}");
    assert!(out.contains("set-address addr=0x04"), "{out}");
    assert!(out.contains("4 frames, 0 bad CRC, 0 malformed, 0 bytes skipped"), "{out}");
}

#[test]
fn decode_reads_the_captured_bm1370_nonce_like_esp_miner_logged_it() {
    let out = run_ok(&["decode", "--chip", "bm1370", "--dir", "rx", NONCE_R5]);
    // ESP-Miner's log: "Job ID: 68, Core: 38/2, Ver: 00B44000".
    assert!(out.contains("nonce=0x7552034c job=0x68 core=38 small-core=2"), "{out}");
    assert!(out.contains("(rolled 0x00b44000)"), "{out}");
}

#[test]
fn decode_json_of_a_mixed_capture_with_garbage_and_a_bad_crc() {
    // garbage, the job, a chip-id read answer with a broken CRC, the nonce, trailing garbage.
    let capture = format!("13 37 {JOB_H21} AA 55 13 70 00 00 00 00 00 00 11 {NONCE_R5} 00 01");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.txt");
    std::fs::write(&path, format!("# sniffed at the Bitaxe UART\n{capture}\n")).unwrap();
    let out = run_ok(&["decode", "--chip", "bm1370", "--json", path.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["frames"], 2, "{v}");
    assert_eq!(v["bad_crc"], 1, "{v}");
    let events = v["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"skipped"), "{kinds:?}");
    let job = events.iter().find(|e| e["frame"]["kind"] == "job").expect("the job");
    assert_eq!(job["dir"], "tx");
    assert_eq!(job["offset"], 2);
    assert_eq!(job["frame"]["job_id"], 0x68);
    assert_eq!(job["frame"]["nbits"], 0x1702_3a04u32);
    assert_eq!(job["frame"]["version"], 0x2000_0000u32);
    let bad = events.iter().find(|e| e["event"] == "bad_crc").expect("the bad frame is flagged");
    assert_eq!(bad["dir"], "rx");
    assert_eq!(bad["offset"], 90);
    let nonce = events.iter().find(|e| e["frame"]["kind"] == "nonce").expect("the nonce after the bad frame");
    assert_eq!(nonce["frame"]["nonce"], 0x7552_034cu32);
    assert_eq!(nonce["frame"]["job_id"], 0x68);
    assert_eq!(nonce["frame"]["core"], 38);
    assert_eq!(nonce["frame"]["version_bits"], 0x05a2);
    // Every byte is accounted for: 2 + 88 + 11 + 11 + 2.
    assert_eq!(v["bytes"], 114);
}

#[test]
fn decode_reads_a_raw_binary_capture_file() {
    let bytes: Vec<u8> = [0x55u8, 0xaa, 0x40, 0x05, 0x08, 0x00, 0x07].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.bin");
    std::fs::write(&path, &bytes).unwrap();
    let out = run_ok(&["decode", path.to_str().unwrap()]);
    assert!(out.contains("set-address addr=0x08"), "{out}");
}

#[test]
fn decode_bm1397_midstate_job_and_9_byte_nonce() {
    let job = "55 AA 21 36 00 01 00 00 00 00 15 9E 07 17 75 32 8E 63 A2 B3 6A 70 DE 60 4A 09 E9 30 1D E1 25 6D 7E B8 0E A1 E6 43 82 DF 61 14 15 03 96 6C 18 5F 50 2F 55 74 D4 BA D3 DC";
    let out = run_ok(&["decode", "--chip", "bm1397", &format!("{job} AA 55 97 C3 28 B6 01 63 9C")]);
    assert!(out.contains("job id=0x00 midstates=1 slots=1 nbits=0x17079e15"), "{out}");
    assert!(out.contains("job=0x60 core=75 midstate=3"), "{out}");
}

#[test]
fn decode_refuses_input_that_is_neither_hex_nor_a_file() {
    let out = hashrig().args(["decode", "not-a-file-and-not-hex"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not hex"), "{err}");
    let out = hashrig().args(["decode", "--chip", "bm9999", "55aa"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
