//! The SV2 mining client: an ordered failover list of pools with failback (on any pool but the
//! first, the pools above it are tried every `failback_interval`; the one left gets up to 5 s to
//! answer the shares on their way), one connection at a time, one channel on it: extended (hashrig rolls the extranonce and builds the merkle root) or standard
//! (the pool builds the merkle root; for header-only devices). It turns the pool's messages into
//! [`ClientEvent`]s (jobs as [`HeaderSource`]s with their exact share target) and the miner's
//! shares into `SubmitSharesExtended` / `SubmitSharesStandard` frames, and settles every share it takes exactly once: accepted (a
//! `SubmitShares.Success` batch covering its sequence number), rejected (`SubmitShares.Error`),
//! or stale (never answered: the connection went, the answer deadline passed, the run ended).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::block::Version;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use hashrig_sha256d::Target;
use hashrig_work::job::CoinbaseJob;
use hashrig_work::{HeaderSource, StandardJob};
use stratum_core::binary_sv2::{B032Owned, Str0255Owned, U256Owned};
use stratum_core::common_messages_sv2::{Protocol, SetupConnectionOwned};
use stratum_core::mining_sv2::{
    NewExtendedMiningJobOwned, NewMiningJobOwned, OpenExtendedMiningChannelOwned, OpenStandardMiningChannelOwned, SubmitSharesExtendedOwned,
    SubmitSharesStandard,
};
use stratum_core::parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};
use tokio::sync::{mpsc, oneshot};

use crate::conn::{self, Inbound, Reader, Writer};
use crate::{Error, PoolUrl};

mod session;
mod setup;

use session::*;
pub use setup::{check_extranonce, setup_flags};
use setup::*;

/// Version bits a miner may roll (BIP 320). The reference server accepts a wider mask
/// (0x1fffffe0); hashrig stays inside BIP 320 so its shares are valid anywhere.
pub const BIP320_MASK: u32 = 0x1fff_e000;
/// SetupConnection flag (mining protocol): the device needs version rolling.
pub const REQUIRES_VERSION_ROLLING: u32 = 1 << 2;
/// SetupConnection flag (mining protocol): the device can only take standard jobs.
pub const REQUIRES_STANDARD_JOBS: u32 = 1 << 0;
/// Live (and future) jobs remembered per connection; shares of older ones count stale.
const JOBS_KEPT: usize = 64;
/// The longest extranonce SV2 carries (prefix + rollable part), bytes.
pub const MAX_EXTRANONCE: usize = 32;

/// What the client tells its user and the pool about the device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub vendor: String,
    pub hardware: String,
    pub firmware: String,
    pub device_id: String,
}

impl Default for DeviceInfo {
    fn default() -> Self {
        DeviceInfo { vendor: "hashrig".into(), hardware: "cpu".into(), firmware: env!("CARGO_PKG_VERSION").into(), device_id: String::new() }
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The failover list, first = preferred.
    pub pools: Vec<Sv2Pool>,
    /// Hashes per second, told to the pool so it can pick a starting target.
    pub nominal_hashrate: f32,
    /// The fewest extranonce bytes hashrig asks to roll; a pool granting fewer is refused.
    pub min_extranonce_size: u16,
    pub device: DeviceInfo,
    /// Ask for version rolling (BIP 320 bits) and roll when jobs allow it.
    pub version_rolling: bool,
    pub connect_timeout: Duration,
    /// How long a share may wait for its answer before it counts stale (`no_answer`).
    pub answer_timeout: Duration,
    /// Pause after every pool of the list failed (or after a lost session).
    pub retry_delay: Duration,
    /// A pool that sends nothing for this long is left (reconnected, or the next one).
    pub silence_timeout: Duration,
    /// While mining on a pool other than the first, try the pools ranked above it this often
    /// and move back to the first that opens a channel (failback, as the v1 client does).
    pub failback_interval: Duration,
    /// The channel to open where a pool's URL does not say (`?channel=`): extended (the
    /// default) or standard.
    pub channel: ChannelKind,
}

/// One pool of the list and the account on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sv2Pool {
    pub url: PoolUrl,
    /// The channel's user identity (the pool's account, `user.worker`).
    pub user: String,
}

impl ClientConfig {
    /// `urls` all with the same `user`.
    pub fn new(urls: Vec<PoolUrl>, user: impl Into<String>) -> Self {
        let user = user.into();
        Self::with_pools(urls.into_iter().map(|url| Sv2Pool { url, user: user.clone() }).collect())
    }

    pub fn with_pools(pools: Vec<Sv2Pool>) -> Self {
        ClientConfig {
            pools,
            nominal_hashrate: 1e7,
            min_extranonce_size: 4,
            device: DeviceInfo::default(),
            version_rolling: true,
            connect_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(60),
            retry_delay: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(180),
            failback_interval: Duration::from_secs(60),
            channel: ChannelKind::Extended,
        }
    }
}

/// The kind of channel open on a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelKind {
    /// hashrig rolls the extranonce and builds the coinbase and merkle root.
    #[default]
    Extended,
    /// The pool builds the merkle root (header-only devices).
    Standard,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Extended => "extended",
            ChannelKind::Standard => "standard",
        }
    }
}

/// The channel a connection opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    pub kind: ChannelKind,
    pub channel_id: u32,
    pub extranonce_prefix: Vec<u8>,
    /// The extranonce bytes hashrig rolls (0 on a standard channel).
    pub extranonce_size: u16,
    pub version_rolling: bool,
}

/// A job, ready for the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Sv2Job {
    pub job_id: u32,
    /// A coinbase to roll (extended channel) or the pool's header (standard channel).
    pub job: HeaderSource,
    /// The exact target of this job (the channel's when the job went live), little-endian.
    pub target: Target,
    /// A new previous block: every other job of the channel is void.
    pub clean: bool,
}

/// How the pool answered a share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareOutcome {
    Accepted,
    Rejected { reason: String },
}

/// Why a share was never answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// Its job is no longer live (a new previous block voided it).
    JobNotLive,
    ConnectionLost,
    NoAnswer,
    SendFailed,
    Shutdown,
    /// Not valid for its job (extranonce size, version bits outside the mask).
    Invalid,
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    Connected { pool: usize, conn: u64, url: String, channel: ChannelInfo },
    Disconnected { pool: usize, conn: u64, reason: String },
    Job { pool: usize, conn: u64, job: Sv2Job },
    ShareResult { id: u64, outcome: ShareOutcome },
    ShareStale { id: u64, reason: StaleReason },
    /// A connection attempt failed, a message was refused or ignored: worth a log line.
    Notice(String),
}

/// A share for the pool, by the job it was found on.
#[derive(Clone, Debug)]
pub struct ShareSubmit {
    /// The caller's name for it (the ledger's id), echoed in its settlement.
    pub id: u64,
    pub pool: usize,
    pub conn: u64,
    pub job_id: u32,
    /// The rolled part only (exactly the granted size; empty on a standard channel).
    pub extranonce: Vec<u8>,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
}

/// Counters and the live channel, for monitoring.
#[derive(Clone, Debug, Default)]
pub struct ClientStatus {
    /// Per pool (list order): the channel while connected.
    pub channels: BTreeMap<usize, ChannelInfo>,
    /// Messages refused or not understood (unknown types, bad sizes, unexpected answers).
    pub protocol_errors: u64,
    /// The last connection error per pool.
    pub last_error: BTreeMap<usize, String>,
    /// The failover order (pool indices, preferred first); changed by
    /// [`ClientHandle::switch_pool`].
    pub order: Vec<usize>,
}

enum Cmd {
    Submit(ShareSubmit),
    /// Make this pool the preferred one and move to it (cgminer's `switchpool`).
    Switch(usize),
    Shutdown { limit: Duration, done: oneshot::Sender<()> },
}

/// The caller's side of a running client.
#[derive(Clone, Debug)]
pub struct ClientHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<ClientStatus>>,
    pools: usize,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Submit(s) => write!(f, "Submit({})", s.id),
            Cmd::Switch(p) => write!(f, "Switch({p})"),
            Cmd::Shutdown { limit, .. } => write!(f, "Shutdown({limit:?})"),
        }
    }
}

impl ClientHandle {
    /// Hand a share over; `false` when the client has stopped (the caller settles it).
    pub fn submit(&self, s: ShareSubmit) -> bool {
        self.tx.send(Cmd::Submit(s)).is_ok()
    }

    /// Stop connecting, wait at most `limit` for answers to shares in flight, then stop.
    pub async fn shutdown(&self, limit: Duration) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown { limit, done }).is_ok() {
            let _ = wait.await;
        }
    }

    pub fn status(&self) -> ClientStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Make `pool` the preferred pool (cgminer's `switchpool`): it moves to the front of the
    /// failover order and the client moves to it once it opens a channel there (the pool left
    /// answers its shares in flight first, as on failback). False for a pool not in the list or
    /// a client that has stopped.
    pub fn switch_pool(&self, pool: usize) -> bool {
        pool < self.pools && self.tx.send(Cmd::Switch(pool)).is_ok()
    }
}

/// Start the client on the current tokio runtime.
pub fn spawn(cfg: ClientConfig) -> (ClientHandle, mpsc::UnboundedReceiver<ClientEvent>, tokio::task::JoinHandle<()>) {
    let (tx, cmds) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let pools = cfg.pools.len();
    let status = Arc::new(Mutex::new(ClientStatus { order: (0..pools).collect(), ..Default::default() }));
    let task = tokio::spawn(Client { cfg, cmds, events: ev_tx, status: status.clone(), serial: 0, stopping: None, order: (0..pools).collect() }.run());
    (ClientHandle { tx, status, pools }, events, task)
}

struct Client {
    cfg: ClientConfig,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<ClientEvent>,
    status: Arc<Mutex<ClientStatus>>,
    serial: u64,
    stopping: Option<(Instant, oneshot::Sender<()>)>,
    /// The failover order: pool indices, preferred first.
    order: Vec<usize>,
}

/// A connection with its channel open: the writer, the reader, the channel, its target.
type Opened = (Writer, Reader, ChannelInfo, Target);

/// How a session ended.
enum End {
    Lost(String),
    /// The pool asked to reconnect to another port of the same host.
    Reconnect(u16),
    /// Another pool opened a channel: one ranked higher (failback), or the one a switch asked
    /// for (`true`). Mine there.
    Failback(usize, Box<Opened>, bool),
    Stopped,
}

impl Client {
    fn emit(&self, ev: ClientEvent) {
        let _ = self.events.send(ev);
    }

    fn status(&self) -> std::sync::MutexGuard<'_, ClientStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move `pool` to the front of the failover order.
    fn prefer(&mut self, pool: usize) {
        if pool < self.cfg.pools.len() {
            self.order.retain(|&p| p != pool);
            self.order.insert(0, pool);
            self.status().order = self.order.clone();
            tracing::info!(pool, order = ?self.order, "SV2 pool preferred by request");
        }
    }

    /// Where `pool` ranks in the failover order.
    fn rank(&self, pool: usize) -> usize {
        self.order.iter().position(|&p| p == pool).unwrap_or(usize::MAX)
    }

    /// A command while no connection is up: shares are stale, a switch reorders (the next pass
    /// down the list starts with that pool), a shutdown ends the run.
    fn idle_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Submit(s) => self.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::ConnectionLost }),
            Cmd::Switch(p) => self.prefer(p),
            Cmd::Shutdown { done, .. } => {
                let _ = done.send(());
                self.stopping = Some((Instant::now(), oneshot::channel().0));
            }
        }
    }

    async fn run(mut self) {
        if self.cfg.pools.is_empty() {
            self.emit(ClientEvent::Notice("no SV2 pool configured".into()));
            return;
        }
        let mut port_override: HashMap<usize, u16> = HashMap::new();
        // A channel failback opened, to mine on next.
        let mut next: Option<(usize, Box<Opened>)> = None;
        'outer: loop {
            let mut rank = 0;
            while rank < self.cfg.pools.len() {
                if self.stopping.is_some() {
                    break 'outer;
                }
                if let Some((better, _)) = &next {
                    rank = self.rank(*better).min(self.cfg.pools.len() - 1);
                }
                let pool = match &next {
                    Some((better, _)) => *better,
                    None => self.order[rank],
                };
                let Sv2Pool { url, user } = self.cfg.pools[pool].clone();
                let port = port_override.get(&pool).copied().unwrap_or(url.port);
                self.serial += 1;
                let conn = self.serial;
                let opened = match next.take() {
                    Some((_, opened)) => Ok(*opened),
                    None => {
                        let cfg = self.cfg.clone();
                        let attempt = open(&cfg, &url, &user, port);
                        tokio::pin!(attempt);
                        let opened = loop {
                            tokio::select! {
                                r = &mut attempt => break Some(r),
                                cmd = self.cmds.recv() => match cmd {
                                    Some(cmd) => { self.idle_cmd(cmd); if self.stopping.is_some() { break None } }
                                    None => break None,
                                }
                            }
                        };
                        let Some(opened) = opened else { break 'outer };
                        opened
                    }
                };
                match opened {
                    Err(e) => {
                        tracing::warn!(pool, url = %url, error = %e, "SV2 pool unavailable");
                        self.status().last_error.insert(pool, e.to_string());
                        self.emit(ClientEvent::Notice(format!("pool {pool} ({url}): {e}")));
                        rank += 1;
                    }
                    Ok((w, rx, channel, target)) => {
                        tracing::info!(pool, url = %url, channel = channel.kind.as_str(), extranonce_size = channel.extranonce_size, "SV2 channel open");
                        self.status().channels.insert(pool, channel.clone());
                        self.emit(ClientEvent::Connected { pool, conn, url: url.to_string(), channel: channel.clone() });
                        let mut s = Session::new(pool, conn, url.host.clone(), w, channel, target);
                        let end = s.run(&mut self, rx).await;
                        self.status().channels.remove(&pool);
                        let reason = match &end {
                            End::Lost(r) => r.clone(),
                            End::Reconnect(p) => format!("the pool asked to reconnect to port {p}"),
                            End::Failback(to, _, true) => format!("switching to pool {to} by request"),
                            End::Failback(better, _, false) => format!("failing back to pool {better}"),
                            End::Stopped => "shutdown".into(),
                        };
                        self.emit(ClientEvent::Disconnected { pool, conn, reason: reason.clone() });
                        match end {
                            End::Stopped => break 'outer,
                            End::Failback(better, opened, _) => {
                                tracing::info!(pool = better, from = pool, "SV2 failback: a pool ranked higher is back");
                                next = Some((better, opened));
                                continue;
                            }
                            End::Reconnect(p) => {
                                port_override.insert(pool, p);
                                continue;
                            }
                            End::Lost(_) => {
                                tracing::warn!(pool, reason, "SV2 connection lost");
                                self.status().last_error.insert(pool, reason);
                                self.pause().await;
                                continue 'outer;
                            }
                        }
                    }
                }
            }
            self.pause().await;
        }
        if let Some((_, done)) = self.stopping.take() {
            let _ = done.send(());
        }
    }

    /// Wait the retry delay, taking commands meanwhile.
    async fn pause(&mut self) {
        let sleep = tokio::time::sleep(self.cfg.retry_delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => { self.idle_cmd(cmd); if self.stopping.is_some() { return } }
                    None => return,
                }
            }
        }
    }
}
