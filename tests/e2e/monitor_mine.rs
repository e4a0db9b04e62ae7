//! `hashrig mine` with the monitor flags, against the scripted pool of tests/e2e/pool_support.rs: the
//! cgminer API shows the pool and its answers while mining, /metrics counts rejects by the
//! pool's reason, and the report carries the same counts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::monitor_support;
use crate::pool_support;
use crate::pool_support::{Miner, PoolSpec, ScriptedPool, wait_for};

fn ask(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

fn listener(err: &str, prefix: &str) -> Option<SocketAddr> {
    err.lines().find_map(|l| l.strip_prefix(prefix)).map(|a| a.trim_end_matches("/metrics").parse().unwrap())
}

/// Start `hashrig mine` with `args` (which ask for `--api` and `--metrics`) and wait for both
/// listeners' addresses on its stderr.
fn start_with_listeners(args: &[String]) -> (Miner, SocketAddr, SocketAddr) {
    let m = Miner::start(args);
    assert!(
        wait_for(Duration::from_secs(20), || listener(&m.stderr(), "Prometheus metrics at http://").is_some()),
        "{}",
        m.stderr()
    );
    let api = listener(&m.stderr(), "cgminer API on ").expect("API address on stderr");
    let metrics = listener(&m.stderr(), "Prometheus metrics at http://").expect("metrics address on stderr");
    (m, api, metrics)
}

#[test]
fn mine_api_metrics_and_report_show_the_pools_answers() {
    // The pool announces difficulty 1/2048 but judges at 1/64: most shares are rejected as
    // "Low difficulty share", some accepted.
    let mut spec = PoolSpec::new("m");
    spec.judge_difficulty = Some(1.0 / 64.0);
    let pool = ScriptedPool::start(spec);
    let url = pool.url();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("mine.html");
    let args: Vec<String> = [
        // Long enough for a loaded CI box; the test ends the run with `quit` when done.
        "--pool", &url, "--user", "w", "--pass", "x", "--duration", "60", "--threads", "2",
        "--api", "127.0.0.1:0", "--api-allow", "W:127.0.0.1", "--metrics", "127.0.0.1:0", "--report", report.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut m, api, metrics) = start_with_listeners(&args);

    // Wait until the pool has answered something, as seen through the API.
    let mut pools = serde_json::Value::Null;
    let answered = wait_for(Duration::from_secs(20), || {
        let mut raw = ask(api, br#"{"command":"pools"}"#);
        raw.pop();
        pools = serde_json::from_slice(&raw).unwrap();
        pools["POOLS"][0]["Rejected"].as_u64().unwrap_or(0) > 0
    });
    assert!(answered, "no rejects seen through the API: {pools}\n{}", m.stderr());
    assert_eq!(pools["STATUS"][0]["STATUS"], "S");
    assert_eq!(pools["POOLS"][0]["URL"], url.as_str());
    assert_eq!(pools["POOLS"][0]["Status"], "Alive");
    assert_eq!(pools["POOLS"][0]["Stratum Active"], true);
    assert!(pools["POOLS"][0]["Work Difficulty"].as_f64().unwrap() > 0.0);

    let http = String::from_utf8(ask(metrics, b"GET /metrics HTTP/1.1\r\n\r\n")).unwrap();
    assert!(http.contains("hashrig_share_rejects_total{pool=\"0\",reason=\"Low difficulty share\"}"), "{http}");
    assert!(http.contains("hashrig_pool_up{pool=\"0\""), "{http}");
    // The share ledger is exported, and adds up.
    assert!(http.contains("hashrig_ledger_reconciles 1"), "{http}");
    assert!(http.contains("hashrig_ledger_shares{state=\"found\"}"), "{http}");
    let summary = json(ask(api, br#"{"command":"summary"}"#));
    let s = &summary["SUMMARY"][0];
    assert_eq!(s["Ledger Reconciles"], true, "{summary}");
    assert!(s["Shares Found"].as_u64().unwrap() >= s["Accepted"].as_u64().unwrap() + s["Rejected"].as_u64().unwrap(), "{summary}");

    let bye = String::from_utf8(ask(api, br#"{"command":"quit"}"#)).unwrap();
    assert!(bye.contains("\"Msg\":\"BYE\""), "{bye}");
    let status = m.wait(Duration::from_secs(30));
    assert!(status.success(), "{}", m.stderr());
    let html = std::fs::read_to_string(&report).expect("report written");
    let open = "<script type=\"application/json\" id=\"run\">";
    let at = html.find(open).unwrap() + open.len();
    let run: hashrig_monitor::RunView = serde_json::from_str(&html[at..at + html[at..].find("</script>").unwrap()]).unwrap();
    let p = &run.pools[0];
    let log = pool.log();
    // Every answer counted is one the pool gave: never more than it judged either way.
    assert!(p.shares.accepted as usize <= log.valid(), "{} > {}", p.shares.accepted, log.valid());
    assert!(p.shares.rejected as usize <= log.invalid().len());
    assert!(p.shares.rejected >= 1);
    assert_eq!(p.shares.reject_reasons.get("Low difficulty share").copied(), Some(p.shares.rejected));
    assert_eq!(run.shares.rejected, p.shares.rejected, "rig totals are the pools' sums");
    // The report carries the ledger: every share found ended somewhere, and the pool's answers
    // are the ledger's.
    let l = run.ledger.as_ref().expect("the report has the ledger");
    assert!(l.reconciles, "{l:?}");
    assert_eq!(l.found, l.accepted + l.rejected + l.stale + l.in_flight);
    assert_eq!((l.accepted, l.rejected), (p.shares.accepted, p.shares.rejected), "{l:?}");
    let err = m.stderr();
    assert!(err.contains("; ledger reconciles"), "{err}");
    assert!(run.best_share > 0.0);
    assert!(html.contains("<figure id=\"hashrate-chart\""));
}

fn json(raw: Vec<u8>) -> serde_json::Value {
    let mut raw = raw;
    assert_eq!(raw.pop(), Some(0), "cgminer replies end with NUL");
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&raw)))
}

#[test]
fn switchpool_moves_mining_to_the_named_pool_and_devices_count_their_answers() {
    // Pool 0 sends two garbage lines after authorize (protocol errors), then works normally.
    let mut a = PoolSpec::new("a");
    a.plan = std::sync::Arc::new(|_| pool_support::ConnPlan {
        garbage: vec!["{not json".into(), "[1,2,3]".into()],
        ..Default::default()
    });
    let a = ScriptedPool::start(a);
    let b = ScriptedPool::start(PoolSpec::new("b"));
    let args: Vec<String> = [
        "--pool", &a.url(), "--pool", &b.url(), "--user", "w", "--pass", "x", "--duration", "60", "--threads", "1",
        // A short failback interval: after switchpool the miner must stay on pool 1 anyway.
        "--failback-interval", "1",
        "--api", "127.0.0.1:0", "--api-allow", "W:127.0.0.1", "--metrics", "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut m, api, metrics) = start_with_listeners(&args);

    // Shares accepted by pool 0, counted for the device that found them.
    let mut v = serde_json::Value::Null;
    let ok = wait_for(Duration::from_secs(30), || {
        v = json(ask(api, br#"{"command":"summary+devs+pools"}"#));
        v["devs"][0]["DEVS"][0]["Accepted"].as_u64().unwrap_or(0) >= 2
    });
    assert!(ok, "no accepted shares per device: {v}\n{}", m.stderr());
    let dev = &v["devs"][0]["DEVS"][0];
    assert_eq!(dev["CPU"], 0);
    assert!(dev["Difficulty Accepted"].as_f64().unwrap() > 0.0, "{dev}");
    assert!(dev["Best Share"].as_f64().unwrap() >= 1.0 / 8192.0, "{dev}");
    assert!(dev["Last Share Time"].as_u64().unwrap() > 1_600_000_000, "{dev}");
    assert_eq!(v["pools"][0]["POOLS"][0]["Stratum Active"], true);
    assert_eq!(v["pools"][0]["POOLS"][0]["Priority"], 0);

    let http = String::from_utf8(ask(metrics, b"GET /metrics HTTP/1.1\r\n\r\n")).unwrap();
    let errors: f64 = http
        .lines()
        .filter(|l| l.starts_with("hashrig_pool_protocol_errors_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(errors >= 2.0, "the two garbage lines are counted: {http}");
    assert!(http.contains("hashrig_device_shares_total{device=\"0\",kind=\"cpu\",result=\"accepted\"}"), "{http}");

    // ascdisable pauses device 0 (cgminer's answer: I, code 111) and devs shows it disabled;
    // ascenable resumes it. A device that is not there is refused.
    let r = json(ask(api, br#"{"command":"ascdisable","parameter":"0"}"#));
    assert_eq!(r["STATUS"][0]["STATUS"], "I", "{r}");
    assert!(
        wait_for(Duration::from_secs(5), || {
            v = json(ask(api, br#"{"command":"devs"}"#));
            v["DEVS"][0]["Enabled"] == "N" && v["DEVS"][0]["Status"] == "Disabled"
        }),
        "{v}"
    );
    let r = json(ask(api, br#"{"command":"ascdisable","parameter":"7"}"#));
    assert_eq!(r["STATUS"][0]["STATUS"], "E", "{r}");
    let r = json(ask(api, br#"{"command":"ascenable","parameter":"0"}"#));
    assert_eq!(r["STATUS"][0]["STATUS"], "I", "{r}");
    assert!(
        wait_for(Duration::from_secs(5), || {
            v = json(ask(api, br#"{"command":"devs"}"#));
            v["DEVS"][0]["Enabled"] == "Y"
        }),
        "{v}"
    );

    // switchpool 1: pool 1 goes to the front of the failover order and gets the work.
    let r = json(ask(api, br#"{"command":"switchpool","parameter":"1"}"#));
    assert_eq!(r["STATUS"][0]["STATUS"], "S", "{r}");
    assert_eq!(r["STATUS"][0]["Code"], 27);
    let ok = wait_for(Duration::from_secs(20), || {
        v = json(ask(api, br#"{"command":"pools"}"#));
        v["POOLS"][1]["Stratum Active"] == true && !b.log().shares.is_empty()
    });
    assert!(ok, "pool 1 never got work: {v}\n{}", m.stderr());
    assert_eq!(v["POOLS"][1]["Priority"], 0, "{v}");
    assert_eq!(v["POOLS"][0]["Priority"], 1, "{v}");
    assert_eq!(v["POOLS"][0]["Stratum Active"], false, "{v}");
    // Several failback intervals later it is still on pool 1: the switch changed the order.
    let a_connections = a.log().connections;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.log().connections, a_connections, "no failback to pool 0\n{}", m.stderr());
    let v = json(ask(api, br#"{"command":"pools"}"#));
    assert_eq!(v["POOLS"][1]["Stratum Active"], true, "{v}");

    // A real client's view of the same (pyasic), where installed.
    if let Some(python) = monitor_support::pyasic_python("switchpool_moves_mining_to_the_named_pool (pyasic part)") {
        let p = monitor_support::probe(&python, api.port(), &["switchpool", "1"]);
        let pools = p["cgminer"]["pools"].as_array().unwrap();
        assert_eq!(pools.len(), 2, "{p}");
        assert_eq!(pools[1]["active"], true, "{p}");
        assert_eq!(pools[1]["alive"], true, "{p}");
        assert_eq!(pools[0]["active"], false, "{p}");
        assert!(pools[1]["url"].as_str().unwrap().contains(&b.addr.port().to_string()), "{p}");
        assert_eq!(p["write"]["ok"], true, "pyasic's switchpool succeeded: {p}");
    }

    let bye = json(ask(api, br#"{"command":"quit"}"#));
    assert_eq!(bye["STATUS"][0]["Msg"], "BYE");
    assert!(m.wait(Duration::from_secs(30)).success(), "{}", m.stderr());
}

fn device_stats(index: usize) -> hashrig_engine::DeviceStats {
    hashrig_engine::DeviceStats {
        index,
        info: hashrig_hasher::DeviceInfo {
            name: format!("cpu {index}"),
            kind: hashrig_hasher::DeviceKind::Cpu,
            kernel: "scalar".into(),
            lanes: 1,
            nominal_hashrate: None,
            hash_count: hashrig_hasher::HashCount::Exact,
            version_rolling: true,
        },
        hashes: 1000,
        hashrate: 100.0,
        hashrate_ci95: None,
        valid_nonces: 5,
        hw_errors: 0,
        hw_errors_by_origin: Vec::new(),
        device_errors: 0,
        last_error: None,
        failed: false,
        paused: false,
        health: None,
    }
}

#[test]
fn pool_answers_are_counted_per_device_and_unsent_stale_shares_count_for_the_rig() {
    use hashrig_cli::monitoring::{MonitorArgs, Monitoring};
    use hashrig_miner::{Fate, StaleReason};
    let mut m = Monitoring::start(&MonitorArgs::default(), hashrig_monitor::RunMode::Mine, None).unwrap();
    m.set_pools(&["stratum+tcp://a:1".into()], &["w".into()]);
    m.pool_connected(0);
    m.pool_job(0, 4.0);
    // Device 0: two accepted, one rejected; device 1: one stale reject, one dropped unsent.
    for (dev, diff) in [(0, 5.0), (0, 70.0), (0, 6.0), (1, 9.0), (1, 11.0)] {
        m.share_found(dev, diff);
    }
    m.share_settled(0, 0, 4.0, &Fate::Accepted);
    m.share_settled(0, 0, 4.0, &Fate::Accepted);
    m.share_settled(0, 0, 4.0, &Fate::pool_reject("Duplicate share"));
    m.share_settled(0, 1, 4.0, &Fate::pool_reject("Stale share"));
    m.share_settled(0, 1, 4.0, &Fate::Stale(StaleReason::JobReplaced));
    // The pool's answer to a share found by no device this run is counted for the pool.
    m.share_settled(0, 7, 4.0, &Fate::Accepted);
    // The stratum client's own counters: protocol errors, failover order.
    let mut client = hashrig_stratum::ClientStats { stale: 2, order: vec![0], ..Default::default() };
    client.protocol_errors.insert("invalid JSON", 3);
    m.client_stats(&client);

    let mut stats = hashrig_engine::Stats {
        elapsed_s: 10.0,
        hashes: 2000,
        hashrate: 200.0,
        shares: 6,
        blocks: 0,
        stale: 1, // found on work a clean job had voided: never handed out
        accepted: 3,
        rejected: 2,
        hw_errors: 0,
        unknown_candidates: 0,
        jobs: 1,
        epoch: 1,
        devices: vec![device_stats(0), device_stats(1)],
        samples: Vec::new(),
    };
    stats.devices[1].hashes = 500;
    let v = m.finish(&stats).unwrap();
    let (d0, d1) = (&v.devices[0], &v.devices[1]);
    assert_eq!((d0.accepted, d0.rejected, d0.stale), (2, 1, 0));
    assert_eq!(d0.difficulty_accepted, 8.0, "two shares at the pool's difficulty 4");
    assert_eq!(d0.difficulty_rejected, 4.0);
    assert_eq!(d0.best_share, 70.0);
    assert!(d0.last_share_unix.is_some());
    assert_eq!((d1.accepted, d1.rejected, d1.stale), (0, 0, 2), "a stale answer and a dropped share");
    assert_eq!(d1.best_share, 11.0);
    // The pool counted every answer; the rig adds what was never sent.
    let p = &v.pools[0].shares;
    assert_eq!((p.accepted, p.rejected, p.stale), (3, 1, 1));
    assert_eq!(v.shares.stale, 1 + 1 + 1, "pool-stale + stale in the ledger + engine-stale");
    assert_eq!(v.protocol_errors.get("invalid JSON"), Some(&3));

    // The same through the API and /metrics encoders.
    let mut raw = hashrig_monitor::cgminer::respond(br#"{"command":"summary+devs"}"#, &v, hashrig_monitor::Level::Read, &hashrig_monitor::NoActions);
    raw.pop();
    let api: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(api["summary"][0]["SUMMARY"][0]["Stale"], 3);
    assert_eq!(api["devs"][0]["DEVS"][0]["Accepted"], 2);
    assert_eq!(api["devs"][0]["DEVS"][0]["Difficulty Accepted"], 8.0);
    assert_eq!(api["devs"][0]["DEVS"][0]["Best Share"], 70.0);
    assert_eq!(api["devs"][0]["DEVS"][1]["Stale"], 2);
    let text = hashrig_monitor::metrics::render(&v).unwrap();
    assert!(text.contains("hashrig_rig_shares_total{result=\"stale\"} 3"), "{text}");
    assert!(text.contains("hashrig_pool_protocol_errors_total{kind=\"invalid JSON\"} 3"), "{text}");
    assert!(text.contains("hashrig_device_shares_total{device=\"1\",kind=\"cpu\",result=\"stale\"} 2"), "{text}");
}
