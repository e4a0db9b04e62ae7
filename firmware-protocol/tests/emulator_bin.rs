//! The `bm13xx-emu` binary: prints the pty path, serves it, exits when stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firmware_protocol::{ChipType, Command as Cmd, Decoder, Direction, Frame, Response, reg};

#[test]
fn bm13xx_emu_serves_the_path_it_prints() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bm13xx-emu"))
        .args(["--chip", "bm1368", "--chips", "2", "--until-stdin-closes", "--budget-per-job", "1000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bm13xx-emu");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let path = line.trim().to_string();
    assert!(path.starts_with("/dev/"), "printed {path:?}");
    let mut port = serialport::new(&path, 115_200).timeout(Duration::from_millis(20)).open_native().unwrap();
    port.write_all(Cmd::read_all(reg::CHIP_ID).encode().as_bytes()).unwrap();
    let mut d = Decoder::new(Direction::ChipToHost, ChipType::Bm1368)
        .with_response_length(firmware_protocol::ResponseLength::Fixed(firmware_protocol::ResponseForm::Short));
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while got.len() < 2 && Instant::now() < end {
        if let Ok(n) = port.read(&mut buf) {
            d.push(&buf[..n]);
        }
        while let Some(f) = d.next_frame() {
            got.push(f);
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    for f in got {
        let Frame::Response(Response::Register(r)) = f else { panic!("{f:?}") };
        assert_eq!(r.value >> 16, 0x1368);
    }
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("2 x BM1368"), "{err}");
}
