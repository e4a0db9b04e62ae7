//! The real binary writing into a pipe whose reader has gone (`hashrig devices | head -1`):
//! a quiet, successful exit, as `cat` or ripgrep, never a `println!` panic.

use std::io::Read;
use std::process::{Command, Output, Stdio};

const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

/// How soon the reader goes away.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// Closes the pipe before the child writes anything.
    GoneAtOnce,
    /// Reads one byte (like `head -c1`), then closes the pipe.
    OneByte,
}

/// Run `hashrig args` with stdout a pipe that `reader` closes early; stderr is captured.
fn run_into_closed_pipe(args: &[&str], reader: Reader) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashrig"))
        .args(args)
        // No power counter and no GPU enumeration noise needed to reach the writes.
        .env("HASHRIG_POWERCAP_ROOT", "/nonexistent")
        .env("HASHRIG_HWMON_ROOT", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hashrig binary runs");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    if let Reader::OneByte = reader {
        let mut byte = [0u8; 1];
        stdout.read_exact(&mut byte).expect("the command writes at least one byte");
    }
    drop(stdout);
    child.wait_with_output().expect("the child is waited for")
}

fn assert_quiet_success(args: &[&str], reader: Reader) {
    let out = run_into_closed_pipe(args, reader);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The command and its flags, not a long capture argument.
    let cmd: Vec<&str> = args.iter().map(|a| if a.len() > 40 { "..." } else { a }).collect();
    assert!(!stderr.contains("panicked"), "{cmd:?} ({reader:?}) panicked on a closed pipe: {stderr}");
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{cmd:?} ({reader:?}) reported the closed pipe as an error: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{cmd:?} ({reader:?}): a closed pipe is a successful exit: {stderr}");
}

#[test]
fn devices_into_a_closed_pipe_exits_quietly() {
    assert_quiet_success(&["devices"], Reader::GoneAtOnce);
}

#[test]
fn decode_into_a_closed_pipe_exits_quietly() {
    // Many frames, so the output is more than one write even after the first byte is read.
    let capture = "55AA51090014000000FF08 ".repeat(2000);
    assert_quiet_success(&["decode", "--dir", "tx", &capture], Reader::GoneAtOnce);
    assert_quiet_success(&["decode", "--dir", "tx", &capture], Reader::OneByte);
}

#[test]
fn scan_into_a_closed_pipe_exits_quietly() {
    let scan = ["scan", "--header", GENESIS, "--start", "2083200000", "--count", "100000", "--threads", "1"];
    assert_quiet_success(&scan, Reader::GoneAtOnce);
    let mut json = scan.to_vec();
    json.push("--json");
    assert_quiet_success(&json, Reader::GoneAtOnce);
}

#[test]
fn selftest_into_a_closed_pipe_exits_quietly() {
    assert_quiet_success(&["selftest", "--backend", "cpu", "--threads", "1"], Reader::GoneAtOnce);
}

#[test]
fn bench_into_a_closed_pipe_exits_quietly() {
    let bench = ["bench", "--duration", "0.5", "--threads", "1", "--watts", "10"];
    assert_quiet_success(&bench, Reader::GoneAtOnce);
    let mut json = bench.to_vec();
    json.push("--json");
    assert_quiet_success(&json, Reader::OneByte);
}
