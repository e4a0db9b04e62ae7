//! Property tests standing in for a fuzz target: no line, however malformed, panics the parser
//! or the session; each bad line is counted exactly once; real notifies with one field mangled
//! are refused, never turned into jobs.

use hashrig_stratum::{Event, Password, Session, SessionConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

fn ready() -> Session {
    let mut s = Session::new(SessionConfig::new("w", Password::new("x")));
    s.start();
    s.handle_line(r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}"#);
    s.handle_line(r#"{"id":2,"result":[[],"f0000001",8],"error":null}"#);
    s.handle_line(r#"{"id":3,"result":true,"error":null}"#);
    s
}

fn real_notify() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/stratum/slush_notify_20230526.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[0-9a-fA-Fz]{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..10).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{1,12}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics_and_is_counted(line in "\\PC{0,300}") {
        let mut s = ready();
        let before: u64 = s.stats().protocol_errors.values().sum();
        let ev = s.handle_line(&line);
        let after: u64 = s.stats().protocol_errors.values().sum();
        let refused = ev.iter().filter(|e| matches!(e, Event::Protocol(_))).count() as u64;
        prop_assert_eq!(after - before, refused);
    }

    #[test]
    fn any_method_with_arbitrary_params_never_panics(
        method in prop::sample::select(vec!["mining.notify", "mining.set_difficulty", "mining.set_extranonce",
            "mining.set_version_mask", "client.reconnect", "mining.ping", "client.show_message", "x"]),
        params in json_value(),
        id in json_value(),
    ) {
        let mut s = ready();
        let _ = s.handle_line(&json!({"id": id, "method": method, "params": params}).to_string());
        let _ = s.handle_line(&json!({"id": id, "result": params, "error": params}).to_string());
    }

    #[test]
    fn a_real_notify_with_one_field_replaced_is_refused_or_parsed_never_half_built(
        field in 0usize..9,
        value in json_value(),
    ) {
        let mut v = real_notify();
        v["params"][field] = value;
        let mut s = ready();
        for e in s.handle_line(&v.to_string()) {
            if let Event::Job(j) = e {
                // Whatever got through must be a complete job with the real prev hash etc.
                prop_assert_eq!(j.job.extranonce2_size, 8);
                prop_assert!(j.job.merkle_branch.len() <= 12 || field == 4);
            }
        }
    }
}
