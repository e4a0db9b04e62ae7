//! Whatever bytes a client sends, the API answers with one NUL-terminated status and never
//! panics (property tests over raw bytes, JSON-looking and plain-looking requests).

mod common;

use hashrig_monitor::cgminer::respond;
use hashrig_monitor::{Level, NoActions};
use proptest::prelude::*;

fn check(req: &[u8], level: Level) {
    let view = common::rig();
    let out = respond(req, &view, level, &NoActions);
    assert_eq!(out.last(), Some(&0));
    assert_eq!(out.iter().filter(|&&b| b == 0).count(), 1, "exactly one NUL, at the end");
    let text = std::str::from_utf8(&out[..out.len() - 1]).expect("utf-8 reply");
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).expect("JSON replies parse");
        assert!(v.get("STATUS").is_some() || v.as_object().is_some_and(|o| o.values().all(|x| x[0].get("STATUS").is_some())));
    } else {
        assert!(text.starts_with("STATUS="), "{text}");
        assert!(text.ends_with('|'));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_get_a_status(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes, Level::Read);
    }

    #[test]
    fn json_like_requests_get_a_status(
        cmd in "[a-z+|]{0,30}",
        param in proptest::option::of("[ -~]{0,20}"),
        write in any::<bool>(),
    ) {
        let mut obj = serde_json::json!({ "command": cmd });
        if let Some(p) = param {
            obj["parameter"] = serde_json::Value::String(p);
        }
        check(obj.to_string().as_bytes(), if write { Level::Write } else { Level::Read });
    }

    #[test]
    fn plain_requests_get_a_status(req in "[ -~]{0,80}", write in any::<bool>()) {
        check(req.as_bytes(), if write { Level::Write } else { Level::Read });
    }
}
