//! What the client is told (pool URLs, the failover list and every limit) and what it tells
//! back (events, found shares, counters).

use super::*;

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
