//! Chain telemetry: nonce counts per chip and core, errors, and the hashrate estimated from
//! nonces at the ticket difficulty with its 95 % Poisson interval.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::setup::ChainInfo;
pub use hashrig_hasher::estimate::{Estimate, estimate, poisson_ci95};
pub use hashrig_hasher::health::{ChainSnapshot, ChipHealth, CoreHealth};
use hashrig_hasher::health::{Health, HealthProbe};

/// Reads a true hash count (an emulator's).
pub type TruthFn = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Debug, Default)]
struct ChipCounts {
    address: u8,
    nonces: u64,
    hw_errors: u64,
    duplicates: u64,
    late: u64,
    answering: bool,
    cores: BTreeMap<u16, (u64, u64)>,
}

struct Inner {
    started: Instant,
    first_job: bool,
    truth: Option<TruthFn>,
    truth_at_start: u64,
    chip: String,
    expected_chips: Option<usize>,
    mhz: f64,
    nominal: f64,
    ticket_difficulty: f64,
    chips: Vec<ChipCounts>,
    superseded: u64,
    unknown_job: u64,
    bad_crc: u64,
    skipped_bytes: u64,
    jobs_sent: u64,
    flushes: u64,
    reinits: u64,
    missed_heartbeats: u64,
    model_watts: Option<f64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStats").field("chip", &self.chip).field("chips", &self.chips.len()).finish()
    }
}

/// What happened to one nonce response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceKind {
    Valid,
    HwError,
    Duplicate,
    Late,
}

/// Shared, cheap-to-clone telemetry of one chain; the driver writes, anyone reads.
#[derive(Clone, Debug)]
pub struct ChainStats(Arc<Mutex<Inner>>);

impl Default for ChainStats {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChainStats {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Inner {
            started: Instant::now(),
            first_job: false,
            truth: None,
            truth_at_start: 0,
            chip: String::new(),
            expected_chips: None,
            mhz: 0.0,
            nominal: 0.0,
            ticket_difficulty: 1.0,
            chips: Vec::new(),
            superseded: 0,
            unknown_job: 0,
            bad_crc: 0,
            skipped_bytes: 0,
            jobs_sent: 0,
            flushes: 0,
            reinits: 0,
            missed_heartbeats: 0,
            model_watts: None,
        })))
    }

    /// (Re)describe the chain after a bring-up; per-chip counts survive a re-init of the same
    /// chain shape.
    pub(crate) fn set_chain(&self, info: &ChainInfo) {
        let mut k = lock(&self.0);
        k.chip = info.chip.clone();
        k.expected_chips = info.expected_chips;
        k.mhz = info.mhz;
        k.nominal = info.nominal_hashrate;
        k.ticket_difficulty = info.ticket_difficulty;
        k.model_watts = info.model_watts;
        if k.chips.len() != info.addresses.len() {
            k.chips = info.addresses.iter().map(|&a| ChipCounts { address: a, answering: true, ..Default::default() }).collect();
        }
    }

    pub(crate) fn record(&self, chip: usize, core: u16, kind: NonceKind) {
        let mut k = lock(&self.0);
        let Some(c) = k.chips.get_mut(chip) else { return };
        let e = c.cores.entry(core).or_default();
        match kind {
            NonceKind::Valid => {
                c.nonces += 1;
                e.0 += 1;
            }
            NonceKind::HwError => {
                c.hw_errors += 1;
                e.1 += 1;
            }
            NonceKind::Duplicate => c.duplicates += 1,
            NonceKind::Late => c.late += 1,
        }
    }

    /// The power MODEL of an emulated chain, watts (None for hardware: a BM13xx chain reports
    /// no power of its own).
    pub fn model_watts(&self) -> Option<f64> {
        lock(&self.0).model_watts
    }

    /// Attach the true hash counter of an emulated chain.
    pub fn set_truth(&self, truth: TruthFn) {
        let mut k = lock(&self.0);
        k.truth_at_start = truth();
        k.truth = Some(truth);
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Counters<'_>) -> R) -> R {
        let mut k = lock(&self.0);
        f(&mut Counters(&mut k))
    }

    /// The hashrate estimated from every valid nonce since the start, with its 95 % interval.
    pub fn estimate(&self) -> Estimate {
        let k = lock(&self.0);
        let n: u64 = k.chips.iter().map(|c| c.nonces).sum();
        estimate(n, k.ticket_difficulty, k.started.elapsed().as_secs_f64())
    }

    pub fn snapshot(&self) -> ChainSnapshot {
        let k = lock(&self.0);
        let seconds = k.started.elapsed().as_secs_f64();
        let sum = |f: fn(&ChipCounts) -> u64| k.chips.iter().map(f).sum::<u64>();
        let valid = sum(|c| c.nonces);
        ChainSnapshot {
            chip: k.chip.clone(),
            chips: k.chips.len(),
            expected_chips: k.expected_chips,
            missing_chips: k.expected_chips.map_or(0, |e| e.saturating_sub(k.chips.len())),
            mhz: k.mhz,
            nominal_hashrate: k.nominal,
            ticket_difficulty: k.ticket_difficulty,
            estimate: estimate(valid, k.ticket_difficulty, seconds),
            valid_nonces: valid,
            hw_errors: sum(|c| c.hw_errors),
            duplicates: sum(|c| c.duplicates),
            late: sum(|c| c.late),
            superseded: k.superseded,
            unknown_job: k.unknown_job,
            bad_crc: k.bad_crc,
            skipped_bytes: k.skipped_bytes,
            jobs_sent: k.jobs_sent,
            flushes: k.flushes,
            reinits: k.reinits,
            missed_heartbeats: k.missed_heartbeats,
            model_watts: k.model_watts,
            model_j_per_th_at_nominal: k.model_watts.and_then(|w| hashrig_hasher::estimate::j_per_th(w, k.nominal)),
            emulator_true_hashrate: k.truth.as_ref().map(|t| t().saturating_sub(k.truth_at_start) as f64 / seconds.max(1e-9)),
            per_chip: k
                .chips
                .iter()
                .enumerate()
                .map(|(i, c)| ChipHealth {
                    index: i as u16,
                    address: c.address,
                    nonces: c.nonces,
                    hw_errors: c.hw_errors,
                    duplicates: c.duplicates,
                    late: c.late,
                    est_hashrate: estimate(c.nonces, k.ticket_difficulty, seconds).rate,
                    answering: c.answering,
                    cores: c.cores.iter().map(|(&core, &(n, hw))| CoreHealth { core, nonces: n, hw_errors: hw }).collect(),
                })
                .collect(),
        }
    }
}

/// The engine samples a chain's telemetry through the hasher's health probe.
impl HealthProbe for ChainStats {
    fn sample(&self) -> Health {
        Health::Chain(self.snapshot())
    }
}

/// Mutable access for the driver.
pub(crate) struct Counters<'a>(&'a mut Inner);

impl Counters<'_> {
    pub(crate) fn superseded(&mut self) {
        self.0.superseded += 1;
    }
    pub(crate) fn unknown_job(&mut self) {
        self.0.unknown_job += 1;
    }
    /// Add what a decoder rejected since it was last accounted (totals run across the decoders
    /// of bring-up, mining and every re-init).
    pub(crate) fn add_decoder(&mut self, bad_crc: u64, skipped: u64) {
        self.0.bad_crc += bad_crc;
        self.0.skipped_bytes += skipped;
    }
    /// Called just BEFORE a job's bytes go out. Rates are measured from the first job (bring-up
    /// is not mining time), and the clock and the true count start before the chain can hash
    /// it: taken after the write returned (a drain that waits for the last byte, or the host
    /// thread held up), they started late, and the nonces of the hashing in between were
    /// counted while its hashes and time were not, a bias of that delay over the run (the
    /// estimate read above the emulator's true rate on short runs).
    pub(crate) fn job_going_out(&mut self) {
        if !self.0.first_job {
            self.0.first_job = true;
            self.0.started = Instant::now();
            self.0.truth_at_start = self.0.truth.as_ref().map_or(0, |t| t());
        }
    }
    pub(crate) fn job_sent(&mut self) {
        self.0.jobs_sent += 1;
    }
    pub(crate) fn flush(&mut self) {
        self.0.flushes += 1;
    }
    pub(crate) fn reinit(&mut self) {
        self.0.reinits += 1;
    }
    pub(crate) fn missed_heartbeat(&mut self) {
        self.0.missed_heartbeats += 1;
    }
    pub(crate) fn set_model_watts(&mut self, w: Option<f64>) {
        self.0.model_watts = w;
    }
    pub(crate) fn set_answering(&mut self, answering: &[bool]) {
        for (c, &a) in self.0.chips.iter_mut().zip(answering) {
            c.answering = a;
        }
    }
}
