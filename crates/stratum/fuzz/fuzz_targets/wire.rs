//! Fuzz `wire::parse_line` (one line from a pool) and the wire newtypes on arbitrary text.
//!
//! Beyond "no panic": a line over `MAX_LINE` is refused as too long; every error has a kind and
//! prints; a reject reason (`StratumError::reason`) and `sanitize_reason` of anything have no
//! control or bidi characters, are at most `MAX_REASON_CHARS` characters and are idempotent;
//! `HexU32` and `PrevHash` that parse print back to the (lower-cased) text they came from.
#![no_main]

use hashrig_stratum::wire::{self, HexU32, PrevHash, ServerMessage, MAX_LINE, MAX_REASON_CHARS};
use libfuzzer_sys::fuzz_target;

fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn check_reason(r: &str) {
    assert!(!r.chars().any(hidden), "reason keeps a control/bidi character: {r:?}");
    assert!(r.chars().count() <= MAX_REASON_CHARS, "reason of {} characters: {r:?}", r.chars().count());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    // The sanitiser on its own.
    let s = wire::sanitize_reason(text);
    check_reason(&s);
    assert_eq!(wire::sanitize_reason(&s), s, "sanitize_reason is not idempotent on {text:?}");

    // One line as the pool would send it.
    match wire::parse_line(text) {
        Ok(ServerMessage::Reply(r)) => {
            assert!(text.len() <= MAX_LINE);
            if let Some(e) = &r.error {
                check_reason(&e.reason());
                assert!(!r.is_ok());
            }
        }
        Ok(ServerMessage::Notify(n)) => {
            assert!(!n.job_id.is_empty());
            assert_eq!(PrevHash::from_stratum_hex(&n.prev_hash.to_stratum_hex()), Ok(n.prev_hash));
        }
        Ok(ServerMessage::SetDifficulty(d)) => assert!(d.0 > 0.0 && d.0.is_finite(), "{d:?}"),
        Ok(ServerMessage::SetExtranonce(e)) => assert!((1..=32).contains(&e.extranonce2_size)),
        Ok(ServerMessage::Reconnect(r)) => assert!(r.wait_seconds <= 3600),
        Ok(ServerMessage::ShowMessage(m)) => assert!(m.chars().count() <= 500),
        Ok(ServerMessage::Unknown { method, .. }) => assert!(method.chars().count() <= 100),
        Ok(_) => {}
        Err(e) => {
            assert!(!e.kind().is_empty());
            let _ = e.to_string();
            if text.len() > MAX_LINE {
                assert_eq!(e, wire::ProtocolError::LineTooLong { limit: MAX_LINE });
            }
        }
    }

    // The hex newtypes print back what they read.
    // (A leading `+` was taken until 38b2071: tests/fuzz_findings.rs.)
    if let Ok(h) = HexU32::try_from(text) {
        assert_eq!(h.to_string(), text.to_ascii_lowercase());
    }
    if let Ok(p) = PrevHash::from_stratum_hex(text) {
        assert_eq!(p.to_stratum_hex(), text.to_ascii_lowercase());
    }
});
