//! Live device health that a hasher can offer beside its hashes (an optional capability:
//! [`crate::Hasher::health_probe`] defaults to none). The engine samples each probe when it
//! takes its stats, so reports, the API and the per-chip health map read one snapshot from the
//! engine rather than from a side channel.
//!
//! Today only BM13xx chains offer one; the types are here, not in the ASIC crate, so the engine
//! and the monitor can carry them without depending on a backend.

use serde::Serialize;

use crate::estimate::Estimate;

/// What a device's probe reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Health {
    /// A chain of hashing chips: per-chip and per-core counts, link errors, the estimate.
    Chain(ChainSnapshot),
}

impl Health {
    /// The chain snapshot, if this is a chip chain.
    pub fn chain(&self) -> Option<&ChainSnapshot> {
        match self {
            Health::Chain(c) => Some(c),
        }
    }
}

/// Readable from any thread while the hasher works (the engine calls it from outside the
/// hasher's thread); cheap enough to call once a second.
pub trait HealthProbe: Send + Sync + std::fmt::Debug {
    fn sample(&self) -> Health;
}

/// Counts of one big core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CoreHealth {
    pub core: u16,
    pub nonces: u64,
    pub hw_errors: u64,
}

/// Counts of one chip (for a health map).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChipHealth {
    /// Position in the chain (0 = nearest the host).
    pub index: u16,
    pub address: u8,
    /// Valid nonces at the ticket difficulty.
    pub nonces: u64,
    /// Nonces whose hash does not meet the ticket (wrong result from the chip).
    pub hw_errors: u64,
    /// The same nonce (and version) twice for one job: dropped.
    pub duplicates: u64,
    /// Nonces for jobs a clean job flushed: dropped.
    pub late: u64,
    /// Estimated from this chip's nonces (H/s).
    pub est_hashrate: f64,
    /// Answered the last heartbeat read.
    pub answering: bool,
    /// Per big core, only cores that returned something.
    pub cores: Vec<CoreHealth>,
}

/// Everything the driver counts, as one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainSnapshot {
    pub chip: String,
    /// Chips that answered enumeration (and were given addresses).
    pub chips: usize,
    /// Chips the configuration expected (`chips=N`; an emulated chain's length), if it said.
    pub expected_chips: Option<usize>,
    /// Expected chips that did not answer (dead, or a broken link in the chain): 0 when no
    /// count was expected. Which positions they held cannot be told: a dead chip still relays.
    pub missing_chips: usize,
    pub mhz: f64,
    /// Frequency x small cores x chips (ESP-Miner's formula), H/s.
    pub nominal_hashrate: f64,
    pub ticket_difficulty: f64,
    pub estimate: Estimate,
    pub valid_nonces: u64,
    pub hw_errors: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Valid nonces for a job that a newer (not clean) job had already replaced: submitted.
    pub superseded: u64,
    /// Nonces naming a job id the driver never sent (e.g. after a re-init).
    pub unknown_job: u64,
    /// Response frames rejected (bad CRC or malformed), and garbage bytes skipped, by the
    /// decoders: bring-up (enumeration included) and every re-init count too.
    pub bad_crc: u64,
    pub skipped_bytes: u64,
    pub jobs_sent: u64,
    /// Clean jobs (epoch changes) that flushed the job table.
    pub flushes: u64,
    /// Times the chain was brought up again after it stopped answering.
    pub reinits: u64,
    /// Heartbeats the chain did not answer.
    pub missed_heartbeats: u64,
    /// Power MODEL of an emulated chain (watts), when it offers one; never a measurement.
    pub model_watts: Option<f64>,
    /// The model's J/TH at the nominal hashrate (an emulator hashes at CPU speed, so its
    /// measured rate must not be divided into the model's watts).
    pub model_j_per_th_at_nominal: Option<f64>,
    /// Emulated chains only: the hashes the emulator really did per second over the same window
    /// as `estimate` (the truth the estimate is checked against).
    pub emulator_true_hashrate: Option<f64>,
    pub per_chip: Vec<ChipHealth>,
}

