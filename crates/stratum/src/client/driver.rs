//! The task behind a [`ClientHandle`]: down the failover list, one live connection at a
//! time, with failback, `client.reconnect`, the share queue and the drain of a connection left
//! behind.

use super::*;

pub(super) enum End {
    Failed(String),
    Failback(Box<Established>),
    /// `switch_pool` named another pool.
    Switch(usize),
    Reconnect(Reconnect),
    Shutdown,
}

/// A shutdown under way.
pub(super) struct Stop {
    deadline: tokio::time::Instant,
    done: Vec<oneshot::Sender<()>>,
}

pub(super) struct Client {
    pub(super) shared: Arc<Shared>,
    pub(super) shares: mpsc::UnboundedReceiver<FoundShare>,
    pub(super) queue: Queue,
    pub(super) down_until: Vec<Option<Instant>>,
    /// Pools within the wait a `client.reconnect` asked for.
    pub(super) hold_until: Vec<Option<Instant>>,
    /// `switch_pool` and `shutdown` requests.
    pub(super) ctl: mpsc::UnboundedReceiver<Control>,
    /// Failover order, preferred first.
    pub(super) order: Vec<usize>,
    /// Connections established so far.
    pub(super) conns: u64,
    pub(super) stop: Option<Stop>,
    /// Old connections waiting for answers after failback or `switch_pool`.
    pub(super) drains: Vec<tokio::task::JoinHandle<()>>,
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

    pub(super) async fn run(mut self) {
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
