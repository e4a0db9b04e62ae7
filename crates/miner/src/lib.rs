//! hashrig's mining loop, as a library the CLI drives and tests run without the binary.
//!
//! - [`source`]: the [`JobSource`] trait (Stratum v1 pools, a solo node, Stratum V2 pools) and
//!   its one event type, keyed by a typed [`JobKey`] that names the connection a job came from.
//! - [`ledger`]: the share ledger. Every share the engine verifies ends accepted, rejected
//!   (typed reason), stale (typed reason) or in flight when the run ended, and the totals
//!   reconcile with the engine's count. This is what "nothing lost" means, and how it is checked.
//! - [`run`]: [`Miner`], the loop: jobs into the engine (with a share-rate floor, duplicate-job
//!   and version-mask handling), shares through a bounded queue and the job book to the source,
//!   answers into the ledger, and a shutdown that drains the engine and waits a bounded time.
//! - [`curtail`]: the [`curtail::Curtailer`], which pauses the devices while power costs more
//!   than a threshold (a fixed price or the break-even) and resumes them when it falls back.
//! - [`pool`], [`solo`] and [`sv2`]: the three sources (Stratum v1 pools, a solo node, Stratum V2
//!   pools); [`solo`] holds the block policy. [`failover`] puts v1 and V2 pools in one ordered
//!   failover list (both clients at once, the other protocol's pool a hot standby).
//!
//! What it is not for: flags, config files and printing (the CLI), protocol details (the
//! stratum and node crates), hashing (the engine and its hashers).

pub mod curtail;
pub mod failover;
pub mod ledger;
pub mod pool;
pub mod run;
pub mod solo;
pub mod source;
pub mod sv2;

pub use ledger::{Fate, Ledger, LedgerSnapshot, RejectKind, ShareId, StaleReason};
pub use run::{Miner, MinerConfig, Observer, Outcome, Quiet, Tick};
pub use source::{ConnKey, JobKey, JobSource, SourceEvent, SourceJob, Submission};
