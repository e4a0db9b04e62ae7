//! One failover list over two sources: Stratum v1 pools and Stratum V2 pools in the order the
//! user gave them, as a single [`JobSource`].
//!
//! Each protocol's client keeps its own failover down its own part of the list (its pools in
//! their global order). This source runs both at once and mines on whichever side's live pool
//! ranks first in the global order; the other side's live connection is a hot standby: its jobs
//! are held (the latest one, with every version-mask change), never mined, and become the
//! engine's work the moment that side ranks first. So a list `v1 A, V2 B, v1 C` mines on A while
//! A works, on B while A is down, and on C only while both are down; A coming back takes over
//! again (the v1 client's failback), without waiting for a connection to be made.
//!
//! The price is up to two pool connections (one per protocol) where a one-protocol list holds
//! one. Shares always go back to the side (and connection) their job came from, so a share found
//! on the standby's predecessor is still answered by its own pool.
//!
//! Pool indices: each side numbers its pools from 0; every event this source passes on, every
//! [`JobKey`] and [`ConnKey`], carries the global index (the position in the user's list).
//! `switchpool` ([`FailoverHandle::switch_pool`]) moves a pool to the front of the global order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ledger::StaleReason;
use crate::source::{ConnKey, JobKey, JobSource, SourceEvent, SourceJob, Submission};

/// A side's own switch (the v1 client's `switch_pool`), by its local pool index.
pub type SideSwitch = Box<dyn Fn(usize) -> bool + Send + Sync>;

/// What both this source and its handle see.
#[derive(Debug)]
struct Shared {
    /// Global pool indices, preferred first.
    order: Mutex<Vec<usize>>,
    /// Per side, the global pool index of its live connection.
    live: Mutex<[Option<usize>; 2]>,
    /// A change of `order` to act on.
    wake: Notify,
}

impl Shared {
    fn order(&self) -> Vec<usize> {
        self.order.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn live(&self) -> [Option<usize>; 2] {
        *self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// For the monitor: the global failover order, and `switchpool`.
pub struct FailoverHandle {
    shared: Arc<Shared>,
    maps: Arc<[Vec<usize>; 2]>,
    switches: Arc<[Option<SideSwitch>; 2]>,
}

impl std::fmt::Debug for FailoverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverHandle").field("order", &self.shared.order()).field("maps", &self.maps).finish()
    }
}

impl Clone for FailoverHandle {
    fn clone(&self) -> Self {
        FailoverHandle { shared: self.shared.clone(), maps: self.maps.clone(), switches: self.switches.clone() }
    }
}

impl FailoverHandle {
    /// The failover order (global pool indices, preferred first).
    pub fn order(&self) -> Vec<usize> {
        self.shared.order()
    }

    /// The pool mined on now: the live pool ranked first.
    pub fn current_pool(&self) -> Option<usize> {
        let order = self.shared.order();
        let rank = |g: usize| order.iter().position(|&x| x == g).unwrap_or(usize::MAX);
        self.shared.live().into_iter().flatten().min_by_key(|&g| rank(g))
    }

    /// Make `pool` (global index) the preferred pool, as cgminer's `switchpool` does. Its side
    /// is told to move to it where it has a switch (both protocol clients do); true when mining
    /// moves to it: its side took the switch, or (a side without one) is live on it now.
    pub fn switch_pool(&self, pool: usize) -> bool {
        let Some((side, local)) = side_of(&self.maps, pool) else { return false };
        let switched = match &self.switches[side] {
            Some(switch) => switch(local),
            None => self.shared.live()[side] == Some(pool),
        };
        if switched {
            let mut order = self.shared.order.lock().unwrap_or_else(|e| e.into_inner());
            order.retain(|&g| g != pool);
            order.insert(0, pool);
            drop(order);
            self.shared.wake.notify_one();
        }
        switched
    }
}

/// (side, local index) of a global pool index.
fn side_of(maps: &[Vec<usize>; 2], pool: usize) -> Option<(usize, usize)> {
    (0..2).find_map(|s| maps[s].iter().position(|&g| g == pool).map(|local| (s, local)))
}

/// One side's live connection and its latest job.
#[derive(Debug, Default)]
struct Side {
    /// The live connection (global key), its label and channel kind.
    live: Option<(ConnKey, String, Option<&'static str>)>,
    /// Its latest job (global key), kept whether or not it is mined.
    job: Option<SourceJob>,
    /// The next job this side passes on must void older work: the engine holds the other
    /// side's (or an older connection's) work.
    fresh: bool,
    /// Its source has stopped for good.
    done: bool,
}

/// v1 and V2 pools (or any two sources) in one ordered failover list. See the module docs.
///
/// Both sources' `next_event` must be cancel-safe (losing nothing when a call is dropped
/// unfinished): this source waits on both at once.
pub struct Failover<A, B> {
    a: A,
    b: B,
    /// Per side: its local pool index → the global index.
    maps: Arc<[Vec<usize>; 2]>,
    switches: Arc<[Option<SideSwitch>; 2]>,
    shared: Arc<Shared>,
    sides: [Side; 2],
    /// The side mined on.
    active: Option<usize>,
    queue: VecDeque<SourceEvent>,
}

impl<A, B> std::fmt::Debug for Failover<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover").field("maps", &self.maps).field("sides", &self.sides).field("active", &self.active).finish()
    }
}

/// Why a list cannot be split into two sides.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailoverError {
    #[error("pool {0} is on both sides of the failover list")]
    Twice(usize),
    #[error("the failover list has {total} pools but pool {missing} is on neither side")]
    Gap { total: usize, missing: usize },
}

impl<A: JobSource, B: JobSource> Failover<A, B> {
    /// `a_pools[i]` / `b_pools[i]` is the global index of side A's / B's local pool `i`; together
    /// they must number 0..n once each. `a_switch` / `b_switch` move a side to one of its pools
    /// (`switchpool`), where the side can.
    pub fn new(
        a: A,
        a_pools: Vec<usize>,
        a_switch: Option<SideSwitch>,
        b: B,
        b_pools: Vec<usize>,
        b_switch: Option<SideSwitch>,
    ) -> Result<Self, FailoverError> {
        let total = a_pools.len() + b_pools.len();
        let mut seen = vec![false; total];
        for &g in a_pools.iter().chain(&b_pools) {
            match seen.get_mut(g) {
                Some(s) if !*s => *s = true,
                Some(_) => return Err(FailoverError::Twice(g)),
                None => return Err(FailoverError::Gap { total, missing: seen.iter().position(|s| !s).unwrap_or(0) }),
            }
        }
        let shared = Arc::new(Shared { order: Mutex::new((0..total).collect()), live: Mutex::new([None; 2]), wake: Notify::new() });
        Ok(Failover {
            a,
            b,
            maps: Arc::new([a_pools, b_pools]),
            switches: Arc::new([a_switch, b_switch]),
            shared,
            sides: Default::default(),
            active: None,
            queue: VecDeque::new(),
        })
    }

    /// For the monitor: the order and `switchpool`.
    pub fn handle(&self) -> FailoverHandle {
        FailoverHandle { shared: self.shared.clone(), maps: self.maps.clone(), switches: self.switches.clone() }
    }

    fn global(&self, side: usize, conn: ConnKey) -> ConnKey {
        match self.maps[side].get(conn.pool) {
            Some(&pool) => ConnKey { pool, conn: conn.conn },
            None => {
                tracing::error!(side, pool = conn.pool, "a source named a pool it was not given; kept under its own index");
                conn
            }
        }
    }

    /// A side's event with global pool indices.
    fn remap(&self, side: usize, ev: SourceEvent) -> SourceEvent {
        match ev {
            SourceEvent::Connected { conn, label, channel } => SourceEvent::Connected { conn: self.global(side, conn), label, channel },
            SourceEvent::Standby { conn } => SourceEvent::Standby { conn: self.global(side, conn) },
            SourceEvent::Disconnected { conn, reason } => SourceEvent::Disconnected { conn: self.global(side, conn), reason },
            SourceEvent::VersionMask { conn, mask } => SourceEvent::VersionMask { conn: self.global(side, conn), mask },
            SourceEvent::Job(mut j) => {
                j.key.conn = self.global(side, j.key.conn);
                SourceEvent::Job(j)
            }
            e @ (SourceEvent::Settled { .. } | SourceEvent::Notice(_)) => e,
        }
    }

    fn publish_live(&self) {
        let live = [0, 1].map(|s| self.sides[s].live.as_ref().map(|l| l.0.pool));
        *self.shared.live.lock().unwrap_or_else(|e| e.into_inner()) = live;
    }

    /// Mine on the side whose live pool ranks first; on a change, tell the miner (the old side
    /// is a standby now, the new one is connected) and hand it the new side's latest job.
    fn reselect(&mut self) {
        let order = self.shared.order();
        let rank = |g: usize| order.iter().position(|&x| x == g).unwrap_or(usize::MAX);
        let best = (0..2).filter_map(|s| self.sides[s].live.as_ref().map(|l| (rank(l.0.pool), s))).min().map(|(_, s)| s);
        if best == self.active {
            return;
        }
        if let Some(old) = self.active
            && let Some((conn, ..)) = &self.sides[old].live
        {
            tracing::info!(pool = conn.pool, "pool kept as a hot standby: a pool ranked higher is live");
            self.queue.push_back(SourceEvent::Standby { conn: *conn });
        }
        self.active = best;
        let Some(s) = best else { return };
        let side = &mut self.sides[s];
        if let Some((conn, label, channel)) = &side.live {
            self.queue.push_back(SourceEvent::Connected { conn: *conn, label: label.clone(), channel: *channel });
        }
        match side.job.clone() {
            Some(mut j) => {
                j.clean = true;
                side.fresh = false;
                self.queue.push_back(SourceEvent::Job(j));
            }
            None => side.fresh = true,
        }
    }

    fn on_event(&mut self, s: usize, ev: SourceEvent) {
        match self.remap(s, ev) {
            SourceEvent::Connected { conn, label, channel } => {
                self.sides[s].live = Some((conn, label.clone(), channel));
                self.sides[s].job = None;
                self.sides[s].fresh = true;
                self.publish_live();
                let before = self.active;
                self.reselect();
                if self.active == before {
                    // Not a change of side: a new connection of the side mined on, or a standby.
                    self.queue.push_back(if before == Some(s) {
                        SourceEvent::Connected { conn, label, channel }
                    } else {
                        tracing::info!(pool = conn.pool, "pool connected as a hot standby: a pool ranked higher is live");
                        SourceEvent::Standby { conn }
                    });
                }
            }
            SourceEvent::Disconnected { conn, reason } => {
                let was_live = self.sides[s].live.as_ref().is_some_and(|l| l.0 == conn);
                self.queue.push_back(SourceEvent::Disconnected { conn, reason });
                if was_live {
                    self.sides[s].live = None;
                    self.sides[s].job = None;
                    self.publish_live();
                    self.reselect();
                }
            }
            SourceEvent::Job(mut j) => {
                let side = &mut self.sides[s];
                if side.live.as_ref().is_none_or(|l| l.0 != j.key.conn) {
                    tracing::debug!(job = %j.key, "a job of a connection that is not live: not mined");
                    return;
                }
                side.job = Some(j.clone());
                if self.active == Some(s) {
                    if side.fresh {
                        j.clean = true;
                        side.fresh = false;
                    }
                    self.queue.push_back(SourceEvent::Job(j));
                }
            }
            SourceEvent::VersionMask { conn, mask } => {
                if let Some(j) = &mut self.sides[s].job
                    && j.key.conn == conn
                {
                    j.job.set_version_mask(mask.unwrap_or(0));
                }
                self.queue.push_back(SourceEvent::VersionMask { conn, mask });
            }
            other => self.queue.push_back(other),
        }
    }
}

impl<A: JobSource, B: JobSource> JobSource for Failover<A, B> {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.sides[0].done && self.sides[1].done {
                return None;
            }
            let shared = self.shared.clone();
            let woke = tokio::select! {
                ev = self.a.next_event(), if !self.sides[0].done => Some((0, ev)),
                ev = self.b.next_event(), if !self.sides[1].done => Some((1, ev)),
                _ = shared.wake.notified() => None,
            };
            let Some((s, ev)) = woke else {
                // The order changed (switchpool).
                self.reselect();
                continue;
            };
            match ev {
                Some(ev) => self.on_event(s, ev),
                None => {
                    tracing::warn!(side = s, "one side of the failover list stopped");
                    self.sides[s].done = true;
                    if let Some((conn, ..)) = self.sides[s].live.take() {
                        self.queue.push_back(SourceEvent::Disconnected { conn, reason: "its client stopped".into() });
                    }
                    self.sides[s].job = None;
                    self.publish_live();
                    self.reselect();
                }
            }
        }
    }

    fn submit(&mut self, mut sub: Submission) -> Result<(), StaleReason> {
        let Some((s, local)) = side_of(&self.maps, sub.job.conn.pool) else {
            return Err(StaleReason::OutsideJob);
        };
        sub.job = JobKey { conn: ConnKey { pool: local, conn: sub.job.conn.conn }, job: sub.job.job };
        if s == 0 { self.a.submit(sub) } else { self.b.submit(sub) }
    }

    async fn shutdown(&mut self, limit: Duration) -> Vec<SourceEvent> {
        let (a, b) = tokio::join!(self.a.shutdown(limit), self.b.shutdown(limit));
        let mut out: Vec<SourceEvent> = self.queue.drain(..).collect();
        out.extend(a.into_iter().map(|e| self.remap(0, e)));
        out.extend(b.into_iter().map(|e| self.remap(1, e)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Fate, ShareId};
    use bitcoin::hashes::Hash;
    use hashrig_work::job::CoinbaseJob;
    use tokio::sync::mpsc;

    /// A side driven by the test: events from a channel, submissions recorded.
    struct Fake {
        rx: mpsc::UnboundedReceiver<SourceEvent>,
        subs: Arc<Mutex<Vec<Submission>>>,
    }

    impl JobSource for Fake {
        async fn next_event(&mut self) -> Option<SourceEvent> {
            self.rx.recv().await
        }
        fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
            self.subs.lock().unwrap().push(sub);
            Ok(())
        }
        async fn shutdown(&mut self, _limit: Duration) -> Vec<SourceEvent> {
            vec![SourceEvent::Settled { id: ShareId(99), fate: Fate::Accepted }]
        }
    }

    type Tx = mpsc::UnboundedSender<SourceEvent>;
    type Subs = Arc<Mutex<Vec<Submission>>>;

    fn fake() -> (Fake, Tx, Subs) {
        let (tx, rx) = mpsc::unbounded_channel();
        let subs = Subs::default();
        (Fake { rx, subs: subs.clone() }, tx, subs)
    }

    fn conn(pool: usize, conn: u64) -> ConnKey {
        ConnKey { pool, conn }
    }

    fn job(pool: usize, c: u64, id: &str, clean: bool) -> SourceJob {
        let cb = CoinbaseJob {
            prev_hash: bitcoin::BlockHash::from_byte_array([7; 32]),
            coinb1: vec![1, 2, 3],
            extranonce1: vec![0xaa],
            extranonce2_size: 4,
            coinb2: vec![4, 5],
            merkle_branch: vec![],
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            version_mask: 0,
            nbits: bitcoin::CompactTarget::from_consensus(0x1d00_ffff),
            ntime: 1_700_000_000,
        };
        SourceJob {
            key: JobKey { conn: conn(pool, c), job: id.into() },
            job: hashrig_work::HeaderSource::Coinbase(cb),
            share_target: hashrig_sha256d::Target::MAX,
            clean,
            height: None,
        }
    }

    fn connected(pool: usize, c: u64) -> SourceEvent {
        SourceEvent::Connected { conn: conn(pool, c), label: format!("p{pool}"), channel: None }
    }

    /// Everything the source has to say now (it waits a moment for each). Which side is read
    /// first is not fixed, so a test drains before it sends on the other side.
    async fn drain<A: JobSource, B: JobSource>(f: &mut Failover<A, B>) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), f.next_event()).await {
            out.push(e);
        }
        out
    }

    /// The (kind, global pool, job id, clean) of each event, for short asserts.
    fn brief(evs: &[SourceEvent]) -> Vec<String> {
        evs.iter()
            .map(|e| match e {
                SourceEvent::Connected { conn, .. } => format!("connected {}", conn.pool),
                SourceEvent::Standby { conn } => format!("standby {}", conn.pool),
                SourceEvent::Disconnected { conn, .. } => format!("disconnected {}", conn.pool),
                SourceEvent::Job(j) => format!("job {} {}{}", j.key.conn.pool, j.key.job, if j.clean { " clean" } else { "" }),
                SourceEvent::VersionMask { conn, mask } => format!("mask {} {mask:?}", conn.pool),
                SourceEvent::Settled { id, .. } => format!("settled {}", id.0),
                SourceEvent::Notice(n) => format!("notice {n}"),
            })
            .collect()
    }

    /// A list `v1 A, V2 B, v1 C`: side A holds global pools 0 and 2, side B global pool 1.
    fn list() -> (Failover<Fake, Fake>, Tx, Subs, Tx, Subs) {
        let (a, atx, asubs) = fake();
        let (b, btx, bsubs) = fake();
        (Failover::new(a, vec![0, 2], None, b, vec![1], None).unwrap(), atx, asubs, btx, bsubs)
    }

    #[tokio::test]
    async fn the_live_pool_ranked_first_is_mined_and_the_other_side_is_a_standby() {
        let (mut f, atx, _, btx, _) = list();
        // Side A is on its second pool (global 2): it is mined while nothing ranks higher.
        atx.send(connected(1, 1)).unwrap();
        atx.send(SourceEvent::Job(job(1, 1, "a1", false))).unwrap();
        assert_eq!(brief(&drain(&mut f).await), ["connected 2", "job 2 a1 clean"]);
        // Side B comes up on global pool 1: it ranks higher, so mining moves; its first job is
        // clean even when the pool says it is not.
        btx.send(connected(0, 7)).unwrap();
        btx.send(SourceEvent::Job(job(0, 7, "b1", false))).unwrap();
        assert_eq!(brief(&drain(&mut f).await), ["standby 2", "connected 1", "job 1 b1 clean"]);
        // The standby's jobs are held, not mined.
        atx.send(SourceEvent::Job(job(1, 1, "a2", false))).unwrap();
        assert!(brief(&drain(&mut f).await).is_empty());
        // A's first pool (global 0) comes back: A ranks first again.
        atx.send(SourceEvent::Disconnected { conn: conn(1, 1), reason: "failing back".into() }).unwrap();
        atx.send(connected(0, 2)).unwrap();
        atx.send(SourceEvent::Job(job(0, 2, "a3", false))).unwrap();
        let evs = drain(&mut f).await;
        assert_eq!(brief(&evs), ["disconnected 2", "standby 1", "connected 0", "job 0 a3 clean"]);
        // Jobs of the side mined on keep their own clean flag after the first.
        atx.send(SourceEvent::Job(job(0, 2, "a4", false))).unwrap();
        assert_eq!(brief(&drain(&mut f).await), ["job 0 a4"]);
        // A loses its pool: B's held job becomes the engine's work at once.
        btx.send(SourceEvent::Job(job(0, 7, "b2", false))).unwrap();
        assert!(brief(&drain(&mut f).await).is_empty());
        atx.send(SourceEvent::Disconnected { conn: conn(0, 2), reason: "gone".into() }).unwrap();
        assert_eq!(brief(&drain(&mut f).await), ["disconnected 0", "connected 1", "job 1 b2 clean"]);
    }

    #[tokio::test]
    async fn shares_go_back_to_the_side_and_local_pool_their_job_came_from() {
        let (mut f, atx, asubs, btx, bsubs) = list();
        atx.send(connected(1, 3)).unwrap();
        btx.send(connected(0, 3)).unwrap();
        drain(&mut f).await;
        let share = |pool: usize, id: u64| Submission {
            id: ShareId(id),
            job: JobKey { conn: conn(pool, 3), job: "j".into() },
            share: hashrig_engine::Share {
                job_id: "engine".into(),
                extranonce2: vec![0; 4],
                extranonce2_counter: 0,
                ntime: 0,
                nonce: 0,
                version: 0,
                header: [0; 80],
                digest: [0; 32],
                difficulty: 1.0,
                is_block: false,
                device: 0,
                origin: Default::default(),
            },
        };
        f.submit(share(2, 1)).unwrap();
        f.submit(share(1, 2)).unwrap();
        assert_eq!(f.submit(share(5, 3)).unwrap_err(), StaleReason::OutsideJob);
        let a: Vec<_> = asubs.lock().unwrap().iter().map(|s| (s.id.0, s.job.conn)).collect();
        let b: Vec<_> = bsubs.lock().unwrap().iter().map(|s| (s.id.0, s.job.conn)).collect();
        assert_eq!(a, [(1, conn(1, 3))]);
        assert_eq!(b, [(2, conn(0, 3))]);
        // Both sides' last answers come back at shutdown.
        assert_eq!(brief(&f.shutdown(Duration::from_millis(10)).await), ["settled 99", "settled 99"]);
    }

    #[tokio::test]
    async fn a_held_job_keeps_its_version_mask_and_switchpool_moves_mining_to_a_live_standby() {
        let (mut f, atx, _, btx, _) = list();
        let h = f.handle();
        atx.send(connected(0, 1)).unwrap();
        atx.send(SourceEvent::Job(job(0, 1, "a1", true))).unwrap();
        assert_eq!(brief(&drain(&mut f).await), ["connected 0", "job 0 a1 clean"]);
        btx.send(connected(0, 1)).unwrap();
        btx.send(SourceEvent::Job(job(0, 1, "b1", true))).unwrap();
        btx.send(SourceEvent::VersionMask { conn: conn(0, 1), mask: Some(0x1fff_e000) }).unwrap();
        assert_eq!(brief(&drain(&mut f).await), ["standby 1", "mask 1 Some(536862720)"]);
        assert_eq!(h.current_pool(), Some(0));
        // Pool 2 is not live and its side has no switch: refused, nothing changes.
        assert!(!h.switch_pool(2));
        assert!(!h.switch_pool(9));
        assert_eq!(h.order(), [0, 1, 2]);
        // Pool 1 is its side's live pool: mining moves there, with the held job and its mask.
        assert!(h.switch_pool(1));
        assert_eq!(h.order(), [1, 0, 2]);
        let evs = drain(&mut f).await;
        assert_eq!(brief(&evs), ["standby 0", "connected 1", "job 1 b1 clean"]);
        let SourceEvent::Job(j) = &evs[2] else { unreachable!() };
        assert_eq!(j.job.version_mask(), 0x1fff_e000);
        assert_eq!(h.current_pool(), Some(1));
    }

    #[test]
    fn a_list_that_does_not_number_every_pool_once_is_refused() {
        let (a, ..) = fake();
        let (b, ..) = fake();
        assert_eq!(Failover::new(a, vec![0, 1], None, b, vec![1], None).unwrap_err(), FailoverError::Twice(1));
        let (a, ..) = fake();
        let (b, ..) = fake();
        assert_eq!(Failover::new(a, vec![0, 3], None, b, vec![1], None).unwrap_err(), FailoverError::Gap { total: 3, missing: 1 });
    }
}
