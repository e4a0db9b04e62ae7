//! The mining engine: a job goes in, work units go to hashers (one thread each), every
//! candidate they return is re-verified with the portable reference hash, and what survives
//! comes out as shares (and blocks) through a [`ShareSink`] the caller provides.
//!
//! What it is for:
//! - cutting a [`Job`]'s headers into [`WorkUnit`]s sized by time (about
//!   [`EngineConfig::unit_seconds`] of work for each device, from its measured or nominal rate);
//! - re-verifying every [`Candidate`] with `sha2` (through `hashrig_work::target`), never with
//!   the kernel that found it: a candidate that does not meet its unit's target is a hardware
//!   error, counted per device and per chip/core ([`Origin`]), and never submitted;
//! - telling an *update* (shares of older jobs stay valid) from a *replace* (`Job::clean`: the
//!   epoch moves on, hashers drop stale work, and shares found on it are counted stale, not
//!   submitted);
//! - counting: hashes, shares, blocks, stale, hardware errors, and samples over time ([`Stats`]).
//!
//! What it is not for: talking to pools or nodes (the caller's [`ShareSink`] does that and
//! reports back with [`Engine::share_result`]), or writing blocks to disk.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use hashrig_hasher::{Candidate, Control, DeviceInfo, DeviceKind, HashCount, Hasher, Origin, Sink, WorkUnit};
pub use hashrig_hasher::estimate::j_per_th;
pub use hashrig_hasher::health::{ChainSnapshot, Health, HealthProbe};
use hashrig_sha256d::{NonceRange, Target};
use hashrig_work::target::{difficulty_of_target, hash_difficulty, reference_sha256d};
use hashrig_work::{Job, PreparedHeader};

/// Errors starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the engine needs at least one hasher")]
    NoHashers,
    #[error("cannot start the engine's {what} thread")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Tuning.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Seconds of work per unit (about 1 for CPU and GPU).
    pub unit_seconds: f64,
    /// Size of the first unit of a device with no nominal rate (later ones use its measured rate).
    pub first_unit_hashes: u64,
    /// The smallest unit handed out.
    pub min_unit_hashes: u64,
    /// How often a [`Sample`] is taken.
    pub sample_interval: Duration,
    /// Samples kept (the oldest are dropped).
    pub max_samples: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            unit_seconds: 1.0,
            first_unit_hashes: 1 << 22,
            min_unit_hashes: 1 << 16,
            sample_interval: Duration::from_secs(1),
            max_samples: 86_400,
        }
    }
}

/// A verified share (or block) ready to submit.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub extranonce2_counter: u64,
    pub ntime: u32,
    pub nonce: u32,
    /// The header version the nonce was found with (rolled within the job's mask, or the job's).
    pub version: u32,
    /// The full header, nonce included.
    pub header: [u8; 80],
    /// Raw sha256d digest of the header (display order is its reverse).
    pub digest: [u8; 32],
    /// The share difficulty of the hash.
    pub difficulty: f64,
    /// It meets the network target too: a block.
    pub is_block: bool,
    /// Index of the device (in the order the hashers were given).
    pub device: usize,
    pub origin: Origin,
}

/// Where verified shares go. Called from the engine's verifier thread.
pub trait ShareSink: Send + 'static {
    fn submit(&mut self, share: Share);
}

impl ShareSink for mpsc::Sender<Share> {
    fn submit(&mut self, share: Share) {
        // A closed receiver means the caller stopped listening; the share is counted anyway.
        let _ = self.send(share);
    }
}

/// Drops shares (benchmarks): they are still verified and counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardShares;

impl ShareSink for DiscardShares {
    fn submit(&mut self, _share: Share) {}
}

/// What [`Engine::set_job`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobChange {
    /// Older work became stale (clean job, or the first job).
    Replaced { epoch: u64 },
    /// New units use the new job; work in flight stays valid.
    Updated,
}

/// Hardware errors of one chip/core.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OriginErrors {
    pub chip: Option<u16>,
    pub core: Option<u16>,
    pub count: u64,
}

/// One device's counters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeviceStats {
    pub index: usize,
    pub info: DeviceInfo,
    /// Hashes done (exact devices) or estimated by the device (ASIC).
    pub hashes: u64,
    /// Hashes per second over the run.
    pub hashrate: f64,
    /// 95 % confidence interval of the hashrate when it is estimated from returned nonces;
    /// null when the count is exact.
    pub hashrate_ci95: Option<[f64; 2]>,
    /// Candidates that verified against their unit's target.
    pub valid_nonces: u64,
    /// Candidates that did not: never submitted.
    pub hw_errors: u64,
    pub hw_errors_by_origin: Vec<OriginErrors>,
    /// Errors the hasher itself returned.
    pub device_errors: u64,
    pub last_error: Option<String>,
    /// The device failed repeatedly and was dropped from the run.
    pub failed: bool,
    /// Paused through [`Engine::device_pause`] (takes no new work until resumed).
    pub paused: bool,
    /// The device's own telemetry (per-chip health of an ASIC chain), sampled with these
    /// stats; none for hashers without a probe. Not serialized here: reports carry it once
    /// (a bench report's `asic_chains`, the view's per-chip health).
    #[serde(skip)]
    pub health: Option<Health>,
}

/// Totals at one moment.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds since the engine started.
    pub t_s: f64,
    pub hashes: u64,
    pub shares: u64,
    pub hw_errors: u64,
}

/// A snapshot of everything the engine counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    pub elapsed_s: f64,
    pub hashes: u64,
    /// Hashes per second over the whole run.
    pub hashrate: f64,
    /// Shares found on current work and handed to the sink.
    pub shares: u64,
    /// Of those, blocks.
    pub blocks: u64,
    /// Shares found on work a clean job made stale: counted, not submitted.
    pub stale: u64,
    /// Results the caller reported back.
    pub accepted: u64,
    pub rejected: u64,
    pub hw_errors: u64,
    /// Candidates naming a unit the engine no longer knows (too old): counted, not submitted.
    pub unknown_candidates: u64,
    pub jobs: u64,
    pub epoch: u64,
    pub devices: Vec<DeviceStats>,
    pub samples: Vec<Sample>,
}

#[derive(Debug)]
struct UnitHeader {
    job: Arc<Job>,
    prepared: PreparedHeader,
}

#[derive(Clone, Debug)]
struct UnitRecord {
    header: Arc<UnitHeader>,
    epoch: u64,
    target: Target,
    version_mask: u32,
    range: NonceRange,
    device: usize,
}

#[derive(Debug, Default)]
struct Dispatch {
    epoch: u64,
    job: Option<Arc<Job>>,
    next_counter: u64,
    /// Seconds ntime is rolled past the job's: it moves on by one each time every extranonce2
    /// value has been handed out (up to [`Job::ntime_roll_limit`]).
    ntime_offset: u32,
    current: Option<(Arc<UnitHeader>, NonceRange)>,
    next_unit_id: u64,
    units: BTreeMap<u64, UnitRecord>,
    /// Where the scans of recent jobs stopped (header source, next extranonce2 counter, ntime
    /// offset), newest last: a job given back (a failback to a pool that resumed its session)
    /// goes on from there instead of finding its shares again.
    left_scans: VecDeque<(hashrig_work::HeaderSource, u64, u32)>,
}

/// Scans of earlier jobs remembered for [`Dispatch::left_scans`]: as many as the miner keeps
/// jobs in its book (64), so a pool's job that the miner still knows is never scanned twice.
/// With 16, the soak's failbacks to a session-resuming pool after a busy stint on another found
/// 274 shares a second time in 90 s; with 64, none. A source is about 1 KB.
const LEFT_SCANS: usize = 64;

/// Unit records kept for verification; older ones are forgotten.
const MAX_UNIT_RECORDS: usize = 1 << 16;

#[derive(Debug, Default)]
struct DevCounters {
    valid_nonces: u64,
    hw_errors: u64,
    hw_by_origin: HashMap<Origin, u64>,
    device_errors: u64,
    last_error: Option<String>,
    failed: bool,
    /// Sum over valid nonces of their unit target's difficulty (for estimated devices).
    nonce_difficulty_sum: f64,
}

#[derive(Debug, Default)]
struct Counters {
    devices: Vec<DevCounters>,
    shares: u64,
    blocks: u64,
    stale: u64,
    accepted: u64,
    rejected: u64,
    unknown_candidates: u64,
    jobs: u64,
    samples: VecDeque<Sample>,
}

#[derive(Debug)]
struct Shared {
    cfg: EngineConfig,
    started: Instant,
    controls: Vec<Control>,
    infos: Vec<DeviceInfo>,
    /// Each device's health probe, if its hasher offers one (taken at start).
    probes: Vec<Option<Arc<dyn HealthProbe>>>,
    dispatch: Mutex<Dispatch>,
    work_ready: Condvar,
    counters: Mutex<Counters>,
    stopping: AtomicBool,
    paused: DevicePause,
}

/// Pauses and resumes single devices of a running engine; cheap to clone, usable from any
/// thread. A paused device finishes the unit it holds (at most about one unit's time, a
/// second on CPU/GPU) and then takes no new work until it is resumed; the others go on.
#[derive(Clone, Debug)]
pub struct DevicePause(Arc<[AtomicBool]>);

impl DevicePause {
    fn new(devices: usize) -> Self {
        Self((0..devices).map(|_| AtomicBool::new(false)).collect())
    }

    /// Pause (`enabled` false) or resume device `index`; false when there is no such device.
    pub fn set_enabled(&self, index: usize, enabled: bool) -> bool {
        match self.0.get(index) {
            Some(flag) => {
                flag.store(!enabled, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Is device `index` paused?
    pub fn is_paused(&self, index: usize) -> bool {
        self.0.get(index).is_some_and(|f| f.load(Ordering::Acquire))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking hasher thread must not take the counters down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn next_unit(&self, device: usize, size: u64) -> Option<WorkUnit> {
        let mut d = lock(&self.dispatch);
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return None;
            }
            if self.paused.is_paused(device) {
                // Wait for a resume; the timeout below re-checks every 100 ms.
            } else if let Some(unit) = self.cut_unit(&mut d, device, size) {
                return Some(unit);
            }
            d = self.work_ready.wait_timeout(d, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn cut_unit(&self, d: &mut Dispatch, device: usize, size: u64) -> Option<WorkUnit> {
        let job = d.job.clone()?;
        let need_header = match &d.current {
            None => true,
            Some((_, rest)) => rest.is_empty(),
        };
        if need_header {
            if d.next_counter >= job.extranonce2_space() {
                if d.ntime_offset >= job.ntime_roll_limit() {
                    return None; // This job has no more headers: wait for the next one.
                }
                // Every extranonce2 value is used: start over one second later.
                d.ntime_offset += 1;
                d.next_counter = 0;
                tracing::debug!(job = %job.id, ntime_offset = d.ntime_offset, "extranonce2 space used up: ntime rolled");
            }
            let counter = d.next_counter;
            d.next_counter += 1;
            match job.header_rolled(counter, d.ntime_offset) {
                Ok(prepared) => {
                    d.current = Some((Arc::new(UnitHeader { job: job.clone(), prepared }), NonceRange::FULL));
                }
                Err(error) => {
                    tracing::error!(job = %job.id, counter, %error, "cannot build a header for this job");
                    d.current = None;
                    // No header of this job will build: no extranonce2 or ntime roll either.
                    d.next_counter = u64::MAX;
                    d.ntime_offset = u32::MAX;
                    return None;
                }
            }
        }
        let (header, rest) = d.current.as_mut().expect("a header is ready");
        let range = rest.take_front(size);
        let header = header.clone();
        let id = d.next_unit_id;
        d.next_unit_id += 1;
        let version_mask = if self.infos[device].version_rolling { job.version_mask() } else { 0 };
        let unit = WorkUnit {
            id,
            epoch: d.epoch,
            header: header.prepared.bytes,
            range,
            target: job.share_target,
            version_mask,
        };
        d.units.insert(id, UnitRecord { header, epoch: d.epoch, target: job.share_target, version_mask, range, device });
        while d.units.len() > MAX_UNIT_RECORDS {
            d.units.pop_first();
        }
        Some(unit)
    }

    fn verify(&self, c: Candidate, sink: &mut dyn ShareSink) {
        let (record, epoch) = {
            let d = lock(&self.dispatch);
            (d.units.get(&c.unit_id).cloned(), d.epoch)
        };
        let Some(rec) = record else {
            lock(&self.counters).unknown_candidates += 1;
            tracing::warn!(unit = c.unit_id, "candidate for a unit the engine no longer knows");
            return;
        };
        let mut header = rec.header.prepared.bytes;
        let job_version = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let version_ok = (c.version ^ job_version) & !rec.version_mask == 0;
        header[0..4].copy_from_slice(&c.version.to_le_bytes());
        header[76..80].copy_from_slice(&c.nonce.to_le_bytes());
        let digest = reference_sha256d(&header);
        let valid = version_ok && rec.range.contains(c.nonce) && rec.target.is_met_by(&digest);
        let mut k = lock(&self.counters);
        let dev = &mut k.devices[rec.device];
        if !valid {
            dev.hw_errors += 1;
            *dev.hw_by_origin.entry(c.origin).or_default() += 1;
            tracing::warn!(device = rec.device, chip = ?c.origin.chip, core = ?c.origin.core, nonce = c.nonce, "hardware error: candidate fails verification");
            return;
        }
        dev.valid_nonces += 1;
        dev.nonce_difficulty_sum += difficulty_of_target(&rec.target);
        let job = &rec.header.job;
        if !job.share_target.is_met_by(&digest) {
            return; // A valid nonce for an easier unit target, below share difficulty.
        }
        if rec.epoch != epoch {
            k.stale += 1;
            tracing::debug!(job = %job.id, nonce = c.nonce, "stale share (a clean job replaced its work)");
            return;
        }
        let is_block = job.network_target().is_met_by(&digest);
        k.shares += 1;
        if is_block {
            k.blocks += 1;
        }
        drop(k);
        let p = &rec.header.prepared;
        sink.submit(Share {
            job_id: job.id.clone(),
            extranonce2: p.extranonce2.clone(),
            extranonce2_counter: p.extranonce2_counter,
            ntime: p.ntime,
            nonce: c.nonce,
            version: c.version,
            header,
            digest,
            difficulty: hash_difficulty(&digest),
            is_block,
            device: rec.device,
            origin: c.origin,
        });
    }

    fn total_hashes(&self) -> u64 {
        self.controls.iter().map(Control::hashes).sum()
    }

    fn take_sample(&self) {
        let hashes = self.total_hashes();
        let t_s = self.started.elapsed().as_secs_f64();
        let mut k = lock(&self.counters);
        let hw_errors = k.devices.iter().map(|d| d.hw_errors).sum();
        let s = Sample { t_s, hashes, shares: k.shares, hw_errors };
        k.samples.push_back(s);
        while k.samples.len() > self.cfg.max_samples {
            k.samples.pop_front();
        }
    }

    fn snapshot(&self) -> Stats {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let epoch = lock(&self.dispatch).epoch;
        // Probes first: a probe takes its hasher's own lock, never while ours is held.
        let mut health: Vec<Option<Health>> = self.probes.iter().map(|p| p.as_ref().map(|p| p.sample())).collect();
        let k = lock(&self.counters);
        let per_sec = |h: f64| if elapsed_s > 0.0 { h / elapsed_s } else { 0.0 };
        let devices: Vec<DeviceStats> = k
            .devices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let hashes = self.controls[index].hashes();
                let info = self.infos[index].clone();
                let (hashrate, hashrate_ci95) = match info.hash_count {
                    HashCount::Exact => (per_sec(hashes as f64), None),
                    HashCount::Estimated { ticket_difficulty } => estimate(c, hashes, ticket_difficulty, elapsed_s),
                };
                let mut by_origin: Vec<OriginErrors> = c
                    .hw_by_origin
                    .iter()
                    .map(|(o, n)| OriginErrors { chip: o.chip, core: o.core, count: *n })
                    .collect();
                by_origin.sort_by_key(|o| (o.chip, o.core));
                DeviceStats {
                    index,
                    info,
                    hashes,
                    hashrate,
                    hashrate_ci95,
                    valid_nonces: c.valid_nonces,
                    hw_errors: c.hw_errors,
                    hw_errors_by_origin: by_origin,
                    device_errors: c.device_errors,
                    last_error: c.last_error.clone(),
                    failed: c.failed,
                    paused: self.paused.is_paused(index),
                    health: health.get_mut(index).and_then(Option::take),
                }
            })
            .collect();
        let hashes = devices.iter().map(|d| d.hashes).sum::<u64>();
        Stats {
            elapsed_s,
            hashes,
            hashrate: devices.iter().map(|d| d.hashrate).sum(),
            shares: k.shares,
            blocks: k.blocks,
            stale: k.stale,
            accepted: k.accepted,
            rejected: k.rejected,
            hw_errors: devices.iter().map(|d| d.hw_errors).sum(),
            unknown_candidates: k.unknown_candidates,
            jobs: k.jobs,
            epoch,
            devices,
            samples: k.samples.iter().copied().collect(),
        }
    }
}

/// Hashrate of a device whose count is estimated from returned nonces, with its 95 % interval.
///
/// The device's hash counter is what it credited for valid nonces at its ticket difficulty
/// (`ticket_difficulty * 2^32` hashes each; the ASIC driver counts a nonce only after checking
/// it meets the ticket), so `hashes / (ticket_difficulty * 2^32)` is that nonce count: the rate
/// is `hashes / elapsed`, consistent with the reported hash total, and the interval is Garwood's
/// for that count. Where the ticket difficulty is unusable, the shares this engine re-verified
/// stand in (fewer of them: a wider interval).
fn estimate(c: &DevCounters, hashes: u64, ticket_difficulty: f64, elapsed_s: f64) -> (f64, Option<[f64; 2]>) {
    if elapsed_s <= 0.0 {
        return (0.0, None);
    }
    let per_ticket = ticket_difficulty * 4_294_967_296.0;
    if per_ticket.is_finite() && per_ticket >= 1.0 {
        let n = (hashes as f64 / per_ticket).round() as u64;
        let e = hashrig_hasher::estimate::estimate(n, ticket_difficulty, elapsed_s);
        return (hashes as f64 / elapsed_s, Some(e.ci95));
    }
    if c.valid_nonces == 0 {
        return (hashes as f64 / elapsed_s, None);
    }
    let mean_difficulty = c.nonce_difficulty_sum / c.valid_nonces as f64;
    let e = hashrig_hasher::estimate::estimate(c.valid_nonces, mean_difficulty, elapsed_s);
    (e.rate, Some(e.ci95))
}

/// A running engine. Dropping it stops it.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    verifier: Option<JoinHandle<()>>,
}

impl Engine {
    /// Start one thread per hasher and the verifier; they wait for the first [`Self::set_job`].
    pub fn start(hashers: Vec<Box<dyn Hasher>>, sink: impl ShareSink, cfg: EngineConfig) -> Result<Engine, Error> {
        if hashers.is_empty() {
            return Err(Error::NoHashers);
        }
        let infos: Vec<DeviceInfo> = hashers.iter().map(|h| h.info().clone()).collect();
        let probes = hashers.iter().map(|h| h.health_probe()).collect();
        let counters = Counters { devices: infos.iter().map(|_| DevCounters::default()).collect(), ..Default::default() };
        let paused = DevicePause::new(infos.len());
        let shared = Arc::new(Shared {
            cfg,
            started: Instant::now(),
            controls: infos.iter().map(|_| Control::new()).collect(),
            infos,
            probes,
            dispatch: Mutex::new(Dispatch::default()),
            work_ready: Condvar::new(),
            paused,
            counters: Mutex::new(counters),
            stopping: AtomicBool::new(false),
        });
        let (cand_sink, rx) = Sink::channel();
        let mut engine = Engine { shared: shared.clone(), workers: Vec::new(), verifier: None };
        for (index, hasher) in hashers.into_iter().enumerate() {
            let shared = shared.clone();
            let sink = cand_sink.clone();
            let handle = std::thread::Builder::new()
                .name(format!("hashrig-dev{index}"))
                .spawn(move || worker(&shared, index, hasher, &sink))
                .map_err(|source| Error::Spawn { what: "hasher", source })?;
            engine.workers.push(handle);
        }
        drop(cand_sink);
        let vshared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("hashrig-verify".into())
            .spawn(move || verifier(&vshared, &rx, sink))
            .map_err(|source| Error::Spawn { what: "verifier", source })?;
        engine.verifier = Some(handle);
        Ok(engine)
    }

    /// Give the engine a job. A clean job (or the first one) replaces older work: the epoch moves
    /// on and hashers drop what they were doing. Otherwise new units use it and work in flight
    /// stays valid.
    pub fn set_job(&self, job: Job) -> JobChange {
        let mut d = lock(&self.shared.dispatch);
        let replace = job.clean || d.job.is_none();
        let change = if replace {
            d.epoch += 1;
            for c in &self.shared.controls {
                c.bump_epoch();
            }
            JobChange::Replaced { epoch: d.epoch }
        } else {
            JobChange::Updated
        };
        tracing::debug!(job = %job.id, clean = job.clean, ?change, "new job");
        let job = Arc::new(job);
        // The same headers again (a new share target, a pool resending its job): go on from
        // where the scan is. Starting over would find the same shares again, and pools reject
        // those as duplicates.
        let same_headers = d.job.as_ref().is_some_and(|old| old.source == job.source);
        let old_job = d.job.replace(job.clone());
        if same_headers {
            d.current = d.current.take().map(|(h, rest)| (Arc::new(UnitHeader { job, prepared: h.prepared.clone() }), rest));
        } else {
            // Remember where the old job's scan stopped (the rest of its current header is
            // skipped), and pick up the new one's if it was mined before.
            if let Some(old) = old_job {
                if d.left_scans.len() >= LEFT_SCANS {
                    d.left_scans.pop_front();
                }
                let (counter, offset) = (d.next_counter, d.ntime_offset);
                d.left_scans.push_back((old.source.clone(), counter, offset));
            }
            let resumed = d.left_scans.iter().rposition(|(src, _, _)| *src == job.source);
            let (counter, offset) = match resumed.and_then(|i| d.left_scans.remove(i)) {
                Some((_, c, o)) => (c, o),
                None => (0, 0),
            };
            d.next_counter = counter;
            d.ntime_offset = offset;
            d.current = None;
        }
        drop(d);
        lock(&self.shared.counters).jobs += 1;
        self.shared.work_ready.notify_all();
        change
    }

    /// The pool or node answered a submitted share.
    pub fn share_result(&self, accepted: bool) {
        let mut k = lock(&self.shared.counters);
        if accepted {
            k.accepted += 1;
        } else {
            k.rejected += 1;
        }
    }

    /// Hashes so far, all devices (cheap: for live displays).
    pub fn hashes(&self) -> u64 {
        self.shared.total_hashes()
    }

    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// The handle that pauses and resumes single devices of this run.
    pub fn device_pause(&self) -> DevicePause {
        self.shared.paused.clone()
    }

    pub fn devices(&self) -> &[DeviceInfo] {
        &self.shared.infos
    }

    pub fn stats(&self) -> Stats {
        self.shared.snapshot()
    }

    /// Stop every hasher, verify what they already found, and return the final figures.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.shared.snapshot()
    }

    fn halt(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        for c in &self.shared.controls {
            c.shutdown();
        }
        self.shared.work_ready.notify_all();
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::error!("a hasher thread panicked");
            }
        }
        if let Some(v) = self.verifier.take()
            && v.join().is_err()
        {
            tracing::error!("the verifier thread panicked");
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.verifier.is_some() || !self.workers.is_empty() {
            self.halt();
        }
    }
}

/// Errors in a row after which a device is dropped from the run.
const MAX_DEVICE_ERRORS_IN_A_ROW: u32 = 3;

fn worker(shared: &Shared, index: usize, mut hasher: Box<dyn Hasher>, sink: &Sink) {
    let ctl = shared.controls[index].clone();
    let info = &shared.infos[index];
    let min = shared.cfg.min_unit_hashes.max(info.lanes);
    let mut measured: Option<f64> = None;
    let mut errors_in_a_row = 0;
    loop {
        let size = match measured.or(info.nominal_hashrate) {
            Some(r) => ((r * shared.cfg.unit_seconds) as u64).clamp(min, 1 << 32),
            None => shared.cfg.first_unit_hashes.max(min),
        };
        let Some(unit) = shared.next_unit(index, size) else { break };
        let t0 = Instant::now();
        match hasher.hash(&unit, &ctl, sink) {
            Ok(outcome) => {
                errors_in_a_row = 0;
                let dt = t0.elapsed().as_secs_f64();
                if outcome.hashes > 0 && dt > 0.005 {
                    let now = outcome.hashes as f64 / dt;
                    measured = Some(measured.map_or(now, |r| 0.5 * r + 0.5 * now));
                }
            }
            Err(error) => {
                errors_in_a_row += 1;
                tracing::error!(device = %info.name, %error, "hasher error");
                let mut k = lock(&shared.counters);
                let dev = &mut k.devices[index];
                dev.device_errors += 1;
                dev.last_error = Some(error_chain(&error));
                if errors_in_a_row >= MAX_DEVICE_ERRORS_IN_A_ROW {
                    dev.failed = true;
                    tracing::error!(device = %info.name, "device failed {errors_in_a_row} times in a row: dropped from the run");
                    break;
                }
                drop(k);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn verifier(shared: &Shared, rx: &mpsc::Receiver<Candidate>, mut sink: impl ShareSink) {
    let interval = shared.cfg.sample_interval;
    let mut next_sample = shared.started + interval;
    loop {
        let wait = next_sample.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        match rx.recv_timeout(wait) {
            Ok(c) => shared.verify(c, &mut sink),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_sample {
            shared.take_sample();
            next_sample += interval;
        }
    }
    shared.take_sample();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_with_one_device() -> Shared {
        let info = DeviceInfo {
            name: "t".into(),
            kind: hashrig_hasher::DeviceKind::Asic,
            kernel: "t".into(),
            lanes: 1 << 32,
            nominal_hashrate: None,
            hash_count: HashCount::Exact,
            version_rolling: false,
        };
        Shared {
            cfg: EngineConfig::default(),
            started: Instant::now(),
            controls: vec![Control::new()],
            infos: vec![info],
            probes: vec![None],
            dispatch: Mutex::new(Dispatch::default()),
            work_ready: Condvar::new(),
            counters: Mutex::new(Counters::default()),
            stopping: AtomicBool::new(false),
            paused: DevicePause::new(1),
        }
    }

    #[test]
    fn ntime_rolls_at_most_to_the_jobs_limit_then_the_job_is_done() {
        use bitcoin::hashes::Hash;
        let cb = hashrig_work::job::CoinbaseJob {
            prev_hash: bitcoin::BlockHash::all_zeros(),
            coinb1: vec![1],
            extranonce1: vec![],
            extranonce2_size: 1,
            coinb2: vec![2],
            merkle_branch: vec![],
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            version_mask: 0,
            nbits: bitcoin::CompactTarget::from_consensus(0x1d00_ffff),
            ntime: 1_000,
        };
        let job = Job { id: "j".into(), source: hashrig_work::HeaderSource::Coinbase(cb), share_target: Target::MAX, clean: true };
        assert_eq!(job.ntime_roll_limit(), hashrig_work::MAX_NTIME_ROLL);
        let shared = shared_with_one_device();
        let mut d = lock(&shared.dispatch);
        d.job = Some(Arc::new(job));
        // The last extranonce2 value at one second short of the limit...
        d.ntime_offset = hashrig_work::MAX_NTIME_ROLL - 1;
        d.next_counter = 255;
        let ntime_of = |d: &Dispatch| d.current.as_ref().map(|(h, _)| h.prepared.ntime);
        assert!(shared.cut_unit(&mut d, 0, 1 << 32).is_some());
        assert_eq!(ntime_of(&d), Some(1_000 + 6_999));
        // ...then the whole extranonce2 space once more at the limit...
        for counter in 0..256 {
            assert!(shared.cut_unit(&mut d, 0, 1 << 32).is_some(), "extranonce2 {counter} at +7000 s");
            assert_eq!(ntime_of(&d), Some(1_000 + 7_000));
        }
        // ...and no further: the engine waits for the next job.
        assert!(shared.cut_unit(&mut d, 0, 1 << 32).is_none());
        assert!(shared.cut_unit(&mut d, 0, 1 << 32).is_none());
    }

    #[test]
    fn estimated_rate_is_the_hash_count_over_time_with_the_ticket_counts_interval() {
        // 1000 nonces at a 20-bit ticket over 10 s; the engine saw only 3 shares.
        let per_ticket = 1u64 << 20;
        let c = DevCounters { valid_nonces: 3, nonce_difficulty_sum: 3.0, ..Default::default() };
        let (rate, ci) = estimate(&c, 1000 * per_ticket, per_ticket as f64 / 4_294_967_296.0, 10.0);
        assert!((rate - 1000.0 * per_ticket as f64 / 10.0).abs() < 1e-6);
        let [lo, hi] = ci.expect("an interval");
        let [want_lo, want_hi] = hashrig_hasher::estimate::poisson_ci95(1000).map(|x| x * per_ticket as f64 / 10.0);
        assert!((lo - want_lo).abs() < 1e-6 * want_lo && (hi - want_hi).abs() < 1e-6 * want_hi, "[{lo}, {hi}]");
        // Without a usable ticket difficulty the re-verified shares stand in.
        let (rate, ci) = estimate(&c, 0, 0.0, 10.0);
        assert!((rate - 3.0 * 4_294_967_296.0 / 10.0).abs() < 1e-3, "{rate}");
        assert!(ci.is_some());
    }
}
