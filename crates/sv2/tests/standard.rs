//! The standard channel (the pool builds the merkle root) against the test pool, whose
//! reference `StandardChannel` builds the jobs and checks every share: SetupConnection asks for
//! standard jobs, the job is the pool's header, a share found on it is accepted by the
//! reference validator, and one that misses the target comes back with its reason.

use std::time::Duration;

use hashrig_sv2::client::{self, ChannelKind, ClientConfig, ClientEvent, ShareOutcome, ShareSubmit, REQUIRES_STANDARD_JOBS};
use hashrig_sv2::testkit::{exact_target, TestPool, TestPoolConfig};
use hashrig_work::target::reference_sha256d;
use hashrig_work::{HeaderSource, StandardJob};
use tokio::sync::mpsc::UnboundedReceiver;

async fn until<T>(events: &mut UnboundedReceiver<ClientEvent>, mut want: impl FnMut(&ClientEvent) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = events.recv().await.expect("client running");
            if let Some(t) = want(&ev) {
                return t;
            }
        }
    })
    .await
    .expect("the event in time")
}

fn standard_config(pool: &TestPool) -> ClientConfig {
    let mut cfg = ClientConfig::new(vec![pool.url().parse().unwrap()], "w.std");
    cfg.channel = ChannelKind::Standard;
    cfg.retry_delay = Duration::from_millis(100);
    cfg
}

/// The first nonce from 0 whose header hash meets `target` (little-endian), by plain hashing.
fn find_nonce(sj: &StandardJob, target: &[u8; 32]) -> u32 {
    let target = bitcoin::Target::from_le_bytes(*target);
    let mut header = sj.header(sj.ntime);
    for nonce in 0..u32::MAX {
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        if bitcoin::Target::from_le_bytes(reference_sha256d(&header)) <= target {
            return nonce;
        }
    }
    panic!("no nonce meets the target");
}

#[tokio::test]
async fn a_standard_channel_mines_the_pools_header_and_its_shares_pass_the_reference_validator() {
    // About one hash in 4096 meets this target, with low bytes no rounding reproduces.
    let target = exact_target(1 << 20);
    let pool = TestPool::start(TestPoolConfig { target, job_interval: None, ..Default::default() }).await.unwrap();
    let (handle, mut events, _task) = client::spawn(standard_config(&pool));
    let channel = until(&mut events, |e| if let ClientEvent::Connected { channel, .. } = e { Some(channel.clone()) } else { None }).await;
    assert_eq!(channel.kind, ChannelKind::Standard);
    assert_eq!(channel.extranonce_size, 0);
    let (p, c, job) = until(&mut events, |e| if let ClientEvent::Job { pool, conn, job } = e { Some((*pool, *conn, job.clone())) } else { None }).await;
    let stats = pool.stats();
    assert_eq!(stats.setup_flags.len(), 1);
    assert_ne!(stats.setup_flags[0] & REQUIRES_STANDARD_JOBS, 0, "SetupConnection asks for standard jobs");
    assert_eq!(stats.standard_channels, 1);
    assert_eq!(stats.min_extranonce_asked, Vec::<u16>::new(), "no extended channel asked for");
    let HeaderSource::Standard(sj) = &job.job else { panic!("a standard channel's job is the pool's header: {:?}", job.job) };
    assert_eq!(sj.nbits, TestPoolConfig::default().nbits);
    assert!(job.clean, "the first job comes with a new previous block");
    assert_eq!(job.target.0, target, "the pool's exact target");

    let nonce = find_nonce(sj, &target);
    let share = |id, nonce| ShareSubmit { id, pool: p, conn: c, job_id: job.job_id, extranonce: vec![], nonce, ntime: sj.ntime, version: sj.version };
    assert!(handle.submit(share(1, nonce)));
    let outcome = until(&mut events, |e| if let ClientEvent::ShareResult { id: 1, outcome } = e { Some(outcome.clone()) } else { None }).await;
    assert_eq!(outcome, ShareOutcome::Accepted);
    let stats = pool.stats();
    assert_eq!((stats.valid, stats.credited), (1, 1), "the reference validator accepted it: {stats:?}");

    // The same header with a nonce that misses the target: refused by the reference code.
    let mut header = sj.header(sj.ntime);
    let miss = (0..u32::MAX)
        .find(|n| {
            header[76..80].copy_from_slice(&n.to_le_bytes());
            bitcoin::Target::from_le_bytes(reference_sha256d(&header)) > bitcoin::Target::from_le_bytes(target)
        })
        .expect("a miss");
    assert!(handle.submit(share(2, miss)));
    let outcome = until(&mut events, |e| if let ClientEvent::ShareResult { id: 2, outcome } = e { Some(outcome.clone()) } else { None }).await;
    assert_eq!(outcome, ShareOutcome::Rejected { reason: "difficulty-too-low".into() });
}

#[tokio::test]
async fn a_standard_share_with_an_extranonce_is_refused_before_it_is_sent() {
    let pool = TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() }).await.unwrap();
    let (handle, mut events, _task) = client::spawn(standard_config(&pool));
    let (p, c, job) = until(&mut events, |e| if let ClientEvent::Job { pool, conn, job } = e { Some((*pool, *conn, job.clone())) } else { None }).await;
    let HeaderSource::Standard(sj) = &job.job else { panic!("{:?}", job.job) };
    let s = ShareSubmit { id: 5, pool: p, conn: c, job_id: job.job_id, extranonce: vec![0; 4], nonce: 1, ntime: sj.ntime, version: sj.version };
    assert!(handle.submit(s));
    let why = until(&mut events, |e| if let ClientEvent::ShareStale { id: 5, reason } = e { Some(*reason) } else { None }).await;
    assert_eq!(why, client::StaleReason::Invalid);
    assert!(pool.stats().arrivals.is_empty(), "nothing reached the pool");
}
