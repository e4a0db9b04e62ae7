//! A scripted Stratum v1 pool on 127.0.0.1 for the end-to-end tests of `hashrig mine`.
//!
//! It replays a real Braiins/slush job (tests/data/stratum/slush_notify_20230526.json: real
//! coinb1/coinb2, 12-branch merkle path, prev hash, version, nbits, ntime) at a low share
//! difficulty, and checks every submitted share on its own: coinbase, merkle root and header
//! are rebuilt here with `sha2`, the header hash is cross-checked with the `bitcoin` crate, and
//! the share difficulty is `bitcoin::Target::difficulty_float` of the hash. None of hashrig's
//! code is used to judge a share.
//!
//! [`ScriptedPool::start_tls_front`] puts a TLS server (private CA) in front of it.
//!
//! Each connection follows a [`ConnPlan`] chosen by connection number, so tests can script a
//! pool that refuses, goes silent, drops a share unanswered, or sends garbage.

#![allow(dead_code, reason = "each test file uses a different part of the scripted pool")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn sha256d(b: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(b)).into()
}

/// The real job every scripted pool hands out.
pub fn real_notify_params() -> Vec<Value> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stratum/slush_notify_20230526.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).expect("golden notify")).expect("json");
    v["params"].as_array().expect("params").clone()
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
    pub valid: bool,
    pub reason: String,
    pub difficulty: f64,
    pub answered: bool,
    /// When the pool received it.
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct PoolLog {
    pub connections: usize,
    pub shares: Vec<ShareRecord>,
    /// Every line received, for password/ordering checks.
    pub lines: Vec<String>,
    pub subscribes: usize,
    pub configures: Vec<Value>,
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
}

type Planner = dyn Fn(usize) -> ConnPlan + Send + Sync;

/// Settings of a scripted pool.
#[derive(Clone)]
pub struct PoolSpec {
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
    pub plan: Arc<Planner>,
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

pub struct ScriptedPool {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<PoolLog>>,
}

impl ScriptedPool {
    pub fn start(spec: PoolSpec) -> ScriptedPool {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(PoolLog::default()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                l2.lock().unwrap().connections += 1;
                let plan = (spec.plan)(n);
                let spec = spec.clone();
                let log = l2.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, n, &spec, &plan, &log);
                });
            }
        });
        ScriptedPool { addr, log }
    }

    pub fn url(&self) -> String {
        format!("stratum+tcp://{}", self.addr)
    }

    pub fn log(&self) -> std::sync::MutexGuard<'_, PoolLog> {
        self.log.lock().unwrap()
    }
}

fn send(w: &mut TcpStream, v: Value) -> std::io::Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    w.write_all(s.as_bytes())
}

fn make_job(spec: &PoolSpec, conn: usize, n: usize, clean: bool) -> SentJob {
    let mut params = real_notify_params();
    // A pool that resumes sessions (same extranonce1) hands out the same job ids again.
    let id = if spec.same_extranonce1 { format!("{}j{n}", spec.job_prefix) } else { format!("{}{conn:x}j{n}", spec.job_prefix) };
    params[0] = json!(id);
    // Later jobs differ in ntime, as real pools' updates do.
    let ntime = u32::from_str_radix(params[7].as_str().unwrap(), 16).unwrap() + n as u32;
    params[7] = json!(format!("{ntime:08x}"));
    params[8] = json!(clean);
    SentJob { id, params, difficulty: spec.judge_difficulty.unwrap_or(spec.difficulty) }
}

/// Check a share with nothing but sha2 and the bitcoin crate.
fn judge(job: &SentJob, en1: &[u8], mask: u32, params: &[Value]) -> (bool, String, f64, u32) {
    let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("");
    let en2 = match hex::decode(s(2)) {
        Ok(v) => v,
        Err(_) => return (false, "extranonce2 not hex".into(), 0.0, 0),
    };
    let p = &job.params;
    let coinb1 = hex::decode(p[2].as_str().unwrap()).unwrap();
    let coinb2 = hex::decode(p[3].as_str().unwrap()).unwrap();
    let coinbase = [&coinb1[..], en1, &en2, &coinb2].concat();
    let mut root = sha256d(&coinbase);
    for b in p[4].as_array().unwrap() {
        let b = hex::decode(b.as_str().unwrap()).unwrap();
        root = sha256d(&[&root[..], &b].concat());
    }
    let prev_wire = hex::decode(p[1].as_str().unwrap()).unwrap();
    let prev: Vec<u8> = prev_wire.chunks(4).flat_map(|w| w.iter().rev().copied()).collect();
    let job_version = u32::from_str_radix(p[5].as_str().unwrap(), 16).unwrap();
    let version = match params.get(5).and_then(Value::as_str) {
        Some(vb) => {
            let bits = u32::from_str_radix(vb, 16).unwrap_or(u32::MAX);
            if bits & !mask != 0 {
                return (false, format!("version bits {vb} outside the granted mask {mask:08x}"), 0.0, 0);
            }
            (job_version & !mask) | (bits & mask)
        }
        None => job_version,
    };
    let ntime = u32::from_str_radix(s(3), 16).unwrap_or(0);
    let nbits = u32::from_str_radix(p[6].as_str().unwrap(), 16).unwrap();
    let nonce = u32::from_str_radix(s(4), 16).unwrap_or(0);
    if s(3).len() != 8 || s(4).len() != 8 || en2.len() != 8 {
        return (false, "bad field length".into(), 0.0, version);
    }
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&prev);
    header.extend_from_slice(&root);
    header.extend_from_slice(&ntime.to_le_bytes());
    header.extend_from_slice(&nbits.to_le_bytes());
    header.extend_from_slice(&nonce.to_le_bytes());
    let digest = sha256d(&header);
    let h: bitcoin::block::Header = bitcoin::consensus::deserialize(&header).unwrap();
    assert_eq!(h.block_hash().to_byte_array(), digest, "sha2 and the bitcoin crate agree on the header hash");
    let diff = bitcoin::Target::from_le_bytes(digest).difficulty_float();
    if diff + 1e-12 < job.difficulty {
        return (false, "Low difficulty share".into(), diff, version);
    }
    (true, String::new(), diff, version)
}

fn serve(conn: TcpStream, n: usize, spec: &PoolSpec, plan: &ConnPlan, log: &Mutex<PoolLog>) -> std::io::Result<()> {
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
    let en1 = en1_num.to_be_bytes().to_vec();
    let mut w = conn.try_clone()?;
    conn.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut r = BufReader::new(conn);
    let mut jobs: Vec<SentJob> = Vec::new();
    let mut mask = 0u32;
    let mut authorized = false;
    let mut job_n = 0usize;
    let mut last_job = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut received_shares = 0usize;
    let mut line = String::new();
    loop {
        if authorized
            && !plan.silent
            && let Some(every) = plan.new_job_every
            && last_job.elapsed() >= every
        {
            job_n += 1;
            let j = make_job(spec, n, job_n, false);
            send(&mut w, json!({"id": null, "method": "mining.notify", "params": j.params}))?;
            jobs.push(j);
            last_job = Instant::now();
        }
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        }
        let msg: Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(_) => continue,
        };
        log.lock().unwrap().lines.push(line.trim().to_owned());
        let id = msg["id"].clone();
        let params = msg["params"].as_array().cloned().unwrap_or_default();
        let silent_now = plan.silent && authorized;
        match msg["method"].as_str().unwrap_or("") {
            "mining.configure" => {
                log.lock().unwrap().configures.push(msg["params"].clone());
                let result = match spec.grant_mask {
                    Some(m) => {
                        mask = m;
                        json!({"version-rolling": true, "version-rolling.mask": format!("{m:08x}")})
                    }
                    None => json!({"version-rolling": false}),
                };
                send(&mut w, json!({"id": id, "result": result, "error": null}))?;
            }
            "mining.subscribe" => {
                log.lock().unwrap().subscribes += 1;
                let result = json!([[["mining.set_difficulty", "d1"], ["mining.notify", "n1"]], hex::encode(&en1), spec.en2_size]);
                send(&mut w, json!({"id": id, "result": result, "error": null}))?;
            }
            "mining.authorize" => {
                send(&mut w, json!({"id": id, "result": true, "error": null}))?;
                for g in &plan.garbage {
                    w.write_all(g.as_bytes())?;
                    w.write_all(b"\n")?;
                }
                send(&mut w, json!({"id": null, "method": "mining.set_difficulty", "params": [spec.difficulty]}))?;
                let j = make_job(spec, n, 0, true);
                send(&mut w, json!({"id": null, "method": "mining.notify", "params": j.params}))?;
                jobs.push(j);
                authorized = true;
                last_job = Instant::now();
            }
            "mining.submit" => {
                received_shares += 1;
                let job_id = params.get(1).and_then(Value::as_str).unwrap_or("").to_owned();
                let s = |i: usize| params.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
                let drop_now = plan.drop_at_share == Some(received_shares);
                let (valid, reason, difficulty, version) = match jobs.iter().find(|j| j.id == job_id) {
                    None => (false, "Job not found".to_owned(), 0.0, 0),
                    Some(j) => judge(j, &en1, mask, &params),
                };
                let key = (job_id.clone(), s(2), s(3), s(4), s(5));
                let dup = !seen.insert(key);
                let (valid, reason) = if dup && valid { (false, "Duplicate share".to_owned()) } else { (valid, reason) };
                log.lock().unwrap().shares.push(ShareRecord {
                    conn: n,
                    job_id,
                    extranonce2: s(2),
                    ntime: s(3),
                    nonce: s(4),
                    version_bits: params.get(5).and_then(Value::as_str).map(str::to_owned),
                    version,
                    valid,
                    reason: reason.clone(),
                    difficulty,
                    answered: !drop_now && !silent_now,
                    at: Instant::now(),
                });
                if drop_now {
                    return Ok(());
                }
                if silent_now {
                    continue;
                }
                if valid {
                    send(&mut w, json!({"id": id, "result": true, "error": null}))?;
                    if plan.reconnect_at_share == Some(received_shares) {
                        let params = plan.reconnect_params.clone().unwrap_or_else(|| json!(["", "", 0]));
                        send(&mut w, json!({"id": null, "method": "client.reconnect", "params": params}))?;
                    }
                } else {
                    let code = match reason.as_str() {
                        "Job not found" => 21,
                        "Duplicate share" => 22,
                        _ => 23,
                    };
                    send(&mut w, json!({"id": id, "result": null, "error": [code, reason, null]}))?;
                }
            }
            _ => {
                if !silent_now && !id.is_null() {
                    send(&mut w, json!({"id": id, "result": true, "error": null}))?;
                }
            }
        }
    }
}

/// A TLS front for a scripted pool: a tokio-rustls server on 127.0.0.1 whose certificate (for
/// `127.0.0.1` and `localhost`) is issued by a CA made here with rcgen; each TLS connection is
/// relayed in plain text to the scripted pool, which judges the shares as usual.
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

/// Drain a child's stderr in the background so it never blocks; returns the text so far.
pub fn capture_stderr(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let mut err = child.stderr.take().expect("stderr piped");
    let out = Arc::new(Mutex::new(String::new()));
    let o2 = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            o2.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

/// Poll `cond` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A `hashrig mine` child on the CPU backend with stderr piped; killed on drop.
pub struct Miner {
    pub child: std::process::Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Miner {
    pub fn start(args: &[String]) -> Miner {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"));
        cmd.arg("mine").args(args).arg("-v");
        cmd.env("RUST_LOG", "info");
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start hashrig mine");
        let stderr = capture_stderr(&mut child);
        Miner { child, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for a clean exit (for --duration runs).
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Let the stderr reader catch up.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                panic!("hashrig mine did not stop within {limit:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
