//! A real `hashrig bench --report` of an emulated BM1370 chain, opened in headless Chromium:
//! both charts (hashrate over time, chip health map) are in the rendered DOM at a real size.
//! Without chromium: skipped loudly, or a failure under HASHRIG_REQUIRE_CHROMIUM=1 (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| path.split(':').map(move |d| Path::new(d).join(n)))
        .find(|p| p.is_file())
}

fn attr(html: &str, id: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open = html[..start].rfind('<')?;
    let close = start + html[start..].find('>')?;
    let tag = &html[open..close];
    let key = format!("{name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

#[test]
fn bench_report_of_an_asic_chain_renders_both_charts_in_chromium() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("HASHRIG_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("HASHRIG_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)");
        }
        eprintln!("SKIPPED bench_report_of_an_asic_chain_renders_both_charts_in_chromium: no chromium on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.html");
    let out = Command::cargo_bin("hashrig")
        .unwrap()
        .args(["bench", "--backend", "emu:bm1370x4", "--duration", "3", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", report.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes while waiting: a DOM bigger than the pipe buffer would block chromium.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_reader = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let err_reader = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&stderr));
    let dom = String::from_utf8(stdout).unwrap();

    assert!(dom.contains("data-report-ready=\"1\""), "the page's script ran");
    for id in ["hashrate-chart", "chip-map-0"] {
        let w: u32 = attr(&dom, id, "data-rendered-width").unwrap_or_else(|| panic!("#{id} not measured")).parse().unwrap();
        let h: u32 = attr(&dom, id, "data-rendered-height").unwrap().parse().unwrap();
        assert!(w >= 300 && h >= 100, "#{id} rendered {w}x{h}");
    }
    let drawn: usize = attr(&dom, "hashrate-chart", "data-line-points").unwrap().parse().unwrap();
    let samples: usize = attr(&dom, "hashrate-chart", "data-points").unwrap().parse().unwrap();
    assert!(samples >= 2, "a 3 s run has per-second samples");
    assert_eq!(drawn, samples, "the browser drew one vertex per sample");
    let cells: usize = attr(&dom, "chip-map-0", "data-points").unwrap().parse().unwrap();
    assert!(cells >= 4, "at least one cell per chip");
    assert!(dom.matches("<rect").count() >= cells);
}
