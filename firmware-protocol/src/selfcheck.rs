//! The decoder's invariants, checked on arbitrary input. Shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/decoder.rs`) and the long property test (`tests/fuzz_long.rs`), so both
//! check exactly the same things.

use alloc::vec::Vec;

use crate::chip::ChipType;
use crate::decoder::{Decoder, Direction, Event, Frame, ResponseLength};
use crate::response::ResponseForm;

/// Decode `data` with a configuration picked by its first byte, fed in chunks sized by its
/// second byte, and check: no panic; the decoder ends empty; every input byte is accounted
/// for exactly once (frames, skipped runs, first byte of each rejected candidate); offsets
/// increase; every decoded frame re-encodes to exactly the bytes it came from; the stats
/// match the events. Returns the number of frames found; panics (with a reason) on a violation.
pub fn check_decoder(data: &[u8]) -> usize {
    let (cfg, rest) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => return 0,
    };
    let direction = if cfg.0 & 1 == 0 { Direction::HostToChip } else { Direction::ChipToHost };
    let chip = match (cfg.0 >> 1) % 5 {
        0 => ChipType::Bm1397,
        1 => ChipType::Bm1366,
        2 => ChipType::Bm1368,
        3 => ChipType::Bm1370,
        _ => ChipType::Unknown(0x1362),
    };
    let rule = match (cfg.0 >> 4) % 3 {
        0 => ResponseLength::Auto,
        1 => ResponseLength::Fixed(ResponseForm::Short),
        _ => ResponseLength::Fixed(ResponseForm::Long),
    };
    let chunk = usize::from(cfg.1 % 64) + 1;
    let mut d = Decoder::new(direction, chip).with_response_length(rule);
    let mut events = Vec::new();
    for c in rest.chunks(chunk) {
        d.push(c);
        while let Some(e) = d.next_event() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.next_event() {
        events.push(e);
    }
    assert_eq!(d.buffered(), 0, "bytes left after finish");
    let mut covered = 0u64;
    let mut last_offset = 0u64;
    let mut frames = 0usize;
    let (mut bad, mut malformed, mut skipped) = (0u64, 0u64, 0u64);
    for e in &events {
        let (offset, len) = match e {
            Event::Frame { offset, frame, raw } => {
                let re: Vec<u8> = match frame {
                    Frame::Command(c) => c.encode().as_bytes().to_vec(),
                    Frame::Job(j) => j.encode().as_bytes().to_vec(),
                    Frame::Response(r) => r.encode().as_bytes().to_vec(),
                };
                assert_eq!(&re[..], raw.as_bytes(), "frame does not re-encode to its bytes");
                frames += 1;
                (*offset, raw.as_bytes().len() as u64)
            }
            Event::BadCrc { offset, .. } => {
                bad += 1;
                (*offset, 1)
            }
            Event::Malformed { offset, .. } => {
                malformed += 1;
                (*offset, 1)
            }
            Event::Skipped { offset, len } => {
                assert!(*len > 0, "empty skipped run");
                skipped += len;
                (*offset, *len)
            }
        };
        assert!(offset >= last_offset, "offsets go backwards");
        assert_eq!(offset, covered, "a gap or an overlap in the accounting");
        last_offset = offset;
        covered += len;
    }
    assert_eq!(covered, rest.len() as u64, "not every byte accounted for");
    let s = d.stats();
    assert_eq!((s.frames, s.bad_crc, s.malformed, s.skipped_bytes), (frames as u64, bad, malformed, skipped));
    assert_eq!(s.bytes_in, rest.len() as u64);
    frames
}
