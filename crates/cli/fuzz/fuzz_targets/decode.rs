//! Fuzz `hashrig decode`'s input handling: `hashrig_cli::decode::render`, i.e. a capture file's
//! bytes (hex text if they read as hex text, raw bytes otherwise) -> frames -> the text lines
//! and the `--json` document.
//!
//! Input: first byte picks the chip (bm1397, bm1366, bm1368, bm1370), the direction (tx, rx,
//! auto) and the response length (auto, 9, 11); the rest is the file.
//!
//! Invariants beyond "no panic": the JSON counts match its events; events are in offset order
//! and inside the capture; one text line per event plus the summary; with `--dir auto` the kept
//! frames do not overlap and every byte is accounted for exactly once (frame bytes + one byte
//! per rejected candidate + skipped bytes = the capture's length).
#![no_main]

use firmware_protocol::ChipType;
use hashrig_cli::decode::{Dir, RespLen, render};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&first, raw)) = data.split_first() else { return };
    let chip = [ChipType::Bm1397, ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370][usize::from(first & 3)];
    let dir = [Dir::Tx, Dir::Rx, Dir::Auto, Dir::Auto][usize::from((first >> 2) & 3)];
    let rl = [RespLen::Auto, RespLen::Nine, RespLen::Eleven, RespLen::Auto][usize::from((first >> 4) & 3)];
    let (text, doc) = render(raw, chip, dir, rl);
    let len = doc["bytes"].as_u64().expect("bytes");
    let events = doc["events"].as_array().expect("events");
    assert_eq!(text.len(), events.len() + 1);
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count() as u64;
    assert_eq!(doc["frames"].as_u64(), Some(count("frame")));
    assert_eq!(doc["bad_crc"].as_u64(), Some(count("bad_crc")));
    assert_eq!(doc["malformed"].as_u64(), Some(count("malformed")));
    let skipped: u64 = events.iter().filter(|e| e["event"] == "skipped").map(|e| e["len"].as_u64().unwrap()).sum();
    assert_eq!(doc["skipped_bytes"].as_u64(), Some(skipped));

    let mut last = 0u64;
    let mut frame_end = 0u64;
    let mut accounted = 0u64;
    for e in events {
        let offset = e["offset"].as_u64().expect("offset");
        assert!(offset >= last, "events out of order: {doc}");
        last = offset;
        let n = match e["event"].as_str() {
            Some("skipped") => e["len"].as_u64().unwrap(),
            _ => e["raw"].as_str().expect("raw hex").len() as u64 / 2,
        };
        assert!(n > 0 && offset + n <= len, "event beyond the capture: {e} ({len} bytes)");
        match e["event"].as_str() {
            Some("frame") => {
                if dir == Dir::Auto {
                    assert!(offset >= frame_end, "frames overlap at {offset}: {doc}");
                    frame_end = offset + n;
                }
                accounted += n;
            }
            Some("skipped") => accounted += n,
            _ => accounted += 1,
        }
    }
    if dir == Dir::Auto {
        assert_eq!(accounted, len, "bytes not accounted for exactly once: {doc}");
    }
    assert!(matches!(doc["chip"], Value::String(_)));
});
