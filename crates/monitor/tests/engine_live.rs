//! A live engine (the real CPU hasher) feeding the monitor: the cgminer API and /metrics show
//! the engine's own counts while it runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashrig_engine::{Engine, EngineConfig, Share};
use hashrig_hasher_cpu::{CpuConfig, CpuHasher};
use hashrig_monitor::engine::{Extras, Tracker};
use hashrig_monitor::*;
use hashrig_work::Job;
use hashrig_work::target::target_from_difficulty;

fn ask(addr: std::net::SocketAddr, req: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(raw.pop(), Some(0));
    serde_json::from_slice(&raw).unwrap()
}

#[test]
fn api_shows_the_running_engines_counts() {
    let cpu = CpuHasher::new(&CpuConfig { threads: Some(1), ..Default::default() }).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Share>();
    let cfg = EngineConfig {
        first_unit_hashes: 1 << 16,
        sample_interval: Duration::from_millis(100),
        unit_seconds: 0.1,
        ..Default::default()
    };
    let engine = Engine::start(vec![Box::new(cpu)], tx, cfg).unwrap();
    engine.set_job(Job::synthetic("live", 7, target_from_difficulty(1.0 / 65536.0).unwrap()));

    let view = SharedView::default();
    let api = ApiServer::start(ApiConfig::new("127.0.0.1:0".parse().unwrap()), view.clone(), Arc::new(NoActions)).unwrap();
    let extras = Extras { mode: hashrig_monitor::RunMode::Bench, ..Default::default() };
    let mut tracker = Tracker::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1200) {
        view.set(tracker.view(&engine.stats(), &extras));
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = ask(api.local_addr(), r#"{"command":"summary+devs"}"#);
    let stats = engine.stop();
    drop(rx);
    let s = &live["summary"][0]["SUMMARY"][0];
    let mhs_av = s["MHS av"].as_f64().unwrap();
    assert!(mhs_av > 0.0, "{s}");
    // The average the API showed is the engine's, within the drift of one more snapshot.
    assert!((mhs_av - stats.hashrate / 1e6).abs() / (stats.hashrate / 1e6) < 0.5, "{mhs_av} vs {}", stats.hashrate);
    assert!(s["MHS 5s"].as_f64().unwrap() > 0.0);
    assert_eq!(s["Hardware Errors"], 0);
    assert!(s["Total MH"].as_f64().unwrap() <= stats.hashes as f64 / 1e6);
    let d = &live["devs"][0]["DEVS"][0];
    assert_eq!(d["CPU"], 0);
    assert!(d["Diff1 Work"].as_u64().unwrap() > 0, "shares were found at difficulty 1/65536: {d}");

    // The final view: samples give the chart a series, and the report renders.
    let final_view = tracker.view(&stats, &extras);
    assert!(final_view.samples.len() >= 5, "{} samples", final_view.samples.len());
    // A 100 ms interval on a loaded box may see no batch finish, so single points may be 0;
    // the series as a whole must account for the hashes done (rate x interval, summed).
    assert!(final_view.samples.iter().all(|x| x.hashrate.is_finite() && x.hashrate >= 0.0));
    let mut t = 0.0;
    let integral: f64 = final_view
        .samples
        .iter()
        .map(|x| {
            let h = x.hashrate * (x.t_s - t);
            t = x.t_s;
            h
        })
        .sum();
    assert!(integral > 0.0 && integral <= stats.hashes as f64 * 1.000_001, "{integral} vs {}", stats.hashes);
    let html = report::render_html(&final_view).unwrap();
    assert!(html.contains("id=\"hashrate-chart\""));
    let m = metrics::render(&final_view).unwrap();
    assert!(m.contains(&format!("hashrig_hashes_total{{device=\"0\",kind=\"cpu\"}} {}", stats.devices[0].hashes as f64)), "{m}");
}
