//! The mining loop with its SV2 source ([`Sv2Source`]) and a 1-thread CPU hasher against the
//! SV2 test pool of hashrig-sv2, whose every share check is channels_sv2's server-side extended
//! channel (the reference implementation's code, not ours): every share the ledger counts
//! accepted is one the pool credited, and the faults lose nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashrig_engine::Hasher;
use hashrig_miner::sv2::Sv2Source;
use hashrig_miner::{JobSource, Miner, MinerConfig, Outcome, Quiet, SourceEvent, StaleReason, Submission};
use hashrig_sha256d::Target;
use hashrig_sv2::client::{ChannelKind, ClientConfig};
use hashrig_work::HeaderSource;
use hashrig_sv2::testkit::{Fault, PoolStats, TestPool, TestPoolConfig, exact_target};

/// A source that records every event it passes on.
struct Recording {
    inner: Sv2Source,
    events: Arc<Mutex<Vec<SourceEvent>>>,
}

impl JobSource for Recording {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        let ev = self.inner.next_event().await?;
        self.events.lock().unwrap().push(ev.clone());
        Some(ev)
    }
    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
        self.inner.submit(sub)
    }
    async fn shutdown(&mut self, limit: Duration) -> Vec<SourceEvent> {
        let evs = self.inner.shutdown(limit).await;
        self.events.lock().unwrap().extend(evs.iter().cloned());
        evs
    }
}

fn cpu() -> Vec<Box<dyn Hasher>> {
    let cfg = hashrig_hasher_cpu::CpuConfig { threads: Some(1), ..Default::default() };
    vec![Box::new(hashrig_hasher_cpu::CpuHasher::new(&cfg).expect("cpu hasher"))]
}

struct Run {
    out: Outcome,
    events: Vec<SourceEvent>,
    protocol_errors: u64,
}

/// Mine on `pool` for `secs`, running `script` (faults at times) meanwhile.
async fn mine(pool: &TestPool, secs: u64, script: impl std::future::Future<Output = ()>) -> Run {
    mine_on(pool, ChannelKind::Extended, secs, script).await
}

/// The same on a channel of the given kind.
async fn mine_on(pool: &TestPool, channel: ChannelKind, secs: u64, script: impl std::future::Future<Output = ()>) -> Run {
    let mut cfg = ClientConfig::new(vec![pool.url().parse().unwrap()], "w.1");
    cfg.channel = channel;
    cfg.retry_delay = Duration::from_millis(200);
    mine_with(cfg, secs, script).await
}

/// The same with a client configured by the caller.
async fn mine_with(cfg: ClientConfig, secs: u64, script: impl std::future::Future<Output = ()>) -> Run {
    mine_with_client(cfg, secs, |_| script).await
}

/// The same, with the script given the client (for `switch_pool`).
async fn mine_with_client<F: std::future::Future<Output = ()>>(cfg: ClientConfig, secs: u64, script: impl FnOnce(hashrig_sv2::ClientHandle) -> F) -> Run {
    let inner = Sv2Source::spawn(cfg);
    let script = script(inner.client().clone());
    let client = inner.client().clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    let source = Recording { inner, events: events.clone() };
    let mcfg = MinerConfig { assumed_hashrate: 1e7, shutdown_wait: Duration::from_secs(3), ..Default::default() };
    let miner = Miner::start(cpu(), source, mcfg).expect("miner");
    let stop = async {
        tokio::join!(script, tokio::time::sleep(Duration::from_secs(secs)));
    };
    let out = miner.run(stop, &mut Quiet).await;
    let events = events.lock().unwrap().clone();
    Run { out, events, protocol_errors: client.status().protocol_errors }
}

/// What every run must show: the ledger adds up, nothing is left unanswered, and what it counts
/// accepted is exactly what the pool credited.
fn reconciles(run: &Run, stats: &PoolStats) {
    let l = &run.out.ledger;
    assert!(run.out.reconciles(), "the ledger does not add up: {l:#?}");
    assert_eq!(l.in_flight, 0, "{l:#?}");
    assert_eq!(l.accepted, stats.credited, "accepted here vs credited by the pool: {l:#?} {stats:#?}");
    assert_eq!(stats.valid, stats.credited, "the pool acknowledged every valid share: {stats:#?}");
    assert_eq!(l.rejected, stats.rejected.values().sum::<u64>(), "{l:#?} {stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_share_counted_accepted_is_credited_by_the_reference_channel_code() {
    let cfg = TestPoolConfig { job_interval: Some(Duration::from_millis(700)), ..Default::default() };
    let pool = TestPool::start(cfg).await.unwrap();
    let run = mine(&pool, 4, async {}).await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    let l = &run.out.ledger;
    assert!(l.accepted >= 3, "too few shares to tell: {l:#?}");
    assert_eq!(l.rejected, 0, "channels_sv2 rejected shares: {stats:#?}");
    // asked for version rolling, and 4 extranonce bytes (what the pool grants)
    assert_eq!(stats.setup_flags, vec![hashrig_sv2::client::REQUIRES_VERSION_ROLLING]);
    assert_eq!(stats.min_extranonce_asked, vec![4]);
    // jobs carry the pool's target bit for bit (it has a non-round low half)
    let first = run.events.iter().find_map(|e| if let SourceEvent::Job(j) = e { Some(j.clone()) } else { None }).expect("a job");
    assert_eq!(first.share_target, Target::from_le_bytes(TestPoolConfig::default().target));
    assert!(first.clean, "the first job goes live with SetNewPrevHash: clean");
    assert!(run.events.iter().any(|e| matches!(e, SourceEvent::Job(j) if !j.clean)), "later jobs on the same block are not clean");
    assert!(matches!(&run.events[0], SourceEvent::Connected { label, .. } if label.ends_with("(extended channel)")), "{:?}", run.events[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_closing_mid_submit_loses_nothing_and_the_client_reconnects() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let run = mine(&pool, 5, async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pool.inject(Fault::CloseOnNextSubmit);
    })
    .await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    let l = &run.out.ledger;
    assert_eq!(stats.dropped, 1, "{stats:#?}");
    assert!(stats.connections >= 2, "reconnected: {stats:#?}");
    assert!(l.stale_by_reason.get(&hashrig_miner::StaleReason::ConnectionLost).copied().unwrap_or(0) >= 1, "the dropped share is stale: {l:#?}");
    assert!(l.accepted >= 2, "{l:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_target_applies_to_the_next_job_exactly_and_nothing_is_rejected() {
    let pool = TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() }).await.unwrap();
    // Easier than the first target: applied to the live job, shares meeting only it would be
    // "difficulty-too-low" there.
    let easier = exact_target(12_000);
    let run = mine(&pool, 4, async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pool.inject(Fault::SetTarget(easier));
    })
    .await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    assert_eq!(run.out.ledger.rejected, 0, "{stats:#?}");
    let targets: Vec<Target> = run.events.iter().filter_map(|e| if let SourceEvent::Job(j) = e { Some(j.share_target) } else { None }).collect();
    assert_eq!(targets.len(), 2, "the first job, then the one after SetTarget: {targets:?}");
    assert_eq!(targets[0], Target::from_le_bytes(TestPoolConfig::default().target));
    assert_eq!(targets[1], Target::from_le_bytes(easier));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_is_ignored_and_a_new_extranonce_prefix_is_used() {
    let pool = TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() }).await.unwrap();
    let run = mine(&pool, 4, async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pool.inject(Fault::UnknownMessage);
        tokio::time::sleep(Duration::from_millis(500)).await;
        pool.inject(Fault::SetExtranoncePrefix);
    })
    .await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    assert_eq!(stats.connections, 1, "an unknown type is not a reason to drop the connection: {stats:#?}");
    assert_eq!(run.protocol_errors, 1);
    assert_eq!(run.out.ledger.rejected, 0, "shares on the new prefix are valid: {stats:#?}");
    let prefixes: Vec<Vec<u8>> =
        run.events.iter().filter_map(|e| if let SourceEvent::Job(j) = e { Some(j.job.extranonce1().to_vec()) } else { None }).collect();
    assert_eq!(prefixes.len(), 2, "{prefixes:?}");
    assert_ne!(prefixes[0], prefixes[1], "the job after SetExtranoncePrefix uses the new prefix");
    assert!(run.out.ledger.accepted >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_connection_with_a_clear_reason() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let run = mine(&pool, 4, async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pool.inject(Fault::OversizedFrame(2 << 20));
    })
    .await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    let reasons: Vec<&String> = run.events.iter().filter_map(|e| if let SourceEvent::Disconnected { reason, .. } = e { Some(reason) } else { None }).collect();
    assert!(reasons.iter().any(|r| r.contains("a frame over")), "{reasons:?}");
    assert!(stats.connections >= 2, "reconnected: {stats:#?} {:#?}", run.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sized_coinbase_and_merkle_path_mine_valid_shares() {
    // A 64 KB coinbase (as big as a job carries) and 40 merkle levels: the job frame is over
    // one Noise chunk (65535 bytes), so it is read and decrypted in two.
    let cfg = TestPoolConfig { coinbase_padding: 700, merkle_path_len: 40, ..Default::default() };
    let pool = TestPool::start(cfg).await.unwrap();
    let run = mine(&pool, 4, async {}).await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    let job = run.events.iter().find_map(|e| if let SourceEvent::Job(j) = e { Some(j.job.clone()) } else { None }).expect("a job");
    let HeaderSource::Coinbase(job) = job else { panic!("an extended channel's job is a coinbase: {job:?}") };
    assert!(job.coinb2.len() > 64_000, "{}", job.coinb2.len());
    assert_eq!(job.merkle_branch.len(), 40);
    assert!(job.coinb1.len() + job.coinb2.len() + 40 * 32 > 65_535, "the frame spans two chunks");
    assert_eq!(run.out.ledger.rejected, 0, "{stats:#?}");
    assert!(run.out.ledger.accepted >= 2, "{:#?}", run.out.ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_channel_mines_the_pools_header_and_every_accepted_share_is_credited() {
    // New jobs and a new block while mining: jobs of the pool's own headers replace each other.
    let cfg = TestPoolConfig { job_interval: Some(Duration::from_millis(700)), ..Default::default() };
    let pool = TestPool::start(cfg).await.unwrap();
    let run = mine_on(&pool, ChannelKind::Standard, 4, async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        pool.inject(Fault::NewBlock);
    })
    .await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    assert_eq!(stats.standard_channels, 1, "a standard channel was opened: {stats:#?}");
    assert_ne!(stats.setup_flags[0] & hashrig_sv2::client::REQUIRES_STANDARD_JOBS, 0);
    let jobs: Vec<&HeaderSource> = run.events.iter().filter_map(|e| if let SourceEvent::Job(j) = e { Some(&j.job) } else { None }).collect();
    assert!(jobs.len() >= 3, "{jobs:?}");
    assert!(jobs.iter().all(|j| matches!(j, HeaderSource::Standard(_))), "every job is the pool's header: {jobs:?}");
    let labels: Vec<&String> = run.events.iter().filter_map(|e| if let SourceEvent::Connected { label, .. } = e { Some(label) } else { None }).collect();
    assert!(labels.iter().all(|l| l.contains("(standard channel)")), "{labels:?}");
    assert_eq!(run.out.ledger.rejected, 0, "{stats:#?}");
    assert!(run.out.ledger.accepted >= 4, "{:#?} {stats:#?}", run.out.ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_channel_takes_set_target_and_a_new_extranonce_prefix_without_a_reject() {
    let pool = TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() }).await.unwrap();
    let easier = exact_target(12_000);
    let run = mine_on(&pool, ChannelKind::Standard, 4, async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        pool.inject(Fault::SetTarget(easier));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        pool.inject(Fault::SetExtranoncePrefix);
    })
    .await;
    let stats = pool.stats();
    reconciles(&run, &stats);
    assert_eq!(run.out.ledger.rejected, 0, "{stats:#?}");
    assert_eq!(run.protocol_errors, 0);
    assert_eq!(stats.connections, 1, "{stats:#?}");
    let jobs: Vec<(Target, [u8; 32])> = run
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Job(j) => match &j.job {
                HeaderSource::Standard(sj) => Some((j.share_target, sj.merkle_root)),
                other => panic!("a standard channel's job is the pool's header: {other:?}"),
            },
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 3, "the first job, the one after SetTarget, the one after the new prefix: {jobs:?}");
    assert_eq!(jobs[0].0, Target::from_le_bytes(TestPoolConfig::default().target));
    assert_eq!(jobs[1].0, Target::from_le_bytes(easier), "SetTarget applies to the next job, exactly");
    assert_eq!(jobs[2].0, Target::from_le_bytes(easier));
    assert_ne!(jobs[1].1, jobs[2].1, "a new job (the pool rebuilt its merkle root) after the new prefix");
    assert!(run.out.ledger.accepted >= 2, "{:#?}", run.out.ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_back_to_the_first_pool_when_it_returns_and_nothing_is_lost() {
    // The first pool is down at the start (its port closed), the second works.
    let first = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let addr = first.addr();
    drop(first);
    let second = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let url = |a: std::net::SocketAddr| format!("stratum2+tcp://{a}/{}", hashrig_sv2::testkit::AUTHORITY_PUBLIC).parse().unwrap();
    let mut cfg = ClientConfig::new(vec![url(addr), url(second.addr())], "w.1");
    cfg.retry_delay = Duration::from_millis(200);
    cfg.failback_interval = Duration::from_millis(500);
    let back: Arc<Mutex<Option<TestPool>>> = Arc::default();
    let slot = back.clone();
    let run = mine_with(cfg, 6, async move {
        // It comes back on the same address after 2 s.
        tokio::time::sleep(Duration::from_secs(2)).await;
        *slot.lock().unwrap() = Some(TestPool::start_on(&addr.to_string(), TestPoolConfig::default()).await.unwrap());
    })
    .await;
    let first = back.lock().unwrap().take().expect("the first pool restarted");
    let (s1, s2) = (first.stats(), second.stats());
    let l = &run.out.ledger;
    assert!(run.out.reconciles(), "{l:#?}");
    assert_eq!(l.in_flight, 0, "{l:#?}");
    assert!(s2.credited >= 1 && s1.credited >= 1, "mined on both: first {s1:#?} second {s2:#?}");
    // The second pool's answers were awaited before leaving it: every share either pool took is
    // counted accepted, exactly.
    assert_eq!(l.accepted, s1.credited + s2.credited, "{l:#?} {s1:#?} {s2:#?}");
    assert_eq!(l.rejected, 0, "{l:#?}");
    let order: Vec<(usize, &str)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Connected { conn, .. } => Some((conn.pool, "connected")),
            SourceEvent::Disconnected { conn, reason } if reason.contains("failing back") => Some((conn.pool, "failing back")),
            _ => None,
        })
        .collect();
    assert_eq!(order[..3], [(1, "connected"), (1, "failing back"), (0, "connected")], "{order:?}");
    // One channel on the first pool: the one failback opened is the one mined on.
    assert_eq!(s1.channels_opened, 1, "{s1:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_pool_moves_to_the_pool_asked_for_and_failback_keeps_it_there() {
    let first = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let second = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let mut cfg = ClientConfig::new(vec![first.url().parse().unwrap(), second.url().parse().unwrap()], "w.1");
    cfg.failback_interval = Duration::from_millis(300);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let answers = asked.clone();
    let run = mine_with_client(cfg, 5, move |client| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut a = answers.lock().unwrap();
        a.push(client.switch_pool(1));
        // Out of the list: refused.
        a.push(client.switch_pool(2));
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        answers.lock().unwrap().push(client.status().order == [1, 0]);
    })
    .await;
    assert_eq!(*asked.lock().unwrap(), [true, false, true]);
    let (s1, s2) = (first.stats(), second.stats());
    let l = &run.out.ledger;
    assert!(run.out.reconciles(), "{l:#?}");
    assert_eq!(l.in_flight, 0, "{l:#?}");
    assert!(s1.credited >= 1 && s2.credited >= 1, "mined on both: {s1:#?} {s2:#?}");
    assert_eq!(l.accepted, s1.credited + s2.credited, "{l:#?} {s1:#?} {s2:#?}");
    assert_eq!(l.rejected, 0, "{l:#?}");
    let order: Vec<(usize, String)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Connected { conn, .. } => Some((conn.pool, "connected".to_string())),
            SourceEvent::Disconnected { conn, reason } => Some((conn.pool, reason.clone())),
            _ => None,
        })
        .collect();
    // Moved once, by request, and failback (every 0.3 s) did not take it back to the first pool.
    assert_eq!(
        order[..3],
        [(0, "connected".to_string()), (0, "switching to pool 1 by request".to_string()), (1, "connected".to_string())],
        "{order:?}"
    );
    assert_eq!(order.iter().filter(|(_, what)| what == "connected").count(), 2, "{order:?}");
    assert_eq!((s1.channels_opened, s2.channels_opened), (1, 1), "{s1:#?} {s2:#?}");
}
