//! The mining loop with its real pool source ([`PoolSource`]: the Stratum v1 client) and a
//! 1-thread CPU hasher against hashrig-stratum's scripted pool, no binary: the ledger's totals
//! are the pool's own count of its answers, and every share the pool received but never
//! answered is accounted for on our side (stale, or in flight at the end).
//!
//! The scripted pool judges every share with sha2 and the bitcoin crate only; a recording
//! wrapper around the source ties each ledger id to the share content the pool saw.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashrig_engine::Hasher;
use hashrig_miner::pool::PoolSource;
use hashrig_miner::{Fate, JobSource, Miner, MinerConfig, Outcome, Quiet, ShareId, SourceEvent, StaleReason, Submission};
use hashrig_stratum::testkit::{Answer, ConnPlan, Fault, PoolLog, PoolSpec, ScriptedPool};
use hashrig_stratum::{ClientConfig, Password, PoolConfig};

/// What went through the source: each submission by id, and how each ended.
#[derive(Debug, Default)]
struct Record {
    /// id -> (pool job id, extranonce2, ntime, nonce) as the pool would log them.
    submitted: HashMap<ShareId, (String, String, String, String)>,
    /// id -> how it ended (a refusal by `submit` included); more than one is a bug.
    fates: HashMap<ShareId, Vec<Fate>>,
}

type Key = (String, String, String, String);

/// A [`JobSource`] that records what passes through it.
struct Recording<S> {
    inner: S,
    rec: Arc<Mutex<Record>>,
}

impl<S: JobSource> Recording<S> {
    fn note(&self, ev: &SourceEvent) {
        if let SourceEvent::Settled { id, fate } = ev {
            self.rec.lock().unwrap().fates.entry(*id).or_default().push(fate.clone());
        }
    }
}

impl<S: JobSource> JobSource for Recording<S> {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        let ev = self.inner.next_event().await?;
        self.note(&ev);
        Some(ev)
    }
    fn submit(&mut self, sub: Submission) -> Result<(), StaleReason> {
        let key = (sub.job.job.clone(), hex::encode(&sub.share.extranonce2), format!("{:08x}", sub.share.ntime), format!("{:08x}", sub.share.nonce));
        let id = sub.id;
        let r = self.inner.submit(sub);
        let mut rec = self.rec.lock().unwrap();
        rec.submitted.insert(id, key);
        if let Err(why) = r {
            rec.fates.entry(id).or_default().push(Fate::Stale(why));
        }
        r
    }
    async fn shutdown(&mut self, limit: Duration) -> Vec<SourceEvent> {
        let evs = self.inner.shutdown(limit).await;
        for ev in &evs {
            self.note(ev);
        }
        evs
    }
}

fn cpu() -> Vec<Box<dyn Hasher>> {
    let cfg = hashrig_hasher_cpu::CpuConfig { threads: Some(1), ..Default::default() };
    vec![Box::new(hashrig_hasher_cpu::CpuHasher::new(&cfg).expect("cpu hasher"))]
}

fn client(pool: &ScriptedPool) -> ClientConfig {
    let mut cfg = ClientConfig::new(vec![PoolConfig { url: pool.url().parse().unwrap(), user: "w.1".into(), password: Password::new("x") }]);
    cfg.silence_timeout = Duration::from_secs(10);
    cfg.retry_delay = Duration::from_millis(200);
    cfg
}

/// Mine on `pool` until `stop`; the outcome and the record.
async fn mine(pool: &ScriptedPool, stop: impl std::future::Future<Output = ()>) -> (Outcome, Arc<Mutex<Record>>) {
    let rec = Arc::new(Mutex::new(Record::default()));
    let source = Recording { inner: PoolSource::spawn(client(pool)), rec: rec.clone() };
    let cfg = MinerConfig { assumed_hashrate: 1e7, shutdown_wait: Duration::from_secs(3), ..Default::default() };
    let miner = Miner::start(cpu(), source, cfg).expect("miner");
    let out = miner.run(stop, &mut Quiet).await;
    (out, rec)
}

fn key_of(s: &hashrig_stratum::testkit::ShareRecord) -> Key {
    (s.job_id.clone(), s.extranonce2.to_lowercase(), s.ntime.to_lowercase(), s.nonce.to_lowercase())
}

/// The checks both tests make: the ledger reconciles, its accepted and rejected totals are the
/// pool's answers, and share by share each answer the pool gave is the fate the ledger holds.
/// Returns the fate (`None`: in flight) of every share the pool received and never answered.
fn reconcile(out: &Outcome, rec: &Record, log: &PoolLog) -> Vec<Option<Fate>> {
    let l = &out.ledger;
    assert!(out.reconciles(), "{l:#?}\nengine shares {} stale {}", out.stats.shares, out.stats.stale);
    assert_eq!(l.accepted as usize, log.accepted(), "ledger accepted vs the pool's accepted answers\n{l:#?}");
    assert_eq!(l.rejected as usize, log.rejected(), "ledger rejected vs the pool's rejects {:?}\n{l:#?}", log.rejected_by_reason());
    // Every id ends once at most.
    for (id, f) in &rec.fates {
        assert!(f.len() == 1, "share {id:?} settled {} times: {f:?}", f.len());
    }
    let by_key: HashMap<&Key, ShareId> = rec.submitted.iter().map(|(id, k)| (k, *id)).collect();
    assert_eq!(by_key.len(), rec.submitted.len(), "two ids for the same share content");
    // Share by share: the pool's answers are the ledger's fates.
    let mut records: BTreeMap<ShareId, Vec<&Answer>> = BTreeMap::new();
    for s in &log.shares {
        let id = *by_key.get(&key_of(s)).unwrap_or_else(|| panic!("the pool got a share the miner never submitted: {s:?}"));
        records.entry(id).or_default().push(&s.answer);
    }
    let mut unanswered = Vec::new();
    for (id, answers) in &records {
        let fate = rec.fates.get(id).map(|f| f[0].clone());
        let answered: Vec<&&Answer> = answers.iter().filter(|a| a.answered()).collect();
        assert!(answered.len() <= 1, "share {id:?} answered {} times", answered.len());
        match answered.first() {
            Some(Answer::Accepted) => assert_eq!(fate, Some(Fate::Accepted), "share {id:?}"),
            Some(Answer::Rejected(r)) => match &fate {
                Some(Fate::Rejected { reason, .. }) => assert_eq!(reason, r, "share {id:?}"),
                other => panic!("share {id:?} rejected by the pool ({r}) but {other:?} in the ledger"),
            },
            _ => {
                // Received, never answered: stale for a reason that says so, or still in flight.
                for _ in answers.iter() {
                    unanswered.push(fate.clone());
                }
                assert!(
                    matches!(fate, None | Some(Fate::Stale(StaleReason::ConnectionLost | StaleReason::NoAnswer | StaleReason::JobReplaced))),
                    "share {id:?} never answered by the pool, but {fate:?} in the ledger"
                );
            }
        }
    }
    // Shares that never reached the pool were not answered either.
    for (id, _) in rec.submitted.iter().filter(|(id, _)| !records.contains_key(id)) {
        let fate = rec.fates.get(id).map(|f| f[0].clone());
        assert!(matches!(fate, None | Some(Fate::Stale(_))), "share {id:?} never reached the pool, but {fate:?}");
    }
    eprintln!(
        "ledger: found {} accepted {} rejected {} stale {:?} in flight {}; pool: {} submits, {} accepted, {} rejected {:?}, unanswered {:?}; faults {:?}",
        l.found, l.accepted, l.rejected, l.stale_by_reason, l.in_flight, log.shares.len(), log.accepted(), log.rejected(),
        log.rejected_by_reason(), log.unanswered_by_cause(), log.faults_by_kind()
    );
    // What the pool never answered is exactly what the ledger holds as such.
    assert_eq!(unanswered.len(), log.unanswered(), "{:?}", log.unanswered_by_cause());
    unanswered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_the_pools_count_of_its_answers() {
    // The pool judges at twice the difficulty it asks for: about half the shares are rejected
    // "Low difficulty share", so both totals are tested.
    let mut spec = PoolSpec::new("a");
    spec.judge_difficulty = Some(2.0 * spec.difficulty);
    let pool = ScriptedPool::start(spec);
    let (out, rec) = mine(&pool, tokio::time::sleep(Duration::from_secs(4))).await;
    let log = pool.log();
    let unanswered = reconcile(&out, &rec.lock().unwrap(), &log);
    assert!(log.accepted() >= 2 && log.rejected() >= 2, "too few shares to tell: {} accepted {} rejected", log.accepted(), log.rejected());
    assert!(unanswered.is_empty(), "{unanswered:?}");
    assert_eq!(log.rejected_by_reason().keys().collect::<Vec<_>>(), ["Low difficulty share"]);
    let l = &out.ledger;
    assert_eq!(l.in_flight, 0, "the pool answers everything: {l:#?}");
    assert_eq!(l.rejected_by_reason.get("Low difficulty share").copied(), Some(l.rejected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_after_a_submit_and_a_clean_job_lose_nothing() {
    // Connection 0 drops its 3rd share unanswered; connection 1 sends a clean job after 0.7 s
    // (shares of the old job still on the wire are rejected "Job not found"); and the test
    // drops the connection on the next submit twice more from outside.
    let mut spec = PoolSpec::new("b");
    spec.plan = Arc::new(|n| match n {
        0 => ConnPlan { on_share: vec![(3, Fault::DisconnectOnNextSubmit)], ..ConnPlan::default() },
        1 => ConnPlan { timed: vec![(Duration::from_millis(700), Fault::CleanJob)], ..ConnPlan::default() },
        _ => ConnPlan::default(),
    });
    let pool = Arc::new(ScriptedPool::start(spec));
    let p2 = pool.clone();
    let injector = tokio::spawn(async move {
        let mut injected = 0;
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            injected += p2.inject(Fault::DisconnectOnNextSubmit);
            tokio::time::sleep(Duration::from_millis(300)).await;
            injected += p2.inject(Fault::CleanJob);
        }
        injected
    });
    let (out, rec) = mine(&pool, tokio::time::sleep(Duration::from_secs(5))).await;
    assert!(injector.await.unwrap() >= 2);
    let log = pool.log();
    let unanswered = reconcile(&out, &rec.lock().unwrap(), &log);
    let dropped = log.shares.iter().filter(|s| s.answer == Answer::Dropped).count();
    assert!(dropped >= 2, "the pool dropped {dropped} shares: {:?}", log.unanswered_by_cause());
    assert!(log.connections >= 3, "{} connections", log.connections);
    assert!(log.faults_by_kind().get("clean_job").copied().unwrap_or(0) >= 1, "{:?}", log.faults_by_kind());
    // Those shares are stale on our side, for having lost their connection (their job was not
    // live on the next connection, which has another extranonce1), or in flight: counted
    // exactly, one for one with the pool's unanswered submits.
    let l = &out.ledger;
    let lost = unanswered.iter().filter(|f| matches!(f, Some(Fate::Stale(StaleReason::ConnectionLost | StaleReason::JobReplaced)))).count();
    let in_flight = unanswered.iter().filter(|f| f.is_none()).count();
    assert_eq!(lost + in_flight, dropped, "{unanswered:?}");
    assert!(l.in_flight as usize >= in_flight);
    assert!(l.stale as usize >= lost, "{l:#?}");
    assert!(log.invalid().iter().all(|s| s.reason == "Job not found"), "{:?}", log.invalid());
}

/// A pool that answers a submit after its `client.reconnect` line (the submit was on the wire
/// when it asked): the pool counts the share accepted, and so must we. The client used to drop
/// the connection as soon as it read the reconnect, so the answer right behind it was never read
/// and the share ended stale on our side (ledger accepted = pool accepted - 1, every run); it now
/// drains the old connection as failback and `switch_pool` do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_follows_a_reconnect_request_still_counts() {
    let mut spec = PoolSpec::new("r");
    spec.plan = Arc::new(|n| match n {
        0 => ConnPlan { on_share: vec![(3, Fault::ReconnectKeepAnswering(serde_json::json!(["", "", 0])))], ..ConnPlan::default() },
        _ => ConnPlan::default(),
    });
    let pool = ScriptedPool::start(spec);
    let (out, rec) = mine(&pool, tokio::time::sleep(Duration::from_secs(3))).await;
    let log = pool.log();
    assert!(log.connections >= 2, "no reconnect");
    let third = log.shares.iter().filter(|s| s.conn == 0).nth(2).expect("a third share on connection 0");
    assert_eq!(third.answer, Answer::Accepted, "the pool answered it, after the reconnect line");
    reconcile(&out, &rec.lock().unwrap(), &log);
}
