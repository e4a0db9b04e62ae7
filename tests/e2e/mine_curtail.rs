//! `hashrig mine --curtail-above` against the scripted pool, with a price command that reads a
//! file the test rewrites: a high price pauses the device (the API shows it disabled and the
//! hashes stop), a low one resumes it, and the time curtailed and the cost avoided are counted
//! in the final line, the API, /metrics and the report. A failing price command is reported
//! and mining goes on; bad curtailment flags exit 2.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::pool_support::{Miner, PoolSpec, ScriptedPool, wait_for};

fn ask(addr: SocketAddr, req: &[u8]) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    while raw.last() == Some(&0) {
        raw.pop();
    }
    serde_json::from_slice(&raw).unwrap()
}

fn listener(err: &str, prefix: &str) -> Option<SocketAddr> {
    err.lines().find_map(|l| l.strip_prefix(prefix)).map(|a| a.trim_end_matches("/metrics").parse().unwrap())
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn set_price(file: &Path, price: &str) {
    // Written whole then renamed, so the command never reads half a file.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, price).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn total_mh(api: SocketAddr) -> f64 {
    ask(api, br#"{"command":"summary"}"#)["SUMMARY"][0]["Total MH"].as_f64().unwrap()
}

#[test]
fn a_high_price_pauses_mining_and_a_low_one_resumes_it() {
    let pool = ScriptedPool::start(PoolSpec::new("c"));
    let url = pool.url();
    let dir = tempfile::tempdir().unwrap();
    let price = dir.path().join("price");
    set_price(&price, "0.05\n");
    let report = dir.path().join("mine.html");
    let cmd = format!("cat '{}'", price.display());
    let m = Miner::start(&args(&[
        "--pool", &url, "--user", "w", "--pass", "x", "--duration", "90", "--threads", "1", "--status-interval", "0.5",
        "--power-price-cmd", &cmd, "--power-price-interval", "0.5", "--curtail-above", "0.10", "--watts", "100",
        "--api", "127.0.0.1:0", "--api-allow", "W:127.0.0.1", "--metrics", "127.0.0.1:0", "--report", report.to_str().unwrap(),
    ]));
    let mut m = m;
    assert!(wait_for(Duration::from_secs(20), || listener(&m.stderr(), "Prometheus metrics at http://").is_some()), "{}", m.stderr());
    let api = listener(&m.stderr(), "cgminer API on ").expect("API address");
    let metrics = listener(&m.stderr(), "Prometheus metrics at http://").expect("metrics address");

    // 0.05 USD/kWh: mining, the hashes grow.
    assert!(wait_for(Duration::from_secs(20), || total_mh(api) > 0.0), "{}", m.stderr());
    let a = total_mh(api);
    assert!(wait_for(Duration::from_secs(10), || total_mh(api) > a), "hashes do not grow at a low price\n{}", m.stderr());
    let s = ask(api, br#"{"command":"summary"}"#);
    assert_eq!(s["SUMMARY"][0]["Curtailed"], false, "{s}");
    assert_eq!(s["SUMMARY"][0]["Power Price"], 0.05, "{s}");

    // 0.50: curtailed within a few seconds; the device shows disabled and the hashes stop.
    set_price(&price, "0.50 USD/kWh\n");
    let mut devs = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            devs = ask(api, br#"{"command":"devs"}"#);
            devs["DEVS"][0]["Status"] == "Disabled"
        }),
        "{devs}\n{}",
        m.stderr()
    );
    assert!(m.stderr().contains("curtailed: power price 0.5 USD/kWh is above 0.1000 USD/kWh"), "{}", m.stderr());
    // A unit in flight may still finish; then nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    let b = total_mh(api);
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(total_mh(api), b, "hashes grow while curtailed\n{}", m.stderr());
    let s = ask(api, br#"{"command":"summary"}"#);
    assert_eq!(s["SUMMARY"][0]["Curtailed"], true, "{s}");
    assert!(s["SUMMARY"][0]["Curtailed Seconds"].as_f64().unwrap() > 0.0, "{s}");
    let http = {
        let mut st = TcpStream::connect(metrics).unwrap();
        st.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut t = String::new();
        st.read_to_string(&mut t).unwrap();
        t
    };
    assert!(http.contains("hashrig_curtailed 1"), "{http}");
    assert!(http.contains("hashrig_curtailed_seconds "), "{http}");
    assert!(http.contains("hashrig_curtail_cost_avoided_usd "), "{http}");

    // 0.097 is below the threshold but above 95 % of it: still curtailed (hysteresis).
    set_price(&price, "0.097\n");
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(ask(api, br#"{"command":"devs"}"#)["DEVS"][0]["Status"], "Disabled");

    // 0.05: resumed, the hashes grow again.
    set_price(&price, "0.05\n");
    assert!(
        wait_for(Duration::from_secs(10), || ask(api, br#"{"command":"devs"}"#)["DEVS"][0]["Status"] == "Alive"),
        "{}",
        m.stderr()
    );
    let c = total_mh(api);
    assert!(wait_for(Duration::from_secs(10), || total_mh(api) > c), "hashes do not grow after resuming\n{}", m.stderr());
    assert!(m.stderr().contains("curtailment over: power price 0.05 USD/kWh"), "{}", m.stderr());

    let s = ask(api, br#"{"command":"summary"}"#);
    let s = &s["SUMMARY"][0];
    assert!(s["Curtailed Seconds"].as_f64().unwrap() > 2.0, "{s}");
    assert!(s["Curtail Cost Avoided"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["Power Price Errors"], 0, "{s}");

    let bye = ask(api, br#"{"command":"quit"}"#);
    assert_eq!(bye["STATUS"][0]["Msg"], "BYE", "{bye}");
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("mined ")).expect("final line");
    assert!(last.contains("; ledger reconciles"), "{last}");
    let secs: f64 = last.split(", curtailed ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(secs > 2.0, "{last}");
    let avoided: f64 = last.split("cost avoided $").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(avoided > 0.0, "{last}");
    assert!(last.contains("(1 time)"), "{last}");
    // The status line carries it too.
    assert!(err.lines().any(|l| l.contains("CURTAILED (price 0.5 USD/kWh > 0.1000)")), "{err}");

    // The report's JSON.
    let html = std::fs::read_to_string(&report).expect("report written");
    let open = "<script type=\"application/json\" id=\"run\">";
    let at = html.find(open).unwrap() + open.len();
    let run: serde_json::Value = serde_json::from_str(&html[at..at + html[at..].find("</script>").unwrap()]).unwrap();
    let c = &run["curtail"];
    assert!(c["curtailed_s"].as_f64().unwrap() > 2.0, "{c}");
    assert!(c["cost_avoided_usd"].as_f64().unwrap() > 0.0, "{c}");
    assert_eq!(c["curtailments"], 1, "{c}");
    assert_eq!(c["curtailed"], false, "{c}");
    assert_eq!(run["ledger"]["reconciles"], true, "{run}");
}

#[test]
fn a_failing_price_command_is_reported_and_mining_goes_on() {
    let pool = ScriptedPool::start(PoolSpec::new("f"));
    let url = pool.url();
    let mut m = Miner::start(&args(&[
        "--pool", &url, "--user", "w", "--pass", "x", "--duration", "4", "--threads", "1", "--status-interval", "0.5",
        "--power-price-cmd", "echo oops; exit 1", "--power-price-interval", "0.5", "--curtail-above", "0.10", "--watts", "100",
        "--price-hold", "1",
    ]));
    let status = m.wait(Duration::from_secs(60));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    assert!(err.contains("power price reading failed"), "{err}");
    assert!(err.contains("the price command failed"), "{err}");
    assert!(err.contains("no good power price for longer than the hold"), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("mined ")).expect("final line");
    assert!(last.contains("curtailed 0.0 s (0 times)"), "{last}");
    assert!(!last.contains("price errors 0;"), "{last}");
    assert!(last.contains("; ledger reconciles"), "{last}");
    // Mining went on: shares reached the pool.
    assert!(pool.log().valid() >= 1, "{err}");
    let hashes: u64 = last.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(hashes > 0, "{last}");
}

#[test]
fn curtailment_without_a_threshold_or_with_a_negative_one_is_bad_input() {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"))
            .args(["mine", "--pool", "stratum+tcp://127.0.0.1:1", "--user", "w"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["--curtail", "--power-price-cmd", "echo 0.05", "--watts", "100"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--curtail needs a threshold") && err.contains("--curtail-above"), "{err}");
    let (code, err) = run(&["--curtail"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--power-price-cmd"), "{err}");
    let (code, err) = run(&["--power-price-cmd", "echo 0.05", "--curtail-above", "-0.1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--curtail-above") && err.contains("negative"), "{err}");
    let (code, err) = run(&["--power-price-cmd", "echo 0.05", "--curtail-above", "cheap"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a number"), "{err}");
}

#[test]
fn the_break_even_from_a_hashprice_is_the_threshold() {
    // A CPU at 100 W earns next to nothing at any hashprice: its break-even is far below any
    // real price, so 0.05 USD/kWh curtails it once the rate is measured.
    let pool = ScriptedPool::start(PoolSpec::new("b"));
    let url = pool.url();
    let mut m = Miner::start(&args(&[
        "--pool", &url, "--user", "w", "--pass", "x", "--duration", "8", "--threads", "1", "--status-interval", "0.5",
        "--power-price-cmd", "echo 0.05", "--power-price-interval", "0.5", "--curtail", "--hashprice", "40", "--power-price", "0.05", "--watts", "100",
    ]));
    let status = m.wait(Duration::from_secs(60));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    assert!(err.contains("break-even power price worked out"), "{err}");
    assert!(err.contains("curtailed: power price 0.05 USD/kWh is above"), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("mined ")).expect("final line");
    assert!(last.contains("(1 time)") && last.contains("; ledger reconciles"), "{last}");
}
