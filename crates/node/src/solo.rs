//! The solo-mining driver: keeps fresh work coming from `getblocktemplate` (long polling, plus a
//! periodic refresh so nbits follows the testnet 20-minute rule), and takes found blocks through
//! the store to `submitblock`, retrying until the node answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::{BlockHash, ScriptBuf};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::rpc::RpcClient;
use crate::store::{BlockStore, StoredBlock};
use crate::template::{BlockTemplate, SoloWork};
use crate::Error;

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
    /// Pause between attempts when the node does not answer.
    pub retry: Duration,
}

/// What the miner hears.
#[derive(Clone, Debug)]
pub enum SoloEvent {
    /// New work. `clean`: the previous block changed, older work is void.
    Work { work: Arc<SoloWork>, clean: bool },
    /// The node answered a block: `None` accepted, `Some(reason)` rejected.
    BlockResult { hash: BlockHash, rejected: Option<String> },
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
    pub blocks_found: u64,
    pub blocks_accepted: u64,
    pub blocks_rejected: u64,
    pub node_errors: u64,
    pub height: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct SoloHandle {
    tx: mpsc::UnboundedSender<FoundBlock>,
    stats: Arc<Mutex<SoloStats>>,
}

impl SoloHandle {
    pub fn submit(&self, b: FoundBlock) -> bool {
        self.tx.send(b).is_ok()
    }
    pub fn stats(&self) -> SoloStats {
        self.stats.lock().expect("stats lock is never poisoned").clone()
    }
}

/// Ask the node until it answers; `None` = accepted (or already known), `Some` = rejected.
pub async fn submit_until_answered(rpc: &RpcClient, block: &StoredBlock, retry: Duration) -> Option<String> {
    let hexblock = hex::encode(&block.bytes);
    loop {
        match rpc.call("submitblock", json!([hexblock])).await {
            Ok(Value::Null) => return None,
            Ok(Value::String(s)) if s == "duplicate" => return None,
            Ok(Value::String(s)) => return Some(s),
            Ok(other) => return Some(other.to_string()),
            Err(Error::Rpc { code, message, .. }) => return Some(format!("rpc error {code}: {message}")),
            Err(e) => {
                tracing::warn!(hash = %block.hash, error = %e, "block not yet submitted; retrying");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Submit what a crash left pending (call before mining). Returns how many were answered.
pub async fn submit_pending(cfg: &SoloConfig) -> Result<Vec<(BlockHash, Option<String>)>, Error> {
    let mut out = Vec::new();
    for b in cfg.store.pending()? {
        tracing::info!(hash = %b.hash, "submitting a block found before the last stop");
        let r = submit_until_answered(&cfg.rpc, &b, cfg.retry).await;
        cfg.store.finish(&b, r.as_deref())?;
        out.push((b.hash, r));
    }
    Ok(out)
}

async fn fetch(rpc: &RpcClient, longpollid: Option<&str>, limit: Duration) -> Result<BlockTemplate, Error> {
    let mut req = json!({"rules": ["segwit"], "capabilities": ["coinbasetxn", "workid", "coinbase/append", "longpoll"]});
    if let Some(id) = longpollid {
        req["longpollid"] = json!(id);
    }
    let v = rpc.call_with_timeout("getblocktemplate", json!([req]), limit).await?;
    serde_json::from_value(v).map_err(|e| Error::Template { why: e.to_string() })
}

/// Start the driver. Pending blocks from earlier runs are submitted before the first work.
pub fn spawn(cfg: SoloConfig) -> (SoloHandle, mpsc::UnboundedReceiver<SoloEvent>, tokio::task::JoinHandle<()>) {
    let (btx, mut brx) = mpsc::unbounded_channel::<FoundBlock>();
    let (etx, erx) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(SoloStats::default()));
    let refetch = Arc::new(Notify::new());
    let handle = SoloHandle { tx: btx, stats: stats.clone() };
    let task = tokio::spawn(async move {
        match submit_pending(&cfg).await {
            Ok(done) => {
                for (hash, rejected) in done {
                    let _ = etx.send(SoloEvent::BlockResult { hash, rejected });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the block store");
                let _ = etx.send(SoloEvent::NodeError(e.to_string()));
            }
        }
        // Blocks: save, then submit until answered.
        let bcfg = cfg.clone();
        let betx = etx.clone();
        let bstats = stats.clone();
        let brefetch = refetch.clone();
        let blocks = tokio::spawn(async move {
            while let Some(found) = brx.recv().await {
                let bytes = found.work.block_bytes(&found.extranonce2, &found.header);
                bstats.lock().expect("stats lock").blocks_found += 1;
                // Durable first: a crash after this line loses nothing.
                let stored = loop {
                    match bcfg.store.save(&bytes) {
                        Ok(s) => break s,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot write the found block; retrying");
                            tokio::time::sleep(bcfg.retry).await;
                        }
                    }
                };
                tracing::info!(hash = %stored.hash, height = found.work.height, path = %stored.path.display(), "block found and saved");
                let rejected = submit_until_answered(&bcfg.rpc, &stored, bcfg.retry).await;
                if let Err(e) = bcfg.store.finish(&stored, rejected.as_deref()) {
                    tracing::error!(error = %e, "block answered but could not be moved out of pending/");
                }
                {
                    let mut st = bstats.lock().expect("stats lock");
                    if rejected.is_some() {
                        st.blocks_rejected += 1;
                    } else {
                        st.blocks_accepted += 1;
                    }
                }
                match &rejected {
                    None => tracing::info!(hash = %stored.hash, "block accepted by the node"),
                    Some(r) => tracing::warn!(hash = %stored.hash, reason = %r, "block rejected by the node"),
                }
                let _ = betx.send(SoloEvent::BlockResult { hash: stored.hash, rejected });
                brefetch.notify_one();
            }
        });
        // Templates.
        let mut last_prev = None;
        let mut longpollid: Option<String> = None;
        loop {
            let limit = if longpollid.is_some() { cfg.refresh } else { cfg.rpc.timeout };
            let got = tokio::select! {
                r = fetch(&cfg.rpc, longpollid.as_deref(), limit) => Some(r),
                _ = refetch.notified() => None,
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
                        let mut st = stats.lock().expect("stats lock");
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
                    stats.lock().expect("stats lock").node_errors += 1;
                    tracing::warn!(error = %e, "getblocktemplate failed");
                    if etx.send(SoloEvent::NodeError(e.to_string())).is_err() {
                        break;
                    }
                    longpollid = None;
                    tokio::time::sleep(cfg.retry).await;
                }
            }
        }
        blocks.abort();
    });
    (handle, erx, task)
}
