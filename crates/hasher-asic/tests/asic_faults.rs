//! One test per injected fault: it is detected, counted, and no bad or repeated nonce reaches
//! the sink as a good one.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use firmware_protocol::emulator::{Emulator, EmulatorConfig, Faults, target_for_zero_bits};
use hashrig_hasher::{Control, Hasher, NonceRange, Sink, WorkUnit};
use hashrig_hasher_asic::{AsicHasher, ChainConfig, ChipType, Error, emulated_config};

const MASK: u32 = 0x1fff_e000;

/// Every candidate either verifies at the ticket or is a counted hardware error.
fn check_all_verify(found: &[(WorkUnit, hashrig_hasher::Candidate)]) -> usize {
    let mut bad = 0;
    for (unit, c) in found {
        if leading_zero_bits(&digest(unit, c)) < u32::from(TEST_BITS) {
            bad += 1;
        }
    }
    bad
}

fn mine_with(faults: Faults) -> (AsicHasher<hashrig_hasher_asic::SerialLink>, Vec<(WorkUnit, hashrig_hasher::Candidate)>) {
    let (mut h, _) = spawn(ChipType::Bm1366, 4, Faults::default());
    // Faults switched on after bring-up: the chain is up, now the link misbehaves.
    h.emulator().unwrap().set_faults(faults).unwrap();
    let (found, _) = run_units(&mut h, 3, target_for_zero_bits(TEST_BITS), MASK);
    (h, found)
}

#[test]
fn crc_errors_are_counted_and_dropped() {
    let (h, found) = mine_with(Faults { crc_error_rate: 0.2, ..Faults::default() });
    let s = h.stats().snapshot();
    assert!(s.bad_crc > 0, "bad CRCs counted: {s:?}");
    assert!(s.valid_nonces > 10, "mining went on: {}", s.valid_nonces);
    assert_eq!(check_all_verify(&found), 0);
    assert_eq!(s.hw_errors, 0);
}

#[test]
fn garbage_between_frames_is_skipped_and_counted() {
    let (h, found) = mine_with(Faults { garbage_rate: 0.3, ..Faults::default() });
    let s = h.stats().snapshot();
    assert!(s.skipped_bytes > 0, "garbage counted: {s:?}");
    assert!(s.valid_nonces > 10);
    assert_eq!(check_all_verify(&found), 0);
    assert_eq!(s.hw_errors, 0);
}

#[test]
fn dropped_bytes_resync_without_bad_nonces() {
    let (h, found) = mine_with(Faults { drop_byte_rate: 0.2, ..Faults::default() });
    let s = h.stats().snapshot();
    assert!(s.bad_crc + s.skipped_bytes > 0, "short frames noticed: {s:?}");
    assert!(s.valid_nonces > 10);
    assert_eq!(check_all_verify(&found), 0);
    assert_eq!(s.hw_errors, 0);
}

#[test]
fn bad_cores_are_hardware_errors_on_their_chip_and_core() {
    let mut ecfg = EmulatorConfig::new(ChipType::Bm1366, 4);
    ecfg.faults = Faults { bad_core_chips: vec![2], ..Faults::default() };
    ecfg.hash_budget_per_job = Some(1 << 24);
    let emu = Emulator::spawn(ecfg).unwrap();
    let mut cfg = emulated_config(ChipType::Bm1366, 4);
    cfg.emulator_ticket_zero_bits = Some(TEST_BITS);
    cfg.job_interval = Some(Duration::from_millis(300));
    let mut h = AsicHasher::with_emulator(emu, cfg).unwrap();
    let (found, ctl) = run_units(&mut h, 3, target_for_zero_bits(TEST_BITS), MASK);
    let s = h.stats().snapshot();
    assert!(s.hw_errors > 0, "hardware errors counted: {s:?}");
    // Counted on chip 2, even cores only; the other chips are clean.
    for chip in &s.per_chip {
        if chip.index == 2 {
            assert_eq!(chip.hw_errors, s.hw_errors);
            assert!(chip.cores.iter().all(|c| c.hw_errors == 0 || c.core % 2 == 0), "{:?}", chip.cores);
        } else {
            assert_eq!(chip.hw_errors, 0, "chip {}", chip.index);
        }
    }
    // The bad ones went to the sink only as claims for the engine to reject (it re-verifies and
    // counts them per origin); they are exactly the counted ones and carry their origin.
    let bad: Vec<_> = found.iter().filter(|(u, c)| leading_zero_bits(&digest(u, c)) < u32::from(TEST_BITS)).collect();
    assert_eq!(bad.len() as u64, s.hw_errors);
    assert!(bad.iter().all(|(_, c)| c.origin.chip == Some(2) && c.origin.core.unwrap() % 2 == 0));
    // Hash count: only valid nonces count.
    assert_eq!(ctl.hashes(), s.valid_nonces << TEST_BITS);
    assert!(h.emulator().unwrap().stats().wrong_nonces >= s.hw_errors);
}

#[test]
fn duplicate_nonces_are_counted_and_never_passed_on() {
    let (h, found) = mine_with(Faults { duplicate_rate: 0.3, ..Faults::default() });
    let s = h.stats().snapshot();
    assert!(s.duplicates > 0, "duplicates counted: {s:?}");
    let mut seen = HashSet::new();
    for (u, c) in &found {
        assert!(seen.insert((u.id, c.version, c.nonce)), "a duplicate reached the sink");
    }
    assert_eq!(check_all_verify(&found), 0);
}

#[test]
fn late_nonces_for_flushed_jobs_are_counted_and_dropped() {
    let (mut h, _) = spawn(ChipType::Bm1366, 4, Faults::default());
    h.emulator().unwrap().set_faults(Faults { late_nonce_rate: 0.3, ..Faults::default() }).unwrap();
    let ctl = Control::new();
    let target = target_for_zero_bits(TEST_BITS);
    for i in 0..4u64 {
        // A clean job each time: the epoch moves on, the table is flushed.
        let epoch = ctl.bump_epoch();
        let (sink, rx) = Sink::channel();
        let unit = WorkUnit { id: i, epoch, header: header(i as u8 + 40), range: NonceRange::FULL, target, version_mask: MASK };
        h.hash(&unit, &ctl, &sink).unwrap();
        drop(sink);
        for c in rx.try_iter() {
            assert_eq!(c.unit_id, unit.id, "a nonce of a flushed job escaped into unit {}", unit.id);
        }
    }
    let s = h.stats().snapshot();
    assert!(s.late > 0, "late nonces counted: {s:?}");
    assert_eq!(s.flushes, 3);
    assert!(h.emulator().unwrap().stats().late_nonces > 0);
}

#[test]
fn dead_chip_is_left_out_and_the_rest_mine() {
    let mut ecfg = EmulatorConfig::new(ChipType::Bm1370, 16);
    ecfg.faults = Faults { dead_chips: vec![5], ..Faults::default() };
    ecfg.hash_budget_per_job = Some(1 << 24);
    let emu = Emulator::spawn(ecfg).unwrap();
    let mut cfg = emulated_config(ChipType::Bm1370, 16);
    cfg.emulator_ticket_zero_bits = Some(TEST_BITS);
    cfg.job_interval = Some(Duration::from_millis(300));
    let mut h = AsicHasher::with_emulator(emu, cfg).unwrap();
    assert_eq!(h.chain_info().chips, 15, "the dead chip does not answer enumeration");
    assert_eq!((h.chain_info().expected_chips, h.chain_info().missing_chips), (Some(16), 1));
    let s = h.stats().snapshot();
    assert_eq!((s.chips, s.expected_chips, s.missing_chips), (15, Some(16), 1), "the health view says one is missing");
    let (found, _) = run_units(&mut h, 2, target_for_zero_bits(TEST_BITS), MASK);
    assert!(found.len() > 10);
    assert_eq!(check_all_verify(&found), 0);
}

/// A 2-chip BM1368 emulator and a driver config that notices silence fast (100 ms heartbeat,
/// 200 ms enumeration timeout).
fn quick_heartbeat_chain() -> (Emulator, ChainConfig) {
    let mut ecfg = EmulatorConfig::new(ChipType::Bm1368, 2);
    ecfg.hash_budget_per_job = Some(1 << 22);
    let emu = Emulator::spawn(ecfg).unwrap();
    let mut cfg = emulated_config(ChipType::Bm1368, 2);
    cfg.emulator_ticket_zero_bits = Some(TEST_BITS);
    cfg.job_interval = Some(Duration::from_millis(200));
    cfg.heartbeat = Duration::from_millis(100);
    cfg.enumerate_timeout = Duration::from_millis(200);
    (emu, cfg)
}

#[test]
fn a_chain_that_stops_answering_is_detected_and_reinitialised() {
    let (emu, cfg) = quick_heartbeat_chain();
    let mut h = AsicHasher::with_emulator(emu, cfg).unwrap();
    h.emulator().unwrap().stop_answering();
    let ctl = Control::new();
    let (sink, _rx) = Sink::channel();
    let t0 = Instant::now();
    let mut error = None;
    for i in 0..20u64 {
        let unit = WorkUnit { id: i, epoch: ctl.epoch(), header: header(i as u8), range: NonceRange::FULL, target: target_for_zero_bits(TEST_BITS), version_mask: MASK };
        if let Err(e) = h.hash(&unit, &ctl, &sink) {
            error = Some(e);
            break;
        }
    }
    let e = error.expect("a silent chain is reported as an error");
    let text = format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
    assert!(text.contains("stopped answering"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(5), "noticed in {:?}", t0.elapsed());
    let s = h.stats().snapshot();
    assert!(s.missed_heartbeats >= 3, "{s:?}");
    assert_eq!(s.reinits, 1, "one re-init was tried");
}

#[test]
fn a_chain_that_answers_again_is_reinitialised_after_backing_off_and_mines_on() {
    let (emu, mut cfg) = quick_heartbeat_chain();
    // Today's 1 s doubling to 30 s, scaled down: 100 ms doubling to 400 ms.
    cfg.reinit_backoff = Duration::from_millis(100);
    cfg.reinit_backoff_max = Duration::from_millis(400);
    let mut h = AsicHasher::with_emulator(emu, cfg).unwrap();
    let ctl = Control::new();
    let (sink, rx) = Sink::channel();
    let unit = |i: u64| WorkUnit {
        id: i,
        epoch: ctl.epoch(),
        header: header(i as u8 + 80),
        range: NonceRange::FULL,
        target: target_for_zero_bits(TEST_BITS),
        version_mask: MASK,
    };

    h.hash(&unit(0), &ctl, &sink).unwrap();
    let before = h.stats().snapshot();
    assert!(before.valid_nonces > 0, "the chain mined before it stopped: {before:?}");
    assert_eq!(before.reinits, 0);

    // Silence: noticed by the heartbeat, then re-init attempts spaced by a growing back-off.
    h.emulator().unwrap().stop_answering();
    let stopped = Instant::now();
    let mut failures: Vec<(Instant, Duration)> = Vec::new();
    let mut id = 1;
    while failures.len() < 4 {
        assert!(stopped.elapsed() < Duration::from_secs(8), "only {} failed re-inits in {:?}", failures.len(), stopped.elapsed());
        let r = h.hash(&unit(id), &ctl, &sink);
        id += 1;
        if let Err(e) = r {
            let text = format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
            assert!(text.contains("stopped answering"), "{text}");
            assert!(h.is_stalled());
            failures.push((Instant::now(), h.reinit_backoff().expect("a failed re-init sets a back-off")));
        }
    }
    assert!(failures[0].0 - stopped < Duration::from_secs(3), "silence noticed in {:?}", failures[0].0 - stopped);
    let waits: Vec<Duration> = failures.iter().map(|f| f.1).collect();
    let ms = Duration::from_millis;
    assert_eq!(waits, vec![ms(100), ms(200), ms(400), ms(400)], "the back-off doubles up to its cap");
    for (pair, wait) in failures.windows(2).zip(&waits) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= *wait, "the next attempt came {gap:?} after a failure that set {wait:?}");
    }
    let stalled = h.stats().snapshot();
    assert_eq!(stalled.reinits, 4, "every attempt is counted: {stalled:?}");
    assert!(stalled.missed_heartbeats >= 3, "{stalled:?}");

    // The chain answers again: the next attempt (after the back-off) brings it back.
    h.emulator().unwrap().resume_answering();
    let first_after = id;
    h.hash(&unit(id), &ctl, &sink).expect("the re-init succeeds once the chain answers");
    id += 1;
    assert!(!h.is_stalled());
    assert_eq!(h.reinit_backoff(), None, "a success clears the back-off");
    let back = h.stats().snapshot();
    assert_eq!(back.reinits, 5, "{back:?}");
    assert_eq!(back.chips, 2);
    for _ in 0..2 {
        h.hash(&unit(id), &ctl, &sink).unwrap();
        id += 1;
    }
    drop(sink);
    let after = h.stats().snapshot();
    assert_eq!(after.reinits, 5, "no further re-init once it runs: {after:?}");
    assert!(after.valid_nonces > back.valid_nonces.max(before.valid_nonces), "mining resumed: {before:?} -> {after:?}");
    assert_eq!(after.hw_errors, 0, "{after:?}");
    let resumed: Vec<_> = rx.try_iter().filter(|c| c.unit_id >= first_after).map(|c| (unit(c.unit_id), c)).collect();
    assert!(resumed.len() > 10, "new candidates after the re-init: {}", resumed.len());
    assert_eq!(check_all_verify(&resumed), 0, "every nonce of the resumed chain verifies");
}

#[test]
fn a_port_that_is_not_a_chain_fails_fast_with_a_clear_message() {
    use std::io::Write;
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // The far end chatters like a console, never like a chip.
    let talker = std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(6) {
            if theirs.write_all(b"login: \r\n\x00\xff\x55\xaa").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let t0 = Instant::now();
    let err = AsicHasher::new(ours, ChainConfig::default()).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, Error::NoChain { .. }), "{err}");
    assert!(err.to_string().contains("no BM13xx chip answered"), "{err}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    drop(talker);
}

#[test]
fn permission_denied_names_the_dialout_group() {
    let e = hashrig_hasher_asic::classify_open_error(
        "/dev/ttyUSB0",
        serialport::Error::new(serialport::ErrorKind::Io(std::io::ErrorKind::PermissionDenied), "Permission denied"),
    );
    assert!(matches!(e, Error::PermissionDenied { .. }));
    assert!(e.to_string().contains("dialout"), "{e}");
    let other = hashrig_hasher_asic::classify_open_error(
        "/dev/ttyUSB9",
        serialport::Error::new(serialport::ErrorKind::NoDevice, "No such file or directory"),
    );
    assert!(matches!(other, Error::Open { .. }));
}

#[test]
fn a_file_that_is_not_a_terminal_is_not_a_serial_port() {
    let err = hashrig_hasher_asic::open_serial("/dev/null").unwrap_err();
    assert!(matches!(err, Error::NotSerial { .. }), "{err:?}");
    assert_eq!(err.to_string(), "/dev/null is not a serial port (not a terminal device)");
    // Both spellings of ENOTTY.
    for text in ["Not a typewriter", "Inappropriate ioctl for device"] {
        let e = hashrig_hasher_asic::classify_open_error("/tmp/x", serialport::Error::new(serialport::ErrorKind::Unknown, text));
        assert!(matches!(e, Error::NotSerial { .. }), "{text}: {e:?}");
    }
    let missing = hashrig_hasher_asic::open_serial("/dev/hashrig-no-such-port").unwrap_err();
    assert!(matches!(missing, Error::Open { .. }), "{missing:?}");
}

/// Poll `chain` on `unit` until `done` says so (or 10 s pass).
fn poll_until(
    chain: &mut hashrig_hasher_asic::Chain<hashrig_hasher_asic::SerialLink>,
    done: impl Fn(&hashrig_hasher_asic::ChainSnapshot) -> bool,
) -> hashrig_hasher_asic::ChainSnapshot {
    let (sink, _rx) = Sink::channel();
    let t0 = Instant::now();
    loop {
        chain.poll(Duration::from_millis(5), &sink).expect("poll");
        let s = chain.stats().snapshot();
        if done(&s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "gave up waiting: {s:?}");
    }
}

#[test]
fn decoder_counts_accumulate_over_enumeration_mining_and_reinit() {
    use hashrig_hasher_asic::{Chain, ChainStats, open_serial};
    let garbage = Faults { garbage_rate: 1.0, ..Faults::default() };
    let noisy = Faults { crc_error_rate: 0.3, ..Faults::default() };
    let mut ecfg = EmulatorConfig::new(ChipType::Bm1366, 2);
    // Garbage before every response from the start: the enumeration answers come with it.
    ecfg.faults = garbage.clone();
    ecfg.hash_budget_per_job = Some(1 << 22);
    let emu = Emulator::spawn(ecfg).unwrap();
    let link = open_serial(emu.path().to_str().unwrap()).unwrap();
    let mut cfg = emulated_config(ChipType::Bm1366, 2);
    cfg.emulator_ticket_zero_bits = Some(TEST_BITS);
    let mut chain = Chain::bring_up(link, cfg, ChainStats::new()).unwrap();
    let up = chain.stats().snapshot();
    assert_eq!(up.chips, 2);
    assert!(up.skipped_bytes > 0, "garbage skipped during bring-up is counted: {up:?}");
    assert_eq!(up.valid_nonces, 0, "nothing mined yet");

    // Mining on a link that corrupts CRCs: the live decoder's rejects add to the bring-up's.
    emu.set_faults(noisy.clone()).unwrap();
    let unit = |i: u64| WorkUnit {
        id: i,
        epoch: 0,
        header: header(i as u8 + 60),
        range: NonceRange::FULL,
        target: target_for_zero_bits(TEST_BITS),
        version_mask: MASK,
    };
    chain.start_unit(&unit(1)).unwrap();
    let mined = poll_until(&mut chain, |s| s.bad_crc > 0 && s.valid_nonces > 20);
    assert!(mined.skipped_bytes >= up.skipped_bytes, "{mined:?} after {up:?}");

    // A re-init builds new decoders; their counts add to the totals instead of replacing them.
    emu.set_faults(garbage).unwrap();
    chain.reinit().unwrap();
    let again = chain.stats().snapshot();
    assert_eq!(again.reinits, 1);
    assert!(again.bad_crc >= mined.bad_crc, "bad CRCs went down across the re-init: {} -> {}", mined.bad_crc, again.bad_crc);
    assert!(
        again.skipped_bytes > mined.skipped_bytes,
        "the re-init's enumeration garbage is counted on top: {} -> {}",
        mined.skipped_bytes,
        again.skipped_bytes
    );

    // And mining after the re-init keeps adding.
    emu.set_faults(noisy).unwrap();
    chain.start_unit(&unit(2)).unwrap();
    let bad_before = again.bad_crc;
    let end = poll_until(&mut chain, |s| s.bad_crc > bad_before && s.valid_nonces > mined.valid_nonces + 20);
    assert!(end.skipped_bytes >= again.skipped_bytes);
    assert_eq!(end.hw_errors, 0, "a corrupted frame never became a nonce");
}
