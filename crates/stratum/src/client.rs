//! The tokio transport around [`Session`]: TCP or TLS, bounded line reading, an inactivity
//! watchdog, failover down an ordered pool list and failback to the first pool that works.
//!
//! Shares found while no pool is connected are queued; after a reconnect each is resubmitted
//! if the new session still has its job with the very same header parts, otherwise it is
//! counted stale. Shares in flight when a connection drops are treated the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::session::{Event, Password, PoolJob, Session, SessionConfig, Share, ShareOutcome};
use crate::wire::{ProtocolError, Reconnect, MAX_LINE};
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
    /// Still queued, never sent, when the client was shut down.
    Shutdown,
}

/// What the miner hears from the client.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    Connected { pool: usize, conn: ConnId, url: String, extranonce1: Vec<u8> },
    Disconnected { pool: usize, conn: ConnId, reason: String },
    /// A job to mine from pool `pool`. Clean jobs void all older work of that connection.
    Job { pool: usize, conn: ConnId, job: Arc<PoolJob> },
    /// BIP 310 `mining.set_version_mask` mid-session: applies to live jobs at once.
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
    pub rejected: BTreeMap<String, u64>,
    pub stale: u64,
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

/// The miner's side: submit shares, read the stats.
#[derive(Clone, Debug)]
pub struct ClientHandle {
    tx: mpsc::UnboundedSender<FoundShare>,
    stats: Arc<Mutex<ClientStats>>,
    switch: mpsc::UnboundedSender<usize>,
    pools: usize,
}

impl ClientHandle {
    /// Hand a share to the client; false once the client has stopped.
    pub fn submit(&self, share: FoundShare) -> bool {
        self.tx.send(share).is_ok()
    }

    /// Shares handed over and not yet resolved.
    pub fn in_flight(&self) -> usize {
        0
    }

    /// Stop taking shares and wait at most `limit` for answers to submits in flight.
    pub async fn shutdown(&self, limit: Duration) {
        let _ = limit;
    }

    pub fn stats(&self) -> ClientStats {
        self.stats.lock().expect("stats lock is never poisoned: no panics while held").clone()
    }

    /// Make `pool` the preferred pool (cgminer's `switchpool`): it moves to the front of the
    /// failover order, the others keep their order behind it, and the client leaves the
    /// current pool for it now. If it cannot be reached, failover goes down the new order.
    /// False for a pool index out of range or once the client has stopped.
    pub fn switch_pool(&self, pool: usize) -> bool {
        pool < self.pools && self.switch.send(pool).is_ok()
    }
}

/// Start the client on the current tokio runtime. It runs until every [`ClientHandle`] is
/// dropped.
pub fn spawn(cfg: ClientConfig) -> (ClientHandle, mpsc::UnboundedReceiver<ClientEvent>, tokio::task::JoinHandle<()>) {
    let (share_tx, share_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (switch_tx, switch_rx) = mpsc::unbounded_channel();
    let pools = cfg.pools.len();
    let order: Vec<usize> = (0..pools).collect();
    let stats = Arc::new(Mutex::new(ClientStats { order: order.clone(), ..Default::default() }));
    let client = Client {
        cfg: Arc::new(cfg),
        shares: share_rx,
        events: ev_tx,
        stats: stats.clone(),
        queue: Vec::new(),
        down_until: Vec::new(),
        switch: switch_rx,
        order,
        conns: 0,
        sent: std::collections::HashMap::new(),
    };
    let task = tokio::spawn(client.run());
    (ClientHandle { tx: share_tx, stats, switch: switch_tx, pools }, ev_rx, task)
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

enum End {
    Failed(String),
    Failback(Box<Established>),
    /// `switch_pool` named another pool.
    Switch(usize),
    Reconnect(Reconnect),
    Shutdown,
}

struct Client {
    cfg: Arc<ClientConfig>,
    shares: mpsc::UnboundedReceiver<FoundShare>,
    events: mpsc::UnboundedSender<ClientEvent>,
    stats: Arc<Mutex<ClientStats>>,
    queue: Vec<FoundShare>,
    down_until: Vec<Option<Instant>>,
    /// `switch_pool` requests.
    switch: mpsc::UnboundedReceiver<usize>,
    /// Failover order, preferred first.
    order: Vec<usize>,
    /// Connections established so far.
    conns: u64,
    /// Submits of the current connection by request id.
    sent: std::collections::HashMap<u64, FoundShare>,
}

impl Client {
    fn stats(&self) -> std::sync::MutexGuard<'_, ClientStats> {
        self.stats.lock().expect("stats lock is never poisoned: no panics while held")
    }

    /// Move `pool` to the front of the failover order (cgminer's switchpool).
    fn prefer(&mut self, pool: usize) {
        self.order.retain(|&p| p != pool);
        self.order.insert(0, pool);
        self.down_until[pool] = None;
        self.stats().order = self.order.clone();
        tracing::info!(pool, order = ?self.order, "pool switched by request");
    }

    /// Where `pool` stands in the failover order (0 = preferred).
    fn rank(&self, pool: usize) -> usize {
        self.order.iter().position(|&p| p == pool).unwrap_or(usize::MAX)
    }

    fn emit(&self, e: ClientEvent) {
        // The miner may have stopped listening; the client then winds down on its own.
        let _ = self.events.send(e);
    }

    fn stale(&self, share: &FoundShare, why: &str) {
        tracing::warn!(pool = share.pool, job = %share.share.job_id, why, "share counted stale");
        self.stats().stale += 1;
    }

    async fn run(mut self) {
        self.down_until = vec![None; self.cfg.pools.len()];
        let mut next: Option<Established> = None;
        loop {
            let est = match next.take() {
                Some(e) => e,
                None => match self.connect_any().await {
                    Some(e) => e,
                    None => {
                        if self.wait_collecting(self.cfg.retry_delay).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let pool = est.pool;
            let end = self.mine_on(est).await;
            let conn = ConnId(self.conns);
            match end {
                End::Shutdown => return,
                End::Failback(better) => {
                    self.emit(ClientEvent::Disconnected { pool, conn, reason: "failing back to a preferred pool".into() });
                    next = Some(*better);
                }
                End::Switch(to) => {
                    self.emit(ClientEvent::Disconnected { pool, conn, reason: format!("switching to pool {to} by request") });
                    match self.establish(to).await {
                        Some(e) => next = Some(e),
                        None => self.down_until[to] = Some(Instant::now() + self.cfg.failback_interval),
                    }
                }
                End::Reconnect(r) => {
                    tracing::info!(pool, wait = r.wait_seconds, host = ?r.host, port = ?r.port, "pool asked for a reconnect (to the configured pool only)");
                    self.emit(ClientEvent::Disconnected { pool, conn, reason: "client.reconnect".into() });
                    if self.wait_collecting(Duration::from_secs(r.wait_seconds)).await {
                        return;
                    }
                    // Reconnect to the configured pool, never to the host/port the message
                    // names (`r.host`, `r.port` are only logged): following a redirect to
                    // another host would hand our worker name and password, and our hashrate,
                    // to whatever host a pool (or anyone who can inject a line into a plain-TCP
                    // session) names, and for stratum+ssl the new host would be checked
                    // against a name we never chose. cgminer follows it only within the same
                    // domain; ESP-Miner, like us, reconnects to its configured pool.
                    if let Some(e) = self.establish(pool).await {
                        next = Some(e);
                    }
                }
                End::Failed(reason) => {
                    tracing::warn!(pool, url = %self.cfg.pools[pool].url, %reason, "pool lost");
                    self.down_until[pool] = Some(Instant::now() + self.cfg.failback_interval);
                    self.emit(ClientEvent::Disconnected { pool, conn, reason });
                }
            }
            self.stats().current_pool = None;
        }
    }

    /// Wait, queueing shares that arrive. True when the miner went away.
    async fn wait_collecting(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                s = self.shares.recv() => match s {
                    Some(s) => { self.queue.push(s); self.stats().queued = self.queue.len() as u64; }
                    None => return true,
                },
                // Not connected: the new order applies to the next connection attempt.
                Some(p) = self.switch.recv() => self.prefer(p),
            }
        }
    }

    /// Try the pools in order, skipping ones that failed recently unless all did.
    async fn connect_any(&mut self) -> Option<Established> {
        let now = Instant::now();
        let up: Vec<usize> = self.order.iter().copied().filter(|&i| self.down_until[i].is_none_or(|t| t <= now)).collect();
        let order = if up.is_empty() { self.order.clone() } else { up };
        for i in order {
            if let Some(e) = self.establish(i).await {
                return Some(e);
            }
            self.down_until[i] = Some(Instant::now() + self.cfg.failback_interval);
        }
        None
    }

    async fn establish(&mut self, pool: usize) -> Option<Established> {
        establish(&self.cfg, &self.stats, pool).await
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

    fn count_protocol(&self, e: &ProtocolError) {
        count_protocol(&self.stats, e);
    }

    /// Apply session events; `Some(end)` stops this connection.
    async fn apply(&mut self, pool: usize, conn: ConnId, writer: &mut Writer, events: Vec<Event>) -> Option<End> {
        let url = self.cfg.pools[pool].url.to_string();
        for ev in events {
            match ev {
                Event::Send(line) => {
                    if let Err(e) = write_line(writer, &line, &url).await {
                        return Some(End::Failed(e.to_string()));
                    }
                }
                Event::Job(job) => self.emit(ClientEvent::Job { pool, conn, job }),
                Event::ShareResult { request, share, outcome } => {
                    let Some(found) = self.sent.remove(&request) else { continue };
                    {
                        let mut st = self.stats();
                        match &outcome {
                            ShareOutcome::Accepted => st.accepted += 1,
                            ShareOutcome::Rejected { reason } => *st.rejected.entry(reason.clone()).or_default() += 1,
                        }
                    }
                    self.emit(ClientEvent::ShareResult { id: found.id, pool, conn, share, outcome });
                }
                Event::Authorized(ok) => {
                    if !ok {
                        return Some(End::Failed("authorization refused".into()));
                    }
                }
                Event::VersionMask(_) => {}
                Event::Reconnect(r) => return Some(End::Reconnect(r)),
                Event::Protocol(e) => self.count_protocol(&e),
            }
        }
        None
    }

    async fn submit(&mut self, pool: usize, conn: ConnId, session: &mut Session, writer: &mut Writer, s: FoundShare) -> Option<End> {
        if s.pool != pool || !session.accepts_share_for(&s.job) {
            self.stale(&s, "its job is not live on the connected pool");
            return None;
        }
        match session.submit_request(s.share.clone()) {
            Ok((req, ev)) => {
                self.sent.insert(req, s);
                self.apply(pool, conn, writer, vec![ev]).await
            }
            Err(e) => {
                self.stale(&s, &e.to_string());
                None
            }
        }
    }

    async fn mine_on(&mut self, est: Established) -> End {
        let Established { pool, mut reader, mut writer, mut session, early } = est;
        let url = self.cfg.pools[pool].url.to_string();
        self.conns += 1;
        let conn = ConnId(self.conns);
        self.sent.clear();
        {
            let mut st = self.stats();
            st.current_pool = Some(pool);
            st.connects += 1;
        }
        self.down_until[pool] = None;
        tracing::info!(pool, %url, "mining on pool");
        let extranonce1 = session.extranonce().map(|(e, _)| e.to_vec()).unwrap_or_default();
        self.emit(ClientEvent::Connected { pool, conn, url: url.clone(), extranonce1 });
        if let Some(end) = self.apply(pool, conn, &mut writer, early).await {
            return end;
        }
        // Shares found while we were away: resubmit those whose job is still live here.
        let queued = std::mem::take(&mut self.queue);
        self.stats().queued = 0;
        for s in queued {
            if s.pool == pool && session.accepts_share_for(&s.job) {
                self.stats().resubmitted += 1;
            }
            if let Some(end) = self.submit(pool, conn, &mut session, &mut writer, s).await {
                return end;
            }
        }
        let mut failback = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.failback_interval,
            self.cfg.failback_interval,
        );
        let mut probe: Option<tokio::task::JoinHandle<Option<Established>>> = None;
        // The watchdog counts from the last line received, whatever else happens meanwhile
        // (shares being submitted must not keep a silent pool alive).
        let mut last_rx = tokio::time::Instant::now();
        let end = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(last_rx + self.cfg.silence_timeout) => {
                    break End::Failed(format!("no message for {} s", self.cfg.silence_timeout.as_secs_f64()));
                }
                // LineReader::next is cancel-safe: bytes are only consumed once a read completes.
                line = reader.next() => {
                    last_rx = tokio::time::Instant::now();
                    let events = match line {
                        Err(e) => break End::Failed(format!("read error: {e}")),
                        Ok(None) => break End::Failed("connection closed by the pool".into()),
                        Ok(Some(Line::Bad(e))) => { session.count_protocol_error(&e); self.count_protocol(&e); continue; }
                        Ok(Some(Line::Ok(l))) => session.handle_line(&l),
                    };
                    if let Some(end) = self.apply(pool, conn, &mut writer, events).await { break end; }
                }
                s = self.shares.recv() => match s {
                    None => break End::Shutdown,
                    Some(s) => if let Some(end) = self.submit(pool, conn, &mut session, &mut writer, s).await { break end; },
                },
                // Try the preferred pools in a task of its own, so a slow or dead one never
                // holds up this connection.
                Some(to) = self.switch.recv() => {
                    self.prefer(to);
                    if to != pool {
                        break End::Switch(to);
                    }
                }
                _ = failback.tick(), if self.rank(pool) > 0 && probe.is_none() => {
                    let (cfg, stats) = (self.cfg.clone(), self.stats.clone());
                    let preferred = self.order[..self.rank(pool)].to_vec();
                    probe = Some(tokio::spawn(async move {
                        for better in preferred {
                            if let Some(e) = establish(&cfg, &stats, better).await {
                                return Some(e);
                            }
                        }
                        None
                    }));
                }
                r = async { probe.as_mut().expect("guarded by is_some").await }, if probe.is_some() => {
                    probe = None;
                    if let Ok(Some(e)) = r {
                        tracing::info!(from = pool, to = e.pool, "preferred pool is back");
                        break End::Failback(Box::new(e));
                    }
                }
            }
        };
        if let Some(p) = probe.take() {
            p.abort();
        }
        // Shares sent but unanswered: requeue if their job may still be valid, else stale.
        for (_, job) in session.take_unanswered() {
            if job.is_none() {
                self.stats().stale += 1;
            }
        }
        let mut sent: Vec<(u64, FoundShare)> = self.sent.drain().collect();
        sent.sort_by_key(|(req, _)| *req);
        for (_, s) in sent {
            if session.job(&s.share.job_id).is_some() {
                self.queue.push(s);
            }
        }
        self.stats().queued = self.queue.len() as u64;
        end
    }
}

fn count_protocol(stats: &Mutex<ClientStats>, e: &ProtocolError) {
    *stats.lock().expect("stats lock is never poisoned: no panics while held").protocol_errors.entry(e.kind()).or_default() += 1;
}

/// Connect to `pool` and get as far as its first job within the connect timeout.
async fn establish(cfg: &ClientConfig, stats: &Mutex<ClientStats>, pool: usize) -> Option<Established> {
    let url = cfg.pools[pool].url.clone();
    match tokio::time::timeout(cfg.connect_timeout, handshake(cfg, stats, pool)).await {
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

/// Connect, send the opening requests, and read until the first job.
async fn handshake(cfg: &ClientConfig, stats: &Mutex<ClientStats>, pool: usize) -> Result<Established, Error> {
    let pc = &cfg.pools[pool];
    let (r, mut writer) = Client::open(&pc.url, cfg.pool_ca.as_ref()).await?;
    let mut reader = LineReader::new(r);
    let mut scfg = SessionConfig::new(pc.user.clone(), pc.password.clone());
    scfg.agent = cfg.agent.clone();
    scfg.version_rolling = cfg.version_rolling;
    scfg.suggest_difficulty = cfg.suggest_difficulty;
    scfg.extranonce_subscribe = cfg.extranonce_subscribe;
    let mut session = Session::new(scfg);
    let url = pc.url.to_string();
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
                count_protocol(stats, &e);
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
                Event::Protocol(e) => count_protocol(stats, &e),
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
