//! Solo mining against a node as a [`JobSource`], and the block policy:
//!
//! - A template refresh on the same previous block is not a clean job: work in flight stays
//!   valid, and a block found on the older template is submitted.
//! - A block candidate is never discarded while its previous block is still the tip. It is
//!   written to disk (fsynced) before anything else, then submitted in its own task. A second
//!   block on the same previous block, found while the first is with the node, waits (on disk):
//!   if the first is accepted it is stale (its previous block is no longer the tip); if the
//!   first is rejected or left undecided, it is submitted next. A crash or the end of the run
//!   leaves it in `pending/`, submitted first on the next start.
//! - After a block is found on a previous block, hashing on that previous block pauses (the
//!   engine gets the same work with a target nothing meets) until the node moves on or
//!   rejects the block; blocks already in the pipeline are still submitted.
//! - The engine hunts at the network target, but never easier than difficulty 1/4096, so a
//!   regtest node (where about every second hash is a block) does not drown the verifier.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use hashrig_node::{BlockAnswer, FoundBlock, SoloConfig, SoloEvent, SoloHandle, SoloWork};
use hashrig_sha256d::Target;
use hashrig_work::target::{from_bitcoin, target_from_difficulty, to_bitcoin};
use tokio::sync::mpsc;

use crate::ledger::{Fate, RejectKind, ShareId, StaleReason};
use crate::source::{ConnKey, JobKey, JobSource, SourceEvent, SourceJob, Submission};

/// Templates remembered for blocks still in the pipeline.
const WORK_KEPT: usize = 64;
/// The node is one connection: pool 0, connection 1.
const NODE: ConnKey = ConnKey { pool: 0, conn: 1 };

/// The solo driver behind the [`JobSource`] trait.
#[derive(Debug)]
pub struct SoloSource {
    handle: SoloHandle,
    events: mpsc::UnboundedReceiver<SoloEvent>,
    task: tokio::task::JoinHandle<()>,
    queue: VecDeque<SourceEvent>,
    works: VecDeque<(JobKey, Arc<SoloWork>)>,
    seq: u64,
    /// The previous block of the newest template: the tip as the node last told us.
    tip: Option<BlockHash>,
    /// Previous blocks a block was found on (hashing on them is paused).
    solved: HashSet<BlockHash>,
    /// Blocks handed to the node: hash -> (ledger id, its previous block).
    pending: HashMap<BlockHash, (ShareId, BlockHash)>,
    /// The newest template's key, to resume it after a reject.
    current: Option<(JobKey, Arc<SoloWork>)>,
    /// Blocks on disk waiting for the answer to an earlier block on the same previous block.
    waiting: HashMap<BlockHash, VecDeque<(ShareId, FoundBlock, Option<hashrig_node::StoredBlock>)>>,
    store: hashrig_node::BlockStore,
}

/// What the engine hunts for in solo mode (see the module documentation).
pub fn solo_target(work: &SoloWork) -> Target {
    match target_from_difficulty(1.0 / 4096.0) {
        Ok(cap) => from_bitcoin(std::cmp::min(work.target(), to_bitcoin(&cap))),
        Err(_) => from_bitcoin(work.target()),
    }
}

impl SoloSource {
    /// Start the driver (on the current tokio runtime). Blocks a crash left pending are
    /// submitted first; their answers come as notices (they are not in this run's ledger).
    pub fn spawn(cfg: SoloConfig) -> SoloSource {
        let store = cfg.store.clone();
        let (handle, events, task) = hashrig_node::solo::spawn(cfg);
        SoloSource {
            waiting: HashMap::new(),
            store,
            handle,
            events,
            task,
            queue: VecDeque::new(),
            works: VecDeque::new(),
            seq: 0,
            tip: None,
            solved: HashSet::new(),
            pending: HashMap::new(),
            current: None,
        }
    }

    pub fn handle(&self) -> &SoloHandle {
        &self.handle
    }

    /// Hand the node the next block waiting on `prev`, if any (true if one went).
    fn submit_next_waiting(&mut self, prev: BlockHash) -> bool {
        let Some(q) = self.waiting.get_mut(&prev) else { return false };
        let Some((id, found, _)) = q.pop_front() else { return false };
        if q.is_empty() {
            self.waiting.remove(&prev);
        }
        self.send_block(id, prev, found);
        true
    }

    fn send_block(&mut self, id: ShareId, prev: BlockHash, found: FoundBlock) {
        let hash = found.header.block_hash();
        self.pending.insert(hash, (id, prev));
        if let Err(e) = self.handle.submit(found) {
            tracing::error!(%hash, error = %e, "the block could not be written to disk; it is submitted from memory");
        }
    }

    fn job_event(&self, key: JobKey, work: &Arc<SoloWork>, clean: bool) -> SourceEvent {
        let held = self.solved.contains(&work.job.prev_hash);
        SourceEvent::Job(SourceJob {
            key,
            job: hashrig_work::HeaderSource::Coinbase(work.job.clone()),
            share_target: if held { Target([0; 32]) } else { solo_target(work) },
            clean,
            height: Some(work.height),
        })
    }

    fn convert(&mut self, ev: SoloEvent) -> Option<SourceEvent> {
        match ev {
            SoloEvent::Work { work, clean } => {
                self.seq += 1;
                let key = JobKey { conn: NODE, job: self.seq.to_string() };
                if self.tip.is_none() {
                    self.queue.push_back(SourceEvent::Connected { conn: NODE, label: "node".into(), channel: None });
                }
                self.tip = Some(work.job.prev_hash);
                if self.works.len() >= WORK_KEPT {
                    self.works.pop_front();
                }
                self.works.push_back((key.clone(), work.clone()));
                self.current = Some((key.clone(), work.clone()));
                // Only a new previous block voids older work; a refresh keeps it valid.
                Some(self.job_event(key, &work, clean))
            }
            SoloEvent::BlockResult { hash, answer } => {
                let Some((id, prev)) = self.pending.remove(&hash) else {
                    return Some(SourceEvent::Notice(format!("block {hash} from an earlier run answered: {answer:?}")));
                };
                let fate = match answer {
                    BlockAnswer::Accepted | BlockAnswer::Duplicate => {
                        // The node moved on to our block: it is the tip now, before the next
                        // template says so. A block the engine finds on the same previous
                        // block in between can only be refused (bad-prevblk): it is stale.
                        if self.tip == Some(prev) {
                            self.tip = Some(hash);
                        }
                        // Blocks waiting on the same previous block lost their place.
                        for (wid, _, stored) in self.waiting.remove(&prev).unwrap_or_default() {
                            // Out of pending/, so the next start does not submit it.
                            if let Some(st) = stored {
                                let why = BlockAnswer::Rejected("stale: our block on the same previous block was accepted".into());
                                if let Err(e) = self.store.finish(&st, &why) {
                                    tracing::warn!(hash = %st.hash, error = %e, "a stale waiting block stays in pending/");
                                }
                            }
                            self.queue.push_back(SourceEvent::Settled { id: wid, fate: Fate::Stale(StaleReason::PrevBlockChanged) });
                        }
                        Fate::Accepted
                    }
                    BlockAnswer::Inconclusive => {
                        self.submit_next_waiting(prev);
                        Fate::Stale(StaleReason::Inconclusive)
                    }
                    BlockAnswer::Rejected(reason) => {
                        if self.submit_next_waiting(prev) {
                            return Some(SourceEvent::Settled { id, fate: Fate::Rejected { kind: RejectKind::BlockInvalid, reason } });
                        }
                        // Mining on that previous block may go on.
                        self.solved.remove(&prev);
                        if let Some((key, work)) = self.current.clone()
                            && work.job.prev_hash == prev
                        {
                            let ev = self.job_event(key, &work, false);
                            self.queue.push_back(ev);
                        }
                        Fate::Rejected { kind: RejectKind::BlockInvalid, reason }
                    }
                };
                Some(SourceEvent::Settled { id, fate })
            }
            SoloEvent::StoreDamaged { path, why } => {
                Some(SourceEvent::Notice(format!("block store: {} is damaged and was skipped ({why})", path.display())))
            }
            SoloEvent::NodeError(e) => Some(SourceEvent::Notice(format!("node: {e}"))),
        }
    }
}

impl Drop for SoloSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JobSource for SoloSource {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let ev = self.events.recv().await?;
            if let Some(e) = self.convert(ev) {
                self.queue.push_back(e);
            }
        }
    }

    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
        let Some((_, work)) = self.works.iter().rev().find(|(k, _)| *k == sub.job).cloned() else {
            return Err(StaleReason::JobReplaced);
        };
        if !sub.share.is_block {
            return Err(StaleReason::NotABlock);
        }
        let prev = work.job.prev_hash;
        if self.tip != Some(prev) {
            return Err(StaleReason::PrevBlockChanged);
        }
        let header: bitcoin::block::Header = match bitcoin::consensus::deserialize(&sub.share.header) {
            Ok(h) => h,
            Err(e) => {
                // The engine built this header: this cannot happen short of a bug.
                tracing::error!(error = %e, "a block header the engine built does not parse");
                return Err(StaleReason::SendFailed);
            }
        };
        let found = FoundBlock { work: work.clone(), extranonce2: sub.share.extranonce2.clone(), header };
        if self.pending.values().any(|(_, p)| *p == prev) {
            // One of ours on this previous block is with the node: this one waits, on disk.
            let bytes = work.block_bytes(&found.extranonce2, &found.header);
            let stored = match self.store.save(&bytes) {
                Ok(st) => Some(st),
                Err(e) => {
                    tracing::error!(hash = %header.block_hash(), error = %e, "a waiting block could not be written to disk; it is kept in memory");
                    None
                }
            };
            tracing::info!(hash = %header.block_hash(), "another block on the same previous block: it waits for the node's answer to the first");
            self.waiting.entry(prev).or_default().push_back((sub.id, found, stored));
        } else {
            self.send_block(sub.id, prev, found);
        }
        // Pause hashing on this previous block until the node answers or moves on.
        if self.solved.insert(prev)
            && let Some((key, cur)) = self.current.clone()
            && cur.job.prev_hash == prev
        {
            let ev = self.job_event(key, &cur, false);
            self.queue.push_back(ev);
        }
        Ok(())
    }

    async fn shutdown(&mut self, limit: Duration) -> Vec<SourceEvent> {
        let unanswered = self.handle.shutdown(limit).await;
        let mut out: Vec<SourceEvent> = self.queue.drain(..).filter(|e| matches!(e, SourceEvent::Settled { .. })).collect();
        while let Ok(ev) = self.events.try_recv() {
            if let Some(e @ SourceEvent::Settled { .. }) = self.convert(ev) {
                out.push(e);
            }
        }
        for hash in unanswered {
            tracing::warn!(%hash, "block not answered before the end: it stays in pending/ and is submitted first on the next start");
        }
        out
    }
}
