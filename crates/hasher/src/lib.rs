//! The one trait every hashing backend implements (CPU, GPU, BM13xx ASIC chain), the control
//! handle the engine drives it with, and (feature `testkit`) the conformance kit each backend
//! runs in its own tests.
//!
//! What it is for: a small synchronous contract. Each hasher owns a thread; the engine hands it
//! [`WorkUnit`]s; it pushes every [`Candidate`] to a [`Sink`] as soon as it is found, adds the
//! hashes it did to the [`Control`]'s atomic counter between batches, and stops early when the
//! control's epoch moves past the unit's (a clean job made the work stale).
//!
//! What it is not for: deciding what a share is worth. Candidates are claims; the engine
//! re-verifies each with the portable reference and counts failures as hardware errors.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

pub use hashrig_sha256d::{NonceRange, Target};

pub mod estimate;
pub mod health;
#[cfg(feature = "testkit")]
pub mod testkit;

/// What kind of hardware a hasher drives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Gpu,
    Asic,
}

/// Whether a hasher's hash count is exact (every nonce was hashed here and counted) or
/// estimated from the nonces it returned at a known ticket difficulty (ASIC chips).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashCount {
    Exact,
    /// Estimated: each returned nonce stands for `ticket_difficulty * 2^32` hashes.
    Estimated { ticket_difficulty: f64 },
}

/// Facts about an open hasher, for reports and for sizing work.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// Human-readable name, e.g. "cpu: 2 threads" or "NVIDIA H100 80GB HBM3 (vulkan)".
    pub name: String,
    pub kind: DeviceKind,
    /// The kernel or chip generation doing the work, e.g. "sha-ni", "wgsl", "bm1370".
    pub kernel: String,
    /// Nonces in flight at once (threads x lanes, shader invocations, chips x cores).
    pub lanes: u64,
    /// Hashes per second the hardware should do (ASIC: frequency x cores x ...), if known.
    pub nominal_hashrate: Option<f64>,
    pub hash_count: HashCount,
    /// Can the device roll the header's version bits itself (BIP 320)?
    pub version_rolling: bool,
}

/// One piece of work: a concrete header and a nonce range to sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkUnit {
    /// Engine-assigned, unique for the run; candidates name it.
    pub id: u64,
    /// The control epoch this unit belongs to: once the control's epoch differs, it is stale.
    pub epoch: u64,
    /// The 80-byte header; its nonce field is ignored.
    pub header: [u8; 80],
    pub range: NonceRange,
    /// Report every nonce whose sha256d meets this (the share target, or an easier one).
    pub target: Target,
    /// Version bits the device may roll (0: none). Only hashers that say `version_rolling` use it.
    pub version_mask: u32,
}

impl WorkUnit {
    /// The header's version field.
    pub fn version(&self) -> u32 {
        u32::from_le_bytes(self.header[0..4].try_into().expect("4 bytes"))
    }
}

/// Where on a device a candidate came from (ASIC chains: chip and core).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub chip: Option<u16>,
    pub core: Option<u16>,
}

/// A nonce a hasher claims meets a unit's target. Not yet trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub unit_id: u64,
    pub nonce: u32,
    /// The header version this nonce was found with (differs from the unit's when rolled).
    pub version: u32,
    pub origin: Origin,
}

/// Where a hasher pushes candidates; cheap to clone and usable from any thread.
#[derive(Clone, Debug)]
pub struct Sink(mpsc::Sender<Candidate>);

impl Sink {
    /// A sink and the receiving end the engine reads.
    pub fn channel() -> (Sink, mpsc::Receiver<Candidate>) {
        let (tx, rx) = mpsc::channel();
        (Sink(tx), rx)
    }

    /// Deliver a candidate. Returns false when nobody listens any more (the run is over).
    pub fn push(&self, candidate: Candidate) -> bool {
        self.0.send(candidate).is_ok()
    }
}

#[derive(Debug, Default)]
struct ControlInner {
    epoch: AtomicU64,
    hashes: AtomicU64,
    shutdown: AtomicBool,
}

/// Shared between the engine and a hasher: the current epoch, the hash counter, shutdown.
#[derive(Clone, Debug, Default)]
pub struct Control(Arc<ControlInner>);

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// Start a new epoch (a clean job): every unit of an older epoch is now stale.
    pub fn bump_epoch(&self) -> u64 {
        self.0.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Should work on `unit` stop? (Its epoch is over, or the run is shutting down.)
    pub fn is_stale(&self, unit: &WorkUnit) -> bool {
        self.epoch() != unit.epoch || self.is_shutdown()
    }

    /// Add hashes done (call between batches, never per hash).
    pub fn add_hashes(&self, n: u64) {
        self.0.hashes.fetch_add(n, Ordering::Relaxed);
    }

    /// Hashes done so far by every hasher sharing this control.
    pub fn hashes(&self) -> u64 {
        self.0.hashes.load(Ordering::Relaxed)
    }

    /// Ask every hasher to stop as soon as it can.
    pub fn shutdown(&self) {
        self.0.shutdown.store(true, Ordering::Release);
    }

    pub fn is_shutdown(&self) -> bool {
        self.0.shutdown.load(Ordering::Acquire)
    }
}

/// How a unit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitOutcome {
    /// Hashes done on this unit (also added to the control's counter).
    pub hashes: u64,
    /// False when the unit was abandoned because its epoch ended or the run shut down.
    pub completed: bool,
}

/// Errors a hasher reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The unit asks for something this hasher cannot do.
    #[error("{device} cannot take this work unit: {reason}")]
    Unsupported { device: String, reason: &'static str },
    /// The device failed (lost, I/O error, driver error).
    #[error("{device} failed")]
    Device {
        device: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An error and its sources on one line, `outer: inner: innermost` (for records such as a
/// device's last error; the CLI prints the same chain one cause per line).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A hashing backend. Synchronous: the engine calls it from a thread it owns.
pub trait Hasher: Send {
    fn info(&self) -> &DeviceInfo;

    /// Sweep `unit`: push each candidate to `sink` as soon as it is found, add hashes to
    /// `ctl` between batches, and return when the range is done or `ctl.is_stale(unit)`.
    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, Error>;

    /// Live health telemetry, for hashers that have any (chip chains); none by default. The
    /// engine takes the probe once at start and samples it with its stats.
    fn health_probe(&self) -> Option<Arc<dyn health::HealthProbe>> {
        None
    }
}

impl DeviceKind {
    /// The lowercase name used in output, labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
            DeviceKind::Asic => "asic",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod error_chain_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_chain_is_every_source_on_one_line() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}
