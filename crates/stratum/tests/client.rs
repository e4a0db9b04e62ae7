//! The tokio client against small scripted pools on 127.0.0.1: every share handed over ends in
//! exactly one event, and failover, failback, drains and timeouts behave as documented.
//! Timeouts are short so that every test runs in a few seconds.
//!
//! One file on purpose (about 670 lines): each test is one scenario against the same small
//! scripted-pool helpers at the top, and they read best side by side.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hashrig_stratum::client::{self, ClientHandle};
use hashrig_stratum::{
    ClientConfig, ClientEvent, ConnId, FoundShare, Password, PoolConfig, PoolJob, Share, ShareOutcome, StaleReason,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

const PREV_A: &str = "8bc8707eb169ad3bda101ae60c8d48bd00aff68a00006c8b0000000000000000";
const PREV_B: &str = "0c859545a3498373a57452fac22eb7113df2a465000543520000000000000000";
/// Tells a pool connection's writer to close the connection.
const CLOSE: &str = "<close>";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Answer {
    /// Accept every submit at once.
    Accept,
    /// Never answer a submit.
    Never,
    /// The test answers (each submit is handed to it).
    Manual,
}

/// What a scripted pool does.
#[derive(Clone, Debug)]
struct Script {
    /// extranonce1 (hex) by accepted connection, the last one repeating.
    en1: Vec<&'static str>,
    /// The first job (id, prevhash) by accepted connection, the last one repeating.
    jobs: Vec<(String, &'static str)>,
    answer: Answer,
    /// Accepts (0-based, counting every accept) that are closed at once.
    refuse: Vec<usize>,
    /// Stop reading after the handshake, with a small receive buffer.
    stop_reading: bool,
}

impl Script {
    fn new(answer: Answer) -> Self {
        Script { en1: vec!["00000001"], jobs: vec![("j1".into(), PREV_A)], answer, refuse: vec![], stop_reading: false }
    }
}

/// One accepted connection, from the test's side.
struct PoolConn {
    /// Every `mining.submit` the pool read.
    submits: mpsc::UnboundedReceiver<Value>,
    /// Lines to write to the client ([`CLOSE`] closes the connection).
    send: mpsc::UnboundedSender<String>,
}

impl PoolConn {
    fn line(&self, v: Value) {
        let _ = self.send.send(format!("{v}\n"));
    }
    fn answer(&self, submit: &Value, result: Value, error: Value) {
        self.line(json!({"id": submit["id"], "result": result, "error": error}));
    }
    fn notify(&self, job_id: &str, prev: &str, clean: bool) {
        self.line(notify(job_id, prev, clean));
    }
    fn close(&self) {
        let _ = self.send.send(CLOSE.into());
    }
    async fn submit(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(5), self.submits.recv())
            .await
            .expect("a submit within 5 s")
            .expect("the connection is still open")
    }
}

struct Pool {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<PoolConn>,
}

impl Pool {
    async fn conn(&mut self) -> PoolConn {
        tokio::time::timeout(Duration::from_secs(5), self.conns.recv()).await.expect("a connection within 5 s").unwrap()
    }
}

fn notify(job_id: &str, prev: &str, clean: bool) -> Value {
    json!({"id":null,"method":"mining.notify","params":[job_id, prev, "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0d03", "0000000001000000000000000000000000", [], "20000004", "1705ae3a", "6470e2a1", clean]})
}

fn pick<T: Clone>(v: &[T], i: usize) -> T {
    v[i.min(v.len() - 1)].clone()
}

fn pool(script: Script) -> Pool {
    let sock = TcpSocket::new_v4().unwrap();
    if script.stop_reading {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, conns) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut accepts = 0;
        let mut served = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accepts += 1;
            if script.refuse.contains(&(accepts - 1)) {
                drop(stream);
                continue;
            }
            let (en1, (job_id, prev)) = (pick(&script.en1, served), pick(&script.jobs, served));
            served += 1;
            let (sub_tx, submits) = mpsc::unbounded_channel();
            let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
            let _ = tx.send(PoolConn { submits, send: out.clone() });
            let script = script.clone();
            let (r, mut w) = stream.into_split();
            tokio::spawn(async move {
                while let Some(l) = out_rx.recv().await {
                    if l == CLOSE || w.write_all(l.as_bytes()).await.is_err() {
                        let _ = w.shutdown().await;
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let send = |v: Value| {
                    let _ = out.send(format!("{v}\n"));
                };
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let v: Value = serde_json::from_str(&l).unwrap();
                    let id = v["id"].clone();
                    match v["method"].as_str().unwrap_or("") {
                        "mining.configure" => send(
                            json!({"id":id,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}),
                        ),
                        "mining.subscribe" => send(json!({"id":id,"result":[[],en1,4],"error":null})),
                        "mining.authorize" => {
                            send(json!({"id":id,"result":true,"error":null}));
                            send(notify(&job_id, prev, true));
                            if script.stop_reading {
                                // Keep the socket open and never read again.
                                std::future::pending::<()>().await;
                            }
                        }
                        "mining.submit" => {
                            if script.answer == Answer::Accept {
                                send(json!({"id":id,"result":true,"error":null}));
                            }
                            let _ = sub_tx.send(v);
                        }
                        _ => send(json!({"id":id,"result":null,"error":[20,"Method not found",null]})),
                    }
                }
            });
        }
    });
    Pool { addr, conns }
}

fn config(pools: &[SocketAddr]) -> ClientConfig {
    let pools = pools
        .iter()
        .map(|a| PoolConfig {
            url: format!("stratum+tcp://{a}").parse().unwrap(),
            user: "addr.worker".into(),
            password: Password::new("s3cret"),
        })
        .collect();
    let mut c = ClientConfig::new(pools);
    c.extranonce_subscribe = false;
    c.connect_timeout = Duration::from_secs(2);
    c.retry_delay = Duration::from_millis(300);
    c.silence_timeout = Duration::from_secs(30);
    c.failback_interval = Duration::from_secs(30);
    c
}

/// The client's events, kept in a log as they are read.
struct Events {
    rx: mpsc::UnboundedReceiver<ClientEvent>,
    log: Vec<ClientEvent>,
}

impl Events {
    async fn until(&mut self, what: &str, limit: Duration, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => {
                    self.log.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Ok(None) => panic!("the client ended while waiting for {what}; events: {:#?}", self.log),
                Err(_) => panic!("no {what} within {limit:?}; events: {:#?}", self.log),
            }
        }
    }

    /// Read whatever comes within `d`.
    async fn settle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.log.push(e);
        }
    }

    async fn connected(&mut self, pool: usize, limit: Duration) -> ConnId {
        match self.until(&format!("Connected to pool {pool}"), limit, |e| matches!(e, ClientEvent::Connected { pool: p, .. } if *p == pool)).await {
            ClientEvent::Connected { conn, .. } => conn,
            _ => unreachable!(),
        }
    }

    async fn job(&mut self, job_id: &str) -> (usize, ConnId, Arc<PoolJob>) {
        match self.until(&format!("job {job_id}"), Duration::from_secs(5), |e| matches!(e, ClientEvent::Job { job, .. } if job.job_id == job_id)).await {
            ClientEvent::Job { pool, conn, job } => (pool, conn, job),
            _ => unreachable!(),
        }
    }

    /// The events that resolved each share id.
    fn resolutions(&self) -> BTreeMap<u64, Vec<ClientEvent>> {
        let mut m: BTreeMap<u64, Vec<ClientEvent>> = BTreeMap::new();
        for e in &self.log {
            match e {
                ClientEvent::ShareResult { id, .. } | ClientEvent::ShareStale { id, .. } => m.entry(*id).or_default().push(e.clone()),
                _ => {}
            }
        }
        m
    }

    /// Wait until every id in `ids` has been resolved, then check none was resolved twice.
    async fn until_resolved(&mut self, ids: impl IntoIterator<Item = u64>, limit: Duration) -> BTreeMap<u64, ClientEvent> {
        let ids: Vec<u64> = ids.into_iter().collect();
        let deadline = Instant::now() + limit;
        loop {
            let res = self.resolutions();
            if ids.iter().all(|i| res.contains_key(i)) {
                break;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => self.log.push(e),
                _ => {
                    let missing: Vec<u64> = ids.iter().copied().filter(|i| !res.contains_key(i)).collect();
                    panic!("shares {missing:?} not resolved within {limit:?}; events: {:#?}", self.log);
                }
            }
        }
        // Anything resolved twice would show up now or shortly after.
        self.settle(Duration::from_millis(200)).await;
        let res = self.resolutions();
        for (id, evs) in &res {
            assert_eq!(evs.len(), 1, "share {id} resolved {} times: {evs:#?}", evs.len());
        }
        res.into_iter().map(|(id, mut evs)| (id, evs.pop().unwrap())).collect()
    }
}

fn start(cfg: ClientConfig) -> (ClientHandle, Events) {
    let (handle, rx, _task) = client::spawn(cfg);
    (handle, Events { rx, log: Vec::new() })
}

fn found(id: u64, pool: usize, conn: ConnId, job: &Arc<PoolJob>) -> FoundShare {
    let share = Share {
        job_id: job.job_id.clone(),
        extranonce2: vec![0; job.job.extranonce2_size],
        ntime: job.job.ntime,
        nonce: id as u32,
        version: job.job.version_bits(),
    };
    FoundShare { id, pool, conn, job: job.clone(), share }
}

/// The share id a submit carries (tests use the id as the nonce).
fn nonce_of(submit: &Value) -> u64 {
    u64::from_str_radix(submit["params"][4].as_str().unwrap(), 16).unwrap()
}

fn is_result(e: &ClientEvent, want_pool: usize, want_conn: ConnId, accepted: bool) -> bool {
    matches!(e, ClientEvent::ShareResult { pool, conn, outcome, .. }
        if *pool == want_pool && *conn == want_conn && (*outcome == ShareOutcome::Accepted) == accepted)
}

fn is_stale(e: &ClientEvent, why: StaleReason) -> bool {
    matches!(e, ClientEvent::ShareStale { reason, .. } if *reason == why)
}

const S5: Duration = Duration::from_secs(5);

#[tokio::test]
async fn every_share_ends_in_exactly_one_event_across_stale_jobs_disconnects_and_a_full_queue() {
    let mut script = Script::new(Answer::Manual);
    // Accept 1 (the first reconnect) is refused, so shares wait in the queue for a while.
    script.refuse = vec![1];
    script.jobs = vec![("j1".into(), PREV_A), ("j2".into(), PREV_B)];
    let mut p = pool(script);
    let mut cfg = config(&[p.addr]);
    cfg.max_queue = 4;
    cfg.retry_delay = Duration::from_millis(1500);
    let (client, mut ev) = start(cfg);
    let c1 = ev.connected(0, S5).await;
    let mut pc1 = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    for id in 1..=3 {
        assert!(client.submit(found(id, 0, c1, &j1)));
    }
    let subs = [pc1.submit().await, pc1.submit().await, pc1.submit().await];
    pc1.answer(&subs[0], json!(true), Value::Null);
    pc1.answer(&subs[1], Value::Null, json!([22, "Duplicate share", null]));
    // A new block: j1 is void, so share 4 goes nowhere and share 3 (in flight) cannot be sent again.
    pc1.notify("j2", PREV_B, true);
    let (_, _, j2) = ev.job("j2").await;
    client.submit(found(4, 0, c1, &j1));
    client.submit(found(5, 0, c1, &j2));
    assert_eq!(nonce_of(&pc1.submit().await), 5);
    ev.until_resolved([1, 2, 4], S5).await;
    assert!(client.in_flight() >= 2, "3 and 5 wait for answers");
    // The pool goes away with 3 and 5 unanswered; 6..=15 are found while it is away.
    pc1.close();
    ev.until("Disconnected", S5, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    for id in 6..=15 {
        client.submit(found(id, 0, c1, &j2));
    }
    // The same pool again, same extranonce1, and j2 still live: what is left of the queue goes.
    let c2 = ev.connected(0, S5).await;
    assert_ne!(c1, c2);
    let mut pc2 = p.conn().await;
    for _ in 0..4 {
        let s = pc2.submit().await;
        pc2.answer(&s, json!(true), Value::Null);
    }
    client.submit(found(16, 0, c1, &j1));
    let res = ev.until_resolved(1..=16, S5).await;
    assert!(is_result(&res[&1], 0, c1, true), "{:?}", res[&1]);
    assert!(is_result(&res[&2], 0, c1, false), "{:?}", res[&2]);
    assert!(is_stale(&res[&3], StaleReason::ConnectionLost), "{:?}", res[&3]);
    assert!(is_stale(&res[&4], StaleReason::JobNotLive), "{:?}", res[&4]);
    // The queue held 5 (requeued) and 6..=15 with room for 4: the oldest 7 were dropped.
    for id in 5..=11 {
        assert!(is_stale(&res[&id], StaleReason::QueueFull), "{id}: {:?}", res[&id]);
    }
    for id in 12..=15 {
        assert!(is_result(&res[&id], 0, c2, true), "{id}: {:?}", res[&id]);
    }
    assert!(is_stale(&res[&16], StaleReason::JobNotLive), "{:?}", res[&16]);
    assert_eq!(client.in_flight(), 0);
    let st = client.stats();
    assert_eq!((st.accepted, st.rejected_total(), st.stale), (5, 1, 10));
}

#[tokio::test]
async fn unanswered_submits_end_no_answer_after_the_answer_timeout_and_late_answers_are_ignored() {
    let mut p = pool(Script::new(Answer::Manual));
    let mut cfg = config(&[p.addr]);
    cfg.answer_timeout = Duration::from_millis(600);
    let (client, mut ev) = start(cfg);
    let c1 = ev.connected(0, S5).await;
    let mut pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    let t0 = Instant::now();
    client.submit(found(1, 0, c1, &j1));
    client.submit(found(2, 0, c1, &j1));
    let late = pc.submit().await;
    pc.submit().await;
    let res = ev.until_resolved([1, 2], S5).await;
    assert!(t0.elapsed() >= Duration::from_millis(500), "{:?}", t0.elapsed());
    assert!(res.values().all(|e| is_stale(e, StaleReason::NoAnswer)), "{res:?}");
    // A late answer resolves nothing again and is no protocol error; the connection goes on.
    pc.answer(&late, json!(true), Value::Null);
    client.submit(found(3, 0, c1, &j1));
    let s3 = pc.submit().await;
    pc.answer(&s3, json!(true), Value::Null);
    let res = ev.until_resolved([1, 2, 3], S5).await;
    assert!(is_result(&res[&3], 0, c1, true));
    assert!(!ev.log.iter().any(|e| matches!(e, ClientEvent::Disconnected { .. })));
    let st = client.stats();
    assert!(st.protocol_errors.is_empty(), "{:?}", st.protocol_errors);
    assert_eq!((st.accepted, st.stale), (1, 2));
}

#[tokio::test]
async fn submits_in_flight_are_capped_and_the_oldest_ends_no_answer() {
    let mut p = pool(Script::new(Answer::Never));
    let mut cfg = config(&[p.addr]);
    cfg.max_in_flight = 2;
    let (client, mut ev) = start(cfg);
    let c1 = ev.connected(0, S5).await;
    let mut pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    for id in 1..=5 {
        client.submit(found(id, 0, c1, &j1));
    }
    for _ in 1..=5 {
        pc.submit().await;
    }
    let res = ev.until_resolved(1..=3, S5).await;
    assert!(res.values().all(|e| is_stale(e, StaleReason::NoAnswer)), "{res:?}");
    assert!(!res.contains_key(&4) && !res.contains_key(&5), "{res:?}");
    assert_eq!(client.in_flight(), 2);
}

#[tokio::test]
async fn shutdown_waits_for_answers_in_flight_then_leaves_the_rest_unresolved() {
    let mut p = pool(Script::new(Answer::Manual));
    let (client, mut ev) = start(config(&[p.addr]));
    let c1 = ev.connected(0, S5).await;
    let mut pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    client.submit(found(1, 0, c1, &j1));
    client.submit(found(2, 0, c1, &j1));
    let s1 = pc.submit().await;
    pc.submit().await;
    assert_eq!(client.in_flight(), 2);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pc.answer(&s1, json!(true), Value::Null);
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let t0 = Instant::now();
    client.shutdown(Duration::from_millis(800)).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_millis(1500), "{took:?}");
    assert!(!client.submit(found(3, 0, c1, &j1)), "no shares taken after shutdown");
    ev.settle(Duration::from_millis(200)).await;
    let res = ev.resolutions();
    assert_eq!(res.keys().copied().collect::<Vec<_>>(), [1], "{res:?}");
    assert!(is_result(&res[&1][0], 0, c1, true));
    assert_eq!(client.in_flight(), 1, "share 2 is left in flight");

    // All answered: shutdown returns at once.
    let mut p = pool(Script::new(Answer::Accept));
    let (client, mut ev) = start(config(&[p.addr]));
    let c1 = ev.connected(0, S5).await;
    let _pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    client.submit(found(1, 0, c1, &j1));
    let t0 = Instant::now();
    client.shutdown(Duration::from_secs(10)).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    ev.until_resolved([1], S5).await;
    assert_eq!(client.in_flight(), 0);

    // Queued while no pool is connected: stale at shutdown.
    let mut script = Script::new(Answer::Accept);
    script.refuse = (1..100).collect();
    let mut p = pool(script);
    let (client, mut ev) = start(config(&[p.addr]));
    let c1 = ev.connected(0, S5).await;
    let pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    pc.close();
    ev.until("Disconnected", S5, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    client.submit(found(1, 0, c1, &j1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.shutdown(Duration::from_millis(300)).await;
    let res = ev.until_resolved([1], S5).await;
    assert!(is_stale(&res[&1], StaleReason::Shutdown), "{res:?}");
    assert_eq!(client.in_flight(), 0);
}

#[tokio::test]
async fn a_pool_that_stops_reading_is_left_for_the_next_within_the_write_timeout() {
    // Long job ids make every submit 30 kB, so the socket buffers fill after a few hundred.
    let long_id = "x".repeat(30_000);
    let mut script = Script::new(Answer::Never);
    script.stop_reading = true;
    script.jobs = vec![(long_id.clone(), PREV_A)];
    let mut p0 = pool(script);
    let p1 = pool(Script::new(Answer::Accept));
    let mut cfg = config(&[p0.addr, p1.addr]);
    cfg.write_timeout = Duration::from_millis(500);
    let (client, mut ev) = start(cfg);
    let c1 = ev.connected(0, S5).await;
    let _pc = p0.conn().await;
    let (_, _, j1) = ev.job(&long_id).await;
    let n = 600;
    for id in 1..=n {
        client.submit(found(id, 0, c1, &j1));
    }
    ev.until("Disconnected from pool 0", S5, |e| matches!(e, ClientEvent::Disconnected { pool: 0, .. })).await;
    ev.connected(1, S5).await;
    // Whatever was written, half-written or queued ends, each exactly once.
    let res = ev.until_resolved(1..=n, S5).await;
    assert!(res.values().all(|e| matches!(e, ClientEvent::ShareStale { .. })), "{res:?}");
    assert_eq!(client.in_flight(), 0);
}

#[tokio::test]
async fn client_reconnect_with_a_long_wait_moves_to_the_next_pool_at_once_and_fails_back_later() {
    let mut p0 = pool(Script::new(Answer::Accept));
    let p1 = pool(Script::new(Answer::Accept));
    // Where the message points: never to be connected to.
    let decoy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy_port = decoy.local_addr().unwrap().port();
    let mut cfg = config(&[p0.addr, p1.addr]);
    cfg.reconnect_wait_max = Duration::from_secs(2);
    cfg.failback_interval = Duration::from_millis(500);
    let (_client, mut ev) = start(cfg);
    ev.connected(0, S5).await;
    let pc = p0.conn().await;
    ev.job("j1").await;
    pc.line(json!({"id":null,"method":"client.reconnect","params":["127.0.0.1", decoy_port, 3600]}));
    let t0 = Instant::now();
    ev.connected(1, Duration::from_secs(2)).await;
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Pool 0 is left alone for the capped wait, then failed back to.
    ev.connected(0, S5).await;
    assert!(t0.elapsed() >= Duration::from_millis(1900), "{:?}", t0.elapsed());
    assert!(tokio::time::timeout(Duration::from_millis(50), decoy.accept()).await.is_err(), "followed the redirect");
}

#[tokio::test]
async fn with_one_pool_client_reconnect_waits_the_capped_time_then_reconnects() {
    let mut p0 = pool(Script::new(Answer::Accept));
    let mut cfg = config(&[p0.addr]);
    cfg.reconnect_wait_max = Duration::from_secs(1);
    let (_client, mut ev) = start(cfg);
    let c1 = ev.connected(0, S5).await;
    let pc = p0.conn().await;
    ev.job("j1").await;
    pc.line(json!({"id":null,"method":"client.reconnect","params":["", null, 3600]}));
    let t0 = Instant::now();
    let c2 = ev.connected(0, S5).await;
    assert_ne!(c1, c2);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn set_version_mask_reaches_the_miner_and_later_jobs() {
    let mut p = pool(Script::new(Answer::Accept));
    let (_client, mut ev) = start(config(&[p.addr]));
    let c1 = ev.connected(0, S5).await;
    let pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    assert_eq!(j1.job.version_mask, 0x1fff_e000);
    pc.line(json!({"id":null,"method":"mining.set_version_mask","params":["00006000"]}));
    let e = ev.until("VersionMask", S5, |e| matches!(e, ClientEvent::VersionMask { .. })).await;
    assert_eq!(e, ClientEvent::VersionMask { pool: 0, conn: c1, mask: Some(0x6000) });
    pc.notify("j2", PREV_A, false);
    let (_, _, j2) = ev.job("j2").await;
    assert_eq!(j2.job.version_mask, 0x6000);
}

#[tokio::test]
async fn a_share_in_flight_on_the_old_pool_is_still_answered_after_failback_and_switch() {
    let mut s0 = Script::new(Answer::Manual);
    s0.refuse = vec![0];
    let mut p0 = pool(s0);
    let mut p1 = pool(Script::new(Answer::Manual));
    let mut cfg = config(&[p0.addr, p1.addr]);
    cfg.failback_interval = Duration::from_secs(1);
    cfg.drain_timeout = Duration::from_millis(1500);
    let (client, mut ev) = start(cfg);
    let c1 = ev.connected(1, S5).await;
    let mut pc1 = p1.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    client.submit(found(1, 1, c1, &j1));
    client.submit(found(2, 1, c1, &j1));
    let s1 = pc1.submit().await;
    pc1.submit().await;
    // Pool 0 is back: mining moves there, the old connection stays for its answers.
    ev.until("Disconnected from pool 1", S5, |e| matches!(e, ClientEvent::Disconnected { pool: 1, .. })).await;
    let c2 = ev.connected(0, S5).await;
    let (_, _, j0) = ev.job("j1").await;
    pc1.answer(&s1, json!(true), Value::Null);
    let res = ev.until_resolved([1], S5).await;
    assert!(is_result(&res[&1], 1, c1, true), "{res:?}");
    // Share 2 gets no answer within the drain time, and the old connection is then closed.
    let t0 = Instant::now();
    let res = ev.until_resolved([1, 2], S5).await;
    assert!(is_stale(&res[&2], StaleReason::NoAnswer), "{res:?}");
    assert!(t0.elapsed() < Duration::from_millis(1600));
    assert!(tokio::time::timeout(S5, pc1.submits.recv()).await.unwrap().is_none(), "old connection closed");

    // switch_pool: the same with a share in flight on pool 0.
    let mut pc0 = p0.conn().await;
    client.submit(found(3, 0, c2, &j0));
    let s3 = pc0.submit().await;
    assert!(client.switch_pool(1));
    let c3 = ev.connected(1, S5).await;
    assert!(c3 > c2);
    pc0.answer(&s3, Value::Null, json!([23, "Low difficulty share", null]));
    let res = ev.until_resolved([1, 2, 3], S5).await;
    assert!(is_result(&res[&3], 0, c2, false), "{res:?}");
    assert_eq!(client.in_flight(), 0);
}

#[tokio::test]
async fn a_pool_that_restarts_its_job_ids_gets_no_share_of_the_old_connection() {
    let mut script = Script::new(Answer::Accept);
    script.en1 = vec!["00000001", "00000002"];
    script.refuse = vec![1];
    let mut p = pool(script);
    let mut cfg = config(&[p.addr]);
    cfg.retry_delay = Duration::from_millis(800);
    let (client, mut ev) = start(cfg);
    let c1 = ev.connected(0, S5).await;
    let pc1 = p.conn().await;
    let (_, jc1, j1) = ev.job("j1").await;
    assert_eq!(jc1, c1);
    pc1.close();
    ev.until("Disconnected", S5, |e| matches!(e, ClientEvent::Disconnected { conn, .. } if *conn == c1)).await;
    client.submit(found(1, 0, c1, &j1));
    let c2 = ev.connected(0, S5).await;
    let mut pc2 = p.conn().await;
    let (_, jc2, j1b) = ev.job("j1").await;
    assert_eq!(jc2, c2);
    assert_ne!(c1, c2);
    assert_eq!(j1.job_id, j1b.job_id);
    // The same job id on the new connection is another job (another extranonce1).
    client.submit(found(2, 0, c1, &j1));
    client.submit(found(3, 0, c2, &j1b));
    let res = ev.until_resolved(1..=3, S5).await;
    assert!(is_stale(&res[&1], StaleReason::JobNotLive), "{res:?}");
    assert!(is_stale(&res[&2], StaleReason::JobNotLive), "{res:?}");
    assert!(is_result(&res[&3], 0, c2, true), "{res:?}");
    assert_eq!(nonce_of(&pc2.submit().await), 3, "only share 3 reached the pool");
}

#[tokio::test]
async fn reject_reasons_are_sanitised_and_their_count_is_capped() {
    let mut p = pool(Script::new(Answer::Manual));
    let (client, mut ev) = start(config(&[p.addr]));
    let c1 = ev.connected(0, S5).await;
    let mut pc = p.conn().await;
    let (_, _, j1) = ev.job("j1").await;
    let n = 30;
    for id in 1..=n {
        client.submit(found(id, 0, c1, &j1));
        let s = pc.submit().await;
        let reason = if id == 1 {
            format!("\u{1b}[31mLow\u{1b}[0m difficulty\r\n\u{7}{}\u{202e}", "y".repeat(5000))
        } else {
            format!("reason {id}")
        };
        pc.answer(&s, Value::Null, json!([20, reason, null]));
    }
    let res = ev.until_resolved(1..=n, S5).await;
    for e in res.values() {
        let ClientEvent::ShareResult { outcome: ShareOutcome::Rejected { reason }, .. } = e else { panic!("{e:?}") };
        assert!(!reason.chars().any(|c| c.is_control() || c == '\u{202e}'), "{reason:?}");
        assert!(reason.chars().count() <= 120, "{} chars", reason.chars().count());
    }
    let ClientEvent::ShareResult { outcome: ShareOutcome::Rejected { reason }, .. } = &res[&1] else { unreachable!() };
    assert!(reason.contains("Low") && reason.contains("difficulty"), "{reason:?}");
    let st = client.stats();
    assert!(st.rejected.len() <= 17, "{} reasons: {:?}", st.rejected.len(), st.rejected.keys());
    assert!(st.rejected["other"] >= (n - 16), "{:?}", st.rejected);
    assert_eq!(st.rejected_total(), n);
}
