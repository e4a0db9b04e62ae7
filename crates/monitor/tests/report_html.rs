//! The HTML report: self-contained, charts as inline SVG holding the data, the run's JSON
//! embedded; and (when Debian's `chromium` is installed) rendered by headless Chromium, whose
//! DOM after layout must show both charts drawn at a real size.
//!
//! Without chromium the browser test is skipped loudly; with HASHRIG_REQUIRE_CHROMIUM=1 (CI
//! sets it after installing chromium) a missing browser fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hashrig_monitor::report::{render_html, write_report};
use hashrig_monitor::RunView;

/// The most vertices of any polyline inside the element with `id` (the data line; axes and
/// grid lines have two).
fn polyline_points(html: &str, id: &str) -> usize {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let fig = &html[start..];
    let fig = &fig[..fig.find("</figure>").expect("figure closes")];
    let counts: Vec<usize> = fig
        .match_indices("<polyline")
        .map(|(p, _)| {
            let pts = &fig[p..];
            let open = pts.find("points=\"").expect("polyline has points") + 8;
            let close = pts[open..].find('"').unwrap();
            pts[open..open + close].split_whitespace().count()
        })
        .collect();
    counts.into_iter().max().expect("a polyline in the chart")
}

fn count_in_figure(html: &str, id: &str, needle: &str) -> usize {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let fig = &html[start..];
    let fig = &fig[..fig.find("</figure>").expect("figure closes")];
    fig.matches(needle).count()
}

fn attr(html: &str, id: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    // Attributes of the element: back to its '<', forward to its '>'.
    let open = html[..start].rfind('<')?;
    let close = start + html[start..].find('>')?;
    let tag = &html[open..close];
    let key = format!("{name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

#[test]
fn report_is_self_contained_with_both_charts_and_the_run_json() {
    let view = common::rig();
    let html = render_html(&view).unwrap();
    // No network: nothing fetched from elsewhere.
    for needle in ["http://", "https://", "src=", "@import", "url("] {
        let hits: Vec<_> = html.match_indices(needle).map(|(i, _)| &html[i.saturating_sub(40)..i + 40]).collect();
        // The only URLs allowed are the SVG namespace declarations.
        assert!(hits.iter().all(|h| h.contains("www.w3.org")), "{needle}: {hits:?}");
    }
    assert_eq!(polyline_points(&html, "hashrate-chart"), common::SAMPLES, "one vertex per sample");
    assert_eq!(attr(&html, "hashrate-chart", "data-points").as_deref(), Some("30"));
    // Chip map: one cell per chip (its rate) and per core, plus the red outline of the weak chip.
    let cells = common::CHIPS * (common::CORES + 1);
    assert_eq!(attr(&html, "chip-map-1", "data-points"), Some(cells.to_string()));
    assert!(count_in_figure(&html, "chip-map-1", "<rect") > cells, "cells, outline and background");
    assert!(html.contains(&format!("<span id=\"weak-chips-1\">{}</span>", common::WEAK_CHIP)));
    assert!(html.contains("<tr class=\"weak\"><td>7</td>"));
    // Summary facts.
    assert!(html.contains("4.52 TH/s (95% CI 4.30 TH/s - 4.70 TH/s)"));
    assert!(html.contains("21.0 J/TH (power source: hwmon)"));
    assert!(html.contains("Break-even power price"));
    // The embedded JSON is the same run.
    let open = "<script type=\"application/json\" id=\"run\">";
    let at = html.find(open).unwrap() + open.len();
    let json = &html[at..at + html[at..].find("</script>").unwrap()];
    let back: RunView = serde_json::from_str(json).unwrap();
    assert_eq!(back, view);
}

#[test]
fn report_survives_hostile_names_and_an_empty_run() {
    let mut view = common::rig();
    view.devices[0].name = "</script><script>alert(1)</script>".into();
    let html = render_html(&view).unwrap();
    assert!(!html.contains("<script>alert(1)"), "names are escaped in HTML and in the JSON block");
    let open = "<script type=\"application/json\" id=\"run\">";
    let at = html.find(open).unwrap() + open.len();
    let json = &html[at..at + html[at..].find("</script>").unwrap()];
    let back: RunView = serde_json::from_str(json).unwrap();
    assert_eq!(back.devices[0].name, view.devices[0].name);

    let html = render_html(&RunView::default()).unwrap();
    assert!(html.contains("No hashrate samples were recorded."));
    assert!(html.contains("Power</th><td class=\"l\">unknown"));
}

fn find_chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Run chromium headless on `file` and return the DOM after load (scripts run).
fn dump_dom(chromium: &Path, file: &Path, profile: &Path) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--disable-quic",
            "--metrics-recording-only",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "chromium failed: {}", String::from_utf8_lossy(&stderr));
    String::from_utf8(stdout).expect("utf-8 DOM")
}

#[test]
fn report_renders_both_charts_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("HASHRIG_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("HASHRIG_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)");
        }
        eprintln!("SKIPPED report_renders_both_charts_in_headless_chromium: no chromium on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    write_report(&file, &common::rig()).unwrap();
    let dom = dump_dom(&chromium, &file, &dir.path().join("profile"));

    assert!(dom.contains("data-report-ready=\"1\""), "the page's script ran");
    // The SVGs are in the rendered DOM with their data.
    assert_eq!(polyline_points(&dom, "hashrate-chart"), common::SAMPLES);
    let cells = common::CHIPS * (common::CORES + 1);
    assert!(count_in_figure(&dom, "chip-map-1", "<rect") > cells);
    // Laid out at a real size (the script measured them after layout).
    for id in ["hashrate-chart", "chip-map-1"] {
        let w: u32 = attr(&dom, id, "data-rendered-width").unwrap_or_else(|| panic!("#{id} measured")).parse().unwrap();
        let h: u32 = attr(&dom, id, "data-rendered-height").unwrap().parse().unwrap();
        assert!(w >= 300 && h >= 100, "#{id} rendered {w}x{h}");
    }
    // The hashrate line spans most of the plot's width (samples cover the run).
    let line: u32 = attr(&dom, "hashrate-chart", "data-line-width").unwrap().parse().unwrap();
    assert!(line > 500, "line drawn {line} px wide");
    let parsed: usize = attr(&dom, "hashrate-chart", "data-line-points").unwrap().parse().unwrap();
    assert_eq!(parsed, common::SAMPLES, "the browser parsed one vertex per sample");
    // The profit chart: laid out at a real size, its lines drawn across the price axis, and
    // the run's point and the break-even ring in the rendered DOM.
    let w: u32 = attr(&dom, "profit-chart", "data-rendered-width").expect("#profit-chart measured").parse().unwrap();
    let h: u32 = attr(&dom, "profit-chart", "data-rendered-height").unwrap().parse().unwrap();
    assert!(w >= 300 && h >= 100, "#profit-chart rendered {w}x{h}");
    let line: u32 = attr(&dom, "profit-chart", "data-line-width").unwrap().parse().unwrap();
    assert!(line > 500, "profit line drawn {line} px wide");
    assert_eq!(attr(&dom, "profit-chart", "data-line-points").as_deref(), Some("41"));
    assert_eq!(count_in_figure(&dom, "profit-chart", "<circle"), 2, "the run's point and the break-even");
}

/// A tool, not a test: `HASHRIG_REPORT_SAMPLE=path.html cargo test --workspace --test
/// report_html -- --ignored write_sample_report` writes the sample report for a look by eye.
#[test]
#[ignore = "a tool for looking at the report by eye; run with --ignored and HASHRIG_REPORT_SAMPLE=PATH.html"]
fn write_sample_report() {
    let path = std::env::var("HASHRIG_REPORT_SAMPLE").expect("HASHRIG_REPORT_SAMPLE=PATH.html names where to write");
    write_report(Path::new(&path), &common::rig()).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
}
