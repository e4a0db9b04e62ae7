//! The engine with the real CPU hasher and with scripted fake hashers.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use hashrig_engine::{
    Candidate, Control, DeviceInfo, DiscardShares, Engine, EngineConfig, HashCount, Hasher, JobChange, Origin,
    Share, Sink, WorkUnit,
};
use hashrig_hasher::{DeviceKind, Error as HasherError, UnitOutcome};
use hashrig_hasher_cpu::{CpuConfig, CpuHasher};
use hashrig_sha256d::Target;
use hashrig_work::target::{reference_sha256d, target_from_difficulty};
use hashrig_work::{HeaderSource, Job};

fn fake_info(name: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.into(),
        kind: DeviceKind::Asic,
        kernel: "fake".into(),
        lanes: 1,
        nominal_hashrate: Some(1e6),
        hash_count: HashCount::Exact,
        version_rolling: false,
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn cpu_engine_submits_shares_that_verify_with_the_reference() {
    let cpu = CpuHasher::new(&CpuConfig { threads: Some(1), ..Default::default() }).unwrap();
    let (tx, rx) = mpsc::channel::<Share>();
    let cfg = EngineConfig { first_unit_hashes: 1 << 16, sample_interval: Duration::from_millis(20), ..Default::default() };
    let engine = Engine::start(vec![Box::new(cpu)], tx, cfg).unwrap();
    // About one share per 4096 hashes.
    let share_target = target_from_difficulty(1.0 / 1_048_576.0).unwrap();
    assert_eq!(engine.set_job(Job::synthetic("s1", 42, share_target)), JobChange::Replaced { epoch: 1 });
    let mut shares = Vec::new();
    wait_until("20 shares and 3 samples", || {
        shares.extend(rx.try_iter());
        shares.len() >= 20 && engine.stats().samples.len() >= 3
    });
    let stats = engine.stop();
    shares.extend(rx.try_iter());
    assert_eq!(stats.shares, shares.len() as u64);
    assert_eq!(stats.hw_errors, 0);
    assert!(stats.hashes >= 20 * 1000, "{} hashes for {} shares", stats.hashes, shares.len());
    for s in &shares {
        assert_eq!(s.job_id, "s1");
        assert_eq!(u32::from_le_bytes(s.header[76..80].try_into().unwrap()), s.nonce);
        assert_eq!(reference_sha256d(&s.header), s.digest);
        assert!(share_target.is_met_by(&s.digest));
        assert!(s.difficulty >= 1.0 / 1_048_576.0);
        // Difficulty-1 nbits: a block is a hash of difficulty >= 1.
        assert_eq!(s.is_block, s.difficulty >= 1.0);
    }
    assert!(stats.samples.len() >= 2, "samples every 20 ms: {:?}", stats.samples);
    assert!(stats.samples.windows(2).all(|w| w[0].t_s < w[1].t_s && w[0].hashes <= w[1].hashes));
    assert_eq!(stats.samples.last().unwrap().hashes, stats.hashes);
    let serialized = serde_json::to_value(&stats).unwrap();
    assert_eq!(serialized["devices"][0]["info"]["kind"], "cpu");
}

/// Reports, for every unit, a nonce that does not meet the target, from chip 3 core 5.
struct LyingHasher(DeviceInfo);

impl Hasher for LyingHasher {
    fn info(&self) -> &DeviceInfo {
        &self.0
    }

    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, HasherError> {
        // Find a nonce whose hash misses the (hard) target: almost any.
        let nonce = unit.range.start();
        sink.push(Candidate { unit_id: unit.id, nonce, version: unit.version(), origin: Origin { chip: Some(3), core: Some(5) } });
        ctl.add_hashes(unit.range.count());
        std::thread::sleep(Duration::from_millis(20));
        Ok(UnitOutcome { hashes: unit.range.count(), completed: true })
    }
}

#[test]
fn candidates_failing_verification_are_hardware_errors_per_chip_and_never_submitted() {
    let (tx, rx) = mpsc::channel::<Share>();
    let engine = Engine::start(vec![Box::new(LyingHasher(fake_info("liar")))], tx, EngineConfig::default()).unwrap();
    engine.set_job(Job::synthetic("j", 1, target_from_difficulty(1e6).unwrap()));
    wait_until("3 hardware errors", || engine.stats().hw_errors >= 3);
    let stats = engine.stop();
    assert_eq!(rx.try_iter().count(), 0, "a failing candidate was submitted");
    assert_eq!(stats.shares, 0);
    let dev = &stats.devices[0];
    assert_eq!(dev.hw_errors, stats.hw_errors);
    assert_eq!(dev.valid_nonces, 0);
    assert_eq!(dev.hw_errors_by_origin.len(), 1);
    assert_eq!((dev.hw_errors_by_origin[0].chip, dev.hw_errors_by_origin[0].core), (Some(3), Some(5)));
    assert_eq!(dev.hw_errors_by_origin[0].count, dev.hw_errors);
}

/// Hands each unit to the test and pushes its first nonce only when the test says go.
struct ScriptedHasher {
    info: DeviceInfo,
    units: mpsc::Sender<WorkUnit>,
    go: mpsc::Receiver<()>,
}

impl Hasher for ScriptedHasher {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, HasherError> {
        let _ = self.units.send(unit.clone());
        loop {
            match self.go.recv_timeout(Duration::from_millis(10)) {
                Ok(()) => break,
                Err(_) if ctl.is_shutdown() => return Ok(UnitOutcome { hashes: 0, completed: false }),
                Err(_) => {}
            }
        }
        sink.push(Candidate { unit_id: unit.id, nonce: unit.range.start(), version: unit.version(), origin: Origin::default() });
        ctl.add_hashes(1);
        Ok(UnitOutcome { hashes: 1, completed: !ctl.is_stale(unit) })
    }
}

fn scripted() -> (Engine, mpsc::Receiver<WorkUnit>, mpsc::Sender<()>, mpsc::Receiver<Share>) {
    let (unit_tx, unit_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let (share_tx, share_rx) = mpsc::channel();
    let h = ScriptedHasher { info: fake_info("scripted"), units: unit_tx, go: go_rx };
    let engine = Engine::start(vec![Box::new(h)], share_tx, EngineConfig::default()).unwrap();
    (engine, unit_rx, go_tx, share_rx)
}

fn any_share_job(id: &str, seed: u64, clean: bool) -> Job {
    // Every hash meets the maximum target: each pushed nonce is a valid share.
    Job { clean, ..Job::synthetic(id, seed, Target::MAX) }
}

#[test]
fn replace_job_makes_in_flight_shares_stale_and_unsubmitted() {
    let (engine, units, go, shares) = scripted();
    engine.set_job(any_share_job("old", 1, true));
    let first = units.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(engine.set_job(any_share_job("new", 2, true)), JobChange::Replaced { epoch: 2 }));
    go.send(()).unwrap();
    wait_until("the stale share to be counted", || engine.stats().stale == 1);
    assert!(shares.try_iter().next().is_none(), "a stale share was submitted");
    // The next unit belongs to the new job and its share goes out.
    let second = units.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_ne!(second.epoch, first.epoch);
    go.send(()).unwrap();
    let share = shares.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(share.job_id, "new");
    let stats = engine.stop();
    assert_eq!((stats.stale, stats.shares, stats.hw_errors), (1, 1, 0));
}

#[test]
fn update_job_keeps_in_flight_shares_valid() {
    let (engine, units, go, shares) = scripted();
    engine.set_job(any_share_job("old", 1, true));
    let _first = units.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(engine.set_job(any_share_job("update", 2, false)), JobChange::Updated);
    go.send(()).unwrap();
    let share = shares.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(share.job_id, "old", "the in-flight unit's share belongs to the job it was cut from");
    let second = units.recv_timeout(Duration::from_secs(5)).unwrap();
    go.send(()).unwrap();
    let share2 = shares.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(share2.job_id, "update");
    assert_eq!(second.epoch, 1);
    let stats = engine.stop();
    assert_eq!((stats.stale, stats.shares), (0, 2));
}

/// Completes every unit at once and reports which header and range it got.
struct RecordingHasher {
    info: DeviceInfo,
    seen: mpsc::Sender<([u8; 80], u64, u64)>,
    delay: Duration,
}

impl Hasher for RecordingHasher {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, _sink: &Sink) -> Result<UnitOutcome, HasherError> {
        let _ = self.seen.send((unit.header, u64::from(unit.range.start()), unit.range.end()));
        ctl.add_hashes(unit.range.count());
        std::thread::sleep(self.delay);
        Ok(UnitOutcome { hashes: unit.range.count(), completed: true })
    }
}

#[test]
fn units_never_overlap_and_a_fixed_header_runs_out_after_its_nonces() {
    let (tx, rx) = mpsc::channel();
    let mut info = fake_info("rec");
    info.nominal_hashrate = Some(3e8); // ~0.3 G nonces per unit: 15 units per header
    let hashers: Vec<Box<dyn Hasher>> = (0..2).map(|_| Box::new(RecordingHasher { info: info.clone(), seen: tx.clone(), delay: Duration::from_millis(1) }) as Box<dyn Hasher>).collect();
    drop(tx);
    let engine = Engine::start(hashers, DiscardShares, EngineConfig::default()).unwrap();
    let header = [5u8; 80];
    engine.set_job(Job { id: "fixed".into(), source: HeaderSource::Fixed(header), share_target: Target::MAX, clean: true });
    let mut covered = 0u64;
    let mut ranges = Vec::new();
    while covered < 1 << 32 {
        let (h, start, end) = rx.recv_timeout(Duration::from_secs(5)).expect("units until the header is swept");
        assert_eq!(h[..76], header[..76]);
        covered += end - start;
        ranges.push((start, end));
    }
    // No more units: the fixed job has one header only.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "units beyond the fixed header's nonces");
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap: {:?}", w);
    }
    assert_eq!(ranges.first().unwrap().0, 0);
    assert_eq!(ranges.last().unwrap().1, 1 << 32);
    let stats = engine.stop();
    assert_eq!(stats.hashes, 1 << 32);
}

/// Always fails.
struct BrokenHasher(DeviceInfo);

impl Hasher for BrokenHasher {
    fn info(&self) -> &DeviceInfo {
        &self.0
    }

    fn hash(&mut self, _unit: &WorkUnit, _ctl: &Control, _sink: &Sink) -> Result<UnitOutcome, HasherError> {
        Err(HasherError::Device { device: self.0.name.clone(), source: "serial port vanished".into() })
    }
}

#[test]
fn a_device_failing_repeatedly_is_dropped_and_its_error_kept() {
    let engine = Engine::start(vec![Box::new(BrokenHasher(fake_info("broken")))], DiscardShares, EngineConfig::default()).unwrap();
    engine.set_job(Job::synthetic("j", 1, Target::MAX));
    wait_until("the device to be dropped", || engine.stats().devices[0].failed);
    let stats = engine.stop();
    assert_eq!(stats.devices[0].device_errors, 3);
    assert!(stats.devices[0].last_error.as_deref().unwrap().contains("serial port vanished"));
}

#[test]
fn an_engine_without_hashers_is_refused() {
    assert!(Engine::start(Vec::new(), DiscardShares, EngineConfig::default()).is_err());
}

#[test]
fn the_first_unit_is_sized_by_the_nominal_rate_and_later_ones_by_the_measured_rate() {
    let (tx, rx) = mpsc::channel();
    let mut info = fake_info("sized");
    info.nominal_hashrate = Some(2_000_000.0);
    let h = RecordingHasher { info, seen: tx, delay: Duration::from_millis(10) };
    let cfg = EngineConfig { unit_seconds: 0.5, ..Default::default() };
    let engine = Engine::start(vec![Box::new(h)], DiscardShares, cfg).unwrap();
    engine.set_job(Job::synthetic("j", 1, Target::MAX));
    let (_, start, end) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(end - start, 1_000_000, "0.5 s at the nominal 2 MH/s");
    // The recording hasher "hashes" a unit in about 10 ms (~100 MH/s): far faster than nominal,
    // so the following units grow.
    let mut last = 0;
    for _ in 0..5 {
        let (_, s, e) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        last = e - s;
    }
    assert!(last > 1_000_000, "units did not follow the measured rate: {last}");
    engine.stop();
}

#[test]
fn a_paused_device_takes_no_work_until_resumed_and_the_other_goes_on() {
    let cpu = |_| CpuHasher::new(&CpuConfig { threads: Some(1), ..Default::default() }).unwrap();
    let cfg = EngineConfig { first_unit_hashes: 1 << 16, unit_seconds: 0.05, ..Default::default() };
    let engine = Engine::start(vec![Box::new(cpu(0)), Box::new(cpu(1))], DiscardShares, cfg).unwrap();
    engine.set_job(Job::synthetic("p", 7, target_from_difficulty(1.0).unwrap()));
    let hashes = |i: usize| engine.stats().devices[i].hashes;
    wait_until("both devices hash", || hashes(0) > 0 && hashes(1) > 0);

    let pause = engine.device_pause();
    assert!(!pause.set_enabled(2, false), "there is no device 2");
    assert!(pause.set_enabled(0, false));
    assert!(engine.stats().devices[0].paused);
    // The unit in hand (~50 ms) ends; after that device 0's count stays put while 1's grows.
    std::thread::sleep(Duration::from_millis(400));
    let (p0, p1) = (hashes(0), hashes(1));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(hashes(0), p0, "a paused device hashed");
    assert!(hashes(1) > p1, "the other device stopped too");

    assert!(pause.set_enabled(0, true));
    assert!(!engine.stats().devices[0].paused);
    wait_until("device 0 hashes again", || hashes(0) > p0);
    engine.stop();
}

/// Finishes every unit at once, pushes its first nonce (a share under the maximum target) and
/// reports the unit's header.
struct InstantHasher {
    info: DeviceInfo,
    seen: mpsc::Sender<[u8; 80]>,
}

impl Hasher for InstantHasher {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, HasherError> {
        let _ = self.seen.send(unit.header);
        sink.push(Candidate { unit_id: unit.id, nonce: unit.range.start(), version: unit.version(), origin: Origin::default() });
        ctl.add_hashes(unit.range.count());
        Ok(UnitOutcome { hashes: unit.range.count(), completed: true })
    }
}

/// A pool job with a 1-byte extranonce2 (256 headers) and no version rolling.
fn tiny_extranonce2_job(ntime: u32) -> hashrig_work::job::CoinbaseJob {
    use bitcoin::hashes::Hash;
    hashrig_work::job::CoinbaseJob {
        prev_hash: bitcoin::BlockHash::from_byte_array([7; 32]),
        coinb1: vec![1, 2, 3, 4],
        extranonce1: vec![0xe1, 0xe2],
        extranonce2_size: 1,
        coinb2: vec![5, 6, 7],
        merkle_branch: vec![bitcoin::TxMerkleNode::from_byte_array([9; 32])],
        version: bitcoin::block::Version::from_consensus(0x2000_0000),
        version_mask: 0,
        nbits: bitcoin::CompactTarget::from_consensus(0x1d00_ffff),
        ntime,
    }
}

#[test]
fn when_the_extranonce2_space_runs_out_ntime_rolls_forward_and_shares_carry_it() {
    const NTIME: u32 = 1_700_000_000;
    let cb = tiny_extranonce2_job(NTIME);
    let (tx, rx) = mpsc::channel();
    let mut info = fake_info("instant");
    // Whole-space units, like an ASIC chain: one unit per header.
    info.lanes = 1 << 32;
    info.nominal_hashrate = Some(1e15);
    let (share_tx, share_rx) = mpsc::channel::<Share>();
    let engine = Engine::start(vec![Box::new(InstantHasher { info, seen: tx })], share_tx, EngineConfig::default()).unwrap();
    engine.set_job(Job { id: "tiny".into(), source: HeaderSource::Coinbase(cb.clone()), share_target: Target::MAX, clean: true });
    // 256 extranonce2 values x 2^32 nonces, then the same 256 again with ntime + 1, + 2.
    let mut headers = std::collections::HashSet::new();
    for i in 0..3 * 256 + 10 {
        let h = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("no unit after {i} units: the engine idles once the extranonce2 space is gone"));
        assert!(headers.insert(h), "unit {i} repeats a header: the same work twice");
    }
    let stats = engine.stop();
    // The instant hasher runs ahead of this loop until the stop: count every unit it took, so
    // the bound on the roll is one second per 256 headers actually handed out.
    let units = (3 * 256 + 10 + rx.try_iter().count()) as u32;
    let shares: Vec<Share> = share_rx.try_iter().collect();
    assert_eq!(stats.hw_errors, 0);
    assert!(shares.len() > 3 * 256, "{} shares", shares.len());
    let mut rolled = 0;
    for s in &shares {
        assert!(s.ntime >= NTIME && s.ntime <= NTIME + units.div_ceil(256), "ntime {} rolled too far for {units} units", s.ntime);
        assert_eq!(u32::from_le_bytes(s.header[68..72].try_into().unwrap()), s.ntime, "the header carries the share's ntime");
        // What a pool rebuilds from the share's fields must be the header that was hashed.
        let rebuilt = cb.header(&s.extranonce2, s.ntime, s.version, s.nonce).unwrap();
        assert_eq!(hashrig_work::job::header_bytes(&rebuilt), s.header);
        assert_eq!(reference_sha256d(&s.header), s.digest);
        rolled += usize::from(s.ntime > NTIME);
    }
    assert!(rolled > 256, "only {rolled} shares with a rolled ntime");
}

#[test]
fn the_same_header_source_again_continues_the_scan_instead_of_starting_over() {
    // A job given again with the same header source (a new share target, a pool resending
    // its job) must not hand out the work already swept: that would find the same shares
    // again, which pools reject as duplicates.
    let (engine, units, go, _shares) = scripted();
    let cb = tiny_extranonce2_job(1_700_000_000);
    let job = |target: Target| Job { id: "same".into(), source: HeaderSource::Coinbase(cb.clone()), share_target: target, clean: false };
    engine.set_job(job(Target::MAX));
    let mut swept = std::collections::HashSet::new();
    for _ in 0..3 {
        let u = units.recv_timeout(Duration::from_secs(5)).expect("a unit");
        swept.insert((u.header, u.range.start()));
        go.send(()).unwrap();
    }
    engine.set_job(job(Target([0x7f; 32])));
    for _ in 0..4 {
        let u = units.recv_timeout(Duration::from_secs(5)).expect("a unit");
        assert!(!swept.contains(&(u.header, u.range.start())), "work already swept handed out again: {:?}", u.range);
        swept.insert((u.header, u.range.start()));
        go.send(()).unwrap();
    }
    engine.stop();
}

#[test]
fn a_job_given_back_after_another_goes_on_from_where_its_scan_stopped() {
    // Failover to pool B and back to A, whose session resumed with the same job: A's headers
    // already swept must not be handed out again.
    let (engine, units, go, _shares) = scripted();
    let a = tiny_extranonce2_job(1_700_000_000);
    let b = tiny_extranonce2_job(1_700_000_500);
    let job = |cb: &hashrig_work::job::CoinbaseJob, id: &str| Job { id: id.into(), source: HeaderSource::Coinbase(cb.clone()), share_target: Target::MAX, clean: true };
    let mut swept = std::collections::HashSet::new();
    let mut take = |n: usize, check: bool| {
        for _ in 0..n {
            let u = units.recv_timeout(Duration::from_secs(5)).expect("a unit");
            let fresh = swept.insert((u.header, u.range.start()));
            assert!(!check || fresh, "work already swept handed out again: {:?}", u.range);
            go.send(()).unwrap();
        }
    };
    engine.set_job(job(&a, "a1"));
    take(3, true);
    engine.set_job(job(&b, "b1"));
    // The unit in hand when B came may still be A's.
    take(3, false);
    engine.set_job(job(&a, "a2"));
    take(1, false);
    take(4, true);
    engine.stop();
}

/// A hasher with a health probe whose reading changes while it runs.
#[derive(Debug, Default)]
struct ProbedChain(std::sync::atomic::AtomicU64);

impl hashrig_engine::HealthProbe for ProbedChain {
    fn sample(&self) -> hashrig_engine::Health {
        let n = self.0.load(std::sync::atomic::Ordering::Relaxed);
        hashrig_engine::Health::Chain(hashrig_engine::ChainSnapshot {
            chip: "bm1370".into(),
            chips: 1,
            expected_chips: None,
            missing_chips: 0,
            mhz: 500.0,
            nominal_hashrate: 1e12,
            ticket_difficulty: 256.0,
            estimate: hashrig_hasher::estimate::estimate(n, 256.0, 1.0),
            valid_nonces: n,
            hw_errors: 0,
            duplicates: 0,
            late: 0,
            superseded: 0,
            unknown_job: 0,
            bad_crc: 0,
            skipped_bytes: 0,
            jobs_sent: 0,
            flushes: 0,
            reinits: 0,
            missed_heartbeats: 0,
            model_watts: None,
            model_j_per_th_at_nominal: None,
            emulator_true_hashrate: None,
            per_chip: Vec::new(),
        })
    }
}

struct ChainHasher(DeviceInfo, std::sync::Arc<ProbedChain>);

impl Hasher for ChainHasher {
    fn info(&self) -> &DeviceInfo {
        &self.0
    }

    fn hash(&mut self, _unit: &WorkUnit, _ctl: &Control, _sink: &Sink) -> Result<UnitOutcome, HasherError> {
        self.1.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        Ok(UnitOutcome { hashes: 0, completed: true })
    }

    fn health_probe(&self) -> Option<std::sync::Arc<dyn hashrig_engine::HealthProbe>> {
        Some(self.1.clone())
    }
}

#[test]
fn the_engine_samples_each_hashers_health_probe_with_its_stats_and_none_for_hashers_without_one() {
    let probe = std::sync::Arc::new(ProbedChain::default());
    let hashers: Vec<Box<dyn Hasher>> =
        vec![Box::new(BrokenHasher(fake_info("no probe"))), Box::new(ChainHasher(fake_info("chain"), probe.clone()))];
    let engine = Engine::start(hashers, DiscardShares, EngineConfig::default()).unwrap();
    engine.set_job(Job::synthetic("j", 1, Target::MAX));
    let valid = |s: &hashrig_engine::Stats| s.devices[1].health.as_ref().and_then(|h| h.chain()).map(|c| c.valid_nonces);
    wait_until("the probe to move", || valid(&engine.stats()).is_some_and(|n| n >= 3));
    let stats = engine.stop();
    assert!(stats.devices[0].health.is_none());
    // Sampled at the stop, not at the start: the final stats read the final count.
    assert_eq!(valid(&stats), Some(probe.0.load(std::sync::atomic::Ordering::Relaxed)));
}
