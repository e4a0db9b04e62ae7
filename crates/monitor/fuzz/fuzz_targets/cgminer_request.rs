//! Fuzz the cgminer API request handling: `cgminer::respond(bytes, &view, level, &NoActions)`,
//! which is the whole request parser (JSON or plain form) and the reply for one connection.
//!
//! Input: first byte picks the peer's access level (none, read, write); the rest is what the
//! peer sent. The view has two pools and an ASIC device with chips, so pool and device
//! commands find something to work on.
//!
//! Invariants beyond "no panic": the reply ends in exactly one NUL and has no other; it is
//! UTF-8; a request in the JSON form (first byte `{` after the trailing NUL/newline/space a
//! client may send) gets a reply that is one JSON object; the plain form gets `STATUS=..`
//! sections; a write command from a peer without write access is refused with code 45 and
//! `NoActions` is never reported as having done anything (no success status for a write).
#![no_main]

use hashrig_monitor::cgminer::respond;
use hashrig_monitor::*;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn view() -> RunView {
    let pool = |id: u32, active: bool| PoolView {
        id,
        url: format!("stratum+tcp://pool{id}.example:3333"),
        user: "worker".into(),
        state: if active { PoolState::Alive } else { PoolState::Dead },
        active,
        priority: id,
        difficulty: 1024.0,
        ..Default::default()
    };
    let chip = |i: u16| ChipView {
        index: i,
        nonces: 100,
        hw_errors: u64::from(i == 1),
        est_hashrate: 1e12,
        temperature: Some(60.0),
        cores: (0..2).map(|k| CoreView { index: k, nonces: 50, hw_errors: 0 }).collect(),
    };
    RunView {
        mode: "mine".into(),
        started_unix: 1_700_000_000,
        elapsed_s: 60.0,
        hashrate: Rates { avg: 1e12, s5: 1e12, m1: 1e12 },
        devices: vec![
            DeviceView { id: 0, name: "cpu".into(), kind: "cpu".into(), kernel: "sha-ni".into(), enabled: true, ..Default::default() },
            DeviceView {
                id: 1,
                name: "bm1370 chain".into(),
                kind: "asic".into(),
                kernel: "bm1370".into(),
                enabled: true,
                estimated: true,
                chips: (0..3).map(chip).collect(),
                ..Default::default()
            },
        ],
        pools: vec![pool(0, true), pool(1, false)],
        power: Some(PowerView { watts: 20.0, source: "declared".into(), energy_j: None }),
        ..Default::default()
    }
}

const WRITES: [&str; 7] = ["switchpool", "enablepool", "disablepool", "ascenable", "ascdisable", "quit", "privileged"];

fuzz_target!(|data: &[u8]| {
    let Some((&first, request)) = data.split_first() else { return };
    let level = [Level::None, Level::Read, Level::Write][usize::from(first % 3)];
    let view = view();
    let reply = respond(request, &view, level, &NoActions);
    assert_eq!(reply.last(), Some(&0), "reply does not end in NUL");
    let body = &reply[..reply.len() - 1];
    assert!(!body.contains(&0), "NUL inside the reply");
    let text = std::str::from_utf8(body).expect("reply is UTF-8");

    let mut req = request;
    while let [rest @ .., last] = req {
        if matches!(last, 0 | b'\n' | b'\r' | b' ') { req = rest } else { break }
    }
    if req.first() == Some(&b'{') {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON request, reply is not JSON ({e}): {text}"));
        assert!(v.is_object(), "{text}");
        // A single command's reply (not `a+b` joined): check write commands.
        if let Some(Value::String(cmd)) = serde_json::from_slice::<Value>(req).ok().as_ref().and_then(|r| r.get("command")).cloned()
            && !cmd.contains('+')
            && WRITES.contains(&cmd.as_str())
        {
            let status = &v["STATUS"][0];
            let code = status["Code"].as_u64().expect("status code");
            if level < Level::Write {
                assert_eq!(code, 45, "write command {cmd:?} without write access: {text}");
            } else if cmd != "privileged" {
                assert_ne!(status["STATUS"], "S", "NoActions did {cmd:?}: {text}");
            }
        }
    } else {
        assert!(text.starts_with("STATUS="), "{text}");
        if let Ok(t) = std::str::from_utf8(req) {
            let cmd = t.split_once('|').map_or(t, |(c, _)| c);
            if WRITES.contains(&cmd) {
                if level < Level::Write {
                    assert!(text.starts_with("STATUS=E,") && text.contains(",Code=45,"), "{text}");
                } else if cmd != "privileged" {
                    assert!(!text.starts_with("STATUS=S,"), "NoActions did {cmd:?}: {text}");
                }
            }
        }
    }
});
