//! The SV2 mining client: an ordered failover list of pools, one connection at a time, one
//! channel on it: extended (hashrig rolls the extranonce and builds the merkle root) or standard
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
}

enum Cmd {
    Submit(ShareSubmit),
    Shutdown { limit: Duration, done: oneshot::Sender<()> },
}

/// The caller's side of a running client.
#[derive(Clone, Debug)]
pub struct ClientHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<ClientStatus>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Submit(s) => write!(f, "Submit({})", s.id),
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
}

/// Start the client on the current tokio runtime.
pub fn spawn(cfg: ClientConfig) -> (ClientHandle, mpsc::UnboundedReceiver<ClientEvent>, tokio::task::JoinHandle<()>) {
    let (tx, cmds) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let status = Arc::new(Mutex::new(ClientStatus::default()));
    let task = tokio::spawn(Client { cfg, cmds, events: ev_tx, status: status.clone(), serial: 0, stopping: None }.run());
    (ClientHandle { tx, status }, events, task)
}

struct Client {
    cfg: ClientConfig,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<ClientEvent>,
    status: Arc<Mutex<ClientStatus>>,
    serial: u64,
    stopping: Option<(Instant, oneshot::Sender<()>)>,
}

/// How a session ended.
enum End {
    Lost(String),
    /// The pool asked to reconnect to another port of the same host.
    Reconnect(u16),
    Stopped,
}

impl Client {
    fn emit(&self, ev: ClientEvent) {
        let _ = self.events.send(ev);
    }

    fn status(&self) -> std::sync::MutexGuard<'_, ClientStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A command while no connection is up: shares are stale, a shutdown ends the run.
    fn idle_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Submit(s) => self.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::ConnectionLost }),
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
        'outer: loop {
            let mut pool = 0;
            while pool < self.cfg.pools.len() {
                if self.stopping.is_some() {
                    break 'outer;
                }
                let Sv2Pool { url, user } = self.cfg.pools[pool].clone();
                let port = port_override.get(&pool).copied().unwrap_or(url.port);
                self.serial += 1;
                let conn = self.serial;
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
                match opened {
                    Err(e) => {
                        tracing::warn!(pool, url = %url, error = %e, "SV2 pool unavailable");
                        self.status().last_error.insert(pool, e.to_string());
                        self.emit(ClientEvent::Notice(format!("pool {pool} ({url}): {e}")));
                        pool += 1;
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
                            End::Stopped => "shutdown".into(),
                        };
                        self.emit(ClientEvent::Disconnected { pool, conn, reason: reason.clone() });
                        match end {
                            End::Stopped => break 'outer,
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

/// Connect, handshake, SetupConnection, then open the configured channel kind.
async fn open(cfg: &ClientConfig, url: &PoolUrl, user: &str, port: u16) -> Result<(Writer, Reader, ChannelInfo, Target), Error> {
    let (mut w, mut rx) = conn::connect(&url.host, port, url.authority, cfg.connect_timeout).await?;
    let kind = url.channel.unwrap_or(cfg.channel);
    let t = cfg.connect_timeout;
    let setup = SetupConnectionOwned {
        protocol: Protocol::MiningProtocol,
        min_version: 2,
        max_version: 2,
        flags: setup_flags(cfg.version_rolling, kind),
        endpoint_host: str0255(&url.host)?,
        endpoint_port: port,
        vendor: str0255(&cfg.device.vendor)?,
        hardware_version: str0255(&cfg.device.hardware)?,
        firmware: str0255(&cfg.device.firmware)?,
        device_id: str0255(&cfg.device.device_id)?,
    };
    w.send(AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(setup))).await?;
    let flags = match expect(&mut rx, t, "SetupConnection").await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(m)) => {
            if m.used_version != 2 {
                return Err(Error::Setup(format!("the pool chose protocol version {}, hashrig speaks 2", m.used_version)));
            }
            m.flags
        }
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(m)) => {
            return Err(Error::Setup(format!("the pool refused the connection setup: {} (flags {:#x})", text(m.error_code.as_bytes()), m.flags)));
        }
        m => return Err(Error::Protocol(format!("expected SetupConnection.Success, got {}", name(&m)))),
    };
    tracing::debug!(flags = format!("{flags:#x}"), "SetupConnection.Success");
    if kind == ChannelKind::Standard {
        return open_standard(cfg, user, w, rx).await;
    }
    let open = OpenExtendedMiningChannelOwned {
        request_id: 1,
        user_identity: str0255(user)?,
        nominal_hash_rate: cfg.nominal_hashrate,
        max_target: U256Owned::from([0xffu8; 32]),
        min_extranonce_size: cfg.min_extranonce_size,
    };
    w.send(AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannel(open))).await?;
    match expect(&mut rx, t, "OpenExtendedMiningChannel").await? {
        AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(m)) => {
            let prefix = m.extranonce_prefix.as_bytes().to_vec();
            check_extranonce(prefix.len(), m.extranonce_size, cfg.min_extranonce_size)?;
            let channel = ChannelInfo {
                kind: ChannelKind::Extended,
                channel_id: m.channel_id,
                extranonce_prefix: prefix,
                extranonce_size: m.extranonce_size,
                version_rolling: cfg.version_rolling,
            };
            let mut target = [0u8; 32];
            target.copy_from_slice(m.target.as_bytes());
            Ok((w, rx, channel, Target::from_le_bytes(target)))
        }
        AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(m)) => {
            Err(Error::OpenChannel(text(m.error_code.as_bytes())))
        }
        m => Err(Error::Protocol(format!("expected OpenExtendedMiningChannel.Success, got {}", name(&m)))),
    }
}

/// The SetupConnection flags (mining protocol) hashrig asks for: version rolling when
/// configured, and standard jobs only when it opens a standard channel.
pub fn setup_flags(version_rolling: bool, kind: ChannelKind) -> u32 {
    let mut flags = if version_rolling { REQUIRES_VERSION_ROLLING } else { 0 };
    if kind == ChannelKind::Standard {
        flags |= REQUIRES_STANDARD_JOBS;
    }
    flags
}

/// OpenStandardMiningChannel: the pool builds the merkle root, hashrig rolls no extranonce.
async fn open_standard(cfg: &ClientConfig, user: &str, mut w: Writer, mut rx: Reader) -> Result<(Writer, Reader, ChannelInfo, Target), Error> {
    let open = OpenStandardMiningChannelOwned {
        request_id: 1,
        user_identity: str0255(user)?,
        nominal_hash_rate: cfg.nominal_hashrate,
        max_target: U256Owned::from([0xffu8; 32]),
    };
    w.send(AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannel(open))).await?;
    match expect(&mut rx, cfg.connect_timeout, "OpenStandardMiningChannel").await? {
        AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(m)) => {
            let prefix = m.extranonce_prefix.as_bytes().to_vec();
            if prefix.len() > MAX_EXTRANONCE {
                return Err(Error::Extranonce(format!("an extranonce prefix of {} bytes, over the {MAX_EXTRANONCE} SV2 allows", prefix.len())));
            }
            let channel = ChannelInfo {
                kind: ChannelKind::Standard,
                channel_id: m.channel_id,
                extranonce_prefix: prefix,
                extranonce_size: 0,
                version_rolling: cfg.version_rolling,
            };
            let mut target = [0u8; 32];
            target.copy_from_slice(m.target.as_bytes());
            Ok((w, rx, channel, Target::from_le_bytes(target)))
        }
        AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(m)) => Err(Error::OpenChannel(text(m.error_code.as_bytes()))),
        m => Err(Error::Protocol(format!("expected OpenStandardMiningChannel.Success, got {}", name(&m)))),
    }
}

/// The pool's extranonce grant, checked both ways: at least what hashrig asked for, and the
/// prefix and the rolled part together within the 32 bytes SV2 allows.
pub fn check_extranonce(prefix_len: usize, granted: u16, asked: u16) -> Result<(), Error> {
    if granted < asked {
        return Err(Error::Extranonce(format!("the pool grants {granted} extranonce bytes to roll, hashrig asked for at least {asked}")));
    }
    if granted == 0 {
        return Err(Error::Extranonce("the pool grants no extranonce bytes to roll on an extended channel".into()));
    }
    if prefix_len + granted as usize > MAX_EXTRANONCE {
        return Err(Error::Extranonce(format!(
            "extranonce prefix ({prefix_len} bytes) and rolled part ({granted} bytes) exceed the {MAX_EXTRANONCE} bytes SV2 allows"
        )));
    }
    Ok(())
}

fn str0255(s: &str) -> Result<Str0255Owned, Error> {
    Str0255Owned::new(s.as_bytes().to_vec()).map_err(|_| Error::Protocol(format!("a string over 255 bytes: {s:.40}…")))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().filter(|c| !c.is_control()).take(120).collect()
}

fn name(m: &AnyMessageOwned) -> String {
    use stratum_core::parsers_sv2::IsSv2Message;
    stratum_core::parsers_sv2::message_type_to_name(m.message_type()).to_string()
}

async fn expect(rx: &mut Reader, t: Duration, what: &'static str) -> Result<AnyMessageOwned, Error> {
    loop {
        match tokio::time::timeout(t, rx.recv()).await {
            Err(_) => return Err(Error::Timeout(what)),
            Ok(None) => return Err(Error::Closed),
            Ok(Some(Inbound::Closed(e))) => return Err(e),
            Ok(Some(Inbound::Unknown { msg_type, ext_type, .. })) => {
                tracing::warn!(msg_type, ext_type, "unknown SV2 message type during setup: ignored");
            }
            Ok(Some(Inbound::Message(m))) => return Ok(m),
        }
    }
}

/// A job message of either channel kind, with what the channel knew when it came.
#[derive(Clone, Debug)]
enum JobMsg {
    /// With the extranonce prefix it is built on.
    Extended(NewExtendedMiningJobOwned, Vec<u8>),
    Standard(NewMiningJobOwned),
}

impl JobMsg {
    fn job_id(&self) -> u32 {
        match self {
            JobMsg::Extended(m, _) => m.job_id,
            JobMsg::Standard(m) => m.job_id,
        }
    }

    fn version(&self) -> u32 {
        match self {
            JobMsg::Extended(m, _) => m.version,
            JobMsg::Standard(m) => m.version,
        }
    }
}

/// One job as the channel knows it.
#[derive(Clone, Debug)]
struct LiveJob {
    version: u32,
    mask: u32,
}

/// One connection's channel state.
struct Session {
    pool: usize,
    conn: u64,
    host: String,
    w: Writer,
    channel: ChannelInfo,
    target: Target,
    future: BTreeMap<u32, JobMsg>,
    live: BTreeMap<u32, LiveJob>,
    /// prev hash (internal order), nbits, min_ntime of the current tip.
    tip: Option<([u8; 32], u32, u32)>,
    seq: u32,
    pending: BTreeMap<u32, (u64, Instant)>,
}

impl Session {
    fn new(pool: usize, conn: u64, host: String, w: Writer, channel: ChannelInfo, target: Target) -> Self {
        Session { pool, conn, host, w, channel, target, future: BTreeMap::new(), live: BTreeMap::new(), tip: None, seq: 0, pending: BTreeMap::new() }
    }

    async fn run(&mut self, c: &mut Client, mut rx: Reader) -> End {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut heard = Instant::now();
        let end = loop {
            if let Some((deadline, _)) = &c.stopping
                && (self.pending.is_empty() || Instant::now() >= *deadline)
            {
                break End::Stopped;
            }
            tokio::select! {
                m = rx.recv() => {
                    heard = Instant::now();
                    match m {
                        None => break End::Lost("the connection's reader stopped".into()),
                        Some(Inbound::Closed(e)) => break End::Lost(e.to_string()),
                        Some(Inbound::Unknown { msg_type, ext_type, len }) => {
                            c.status().protocol_errors += 1;
                            tracing::warn!(msg_type, ext_type, len, "unknown SV2 message type: ignored");
                            c.emit(ClientEvent::Notice(format!("pool {}: unknown message type {msg_type:#04x} (extension {ext_type:#06x}, {len} bytes) ignored", self.pool)));
                        }
                        Some(Inbound::Message(m)) => if let Some(end) = self.on_message(c, m).await { break end },
                    }
                }
                cmd = c.cmds.recv() => match cmd {
                    None => break End::Stopped,
                    Some(Cmd::Submit(s)) => if let Some(end) = self.submit(c, s).await { break end },
                    Some(Cmd::Shutdown { limit, done }) => c.stopping = Some((Instant::now() + limit, done)),
                },
                _ = tick.tick() => {
                    self.expire(c);
                    if heard.elapsed() > c.cfg.silence_timeout {
                        break End::Lost(format!("the pool sent nothing for {:?}", c.cfg.silence_timeout));
                    }
                }
            }
        };
        // Whatever is unanswered now never will be.
        let reason = match end {
            End::Stopped => StaleReason::Shutdown,
            _ => StaleReason::ConnectionLost,
        };
        if matches!(end, End::Stopped) {
            // In flight at the end of the run: left in flight (the ledger says so), not stale.
            self.pending.clear();
        }
        for (_, (id, _)) in std::mem::take(&mut self.pending) {
            c.emit(ClientEvent::ShareStale { id, reason });
        }
        end
    }

    fn expire(&mut self, c: &mut Client) {
        let limit = c.cfg.answer_timeout;
        let late: Vec<u32> = self.pending.iter().filter(|(_, (_, at))| at.elapsed() > limit).map(|(s, _)| *s).collect();
        for s in late {
            if let Some((id, _)) = self.pending.remove(&s) {
                c.emit(ClientEvent::ShareStale { id, reason: StaleReason::NoAnswer });
            }
        }
    }

    async fn submit(&mut self, c: &mut Client, s: ShareSubmit) -> Option<End> {
        if s.pool != self.pool || s.conn != self.conn {
            c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::ConnectionLost });
            return None;
        }
        let Some(job) = self.live.get(&s.job_id) else {
            c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::JobNotLive });
            return None;
        };
        let extranonce_size = match self.channel.kind {
            ChannelKind::Extended => self.channel.extranonce_size as usize,
            ChannelKind::Standard => 0,
        };
        if s.extranonce.len() != extranonce_size || (s.version ^ job.version) & !job.mask != 0 {
            c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::Invalid });
            return None;
        }
        let seq = self.seq.wrapping_add(1);
        let msg = match self.channel.kind {
            ChannelKind::Extended => {
                let Ok(extranonce) = B032Owned::new(s.extranonce.clone()) else {
                    c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::Invalid });
                    return None;
                };
                MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
                    channel_id: self.channel.channel_id,
                    sequence_number: seq,
                    job_id: s.job_id,
                    nonce: s.nonce,
                    ntime: s.ntime,
                    version: s.version,
                    extranonce,
                })
            }
            ChannelKind::Standard => MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
                channel_id: self.channel.channel_id,
                sequence_number: seq,
                job_id: s.job_id,
                nonce: s.nonce,
                ntime: s.ntime,
                version: s.version,
            }),
        };
        self.seq = seq;
        match self.w.send(AnyMessageOwned::Mining(msg)).await {
            Ok(()) => {
                self.pending.insert(seq, (s.id, Instant::now()));
                None
            }
            Err(e) => {
                c.emit(ClientEvent::ShareStale { id: s.id, reason: StaleReason::SendFailed });
                Some(End::Lost(format!("writing a share: {e}")))
            }
        }
    }

    fn job_for_engine(&self, msg: &JobMsg, min_ntime: u32) -> Option<HeaderSource> {
        let (prev, nbits, _) = self.tip?;
        let (m, prefix) = match msg {
            JobMsg::Extended(m, prefix) => (m, prefix),
            JobMsg::Standard(m) => {
                // A standard job carries no version-rolling flag: version rolling is what
                // SetupConnection asked for (the reference server lets a standard channel roll
                // the BIP 320 bits).
                let mask = if self.channel.version_rolling { BIP320_MASK } else { 0 };
                return Some(HeaderSource::Standard(StandardJob {
                    version: m.version,
                    prev_hash: prev,
                    // U256 fields are the header's own byte order (the reference validator
                    // puts them into the header as they are).
                    merkle_root: m.merkle_root.to_array(),
                    ntime: min_ntime,
                    nbits,
                    version_mask: mask,
                }));
            }
        };
        let mask = if m.version_rolling_allowed && self.channel.version_rolling { BIP320_MASK } else { 0 };
        Some(HeaderSource::Coinbase(CoinbaseJob {
            prev_hash: BlockHash::from_byte_array(prev),
            coinb1: m.coinbase_tx_prefix.as_bytes().to_vec(),
            extranonce1: prefix.to_vec(),
            extranonce2_size: self.channel.extranonce_size as usize,
            coinb2: m.coinbase_tx_suffix.as_bytes().to_vec(),
            merkle_branch: m.merkle_path.iter().map(|h| TxMerkleNode::from_byte_array(h.to_array())).collect(),
            version: Version::from_consensus(m.version as i32),
            version_mask: mask,
            nbits: CompactTarget::from_consensus(nbits),
            ntime: min_ntime,
        }))
    }

    fn go_live(&mut self, c: &mut Client, m: &JobMsg, target: Target, min_ntime: u32, clean: bool) {
        let job_id = m.job_id();
        let Some(job) = self.job_for_engine(m, min_ntime) else {
            c.status().protocol_errors += 1;
            c.emit(ClientEvent::Notice(format!("pool {}: job {job_id} came before any SetNewPrevHash: ignored", self.pool)));
            return;
        };
        self.live.insert(job_id, LiveJob { version: m.version(), mask: job.version_mask() });
        // A pool that never changes block keeps adding jobs: remember the newest ones.
        while self.live.len() > JOBS_KEPT {
            self.live.pop_first();
        }
        c.emit(ClientEvent::Job { pool: self.pool, conn: self.conn, job: Sv2Job { job_id, job, target, clean } });
    }

    /// A job message: live now (it has a min_ntime) or a future job that goes live with the
    /// SetNewPrevHash that names it.
    fn on_job(&mut self, c: &mut Client, j: JobMsg, min_ntime: Option<u32>) {
        match min_ntime {
            None => {
                self.future.insert(j.job_id(), j);
                while self.future.len() > JOBS_KEPT {
                    self.future.pop_first();
                }
            }
            Some(min_ntime) => {
                let target = self.target;
                self.go_live(c, &j, target, min_ntime, false);
            }
        }
    }

    fn protocol_error(&self, c: &mut Client, what: String) {
        c.status().protocol_errors += 1;
        tracing::warn!(pool = self.pool, "{what}");
        c.emit(ClientEvent::Notice(format!("pool {}: {what}", self.pool)));
    }

    async fn on_message(&mut self, c: &mut Client, m: AnyMessageOwned) -> Option<End> {
        let my = self.channel.channel_id;
        match m {
            AnyMessageOwned::Mining(m) => match m {
                MiningOwned::NewExtendedMiningJob(j) => {
                    if j.channel_id != my || self.channel.kind != ChannelKind::Extended {
                        self.protocol_error(c, format!("an extended job for channel {} (ours is {my}, {}): ignored", j.channel_id, self.channel.kind.as_str()));
                        return None;
                    }
                    let min_ntime = j.min_ntime.clone().into_inner();
                    let prefix = self.channel.extranonce_prefix.clone();
                    self.on_job(c, JobMsg::Extended(j, prefix), min_ntime);
                }
                MiningOwned::NewMiningJob(j) => {
                    if j.channel_id != my || self.channel.kind != ChannelKind::Standard {
                        self.protocol_error(c, format!("a standard job for channel {} (ours is {my}, {}): ignored", j.channel_id, self.channel.kind.as_str()));
                        return None;
                    }
                    let min_ntime = j.min_ntime.clone().into_inner();
                    self.on_job(c, JobMsg::Standard(j), min_ntime);
                }
                MiningOwned::SetNewPrevHash(p) => {
                    if p.channel_id != my {
                        self.protocol_error(c, format!("SetNewPrevHash for channel {} (ours is {my}): ignored", p.channel_id));
                        return None;
                    }
                    self.tip = Some((p.prev_hash.to_array(), p.nbits, p.min_ntime));
                    // Every other job of the channel is void now.
                    self.live.clear();
                    match self.future.remove(&p.job_id) {
                        Some(j) => {
                            self.future.clear();
                            // The target is the channel's when the job goes live (the reference
                            // server binds it at activation).
                            let target = self.target;
                            self.go_live(c, &j, target, p.min_ntime, true);
                        }
                        None => self.protocol_error(c, format!("SetNewPrevHash names job {} which is not a future job here", p.job_id)),
                    }
                }
                MiningOwned::SetTarget(t) => {
                    if t.channel_id == my {
                        let mut b = [0u8; 32];
                        b.copy_from_slice(t.maximum_target.as_bytes());
                        self.target = Target::from_le_bytes(b);
                        tracing::info!(pool = self.pool, target = ?self.target, "SetTarget: for jobs from now on");
                    }
                }
                MiningOwned::SetExtranoncePrefix(p) => {
                    if p.channel_id == my {
                        let prefix = p.extranonce_prefix.as_bytes().to_vec();
                        if self.channel.kind == ChannelKind::Standard {
                            // The pool builds the merkle root with it: nothing changes here but
                            // what the status shows.
                            tracing::info!(pool = self.pool, prefix_len = prefix.len(), "SetExtranoncePrefix on a standard channel");
                            self.channel.extranonce_prefix = prefix;
                            c.status().channels.insert(self.pool, self.channel.clone());
                            return None;
                        }
                        if let Err(e) = check_extranonce(prefix.len(), self.channel.extranonce_size, c.cfg.min_extranonce_size) {
                            return Some(End::Lost(format!("SetExtranoncePrefix refused: {e}")));
                        }
                        tracing::info!(pool = self.pool, prefix_len = prefix.len(), "SetExtranoncePrefix: for jobs from now on");
                        self.channel.extranonce_prefix = prefix;
                        c.status().channels.insert(self.pool, self.channel.clone());
                    }
                }
                MiningOwned::SubmitSharesSuccess(s) => {
                    // A batch: every share up to this sequence number not rejected on its own.
                    let last = s.last_sequence_number;
                    let covered: Vec<u32> = self.pending.range(..=last).map(|(k, _)| *k).collect();
                    if covered.len() as u64 != s.new_submits_accepted_count as u64 {
                        tracing::debug!(covered = covered.len(), counted = s.new_submits_accepted_count, "SubmitShares.Success count differs from the shares it covers here");
                    }
                    for k in covered {
                        if let Some((id, _)) = self.pending.remove(&k) {
                            c.emit(ClientEvent::ShareResult { id, outcome: ShareOutcome::Accepted });
                        }
                    }
                }
                MiningOwned::SubmitSharesError(e) => match self.pending.remove(&e.sequence_number) {
                    Some((id, _)) => c.emit(ClientEvent::ShareResult { id, outcome: ShareOutcome::Rejected { reason: text(e.error_code.as_bytes()) } }),
                    None => self.protocol_error(c, format!("SubmitShares.Error for unknown sequence number {}", e.sequence_number)),
                },
                MiningOwned::CloseChannel(cc) => {
                    return Some(End::Lost(format!("the pool closed the channel: {}", text(cc.reason_code.as_bytes()))));
                }
                MiningOwned::SetGroupChannel(_) => {}
                other => {
                    let name = name(&AnyMessageOwned::Mining(other));
                    self.protocol_error(c, format!("unexpected message {name}: ignored"));
                }
            },
            AnyMessageOwned::Common(CommonMessagesOwned::Reconnect(r)) => {
                let host = text(r.new_host.as_bytes());
                if host.is_empty() || host.eq_ignore_ascii_case(&self.host) {
                    return Some(End::Reconnect(r.new_port));
                }
                self.protocol_error(c, format!("the pool asked to reconnect to another host ({host}:{}): refused, hashrig only follows a pool's own host", r.new_port));
            }
            other => {
                let name = name(&other);
                self.protocol_error(c, format!("unexpected message {name}: ignored"));
            }
        }
        None
    }
}
