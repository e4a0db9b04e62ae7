//! The mining loop against a scripted source and a real CPU hasher: the ledger accounts for
//! every share, the share-rate floor holds, a job sent again is not scanned again, and a
//! version mask change reaches the engine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::Hash;
use hashrig_engine::Hasher;
use hashrig_miner::{ConnKey, Fate, JobKey, JobSource, Miner, MinerConfig, Quiet, SourceEvent, SourceJob, StaleReason, Submission};
use hashrig_work::job::CoinbaseJob;
use tokio::sync::mpsc;

/// What the scripted source saw.
#[derive(Debug, Default)]
struct Seen {
    submitted: Vec<Submission>,
}

/// A source driven by the test: events come from a channel; submissions are recorded and
/// answered by `answer`.
struct Scripted {
    rx: mpsc::UnboundedReceiver<SourceEvent>,
    queue: VecDeque<SourceEvent>,
    seen: Arc<Mutex<Seen>>,
    answer: fn(&Submission) -> Option<Fate>,
}

impl JobSource for Scripted {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        if let Some(e) = self.queue.pop_front() {
            return Some(e);
        }
        self.rx.recv().await
    }
    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
        if let Some(f) = (self.answer)(&sub) {
            self.queue.push_back(SourceEvent::Settled { id: sub.id, fate: f });
        }
        self.seen.lock().unwrap().submitted.push(sub);
        Ok(())
    }
    async fn shutdown(&mut self, _limit: Duration) -> Vec<SourceEvent> {
        self.queue.drain(..).collect()
    }
}

fn cpu() -> Vec<Box<dyn Hasher>> {
    let cfg = hashrig_hasher_cpu::CpuConfig { threads: Some(1), ..Default::default() };
    vec![Box::new(hashrig_hasher_cpu::CpuHasher::new(&cfg).expect("cpu hasher"))]
}

fn job(conn: u64, id: &str, difficulty: f64, mask: u32, extranonce2_size: usize) -> SourceJob {
    let cb = CoinbaseJob {
        prev_hash: bitcoin::BlockHash::from_byte_array([7; 32]),
        coinb1: hex::decode("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20").unwrap(),
        extranonce1: vec![0xaa, 0xbb, 0xcc, 0xdd],
        extranonce2_size,
        coinb2: hex::decode("ffffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000").unwrap(),
        merkle_branch: vec![],
        version: bitcoin::block::Version::from_consensus(0x2000_0000),
        version_mask: mask,
        nbits: bitcoin::CompactTarget::from_consensus(0x1d00_ffff),
        ntime: 1_700_000_000,
    };
    SourceJob {
        key: JobKey { conn: ConnKey { pool: 0, conn }, job: id.into() },
        job: hashrig_work::HeaderSource::Coinbase(cb),
        share_target: hashrig_work::target::target_from_difficulty(difficulty).unwrap(),
        clean: true,
        height: None,
    }
}

fn start(answer: fn(&Submission) -> Option<Fate>, cfg: MinerConfig) -> (Miner<Scripted>, mpsc::UnboundedSender<SourceEvent>, Arc<Mutex<Seen>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let src = Scripted { rx, queue: VecDeque::new(), seen: seen.clone(), answer };
    (Miner::start(cpu(), src, cfg).expect("miner"), tx, seen)
}

fn accept_all(_: &Submission) -> Option<Fate> {
    Some(Fate::Accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_share_is_accounted_for_and_a_tiny_difficulty_is_floored() {
    let cfg = MinerConfig { max_share_rate: 50.0, assumed_hashrate: 1e7, ..Default::default() };
    let (miner, tx, seen) = start(accept_all, cfg);
    // A pool asking for difficulty 1e-9 would make every hash a share.
    tx.send(SourceEvent::Job(job(1, "a", 1e-9, 0, 4))).unwrap();
    let out = miner.run(tokio::time::sleep(Duration::from_secs(3)), &mut Quiet).await;
    let l = &out.ledger;
    assert!(out.reconciles(), "{l:#?} vs engine shares {} stale {}", out.stats.shares, out.stats.stale);
    assert!(l.found > 0, "no shares at all: {l:#?}");
    // 3 s at most 50 shares/s (the rate is estimated, so allow some slack), not millions.
    assert!(l.found < 600, "the floor did not hold: {} shares in 3 s", l.found);
    assert_eq!(l.accepted as usize, seen.lock().unwrap().submitted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_sent_again_after_a_reconnect_is_not_scanned_again() {
    let cfg = MinerConfig { max_share_rate: 2000.0, assumed_hashrate: 1e7, ..Default::default() };
    let (miner, tx, seen) = start(accept_all, cfg);
    // Difficulty above the share-rate floor, so the engine's job count is the source's alone.
    tx.send(SourceEvent::Job(job(1, "a", 2e-4, 0, 4))).unwrap();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        for conn in 2..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            tx2.send(SourceEvent::Disconnected { conn: ConnKey { pool: 0, conn: conn - 1 }, reason: "test".into() }).unwrap();
            tx2.send(SourceEvent::Job(job(conn, "a", 2e-4, 0, 4))).unwrap();
        }
    });
    let out = miner.run(tokio::time::sleep(Duration::from_millis(2500)), &mut Quiet).await;
    let subs = &seen.lock().unwrap().submitted;
    let mut sigs: Vec<_> = subs.iter().map(|s| (s.share.extranonce2.clone(), s.share.ntime, s.share.nonce, s.share.version)).collect();
    let n = sigs.len();
    sigs.sort();
    sigs.dedup();
    assert_eq!(sigs.len(), n, "the same share was submitted twice");
    assert!(n > 5, "too few shares to tell: {n}");
    assert_eq!(out.stats.jobs, 1, "the engine was given the same job again");
    // Shares after the re-sends name the newest connection.
    assert!(subs.iter().any(|s| s.job.conn.conn == 5), "no share under the new connection");
    assert!(out.reconciles());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_mask_change_reaches_the_live_job() {
    let cfg = MinerConfig { max_share_rate: 2000.0, assumed_hashrate: 1e7, ..Default::default() };
    let (miner, tx, seen) = start(accept_all, cfg);
    // Difficulty above the share-rate floor, so the engine's job count is the source's alone.
    tx.send(SourceEvent::Job(job(1, "a", 2e-4, 0, 4))).unwrap();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        tx2.send(SourceEvent::VersionMask { conn: ConnKey { pool: 0, conn: 1 }, mask: Some(0x1fff_e000) }).unwrap();
    });
    let out = miner.run(tokio::time::sleep(Duration::from_millis(2500)), &mut Quiet).await;
    // The CPU backend does not roll versions itself; what matters here is that the engine got
    // the live job again with the new mask (one job, then its update), and nothing was lost.
    assert_eq!(out.stats.jobs, 2, "the mask did not reach the engine");
    assert!(!seen.lock().unwrap().submitted.is_empty());
    assert!(out.reconciles());
}

fn never(_: &Submission) -> Option<Fate> {
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_shares_stay_in_flight_at_the_end() {
    let (miner, tx, seen) = start(never, MinerConfig { max_share_rate: 50.0, assumed_hashrate: 1e7, ..Default::default() });
    tx.send(SourceEvent::Job(job(1, "a", 1e-9, 0, 4))).unwrap();
    let out = miner.run(tokio::time::sleep(Duration::from_secs(2)), &mut Quiet).await;
    assert!(out.ledger.in_flight > 0);
    assert_eq!(out.ledger.in_flight as usize, seen.lock().unwrap().submitted.len());
    assert!(out.reconciles());
}

/// Records what the loop says about the share difficulty.
#[derive(Default)]
struct FloorSeen(Vec<(f64, f64)>);
impl hashrig_miner::Observer for FloorSeen {
    fn difficulty_floor(&mut self, asked: f64, used: f64) {
        self.0.push((asked, used));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_shown_ends_when_the_pool_asks_for_a_normal_difficulty_again() {
    let (miner, tx, _seen) = start(accept_all, MinerConfig { max_share_rate: 50.0, assumed_hashrate: 1e7, ..Default::default() });
    tx.send(SourceEvent::Job(job(1, "tiny", 1e-9, 0, 4))).unwrap();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx2.send(SourceEvent::Job(job(1, "normal", 1.0, 0, 4))).unwrap();
    });
    let mut obs = FloorSeen::default();
    let out = miner.run(tokio::time::sleep(Duration::from_millis(3500)), &mut obs).await;
    assert!(obs.0.iter().any(|(a, u)| u > a), "the floor never applied: {:?}", obs.0);
    let (asked, used) = *obs.0.last().expect("reports");
    assert_eq!((asked, used), (1.0, 1.0), "the last report still shows a floor: {:?}", obs.0);
    assert!(out.reconciles());
}
