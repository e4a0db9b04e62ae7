//! Sans-IO tests of the Stratum v1 session: every message in, every line out, no sockets.
//! Wire samples are the shapes real pools send (sources in tests/data/stratum/README.md).

use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::Target;
use hashrig_stratum::wire::{self, parse_line, MAX_LINE};
use hashrig_stratum::{Event, Password, PoolJob, ProtocolError, Session, SessionConfig, Share, ShareOutcome, SubmitError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn data(name: &str) -> String {
    let p = format!("{}/../../tests/data/stratum/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn cfg() -> SessionConfig {
    let mut c = SessionConfig::new("addr.worker", Password::new("s3cret-pass"));
    c.agent = "hashrig/test".into();
    c
}

fn sends(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Send(l) => {
                assert!(l.ends_with('\n'), "every line ends with a newline: {l:?}");
                Some(serde_json::from_str(l.trim_end()).expect("we send JSON"))
            }
            _ => None,
        })
        .collect()
}

fn jobs(events: &[Event]) -> Vec<Arc<PoolJob>> {
    events.iter().filter_map(|e| if let Event::Job(j) = e { Some(j.clone()) } else { None }).collect()
}

/// A session that has sent configure (1), subscribe (2), authorize (3) and got answers.
fn ready(mask_reply: Option<&str>, en1: &str, en2_size: u64) -> Session {
    let mut s = Session::new(cfg());
    s.start();
    match mask_reply {
        Some(m) => {
            s.handle_line(&json!({"id":1,"result":{"version-rolling":true,"version-rolling.mask":m},"error":null}).to_string());
        }
        None => {
            s.handle_line(&json!({"id":1,"result":{"version-rolling":false},"error":null}).to_string());
        }
    }
    s.handle_line(&json!({"id":2,"result":[[["mining.set_difficulty","b4b6"],["mining.notify","ae68"]],en1,en2_size],"error":null}).to_string());
    let ev = s.handle_line(r#"{"id":3,"result":true,"error":null}"#);
    assert!(ev.contains(&Event::Authorized(true)));
    s
}

fn notify_line(job_id: &str, prev: &str, clean: bool) -> String {
    json!({"id":null,"method":"mining.notify","params":[job_id, prev, "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0d03", "0000000001000000000000000000000000", [], "20000004", "1705ae3a", "6470e2a1", clean]}).to_string()
}

const PREV_A: &str = "8bc8707eb169ad3bda101ae60c8d48bd00aff68a00006c8b0000000000000000";
const PREV_B: &str = "0c859545a3498373a57452fac22eb7113df2a465000543520000000000000000";

#[test]
fn start_sends_configure_subscribe_authorize_in_order() {
    let mut s = Session::new(cfg());
    let out = sends(&s.start());
    let methods: Vec<&str> = out.iter().map(|v| v["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["mining.configure", "mining.subscribe", "mining.authorize"]);
    assert_eq!(out[0]["params"], json!([["version-rolling"], {"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]));
    assert_eq!(out[1]["params"], json!(["hashrig/test"]));
    assert_eq!(out[2]["params"], json!(["addr.worker", "s3cret-pass"]));
    let ids: Vec<u64> = out.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn password_never_shows_in_debug_output() {
    let s = Session::new(cfg());
    let dbg = format!("{s:?} {:?} {}", cfg(), Password::new("s3cret-pass"));
    assert!(!dbg.contains("s3cret-pass"), "{dbg}");
}

#[test]
fn subscribe_takes_any_extranonce_sizes() {
    // NiceHash: 5-byte extranonce1 with a 3-byte extranonce2 (ESP-Miner PR #1064 log).
    let s = ready(None, "6351117f64", 3);
    assert_eq!(s.extranonce(), Some((&[0x63, 0x51, 0x11, 0x7f, 0x64][..], 3)));
    // f2pool: 1-byte extranonce1, 8-byte extranonce2 (blog capture, see README).
    let s = ready(None, "00", 8);
    assert_eq!(s.extranonce(), Some((&[0x00][..], 8)));
}

#[test]
fn notify_parses_all_nine_params_of_a_real_slush_job() {
    let mut s = ready(Some("1fffe000"), "336508070fca95", 8);
    let ev = s.handle_line(&data("slush_notify_20230526.json"));
    let j = jobs(&ev);
    assert_eq!(j.len(), 1);
    let job = &j[0];
    assert_eq!(job.job_id, "21554471e8");
    assert!(job.clean);
    assert_eq!(job.job.merkle_branch.len(), 12);
    assert_eq!(hex::encode(job.job.merkle_branch[0].to_byte_array()), "8ef6b79382a1fc5152c7e69b2dd4e3795ed758d6fe7748ef4d96e3ad8ac180b8");
    assert_eq!(job.job.version_bits(), 0x2000_0004);
    assert_eq!(job.job.nbits.to_consensus(), 0x1705_ae3a);
    assert_eq!(job.job.ntime, 0x6470_e2a1);
    assert_eq!(job.job.extranonce1, hex::decode("336508070fca95").unwrap());
    assert_eq!(job.job.extranonce2_size, 8);
    assert_eq!(job.job.version_mask, 0x1fff_e000);
    // Word-swapped prev hash: the block hash in display order starts with the zeros of a
    // mainnet hash, and the header carries each word's bytes reversed.
    let display = job.job.prev_hash.to_string();
    assert!(display.starts_with("0000000000000000000"), "{display}");
    assert_eq!(&job.job.prev_hash.to_byte_array()[..4], &[0x7e, 0x70, 0xc8, 0x8b]);
    assert_eq!(wire::PrevHash(job.job.prev_hash).to_stratum_hex(), PREV_A);
}

#[test]
fn real_slush_job_and_share_rebuild_a_header_of_difficulty_683() {
    // A real pool job and the nonce ESP-Miner found on it: the rebuilt header must hash to
    // at least difficulty 683, checked with sha2 directly.
    let d: Value = serde_json::from_str(&data("slush_share_diff683.json")).unwrap();
    let coinbase = hex::decode(d["coinbase"].as_str().unwrap()).unwrap();
    // Split anywhere: coinb1 | extranonce1 (4) | extranonce2 (8) | coinb2.
    let (c1, rest) = coinbase.split_at(60);
    let (en1, rest) = rest.split_at(4);
    let (en2, c2) = rest.split_at(8);
    let branch: Vec<String> = d["merkle_branch"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().to_owned()).collect();
    let mut s = ready(None, &hex::encode(en1), 8);
    let line = json!({"id":null,"method":"mining.notify","params":["a1", d["prevhash_stratum"], hex::encode(c1), hex::encode(c2), branch, d["version"], d["nbits"], d["ntime"], true]}).to_string();
    let job = jobs(&s.handle_line(&line)).pop().expect("a job");
    assert_eq!(hex::encode(job.job.merkle_root(en2).unwrap().to_byte_array()), d["merkle_root"].as_str().unwrap());
    let nonce = u32::from_str_radix(d["nonce"].as_str().unwrap(), 16).unwrap();
    let header = job.job.header(en2, job.job.ntime, job.job.version_bits(), nonce).unwrap();
    let bytes = hashrig_work::job::header_bytes(&header);
    let digest: [u8; 32] = Sha256::digest(Sha256::digest(bytes)).into();
    assert_eq!(digest, header.block_hash().to_byte_array());
    let diff = Target::from_le_bytes(digest).difficulty_float();
    assert!(diff >= d["share_difficulty_floor"].as_f64().unwrap(), "difficulty {diff}");
    assert!(diff < 684.0, "difficulty {diff}");
    // The submit line carries the nonce as big-endian hex text.
    let sub = s.submit(Share { job_id: "a1".into(), extranonce2: en2.to_vec(), ntime: job.job.ntime, nonce, version: 0x2000_0004 }).unwrap();
    let v = &sends(&[sub])[0];
    assert_eq!(v["params"], json!(["addr.worker", "a1", hex::encode(en2), "647025b5", "0a029ed1"]));
}

#[test]
fn clean_jobs_is_read_from_the_last_param_when_pools_add_extras() {
    let mut s = ready(None, "00000001", 4);
    let mut v: Value = serde_json::from_str(&notify_line("j1", PREV_A, false)).unwrap();
    let params = v["params"].as_array_mut().unwrap();
    params.pop();
    params.push(json!("extra"));
    params.push(json!(true));
    let j = jobs(&s.handle_line(&v.to_string()));
    assert!(j[0].clean);
}

#[test]
fn set_difficulty_applies_to_the_next_job_only() {
    let mut s = ready(None, "00000001", 4);
    let j1 = jobs(&s.handle_line(&notify_line("j1", PREV_A, true))).pop().unwrap();
    assert_eq!(j1.difficulty, 1.0);
    s.handle_line(r#"{"id":null,"method":"mining.set_difficulty","params":[0.015625]}"#);
    assert_eq!(s.job("j1").unwrap().difficulty, 1.0, "the current job keeps its difficulty");
    let j2 = jobs(&s.handle_line(&notify_line("j2", PREV_A, false))).pop().unwrap();
    assert_eq!(j2.difficulty, 0.015625);
    assert!(s.job("j1").is_some(), "a non-clean job leaves older ones valid");
}

#[test]
fn bad_difficulties_are_refused_and_counted() {
    let mut s = ready(None, "00000001", 4);
    for bad in [r#"[0]"#, r#"[-2]"#, r#"["512"]"#, r#"[]"#] {
        let ev = s.handle_line(&format!(r#"{{"id":null,"method":"mining.set_difficulty","params":{bad}}}"#));
        assert!(matches!(ev[..], [Event::Protocol(_)]), "{bad}: {ev:?}");
    }
    assert_eq!(s.stats().protocol_errors.values().sum::<u64>(), 4);
    let j = jobs(&s.handle_line(&notify_line("j1", PREV_A, true))).pop().unwrap();
    assert_eq!(j.difficulty, 1.0);
}

#[test]
fn clean_job_or_new_prev_hash_makes_older_shares_stale() {
    let mut s = ready(None, "00000001", 4);
    s.handle_line(&notify_line("j1", PREV_A, true));
    s.handle_line(&notify_line("j2", PREV_B, false)); // new block: clean even though false
    let share = Share { job_id: "j1".into(), extranonce2: vec![0; 4], ntime: 0x6470e2a1, nonce: 1, version: 0x2000_0004 };
    assert_eq!(s.submit(share), Err(SubmitError::Stale("j1".into())));
    assert_eq!(s.stats().stale, 1);
    s.handle_line(&notify_line("j3", PREV_B, true));
    assert!(s.job("j2").is_none());
    assert!(s.job("j3").is_some());
}

#[test]
fn set_extranonce_applies_from_the_next_job() {
    let mut s = ready(None, "00000001", 4);
    s.handle_line(&notify_line("j1", PREV_A, true));
    s.handle_line(r#"{"id":null,"method":"mining.set_extranonce","params":["aabbccdd01",3]}"#);
    assert_eq!(s.job("j1").unwrap().job.extranonce1, vec![0, 0, 0, 1]);
    let j2 = jobs(&s.handle_line(&notify_line("j2", PREV_A, false))).pop().unwrap();
    assert_eq!(j2.job.extranonce1, hex::decode("aabbccdd01").unwrap());
    assert_eq!(j2.job.extranonce2_size, 3);
}

#[test]
fn version_rolling_uses_the_granted_mask_and_never_more() {
    // AntPool answered 5fffe000 to a 1fffe000 request (hathor-core issue 61): bit 30 is not
    // ours to roll.
    let mut s = ready(Some("5fffe000"), "00000001", 4);
    assert_eq!(s.version_mask(), Some(0x1fff_e000));
    s.handle_line(&notify_line("j1", PREV_A, true));
    let rolled = 0x2000_0004 | 0x0001_6000;
    let ev = s.submit(Share { job_id: "j1".into(), extranonce2: vec![1, 0, 0, 0], ntime: 0x6470e2a1, nonce: 0xb2957c02, version: rolled }).unwrap();
    let v = &sends(&[ev])[0];
    assert_eq!(v["method"], "mining.submit");
    assert_eq!(v["params"], json!(["addr.worker", "j1", "01000000", "6470e2a1", "b2957c02", "00016000"]));
    // A version outside the mask is refused before it reaches the pool.
    let bad = Share { job_id: "j1".into(), extranonce2: vec![1, 0, 0, 0], ntime: 0, nonce: 0, version: 0x6000_0004 };
    assert!(matches!(s.submit(bad), Err(SubmitError::VersionOutsideMask { .. })));
    // set_version_mask narrows it at once, again intersected with what we asked.
    let ev = s.handle_line(r#"{"id":null,"method":"mining.set_version_mask","params":["00003000"]}"#);
    assert_eq!(ev, vec![Event::VersionMask(Some(0x0000_2000))]);
}

#[test]
fn refused_or_unanswered_configure_means_no_rolling_and_no_sixth_param() {
    let mut s = Session::new(cfg());
    s.start();
    s.handle_line(r#"{"id":1,"result":null,"error":[20,"Method not found",null]}"#);
    s.handle_line(r#"{"id":2,"result":[[],"00000001",4],"error":null}"#);
    s.handle_line(r#"{"id":3,"result":true,"error":null}"#);
    assert_eq!(s.version_mask(), None);
    s.handle_line(&notify_line("j1", PREV_A, true));
    let ev = s.submit(Share { job_id: "j1".into(), extranonce2: vec![0; 4], ntime: 1, nonce: 2, version: 0x2000_0004 }).unwrap();
    assert_eq!(sends(&[ev])[0]["params"].as_array().unwrap().len(), 5);
}

fn submit_and_answer(s: &mut Session, answer: &str) -> ShareOutcome {
    s.handle_line(&notify_line("j1", PREV_A, false));
    let ev = s.submit(Share { job_id: "j1".into(), extranonce2: vec![0; 4], ntime: 1, nonce: 2, version: 0x2000_0004 }).unwrap();
    let id = sends(&[ev])[0]["id"].as_u64().unwrap();
    let line = answer.replace("ID", &id.to_string());
    let ev = s.handle_line(&line);
    match &ev[..] {
        [Event::ShareResult { outcome, .. }] => outcome.clone(),
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn all_three_error_shapes_and_reject_reason_are_counted_per_reason() {
    let mut s = ready(None, "00000001", 4);
    let rej = |r: &str| ShareOutcome::Rejected { reason: r.into() };
    assert_eq!(submit_and_answer(&mut s, r#"{"id":ID,"result":true,"error":null}"#), ShareOutcome::Accepted);
    assert_eq!(submit_and_answer(&mut s, r#"{"id":ID,"result":null,"error":[23,"Low difficulty share",null]}"#), rej("Low difficulty share"));
    assert_eq!(submit_and_answer(&mut s, r#"{"id":ID,"result":false,"error":"Duplicate share"}"#), rej("Duplicate share"));
    assert_eq!(submit_and_answer(&mut s, r#"{"id":ID,"result":false,"error":{"code":21,"message":"Job not found"}}"#), rej("Job not found"));
    assert_eq!(submit_and_answer(&mut s, r#"{"reject-reason":"Above target","result":false,"error":null,"id":ID}"#), rej("Above target"));
    assert_eq!(submit_and_answer(&mut s, r#"{"id":ID,"result":false,"error":[22,"",null]}"#), rej("duplicate share"));
    assert_eq!(submit_and_answer(&mut s, r#"{"id":ID,"result":false,"error":null}"#), rej("rejected"));
    assert_eq!(submit_and_answer(&mut s, r#"{"id":"ID","result":null,"error":[23,"Low difficulty share",null]}"#), rej("Low difficulty share"));
    let st = s.stats();
    assert_eq!(st.accepted, 1);
    assert_eq!(st.rejected["Low difficulty share"], 2);
    assert_eq!(st.rejected["Duplicate share"], 1);
    assert_eq!(st.rejected["Job not found"], 1);
    assert_eq!(st.rejected["Above target"], 1);
    assert_eq!(st.rejected_total(), 7);
}

#[test]
fn malformed_lines_are_refused_counted_and_the_session_goes_on() {
    let mut s = ready(None, "00000001", 4);
    let long = format!(r#"{{"id":null,"method":"mining.show_message","params":["{}"]}}"#, "x".repeat(MAX_LINE));
    let n = |mut v: Value, i: usize, x: Value| {
        v["params"][i] = x;
        v.to_string()
    };
    let base: Value = serde_json::from_str(&notify_line("j9", PREV_A, true)).unwrap();
    let cases = vec![
        ("{not json".to_string(), "invalid_json"),
        ("[1,2,3]".to_string(), "not_an_object"),
        (r#"{"id":null,"method":42,"params":[]}"#.to_string(), "wrong_type"),
        (r#"{"id":null,"method":"mining.notify","params":{"a":1}}"#.to_string(), "wrong_type"),
        (r#"{"id":null,"method":"mining.notify","params":["j1"]}"#.to_string(), "missing_field"),
        (n(base.clone(), 1, json!("00ff")), "bad_length"),
        (n(base.clone(), 1, json!("zz".repeat(32))), "bad_hex"),
        (n(base.clone(), 2, json!(12)), "wrong_type"),
        (n(base.clone(), 4, json!(["abcd"])), "bad_length"),
        (n(base.clone(), 5, json!("2000000")), "bad_length"),
        (n(base.clone(), 6, json!(386000000)), "wrong_type"),
        (n(base.clone(), 7, json!("6470e2a1ff")), "bad_length"),
        (n(base.clone(), 8, json!("true")), "wrong_type"),
        (long, "line_too_long"),
        (r#"{"id":999,"result":true,"error":null}"#.to_string(), "unexpected_reply"),
        (r#"{"id":null,"method":"mining.set_extranonce","params":["0001",0]}"#.to_string(), "bad_value"),
    ];
    for (line, kind) in &cases {
        let ev = s.handle_line(line);
        match &ev[..] {
            [Event::Protocol(e)] => assert_eq!(e.kind(), *kind, "{}", &line[..line.len().min(120)]),
            other => panic!("{}: {other:?}", &line[..line.len().min(120)]),
        }
    }
    assert_eq!(s.stats().protocol_errors.values().sum::<u64>(), cases.len() as u64);
    assert!(s.job("j9").is_none(), "no bad notify became a job");
    // And the session still works.
    assert_eq!(jobs(&s.handle_line(&notify_line("j1", PREV_A, true))).len(), 1);
}

#[test]
fn notify_before_subscribe_is_refused() {
    let mut s = Session::new(cfg());
    s.start();
    let ev = s.handle_line(&notify_line("j1", PREV_A, true));
    assert!(matches!(ev[..], [Event::Protocol(ProtocolError::BadValue { .. })]));
}

#[test]
fn ping_get_version_and_unknown_requests_are_answered() {
    let mut s = ready(None, "00000001", 4);
    let out = sends(&s.handle_line(r#"{"id":7,"method":"mining.ping","params":[]}"#));
    assert_eq!(out, vec![json!({"id":7,"result":"pong","error":null})]);
    let out = sends(&s.handle_line(r#"{"id":"v","method":"client.get_version","params":[]}"#));
    assert_eq!(out, vec![json!({"id":"v","result":"hashrig/test","error":null})]);
    let out = sends(&s.handle_line(r#"{"id":8,"method":"mining.foo","params":[]}"#));
    assert_eq!(out[0]["id"], 8);
    assert!(out[0]["error"].is_array());
    assert!(s.handle_line(r#"{"id":null,"method":"client.show_message","params":["hello"]}"#).is_empty());
}

#[test]
fn reconnect_params_parse_in_their_real_forms() {
    let r = |p: &str| match parse_line(&format!(r#"{{"id":null,"method":"client.reconnect","params":{p}}}"#)).unwrap() {
        wire::ServerMessage::Reconnect(r) => r,
        other => panic!("{other:?}"),
    };
    let a = r(r#"["pool.example", 3333, 5]"#);
    assert_eq!((a.host.as_deref(), a.port, a.wait_seconds), (Some("pool.example"), Some(3333), 5));
    let b = r(r#"["", "3334"]"#);
    assert_eq!((b.host, b.port, b.wait_seconds), (None, Some(3334), 0));
    let c = r("[]");
    assert_eq!((c.host, c.port), (None, None));
    let mut s = ready(None, "00000001", 4);
    let ev = s.handle_line(r#"{"id":null,"method":"client.reconnect","params":[]}"#);
    assert!(matches!(ev[..], [Event::Reconnect(_)]));
}

#[test]
fn unanswered_submits_are_handed_back_not_dropped() {
    let mut s = ready(None, "00000001", 4);
    s.handle_line(&notify_line("j1", PREV_A, true));
    let share = Share { job_id: "j1".into(), extranonce2: vec![0; 4], ntime: 1, nonce: 2, version: 0x2000_0004 };
    s.submit(share.clone()).unwrap();
    let back = s.take_unanswered();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, share);
    assert_eq!(back[0].1.as_ref().unwrap().job_id, "j1");
    // A job with the same id and same parts on a new session accepts the share.
    let mut s2 = ready(None, "00000001", 4);
    s2.handle_line(&notify_line("j1", PREV_A, true));
    assert!(s2.accepts_share_for(back[0].1.as_ref().unwrap()));
    let mut s3 = ready(None, "00000002", 4);
    s3.handle_line(&notify_line("j1", PREV_A, true));
    assert!(!s3.accepts_share_for(back[0].1.as_ref().unwrap()), "another extranonce1 makes it a different job");
}

#[test]
fn after_authorize_the_optional_requests_follow_and_their_errors_are_ignored() {
    let mut c = cfg();
    c.suggest_difficulty = Some(512.0);
    c.extranonce_subscribe = true;
    let mut s = Session::new(c);
    s.start();
    s.handle_line(r#"{"id":2,"result":[[],"00000001",4],"error":null}"#);
    let out = sends(&s.handle_line(r#"{"id":3,"result":true,"error":null}"#));
    let methods: Vec<&str> = out.iter().map(|v| v["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["mining.suggest_difficulty", "mining.extranonce.subscribe"]);
    assert_eq!(out[0]["params"], json!([512.0]));
    for v in &out {
        let id = v["id"].as_u64().unwrap();
        let ev = s.handle_line(&format!(r#"{{"id":{id},"result":null,"error":[20,"Method not found",null]}}"#));
        assert!(ev.is_empty(), "{ev:?}");
    }
    assert!(s.stats().protocol_errors.is_empty());
}

#[test]
fn a_refused_authorize_is_reported_with_its_reason_in_any_error_shape() {
    for reply in [
        r#"{"id":3,"result":false,"error":null}"#,
        r#"{"id":3,"result":null,"error":[24,"Unauthorized worker",null]}"#,
        r#"{"id":3,"result":null,"error":"bad password"}"#,
    ] {
        let mut s = Session::new(cfg());
        s.start();
        let ev = s.handle_line(reply);
        assert_eq!(ev, vec![Event::Authorized(false)], "{reply}");
        assert!(!s.is_authorized());
    }
}

#[test]
fn real_slush_notify_rebuilds_the_midstate_esp_miner_expects() {
    // ESP-Miner test_mining.c "Validate bm job construction 2" (values from its bm1397.py
    // verifier): this notify with extranonce1 336508070fca95 and extranonce2 = 8 zero bytes
    // gives midstate 5FD281AF... (written with each word's bytes reversed, as the chip takes
    // it) and merkle root bytes 28..32 = 8a dd a8 6a.
    let mut s = ready(None, "336508070fca95", 8);
    let job = jobs(&s.handle_line(&data("slush_notify_20230526.json"))).pop().unwrap();
    let header = job.job.header(&[0u8; 8], job.job.ntime, job.job.version_bits(), 0).unwrap();
    let bytes = hashrig_work::job::header_bytes(&header);
    assert_eq!(bytes[64..68], [0x8a, 0xdd, 0xa8, 0x6a]);
    let mut state: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let first: [u8; 64] = bytes[..64].try_into().unwrap();
    sha2::block_api::compress256(&mut state, &[first]);
    let midstate: String = state.iter().map(|w| format!("{:08X}", w.swap_bytes())).collect();
    assert_eq!(midstate, "5FD281AF6A1750EAEE502C04067738BD46C82FC22112FFE797CE7F035D276126");
}

#[test]
fn reject_reasons_lose_control_characters_are_capped_in_length_and_in_number() {
    let mut s = ready(None, "00000001", 4);
    let nasty = format!("\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}Low difficulty\r\n{}", "z".repeat(10_000));
    let line = json!({"id":"ID","result":null,"error":[23, nasty, null]}).to_string().replace("\"ID\"", "ID");
    let ShareOutcome::Rejected { reason } = submit_and_answer(&mut s, &line) else { panic!() };
    assert!(!reason.chars().any(|c| c.is_control() || c == '\u{202e}'), "{reason:?}");
    assert!(reason.chars().count() <= 120, "{} chars", reason.chars().count());
    assert!(reason.contains("pwned") && reason.contains("Low difficulty"), "escaped, not dropped: {reason:?}");
    for i in 0..40 {
        submit_and_answer(&mut s, &format!(r#"{{"id":ID,"result":false,"error":"reason {i}"}}"#));
    }
    let st = s.stats();
    assert!(st.rejected.len() <= 17, "{} reasons", st.rejected.len());
    assert_eq!(st.rejected_total(), 41);
    assert!(st.rejected.contains_key("other"));
}
