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

mod config;
mod driver;
mod transport;

pub use config::*;
use driver::*;
use transport::*;

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

