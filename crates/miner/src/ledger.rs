//! The share ledger: where every share the engine verified ends up.
//!
//! Each share gets a [`ShareId`] when the engine hands it over, and ends in exactly one of:
//! accepted, rejected (with a typed reason), stale (with a typed reason), or still in flight
//! when the run ended. Nothing leaves the ledger any other way, so
//! `found = accepted + rejected + stale + in_flight` holds at every moment; [`LedgerSnapshot::reconciles`]
//! checks it, and the CLI's final line, `--json`, the cgminer API and the metrics all read the
//! same snapshot.
//!
//! Shares the engine itself drops as stale (a clean job replaced their work between the hash
//! and the check) never reach the miner; [`Ledger::sync_engine_stale`] brings their count in
//! as `stale: job_replaced`, so the ledger also accounts for them.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// The ledger's name for one share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ShareId(pub u64);

/// Why a share was never answered by the pool or node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleReason {
    /// A clean job replaced the share's job before it was sent (in the engine, or in the job book).
    JobReplaced,
    /// Its job belonged to a connection that closed, and no live connection takes it.
    ConnectionLost,
    /// Sent, but not answered within the answer deadline.
    NoAnswer,
    /// Writing it to the pool or node failed.
    SendFailed,
    /// More shares than the queues hold: the overflow policy drops the newest non-block share.
    QueueFull,
    /// The same share was already sent for this job (the job came again after a reconnect).
    Duplicate,
    /// Solo: a block whose previous block is no longer the tip.
    PrevBlockChanged,
    /// Solo: a share under the network target (solo mining submits only blocks).
    NotABlock,
    /// Not valid for its job any more: version bits outside a mask the pool narrowed, or an
    /// extranonce2 of the wrong size.
    OutsideJob,
    /// Solo: the node kept the block but did not decide it (BIP 22 "inconclusive", e.g. a
    /// side branch). Not a rejection; it did not become the tip.
    Inconclusive,
    /// The run ended before it could be sent.
    Shutdown,
}

impl StaleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::JobReplaced => "job_replaced",
            StaleReason::ConnectionLost => "connection_lost",
            StaleReason::NoAnswer => "no_answer",
            StaleReason::SendFailed => "send_failed",
            StaleReason::QueueFull => "queue_full",
            StaleReason::Duplicate => "duplicate",
            StaleReason::PrevBlockChanged => "prev_block_changed",
            StaleReason::NotABlock => "not_a_block",
            StaleReason::OutsideJob => "outside_job",
            StaleReason::Inconclusive => "inconclusive",
            StaleReason::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pool's or node's reason for a reject, sorted into the kinds that mean something different
/// to a user. The text as given is kept beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// "Job not found", "stale": the pool had moved on (cgminer counts these as stale rejects).
    StaleJob,
    /// "Duplicate share".
    Duplicate,
    /// "Low difficulty share", "above target".
    LowDifficulty,
    /// "Unauthorized worker", "not subscribed".
    Unauthorized,
    /// A node's BIP 22 reject string for a block.
    BlockInvalid,
    /// Anything else.
    Other,
}

impl RejectKind {
    /// Sort a pool's reject text (case-insensitive).
    pub fn of_pool_reason(reason: &str) -> RejectKind {
        let r = reason.to_ascii_lowercase();
        if r.contains("stale") || r.contains("job not found") || r.contains("unknown job") {
            RejectKind::StaleJob
        } else if r.contains("duplicate") {
            RejectKind::Duplicate
        } else if r.contains("low difficulty") || r.contains("above target") || r.contains("difficulty") {
            RejectKind::LowDifficulty
        } else if r.contains("unauthorized") || r.contains("not subscribed") || r.contains("not authorized") {
            RejectKind::Unauthorized
        } else {
            RejectKind::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::StaleJob => "stale_job",
            RejectKind::Duplicate => "duplicate",
            RejectKind::LowDifficulty => "low_difficulty",
            RejectKind::Unauthorized => "unauthorized",
            RejectKind::BlockInvalid => "block_invalid",
            RejectKind::Other => "other",
        }
    }
}

/// How a share ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Accepted,
    Rejected { kind: RejectKind, reason: String },
    Stale(StaleReason),
}

impl Fate {
    /// A pool's reject, sorted by its text.
    pub fn pool_reject(reason: &str) -> Fate {
        Fate::Rejected { kind: RejectKind::of_pool_reason(reason), reason: clean_text(reason) }
    }
}

/// Reject texts come from the network: keep them printable and short before they reach a
/// terminal, a log or a metric label.
pub fn clean_text(s: &str) -> String {
    const MAX: usize = 120;
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.push_str(&c.escape_default().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Distinct reject texts kept by name; the rest are counted under [`OTHER_REASONS`].
pub const MAX_REASONS: usize = 16;
/// The name under which reject texts beyond [`MAX_REASONS`] are folded.
pub const OTHER_REASONS: &str = "(other reasons)";

/// What the ledger knows of a share still in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    /// Engine device that found it.
    pub device: usize,
    /// The share difficulty it was submitted at (the job's), for difficulty-weighted totals.
    pub job_difficulty: f64,
    pub is_block: bool,
    /// Which connection of the source it went to (pool index for pools, 0 solo).
    pub source: usize,
}

/// One device's (or pool's) share counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    pub found: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub in_flight: u64,
    /// Sum of the job difficulties of accepted shares (cgminer's "Difficulty Accepted").
    pub difficulty_accepted: f64,
    pub difficulty_rejected: f64,
    pub difficulty_stale: f64,
}

/// Blocks (candidates meeting the network target) among the shares.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlockTally {
    pub found: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub in_flight: u64,
}

/// The ledger's figures at one moment; what `--json`, the API, the metrics and the final line show.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LedgerSnapshot {
    /// Shares the engine verified and handed on, plus those it dropped itself as stale.
    pub found: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Rejects by kind.
    pub rejected_by_kind: BTreeMap<RejectKind, u64>,
    /// Rejects by the pool's or node's text (at most [`MAX_REASONS`] names, the rest folded).
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub stale: u64,
    pub stale_by_reason: BTreeMap<StaleReason, u64>,
    /// Handed to the pool or node and not yet answered (at the end of a run: never answered).
    pub in_flight: u64,
    /// `found == accepted + rejected + stale + in_flight`.
    pub reconciles: bool,
    pub blocks: BlockTally,
    /// Per engine device.
    pub by_device: BTreeMap<usize, Tally>,
    /// Per source connection (pool index; 0 for solo).
    pub by_source: BTreeMap<usize, Tally>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Ledger {
    next_id: u64,
    found: u64,
    engine_stale: u64,
    accepted: u64,
    rejected_by_kind: BTreeMap<RejectKind, u64>,
    rejected_by_reason: BTreeMap<String, u64>,
    stale_by_reason: BTreeMap<StaleReason, u64>,
    in_flight: HashMap<ShareId, InFlight>,
    blocks: BlockTally,
    by_device: BTreeMap<usize, Tally>,
    by_source: BTreeMap<usize, Tally>,
    /// Settlements for ids the ledger did not have in flight (answered twice, or never given).
    pub unknown_settlements: u64,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A share the engine verified: it gets an id and is in flight until settled.
    pub fn found(&mut self, share: InFlight) -> ShareId {
        self.next_id += 1;
        let id = ShareId(self.next_id);
        self.found += 1;
        if share.is_block {
            self.blocks.found += 1;
        }
        self.by_device.entry(share.device).or_default().found += 1;
        self.by_source.entry(share.source).or_default().found += 1;
        self.in_flight.insert(id, share);
        id
    }

    /// A share that never got an id because it was dropped on the way in (queue overflow):
    /// counted as found and stale at once.
    pub fn found_and_dropped(&mut self, device: Option<usize>, reason: StaleReason) {
        self.found += 1;
        *self.stale_by_reason.entry(reason).or_default() += 1;
        if let Some(d) = device {
            let t = self.by_device.entry(d).or_default();
            t.found += 1;
            t.stale += 1;
        }
    }

    /// The engine's own count of shares it dropped as stale (cumulative).
    pub fn sync_engine_stale(&mut self, engine_stale: u64) {
        if engine_stale > self.engine_stale {
            let more = engine_stale - self.engine_stale;
            self.engine_stale = engine_stale;
            self.found += more;
            *self.stale_by_reason.entry(StaleReason::JobReplaced).or_default() += more;
        }
    }

    /// Where the share `id` is, if still in flight.
    pub fn get(&self, id: ShareId) -> Option<&InFlight> {
        self.in_flight.get(&id)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Settle `id`. Returns what was in flight, or `None` (counted in
    /// [`Ledger::unknown_settlements`], nothing else changes) if it was not.
    pub fn settle(&mut self, id: ShareId, fate: &Fate) -> Option<InFlight> {
        let Some(s) = self.in_flight.remove(&id) else {
            self.unknown_settlements += 1;
            tracing::warn!(share = id.0, ?fate, "an answer for a share the ledger does not have in flight");
            return None;
        };
        let d = s.job_difficulty;
        let (dev, src) = (s.device, s.source);
        let apply = |t: &mut Tally| match fate {
            Fate::Accepted => {
                t.accepted += 1;
                t.difficulty_accepted += d;
            }
            Fate::Rejected { .. } => {
                t.rejected += 1;
                t.difficulty_rejected += d;
            }
            Fate::Stale(_) => {
                t.stale += 1;
                t.difficulty_stale += d;
            }
        };
        apply(self.by_device.entry(dev).or_default());
        apply(self.by_source.entry(src).or_default());
        match fate {
            Fate::Accepted => {
                self.accepted += 1;
                if s.is_block {
                    self.blocks.accepted += 1;
                }
            }
            Fate::Rejected { kind, reason } => {
                *self.rejected_by_kind.entry(*kind).or_default() += 1;
                let text = clean_text(reason);
                let key = if self.rejected_by_reason.contains_key(&text) || self.rejected_by_reason.len() < MAX_REASONS {
                    text
                } else {
                    OTHER_REASONS.to_string()
                };
                *self.rejected_by_reason.entry(key).or_default() += 1;
                if s.is_block {
                    self.blocks.rejected += 1;
                }
            }
            Fate::Stale(r) => {
                *self.stale_by_reason.entry(*r).or_default() += 1;
                if s.is_block {
                    self.blocks.stale += 1;
                }
            }
        }
        Some(s)
    }

    /// The figures now.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let rejected = self.rejected_by_kind.values().sum();
        let stale = self.stale_by_reason.values().sum();
        let in_flight = self.in_flight.len() as u64;
        let mut blocks = self.blocks.clone();
        blocks.in_flight = self.in_flight.values().filter(|s| s.is_block).count() as u64;
        let mut by_device = self.by_device.clone();
        let mut by_source = self.by_source.clone();
        for s in self.in_flight.values() {
            by_device.entry(s.device).or_default().in_flight += 1;
            by_source.entry(s.source).or_default().in_flight += 1;
        }
        LedgerSnapshot {
            found: self.found,
            accepted: self.accepted,
            rejected,
            rejected_by_kind: self.rejected_by_kind.clone(),
            rejected_by_reason: self.rejected_by_reason.clone(),
            stale,
            stale_by_reason: self.stale_by_reason.clone(),
            in_flight,
            reconciles: self.found == self.accepted + rejected + stale + in_flight,
            blocks,
            by_device,
            by_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(device: usize, is_block: bool) -> InFlight {
        InFlight { device, job_difficulty: 2.0, is_block, source: 0 }
    }

    #[test]
    fn every_share_ends_in_one_place_and_the_totals_reconcile() {
        let mut l = Ledger::new();
        let a = l.found(share(0, false));
        let b = l.found(share(1, false));
        let c = l.found(share(1, true));
        let d = l.found(share(0, false));
        l.found_and_dropped(Some(0), StaleReason::QueueFull);
        l.sync_engine_stale(3);
        assert!(l.settle(a, &Fate::Accepted).is_some());
        assert!(l.settle(b, &Fate::pool_reject("Duplicate share")).is_some());
        assert!(l.settle(c, &Fate::Stale(StaleReason::ConnectionLost)).is_some());
        // A second answer for the same share changes nothing but the unknown count.
        assert!(l.settle(a, &Fate::pool_reject("late")).is_none());
        let s = l.snapshot();
        assert_eq!((s.found, s.accepted, s.rejected, s.stale, s.in_flight), (8, 1, 1, 5, 1));
        assert!(s.reconciles);
        assert_eq!(s.stale_by_reason[&StaleReason::JobReplaced], 3);
        assert_eq!(s.rejected_by_kind[&RejectKind::Duplicate], 1);
        assert_eq!(s.blocks, BlockTally { found: 1, accepted: 0, rejected: 0, stale: 1, in_flight: 0 });
        assert_eq!(s.by_device[&0].found, 3);
        assert_eq!(s.by_device[&0].in_flight, 1);
        assert_eq!(l.unknown_settlements, 1);
        let _ = d;
    }

    #[test]
    fn reject_texts_are_capped_and_cleaned() {
        let mut l = Ledger::new();
        for i in 0..1000 {
            let id = l.found(share(0, false));
            l.settle(id, &Fate::pool_reject(&format!("\x1b[31mreason {i}")));
        }
        let s = l.snapshot();
        assert_eq!(s.rejected, 1000);
        assert_eq!(s.rejected_by_reason.len(), MAX_REASONS + 1);
        assert!(s.rejected_by_reason.keys().all(|k| !k.contains('\x1b')), "{:?}", s.rejected_by_reason.keys());
        assert_eq!(s.rejected_by_reason[OTHER_REASONS], 1000 - MAX_REASONS as u64);
        assert!(s.reconciles);
    }

    #[test]
    fn pool_reasons_are_sorted_by_kind() {
        assert_eq!(RejectKind::of_pool_reason("Job not found"), RejectKind::StaleJob);
        assert_eq!(RejectKind::of_pool_reason("Stale share"), RejectKind::StaleJob);
        assert_eq!(RejectKind::of_pool_reason("Duplicate share"), RejectKind::Duplicate);
        assert_eq!(RejectKind::of_pool_reason("Low difficulty share"), RejectKind::LowDifficulty);
        assert_eq!(RejectKind::of_pool_reason("Unauthorized worker"), RejectKind::Unauthorized);
        assert_eq!(RejectKind::of_pool_reason("bad-txnmrklroot"), RejectKind::Other);
        assert!(clean_text(&"x".repeat(500)).chars().count() <= 121);
    }
}
