//! `hashrig bench` with the monitor flags: the cgminer API and /metrics answer while it runs,
//! and the report is written when it ends. Bad monitor flags are usage errors (exit 2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

use crate::monitor_support;

fn ask(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

#[test]
fn bench_serves_api_and_metrics_while_running_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.html");
    let mut child = Command::cargo_bin("hashrig")
        .unwrap()
        // Long enough for a loaded CI box; the test ends the run with `quit` once it has seen
        // what it needs.
        .args(["bench", "--duration", "60", "--threads", "1", "--watts", "40", "--api-allow", "W:127.0.0.1"])
        .args(["--power-price", "0.10", "--btc-price", "90000", "--difficulty", "1e14"])
        .args(["--api", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--report"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The listeners say where they are on stderr.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut api = None;
    let mut metrics = None;
    let mut seen = Vec::new();
    while api.is_none() || metrics.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no listener lines: {seen:?}"));
        if let Some(a) = line.strip_prefix("cgminer API on ") {
            api = Some(a.parse::<SocketAddr>().unwrap());
        }
        if let Some(m) = line.strip_prefix("Prometheus metrics at http://") {
            metrics = Some(m.trim_end_matches("/metrics").parse::<SocketAddr>().unwrap());
        }
        seen.push(line);
    }
    let (api, metrics) = (api.unwrap(), metrics.unwrap());
    // Wait until the run has a couple of seconds behind it (samples for the chart).
    let t0 = std::time::Instant::now();
    loop {
        let mut raw = ask(api, br#"{"command":"summary"}"#);
        raw.pop();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        if v["SUMMARY"][0]["Elapsed"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the run never reached 2 s: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut raw = ask(api, br#"{"command":"summary+devs"}"#);
    assert_eq!(raw.pop(), Some(0), "NUL-terminated");
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let s = &v["summary"][0]["SUMMARY"][0];
    assert_eq!(v["summary"][0]["STATUS"][0]["STATUS"], "S");
    assert!(s["MHS av"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["Total MH"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["Hardware Errors"], 0);
    assert_eq!(v["devs"][0]["DEVS"][0]["CPU"], 0);

    let http = String::from_utf8(ask(metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap();
    assert!(http.starts_with("HTTP/1.1 200 OK"), "{http}");
    let line = http.lines().find(|l| l.starts_with("hashrig_hashes_total{")).expect("hashes counter");
    let hashes: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(hashes > 0.0, "{line}");
    assert!(http.contains("hashrig_power_watts{source="), "declared power is exported");
    assert!(http.trim_end().ends_with("# EOF"));

    let bye = String::from_utf8(ask(api, b"quit")).unwrap();
    assert!(bye.starts_with("STATUS=S,"), "{bye}");
    let status = child.wait().unwrap();
    assert!(status.success());
    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.contains("<figure id=\"hashrate-chart\""), "hashrate chart drawn");
    assert!(html.contains("<svg"), "inline SVG");
    assert!(html.contains("<script type=\"application/json\" id=\"run\">"));
    assert!(html.contains("(source: declared"), "power source named");
    assert!(html.contains("Revenue / day") && html.contains("Break-even power price"), "economics shown");
    assert!(html.contains("J/TH (power source: declared"), "J/TH with its source");
}

#[test]
fn api_on_a_public_address_without_allow_list_is_a_usage_error() {
    let out = Command::cargo_bin("hashrig")
        .unwrap()
        .args(["bench", "--duration", "1", "--threads", "1", "--api", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-allow"), "{err}");

    let out = Command::cargo_bin("hashrig")
        .unwrap()
        .args(["bench", "--duration", "1", "--api", "127.0.0.1:0", "--api-allow", "10.0.0.0/99"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10.0.0.0/99"));
}

fn empty_stats() -> hashrig_engine::Stats {
    hashrig_engine::Stats {
        elapsed_s: 10.0,
        hashes: 0,
        hashrate: 0.0,
        shares: 3,
        blocks: 0,
        stale: 0,
        accepted: 1,
        rejected: 2,
        hw_errors: 0,
        unknown_candidates: 0,
        jobs: 1,
        epoch: 1,
        devices: Vec::new(),
        samples: Vec::new(),
    }
}

#[test]
fn mine_bookkeeping_counts_pool_answers_by_pool_reason_and_difficulty() {
    use hashrig_cli::monitoring::{MonitorArgs, Monitoring};
    let mut m = Monitoring::start(&MonitorArgs::default(), hashrig_monitor::RunMode::Mine, None).unwrap();
    m.set_pools(&["stratum+tcp://a:1".into(), "stratum+tcp://b:2".into()], &["w1".into()]);
    m.pool_connected(1);
    m.pool_job(1, 512.0);
    m.share_found(0, 700.0);
    m.share_found(0, 9000.0);
    m.share_settled(1, 0, 512.0, &hashrig_miner::Fate::Accepted);
    m.share_settled(1, 0, 512.0, &hashrig_miner::Fate::pool_reject("Duplicate share"));
    m.share_settled(1, 0, 512.0, &hashrig_miner::Fate::pool_reject("Stale share"));
    m.pool_disconnected(0);
    let v = m.finish(&empty_stats()).unwrap();
    let b = &v.pools[1];
    assert!(b.active);
    assert_eq!(b.state, hashrig_monitor::PoolState::Alive);
    assert_eq!(b.user, "w1", "one user for all pools");
    assert_eq!((b.shares.accepted, b.shares.rejected, b.shares.stale), (1, 1, 1));
    assert_eq!(b.shares.difficulty_accepted, 512.0);
    assert_eq!(b.shares.reject_reasons.get("Duplicate share"), Some(&1));
    assert_eq!(v.pools[0].state, hashrig_monitor::PoolState::Dead);
    // Rig totals are the pools' answers, and the best share is kept.
    assert_eq!((v.shares.accepted, v.shares.rejected, v.shares.stale), (1, 1, 1));
    assert_eq!(v.best_share, 9000.0);
}

#[test]
fn emulated_chain_report_has_a_health_map_of_every_chip() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("emu.html");
    let out = Command::cargo_bin("hashrig")
        .unwrap()
        .args(["bench", "--backend", "emu:bm1370x4", "--duration", "3", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    let open = "<script type=\"application/json\" id=\"run\">";
    let at = html.find(open).unwrap() + open.len();
    let run: hashrig_monitor::RunView = serde_json::from_str(&html[at..at + html[at..].find("</script>").unwrap()]).unwrap();
    let chain = &run.devices[0];
    assert_eq!(chain.kind, hashrig_monitor::DeviceKind::Asic);
    assert_eq!(chain.chips.len(), 4, "one entry per chip from the driver's telemetry");
    let nonces: u64 = chain.chips.iter().map(|c| c.nonces).sum();
    assert!(nonces > 0, "the emulated chips returned nonces");
    assert!(chain.chips.iter().all(|c| c.cores.iter().all(|k| k.nonces + k.hw_errors > 0)));
    assert!(run.hashrate_ci.is_some(), "an estimated hashrate carries its interval");
    // The map draws a cell for each chip and each core that answered.
    let cells: usize = chain.chips.iter().map(|c| 1 + c.cores.len()).sum();
    assert!(html.contains(&format!("id=\"chip-map-0\" class=\"chart chip-map\" data-points=\"{cells}\"")));
}

/// Start `hashrig bench` with the API and return it with the API address from stderr.
fn bench_with_api(extra: &[&str]) -> (std::process::Child, SocketAddr, mpsc::Receiver<String>) {
    let cpu = !extra.contains(&"--backend");
    let mut child = Command::cargo_bin("hashrig")
        .unwrap()
        .args(["bench", "--api", "127.0.0.1:0"])
        .args(if cpu { &["--threads", "1"][..] } else { &[][..] })
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("cgminer API on ") {
                    break a.parse::<SocketAddr>().ok();
                }
            }
            Err(_) => break None,
        }
    };
    match addr {
        Some(addr) => (child, addr, rx),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no usable `cgminer API on ADDR` line on stderr");
        }
    }
}

#[test]
fn quit_from_a_write_allowed_address_ends_the_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("q.html");
    let (mut child, api, _rx) =
        bench_with_api(&["--duration", "60", "--api-allow", "W:127.0.0.1", "--report", report.to_str().unwrap()]);
    let t0 = std::time::Instant::now();
    let mut raw = ask(api, br#"{"command":"quit"}"#);
    raw.pop();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["STATUS"][0]["STATUS"], "S", "{v}");
    assert_eq!(v["STATUS"][0]["Msg"], "BYE");
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(t0.elapsed() < Duration::from_secs(10), "stopped well before --duration 60");
    assert!(report.exists(), "the report is written on quit too");
}

#[test]
fn quit_without_write_access_is_denied_and_the_run_goes_on() {
    let (mut child, api, _rx) = bench_with_api(&["--duration", "5"]);
    let text = String::from_utf8(ask(api, b"quit")).unwrap();
    assert!(text.starts_with("STATUS=E,") && text.contains("Code=45"), "{text}");
    // Still serving: the run was not stopped.
    let text = String::from_utf8(ask(api, b"summary")).unwrap();
    assert!(text.starts_with("STATUS=S,"), "{text}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn cpu_temperature_is_the_hottest_cpu_sensor_and_absent_without_one() {
    use hashrig_power::cpu_temperature_at as cpu_temperature;
    let root = tempfile::tempdir().unwrap();
    assert!(cpu_temperature(root.path()).is_none(), "no hwmon: no figure");
    let put = |dir: &str, name: &str, files: &[(&str, &str)]| {
        let d = root.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        for (f, v) in files {
            std::fs::write(d.join(f), v).unwrap();
        }
    };
    put("hwmon0", "nvme", &[("temp1_input", "90000\n")]); // not a CPU sensor
    put("hwmon1", "k10temp", &[("temp1_input", "61250\n"), ("temp3_input", "64500\n"), ("temp1_label", "Tctl\n")]);
    put("hwmon2", "coretemp", &[("temp2_input", "garbage\n")]);
    let t = cpu_temperature(root.path()).expect("a CPU sensor");
    assert_eq!(t.celsius, 64.5);
    assert_eq!(t.sensor, "hwmon:k10temp");
}

#[test]
fn pyasic_reads_a_running_bench_of_an_asic_chain() {
    let Some(python) = monitor_support::pyasic_python("pyasic_reads_a_running_bench_of_an_asic_chain") else { return };
    let (mut child, api, _rx) =
        bench_with_api(&["--backend", "emu:bm1370x4", "--duration", "60", "--api-allow", "W:127.0.0.1"]);
    // Let the run get a few seconds behind it.
    let t0 = std::time::Instant::now();
    loop {
        let mut raw = ask(api, br#"{"command":"summary"}"#);
        raw.pop();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        if v["SUMMARY"][0]["Elapsed"].as_u64().unwrap_or(0) >= 2 && v["SUMMARY"][0]["MHS 5s"].as_f64().unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the run never reached 2 s: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let p = monitor_support::probe(&python, api.port(), &[]);
    let _ = ask(api, b"quit");
    assert!(child.wait().unwrap().success());

    // pyasic's CGMiner backend (pyasic/miners/backends/cgminer.py): SUMMARY[0]["GHS 5s"],
    // VERSION[0]["CGMiner"], VERSION[0]["API"], STATS[1]["Elapsed"].
    let cg = &p["cgminer"];
    assert!(cg["fw_ver"].as_str().unwrap().starts_with("hashrig "), "{p}");
    assert_eq!(cg["api_ver"], "3.7");
    assert!(cg["uptime"].as_u64().unwrap() >= 2, "{p}");
    let pyasic_rate = cg["hashrate_hs"].as_f64().expect("pyasic found a hashrate");
    // The same figure the API's own MHS field gives (a later reply, so the 5 s window moved).
    let mhs_5s = p["raw"]["summary"]["SUMMARY"][0]["MHS 5s"].as_f64().unwrap() * 1e6;
    assert!(pyasic_rate > 0.0 && pyasic_rate / mhs_5s > 0.25 && pyasic_rate / mhs_5s < 4.0, "{pyasic_rate} vs {mhs_5s}");
    assert_eq!(cg["pools"].as_array().unwrap().len(), 0, "a bench has no pools");
    // Every other reply parsed by pyasic's reader.
    assert_eq!(p["raw"]["devs"]["DEVS"][0]["ASC"], 0);
    assert_eq!(p["raw"]["devdetails"]["DEVDETAILS"][0]["Kernel"], "bm1370");
    assert_eq!(p["raw"]["config"]["CONFIG"][0]["ASC Count"], 1);
    // pyasic's BMMiner backend (pyasic/miners/backends/bmminer.py) reads the chain from
    // STATS[1]: chain_acn1, chain_rate1 (GH/s).
    let boards = p["bmminer_boards"].as_array().unwrap();
    assert_eq!(boards[0]["chips"], 4, "{p}");
    assert_eq!(boards[0]["missing"], false);
    assert!(boards[0]["hashrate_hs"].as_f64().unwrap() > 0.0, "{p}");
    assert!(boards[1..].iter().all(|b| b["missing"] == true), "one chain only: {p}");
    assert!(p["bmminer_uptime"].as_u64().unwrap() >= 2);
}

#[test]
fn the_cpu_temperature_is_read_under_the_hwmon_root_override_like_the_power_meter() {
    // HASHRIG_HWMON_ROOT moves every hwmon read (the power meter's energy counters and the CPU
    // temperature alike): a test rig, a container or a chroot names its own tree.
    let dir = tempfile::tempdir().unwrap();
    let hw = dir.path().join("hwmon");
    let d = hw.join("hwmon7");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("name"), "coretemp\n").unwrap();
    std::fs::write(d.join("temp1_input"), "87654\n").unwrap();
    let report = dir.path().join("r.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"))
        .args(["bench", "--backend", "cpu", "--threads", "1", "--duration", "1", "--watts", "10", "--report"])
        .arg(&report)
        .env("HASHRIG_HWMON_ROOT", &hw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("87.7 °C"), "the override's coretemp reading is not in the report");
}
