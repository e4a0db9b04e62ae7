//! A fake Bitcoin node for tests (cargo feature `testkit`): HTTP/1.1 JSON-RPC on 127.0.0.1 with
//! cookie auth, `getblocktemplate` (segwit rules, long polling) and a `submitblock` that checks
//! every block with the `bitcoin` crate only: proof of work against nbits, merkle root, witness
//! commitment, previous block, BIP 34 height and the coinbase payout.
//!
//! The template carries real-format segwit transactions (from tests/data/solo/coinbase_golden.json
//! at the workspace root, built in at compile time) and a `default_witness_commitment` the fake
//! node computes with the bitcoin crate.
//!
//! `submitblock` can be scripted, one answer per call, to play a node that is starting, busy or
//! undecided: see [`Scripted`] and [`FakeNode::script_submits`]. Every call is recorded in
//! [`NodeState::attempts`] with what the node did about it.
//!
//! It serves each connection on its own thread with blocking I/O, so it works from plain
//! `#[test]`s and from any tokio runtime alike.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{Block, BlockHash, ScriptBuf, Target, Transaction, TxMerkleNode, WitnessMerkleNode};
use serde_json::{Value, json};

use crate::solo::FoundBlock;
use crate::template::{BlockTemplate, SoloWork};

/// Standard base64 (RFC 4648, with padding): what an HTTP basic `Authorization` header carries.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { T[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The payout script every test mines to, and its regtest address.
pub fn payout() -> (ScriptBuf, String) {
    let script = ScriptBuf::from_bytes(hex::decode(format!("0014{}", "11".repeat(20))).expect("constant hex"));
    let addr = bitcoin::Address::from_script(&script, bitcoin::Network::Regtest).expect("a P2WPKH script has an address").to_string();
    (script, addr)
}

/// nbits whose target almost every header meets (regtest's minimum difficulty).
pub const EASY_BITS: u32 = 0x207f_ffff;

/// A block the node checked (scripted answers are not in this list, see [`NodeState::attempts`]).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub hash: BlockHash,
    pub height: u64,
    pub accepted: bool,
    pub reason: Option<String>,
    pub at: Instant,
}

/// A scripted answer to one `submitblock` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// A JSON-RPC error `{code, message}` in an HTTP 500, as Core sends errors (-28 while it
    /// starts: [`Scripted::warmup`]).
    RpcError { code: i64, message: String },
    /// An HTTP status with a body that is not JSON (503: a full work queue).
    Http { status: u16, body: String },
    /// Read the request, then close the connection without a byte of answer.
    Drop,
    /// A BIP 22 result string: `"inconclusive"`, `"duplicate"`, or a reject reason.
    Result(String),
}

impl Scripted {
    /// RPC error -28 (RPC_IN_WARMUP), as Bitcoin Core answers while it loads.
    pub fn warmup() -> Scripted {
        Scripted::RpcError { code: -28, message: "Loading block index…".into() }
    }
    /// HTTP 503 with a plain-text body, as Core answers when its work queue is full.
    pub fn busy() -> Scripted {
        Scripted::Http { status: 503, body: "Work queue depth exceeded".into() }
    }
    pub fn inconclusive() -> Scripted {
        Scripted::Result("inconclusive".into())
    }
    pub fn reject(reason: &str) -> Scripted {
        Scripted::Result(reason.into())
    }
}

/// One `submitblock` call as the node saw it.
#[derive(Debug, Clone)]
pub struct SubmitAttempt {
    /// The hash of the header the call carried (`None` if it did not decode).
    pub hash: Option<BlockHash>,
    /// What the node did: `"hang"`, `"refused 503"`, the scripted answer in words, or
    /// `"checked"` (then see [`NodeState::submitted`]).
    pub outcome: String,
    pub at: Instant,
}

#[derive(Debug)]
pub struct NodeState {
    pub height: u64,
    pub tip: BlockHash,
    pub bits: u32,
    pub txs: Vec<Transaction>,
    pub submitted: Vec<Submitted>,
    pub templates: usize,
    pub unauthorized: usize,
    /// Blocks answered with a 503 through [`FakeNode::fail_submits`] (hex).
    pub refused_attempts: Vec<String>,
    /// Each `getblocktemplate` in order: the `longpollid` the caller sent (if any) and the one
    /// the answer carried.
    pub gbt: Vec<(Option<String>, String)>,
    /// Answers for the next `submitblock` calls, one each, first in first out (after
    /// `hang_submit` and `fail_submits`, before the real check).
    pub script: VecDeque<Scripted>,
    /// Every `submitblock` call, in order.
    pub attempts: Vec<SubmitAttempt>,
}

impl NodeState {
    /// The attempts that carried block `hash`.
    pub fn attempts_for(&self, hash: BlockHash) -> Vec<&SubmitAttempt> {
        self.attempts.iter().filter(|a| a.hash == Some(hash)).collect()
    }
}

#[derive(Debug)]
pub struct FakeNode {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<NodeState>>,
    /// While true, `submitblock` never answers (the connection hangs).
    pub hang_submit: Arc<AtomicBool>,
    /// Answer this many `submitblock` calls with an HTTP 503 that is not JSON (a node whose
    /// work queue is full), then behave.
    pub fail_submits: Arc<AtomicUsize>,
    pub cookie: String,
}

fn segwit_txs() -> Vec<Transaction> {
    const GOLDEN: &str = include_str!("../../../tests/data/solo/coinbase_golden.json");
    let v: Value = serde_json::from_str(GOLDEN).expect("golden data is JSON");
    let case = v["cases"].as_array().expect("cases").iter().find(|c| c["height"] == 128).expect("a height-128 case");
    case["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| bitcoin::consensus::deserialize(&hex::decode(t.as_str().expect("hex string")).expect("hex")).expect("a transaction"))
        .collect()
}

impl FakeNode {
    /// A regtest-like chain at `height` (the next block's height), nbits `bits`.
    pub fn start(height: u64, bits: u32, cookie: &str) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(NodeState {
            height,
            tip: BlockHash::from_byte_array([0x42; 32]),
            bits,
            txs: segwit_txs(),
            submitted: Vec::new(),
            templates: 0,
            unauthorized: 0,
            refused_attempts: Vec::new(),
            gbt: Vec::new(),
            script: VecDeque::new(),
            attempts: Vec::new(),
        }));
        let hang = Arc::new(AtomicBool::new(false));
        let fail = Arc::new(AtomicUsize::new(0));
        let auth = format!("Basic {}", base64(cookie.as_bytes()));
        let (s2, h2, f2) = (state.clone(), hang.clone(), fail.clone());
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(c) = c else { continue };
                let (s, h, f, a) = (s2.clone(), h2.clone(), f2.clone(), auth.clone());
                std::thread::spawn(move || {
                    let _ = serve(c, &s, &h, &f, &a);
                });
            }
        });
        FakeNode { addr, state, hang_submit: hang, fail_submits: fail, cookie: cookie.into() }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().expect("the fake node's lock is never poisoned")
    }

    /// Queue scripted answers for the next `submitblock` calls.
    pub fn script_submits(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state().script.extend(answers);
    }

    /// Answer the next `n` `submitblock` calls with RPC error -28 (node warming up).
    pub fn warmup_submits(&self, n: usize) {
        self.script_submits(std::iter::repeat_n(Scripted::warmup(), n));
    }

    /// Drop the connection of the next `n` `submitblock` calls without answering.
    pub fn drop_submits(&self, n: usize) {
        self.script_submits(std::iter::repeat_n(Scripted::Drop, n));
    }

    /// Answer the next `submitblock` call with the BIP 22 string `answer`
    /// (`"inconclusive"`, `"duplicate"`, or a reject reason such as `"bad-txnmrklroot"`).
    pub fn answer_next_submit(&self, answer: &str) {
        self.script_submits([Scripted::Result(answer.into())]);
    }

    /// Refuse every `submitblock` with HTTP 503 until [`FakeNode::serve_submits`].
    pub fn refuse_submits(&self) {
        self.fail_submits.store(usize::MAX, Ordering::SeqCst);
    }

    /// Stop refusing `submitblock` (undoes [`FakeNode::refuse_submits`] and `fail_submits`).
    pub fn serve_submits(&self) {
        self.fail_submits.store(0, Ordering::SeqCst);
    }

    /// The node's current template, as `getblocktemplate` would answer it.
    pub fn template(&self) -> BlockTemplate {
        serde_json::from_value(template(&self.state())).expect("the fake template parses")
    }

    /// Work on the node's current template, paying [`payout`].
    pub fn work(&self) -> Arc<SoloWork> {
        SoloWork::from_template(&self.template(), &payout().0, b"/testkit/").expect("the fake template makes work")
    }
}

/// A block on `work` with `extranonce2`: the first nonce whose header meets the work's target.
/// Meant for easy targets such as [`EASY_BITS`]; panics if no nonce in 2^20 does.
pub fn solve(work: &Arc<SoloWork>, extranonce2: &[u8]) -> FoundBlock {
    let target = work.target();
    let version = work.job.version.to_consensus() as u32;
    for nonce in 0..1u32 << 20 {
        let header = work.job.header(extranonce2, work.job.ntime, version, nonce).expect("extranonce2 of the job's size");
        if header.validate_pow(target).is_ok() {
            return FoundBlock { work: work.clone(), extranonce2: extranonce2.to_vec(), header };
        }
    }
    panic!("no nonce below 2^20 meets the target; use easier bits")
}

fn template(s: &NodeState) -> Value {
    let wtxids: Vec<_> = std::iter::once(bitcoin::Wtxid::all_zeros()).chain(s.txs.iter().map(|t| t.compute_wtxid())).collect();
    let root = bitcoin::merkle_tree::calculate_root(wtxids.iter().map(|w| w.to_raw_hash()))
        .map(WitnessMerkleNode::from_raw_hash)
        .expect("at least the coinbase");
    let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
    let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    script.extend_from_slice(commitment.as_byte_array());
    json!({
        "version": 0x2000_0000,
        "rules": ["csv", "!segwit", "taproot"],
        "previousblockhash": s.tip.to_string(),
        "transactions": s.txs.iter().map(|t| json!({
            "data": hex::encode(bitcoin::consensus::serialize(t)),
            "txid": t.compute_txid().to_string(),
            "hash": t.compute_wtxid().to_string(),
            "fee": 1000, "depends": [], "weight": t.weight().to_wu(),
        })).collect::<Vec<_>>(),
        "coinbasevalue": 5_000_000_000u64 + 3000,
        "longpollid": format!("{}{}", s.tip, s.height),
        "target": hex::encode(Target::from_compact(bitcoin::CompactTarget::from_consensus(s.bits)).to_be_bytes()),
        "mintime": 1_700_000_000u64,
        "curtime": 1_700_000_600u64,
        "bits": format!("{:08x}", s.bits),
        "height": s.height,
        "default_witness_commitment": hex::encode(script),
    })
}

/// Check a block with the bitcoin crate; `Ok(())` = valid on top of the tip.
fn check_block(s: &NodeState, hexblock: &str) -> Result<Block, String> {
    let bytes = hex::decode(hexblock).map_err(|_| "not hex")?;
    let block: Block = bitcoin::consensus::deserialize(&bytes).map_err(|e| format!("decode: {e}"))?;
    let target = Target::from_compact(bitcoin::CompactTarget::from_consensus(s.bits));
    if block.header.bits.to_consensus() != s.bits {
        return Err("bad-diffbits".into());
    }
    block.header.validate_pow(target).map_err(|_| "high-hash")?;
    if block.header.prev_blockhash != s.tip {
        return Err("bad-prevblk".into());
    }
    if !block.check_merkle_root() {
        return Err("bad-txnmrklroot".into());
    }
    if !block.check_witness_commitment() {
        return Err("bad-witness-merkle-match".into());
    }
    let cb = &block.txdata[0];
    let ss = cb.input[0].script_sig.as_bytes();
    let height_ok = if s.height <= 16 {
        ss.first() == Some(&(0x50 + s.height as u8))
    } else {
        block.bip34_block_height().ok() == Some(s.height)
    };
    if !height_ok {
        return Err("bad-cb-height".into());
    }
    if !(2..=100).contains(&ss.len()) {
        return Err("bad-cb-length".into());
    }
    if cb.output[0].script_pubkey != payout().0 || cb.output[0].value.to_sat() != 5_000_000_000 + 3000 {
        return Err("bad-cb-payout".into());
    }
    if block.txdata.len() != s.txs.len() + 1 || block.txdata[1..] != s.txs[..] {
        return Err("bad-txns".into());
    }
    let _: TxMerkleNode = block.header.merkle_root;
    Ok(block)
}

fn header_hash(hexblock: &str) -> Option<BlockHash> {
    let head = hex::decode(hexblock.get(..160)?).ok()?;
    bitcoin::consensus::deserialize::<bitcoin::block::Header>(&head).ok().map(|h| h.block_hash())
}

fn respond(w: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(w, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve(c: TcpStream, state: &Mutex<NodeState>, hang: &AtomicBool, fail: &AtomicUsize, auth: &str) -> std::io::Result<()> {
    let lock = || state.lock().expect("the fake node's lock is never poisoned");
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    let mut len = 0usize;
    let mut authorized = false;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "authorization" => authorized = v.trim() == auth,
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    if !authorized {
        lock().unauthorized += 1;
        return respond(&mut w, "401 Unauthorized", "");
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = req["id"].clone();
    let ok = |result: Value| json!({"result": result, "error": null, "id": id}).to_string();
    let rpc_error = |code: i64, message: &str| json!({"result": null, "error": {"code": code, "message": message}, "id": id}).to_string();
    match req["method"].as_str().unwrap_or("") {
        "getblocktemplate" => {
            let p = &req["params"][0];
            if p["rules"] != json!(["segwit"]) {
                let e = rpc_error(-8, "getblocktemplate must be called with the segwit rule set (call with {\"rules\": [\"segwit\"]})");
                return respond(&mut w, "500 Internal Server Error", &e);
            }
            // Long poll: wait (up to 2 s) while the tip is the one the caller already has.
            if let Some(lp) = p["longpollid"].as_str() {
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(2) {
                    let s = lock();
                    if format!("{}{}", s.tip, s.height) != lp {
                        break;
                    }
                    drop(s);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let mut s = lock();
            s.templates += 1;
            let t = template(&s);
            let sent = t["longpollid"].as_str().expect("template has a longpollid").to_owned();
            s.gbt.push((p["longpollid"].as_str().map(str::to_owned), sent));
            drop(s);
            respond(&mut w, "200 OK", &ok(t))
        }
        "submitblock" => {
            let hexblock = req["params"][0].as_str().unwrap_or("").to_owned();
            let hash = header_hash(&hexblock);
            let record = |s: &mut NodeState, outcome: String| s.attempts.push(SubmitAttempt { hash, outcome, at: Instant::now() });
            if hang.load(Ordering::SeqCst) {
                record(&mut lock(), "hang".into());
                // Never answer; hold the connection until the client gives up.
                std::thread::sleep(Duration::from_secs(3600));
                return Ok(());
            }
            if fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                let mut s = lock();
                record(&mut s, "refused 503".into());
                s.refused_attempts.push(hexblock);
                drop(s);
                return respond(&mut w, "503 Service Unavailable", "Work queue depth exceeded");
            }
            let mut s = lock();
            if let Some(scripted) = s.script.pop_front() {
                record(&mut s, format!("{scripted:?}"));
                drop(s);
                return match scripted {
                    Scripted::RpcError { code, message } => respond(&mut w, "500 Internal Server Error", &rpc_error(code, &message)),
                    Scripted::Http { status, body } => respond(&mut w, &format!("{status} {}", reason_phrase(status)), &body),
                    Scripted::Drop => {
                        // Close both ways without writing: the client sees the connection end.
                        w.shutdown(std::net::Shutdown::Both)
                    }
                    Scripted::Result(answer) => respond(&mut w, "200 OK", &ok(json!(answer))),
                };
            }
            record(&mut s, "checked".into());
            let height = s.height;
            let result = check_block(&s, &hexblock);
            let (hash, accepted, reason) = match &result {
                Ok(b) => (b.block_hash(), true, None),
                Err(e) => (hash.unwrap_or(BlockHash::all_zeros()), false, Some(e.clone())),
            };
            if accepted {
                s.tip = hash;
                s.height += 1;
            }
            s.submitted.push(Submitted { hash, height, accepted, reason: reason.clone(), at: Instant::now() });
            drop(s);
            respond(&mut w, "200 OK", &ok(match reason { None => Value::Null, Some(r) => json!(r) }))
        }
        other => {
            let e = rpc_error(-32601, &format!("Method not found: {other}"));
            respond(&mut w, "404 Not Found", &e)
        }
    }
}
