//! Where jobs come from and where shares go: one trait for Stratum v1 pools, a solo node, and
//! Stratum V2 pools, with one event type keyed by a typed job identity.

use std::future::Future;
use std::time::Duration;

use hashrig_sha256d::Target;
use hashrig_work::HeaderSource;

use crate::ledger::{Fate, ShareId, StaleReason};

/// One connection of a source: which configured pool (its index; 0 for a solo node) and which
/// connection to it (a serial that changes on every reconnect). Jobs of different connections
/// are different jobs even when a pool reuses its job ids after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub pool: usize,
    pub conn: u64,
}

/// A job as its source knows it: the connection it came from and the source's own job id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub conn: ConnKey,
    pub job: String,
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pool {} conn {} job {}", self.conn.pool, self.conn.conn, self.job)
    }
}

/// Work to mine.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceJob {
    pub key: JobKey,
    /// How its headers are built: a coinbase the miner rolls (v1, solo, SV2 extended) or the
    /// pool's own header (SV2 standard).
    pub job: HeaderSource,
    /// The target shares must meet, as the source asks (before the miner's share-rate floor).
    pub share_target: Target,
    /// True when older work is void (a new previous block, Stratum `clean_jobs`).
    pub clean: bool,
    /// Solo: the height of the block this job builds.
    pub height: Option<u32>,
}

/// What a source tells the miner.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// The connection is the one mined on now. `channel` names a Stratum V2 channel's kind
    /// ("extended" or "standard").
    Connected { conn: ConnKey, label: String, channel: Option<&'static str> },
    /// The connection is up but not mined on: a pool ranked higher is live (a hot standby in a
    /// failover list over two protocols). Its jobs are held until it ranks first.
    Standby { conn: ConnKey },
    Disconnected { conn: ConnKey, reason: String },
    Job(SourceJob),
    /// BIP 310 `mining.set_version_mask`: applies to the connection's live jobs at once.
    VersionMask { conn: ConnKey, mask: Option<u32> },
    /// A share handed over by [`JobSource::submit`] ended.
    Settled { id: ShareId, fate: Fate },
    /// Something worth a log line and the status (a node error, a damaged block file).
    Notice(String),
}

/// A share to hand to a source.
#[derive(Clone, Debug)]
pub struct Submission {
    pub id: ShareId,
    pub job: JobKey,
    pub share: hashrig_engine::Share,
}

/// Where work comes from and shares go.
///
/// The contract, on which the ledger's totals rest: every share [`JobSource::submit`] takes
/// (returns `Ok`) is settled by exactly one [`SourceEvent::Settled`], unless the run ends first,
/// in which case it stays in flight. A share it refuses (`Err`) is settled by the miner with
/// that stale reason and must not be settled again.
pub trait JobSource: Send {
    /// The next event; `None` when the source has stopped for good.
    fn next_event(&mut self) -> impl Future<Output = Option<SourceEvent>> + Send;
    /// Hand a share over. Solo blocks are on disk when this returns.
    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason>;
    /// The run is ending: stop asking for work, wait at most `limit` for answers to what is in
    /// flight, and return the settlements that came meanwhile.
    fn shutdown(&mut self, limit: Duration) -> impl Future<Output = Vec<SourceEvent>> + Send;
}
