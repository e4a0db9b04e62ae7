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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use hashrig_hasher::{Candidate, Control, DeviceInfo, DeviceKind, HashCount, Hasher, Origin, Sink, WorkUnit};
pub use hashrig_hasher::estimate::j_per_th;
pub use hashrig_hasher::health::{ChainSnapshot, Health, HealthProbe};
use hashrig_work::Job;

mod dispatch;
mod stats;
mod verify;
mod worker;

use dispatch::{Dispatch, LEFT_SCANS, UnitHeader};
pub use stats::{DeviceStats, OriginErrors, Sample, Stats};
use stats::{Counters, DevCounters};
use verify::verifier;
use worker::worker;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::estimate;
    use hashrig_sha256d::Target;

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
