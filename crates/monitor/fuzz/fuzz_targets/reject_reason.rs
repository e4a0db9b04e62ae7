//! Fuzz the cleaning of pool reject reasons before they become API text and metrics labels:
//! `clean_reason` and `Shares::add_reject_reason` / `bounded_reject_reasons`.
//!
//! Input: reasons separated by `\n` (each a pool's reason text, counted once).
//!
//! Invariants beyond "no panic": a cleaned reason is non-empty, has no control character (so no
//! escape sequence survives), no surrounding whitespace, at most `MAX_REASON_CHARS` characters,
//! and cleaning it again changes nothing; at most `MAX_REJECT_REASONS` reasons are kept apart
//! (plus `other`), and the counts add up to the reasons fed.
#![no_main]

use hashrig_monitor::view::{clean_reason, MAX_REASON_CHARS, MAX_REJECT_REASONS, OTHER_REASON};
use hashrig_monitor::Shares;
use libfuzzer_sys::fuzz_target;

fn check(c: &str, raw: &str) {
    assert!(!c.is_empty(), "{raw:?}");
    assert!(!c.chars().any(char::is_control), "{raw:?} -> {c:?}");
    assert_eq!(c.trim(), c, "{raw:?} -> {c:?}");
    assert!(c.chars().count() <= MAX_REASON_CHARS, "{raw:?} -> {} chars", c.chars().count());
    assert_eq!(clean_reason(c), c, "not idempotent on {raw:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut shares = Shares::default();
    let mut n = 0u64;
    for raw in text.split('\n') {
        check(&clean_reason(raw), raw);
        shares.add_reject_reason(raw, 1);
        n += 1;
    }
    for map in [shares.reject_reasons.clone(), shares.bounded_reject_reasons()] {
        assert!(map.keys().filter(|k| k.as_str() != OTHER_REASON).count() <= MAX_REJECT_REASONS);
        assert_eq!(map.values().sum::<u64>(), n);
        for k in map.keys() {
            check(k, k);
        }
    }
});
