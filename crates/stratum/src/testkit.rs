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

/// Double SHA-256 with the `sha2` crate (not hashrig's own core).
pub fn sha256d(b: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(b)).into()
}

const GOLDEN_NOTIFY: &str = include_str!("../../../tests/data/stratum/slush_notify_20230526.json");

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

fn send(w: &mut TcpStream, v: Value) -> std::io::Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    w.write_all(s.as_bytes())
}

fn make_job(spec: &PoolSpec, conn: usize, n: usize, clean: bool, difficulty: f64) -> SentJob {
    let mut params = real_notify_params();
    // A pool that resumes sessions (same extranonce1) hands out the same job ids again.
    let id = if spec.same_extranonce1 { format!("{}j{n}", spec.job_prefix) } else { format!("{}{conn:x}j{n}", spec.job_prefix) };
    params[0] = json!(id);
    // Later jobs differ in ntime, as real pools' updates do.
    let ntime = u32::from_str_radix(params[7].as_str().expect("ntime"), 16).expect("hex ntime") + n as u32;
    params[7] = json!(format!("{ntime:08x}"));
    params[8] = json!(clean);
    SentJob { id, params, difficulty: spec.judge_difficulty.unwrap_or(difficulty) }
}

/// The pool's verdict on one submit.
struct Verdict {
    valid: bool,
    reason: String,
    difficulty: f64,
    version: u32,
}

fn bad(reason: impl Into<String>) -> Verdict {
    Verdict { valid: false, reason: reason.into(), difficulty: 0.0, version: 0 }
}

/// Check a share with nothing but sha2 and the bitcoin crate.
fn judge(job: &SentJob, en1: &[u8], en2_size: usize, mask: u32, params: &[Value]) -> Verdict {
    let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("");
    let Ok(en2) = hex::decode(s(2)) else { return bad("extranonce2 not hex") };
    let p = &job.params;
    let h = |i: usize| hex::decode(p[i].as_str().expect("job field")).expect("job hex");
    let coinbase = [&h(2)[..], en1, &en2, &h(3)].concat();
    let mut root = sha256d(&coinbase);
    for b in p[4].as_array().expect("merkle branch") {
        let b = hex::decode(b.as_str().expect("branch")).expect("branch hex");
        root = sha256d(&[&root[..], &b].concat());
    }
    // Stratum sends the previous hash as eight 32-bit words, each byte-swapped.
    let prev: Vec<u8> = h(1).chunks(4).flat_map(|w| w.iter().rev().copied()).collect();
    let word = |i: usize| u32::from_str_radix(p[i].as_str().expect("job word"), 16).expect("job word hex");
    let job_version = word(5);
    let version = match params.get(5).and_then(Value::as_str) {
        Some(vb) => {
            let bits = u32::from_str_radix(vb, 16).unwrap_or(u32::MAX);
            if bits & !mask != 0 {
                return bad(format!("version bits {vb} outside the granted mask {mask:08x}"));
            }
            (job_version & !mask) | (bits & mask)
        }
        None => job_version,
    };
    if s(3).len() != 8 || s(4).len() != 8 || en2.len() != en2_size {
        return Verdict { version, ..bad("bad field length") };
    }
    let (Ok(ntime), Ok(nonce)) = (u32::from_str_radix(s(3), 16), u32::from_str_radix(s(4), 16)) else {
        return Verdict { version, ..bad("ntime or nonce not hex") };
    };
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&prev);
    header.extend_from_slice(&root);
    header.extend_from_slice(&ntime.to_le_bytes());
    header.extend_from_slice(&word(6).to_le_bytes());
    header.extend_from_slice(&nonce.to_le_bytes());
    let digest = sha256d(&header);
    let hdr: bitcoin::block::Header = bitcoin::consensus::deserialize(&header).expect("80 bytes are a header");
    assert_eq!(hdr.block_hash().to_byte_array(), digest, "sha2 and the bitcoin crate agree on the header hash");
    let difficulty = bitcoin::Target::from_le_bytes(digest).difficulty_float();
    if difficulty + 1e-12 < job.difficulty {
        return Verdict { valid: false, reason: "Low difficulty share".into(), difficulty, version };
    }
    Verdict { valid: true, reason: String::new(), difficulty, version }
}

/// One connection's state.
struct Conn<'a> {
    n: usize,
    spec: &'a PoolSpec,
    plan: &'a ConnPlan,
    log: &'a Mutex<PoolLog>,
    w: TcpStream,
    en1: Vec<u8>,
    jobs: Vec<SentJob>,
    mask: u32,
    authorized: bool,
    authorized_at: Option<Instant>,
    job_n: usize,
    last_job: Instant,
    /// Share difficulty for the next job.
    difficulty: f64,
    seen: HashSet<(String, String, String, String, String)>,
    received_shares: usize,
    /// Silent until then (after the handshake); `far` for [`ConnPlan::silent`].
    silent_until: Option<Instant>,
    /// After a `client.reconnect`: no more answers, close at this time.
    closing: Option<Instant>,
    drop_next_submit: bool,
    timed_done: usize,
}

/// Whether serving goes on after a fault.
enum Flow {
    Go,
    Close,
}

impl Conn<'_> {
    fn silent(&self) -> bool {
        self.silent_until.is_some_and(|t| Instant::now() < t)
    }

    fn send_job(&mut self, clean: bool) -> std::io::Result<()> {
        let j = make_job(self.spec, self.n, self.job_n, clean, self.difficulty);
        self.job_n += 1;
        send(&mut self.w, json!({"id": null, "method": "mining.notify", "params": j.params}))?;
        if clean {
            self.jobs.clear();
        }
        self.jobs.push(j);
        self.last_job = Instant::now();
        Ok(())
    }

    fn apply(&mut self, f: Fault) -> std::io::Result<Flow> {
        lock(self.log).faults.push(FaultRecord { conn: self.n, kind: f.kind(), at: Instant::now() });
        match f {
            Fault::Disconnect => return Ok(Flow::Close),
            Fault::DisconnectOnNextSubmit => self.drop_next_submit = true,
            // A silence never shortens one under way (its end is what a test times against).
            Fault::Silence(d) => self.silent_until = self.silent_until.max(Some(Instant::now() + d)),
            Fault::Malformed(line) => {
                self.w.write_all(line.as_bytes())?;
                self.w.write_all(b"\n")?;
            }
            Fault::Oversized(len) => {
                let head = r#"{"id":null,"method":"mining.notify","params":["big","#;
                let tail = r#""]}"#;
                let pad = len.saturating_sub(head.len() + tail.len() + 1).max(1);
                let mut line = String::with_capacity(len + 1);
                line.push_str(head);
                line.push('"');
                line.extend(std::iter::repeat_n('0', pad));
                line.push_str(tail);
                line.push('\n');
                self.w.write_all(line.as_bytes())?;
            }
            Fault::CleanJob => self.send_job(true)?,
            Fault::NewJob => self.send_job(false)?,
            Fault::SetDifficulty(d) => {
                self.difficulty = d;
                send(&mut self.w, json!({"id": null, "method": "mining.set_difficulty", "params": [d]}))?;
            }
            Fault::SetVersionMask(m) => {
                self.mask = m;
                send(&mut self.w, json!({"id": null, "method": "mining.set_version_mask", "params": [format!("{m:08x}")]}))?;
            }
            Fault::Reconnect(params) => {
                send(&mut self.w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
                self.closing = Some(Instant::now() + Duration::from_secs(5));
            }
            Fault::ReconnectKeepAnswering(params) => {
                send(&mut self.w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
            }
        }
        Ok(Flow::Go)
    }

    /// Apply the queued and due faults (those that send wait out a silence).
    fn faults(&mut self, queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<Flow> {
        if let Some(at) = self.authorized_at {
            while let Some((after, f)) = self.plan.timed.get(self.timed_done) {
                if at.elapsed() < *after {
                    break;
                }
                self.timed_done += 1;
                lock(queue).push_back(f.clone());
            }
        }
        loop {
            let next = {
                let mut q = lock(queue);
                let silent = self.silent() || self.closing.is_some();
                // Before the handshake ends, and during a silence, only faults that send nothing.
                let pos = q.iter().position(|f| !f.sends() || (self.authorized && !silent));
                pos.and_then(|i| q.remove(i))
            };
            let Some(f) = next else { return Ok(Flow::Go) };
            if let Flow::Close = self.apply(f)? {
                return Ok(Flow::Close);
            }
        }
    }

    fn record(&self, params: &[Value], v: &Verdict, answer: Answer) {
        let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
        lock(self.log).shares.push(ShareRecord {
            conn: self.n,
            job_id: s(1),
            extranonce2: s(2),
            ntime: s(3),
            nonce: s(4),
            version_bits: params.get(5).and_then(Value::as_str).map(str::to_owned),
            version: v.version,
            valid: v.valid,
            reason: v.reason.clone(),
            difficulty: v.difficulty,
            answered: answer.answered(),
            answer,
            at: Instant::now(),
        });
    }

    /// A `mining.submit`; `Close` when the connection is to be dropped.
    fn submit(&mut self, id: Value, params: &[Value], queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<Flow> {
        self.received_shares += 1;
        for (at, f) in &self.plan.on_share {
            if *at == self.received_shares {
                lock(queue).push_back(f.clone());
            }
        }
        if let Flow::Close = self.faults(queue)? {
            // The share arrived, but the connection closes before it is even judged: it is
            // still a submit received and never answered.
            let v = self.verdict(params);
            self.record(params, &v, Answer::Dropped);
            return Ok(Flow::Close);
        }
        let v = self.verdict(params);
        let drop_now = self.drop_next_submit || self.plan.drop_at_share == Some(self.received_shares);
        if drop_now {
            self.record(params, &v, Answer::Dropped);
            return Ok(Flow::Close);
        }
        if self.closing.is_some() {
            self.record(params, &v, Answer::Closing);
            return Ok(Flow::Go);
        }
        if self.silent() {
            self.record(params, &v, Answer::Silent);
            return Ok(Flow::Go);
        }
        let (line, answer) = if v.valid {
            (json!({"id": id, "result": true, "error": null}), Answer::Accepted)
        } else {
            let code = match v.reason.as_str() {
                "Job not found" => 21,
                "Duplicate share" => 22,
                _ => 23,
            };
            (json!({"id": id, "result": null, "error": [code, v.reason, null]}), Answer::Rejected(v.reason.clone()))
        };
        // Logged before the write: a write that fails means the client went away, and the
        // answer may or may not have reached it; a test sees that as WriteFailed.
        if let Err(e) = send(&mut self.w, line) {
            self.record(params, &v, Answer::WriteFailed);
            return Err(e);
        }
        self.record(params, &v, answer);
        if v.valid && self.plan.reconnect_at_share == Some(self.received_shares) {
            let params = self.plan.reconnect_params.clone().unwrap_or_else(|| json!(["", "", 0]));
            send(&mut self.w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
        }
        Ok(Flow::Go)
    }

    fn verdict(&mut self, params: &[Value]) -> Verdict {
        let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
        let job_id = s(1);
        let v = match self.jobs.iter().find(|j| j.id == job_id) {
            None => bad("Job not found"),
            Some(j) => judge(j, &self.en1, self.spec.en2_size, self.mask, params),
        };
        let dup = !self.seen.insert((job_id, s(2), s(3), s(4), s(5)));
        if dup && v.valid { Verdict { valid: false, reason: "Duplicate share".into(), ..v } } else { v }
    }
}

fn serve(conn: TcpStream, n: usize, spec: &PoolSpec, plan: &ConnPlan, log: &Mutex<PoolLog>, queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<()> {
    if plan.refuse {
        drop(conn);
        return Ok(());
    }
    if plan.mute {
        let mut sink = [0u8; 4096];
        let mut c = conn;
        while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
        return Ok(());
    }
    let en1_num = if spec.same_extranonce1 { spec.en1_base } else { spec.en1_base.wrapping_add(n as u32) };
    let w = conn.try_clone()?;
    conn.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut c = Conn {
        n,
        spec,
        plan,
        log,
        w,
        en1: en1_num.to_be_bytes().to_vec(),
        jobs: Vec::new(),
        mask: 0,
        authorized: false,
        authorized_at: None,
        job_n: 0,
        last_job: Instant::now(),
        difficulty: spec.difficulty,
        seen: HashSet::new(),
        received_shares: 0,
        silent_until: None,
        closing: None,
        drop_next_submit: false,
        timed_done: 0,
    };
    let result = serve_loop(&mut c, BufReader::new(conn), queue);
    let _ = c.w.shutdown(Shutdown::Both);
    result
}

fn serve_loop(c: &mut Conn<'_>, mut r: BufReader<TcpStream>, queue: &Mutex<VecDeque<Fault>>) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        if let Flow::Close = c.faults(queue)? {
            return Ok(());
        }
        if c.closing.is_some_and(|t| Instant::now() >= t) {
            return Ok(());
        }
        if c.authorized
            && !c.silent()
            && c.closing.is_none()
            && let Some(every) = c.plan.new_job_every
            && c.last_job.elapsed() >= every
        {
            c.send_job(false)?;
        }
        // A partial line stays in `line` across timeouts (read_line appends), so only clear it
        // once a whole line was handled.
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) if !line.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        }
        let text = std::mem::take(&mut line);
        let Ok(msg) = serde_json::from_str::<Value>(text.trim()) else { continue };
        if c.spec.keep_lines {
            lock(c.log).lines.push(text.trim().to_owned());
        }
        let id = msg["id"].clone();
        let params = msg["params"].as_array().cloned().unwrap_or_default();
        let quiet = c.silent() || c.closing.is_some();
        match msg["method"].as_str().unwrap_or("") {
            "mining.configure" => {
                lock(c.log).configures.push(msg["params"].clone());
                let result = match c.spec.grant_mask {
                    Some(m) => {
                        c.mask = m;
                        json!({"version-rolling": true, "version-rolling.mask": format!("{m:08x}")})
                    }
                    None => json!({"version-rolling": false}),
                };
                send(&mut c.w, json!({"id": id, "result": result, "error": null}))?;
            }
            "mining.subscribe" => {
                lock(c.log).subscribes += 1;
                let result = json!([[["mining.set_difficulty", "d1"], ["mining.notify", "n1"]], hex::encode(&c.en1), c.spec.en2_size]);
                send(&mut c.w, json!({"id": id, "result": result, "error": null}))?;
            }
            "mining.authorize" => {
                send(&mut c.w, json!({"id": id, "result": true, "error": null}))?;
                for g in &c.plan.garbage {
                    c.w.write_all(g.as_bytes())?;
                    c.w.write_all(b"\n")?;
                }
                send(&mut c.w, json!({"id": null, "method": "mining.set_difficulty", "params": [c.difficulty]}))?;
                c.send_job(true)?;
                c.authorized = true;
                c.authorized_at = Some(Instant::now());
                if c.plan.silent {
                    c.silent_until = Some(Instant::now() + Duration::from_secs(86_400 * 365));
                }
            }
            "mining.submit" => {
                if let Flow::Close = c.submit(id, &params, queue)? {
                    return Ok(());
                }
            }
            _ => {
                if !quiet && !id.is_null() {
                    send(&mut c.w, json!({"id": id, "result": true, "error": null}))?;
                }
            }
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
        let g: Value = serde_json::from_str(include_str!("../../../tests/data/stratum/slush_share_diff683.json")).expect("golden share");
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
