//! A fake Bitcoin node for the solo-mining tests: HTTP/1.1 JSON-RPC on 127.0.0.1 with cookie
//! auth, `getblocktemplate` (segwit rules, long polling) and a `submitblock` that checks every
//! block with the `bitcoin` crate only: proof of work against nbits, merkle root, witness
//! commitment, previous block, BIP 34 height and the coinbase payout.
//!
//! The template carries real-format segwit transactions (from tests/data/solo/coinbase_golden.json)
//! and a `default_witness_commitment` the fake node computes with the bitcoin crate.

#![allow(dead_code, reason = "each test file uses a different part of the fake node")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{Block, BlockHash, ScriptBuf, Target, Transaction, TxMerkleNode, WitnessMerkleNode};
use serde_json::{Value, json};

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
    let script = ScriptBuf::from_bytes(hex::decode(format!("0014{}", "11".repeat(20))).unwrap());
    let addr = bitcoin::Address::from_script(&script, bitcoin::Network::Regtest).unwrap().to_string();
    (script, addr)
}

#[derive(Debug, Clone)]
pub struct Submitted {
    pub hash: BlockHash,
    pub height: u64,
    pub accepted: bool,
    pub reason: Option<String>,
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
    /// Blocks answered with a 503 (hex).
    pub refused_attempts: Vec<String>,
    /// Each `getblocktemplate` in order: the `longpollid` the caller sent (if any) and the one
    /// the answer carried.
    pub gbt: Vec<(Option<String>, String)>,
}

pub struct FakeNode {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<NodeState>>,
    /// While true, `submitblock` never answers (the connection hangs).
    pub hang_submit: Arc<AtomicBool>,
    /// Answer this many `submitblock` calls with an HTTP 503 that is not JSON (a node whose
    /// work queue is full), then behave.
    pub fail_submits: Arc<std::sync::atomic::AtomicUsize>,
    pub cookie: String,
}

fn segwit_txs() -> Vec<Transaction> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/solo/coinbase_golden.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let case = v["cases"].as_array().unwrap().iter().find(|c| c["height"] == 128).unwrap();
    case["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| bitcoin::consensus::deserialize(&hex::decode(t.as_str().unwrap()).unwrap()).unwrap())
        .collect()
}

impl FakeNode {
    /// A regtest-like chain at `height` (the next block's height), nbits `bits`.
    pub fn start(height: u64, bits: u32, cookie: &str) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
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
        }));
        let hang = Arc::new(AtomicBool::new(false));
        let fail = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
        self.state.lock().unwrap()
    }
}

fn template(s: &NodeState) -> Value {
    let wtxids: Vec<_> = std::iter::once(bitcoin::Wtxid::all_zeros()).chain(s.txs.iter().map(|t| t.compute_wtxid())).collect();
    let root = bitcoin::merkle_tree::calculate_root(wtxids.iter().map(|w| w.to_raw_hash())).map(WitnessMerkleNode::from_raw_hash).unwrap();
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

fn respond(w: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(w, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn serve(c: TcpStream, state: &Mutex<NodeState>, hang: &AtomicBool, fail: &std::sync::atomic::AtomicUsize, auth: &str) -> std::io::Result<()> {
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
        state.lock().unwrap().unauthorized += 1;
        return respond(&mut w, "401 Unauthorized", "");
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = req["id"].clone();
    let ok = |result: Value| json!({"result": result, "error": null, "id": id}).to_string();
    match req["method"].as_str().unwrap_or("") {
        "getblocktemplate" => {
            let p = &req["params"][0];
            if p["rules"] != json!(["segwit"]) {
                let e = json!({"result": null, "error": {"code": -8, "message": "getblocktemplate must be called with the segwit rule set (call with {\"rules\": [\"segwit\"]})"}, "id": id});
                return respond(&mut w, "500 Internal Server Error", &e.to_string());
            }
            // Long poll: wait (up to 2 s) while the tip is the one the caller already has.
            if let Some(lp) = p["longpollid"].as_str() {
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(2) {
                    let s = state.lock().unwrap();
                    if format!("{}{}", s.tip, s.height) != lp {
                        break;
                    }
                    drop(s);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let mut s = state.lock().unwrap();
            s.templates += 1;
            let t = template(&s);
            let sent = t["longpollid"].as_str().expect("template has a longpollid").to_owned();
            s.gbt.push((p["longpollid"].as_str().map(str::to_owned), sent));
            drop(s);
            respond(&mut w, "200 OK", &ok(t))
        }
        "submitblock" => {
            if hang.load(Ordering::SeqCst) {
                // Never answer; hold the connection until the client gives up.
                std::thread::sleep(Duration::from_secs(3600));
                return Ok(());
            }
            let hexblock = req["params"][0].as_str().unwrap_or("").to_owned();
            if fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                state.lock().unwrap().refused_attempts.push(hexblock);
                return respond(&mut w, "503 Service Unavailable", "Work queue depth exceeded");
            }
            let mut s = state.lock().unwrap();
            let height = s.height;
            let result = check_block(&s, &hexblock);
            let (hash, accepted, reason) = match &result {
                Ok(b) => (b.block_hash(), true, None),
                Err(e) => {
                    let hash = hex::decode(&hexblock).ok().and_then(|b| b.get(..80).and_then(|h| bitcoin::consensus::deserialize::<bitcoin::block::Header>(h).ok())).map(|h| h.block_hash()).unwrap_or(BlockHash::all_zeros());
                    (hash, false, Some(e.clone()))
                }
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
            let e = json!({"result": null, "error": {"code": -32601, "message": format!("Method not found: {other}")}, "id": id});
            respond(&mut w, "404 Not Found", &e.to_string())
        }
    }
}
