//! Fuzz `Session::handle_line` after a normal start: the session sends configure (id 1),
//! subscribe (id 2) and authorize (id 3), the pool grants version rolling, subscribes us
//! (extranonce1 `f000000f`, 4-byte extranonce2), authorizes us and sends one job. Then every
//! `\n`-separated piece of the input is fed as a line from the pool, as the client's line
//! reader would hand it over (lines that are not UTF-8 are refused there and never reach the
//! session; lines over `MAX_LINE` are too, but the session must refuse them as well). A line
//! reading exactly `SUBMIT` makes the miner submit a share for the newest job instead, so
//! replies to submits (ids 4, 5, ...) are reachable.
//!
//! Invariants beyond "no panic": every `Event::Protocol` is counted once in
//! `stats().protocol_errors`; reject reasons are sanitised (no control or bidi characters, at
//! most `MAX_REASON_CHARS`) and at most `MAX_REJECT_REASONS` of them are counted apart; the
//! version mask in force never has a bit we did not ask for; jobs have an extranonce2 size of
//! 1..=32 bytes and our mask; a share built for the newest job is accepted for submission.
#![no_main]

use hashrig_stratum::session::{MAX_REJECT_REASONS, OTHER_REASON};
use hashrig_stratum::wire::MAX_REASON_CHARS;
use hashrig_stratum::{Event, Password, Session, SessionConfig, Share, ShareOutcome};
use libfuzzer_sys::fuzz_target;

const ASKED: u32 = 0x1fff_e000;

const PREAMBLE: &[&str] = &[
    r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}"#,
    r#"{"id":2,"result":[[["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f"]],"f000000f",4],"error":null}"#,
    r#"{"id":3,"result":true,"error":null}"#,
    r#"{"id":null,"method":"mining.set_difficulty","params":[2]}"#,
    r#"{"id":null,"method":"mining.notify","params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"20000000","1c2ac4af","504e86b9",false]}"#,
];

fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn check(session: &Session, events: &[Event], protocol_events: &mut u64) {
    for ev in events {
        match ev {
            Event::Protocol(e) => {
                *protocol_events += 1;
                let _ = e.to_string();
            }
            Event::ShareResult { outcome: ShareOutcome::Rejected { reason }, .. } => {
                assert!(!reason.chars().any(hidden), "reject reason keeps a control character: {reason:?}");
                assert!(reason.chars().count() <= MAX_REASON_CHARS, "reject reason too long: {reason:?}");
            }
            Event::VersionMask(Some(m)) => assert_eq!(m & !ASKED, 0, "mask {m:#x} beyond what we asked"),
            Event::Job(j) => {
                assert!((1..=32).contains(&j.job.extranonce2_size), "{:?}", j.job.extranonce2_size);
                assert_eq!(j.job.version_mask & !ASKED, 0);
                assert!(j.difficulty > 0.0 && j.difficulty.is_finite());
            }
            Event::Send(line) => assert!(line.ends_with('\n') && line[..line.len() - 1].find('\n').is_none(), "{line:?}"),
            _ => {}
        }
    }
    let stats = session.stats();
    assert_eq!(stats.protocol_errors.values().sum::<u64>(), *protocol_events, "protocol errors miscounted");
    let own = stats.rejected.keys().filter(|k| k.as_str() != OTHER_REASON).count();
    assert!(own <= MAX_REJECT_REASONS, "{own} reject reasons counted apart");
    for k in stats.rejected.keys() {
        assert!(!k.chars().any(hidden) && k.chars().count() <= MAX_REASON_CHARS, "{k:?}");
    }
    if let Some(m) = session.version_mask() {
        assert!(m != 0 && m & !ASKED == 0, "mask {m:#x}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(SessionConfig::new("worker.1", Password::new("x")));
    let mut protocol_events = 0;
    let start = session.start();
    check(&session, &start, &mut protocol_events);
    for line in PREAMBLE {
        let ev = session.handle_line(line);
        check(&session, &ev, &mut protocol_events);
    }
    assert!(session.is_authorized() && session.current_job().is_some() && protocol_events == 0);

    let mut ntime = 0u32;
    for raw in data.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(raw) else { continue };
        if line == "SUBMIT" {
            let Some(job) = session.current_job().cloned() else { continue };
            assert!(session.extranonce().is_some(), "subscribed");
            ntime = ntime.wrapping_add(1);
            // The job's own extranonce2 size: the session's current one may already differ
            // after a set_extranonce (it applies from the next job).
            let share = Share {
                job_id: job.job_id.clone(),
                extranonce2: vec![0; job.job.extranonce2_size],
                ntime: job.job.ntime.wrapping_add(ntime),
                nonce: ntime,
                version: job.job.version_bits(),
            };
            match session.submit_request(share) {
                Ok((_, Event::Send(line))) => assert!(line.contains("mining.submit")),
                other => panic!("a share for the newest job was refused: {other:?}"),
            }
            continue;
        }
        let ev = session.handle_line(line);
        check(&session, &ev, &mut protocol_events);
    }
});
