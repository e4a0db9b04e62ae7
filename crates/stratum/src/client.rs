//! The tokio transport around [`Session`]: TCP or TLS, bounded line reading, an inactivity
//! watchdog, failover down an ordered pool list and failback to the first pool that works.
//!
//! Every share handed to [`ClientHandle::submit`] ends in exactly one event: a
//! [`ClientEvent::ShareResult`] (the pool answered) or a [`ClientEvent::ShareStale`] (it never
//! will, with a [`StaleReason`]), or it is still in flight when [`ClientHandle::shutdown`]
//! returns. Shares found while no pool is connected wait in a bounded queue; after a reconnect
//! each is resubmitted if the new session still has its job with the very same header parts,
//! otherwise it is stale ([`StaleReason::JobNotLive`]). Shares sent but unanswered when a
//! connection drops are queued the same way if their job was still live on it, else stale
//! ([`StaleReason::ConnectionLost`]). Submits the pool never answers end after
//! [`ClientConfig::answer_timeout`] ([`StaleReason::NoAnswer`]).
//!
//! Every event names the connection ([`ConnId`]) it comes from, so jobs of a pool that
//! restarts its job ids on a new connection are never mixed up with the old ones. On failback
//! or [`ClientHandle::switch_pool`] mining moves at once while the old connection is drained
//! for its answers ([`ClientConfig::drain_timeout`]). A `client.reconnect` leaves the asking
//! pool alone for its wait (at most [`ClientConfig::reconnect_wait_max`]) while mining goes on
//! down the failover order. Every limit is in [`ClientConfig`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::session::{count_reject, Event, Password, PoolJob, Session, SessionConfig, Share, ShareOutcome, SubmitError};
pub use crate::session::{MAX_REJECT_REASONS, OTHER_REASON};
use crate::wire::{sanitize_reason, ProtocolError, Reconnect, MAX_LINE};
use crate::Error;

/// `stratum+tcp://host:port` or `stratum+ssl://host:port` (also `stratum+tls://`, `tcp://`,
/// `ssl://`, or a bare `host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl FromStr for PoolUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &'static str| Error::PoolUrl { url: s.to_owned(), why };
        let (tls, rest) = match s.split_once("://") {
            None => (false, s),
            Some(("stratum+tcp" | "tcp" | "stratum", r)) => (false, r),
            Some(("stratum+ssl" | "stratum+tls" | "ssl" | "tls", r)) => (true, r),
            Some(_) => return Err(bad("scheme must be stratum+tcp:// or stratum+ssl://")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') || rest.contains('/') {
            return Err(bad("expected host:port only (user and password go in --user/--pass)"));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = port.parse().map_err(|_| bad("port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port is not a number from 1 to 65535"));
        }
        Ok(PoolUrl { tls, host: host.to_owned(), port })
    }
}

impl fmt::Display for PoolUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "stratum+ssl" } else { "stratum+tcp" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// One pool of the failover list.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub url: PoolUrl,
    pub user: String,
    pub password: Password,
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// In failover order: the first is preferred and failed back to.
    pub pools: Vec<PoolConfig>,
    pub agent: String,
    pub version_rolling: Option<u32>,
    pub suggest_difficulty: Option<f64>,
    /// Send `mining.extranonce.subscribe` after authorize (NiceHash-style pools then send
    /// `mining.set_extranonce`; others answer with an error, which is ignored).
    pub extranonce_subscribe: bool,
    /// A connected pool that sends nothing for this long is treated as dead.
    pub silence_timeout: Duration,
    /// How often a better pool is tried while mining on a worse one.
    pub failback_interval: Duration,
    /// Connecting plus the handshake up to the first job must finish within this.
    pub connect_timeout: Duration,
    /// Pause before going round the list again when no pool answered.
    pub retry_delay: Duration,
    /// Extra CA certificates for `stratum+ssl://` pools (private CAs), besides the webpki roots.
    pub pool_ca: Option<crate::PoolCa>,
    /// A submit the pool has not answered within this (default 60 s) ends as
    /// [`StaleReason::NoAnswer`]; a late answer is then logged and ignored.
    pub answer_timeout: Duration,
    /// At most this many submits (default 1024) wait for an answer on one connection; one more
    /// ends the oldest as [`StaleReason::NoAnswer`] at once.
    pub max_in_flight: usize,
    /// Every write to a pool must finish within this (default 10 s); one that does not ends
    /// the connection (a pool that stops reading would otherwise stall mining for good).
    pub write_timeout: Duration,
    /// At most this many shares (default 4096) wait for a connection; one more ends the oldest
    /// as [`StaleReason::QueueFull`].
    pub max_queue: usize,
    /// The longest `client.reconnect` wait honoured (default 120 s): the asking pool is left
    /// alone that long while mining goes on down the failover order.
    pub reconnect_wait_max: Duration,
    /// After failback or `switch_pool`, the old connection is kept this long at most (default
    /// 10 s), reading answers to its submits in flight and sending nothing new.
    pub drain_timeout: Duration,
}

impl ClientConfig {
    pub fn new(pools: Vec<PoolConfig>) -> Self {
        ClientConfig {
            pools,
            agent: concat!("hashrig/", env!("CARGO_PKG_VERSION")).into(),
            version_rolling: Some(0x1fff_e000),
            suggest_difficulty: None,
            extranonce_subscribe: true,
            silence_timeout: Duration::from_secs(180),
            failback_interval: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            retry_delay: Duration::from_secs(5),
            pool_ca: None,
            answer_timeout: Duration::from_secs(60),
            max_in_flight: 1024,
            write_timeout: Duration::from_secs(10),
            max_queue: 4096,
            reconnect_wait_max: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serial of an established connection, unique within one client (starts at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a share was never answered by a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaleReason {
    /// Its job is not live on the connection it would go to (replaced by a clean job, another
    /// pool, or a new session whose job differs).
    JobNotLive,
    /// Sent, then the connection was lost before an answer.
    ConnectionLost,
    /// Sent, and no answer came within [`ClientConfig::answer_timeout`].
    NoAnswer,
    /// Writing it to the pool failed or timed out.
    SendFailed,
    /// Dropped from the full queue of shares waiting for a connection.
    QueueFull,
    /// Waiting in the queue for a connection when the client was shut down.
    Shutdown,
    /// The session would not send it: version bits outside the granted mask (e.g. after
    /// `mining.set_version_mask` narrowed it) or an extranonce2 of the wrong size.
    Invalid,
}

/// What the miner hears from the client.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    Connected { pool: usize, conn: ConnId, url: String, extranonce1: Vec<u8> },
    Disconnected { pool: usize, conn: ConnId, reason: String },
    /// A job to mine from pool `pool`. Clean jobs void all older work of that connection.
    Job { pool: usize, conn: ConnId, job: Arc<PoolJob> },
    /// BIP 310 `mining.set_version_mask` mid-session (after the connection's first job): the
    /// mask (already intersected with what we asked for; `None`: no rolling) applies to the
    /// connection's live jobs at once, and later jobs carry it in `job.version_mask`.
    VersionMask { pool: usize, conn: ConnId, mask: Option<u32> },
    /// The pool answered share `id` on connection `conn`.
    ShareResult { id: u64, pool: usize, conn: ConnId, share: Share, outcome: ShareOutcome },
    /// Share `id` will never be answered.
    ShareStale { id: u64, pool: usize, share: Share, reason: StaleReason },
}

/// A share the miner found, with the job (and the connection that sent it) it was found for.
#[derive(Clone, Debug)]
pub struct FoundShare {
    /// The miner's id for it, echoed in the one event that resolves it.
    pub id: u64,
    pub pool: usize,
    pub conn: ConnId,
    pub job: Arc<PoolJob>,
    pub share: Share,
}

/// Counters over the whole run, all pools together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub accepted: u64,
    /// Rejects by the pool's reason (sanitised); at most [`MAX_REJECT_REASONS`] reasons of
    /// their own, later new reasons are counted under [`OTHER_REASON`].
    pub rejected: BTreeMap<String, u64>,
    /// Shares resolved as [`ClientEvent::ShareStale`], all reasons together.
    pub stale: u64,
    /// The same by reason.
    pub stale_reasons: BTreeMap<StaleReason, u64>,
    pub resubmitted: u64,
    pub protocol_errors: BTreeMap<&'static str, u64>,
    /// The pool mining now.
    pub current_pool: Option<usize>,
    pub connects: u64,
    /// Shares waiting for a connection.
    pub queued: u64,
    /// The failover order (pool indices, preferred first); changed by
    /// [`ClientHandle::switch_pool`].
    pub order: Vec<usize>,
}

impl ClientStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

}

/// Requests from the handles to the client task.
enum Control {
    /// `switch_pool`.
    Switch(usize),
    /// Stop taking shares; answer `done` once the submits in flight are answered or at
    /// `deadline`.
    Shutdown { deadline: tokio::time::Instant, done: oneshot::Sender<()> },
}

/// What the client task, its drains and the handles share.
struct Shared {
    cfg: ClientConfig,
    events: mpsc::UnboundedSender<ClientEvent>,
    stats: Mutex<ClientStats>,
    /// Shares handed over by [`ClientHandle::submit`] and not yet resolved by an event.
    in_flight: AtomicUsize,
    /// Set by [`ClientHandle::shutdown`]: no more shares are taken.
    closed: AtomicBool,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, ClientStats> {
        self.stats.lock().expect("stats lock is never poisoned: no panics while held")
    }

    fn emit(&self, e: ClientEvent) {
        // The miner may have stopped listening; the client then winds down on its own.
        let _ = self.events.send(e);
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The pool answered share `s` on connection `conn`.
    fn answered(&self, s: FoundShare, pool: usize, conn: ConnId, outcome: ShareOutcome) {
        // The session sanitises already; this is the boundary the miner prints and labels
        // metrics from, so make sure (sanitize_reason is idempotent).
        let outcome = match outcome {
            ShareOutcome::Rejected { reason } => ShareOutcome::Rejected { reason: sanitize_reason(&reason) },
            a => a,
        };
        {
            let mut st = self.stats();
            match &outcome {
                ShareOutcome::Accepted => st.accepted += 1,
                ShareOutcome::Rejected { reason } => count_reject(&mut st.rejected, reason),
            }
        }
        self.emit(ClientEvent::ShareResult { id: s.id, pool, conn, share: s.share, outcome });
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Share `s` will never be answered.
    fn stale(&self, s: FoundShare, reason: StaleReason) {
        tracing::warn!(id = s.id, pool = s.pool, conn = %s.conn, job = %s.share.job_id, ?reason, "share stale");
        {
            let mut st = self.stats();
            st.stale += 1;
            *st.stale_reasons.entry(reason).or_default() += 1;
        }
        self.emit(ClientEvent::ShareStale { id: s.id, pool: s.pool, share: s.share, reason });
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn count_protocol(&self, e: &ProtocolError) {
        *self.stats().protocol_errors.entry(e.kind()).or_default() += 1;
    }
}

/// The miner's side: submit shares, read the stats, switch pools, shut down.
#[derive(Clone)]
pub struct ClientHandle {
    tx: mpsc::UnboundedSender<FoundShare>,
    shared: Arc<Shared>,
    ctl: mpsc::UnboundedSender<Control>,
    pools: usize,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle").field("pools", &self.pools).field("in_flight", &self.in_flight()).finish()
    }
}

impl ClientHandle {
    /// Hand a share to the client; false once the client has stopped or is shutting down
    /// (the share is then not the client's: no event will come for it). Every share taken
    /// ends in exactly one [`ClientEvent::ShareResult`] or [`ClientEvent::ShareStale`], unless
    /// it is still in flight when [`ClientHandle::shutdown`] returns.
    pub fn submit(&self, share: FoundShare) -> bool {
        if self.shared.closed.load(Ordering::SeqCst) {
            return false;
        }
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(share).is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Shares handed over and not yet resolved (queued, being sent, or waiting for answers).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    pub fn stats(&self) -> ClientStats {
        self.shared.stats().clone()
    }

    /// Make `pool` the preferred pool (cgminer's `switchpool`): it moves to the front of the
    /// failover order, the others keep their order behind it, and the client leaves the
    /// current pool for it now. If it cannot be reached, failover goes down the new order.
    /// False for a pool index out of range or once the client has stopped.
    pub fn switch_pool(&self, pool: usize) -> bool {
        pool < self.pools && self.ctl.send(Control::Switch(pool)).is_ok()
    }

    /// Stop taking shares ([`ClientHandle::submit`] returns false from now on) and wait at most
    /// `limit` for the answers to submits in flight. Shares handed over before the call are
    /// still submitted if a pool is connected; shares queued for want of a connection end as
    /// [`StaleReason::Shutdown`]. Whatever is unanswered at `limit` stays unresolved (no event;
    /// [`ClientHandle::in_flight`] counts it). The client task ends when this returns.
    pub async fn shutdown(&self, limit: Duration) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        let (done, wait) = oneshot::channel();
        if self.ctl.send(Control::Shutdown { deadline, done }).is_err() {
            return;
        }
        // The task answers by the deadline; the margin only covers a task that died.
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), wait).await;
    }
}

/// Start the client on the current tokio runtime. It runs until [`ClientHandle::shutdown`] or
/// until every [`ClientHandle`] is dropped.
pub fn spawn(cfg: ClientConfig) -> (ClientHandle, mpsc::UnboundedReceiver<ClientEvent>, tokio::task::JoinHandle<()>) {
    let (share_tx, share_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let pools = cfg.pools.len();
    let order: Vec<usize> = (0..pools).collect();
    let shared = Arc::new(Shared {
        cfg,
        events: ev_tx,
        stats: Mutex::new(ClientStats { order: order.clone(), ..Default::default() }),
        in_flight: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    let client = Client {
        shared: shared.clone(),
        shares: share_rx,
        queue: Queue::default(),
        down_until: vec![None; pools],
        hold_until: vec![None; pools],
        ctl: ctl_rx,
        order,
        conns: 0,
        stop: None,
        drains: Vec::new(),
    };
    let task = tokio::spawn(client.run());
    (ClientHandle { tx: share_tx, shared, ctl: ctl_tx, pools }, ev_rx, task)
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Reads `\n`-terminated lines, refusing (and skipping) lines longer than [`MAX_LINE`].
struct LineReader {
    inner: Reader,
    buf: Vec<u8>,
    skipping: bool,
}

enum Line {
    Ok(String),
    Bad(ProtocolError),
}

impl LineReader {
    fn new(inner: Reader) -> Self {
        LineReader { inner, buf: Vec::with_capacity(4096), skipping: false }
    }

    /// The next line; `Ok(None)` at end of stream.
    async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                return Ok(Some(match String::from_utf8(line) {
                    Ok(s) => Line::Ok(s),
                    Err(_) => Line::Bad(ProtocolError::InvalidJson("line is not UTF-8".into())),
                }));
            }
            if self.buf.len() > MAX_LINE {
                self.buf.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Ok(Some(Line::Bad(ProtocolError::LineTooLong { limit: MAX_LINE })));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A connection whose handshake got as far as a first job.
struct Established {
    pool: usize,
    reader: LineReader,
    writer: Writer,
    session: Session,
    /// Events seen during the handshake, to replay.
    early: Vec<Event>,
}

/// A submit waiting for its answer.
struct Sent {
    share: FoundShare,
    deadline: tokio::time::Instant,
}

/// A connection being mined on (or drained).
struct Conn {
    pool: usize,
    id: ConnId,
    url: String,
    reader: LineReader,
    writer: Writer,
    session: Session,
    /// Submits waiting for answers by request id; ids grow with time, so the first entry has
    /// the earliest deadline.
    sent: BTreeMap<u64, Sent>,
    /// The submit whose write failed, if one did.
    failed_write: Option<u64>,
    write_timeout: Duration,
}

impl Conn {
    /// Write one line within the write timeout: a pool that stops reading must not stall the
    /// loop that reads its answers and takes the miner's shares.
    async fn write(&mut self, line: &str) -> Result<(), String> {
        match tokio::time::timeout(self.write_timeout, write_line(&mut self.writer, line, &self.url)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("write not done within {} s (the pool stopped reading)", self.write_timeout.as_secs_f64())),
        }
    }

    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.sent.values().next().map(|s| s.deadline)
    }

    /// Resolve the submits whose answer is overdue as [`StaleReason::NoAnswer`].
    fn expire(&mut self, shared: &Shared, now: tokio::time::Instant) {
        while let Some(entry) = self.sent.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let (req, s) = entry.remove_entry();
            self.session.abandon(req);
            shared.stale(s.share, StaleReason::NoAnswer);
        }
    }

    fn answer(&mut self, shared: &Shared, request: u64, outcome: ShareOutcome) {
        match self.sent.remove(&request) {
            Some(s) => shared.answered(s.share, self.pool, self.id, outcome),
            None => tracing::debug!(request, conn = %self.id, "answer to a submit not in flight"),
        }
    }

    /// The connection is gone (not drained): requeue what may still be valid on a new session
    /// of the same pool, everything else is stale.
    fn lose(mut self, shared: &Shared, queue: &mut Queue) {
        for (req, s) in std::mem::take(&mut self.sent) {
            if self.session.job(&s.share.share.job_id).is_some() {
                queue.push(shared, s.share);
            } else if self.failed_write == Some(req) {
                shared.stale(s.share, StaleReason::SendFailed);
            } else {
                shared.stale(s.share, StaleReason::ConnectionLost);
            }
        }
    }
}

/// Shares waiting for a connection, oldest first, at most [`ClientConfig::max_queue`].
#[derive(Default)]
struct Queue(VecDeque<FoundShare>);

impl Queue {
    fn push(&mut self, shared: &Shared, s: FoundShare) {
        while self.0.len() >= shared.cfg.max_queue.max(1) {
            let old = self.0.pop_front().expect("the queue is not empty");
            shared.stale(old, StaleReason::QueueFull);
        }
        self.0.push_back(s);
        shared.stats().queued = self.0.len() as u64;
    }

    fn pop(&mut self, shared: &Shared) -> Option<FoundShare> {
        let s = self.0.pop_front();
        shared.stats().queued = self.0.len() as u64;
        s
    }
}

enum End {
    Failed(String),
    Failback(Box<Established>),
    /// `switch_pool` named another pool.
    Switch(usize),
    Reconnect(Reconnect),
    Shutdown,
}

/// A shutdown under way.
struct Stop {
    deadline: tokio::time::Instant,
    done: Vec<oneshot::Sender<()>>,
}

struct Client {
    shared: Arc<Shared>,
    shares: mpsc::UnboundedReceiver<FoundShare>,
    queue: Queue,
    down_until: Vec<Option<Instant>>,
    /// Pools within the wait a `client.reconnect` asked for.
    hold_until: Vec<Option<Instant>>,
    /// `switch_pool` and `shutdown` requests.
    ctl: mpsc::UnboundedReceiver<Control>,
    /// Failover order, preferred first.
    order: Vec<usize>,
    /// Connections established so far.
    conns: u64,
    stop: Option<Stop>,
    /// Old connections waiting for answers after failback or `switch_pool`.
    drains: Vec<tokio::task::JoinHandle<()>>,
}

impl Client {
    fn cfg(&self) -> &ClientConfig {
        &self.shared.cfg
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, ClientStats> {
        self.shared.stats()
    }

    fn emit(&self, e: ClientEvent) {
        self.shared.emit(e);
    }

    /// Move `pool` to the front of the failover order (cgminer's switchpool).
    fn prefer(&mut self, pool: usize) {
        self.order.retain(|&p| p != pool);
        self.order.insert(0, pool);
        self.down_until[pool] = None;
        self.hold_until[pool] = None;
        self.stats().order = self.order.clone();
        tracing::info!(pool, order = ?self.order, "pool switched by request");
    }

    /// Where `pool` stands in the failover order (0 = preferred).
    fn rank(&self, pool: usize) -> usize {
        self.order.iter().position(|&p| p == pool).unwrap_or(usize::MAX)
    }

    /// Begin shutting down: no more shares are taken; those already handed over are still
    /// received (by [`Client::take_left`]).
    fn begin_stop(&mut self, deadline: tokio::time::Instant, done: Option<oneshot::Sender<()>>) {
        match &mut self.stop {
            Some(stop) => stop.done.extend(done),
            None => {
                tracing::info!("client shutting down");
                self.shared.closed.store(true, Ordering::SeqCst);
                self.shares.close();
                self.stop = Some(Stop { deadline, done: done.into_iter().collect() });
            }
        }
    }

    /// A control request while not mining on a connection. True when shutting down.
    fn control_idle(&mut self, c: Control) -> bool {
        match c {
            // Not connected: the new order applies to the next connection attempt.
            Control::Switch(p) => self.prefer(p),
            Control::Shutdown { deadline, done } => self.begin_stop(deadline, Some(done)),
        }
        self.stop.is_some()
    }

    /// The miner went away (every handle dropped): stop without waiting.
    fn miner_gone(&mut self) {
        self.begin_stop(tokio::time::Instant::now(), None);
    }

    async fn run(mut self) {
        let mut next: Option<Established> = None;
        while self.stop.is_none() {
            let est = match next.take() {
                Some(e) => e,
                None => match self.connect_any().await {
                    Some(e) => e,
                    None => {
                        if self.stop.is_none() {
                            self.wait_collecting(self.cfg().retry_delay).await;
                        }
                        continue;
                    }
                },
            };
            let pool = est.pool;
            let (conn, end) = self.mine_on(est).await;
            self.stats().current_pool = None;
            match end {
                End::Shutdown => {}
                End::Failback(better) => {
                    let reason = format!("failing back to pool {}", better.pool);
                    self.emit(ClientEvent::Disconnected { pool, conn, reason });
                    next = Some(*better);
                }
                End::Switch(to) => {
                    self.emit(ClientEvent::Disconnected { pool, conn, reason: format!("switching to pool {to} by request") });
                    match self.establish_collecting(to).await {
                        Some(e) => next = Some(e),
                        None => self.down_until[to] = Some(Instant::now() + self.cfg().failback_interval),
                    }
                }
                End::Reconnect(r) => {
                    // The pool is left alone for the wait it asks (capped), while mining goes on
                    // down the failover order; with no other pool the client waits, then
                    // reconnects. Failback returns to it once the wait is over.
                    let wait = Duration::from_secs(r.wait_seconds).min(self.cfg().reconnect_wait_max);
                    tracing::info!(pool, asked_s = r.wait_seconds, wait_s = wait.as_secs_f64(), host = ?r.host, port = ?r.port, "pool asked for a reconnect (to the configured pool only)");
                    self.hold_until[pool] = Some(Instant::now() + wait);
                    self.emit(ClientEvent::Disconnected {
                        pool,
                        conn,
                        reason: format!("client.reconnect: pool left alone for {} s", wait.as_secs_f64()),
                    });
                    // Reconnect to the configured pool, never to the host/port the message
                    // names (`r.host`, `r.port` are only logged): following a redirect to
                    // another host would hand our worker name and password, and our hashrate,
                    // to whatever host a pool (or anyone who can inject a line into a plain-TCP
                    // session) names, and for stratum+ssl the new host would be checked
                    // against a name we never chose. cgminer follows it only within the same
                    // domain; ESP-Miner, like us, reconnects to its configured pool.
                }
                End::Failed(reason) => {
                    tracing::warn!(pool, url = %self.cfg().pools[pool].url, %reason, "pool lost");
                    self.down_until[pool] = Some(Instant::now() + self.cfg().failback_interval);
                    self.emit(ClientEvent::Disconnected { pool, conn, reason });
                }
            }
        }
        self.finish().await;
    }

    /// The end of a shutdown: what was never sent is stale, then answer the waiting handles.
    async fn finish(&mut self) {
        self.shares.close();
        while let Ok(s) = self.shares.try_recv() {
            self.shared.stale(s, StaleReason::Shutdown);
        }
        while let Some(s) = self.queue.pop(&self.shared) {
            self.shared.stale(s, StaleReason::Shutdown);
        }
        let stop = self.stop.take().expect("run ends only when stopping");
        // Drains still waiting for answers get until the shutdown's limit, then whatever is
        // unanswered stays in flight.
        while self.shared.in_flight() > 0
            && tokio::time::Instant::now() < stop.deadline
            && self.drains.iter().any(|d| !d.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for d in self.drains.drain(..) {
            d.abort();
        }
        for d in stop.done {
            let _ = d.send(());
        }
    }

    /// Wait, queueing shares that arrive, until `d` has passed or a shutdown begins.
    async fn wait_collecting(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while self.stop.is_none() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                s = self.shares.recv() => match s {
                    Some(s) => self.queue.push(&self.shared, s),
                    None => self.miner_gone(),
                },
                Some(c) = self.ctl.recv() => { self.control_idle(c); }
            }
        }
    }

    /// Is `pool` within a `client.reconnect` wait?
    fn held(&self, pool: usize, now: Instant) -> bool {
        self.hold_until[pool].is_some_and(|t| t > now)
    }

    /// Try the pools in order, skipping ones that failed recently unless all did, and ones
    /// within a `client.reconnect` wait (when all are, wait for the first wait to end).
    async fn connect_any(&mut self) -> Option<Established> {
        while self.stop.is_none() {
            let now = Instant::now();
            let free: Vec<usize> = self.order.iter().copied().filter(|&i| !self.held(i, now)).collect();
            if free.is_empty() {
                let first = self.hold_until.iter().flatten().min().copied().unwrap_or(now);
                self.wait_collecting(first.saturating_duration_since(now)).await;
                continue;
            }
            let up: Vec<usize> = free.iter().copied().filter(|&i| self.down_until[i].is_none_or(|t| t <= now)).collect();
            let order = if up.is_empty() { free } else { up };
            for i in order {
                if let Some(e) = self.establish_collecting(i).await {
                    return Some(e);
                }
                if self.stop.is_some() {
                    return None;
                }
                self.down_until[i] = Some(Instant::now() + self.cfg().failback_interval);
            }
            return None;
        }
        None
    }

    /// [`establish`], queueing shares meanwhile; `None` also when a shutdown begins.
    async fn establish_collecting(&mut self, pool: usize) -> Option<Established> {
        let fut = establish(self.shared.clone(), pool);
        tokio::pin!(fut);
        while self.stop.is_none() {
            tokio::select! {
                e = &mut fut => return e,
                s = self.shares.recv() => match s {
                    Some(s) => self.queue.push(&self.shared, s),
                    None => self.miner_gone(),
                },
                Some(c) = self.ctl.recv() => { self.control_idle(c); }
            }
        }
        None
    }

    /// Apply session events; `Some(end)` stops this connection.
    async fn apply(&mut self, c: &mut Conn, events: Vec<Event>) -> Option<End> {
        for ev in events {
            match ev {
                Event::Send(line) => {
                    if let Err(e) = c.write(&line).await {
                        return Some(End::Failed(e));
                    }
                }
                Event::Job(job) => self.emit(ClientEvent::Job { pool: c.pool, conn: c.id, job }),
                Event::ShareResult { request, share: _, outcome } => c.answer(&self.shared, request, outcome),
                Event::Authorized(ok) => {
                    if !ok {
                        return Some(End::Failed("authorization refused".into()));
                    }
                }
                Event::VersionMask(mask) => {
                    tracing::info!(pool = c.pool, conn = %c.id, mask = ?mask.map(|m| format!("{m:08x}")), "version mask now in force");
                    self.emit(ClientEvent::VersionMask { pool: c.pool, conn: c.id, mask });
                }
                Event::Reconnect(r) => return Some(End::Reconnect(r)),
                Event::Protocol(e) => self.shared.count_protocol(&e),
            }
        }
        None
    }

    /// Send a share on `c` if its job is live there, else resolve it as stale.
    async fn submit(&mut self, c: &mut Conn, s: FoundShare) -> Option<End> {
        if s.pool != c.pool || !c.session.accepts_share_for(&s.job) {
            self.shared.stale(s, StaleReason::JobNotLive);
            return None;
        }
        let (req, line) = match c.session.submit_request(s.share.clone()) {
            Ok((req, Event::Send(line))) => (req, line),
            Ok((_, other)) => unreachable!("submit_request gives a line to send, not {other:?}"),
            Err(SubmitError::Stale(_) | SubmitError::NotSubscribed) => {
                self.shared.stale(s, StaleReason::JobNotLive);
                return None;
            }
            Err(e) => {
                tracing::warn!(id = s.id, error = %e, "share cannot be sent");
                self.shared.stale(s, StaleReason::Invalid);
                return None;
            }
        };
        if s.conn != c.id {
            self.stats().resubmitted += 1;
        }
        // Never more than max_in_flight unanswered: the oldest is given up on.
        while c.sent.len() >= self.cfg().max_in_flight.max(1) {
            let (old, o) = c.sent.pop_first().expect("not empty");
            c.session.abandon(old);
            self.shared.stale(o.share, StaleReason::NoAnswer);
        }
        let deadline = tokio::time::Instant::now() + self.cfg().answer_timeout;
        c.sent.insert(req, Sent { share: s, deadline });
        if let Err(e) = c.write(&line).await {
            c.failed_write = Some(req);
            return Some(End::Failed(e));
        }
        None
    }

    /// Mine on one connection until it ends; what is in flight then is requeued, resolved or
    /// (at shutdown) left in flight.
    async fn mine_on(&mut self, est: Established) -> (ConnId, End) {
        let Established { pool, reader, writer, session, early } = est;
        self.conns += 1;
        let url = self.cfg().pools[pool].url.to_string();
        let mut c = Conn { pool, id: ConnId(self.conns), url, reader, writer, session, sent: BTreeMap::new(), failed_write: None, write_timeout: self.cfg().write_timeout };
        let id = c.id;
        let end = self.mine(&mut c, early).await;
        match end {
            // Left in flight: the answers may still come within the shutdown's limit.
            End::Shutdown => {}
            // Mining moves on at once; the old connection stays a while for its answers. After
            // a client.reconnect too: a pool may answer shares already on the wire after it.
            End::Failback(_) | End::Switch(_) | End::Reconnect(_) if !c.sent.is_empty() => {
                let until = tokio::time::Instant::now() + self.cfg().drain_timeout;
                self.drains.retain(|d| !d.is_finished());
                self.drains.push(tokio::spawn(drain(self.shared.clone(), c, until)));
            }
            _ => c.lose(&self.shared, &mut self.queue),
        }
        (id, end)
    }

    async fn mine(&mut self, c: &mut Conn, early: Vec<Event>) -> End {
        let pool = c.pool;
        {
            let mut st = self.stats();
            st.current_pool = Some(pool);
            st.connects += 1;
        }
        self.down_until[pool] = None;
        tracing::info!(pool, conn = %c.id, url = %c.url, "mining on pool");
        let extranonce1 = c.session.extranonce().map(|(e, _)| e.to_vec()).unwrap_or_default();
        self.emit(ClientEvent::Connected { pool, conn: c.id, url: c.url.clone(), extranonce1 });
        // The mask granted at configure is in the jobs already; VersionMask events are for
        // changes after the first job.
        let early = early.into_iter().filter(|e| !matches!(e, Event::VersionMask(_))).collect();
        if let Some(end) = self.apply(c, early).await {
            return end;
        }
        // Shares found while we were away: resubmit those whose job is still live here.
        while let Some(s) = self.queue.pop(&self.shared) {
            if let Some(end) = self.submit(c, s).await {
                return end;
            }
        }
        let failback_every = self.cfg().failback_interval;
        let mut failback = tokio::time::interval_at(tokio::time::Instant::now() + failback_every, failback_every);
        let mut probe: Option<tokio::task::JoinHandle<Option<Established>>> = None;
        // The watchdog counts from the last line received, whatever else happens meanwhile
        // (shares being submitted must not keep a silent pool alive).
        let mut last_rx = tokio::time::Instant::now();
        let end = loop {
            if let Some(stop) = &self.stop
                && (self.shared.in_flight() == 0 || tokio::time::Instant::now() >= stop.deadline)
            {
                break End::Shutdown;
            }
            let answer_due = c.next_deadline();
            let stop_due = self.stop.as_ref().map(|s| s.deadline);
            let silence = self.cfg().silence_timeout;
            tokio::select! {
                _ = tokio::time::sleep_until(last_rx + silence) => {
                    break End::Failed(format!("no message for {} s", silence.as_secs_f64()));
                }
                _ = tokio::time::sleep_until(answer_due.unwrap_or_else(far_future)), if answer_due.is_some() => {
                    c.expire(&self.shared, tokio::time::Instant::now());
                }
                _ = tokio::time::sleep_until(stop_due.unwrap_or_else(far_future)), if stop_due.is_some() => {}
                // LineReader::next is cancel-safe: bytes are only consumed once a read completes.
                line = c.reader.next() => {
                    last_rx = tokio::time::Instant::now();
                    let events = match line {
                        Err(e) => break End::Failed(format!("read error: {e}")),
                        Ok(None) => break End::Failed("connection closed by the pool".into()),
                        Ok(Some(Line::Bad(e))) => { c.session.count_protocol_error(&e); self.shared.count_protocol(&e); continue; }
                        Ok(Some(Line::Ok(l))) => c.session.handle_line(&l),
                    };
                    if let Some(end) = self.apply(c, events).await { break end; }
                }
                s = self.shares.recv(), if self.stop.is_none() => match s {
                    None => { self.miner_gone(); break End::Shutdown; }
                    Some(s) => if let Some(end) = self.submit(c, s).await { break end; },
                },
                Some(ctl) = self.ctl.recv() => match ctl {
                    Control::Switch(to) => {
                        self.prefer(to);
                        if to != pool && self.stop.is_none() {
                            break End::Switch(to);
                        }
                    }
                    Control::Shutdown { deadline, done } => {
                        self.begin_stop(deadline, Some(done));
                        // Shares handed over before the shutdown still go out.
                        if let Some(end) = self.submit_left(c).await { break end; }
                    }
                },
                // Try the preferred pools in a task of its own, so a slow or dead one never
                // holds up this connection.
                _ = failback.tick(), if self.rank(pool) > 0 && probe.is_none() && self.stop.is_none() => {
                    let shared = self.shared.clone();
                    let now = Instant::now();
                    let preferred: Vec<usize> = self.order[..self.rank(pool)].iter().copied().filter(|&p| !self.held(p, now)).collect();
                    if preferred.is_empty() {
                        continue;
                    }
                    probe = Some(tokio::spawn(async move {
                        for better in preferred {
                            if let Some(e) = establish(shared.clone(), better).await {
                                return Some(e);
                            }
                        }
                        None
                    }));
                }
                r = async { probe.as_mut().expect("guarded by is_some").await }, if probe.is_some() => {
                    probe = None;
                    if let Ok(Some(e)) = r
                        && self.stop.is_none()
                    {
                        tracing::info!(from = pool, to = e.pool, "preferred pool is back");
                        break End::Failback(Box::new(e));
                    }
                }
            }
        };
        if let Some(p) = probe.take() {
            p.abort();
        }
        end
    }

    /// Submit the shares still in the (closed) channel at the start of a shutdown.
    async fn submit_left(&mut self, c: &mut Conn) -> Option<End> {
        while let Ok(s) = self.shares.try_recv() {
            if let Some(end) = self.submit(c, s).await {
                return Some(end);
            }
        }
        None
    }
}

/// Keep an old connection until its submits in flight are answered, time out
/// ([`ClientConfig::answer_timeout`], or `until` for all), or it closes; nothing new is sent
/// (pings are still answered) and its jobs are no longer mined.
async fn drain(shared: Arc<Shared>, mut c: Conn, until: tokio::time::Instant) {
    tracing::info!(pool = c.pool, conn = %c.id, in_flight = c.sent.len(), "draining the old connection");
    let left = loop {
        if c.sent.is_empty() {
            break None;
        }
        let due = c.next_deadline().map_or(until, |d| d.min(until));
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {
                let now = tokio::time::Instant::now();
                c.expire(&shared, now);
                if now >= until {
                    break Some(StaleReason::NoAnswer);
                }
            }
            line = c.reader.next() => match line {
                Err(_) | Ok(None) => break Some(StaleReason::ConnectionLost),
                Ok(Some(Line::Bad(e))) => {
                    c.session.count_protocol_error(&e);
                    shared.count_protocol(&e);
                }
                Ok(Some(Line::Ok(l))) => {
                    if drain_line(&shared, &mut c, &l).await.is_err() {
                        break Some(StaleReason::ConnectionLost);
                    }
                }
            },
        }
    };
    if let Some(reason) = left {
        for (req, s) in std::mem::take(&mut c.sent) {
            c.session.abandon(req);
            shared.stale(s.share, reason);
        }
    }
    tracing::info!(pool = c.pool, conn = %c.id, "old connection closed");
}

/// One line on a draining connection; `Err` when writing a reply failed.
async fn drain_line(shared: &Shared, c: &mut Conn, line: &str) -> Result<(), String> {
    for ev in c.session.handle_line(line) {
        match ev {
            Event::ShareResult { request, share: _, outcome } => c.answer(shared, request, outcome),
            Event::Send(l) => c.write(&l).await?,
            Event::Protocol(e) => shared.count_protocol(&e),
            // Mining has moved on: its jobs, masks and requests no longer matter.
            _ => {}
        }
    }
    Ok(())
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Connect to `pool` and get as far as its first job within the connect timeout.
async fn establish(shared: Arc<Shared>, pool: usize) -> Option<Established> {
    let cfg = &shared.cfg;
    let url = cfg.pools[pool].url.clone();
    match tokio::time::timeout(cfg.connect_timeout, handshake(&shared, pool)).await {
        Ok(Ok(e)) => Some(e),
        Ok(Err(e)) => {
            tracing::warn!(pool, %url, error = %e, "could not start mining on pool");
            None
        }
        Err(_) => {
            tracing::warn!(pool, %url, "no job from pool within the connect timeout");
            None
        }
    }
}

async fn open(url: &PoolUrl, ca: Option<&crate::PoolCa>) -> Result<(Reader, Writer), Error> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| Error::Connect { url: url.to_string(), source })?;
    let _ = tcp.set_nodelay(true);
    if url.tls {
        let tls = crate::tls::connect(&url.host, tcp, ca).await?;
        let (r, w) = tokio::io::split(tls);
        Ok((Box::new(r), Box::new(w)))
    } else {
        let (r, w) = tcp.into_split();
        Ok((Box::new(r), Box::new(w)))
    }
}

/// Connect, send the opening requests, and read until the first job.
async fn handshake(shared: &Shared, pool: usize) -> Result<Established, Error> {
    let cfg = &shared.cfg;
    let pc = &cfg.pools[pool];
    let (r, mut writer) = open(&pc.url, cfg.pool_ca.as_ref()).await?;
    let mut reader = LineReader::new(r);
    let mut scfg = SessionConfig::new(pc.user.clone(), pc.password.clone());
    scfg.agent = cfg.agent.clone();
    scfg.version_rolling = cfg.version_rolling;
    scfg.suggest_difficulty = cfg.suggest_difficulty;
    scfg.extranonce_subscribe = cfg.extranonce_subscribe;
    let mut session = Session::new(scfg);
    let url = pc.url.to_string();
    // Handshake writes are bounded by the connect timeout around all of this.
    for ev in session.start() {
        if let Event::Send(line) = ev {
            write_line(&mut writer, &line, &url).await?;
        }
    }
    let mut early = Vec::new();
    loop {
        let line = reader.next().await.map_err(|source| Error::Io { url: url.clone(), source })?;
        let events = match line {
            None => return Err(Error::Closed { url }),
            Some(Line::Bad(e)) => {
                session.count_protocol_error(&e);
                shared.count_protocol(&e);
                continue;
            }
            Some(Line::Ok(l)) => session.handle_line(&l),
        };
        let mut got_job = false;
        for ev in events {
            match ev {
                Event::Send(line) => write_line(&mut writer, &line, &url).await?,
                Event::Authorized(false) => return Err(Error::Unauthorized { url, user: pc.user.clone() }),
                Event::Job(_) => {
                    got_job = true;
                    early.push(ev);
                }
                Event::Protocol(e) => shared.count_protocol(&e),
                other => early.push(other),
            }
        }
        if got_job && session.is_authorized() {
            return Ok(Established { pool, reader, writer, session, early });
        }
    }
}

async fn write_line(w: &mut Writer, line: &str, url: &str) -> Result<(), Error> {
    tracing::trace!(%url, bytes = line.len(), "send");
    w.write_all(line.as_bytes()).await.map_err(|source| Error::Io { url: url.to_owned(), source })?;
    w.flush().await.map_err(|source| Error::Io { url: url.to_owned(), source })
}
