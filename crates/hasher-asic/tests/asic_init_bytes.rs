//! The bytes the driver writes during bring-up contain the frames real firmware sends (ESP-Miner
//! sources and the S21 Pro dump quoted in them; `firmware-protocol/REFERENCE.md` section 5, "the
//! notes", lists each generation's order and values), checked on a scripted one-chip chain over
//! an in-memory pipe.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use firmware_protocol::{ChipType, Command, RegisterResponse, Response, parse_hex};
use hashrig_hasher_asic::{Chain, ChainConfig, ChainStats, Port};

/// A one-chip chain that answers chip-id reads and records every byte the host writes.
struct Recorder {
    chip: ChipType,
    out: VecDeque<u8>,
    written: Vec<u8>,
}

impl Port for Recorder {
    fn read_timeout(&mut self, buf: &mut [u8], _t: Duration) -> io::Result<usize> {
        let n = buf.len().min(self.out.len());
        for (i, b) in self.out.drain(..n).enumerate() {
            buf[i] = b;
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(n)
    }
    fn write_all_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.written.extend_from_slice(bytes);
        if let Ok(Command::ReadRegister { register: 0, .. }) = Command::parse(bytes) {
            let long = self.chip.has_long_responses();
            let r = Response::Register(RegisterResponse {
                value: self.chip.chip_id_register(0),
                chip_address: 0,
                register: 0,
                extra: long.then_some([0, 0]),
            });
            self.out.extend(r.encode().as_bytes());
        }
        Ok(())
    }
    fn set_baud(&mut self, _b: u32) -> io::Result<()> {
        Ok(())
    }
    fn clear_input(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn name(&self) -> String {
        "recorder".into()
    }
}

fn bring_up(chip: ChipType, mhz: f64) -> Vec<u8> {
    let port = Recorder { chip, out: VecDeque::new(), written: Vec::new() };
    let cfg = ChainConfig {
        chip: Some(chip),
        mhz: Some(mhz),
        pacing: Duration::ZERO,
        enumerate_timeout: Duration::from_millis(100),
        enumerate_quiet: Duration::from_millis(20),
        ..ChainConfig::default()
    };
    let mut chain = Chain::bring_up(port, cfg, ChainStats::new()).expect("scripted chain comes up");
    assert_eq!(chain.info().chips, 1);
    std::mem::take(&mut chain.port_mut().written)
}

fn contains(hay: &[u8], frame: &str) -> bool {
    let needle = parse_hex(frame).unwrap();
    hay.windows(needle.len()).any(|w| w == needle.as_slice())
}

#[test]
fn bm1370_bring_up_sends_the_frames_of_the_s21_pro_dump() {
    let w = bring_up(ChipType::Bm1370, 525.0);
    for frame in [
        "55 AA 51 09 00 A4 90 00 FF FF 1C", // version rolling (S)
        "55 AA 52 05 00 00 0A",             // broadcast chip-id read (D)
        "55 AA 51 09 00 A8 00 07 00 00 03", // (S)
        "55 AA 51 09 00 18 F0 00 C1 00 04", // (S)
        "55 AA 53 05 00 00 03",             // chain inactive
        "55 AA 40 05 00 00 1C",             // address 0
        "55 AA 51 09 00 3C 80 00 8B 00 12", // (S)
        "55 AA 51 09 00 3C 80 00 80 0C 11", // (S)
        "55 AA 51 09 00 14 00 00 00 FF 08", // ticket mask 256
        "55 AA 51 09 00 58 00 01 11 11 0D", // (S)
        "55 AA 41 09 00 A8 00 07 01 F0 15", // per chip (S)
        "55 AA 41 09 00 18 F0 00 C1 00 0C", // (S)
        "55 AA 41 09 00 3C 80 00 8B 00 1A", // (S)
        "55 AA 41 09 00 3C 80 00 80 0C 19", // (S)
        "55 AA 41 09 00 3C 80 00 82 AA 05", // (S)
        "55 AA 51 09 00 B9 00 00 44 80 0D", // (S)
        "55 AA 51 09 00 54 00 00 00 02 18", // (S)
        "55 AA 51 09 00 3C 80 00 8D EE 1B", // (S)
        "55 AA 51 09 00 08 40 A8 02 30 03", // 525 MHz (D)
        "55 AA 51 09 00 10 00 0C 2F B7 18", // HCN, 1 chip at 525 MHz (D)
        "55 AA 51 09 00 28 11 30 02 00 03", // max baud (S)
    ] {
        assert!(contains(&w, frame), "BM1370 bring-up lacks {frame}");
    }
}

#[test]
fn bm1366_bring_up_sends_esp_miner_frames() {
    let w = bring_up(ChipType::Bm1366, 485.0);
    for frame in [
        "55 AA 51 09 00 A4 90 00 FF FF 1C",
        "55 AA 51 09 00 A8 00 07 00 00 03",
        "55 AA 51 09 00 18 FF 0F C1 00 00",
        "55 AA 51 09 00 3C 80 00 85 40 0C",
        "55 AA 51 09 00 3C 80 00 80 20 19",
        "55 AA 51 09 00 54 00 00 00 03 1D",
        "55 AA 51 09 00 58 02 11 11 11 06",
        "55 AA 41 09 00 A8 00 07 01 F0 15",
        "55 AA 41 09 00 3C 80 00 85 40 04",
        "55 AA 41 09 00 3C 80 00 80 20 11",
        "55 AA 51 09 00 08 50 C2 02 40 1C", // 485 MHz
        "55 AA 51 09 00 10 00 0D 32 24 10", // HCN, 1 chip at 485 MHz
        "55 AA 51 09 00 28 11 30 02 00 03",
    ] {
        assert!(contains(&w, frame), "BM1366 bring-up lacks {frame}");
    }
}

#[test]
fn bm1397_bring_up_sends_esp_miner_frames() {
    let w = bring_up(ChipType::Bm1397, 425.0);
    for frame in [
        "55 AA 53 05 00 00 03",
        "55 AA 40 05 00 00 1C",
        "55 AA 51 09 00 80 00 00 00 00 1C",
        "55 AA 51 09 00 84 00 00 00 00 11",
        "55 AA 51 09 00 20 00 00 00 01 02",
        "55 AA 51 09 00 3C 80 00 80 74 10",
        "55 AA 51 09 00 14 00 00 00 FF 08",
        "55 AA 51 09 00 68 C0 70 01 11 00",
        "55 AA 51 09 00 28 06 00 00 0F 18",
        "55 AA 51 09 00 18 00 00 7A 31 15",
        "55 AA 51 09 00 08 40 44 02 21 07", // 425 MHz
        "55 AA 51 09 00 18 00 00 60 31 00", // max baud
    ] {
        assert!(contains(&w, frame), "BM1397 bring-up lacks {frame}");
    }
}

#[test]
fn bm1368_bring_up_sends_esp_miner_frames() {
    // Notes 5.3 gives the BM1368 list as register values with two frames spelled out; the
    // frames with the same register and value as BM1366/BM1370 frames elsewhere in section 5
    // are copied from there, and the rest were CRC'd by hand with the notes' CRC5 (1.5), not
    // with our encoder.
    let w = bring_up(ChipType::Bm1368, 490.0);
    for frame in [
        "55 AA 51 09 00 A4 90 00 FF FF 1C", // 0xA4 = 0x9000FFFF (S, 5.2)
        "55 AA 52 05 00 00 0A",             // broadcast chip-id read (S, 5.2)
        "55 AA 53 05 00 00 03",             // chain inactive
        "55 AA 40 05 00 00 1C",             // address 0
        "55 AA 51 09 00 A8 00 07 00 00 03", // 0xA8 = 0x00070000 (S, 5.2)
        "55 AA 51 09 00 18 FF 0F C1 00 00", // 0x18 = 0xFF0FC100 (S, 5.2)
        "55 AA 51 09 00 3C 80 00 8B 00 12", // 0x3C = 0x80008B00 (S, 5.3/5.4)
        "55 AA 51 09 00 3C 80 00 80 18 1F", // 0x3C = 0x80008018 (D, 5.3)
        "55 AA 51 09 00 14 00 00 00 FF 08", // ticket mask 256
        "55 AA 51 09 00 54 00 00 00 03 1D", // 0x54 = 3 (S, 5.2)
        "55 AA 51 09 00 58 02 11 11 11 06", // 0x58 = 0x02111111 (S, 5.2)
        "55 AA 41 09 00 A8 00 07 01 F0 15", // per chip 0xA8 = 0x000701F0 (5.2)
        "55 AA 41 09 00 18 F0 00 C1 00 0C", // per chip 0x18 = 0xF000C100 (5.2)
        "55 AA 41 09 00 3C 80 00 8B 00 1A", // per chip 0x3C = 0x80008B00 (S, 5.4)
        "55 AA 41 09 00 3C 80 00 80 18 17", // per chip 0x3C = 0x80008018 (by hand)
        "55 AA 41 09 00 3C 80 00 82 AA 05", // per chip 0x3C = 0x800082AA (5.2)
        "55 AA 51 09 00 08 50 C4 02 40 06", // 490 MHz (D, 5.3)
        "55 AA 51 09 00 10 00 0D 0F AC 1B", // HCN 0x000D0FAC, 1 chip at 490 MHz (by hand)
        "55 AA 51 09 00 28 11 30 02 00 03", // max baud 0x28 = 0x11300200 (S, 5.2)
    ] {
        assert!(contains(&w, frame), "BM1368 bring-up lacks {frame}");
    }
}
