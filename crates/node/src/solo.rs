//! The solo-mining driver: keeps fresh work coming from `getblocktemplate` (long polling, plus a
//! periodic refresh so nbits follows the testnet 20-minute rule), and takes found blocks through
//! the store to `submitblock`, retrying until the node answers.
//!
//! A found block's life: [`SoloHandle::submit`] writes it to `pending/` and fsyncs it in the
//! caller, before anything else, then submits it in a task of its own: blocks never wait behind
//! one another's retries. The task asks the node until it gives a BIP 22 answer
//! ([`submit_until_answered`]); everything short of that (JSON-RPC errors such as -28 while the
//! node starts, HTTP 5xx, no connection, no answer in time) is logged and retried with a
//! doubling back-off, the block staying in `pending/`. The answer moves the file out of
//! `pending/` ([`BlockStore::finish`]) and ends in exactly one [`SoloEvent::BlockResult`].
//! [`SoloHandle::shutdown`] waits a bounded time for blocks still in flight and names those left
//! unanswered: they stay in `pending/`, and [`spawn`] submits them first on the next start.
//!
//! Damaged files in `pending/` are reported as [`SoloEvent::StoreDamaged`] (once per start) and
//! left in place; every other pending block is still submitted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::{BlockHash, ScriptBuf};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::AbortHandle;

use crate::Error;
use crate::rpc::RpcClient;
use crate::store::{BlockStore, StoredBlock};
use crate::template::{BlockTemplate, SoloWork};

/// The longest pause between two attempts at one block.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// Solo settings.
#[derive(Clone, Debug)]
pub struct SoloConfig {
    pub rpc: RpcClient,
    pub payout: ScriptBuf,
    /// Put in the coinbase scriptSig after the extranonce.
    pub tag: Vec<u8>,
    /// Where found blocks are kept.
    pub store: BlockStore,
    /// Fetch a fresh template at least this often (long poll or not).
    pub refresh: Duration,
    /// First pause after a failed attempt (template or block); block retries double it up to
    /// [`MAX_RETRY`].
    pub retry: Duration,
}

/// The node's answer to `submitblock` (BIP 22).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockAnswer {
    /// `null`: valid, and now the tip or on a valid branch.
    Accepted,
    /// `"duplicate"`: the node already had it (counted as accepted).
    Duplicate,
    /// `"inconclusive"` (or `"duplicate-inconclusive"`): stored, validity not decided, e.g. it
    /// went to a side branch. Not a rejection.
    Inconclusive,
    /// Any other string: the node's reject reason (`"bad-txnmrklroot"`, `"duplicate-invalid"`...),
    /// or an answer that is not a string at all, quoted.
    Rejected(String),
}

impl BlockAnswer {
    /// Read `submitblock`'s result.
    pub fn from_result(v: &Value) -> BlockAnswer {
        match v {
            Value::Null => BlockAnswer::Accepted,
            Value::String(s) => match s.as_str() {
                "duplicate" => BlockAnswer::Duplicate,
                "inconclusive" | "duplicate-inconclusive" => BlockAnswer::Inconclusive,
                _ => BlockAnswer::Rejected(s.clone()),
            },
            other => BlockAnswer::Rejected(format!("unexpected submitblock result {other}")),
        }
    }

    pub fn is_rejection(&self) -> bool {
        matches!(self, BlockAnswer::Rejected(_))
    }

    /// Accepted, or the node already had it.
    pub fn is_accepted(&self) -> bool {
        matches!(self, BlockAnswer::Accepted | BlockAnswer::Duplicate)
    }
}

impl std::fmt::Display for BlockAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockAnswer::Accepted => f.write_str("accepted"),
            BlockAnswer::Duplicate => f.write_str("accepted (duplicate: the node already had it)"),
            BlockAnswer::Inconclusive => f.write_str("inconclusive (taken, validity not decided)"),
            BlockAnswer::Rejected(r) => write!(f, "rejected: {r}"),
        }
    }
}

/// What the miner hears.
#[derive(Clone, Debug)]
pub enum SoloEvent {
    /// New work. `clean`: the previous block changed, older work is void.
    Work { work: Arc<SoloWork>, clean: bool },
    /// The node answered a block. Every block given to [`SoloHandle::submit`] (or found pending
    /// at start) ends in exactly one of these, unless [`SoloHandle::shutdown`] lists it.
    BlockResult { hash: BlockHash, answer: BlockAnswer },
    /// A file in `pending/` is not a usable block; it was left where it is.
    StoreDamaged { path: PathBuf, why: String },
    /// The node could not be used (logged; the driver keeps trying).
    NodeError(String),
}

/// A header that meets the network target, with what built it.
#[derive(Clone, Debug)]
pub struct FoundBlock {
    pub work: Arc<SoloWork>,
    pub extranonce2: Vec<u8>,
    pub header: Header,
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoloStats {
    pub templates: u64,
    /// Blocks given to [`SoloHandle::submit`] (not counting those pending from earlier runs).
    pub blocks_found: u64,
    /// Accepted or duplicate.
    pub blocks_accepted: u64,
    pub blocks_inconclusive: u64,
    pub blocks_rejected: u64,
    /// Blocks that could not be written to disk (submitted from memory all the same).
    pub blocks_unsaved: u64,
    pub node_errors: u64,
    pub height: Option<u32>,
}

/// Blocks being submitted.
#[derive(Debug, Default)]
struct InFlight {
    /// By hash: the task asking the node (set right after it is spawned).
    tasks: HashMap<BlockHash, Option<AbortHandle>>,
    /// Set by [`SoloHandle::shutdown`] once it has given up on what was left.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    rpc: RpcClient,
    store: BlockStore,
    retry: Duration,
    events: mpsc::UnboundedSender<SoloEvent>,
    stats: Mutex<SoloStats>,
    in_flight: Mutex<InFlight>,
    /// Signalled whenever a block leaves `in_flight`.
    answered: Notify,
    /// Ask the template loop for a fresh template (a block was accepted).
    refetch: Notify,
    /// `true` once shutdown has begun: the template loop stops.
    stop: watch::Sender<bool>,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, SoloStats> {
        self.stats.lock().expect("stats lock is never poisoned")
    }
    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight.lock().expect("in-flight lock is never poisoned")
    }
}

/// The miner's side of the driver. Cloning is cheap; clones share everything.
#[derive(Clone, Debug)]
pub struct SoloHandle {
    shared: Arc<Shared>,
    /// Where submit tasks run (so [`SoloHandle::submit`] works from any thread).
    rt: tokio::runtime::Handle,
}

impl SoloHandle {
    /// Take a found block: build its bytes and write them to `pending/` with an fsync, here in
    /// the caller (a short blocking write), then submit it in a task of its own and return
    /// the stored block. Its answer comes as one [`SoloEvent::BlockResult`].
    ///
    /// If the block cannot be written, it is still submitted from memory and the write error is
    /// returned: the caller should say loudly that a crash now would lose it. The same block
    /// (same hash) given again while it is in flight is written again but not submitted twice.
    /// A block given after [`SoloHandle::shutdown`] has returned is only written: the next
    /// start submits it.
    pub fn submit(&self, found: FoundBlock) -> Result<StoredBlock, Error> {
        let bytes = found.work.block_bytes(&found.extranonce2, &found.header);
        let hash = found.header.block_hash();
        self.shared.stats().blocks_found += 1;
        let saved = self.shared.store.save(&bytes);
        let (block, on_disk) = match &saved {
            Ok(stored) => {
                tracing::info!(%hash, height = found.work.height, path = %stored.path.display(), "block found and saved");
                (stored.clone(), true)
            }
            Err(e) => {
                self.shared.stats().blocks_unsaved += 1;
                tracing::error!(%hash, height = found.work.height, error = %e, "block found but NOT saved; submitting it from memory");
                let path = self.shared.store.dir().join("pending").join(format!("{hash}.hex"));
                (StoredBlock { hash, path, bytes }, false)
            }
        };
        start_submit(&self.shared, &self.rt, block, on_disk);
        saved
    }

    /// Stop: no more templates; wait at most `limit` for the blocks in flight to be answered
    /// (their [`SoloEvent::BlockResult`]s are sent before this returns), then stop asking for the
    /// rest and return their hashes. Those stay in `pending/` and are submitted first on the
    /// next start. Calling it again returns an empty list.
    pub async fn shutdown(&self, limit: Duration) -> Vec<BlockHash> {
        let _ = self.shared.stop.send(true);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let answered = self.shared.answered.notified();
            let mut answered = std::pin::pin!(answered);
            answered.as_mut().enable();
            if self.shared.in_flight().tasks.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, answered).await.is_err() {
                break;
            }
        }
        let mut fl = self.shared.in_flight();
        fl.closed = true;
        let mut left: Vec<BlockHash> = fl.tasks.drain().map(|(hash, task)| {
            if let Some(t) = task {
                t.abort();
            }
            hash
        }).collect();
        drop(fl);
        left.sort();
        for hash in &left {
            tracing::warn!(%hash, "block still unanswered at shutdown; it stays pending and goes first on the next start");
        }
        left
    }

    pub fn stats(&self) -> SoloStats {
        self.shared.stats().clone()
    }

    /// Hashes of the blocks being submitted now.
    pub fn in_flight(&self) -> Vec<BlockHash> {
        let mut v: Vec<_> = self.shared.in_flight().tasks.keys().copied().collect();
        v.sort();
        v
    }
}

/// Submit `block` in its own task unless it is already in flight or shutdown is over.
fn start_submit(shared: &Arc<Shared>, rt: &tokio::runtime::Handle, block: StoredBlock, on_disk: bool) {
    let mut fl = shared.in_flight();
    if fl.closed {
        tracing::warn!(hash = %block.hash, "block given after shutdown: saved in pending/ for the next start, not submitted now");
        return;
    }
    if fl.tasks.contains_key(&block.hash) {
        tracing::info!(hash = %block.hash, "block already being submitted");
        return;
    }
    let hash = block.hash;
    // The task cannot finish before the lock is released, so its handle is in place first.
    let task = rt.spawn(submit_task(shared.clone(), block, on_disk));
    fl.tasks.insert(hash, Some(task.abort_handle()));
}

async fn submit_task(shared: Arc<Shared>, block: StoredBlock, on_disk: bool) {
    let answer = submit_until_answered(&shared.rpc, &block, shared.retry).await;
    // Nothing below awaits: once the block is taken out of `in_flight`, its event is sent.
    let mut fl = shared.in_flight();
    if fl.tasks.remove(&block.hash).is_none() {
        // Shutdown already listed it as unanswered: leave it pending, as it said.
        tracing::warn!(hash = %block.hash, %answer, "answer came after shutdown gave up on the block; it stays pending");
        return;
    }
    if on_disk && let Err(e) = shared.store.finish(&block, &answer) {
        tracing::error!(hash = %block.hash, %answer, error = %e, "block answered but could not be moved out of pending/; it will be submitted again on the next start");
    }
    {
        let mut st = shared.stats();
        match &answer {
            a if a.is_accepted() => st.blocks_accepted += 1,
            BlockAnswer::Inconclusive => st.blocks_inconclusive += 1,
            _ => st.blocks_rejected += 1,
        }
    }
    match &answer {
        BlockAnswer::Rejected(r) => tracing::warn!(hash = %block.hash, reason = %r, "block rejected by the node"),
        a => tracing::info!(hash = %block.hash, answer = %a, "block answered by the node"),
    }
    let accepted = answer.is_accepted();
    let _ = shared.events.send(SoloEvent::BlockResult { hash: block.hash, answer });
    drop(fl);
    shared.answered.notify_waiters();
    if accepted {
        shared.refetch.notify_one();
    }
}

/// Ask the node until it gives a BIP 22 answer. Every JSON-RPC error (-28 while the node
/// starts, or any other code) and every HTTP or transport failure is logged and retried after
/// `retry`, doubling up to [`MAX_RETRY`]; only a result (`null` or a string) ends the loop.
pub async fn submit_until_answered(rpc: &RpcClient, block: &StoredBlock, retry: Duration) -> BlockAnswer {
    let hexblock = hex::encode(&block.bytes);
    let mut pause = retry;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match rpc.call("submitblock", json!([hexblock])).await {
            Ok(v) => return BlockAnswer::from_result(&v),
            Err(e) => {
                let code = match &e {
                    Error::Rpc { code, .. } => Some(*code),
                    _ => None,
                };
                let status = match &e {
                    Error::HttpStatus { status, .. } => Some(*status),
                    _ => None,
                };
                tracing::error!(hash = %block.hash, attempt, rpc_code = ?code, http_status = ?status, error = %e, retry_in = ?pause, "block not yet accepted by the node (it stays pending on disk); retrying");
                tokio::time::sleep(pause).await;
                pause = next_pause(pause, retry);
            }
        }
    }
}

/// The pause after `pause`: twice as long, at most [`MAX_RETRY`] (or `first`, if that is longer).
pub fn next_pause(pause: Duration, first: Duration) -> Duration {
    (pause * 2).min(MAX_RETRY.max(first))
}

/// What [`submit_pending`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingOutcome {
    /// Blocks the node answered, in the order submitted.
    pub answered: Vec<(BlockHash, BlockAnswer)>,
    /// Files in `pending/` that are not usable blocks (left in place).
    pub damaged: Vec<(PathBuf, String)>,
}

/// Submit what a crash left pending, one after the other, each until answered (for tools;
/// [`spawn`] does the same concurrently). A block whose file cannot be moved afterwards is
/// logged and the rest go on. Fails only if `pending/` cannot be listed.
pub async fn submit_pending(cfg: &SoloConfig) -> Result<PendingOutcome, Error> {
    let scan = cfg.store.pending()?;
    for (path, why) in &scan.damaged {
        tracing::error!(path = %path.display(), why = %why, "damaged file in pending/ left in place");
    }
    let mut answered = Vec::new();
    for b in scan.blocks {
        tracing::info!(hash = %b.hash, "submitting a block found before the last stop");
        let a = submit_until_answered(&cfg.rpc, &b, cfg.retry).await;
        if let Err(e) = cfg.store.finish(&b, &a) {
            tracing::error!(hash = %b.hash, answer = %a, error = %e, "block answered but could not be moved out of pending/");
        }
        answered.push((b.hash, a));
    }
    Ok(PendingOutcome { answered, damaged: scan.damaged })
}

async fn fetch(rpc: &RpcClient, longpollid: Option<&str>, limit: Duration) -> Result<BlockTemplate, Error> {
    let mut req = json!({"rules": ["segwit"], "capabilities": ["coinbasetxn", "workid", "coinbase/append", "longpoll"]});
    if let Some(id) = longpollid {
        req["longpollid"] = json!(id);
    }
    let v = rpc.call_with_timeout("getblocktemplate", json!([req]), limit).await?;
    serde_json::from_value(v).map_err(|e| Error::Template { why: e.to_string() })
}

/// Start the driver (call inside a tokio runtime). Blocks left in `pending/` by earlier runs
/// are read here and each submitted in its own task before the first template is asked for;
/// damaged files there come first on the event channel as [`SoloEvent::StoreDamaged`]. The
/// returned task is the template loop: it ends after [`SoloHandle::shutdown`] or when the
/// event receiver is dropped.
pub fn spawn(cfg: SoloConfig) -> (SoloHandle, mpsc::UnboundedReceiver<SoloEvent>, tokio::task::JoinHandle<()>) {
    let (etx, erx) = mpsc::unbounded_channel();
    let (stop, mut stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        rpc: cfg.rpc.clone(),
        store: cfg.store.clone(),
        retry: cfg.retry,
        events: etx.clone(),
        stats: Mutex::new(SoloStats::default()),
        in_flight: Mutex::new(InFlight::default()),
        answered: Notify::new(),
        refetch: Notify::new(),
        stop,
    });
    let handle = SoloHandle { shared: shared.clone(), rt: tokio::runtime::Handle::current() };
    match cfg.store.pending() {
        Ok(scan) => {
            for (path, why) in scan.damaged {
                tracing::error!(path = %path.display(), why = %why, "damaged file in pending/ left in place");
                let _ = etx.send(SoloEvent::StoreDamaged { path, why });
            }
            for b in scan.blocks {
                tracing::info!(hash = %b.hash, "submitting a block found before the last stop");
                start_submit(&shared, &handle.rt, b, true);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the block store");
            let _ = etx.send(SoloEvent::NodeError(e.to_string()));
        }
    }
    let task = tokio::spawn(async move {
        let mut last_prev = None;
        let mut longpollid: Option<String> = None;
        loop {
            if *stop_rx.borrow() {
                break;
            }
            let limit = if longpollid.is_some() { cfg.refresh } else { cfg.rpc.timeout };
            let got = tokio::select! {
                r = fetch(&cfg.rpc, longpollid.as_deref(), limit) => Some(r),
                _ = shared.refetch.notified() => None,
                _ = stop_rx.changed() => break,
            };
            let r = match got {
                None => {
                    longpollid = None;
                    continue;
                }
                Some(r) => r,
            };
            match r.and_then(|t| SoloWork::from_template(&t, &cfg.payout, &cfg.tag)) {
                Ok(work) => {
                    let clean = last_prev != Some(work.job.prev_hash);
                    last_prev = Some(work.job.prev_hash);
                    longpollid = work.longpollid.clone();
                    {
                        let mut st = shared.stats();
                        st.templates += 1;
                        st.height = Some(work.height);
                    }
                    tracing::debug!(height = work.height, txs = work.txs.len(), clean, "new template");
                    if etx.send(SoloEvent::Work { work, clean }).is_err() {
                        break;
                    }
                }
                Err(Error::Timeout { .. }) if longpollid.is_some() => {
                    // The long poll ran its course: refresh (nbits may depend on the time).
                    longpollid = None;
                }
                Err(e) => {
                    shared.stats().node_errors += 1;
                    tracing::warn!(error = %e, "getblocktemplate failed");
                    if etx.send(SoloEvent::NodeError(e.to_string())).is_err() {
                        break;
                    }
                    longpollid = None;
                    tokio::select! {
                        _ = tokio::time::sleep(cfg.retry) => {}
                        _ = stop_rx.changed() => break,
                    }
                }
            }
        }
        tracing::debug!("template loop stopped");
    });
    (handle, erx, task)
}
