//! `hashrig mine` on a Stratum V2 pool: the SV2 test pool of hashrig-sv2 (its share checks are
//! channels_sv2's server-side extended or standard channel, the reference implementation's code). Every
//! share the binary counts accepted is one the pool credited, and the pool shows as SV2 with its
//! channel kind in the API, the metrics, the status line and the report.

use std::net::SocketAddr;
use std::time::Duration;

use hashrig_sv2::testkit::{TestPool, TestPoolConfig, other_authority_key};

use crate::pool_support::{Miner, wait_for};

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn listener(err: &str, prefix: &str) -> Option<SocketAddr> {
    err.lines().find_map(|l| l.strip_prefix(prefix)).map(|a| a.trim_end_matches("/metrics").parse().unwrap())
}

fn ask(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

/// The pool runs on its own runtime for the length of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// The accepted count of the final line ("mined ... shares found N: accepted A ...").
pub fn final_accepted(err: &str) -> Option<u64> {
    let line = err.lines().rev().find(|l| l.starts_with("mined "))?;
    let rest = &line[line.find("accepted ")? + "accepted ".len()..];
    rest.split_whitespace().next()?.trim_end_matches([',', ';']).parse().ok()
}

#[test]
fn mine_on_an_sv2_pool_every_accepted_share_is_credited_and_shown_as_sv2() {
    let rt = runtime();
    let pool = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let url = pool.url();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("mine.html");
    let mut m = Miner::start(&args(&[
        "--pool", &url, "--user", "tb1qexample.rig1", "--duration", "60", "--threads", "1", "--status-interval", "0.5",
        "--api", "127.0.0.1:0", "--api-allow", "W:127.0.0.1", "--metrics", "127.0.0.1:0", "--report", report.to_str().unwrap(),
    ]));
    assert!(wait_for(Duration::from_secs(20), || listener(&m.stderr(), "Prometheus metrics at http://").is_some()), "{}", m.stderr());
    let api = listener(&m.stderr(), "cgminer API on ").expect("API address");
    let metrics = listener(&m.stderr(), "Prometheus metrics at http://").unwrap();
    let mut pools = serde_json::Value::Null;
    let answered = wait_for(Duration::from_secs(30), || {
        let mut raw = ask(api, br#"{"command":"pools"}"#);
        raw.pop();
        pools = serde_json::from_slice(&raw).unwrap();
        pools["POOLS"][0]["Accepted"].as_u64().unwrap_or(0) >= 3
    });
    assert!(answered, "no accepted shares through the API: {pools}\n{}", m.stderr());
    let p = &pools["POOLS"][0];
    assert_eq!(p["URL"], url.as_str());
    assert_eq!(p["Status"], "Alive");
    assert_eq!(p["Protocol"], "stratum2");
    assert_eq!(p["Channel"], "extended");
    assert_eq!(p["Stratum Active"], true);
    let http = String::from_utf8(ask(metrics, b"GET /metrics HTTP/1.1\r\n\r\n")).unwrap();
    assert!(
        http.lines().any(|l| l.starts_with("hashrig_pool_protocol{") && l.contains("protocol=\"stratum2\"") && l.contains("channel=\"extended\"") && l.ends_with(" 1.0")),
        "{http}"
    );
    let bye = String::from_utf8(ask(api, br#"{"command":"quit"}"#)).unwrap();
    assert!(bye.contains("BYE"), "{bye}");
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    let stats = pool.stats();
    let accepted = final_accepted(&err).unwrap_or_else(|| panic!("no final line:\n{err}"));
    assert_eq!(accepted, stats.credited, "hashrig's accepted vs the pool's credited: {stats:#?}\n{err}");
    assert!(stats.rejected.is_empty(), "{stats:#?}");
    assert!(err.contains("ledger reconciles"), "{err}");
    assert!(err.contains(&format!("pool #0 {url} (extended channel)")), "status line: {err}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("(extended channel)"), "the report's pools table shows the channel");
}

#[test]
fn a_wrong_authority_key_is_refused_and_said_so() {
    let rt = runtime();
    let pool = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let url = format!("stratum2+tcp://{}/{}", pool.addr(), other_authority_key());
    let mut m = Miner::start(&args(&["--pool", &url, "--user", "w", "--duration", "3", "--threads", "1"]));
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    assert!(err.contains("not signed by the authority key in the pool URL"), "{err}");
    assert_eq!(pool.stats().channels_opened, 0);
    assert_eq!(final_accepted(&err), Some(0), "{err}");
}

#[test]
fn a_bad_sv2_url_is_refused_before_mining_even_beside_a_good_v1_pool() {
    let mut m = Miner::start(&args(&["--pool", "stratum2+tcp://127.0.0.1:3336", "--user", "w", "--duration", "1"]));
    let status = m.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{}", m.stderr());
    assert!(m.stderr().contains("authority public key is missing"), "{}", m.stderr());
    // In a list with a v1 pool (mixed lists are fine): still refused, before any connection.
    let mut m = Miner::start(&args(&["--pool", "stratum+tcp://127.0.0.1:3333", "--pool", "stratum2+tcp://127.0.0.1:3336", "--user", "w", "--duration", "1"]));
    let status = m.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{}", m.stderr());
    assert!(m.stderr().contains("authority public key is missing"), "{}", m.stderr());
}

#[test]
fn an_sv2_pool_in_the_config_file_mines_like_one_on_the_command_line() {
    let rt = runtime();
    let pool = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hashrig.toml");
    std::fs::write(&cfg, format!("[[pool]]\nurl = \"{}\"\nuser = \"w.cfg\"\n\n[backend]\nthreads = 1\n", pool.url())).unwrap();
    let mut m = Miner::start(&args(&["--config", cfg.to_str().unwrap(), "--duration", "4"]));
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    let stats = pool.stats();
    assert_eq!(stats.channels_opened, 1, "{stats:#?}\n{err}");
    assert_eq!(final_accepted(&err), Some(stats.credited), "{stats:#?}\n{err}");
    assert!(err.contains("ledger reconciles"), "{err}");
}

#[test]
fn mine_on_a_standard_channel_chosen_in_the_url_every_accepted_share_is_credited() {
    let rt = runtime();
    let pool = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let url = format!("{}?channel=standard", pool.url());
    let mut m = Miner::start(&args(&[
        "--pool", &url, "--user", "tb1qexample.rig1", "--duration", "60", "--threads", "1", "--status-interval", "0.5",
        "--api", "127.0.0.1:0", "--api-allow", "W:127.0.0.1",
    ]));
    assert!(wait_for(Duration::from_secs(20), || listener(&m.stderr(), "cgminer API on ").is_some()), "{}", m.stderr());
    let api = listener(&m.stderr(), "cgminer API on ").expect("API address");
    let mut pools = serde_json::Value::Null;
    let answered = wait_for(Duration::from_secs(30), || {
        let mut raw = ask(api, br#"{"command":"pools"}"#);
        raw.pop();
        pools = serde_json::from_slice(&raw).unwrap();
        pools["POOLS"][0]["Accepted"].as_u64().unwrap_or(0) >= 3
    });
    assert!(answered, "no accepted shares through the API: {pools}\n{}", m.stderr());
    let p = &pools["POOLS"][0];
    assert_eq!(p["Protocol"], "stratum2");
    assert_eq!(p["Channel"], "standard");
    let bye = String::from_utf8(ask(api, br#"{"command":"quit"}"#)).unwrap();
    assert!(bye.contains("BYE"), "{bye}");
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    let stats = pool.stats();
    assert_eq!(stats.standard_channels, 1, "{stats:#?}\n{err}");
    assert_ne!(stats.setup_flags[0] & hashrig_sv2::client::REQUIRES_STANDARD_JOBS, 0, "SetupConnection asked for standard jobs");
    let accepted = final_accepted(&err).unwrap_or_else(|| panic!("no final line:\n{err}"));
    assert!(accepted >= 3, "{err}");
    assert_eq!(accepted, stats.credited, "hashrig's accepted vs the pool's credited: {stats:#?}\n{err}");
    assert!(stats.rejected.is_empty(), "{stats:#?}");
    assert!(err.contains("ledger reconciles"), "{err}");
    assert!(err.contains("(standard channel)"), "status line: {err}");
}
