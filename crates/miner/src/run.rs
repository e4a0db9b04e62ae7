//! The mining loop: jobs from a [`JobSource`] into the engine, the engine's shares through the
//! job book and the [`Ledger`] back to the source, until told to stop; then the shutdown that
//! loses nothing.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashrig_engine::{Engine, EngineConfig, Hasher, Share, ShareSink, Stats};
use hashrig_sha256d::Target;
use hashrig_work::target::{difficulty_from_nbits, difficulty_of_target, target_from_difficulty};
use hashrig_work::{HeaderSource, Job};
use tokio::sync::mpsc;

use crate::ledger::{Fate, InFlight, Ledger, LedgerSnapshot, ShareId, StaleReason};
use crate::source::{ConnKey, JobKey, JobSource, SourceEvent, SourceJob, Submission};

/// Settings of the loop itself (the source and the engine have their own).
#[derive(Clone, Debug)]
pub struct MinerConfig {
    /// Shares per second the miner lets the pool's difficulty ask for, all devices together.
    /// A pool asking for less (say `set_difficulty` 1e-9, where every hash is a share) gets a
    /// higher share difficulty, logged and shown; the shares are still valid for the pool.
    pub max_share_rate: f64,
    /// The hashrate (H/s) the floor assumes until the engine has measured one (1 s), unless the
    /// devices state a higher nominal rate.
    pub assumed_hashrate: f64,
    /// Verified shares waiting for the loop. When it is full, a share that is not a block is
    /// dropped and counted stale (`queue_full`); a block waits for room (it is never dropped).
    pub share_queue: usize,
    /// At the end of a run, how long to wait for answers to shares in flight.
    pub shutdown_wait: Duration,
    /// Jobs remembered for shares still in the pipeline.
    pub job_book: usize,
    pub engine: EngineConfig,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            max_share_rate: 200.0,
            assumed_hashrate: 1e8,
            share_queue: 4096,
            shutdown_wait: Duration::from_secs(5),
            job_book: 64,
            engine: EngineConfig::default(),
        }
    }
}

/// Whether the loop goes on after a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    Continue,
    Stop,
}

/// What the loop reports as it runs, for printing and monitoring. Every method has a default
/// that does nothing.
pub trait Observer: Send {
    fn source_event(&mut self, _ev: &SourceEvent) {}
    /// A verified share arrived; `id` is `None` when the ledger settled it at once.
    fn share_found(&mut self, _share: &Share, _job: Option<&JobKey>) {}
    fn share_settled(&mut self, _id: ShareId, _fate: &Fate, _share: &InFlight) {}
    /// The share difficulty the source asked for and the one the engine hunts at: higher when
    /// the share-rate floor applies, equal when it does not (called as jobs come and each second).
    fn difficulty_floor(&mut self, _asked: f64, _used: f64) {}
    /// About once a second.
    fn tick(&mut self, _engine: &Engine, _ledger: &LedgerSnapshot) -> Tick {
        Tick::Continue
    }
}

/// An observer that observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub stats: Stats,
    pub ledger: LedgerSnapshot,
    /// Shares the engine verified and handed on: what the ledger's `found` must match, less
    /// the engine's own stale drops.
    pub engine_shares: u64,
}

impl Outcome {
    /// The ledger accounts for every share the engine verified, and its totals add up.
    pub fn reconciles(&self) -> bool {
        self.ledger.reconciles && self.ledger.found == self.stats.shares + self.stats.stale
    }
}

/// Verified shares into the loop over a bounded queue (see [`MinerConfig::share_queue`]).
struct QueueSink {
    tx: mpsc::Sender<Share>,
    dropped: Arc<Dropped>,
}

#[derive(Debug, Default)]
struct Dropped {
    total: AtomicU64,
    by_device: Mutex<BTreeMap<usize, u64>>,
}

impl ShareSink for QueueSink {
    fn submit(&mut self, share: Share) {
        match self.tx.try_send(share) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(share)) if share.is_block => {
                // The engine's verifier thread is not a runtime thread: it may wait.
                if let Err(mpsc::error::SendError(s)) = self.tx.blocking_send(share) {
                    tracing::error!(hash = ?s.digest, "a block found after the miner stopped listening");
                    self.drop_one(s.device);
                }
            }
            Err(mpsc::error::TrySendError::Full(share) | mpsc::error::TrySendError::Closed(share)) => {
                self.drop_one(share.device);
            }
        }
    }
}

impl QueueSink {
    fn drop_one(&self, device: usize) {
        let n = self.dropped.total.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() {
            tracing::warn!(dropped = n + 1, "share queue full: shares dropped (counted stale, queue_full)");
        }
        *self.dropped.by_device.lock().unwrap_or_else(|e| e.into_inner()).entry(device).or_default() += 1;
    }
}

/// Shares remembered per job against sending one twice (about 80 bytes each).
const SHARES_REMEMBERED_PER_JOB: usize = 100_000;

/// The identity of a job's content for duplicate checks: a job a pool sends again unchanged
/// after a reconnect (same id, same extranonce1 or, for a standard job, merkle root) is the same
/// search space.
type DedupKey = (usize, String, Vec<u8>);
/// What tells two jobs with the same id apart in [`DedupKey`]: the extranonce1 a coinbase job is
/// built on, or the merkle root of a pool-built header (an SV2 standard job, which has no
/// extranonce of ours: after a reconnect the pool may reuse its job ids for other headers).
fn content_id(src: &HeaderSource) -> Vec<u8> {
    match src {
        HeaderSource::Standard(sj) => sj.merkle_root.to_vec(),
        other => other.extranonce1().to_vec(),
    }
}

/// What makes two shares the same share.
type ShareSig = (Vec<u8>, u32, u32, u32);

#[derive(Debug)]
struct BookEntry {
    engine_id: String,
    key: JobKey,
    job: SourceJob,
    /// The share difficulty the source asked for (what accepted shares are worth).
    asked_difficulty: f64,
    target: Target,
}

/// The mining loop. See the crate documentation.
pub struct Miner<S: JobSource> {
    engine: Option<Engine>,
    source: S,
    cfg: MinerConfig,
    ledger: Ledger,
    shares: mpsc::Receiver<Share>,
    dropped: Arc<Dropped>,
    dropped_seen: BTreeMap<usize, u64>,
    book: VecDeque<BookEntry>,
    submitted: VecDeque<(DedupKey, HashSet<ShareSig>)>,
    seq: u64,
    floor_logged: Option<u64>,
}

impl<S: JobSource> std::fmt::Debug for Miner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner").field("ledger", &self.ledger).field("jobs", &self.seq).finish_non_exhaustive()
    }
}

impl<S: JobSource> Miner<S> {
    /// Start the engine on `hashers` (it waits for the first job) around `source`.
    pub fn start(hashers: Vec<Box<dyn Hasher>>, source: S, cfg: MinerConfig) -> Result<Self, hashrig_engine::Error> {
        let (tx, rx) = mpsc::channel(cfg.share_queue.max(1));
        let dropped = Arc::new(Dropped::default());
        let engine = Engine::start(hashers, QueueSink { tx, dropped: dropped.clone() }, cfg.engine.clone())?;
        Ok(Miner {
            engine: Some(engine),
            source,
            cfg,
            ledger: Ledger::new(),
            shares: rx,
            dropped,
            dropped_seen: BTreeMap::new(),
            book: VecDeque::new(),
            submitted: VecDeque::new(),
            seq: 0,
            floor_logged: None,
        })
    }

    /// The running engine (for device pause, stats).
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the engine lives until run() ends")
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// Mine until `stop` completes, the observer says stop, or the source ends; then shut down:
    /// the engine stops, every share it still verifies goes through the ledger (blocks to disk
    /// and to the node), and answers in flight are awaited for [`MinerConfig::shutdown_wait`].
    pub async fn run(mut self, stop: impl Future<Output = ()>, obs: &mut dyn Observer) -> Outcome {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                sh = self.shares.recv() => match sh {
                    Some(sh) => self.on_share(sh, obs),
                    None => break,
                },
                ev = self.source.next_event() => match ev {
                    Some(ev) => self.on_event(ev, obs),
                    None => { tracing::error!("the job source stopped"); break }
                },
                _ = tick.tick() => {
                    self.sync();
                    self.refloor(obs);
                    let snap = self.ledger.snapshot();
                    if obs.tick(self.engine(), &snap) == Tick::Stop { break }
                }
            }
        }
        self.finish(obs).await
    }

    /// The ledger as it stands.
    pub fn ledger(&self) -> LedgerSnapshot {
        self.ledger.snapshot()
    }

    fn sync(&mut self) {
        if let Some(e) = &self.engine {
            self.ledger.sync_engine_stale(e.stats().stale);
        }
        let by_device = self.dropped.by_device.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (dev, n) in by_device {
            let seen = self.dropped_seen.entry(dev).or_default();
            for _ in *seen..n {
                self.ledger.found_and_dropped(Some(dev), StaleReason::QueueFull);
            }
            *seen = n;
        }
    }

    async fn finish(mut self, obs: &mut dyn Observer) -> Outcome {
        let engine = self.engine.take().expect("finish runs once");
        // Stop the engine on a blocking thread while this one keeps taking its last shares, so
        // a verifier waiting for queue room (a block) is never stuck behind us.
        let mut stopping = tokio::task::spawn_blocking(move || engine.stop());
        let mut open = true;
        let stats = loop {
            tokio::select! {
                sh = self.shares.recv(), if open => match sh {
                    Some(sh) => self.on_share(sh, obs),
                    // The verifier is gone: only the stop itself is left to wait for.
                    None => open = false,
                },
                r = &mut stopping => break r.expect("engine stop does not panic"),
            }
        };
        while let Ok(sh) = self.shares.try_recv() {
            self.on_share(sh, obs);
        }
        // Answers to what is in flight, for a bounded time.
        for ev in self.source.shutdown(self.cfg.shutdown_wait).await {
            self.on_event(ev, obs);
        }
        self.ledger.sync_engine_stale(stats.stale);
        self.sync();
        let ledger = self.ledger.snapshot();
        if ledger.in_flight > 0 {
            tracing::warn!(in_flight = ledger.in_flight, "shares still unanswered at the end of the run");
        }
        Outcome { engine_shares: stats.shares, stats, ledger }
    }

    fn on_share(&mut self, sh: Share, obs: &mut dyn Observer) {
        let Some(entry) = self.book.iter().rev().find(|e| e.engine_id == sh.job_id) else {
            let id = self.ledger.found(InFlight { device: sh.device, job_difficulty: 0.0, is_block: sh.is_block, source: 0 });
            tracing::warn!(job = %sh.job_id, block = sh.is_block, "share for a job no longer in the book: stale");
            obs.share_found(&sh, None);
            self.settle(id, Fate::Stale(StaleReason::JobReplaced), obs);
            return;
        };
        let key = entry.key.clone();
        let id = self.ledger.found(InFlight {
            device: sh.device,
            job_difficulty: entry.asked_difficulty,
            is_block: sh.is_block,
            source: key.conn.pool,
        });
        obs.share_found(&sh, Some(&key));
        let dedup: DedupKey = (key.conn.pool, key.job.clone(), content_id(&entry.job.job));
        let sig: ShareSig = (sh.extranonce2.clone(), sh.ntime, sh.nonce, sh.version);
        let seen = match self.submitted.iter_mut().find(|(k, _)| *k == dedup) {
            Some((_, set)) => set,
            None => {
                if self.submitted.len() >= self.cfg.job_book {
                    self.submitted.pop_front();
                }
                self.submitted.push_back((dedup, HashSet::new()));
                &mut self.submitted.back_mut().expect("just pushed").1
            }
        };
        // A rescan of the same job (a mask change, a new share floor) starts its extranonce2
        // counter again, so the shares it would repeat are the job's first ones: keep those,
        // and stop remembering past the cap so a job that lives for hours stays bounded.
        let repeat = if seen.len() < SHARES_REMEMBERED_PER_JOB { !seen.insert(sig) } else { seen.contains(&sig) };
        if repeat {
            tracing::warn!(job = %key, nonce = sh.nonce, "the same share again for this job: not sent twice");
            self.settle(id, Fate::Stale(StaleReason::Duplicate), obs);
            return;
        }
        tracing::info!(job = %key, difficulty = format!("{:.3}", sh.difficulty), block = sh.is_block, "share found");
        if let Err(why) = self.source.submit(Submission { id, job: key, share: sh }) {
            self.settle(id, Fate::Stale(why), obs);
        }
    }

    fn settle(&mut self, id: ShareId, fate: Fate, obs: &mut dyn Observer) {
        if let Some(s) = self.ledger.settle(id, &fate) {
            if let Some(e) = &self.engine
                && !matches!(fate, Fate::Stale(_))
            {
                e.share_result(fate == Fate::Accepted);
            }
            obs.share_settled(id, &fate, &s);
        }
    }

    fn on_event(&mut self, ev: SourceEvent, obs: &mut dyn Observer) {
        obs.source_event(&ev);
        match ev {
            SourceEvent::Job(job) => self.on_job(job, obs),
            SourceEvent::VersionMask { conn, mask } => self.on_mask(conn, mask, obs),
            SourceEvent::Settled { id, fate } => self.settle(id, fate, obs),
            SourceEvent::Connected { .. } | SourceEvent::Standby { .. } | SourceEvent::Disconnected { .. } | SourceEvent::Notice(_) => {}
        }
    }

    /// The share target the engine hunts with: the source's, unless that would make more than
    /// [`MinerConfig::max_share_rate`] shares a second; never above the network's difficulty,
    /// so no block is ever missed.
    fn effective_target(&mut self, job: &SourceJob, obs: &mut dyn Observer) -> Target {
        let asked = difficulty_of_target(&job.share_target);
        let Some(engine) = &self.engine else { return job.share_target };
        let elapsed = engine.elapsed().as_secs_f64();
        let measured = if elapsed >= 1.0 { engine.hashes() as f64 / elapsed } else { 0.0 };
        let nominal: f64 = engine.devices().iter().filter_map(|d| d.nominal_hashrate).sum();
        // Before there is a measurement (the first second), go by the devices' nominal rate or
        // assume a fast device: too high a floor for a second costs the pool's view a few
        // shares, too low a one floods the queues. Then the measured rate decides.
        let rate = if measured > 0.0 { measured } else { nominal.max(self.cfg.assumed_hashrate) };
        let network = difficulty_from_nbits(job.job.nbits());
        let floor = (rate / 4_294_967_296.0 / self.cfg.max_share_rate.max(1e-3)).min(network);
        if asked >= floor {
            obs.difficulty_floor(asked, asked);
            return job.share_target;
        }
        match target_from_difficulty(floor) {
            Ok(t) => {
                let mark = floor.to_bits();
                if self.floor_logged != Some(mark) {
                    self.floor_logged = Some(mark);
                    tracing::warn!(asked, used = floor, max_rate = self.cfg.max_share_rate, "share difficulty raised to bound the share rate");
                }
                obs.difficulty_floor(asked, floor);
                t
            }
            Err(_) => job.share_target,
        }
    }

    fn on_job(&mut self, job: SourceJob, obs: &mut dyn Observer) {
        let asked_difficulty = difficulty_of_target(&job.share_target);
        // The same job again (a reconnect to the same pool that resends its job with the same
        // extranonce1): keep scanning where the engine is, under the new connection's name.
        if let Some(cur) = self.book.back_mut()
            && cur.key.conn.pool == job.key.conn.pool
            && cur.key.job == job.key.job
            && cur.job.job == job.job
            && cur.job.share_target == job.share_target
        {
            tracing::info!(job = %job.key, "the same job again: the scan continues");
            cur.key = job.key.clone();
            cur.job = job;
            return;
        }
        let target = self.effective_target(&job, obs);
        self.set_engine_job(job, target, asked_difficulty);
    }

    fn set_engine_job(&mut self, job: SourceJob, target: Target, asked_difficulty: f64) {
        self.seq += 1;
        let engine_id = self.seq.to_string();
        if job.clean {
            // Shares of older jobs still in the queue are void: the engine dropped their work.
            self.book.clear();
        }
        if self.book.len() >= self.cfg.job_book {
            self.book.pop_front();
        }
        if let Some(e) = &self.engine {
            e.set_job(Job { id: engine_id.clone(), source: job.job.clone(), share_target: target, clean: job.clean });
        }
        self.book.push_back(BookEntry { engine_id, key: job.key.clone(), job, asked_difficulty, target });
    }

    /// With a measured rate, move the live job's floor when it is off by more than a factor 2
    /// (up: too many shares; down, never below what the source asked: too few).
    fn refloor(&mut self, obs: &mut dyn Observer) {
        let Some(cur) = self.book.back() else { return };
        let job = cur.job.clone();
        let (old, asked) = (difficulty_of_target(&cur.target), cur.asked_difficulty);
        let target = self.effective_target(&job, obs);
        let new = difficulty_of_target(&target);
        if new > 2.0 * old || (old > asked && new < old / 2.0) {
            let mut job = job;
            job.clean = false;
            self.set_engine_job(job, target, asked);
        } else {
            // Left as it is: show what the engine really hunts at.
            obs.difficulty_floor(asked, old);
        }
    }

    fn on_mask(&mut self, conn: ConnKey, mask: Option<u32>, _obs: &mut dyn Observer) {
        let Some(cur) = self.book.back() else { return };
        if cur.key.conn != conn {
            return;
        }
        let new = mask.unwrap_or(0);
        let old = cur.job.job.version_mask();
        if new == old {
            return;
        }
        let mut job = cur.job.clone();
        job.job.set_version_mask(new);
        // Bits taken away make work in flight invalid: that is a clean change.
        job.clean = old & !new != 0;
        let (target, asked) = (cur.target, cur.asked_difficulty);
        tracing::info!(old = format!("{old:08x}"), new = format!("{new:08x}"), "version mask changed: live job updated");
        self.set_engine_job(job, target, asked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashrig_work::StandardJob;

    #[test]
    fn standard_jobs_with_one_id_are_told_apart_by_their_merkle_root() {
        let sj = |root: u8| {
            HeaderSource::Standard(StandardJob {
                version: 0x2000_0000,
                prev_hash: [1; 32],
                merkle_root: [root; 32],
                ntime: 1_700_000_000,
                nbits: 0x1d00_ffff,
                version_mask: 0,
            })
        };
        assert_eq!(content_id(&sj(7)), content_id(&sj(7)), "the same job sent again is the same search space");
        assert_ne!(content_id(&sj(7)), content_id(&sj(8)), "another header under a reused id is not");
        assert!(content_id(&HeaderSource::Fixed([0; 80])).is_empty());
    }
}
