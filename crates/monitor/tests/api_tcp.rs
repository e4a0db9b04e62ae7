//! The cgminer API over real TCP connections, read the way cgminer clients read it (pyasic:
//! read until the server closes, drop the NUL bytes, mend `}{`, parse JSON).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hashrig_monitor::*;
use serde_json::Value;

fn start(access: Access, actions: Arc<dyn Actions>) -> ApiServer {
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.access = access;
    cfg.read_timeout = Duration::from_millis(500);
    ApiServer::start(cfg, SharedView::new(common::rig()), actions).expect("bind 127.0.0.1:0")
}

/// Send `request`, half-close or not, read to EOF.
fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    if half_close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// pyasic's way of turning a reply into JSON.
fn pyasic_parse(raw: &[u8]) -> Value {
    let text = String::from_utf8(raw.to_vec()).expect("utf-8 reply");
    let text = text.replace('\0', "").replace("}{", "},{");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text:?}"))
}

fn plain(raw: &[u8]) -> String {
    assert_eq!(raw.last(), Some(&0), "plain replies end with NUL too");
    String::from_utf8(raw[..raw.len() - 1].to_vec()).unwrap()
}

#[test]
fn json_summary_answers_in_cgminer_layout_ending_with_nul() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    // Like most clients: send the request and wait, without closing the write side.
    let raw = exchange(srv.local_addr(), br#"{"command":"summary"}"#, false);
    assert_eq!(raw.last(), Some(&0), "cgminer ends every reply with a NUL byte");
    assert_eq!(raw.iter().filter(|&&b| b == 0).count(), 1);
    let v = pyasic_parse(&raw);
    let st = &v["STATUS"][0];
    assert_eq!(st["STATUS"], "S");
    assert_eq!(st["Code"], 11);
    assert_eq!(st["Msg"], "Summary");
    assert!(st["When"].as_u64().unwrap() > 1_600_000_000);
    assert!(st["Description"].as_str().unwrap().starts_with("hashrig "));
    let s = &v["SUMMARY"][0];
    assert_eq!(s["MHS av"], 4_520_000.0);
    assert_eq!(s["MHS 5s"], 4_420_000.0);
    // What Bitmain's builds send and pyasic reads.
    assert_eq!(s["GHS av"], 4520.0);
    assert_eq!(s["GHS 5s"], 4420.0);
    assert_eq!(s["Accepted"], 40);
    assert_eq!(s["Rejected"], 2);
    assert_eq!(s["Stale"], 1);
    assert_eq!(s["Hardware Errors"], 3);
    assert_eq!(s["Difficulty Accepted"], 40960.0);
    assert_eq!(s["Best Share"], 1.5e6);
    assert_eq!(s["Found Blocks"], 1);
    let valid: u64 = common::rig().valid_nonces();
    let hw_pct = s["Device Hardware%"].as_f64().unwrap();
    assert!((hw_pct - 300.0 / (valid + 3) as f64).abs() < 1e-9, "{hw_pct}");
    let rej_pct = s["Device Rejected%"].as_f64().unwrap();
    assert!((rej_pct - 200.0 / 43.0).abs() < 1e-9, "{rej_pct}");
    assert_eq!(s["Power Source"], "hwmon");
    assert_eq!(v["id"], 1);
}

#[test]
fn json_devs_and_pools_carry_per_device_and_per_pool_fields() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"devs"}"#, true));
    assert_eq!(v["STATUS"][0]["Code"], 9);
    let devs = v["DEVS"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0]["CPU"], 0);
    assert_eq!(devs[1]["ASC"], 1);
    assert_eq!(devs[1]["Temperature"], 71.5);
    assert_eq!(devs[1]["Hardware Errors"], 3);
    assert_eq!(devs[1]["Chips"], common::CHIPS);

    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"pools","parameter":"0"}"#, true));
    let pools = v["POOLS"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0]["URL"], "stratum+tcp://pool.example:3333");
    assert_eq!(pools[0]["Status"], "Alive");
    assert_eq!(pools[0]["Stratum Active"], true);
    assert_eq!(pools[1]["Status"], "Dead");
    assert_eq!(pools[0]["Difficulty Stale"], 1024.0);
}

#[test]
fn stats_lists_per_chip_counts_for_the_asic_chain() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"stats"}"#, true));
    assert_eq!(v["STATUS"][0]["Code"], 70);
    // Bitmain's layout: the software record, the whole miner, then our devices.
    assert!(v["STATS"][0]["CGMiner"].as_str().unwrap().starts_with("hashrig "), "{v}");
    let miner = &v["STATS"][1];
    assert_eq!(miner["miner_count"], 1, "one ASIC chain");
    assert_eq!(miner["chain_acn1"], common::CHIPS);
    assert_eq!(miner["temp1"], 71.5);
    assert_eq!(miner["chain_hw1"], 3);
    assert_eq!(miner["chain_rate1"], "4400.00", "GH/s over 5 s, as a string like Bitmain's");
    assert_eq!(miner["GHS 5s"], 4420.0, "the rig's 5 s rate in GH/s");
    assert_eq!(miner["total_rateideal"], 5000.0, "nominal, GH/s");
    assert_eq!(miner["Elapsed"], 60);
    let acs = miner["chain_acs1"].as_str().unwrap();
    assert_eq!(acs, " ooooooox oooo", "groups of 8, each after a space; chip 7 weak");
    let asic = &v["STATS"][3];
    assert_eq!(v["STATS"][2]["ID"], "CPU0");
    assert_eq!(asic["ID"], "ASC1");
    assert_eq!(asic["chain_acn"], common::CHIPS);
    let acs: String = asic["chain_acs"].as_str().unwrap().split_whitespace().collect();
    assert_eq!(acs.find('x'), Some(common::WEAK_CHIP), "{acs}");
    let weak = format!("chip{}_nonces", common::WEAK_CHIP);
    assert_eq!(asic[&weak], 20 * common::CORES as u64);
    assert_eq!(asic["chip0_core_nonces"], "0:100 1:100 2:100 3:100");
}

#[test]
fn version_config_devdetails_answer() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"version"}"#, true));
    assert_eq!(v["VERSION"][0]["API"], "3.7");
    // pyasic's CGMiner backend takes the firmware version from here.
    assert!(v["VERSION"][0]["CGMiner"].as_str().unwrap().starts_with("hashrig "), "{v}");
    assert_eq!(v["VERSION"][0]["Type"], "hashrig mine");
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"config"}"#, true));
    assert_eq!(v["CONFIG"][0]["ASC Count"], 1);
    assert_eq!(v["CONFIG"][0]["Pool Count"], 2);
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"devdetails"}"#, true));
    assert_eq!(v["DEVDETAILS"][1]["Kernel"], "bm1370");
}

#[test]
fn joined_commands_answer_each_under_its_name() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"summary+devs+pools"}"#, true));
    assert_eq!(v["summary"][0]["STATUS"][0]["STATUS"], "S");
    assert_eq!(v["summary"][0]["SUMMARY"][0]["Accepted"], 40);
    assert_eq!(v["devs"][0]["DEVS"][1]["ASC"], 1);
    assert_eq!(v["pools"][0]["POOLS"][0]["POOL"], 0);
}

#[test]
fn plain_text_requests_get_pipe_separated_sections() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let r = plain(&exchange(srv.local_addr(), b"summary", false));
    let sections: Vec<&str> = r.split('|').collect();
    assert!(sections[0].starts_with("STATUS=S,When="), "{r}");
    assert!(sections[0].contains(",Code=11,Msg=Summary,Description=hashrig "), "{r}");
    assert!(sections[1].starts_with("SUMMARY,Elapsed=60,MHS av=4520000,"), "{r}");
    assert!(sections[1].contains(",Hardware Errors=3,"), "{r}");
    assert_eq!(sections.len(), 3, "STATUS, SUMMARY and the empty tail: {r}");

    let r = plain(&exchange(srv.local_addr(), b"pools|0", false));
    let sections: Vec<&str> = r.split('|').collect();
    assert!(sections[1].starts_with("POOL=0,URL=stratum+tcp://pool.example:3333,Status=Alive"), "{r}");
    assert!(sections[2].starts_with("POOL=1,"), "{r}");
}

#[test]
fn malformed_requests_get_an_error_status_and_the_server_keeps_serving() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let cases: [(&[u8], u64); 4] = [
        (b"{\"command\":", 23),               // cut-off JSON: the read times out, then Invalid JSON
        (b"{\"parameter\":\"0\"}", 24),       // no command
        (b"{\"command\":[1,2]}", 14),         // command not a string
        (b"{\"command\":\"nosuch\"}", 14),    // unknown command
    ];
    for (req, code) in cases {
        let v = pyasic_parse(&exchange(srv.local_addr(), req, false));
        assert_eq!(v["STATUS"][0]["STATUS"], "E", "{req:?}");
        assert_eq!(v["STATUS"][0]["Code"], code, "{req:?}");
    }
    let r = plain(&exchange(srv.local_addr(), b"\xff\xfe\x00garbage", true));
    assert!(r.starts_with("STATUS=E,"), "{r}");
    let r = plain(&exchange(srv.local_addr(), b"summary+devs", true));
    assert!(r.starts_with("STATUS=E,") && r.contains("Code=14"), "plain requests cannot be joined: {r}");
    // Still alive.
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"summary"}"#, true));
    assert_eq!(v["STATUS"][0]["STATUS"], "S");
}

#[test]
fn oversized_request_is_refused_with_an_error_status() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let mut big = br#"{"command":"summary","parameter":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\"}");
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close before we finish writing: that is fine, the reply is what counts.
    let _ = s.write_all(&big);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let v = pyasic_parse(&raw);
    assert_eq!(v["STATUS"][0]["STATUS"], "E");
    assert!(v["STATUS"][0]["Msg"].as_str().unwrap().contains("too large"), "{v}");
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"version"}"#, true));
    assert_eq!(v["STATUS"][0]["STATUS"], "S");
}

#[test]
fn silent_client_is_dropped_after_the_read_timeout() {
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "closed by the server's 500 ms timeout");
    let r = plain(&raw);
    assert!(r.starts_with("STATUS=E,"), "{r}");
}

#[derive(Default)]
struct Recorder {
    switched_to: AtomicU32,
}
impl Actions for Recorder {
    fn switch_pool(&self, pool: u32) -> bool {
        self.switched_to.store(pool + 100, Ordering::SeqCst);
        true
    }
}

#[test]
fn write_commands_are_denied_without_write_access() {
    let rec = Arc::new(Recorder::default());
    let srv = start(Access::loopback_only(), rec.clone());
    for req in [&br#"{"command":"switchpool","parameter":1}"#[..], b"switchpool|1", b"quit", b"ascdisable|1"] {
        let raw = exchange(srv.local_addr(), req, true);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Code=45") || text.contains("\"Code\":45"), "{req:?}: {text}");
        assert!(text.contains("Access denied"), "{text}");
    }
    assert_eq!(rec.switched_to.load(Ordering::SeqCst), 0, "nothing ran");
}

#[test]
fn write_commands_run_for_allowed_addresses() {
    let rec = Arc::new(Recorder::default());
    let srv = start(Access::parse("W:127.0.0.1/32").unwrap(), rec.clone());
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"switchpool","parameter":"1"}"#, true));
    assert_eq!(v["STATUS"][0]["STATUS"], "S", "{v}");
    assert_eq!(v["STATUS"][0]["Code"], 27);
    assert_eq!(rec.switched_to.load(Ordering::SeqCst), 101);
    // Unsupported by this run (Recorder has no quit): an error, not a crash.
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"quit"}"#, true));
    assert_eq!(v["STATUS"][0]["STATUS"], "E");
    // Bad pool id.
    let v = pyasic_parse(&exchange(srv.local_addr(), br#"{"command":"switchpool","parameter":"9"}"#, true));
    assert_eq!(v["STATUS"][0]["Code"], 26);
}

#[test]
fn binding_beyond_loopback_needs_an_allow_list() {
    let cfg = ApiConfig::new("0.0.0.0:0".parse().unwrap());
    let err = ApiServer::start(cfg, SharedView::default(), Arc::new(NoActions)).unwrap_err();
    assert!(err.to_string().contains("--api-allow"), "{err}");
}

/// A client that sends `request` one byte every `gap`, then spaces, until told to stop, 5 s
/// have passed, or a write fails because the server has closed the connection for good (a
/// half-close alone does not stop it: the server may still be reading). Returns the stream to
/// read from and a thread that gives how long after connecting the first write failed.
fn trickler(
    addr: SocketAddr,
    request: &'static [u8],
    gap: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (TcpStream, std::thread::JoinHandle<Option<Duration>>) {
    let s = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    let mut w = s.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        let mut bytes = request.iter().copied().chain(std::iter::repeat(b' '));
        while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(5) {
            let b = bytes.next().unwrap();
            if w.write_all(&[b]).is_err() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(gap);
        }
        None
    });
    (s, t)
}

#[test]
fn trickling_client_is_cut_off_at_the_request_deadline() {
    // Deadline 500 ms (see `start`); one byte every 150 ms would keep a per-read timeout alive
    // for ever.
    let srv = start(Access::loopback_only(), Arc::new(NoActions));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut s, t) = trickler(srv.local_addr(), br#"{"command":"summary"}"#, Duration::from_millis(150), stop.clone());
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    // The reply to the incomplete request comes at the deadline, then the server half-closes.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = s.read(&mut chunk) {
        raw.extend_from_slice(&chunk[..n]);
    }
    let v = pyasic_parse(&raw);
    assert_eq!(v["STATUS"][0]["STATUS"], "E", "the incomplete request gets an error status: {v}");
    // The trickler keeps sending; the server must close for good soon after the deadline
    // (its writes then fail), not keep reading a byte every 150 ms.
    let cut = t.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let cut = cut.expect("the server was still reading the trickle after 5 s: it holds its slot");
    assert!(cut < Duration::from_millis(2500), "cut off only after {cut:?} (deadline 500 ms)");
    assert!(cut >= Duration::from_millis(400), "cut off before the deadline: {cut:?}");
}

#[test]
fn normal_client_is_answered_while_twenty_tricklers_are_connected() {
    // The defaults a run uses (2 s deadline, the default connection cap).
    let cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap());
    let srv = ApiServer::start(cfg, SharedView::new(common::rig()), Arc::new(NoActions)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tricklers: Vec<_> =
        (0..20).map(|_| trickler(srv.local_addr(), br#"{"command":"summary"}"#, Duration::from_millis(150), stop.clone())).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(br#"{"command":"summary"}"#).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for (_, t) in tricklers {
        let _ = t.join().unwrap();
    }
    assert!(!raw.is_empty(), "no answer ({took:?}): the tricklers took every slot");
    let v = pyasic_parse(&raw);
    assert_eq!(v["STATUS"][0]["STATUS"], "S", "{v}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
}

#[test]
fn connections_over_the_cap_are_closed_at_once() {
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.max_connections = 4;
    let srv = ApiServer::start(cfg, SharedView::new(common::rig()), Arc::new(NoActions)).unwrap();
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(srv.local_addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(br#"{"command":"summary"}"#);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(t0.elapsed() < Duration::from_millis(500), "the fifth waited {:?}: it queued", t0.elapsed());
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("\"STATUS\":\"S\""), "served past the cap: {text}");
    drop(idle);
}
