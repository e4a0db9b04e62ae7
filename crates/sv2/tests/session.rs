//! The client's session against the test pool, message by message: a share the reference
//! channel code refuses comes back rejected with its reason, `Reconnect` is followed only to the
//! pool's own host, `CloseChannel` reconnects, and shares of a voided job are never sent.

use std::time::Duration;

use hashrig_sv2::client::{self, ClientConfig, ClientEvent, ClientHandle, ShareOutcome, ShareSubmit, StaleReason, Sv2Job};
use hashrig_sv2::testkit::{Fault, TestPool, TestPoolConfig};
use hashrig_work::HeaderSource;
use tokio::sync::mpsc::UnboundedReceiver;

struct Session {
    handle: ClientHandle,
    events: UnboundedReceiver<ClientEvent>,
    _task: tokio::task::JoinHandle<()>,
}

async fn start(pool: &TestPool) -> Session {
    let mut cfg = ClientConfig::new(vec![pool.url().parse().unwrap()], "w.1");
    cfg.retry_delay = Duration::from_millis(100);
    let (handle, events, task) = client::spawn(cfg);
    Session { handle, events, _task: task }
}

impl Session {
    /// The next event matching `want`, others dropped.
    async fn until<T>(&mut self, mut want: impl FnMut(&ClientEvent) -> Option<T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let ev = self.events.recv().await.expect("client running");
                if let Some(t) = want(&ev) {
                    return t;
                }
            }
        })
        .await
        .expect("the event in time")
    }

    async fn job(&mut self) -> (usize, u64, Sv2Job) {
        self.until(|e| if let ClientEvent::Job { pool, conn, job } = e { Some((*pool, *conn, job.clone())) } else { None }).await
    }
}

fn share(id: u64, pool: usize, conn: u64, job: &Sv2Job, nonce: u32) -> ShareSubmit {
    let HeaderSource::Coinbase(cb) = &job.job else { panic!("an extended channel's job is a coinbase: {:?}", job.job) };
    ShareSubmit { id, pool, conn, job_id: job.job_id, extranonce: vec![7; cb.extranonce2_size], nonce, ntime: cb.ntime, version: cb.version_bits() }
}

#[tokio::test]
async fn a_share_under_the_target_is_rejected_with_the_pools_reason() {
    // A target nothing meets by chance: every share is refused by channels_sv2.
    let mut target = [0u8; 32];
    target[0] = 1; // little-endian: the target 1
    let pool = TestPool::start(TestPoolConfig { target, ..Default::default() }).await.unwrap();
    let mut s = start(&pool).await;
    let (p, c, job) = s.job().await;
    assert!(s.handle.submit(share(1, p, c, &job, 12345)));
    let outcome = s.until(|e| if let ClientEvent::ShareResult { id: 1, outcome } = e { Some(outcome.clone()) } else { None }).await;
    assert_eq!(outcome, ShareOutcome::Rejected { reason: "difficulty-too-low".into() });
    assert_eq!(pool.stats().rejected.get("difficulty-too-low"), Some(&1));
}

#[tokio::test]
async fn shares_of_a_job_voided_by_a_new_block_are_not_sent() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let mut s = start(&pool).await;
    let (p, c, old) = s.job().await;
    pool.inject(Fault::NewBlock);
    let (_, _, new) = s.job().await;
    assert!(new.clean, "a new previous block voids the others");
    assert!(s.handle.submit(share(9, p, c, &old, 1)));
    let why = s.until(|e| if let ClientEvent::ShareStale { id: 9, reason } = e { Some(*reason) } else { None }).await;
    assert_eq!(why, StaleReason::JobNotLive);
    assert!(pool.stats().arrivals.is_empty(), "nothing reached the pool");
}

#[tokio::test]
async fn reconnect_is_followed_to_the_same_host_only() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let mut s = start(&pool).await;
    s.job().await;
    pool.inject(Fault::Reconnect { host: "198.51.100.7".into(), port: 3336 });
    let n = s.until(|e| if let ClientEvent::Notice(n) = e { Some(n.clone()) } else { None }).await;
    assert!(n.contains("refused"), "{n}");
    assert_eq!(s.handle.status().protocol_errors, 1);
    // the same host (empty: "this host"), this port: followed
    pool.inject(Fault::Reconnect { host: String::new(), port: pool.addr().port() });
    let r = s.until(|e| if let ClientEvent::Disconnected { reason, .. } = e { Some(reason.clone()) } else { None }).await;
    assert!(r.contains("reconnect"), "{r}");
    s.until(|e| matches!(e, ClientEvent::Connected { .. }).then_some(())).await;
    assert_eq!(pool.stats().connections, 2);
}

#[tokio::test]
async fn close_channel_reconnects() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let mut s = start(&pool).await;
    s.job().await;
    pool.inject(Fault::CloseChannel);
    let r = s.until(|e| if let ClientEvent::Disconnected { reason, .. } = e { Some(reason.clone()) } else { None }).await;
    assert!(r.contains("closed the channel: test-close"), "{r}");
    s.until(|e| matches!(e, ClientEvent::Connected { .. }).then_some(())).await;
    assert_eq!(pool.stats().channels_opened, 2);
}

#[tokio::test]
async fn a_silent_pool_is_left() {
    // No new jobs, no shares: after the first job the pool says nothing.
    let pool = TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() }).await.unwrap();
    let mut cfg = ClientConfig::new(vec![pool.url().parse().unwrap()], "w.1");
    cfg.retry_delay = Duration::from_millis(100);
    cfg.silence_timeout = Duration::from_millis(600);
    let (handle, events, task) = client::spawn(cfg);
    let mut s = Session { handle, events, _task: task };
    s.job().await;
    let r = s.until(|e| if let ClientEvent::Disconnected { reason, .. } = e { Some(reason.clone()) } else { None }).await;
    assert!(r.contains("sent nothing"), "{r}");
    s.until(|e| matches!(e, ClientEvent::Connected { .. }).then_some(())).await;
    assert_eq!(pool.stats().connections, 2);
}
