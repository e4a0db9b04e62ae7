//! `hashrig mine` with the monitor flags, against the scripted pool of tests/pool_support: the
//! cgminer API shows the pool and its answers while mining, /metrics counts rejects by the
//! pool's reason, and the report carries the same counts.

mod pool_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use pool_support::{Miner, PoolSpec, ScriptedPool, wait_for};

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
    let mut m = Miner::start(&args);
    assert!(
        wait_for(Duration::from_secs(20), || listener(&m.stderr(), "Prometheus metrics at http://").is_some()),
        "{}",
        m.stderr()
    );
    let api = listener(&m.stderr(), "cgminer API on ").expect("API address on stderr");
    let metrics = listener(&m.stderr(), "Prometheus metrics at http://").unwrap();

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
    assert!(run.best_share > 0.0);
    assert!(html.contains("<figure id=\"hashrate-chart\""));
}
