//! A scripted Stratum v1 pool on 127.0.0.1 for tests (cargo feature `testkit`): the end-to-end
//! tests of `hashrig mine`, the miner crate's tests of its pool source, and the soak run.
//!
//! It replays a real Braiins/slush job (tests/data/stratum/slush_notify_20230526.json at the
//! workspace root, built in at compile time: real coinb1/coinb2, 12-branch merkle path, prev
//! hash, version, nbits, ntime) at a low share difficulty, and checks every submitted share on
//! its own: coinbase, merkle root and header are rebuilt here with `sha2`, the header hash is
//! cross-checked with the `bitcoin` crate, and the share difficulty is
//! `bitcoin::Target::difficulty_float` of the hash. None of hashrig's code (not this crate's
//! session or wire types, not `hashrig_work`) is used to judge a share.
//!
//! [`ScriptedPool::start_tls_front`] puts a TLS server (private CA) in front of it.
//!
//! Each connection follows a [`ConnPlan`] chosen by connection number, so tests can script a
//! pool that refuses, goes silent, drops a share unanswered, or sends garbage. Faults can also
//! be injected at any moment from the test thread ([`ScriptedPool::inject`],
//! [`ScriptedPool::inject_on`]) or scheduled in the plan ([`ConnPlan::timed`],
//! [`ConnPlan::on_share`]): see [`Fault`].
//!
//! The [`PoolLog`] records every submit received, the pool's own verdict on it, and what the
//! pool answered ([`Answer`]: accepted, rejected with the reason, or never answered and why),
//! so a test can reconcile a miner's ledger with the pool's view exactly.
//!
//! Each connection is served on its own thread with blocking I/O, so it works from plain
//! `#[test]`s and from any tokio runtime alike.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod serve;

use serve::*;

/// Double SHA-256 with the `sha2` crate (not hashrig's own core).
pub fn sha256d(b: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(b)).into()
}

const GOLDEN_NOTIFY: &str = include_str!("../../../../tests/data/stratum/slush_notify_20230526.json");

/// The real job every scripted pool hands out (the `params` of the golden `mining.notify`).
pub fn real_notify_params() -> Vec<Value> {
    let v: Value = serde_json::from_str(GOLDEN_NOTIFY).expect("the golden notify is JSON");
    v["params"].as_array().expect("params").clone()
}

/// Longer than any line a client should take (hashrig's limit is 64 KiB).
pub const OVERSIZED_LINE: usize = 64 * 1024 + 4096;

/// Something to do to a connection, injected from the test thread ([`ScriptedPool::inject`]),
/// at a time after authorize ([`ConnPlan::timed`]) or when a share arrives ([`ConnPlan::on_share`]).
///
/// While a connection is silent ([`Fault::Silence`]), faults that send a line wait (in order)
/// until the silence ends; the others apply at once.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Close the connection now.
    Disconnect,
    /// Close the connection on the next `mining.submit`, after judging it and before answering
    /// it (logged as [`Answer::Dropped`]).
    DisconnectOnNextSubmit,
    /// Send nothing at all (no answers, jobs or anything else) for this long (or longer, if a
    /// silence under way ends later); submits received meanwhile are judged and never answered
    /// ([`Answer::Silent`]).
    Silence(Duration),
    /// Send this line as is (a newline is added).
    Malformed(String),
    /// Send a line of this many bytes (a JSON notify padded with a huge coinbase part).
    Oversized(usize),
    /// A new job with `clean_jobs` true: the pool forgets older jobs (their shares are then
    /// rejected "Job not found", as real pools call stale shares).
    CleanJob,
    /// A new job with `clean_jobs` false.
    NewJob,
    /// `mining.set_difficulty`: applies to the jobs sent after it (as hashrig and cgminer read it).
    SetDifficulty(f64),
    /// BIP 310 `mining.set_version_mask`: in force at once for the pool's checks.
    SetVersionMask(u32),
    /// `client.reconnect` with these params (`["", "", 0]`: same pool, no wait). After sending it
    /// the pool answers no more submits ([`Answer::Closing`]) and closes the connection when the
    /// client does or after 5 s, as a pool going away would.
    Reconnect(Value),
    /// `client.reconnect`, but the pool goes on answering submits as before (a pool whose
    /// answers to submits already on the wire follow its reconnect request).
    ReconnectKeepAnswering(Value),
}

impl Fault {
    /// A short name for logs and tallies.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Disconnect => "disconnect",
            Fault::DisconnectOnNextSubmit => "disconnect_mid_submit",
            Fault::Silence(_) => "silence",
            Fault::Malformed(_) => "malformed",
            Fault::Oversized(_) => "oversized",
            Fault::CleanJob => "clean_job",
            Fault::NewJob => "new_job",
            Fault::SetDifficulty(_) => "set_difficulty",
            Fault::SetVersionMask(_) => "set_version_mask",
            Fault::Reconnect(_) => "reconnect",
            Fault::ReconnectKeepAnswering(_) => "reconnect_keep_answering",
        }
    }

    /// Whether applying it writes a line.
    fn sends(&self) -> bool {
        !matches!(self, Fault::Disconnect | Fault::DisconnectOnNextSubmit | Fault::Silence(_))
    }
}

/// What one connection does.
#[derive(Clone, Debug, Default)]
pub struct ConnPlan {
    /// Close right after accepting (a pool that is down but whose port still answers).
    pub refuse: bool,
    /// Accept and then say nothing at all, not even to the handshake (a black hole).
    pub mute: bool,
    /// After the handshake and the first job, read but never write again.
    pub silent: bool,
    /// Close (without answering) when this many shares have been received.
    pub drop_at_share: Option<usize>,
    /// Lines sent right after the handshake, before the first job.
    pub garbage: Vec<String>,
    /// Send a fresh (non-clean) job this often.
    pub new_job_every: Option<Duration>,
    /// Answer this share, then send `client.reconnect` (empty host: same pool, no wait).
    pub reconnect_at_share: Option<usize>,
    /// The `client.reconnect` params instead of `["", "", 0]` (e.g. another host).
    pub reconnect_params: Option<Value>,
    /// Faults applied this long after authorize.
    pub timed: Vec<(Duration, Fault)>,
    /// Faults applied when the connection's n-th share (1-based) arrives, before it is handled
    /// (so [`Fault::DisconnectOnNextSubmit`] here drops that very share).
    pub on_share: Vec<(usize, Fault)>,
}

/// What the pool answered to a submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// Rejected with this reason.
    Rejected(String),
    /// Not answered: the pool closed the connection on it ([`Fault::DisconnectOnNextSubmit`],
    /// [`ConnPlan::drop_at_share`]).
    Dropped,
    /// Not answered: the connection was silent ([`Fault::Silence`], [`ConnPlan::silent`]).
    Silent,
    /// Not answered: the pool had asked for a reconnect ([`Fault::Reconnect`]).
    Closing,
    /// Not answered: writing the answer failed (the client had gone).
    WriteFailed,
}

impl Answer {
    pub fn answered(&self) -> bool {
        matches!(self, Answer::Accepted | Answer::Rejected(_))
    }
}

/// A share as the pool saw it.
#[derive(Clone, Debug)]
pub struct ShareRecord {
    pub conn: usize,
    pub job_id: String,
    pub extranonce2: String,
    pub ntime: String,
    pub nonce: String,
    pub version_bits: Option<String>,
    pub version: u32,
    /// The pool's own verdict (its checker; duplicates and unknown jobs are invalid).
    pub valid: bool,
    pub reason: String,
    pub difficulty: f64,
    /// Whether an answer was sent (`answer.answered()`).
    pub answered: bool,
    pub answer: Answer,
    /// When the pool received it.
    pub at: Instant,
}

/// A fault as applied to a connection.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub conn: usize,
    pub kind: &'static str,
    pub at: Instant,
}

/// Everything a scripted pool saw and did.
#[derive(Debug, Default)]
pub struct PoolLog {
    pub connections: usize,
    pub shares: Vec<ShareRecord>,
    /// Every line received, for password/ordering checks (unless [`PoolSpec::keep_lines`] is off).
    pub lines: Vec<String>,
    pub subscribes: usize,
    pub configures: Vec<Value>,
    /// Faults applied, in order.
    pub faults: Vec<FaultRecord>,
}

impl PoolLog {
    pub fn valid(&self) -> usize {
        self.shares.iter().filter(|s| s.valid).count()
    }
    pub fn invalid(&self) -> Vec<&ShareRecord> {
        self.shares.iter().filter(|s| !s.valid).collect()
    }
    pub fn valid_on(&self, conn: usize) -> usize {
        self.shares.iter().filter(|s| s.valid && s.conn == conn).count()
    }
    /// Submits answered "accepted".
    pub fn accepted(&self) -> usize {
        self.shares.iter().filter(|s| s.answer == Answer::Accepted).count()
    }
    /// Submits answered with an error.
    pub fn rejected(&self) -> usize {
        self.shares.iter().filter(|s| matches!(s.answer, Answer::Rejected(_))).count()
    }
    /// Submits received and never answered.
    pub fn unanswered(&self) -> usize {
        self.shares.iter().filter(|s| !s.answer.answered()).count()
    }
    /// Answers sent by reject reason.
    pub fn rejected_by_reason(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in &self.shares {
            if let Answer::Rejected(r) = &s.answer {
                *m.entry(r.clone()).or_default() += 1;
            }
        }
        m
    }
    /// Unanswered submits by why.
    pub fn unanswered_by_cause(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in self.shares.iter().filter(|s| !s.answer.answered()) {
            *m.entry(format!("{:?}", s.answer)).or_default() += 1;
        }
        m
    }
    /// Faults applied, by kind.
    pub fn faults_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for f in &self.faults {
            *m.entry(f.kind).or_default() += 1;
        }
        m
    }
}

type Planner = dyn Fn(usize) -> ConnPlan + Send + Sync;

/// Settings of a scripted pool.
#[derive(Clone)]
pub struct PoolSpec {
    /// The share difficulty at the start of each connection.
    pub difficulty: f64,
    /// Judge shares at this difficulty instead (a pool that rejects low shares).
    pub judge_difficulty: Option<f64>,
    /// `mining.configure` answer: `Some(mask)` grants that mask, `None` refuses rolling.
    pub grant_mask: Option<u32>,
    /// Extranonce1 for connection `n` is `en1_base + n` (4 bytes); with `same_extranonce1`
    /// every connection gets `en1_base`.
    pub en1_base: u32,
    pub same_extranonce1: bool,
    pub en2_size: usize,
    /// Job ids start with this (so two pools never share ids).
    pub job_prefix: String,
    /// Keep every received line in [`PoolLog::lines`] (on by default; a long soak turns it off).
    pub keep_lines: bool,
    pub plan: Arc<Planner>,
}

impl std::fmt::Debug for PoolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSpec")
            .field("difficulty", &self.difficulty)
            .field("judge_difficulty", &self.judge_difficulty)
            .field("grant_mask", &self.grant_mask)
            .field("job_prefix", &self.job_prefix)
            .finish_non_exhaustive()
    }
}

impl PoolSpec {
    pub fn new(job_prefix: &str) -> Self {
        PoolSpec {
            difficulty: 1.0 / 8192.0,
            judge_difficulty: None,
            grant_mask: Some(0x1fff_e000),
            en1_base: 0xf000_0000,
            same_extranonce1: false,
            en2_size: 8,
            job_prefix: job_prefix.into(),
            keep_lines: true,
            plan: Arc::new(|_| ConnPlan::default()),
        }
    }
}

#[derive(Clone, Debug)]
struct SentJob {
    id: String,
    params: Vec<Value>,
    difficulty: f64,
}

/// A live connection's fault queue.
#[derive(Debug)]
struct ConnCtl {
    conn: usize,
    queue: Arc<Mutex<VecDeque<Fault>>>,
    alive: Arc<AtomicBool>,
}

/// The scripted pool. See the module documentation.
#[derive(Debug)]
pub struct ScriptedPool {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<PoolLog>>,
    ctl: Arc<Mutex<Vec<ConnCtl>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ScriptedPool {
    pub fn start(spec: PoolSpec) -> ScriptedPool {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(PoolLog::default()));
        let ctl: Arc<Mutex<Vec<ConnCtl>>> = Arc::new(Mutex::new(Vec::new()));
        let (l2, c2) = (log.clone(), ctl.clone());
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                lock(&l2).connections += 1;
                let plan = (spec.plan)(n);
                let spec = spec.clone();
                let log = l2.clone();
                let queue = Arc::new(Mutex::new(VecDeque::new()));
                let alive = Arc::new(AtomicBool::new(true));
                {
                    let mut c = lock(&c2);
                    c.retain(|c| c.alive.load(Ordering::SeqCst));
                    c.push(ConnCtl { conn: n, queue: queue.clone(), alive: alive.clone() });
                }
                std::thread::spawn(move || {
                    let _ = serve(conn, n, &spec, &plan, &log, &queue);
                    alive.store(false, Ordering::SeqCst);
                });
            }
        });
        ScriptedPool { addr, log, ctl }
    }

    pub fn url(&self) -> String {
        format!("stratum+tcp://{}", self.addr)
    }

    pub fn log(&self) -> MutexGuard<'_, PoolLog> {
        lock(&self.log)
    }

    /// Connections (by number) still open.
    pub fn live_connections(&self) -> Vec<usize> {
        lock(&self.ctl).iter().filter(|c| c.alive.load(Ordering::SeqCst)).map(|c| c.conn).collect()
    }

    /// Queue `fault` on every open connection (applied within ~20 ms); returns how many.
    pub fn inject(&self, fault: Fault) -> usize {
        let ctl = lock(&self.ctl);
        let mut n = 0;
        for c in ctl.iter().filter(|c| c.alive.load(Ordering::SeqCst)) {
            lock(&c.queue).push_back(fault.clone());
            n += 1;
        }
        n
    }

    /// Queue `fault` on connection `conn`; false if it is not open.
    pub fn inject_on(&self, conn: usize, fault: Fault) -> bool {
        let ctl = lock(&self.ctl);
        match ctl.iter().find(|c| c.conn == conn && c.alive.load(Ordering::SeqCst)) {
            Some(c) => {
                lock(&c.queue).push_back(fault);
                true
            }
            None => false,
        }
    }
}

/// A TLS front for a scripted pool: a tokio-rustls server on 127.0.0.1 whose certificate (for
/// `127.0.0.1` and `localhost`) is issued by a CA made here with rcgen; each TLS connection is
/// relayed in plain text to the scripted pool, which judges the shares as usual.
#[derive(Debug)]
pub struct TlsFront {
    pub addr: SocketAddr,
    /// The CA certificate, PEM, for `--pool-ca`.
    pub ca_pem: String,
}

impl TlsFront {
    pub fn url(&self) -> String {
        format!("stratum+ssl://{}", self.addr)
    }
}

impl ScriptedPool {
    pub fn start_tls_front(&self) -> TlsFront {
        use tokio_rustls::rustls;
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hashrig test pool CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let leaf_key = rcgen::KeyPair::generate().expect("pool key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("pool params")
            .signed_by(&leaf_key, &ca)
            .expect("pool certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let plain = self.addr;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                        let Ok(mut up) = tokio::net::TcpStream::connect(plain).await else { return };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    });
                }
            });
        });
        TlsFront { addr, ca_pem: ca.pem() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checker itself, on a real share: ESP-Miner's "nonce diff checking 2" case (a real
    /// slush job and the nonce the firmware found on it, difficulty 683).
    #[test]
    fn the_checker_finds_a_real_share_valid_at_its_difficulty() {
        let g: Value = serde_json::from_str(include_str!("../../../../tests/data/stratum/slush_share_diff683.json")).expect("golden share");
        let cb = hex::decode(g["coinbase"].as_str().unwrap()).unwrap();
        // Any split of the coinbase concatenates to the same transaction.
        let (coinb1, rest) = cb.split_at(60);
        let (en1, rest) = rest.split_at(4);
        let (en2, coinb2) = rest.split_at(8);
        let params = vec![
            json!("j"),
            g["prevhash_stratum"].clone(),
            json!(hex::encode(coinb1)),
            json!(hex::encode(coinb2)),
            g["merkle_branch"].clone(),
            g["version"].clone(),
            g["nbits"].clone(),
            g["ntime"].clone(),
            json!(true),
        ];
        let submit = |nonce: &str| vec![json!("w"), json!("j"), json!(hex::encode(en2)), g["ntime"].clone(), json!(nonce)];
        let job = |d: f64| SentJob { id: "j".into(), params: params.clone(), difficulty: d };
        let v = judge(&job(683.0), en1, 8, 0, &submit(g["nonce"].as_str().unwrap()));
        assert!(v.valid, "{}", v.reason);
        assert!(v.difficulty >= 683.0 && v.difficulty < 1366.0, "{}", v.difficulty);
        let v = judge(&job(2000.0), en1, 8, 0, &submit(g["nonce"].as_str().unwrap()));
        assert_eq!((v.valid, v.reason.as_str()), (false, "Low difficulty share"));
        // Another nonce is (almost surely) no share at 683.
        assert!(!judge(&job(683.0), en1, 8, 0, &submit("0a029ed2")).valid);
        // Version bits outside the mask are refused before any hashing.
        let mut s = submit(g["nonce"].as_str().unwrap());
        s.push(json!("00002000"));
        let v = judge(&job(683.0), en1, 8, 0, &s);
        assert!(!v.valid && v.reason.contains("outside the granted mask"), "{}", v.reason);
    }

    #[test]
    fn the_golden_notify_is_a_job() {
        let p = real_notify_params();
        assert_eq!(p.len(), 9);
        assert_eq!(p[4].as_array().map(Vec::len), Some(12));
    }
}
