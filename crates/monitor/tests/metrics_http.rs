//! `/metrics` scraped over real HTTP/1.1 and parsed by a strict parser of the OpenMetrics text
//! format (written here, from the OpenMetrics 1.0 spec: `# TYPE`/`# HELP`/`# UNIT` lines,
//! `name{label="value",...} number` samples, label values with `\\`, `\"`, `\n` escapes,
//! counter samples named `<family>_total`, one `# EOF` at the very end).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hashrig_monitor::*;

struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

fn http_get(addr: SocketAddr, raw_request: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw_request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head ended by CRLF CRLF");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    // The server answers in the request's version (an HTTP/1.0 client gets HTTP/1.0).
    let version = raw_request.lines().next().and_then(|l| l.split(' ').nth(2)).filter(|v| *v == "HTTP/1.0").unwrap_or("HTTP/1.1");
    assert_eq!(parts.next(), Some(version), "{status_line}");
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers["content-length"].parse().unwrap();
    assert_eq!(body.len(), len, "Content-Length matches the body");
    Response { status, headers, body: body.to_string() }
}

type LabelSet = BTreeMap<String, String>;

#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    /// (sample name, labels) -> value
    samples: HashMap<(String, LabelSet), f64>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse `{a="x",b="y"}`, returning the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(LabelSet, &str), String> {
    let mut labels = LabelSet::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in a label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("duplicate label {name}"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("labels must be separated by ,".into());
        }
    }
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let body = text.strip_suffix("# EOF\n").ok_or("must end with # EOF and a newline")?;
    for (n, line) in body.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !is_name(name) {
                return Err(err(format!("bad family name {name:?}")));
            }
            match kind {
                "TYPE" => {
                    let t = parts.next().ok_or_else(|| err("TYPE without a type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown", "gaugehistogram"]
                        .contains(&t)
                    {
                        return Err(err(format!("unknown type {t}")));
                    }
                    if exp.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(err("family typed twice".into()));
                    }
                }
                "HELP" | "UNIT" => {}
                other => return Err(err(format!("unknown metadata {other}"))),
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(err("stray comment or blank line".into()));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (LabelSet::new(), &line[name_end..])
        };
        let value_text = rest.strip_prefix(' ').ok_or_else(|| err("value must follow one space".into()))?;
        let value_text = value_text.split(' ').next().unwrap(); // an optional timestamp may follow
        let value: f64 = value_text.parse().map_err(|_| err(format!("bad value {value_text:?}")))?;
        // Which family does the sample belong to, and is its suffix allowed for the type?
        let family = exp
            .types
            .keys()
            .filter(|f| name == f.as_str() || name.strip_prefix(f.as_str()).is_some_and(|s| s.starts_with('_')))
            .max_by_key(|f| f.len())
            .cloned()
            .ok_or_else(|| err("sample before its # TYPE".into()))?;
        let suffix = &name[family.len()..];
        let ok = match exp.types[&family].as_str() {
            "counter" => matches!(suffix, "_total" | "_created"),
            "gauge" | "unknown" => suffix.is_empty(),
            _ => true,
        };
        if !ok {
            return Err(err(format!("suffix {suffix:?} not allowed for a {}", exp.types[&family])));
        }
        if exp.types[&family] == "counter" && suffix == "_total" && value < 0.0 {
            return Err(err("negative counter".into()));
        }
        if exp.samples.insert((name.to_string(), labels), value).is_some() {
            return Err(err("duplicate sample".into()));
        }
    }
    Ok(exp)
}

fn ls(pairs: &[(&str, &str)]) -> LabelSet {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        *self
            .samples
            .get(&(name.to_string(), ls(labels)))
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

fn scrape() -> Exposition {
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    let r = http_get(srv.local_addr(), "GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"), "{:?}", r.headers);
    parse_exposition(&r.body).unwrap_or_else(|e| panic!("{e}\n--- body ---\n{}", r.body))
}

#[test]
fn metrics_scrape_parses_strictly_and_carries_the_rig_figures() {
    let m = scrape();
    assert_eq!(m.types["hashrig_hashrate_hashes_per_second"], "gauge");
    assert_eq!(m.get("hashrig_hashrate_hashes_per_second", &[("window", "5s")]), 4.42e12);
    assert_eq!(m.get("hashrig_hashrate_hashes_per_second", &[("window", "1m")]), 4.62e12);
    assert_eq!(m.get("hashrig_hashrate_hashes_per_second", &[("window", "avg")]), 4.52e12);
    assert_eq!(m.types["hashrig_hashes"], "counter");
    assert_eq!(m.get("hashrig_hashes_total", &[("device", "1"), ("kind", "asic")]), 2.7e14);
    assert_eq!(m.get("hashrig_shares_total", &[("pool", "0"), ("result", "accepted")]), 40.0);
    assert_eq!(m.get("hashrig_shares_total", &[("pool", "0"), ("result", "rejected")]), 2.0);
    assert_eq!(m.get("hashrig_shares_total", &[("pool", "0"), ("result", "stale")]), 1.0);
    assert_eq!(m.get("hashrig_share_rejects_total", &[("pool", "0"), ("reason", "duplicate")]), 1.0);
    // A reason with quotes survives the label escaping.
    assert_eq!(m.get("hashrig_share_rejects_total", &[("pool", "0"), ("reason", "low difficulty \"share\"")]), 1.0);
    assert_eq!(m.get("hashrig_hardware_errors_total", &[("device", "1"), ("kind", "asic")]), 3.0);
    let weak = common::WEAK_CHIP.to_string();
    assert_eq!(m.get("hashrig_chip_hardware_errors_total", &[("device", "1"), ("chip", &weak)]), 3.0);
    assert_eq!(m.get("hashrig_chip_nonces_total", &[("device", "1"), ("chip", "0")]), 400.0);
    assert_eq!(m.get("hashrig_power_watts", &[("source", "hwmon")]), 95.0);
    assert_eq!(m.get("hashrig_joules_per_terahash", &[("source", "hwmon")]), 21.0);
    assert_eq!(m.get("hashrig_temperature_celsius", &[("device", "1"), ("sensor", "board")]), 71.5);
    assert_eq!(m.get("hashrig_pool_up", &[("pool", "0"), ("url", "stratum+tcp://pool.example:3333")]), 1.0);
    assert_eq!(m.get("hashrig_pool_up", &[("pool", "1"), ("url", "stratum+tcp://backup.example:3333")]), 0.0);
    assert_eq!(m.get("hashrig_pool_state", &[("pool", "1"), ("state", "dead")]), 1.0);
    assert_eq!(m.get("hashrig_blocks_found_total", &[]), 1.0);
}

#[test]
fn strict_parser_rejects_broken_expositions() {
    // The parser above must be able to fail, or the scrape test proves nothing.
    for bad in [
        "# TYPE a gauge\na 1\n",                        // no # EOF
        "a 1\n# EOF\n",                                  // sample without TYPE
        "# TYPE a counter\na 1\n# EOF\n",                // counter sample without _total
        "# TYPE a gauge\na{x=\"1} 1\n# EOF\n",           // unterminated label
        "# TYPE a gauge\na{x=\"1\"} one\n# EOF\n",       // not a number
        "# TYPE a gauge\na 1\na 2\n# EOF\n",             // duplicate sample
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
    assert!(parse_exposition("# TYPE a gauge\na{x=\"q\\\"\"} 1\n# EOF\n").is_ok());
}

#[test]
fn http_listener_answers_errors_without_dying() {
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    assert_eq!(http_get(srv.local_addr(), "GET /nope HTTP/1.1\r\n\r\n").status, 404);
    assert_eq!(http_get(srv.local_addr(), "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status, 405);
    assert_eq!(http_get(srv.local_addr(), "garbage\r\n\r\n").status, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(huge.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431"), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(http_get(srv.local_addr(), "GET /metrics HTTP/1.0\r\n\r\n").status, 200);
}

#[test]
fn metrics_refuse_a_public_address_without_the_flag() {
    let err = MetricsServer::start("0.0.0.0:0".parse().unwrap(), false, SharedView::default()).unwrap_err();
    assert!(matches!(err, Error::OpenBind { .. }), "{err}");
}

#[test]
fn head_gets_the_head_without_a_body() {
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    let get = http_get(srv.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head ended by CRLF CRLF");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, "", "no body after the head of a HEAD answer");
    let len = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("Content-Length");
    assert_eq!(len.parse::<usize>().unwrap(), get.body.len(), "the length a GET would get");
    // Errors too: the status, no body.
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.write_all(b"HEAD /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 404") && raw.ends_with("\r\n\r\n"), "{raw:?}");
}

/// The Python `prometheus_client` package, fetching with urllib (a real HTTP client) and
/// parsing with its OpenMetrics parser; prints `[[name, {labels}, value], ...]`.
const PY_SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
url = sys.argv[1]
with urllib.request.urlopen(url, timeout=10) as r:
    ctype = r.headers["Content-Type"]
    text = r.read().decode("utf-8")
head = urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10)
out = {"content_type": ctype, "head_body": len(head.read()), "samples": []}
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        out["samples"].append([s.name, s.labels, s.value, fam.type])
print(json.dumps(out))
"#;

#[test]
fn prometheus_client_parses_the_scrape_like_the_strict_parser() {
    let python = std::env::var_os("HASHRIG_PROMETHEUS_PYTHON").map(std::path::PathBuf::from).filter(|p| {
        std::process::Command::new(p)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        if std::env::var("HASHRIG_REQUIRE_PROMETHEUS_PARSER").as_deref() == Ok("1") {
            panic!("HASHRIG_REQUIRE_PROMETHEUS_PARSER=1 but HASHRIG_PROMETHEUS_PYTHON names no Python with prometheus_client (see .ci/run)");
        }
        eprintln!("SKIPPED prometheus_client_parses_the_scrape_like_the_strict_parser: set HASHRIG_PROMETHEUS_PYTHON to a Python with `pip install prometheus_client`");
        return;
    };
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    let url = format!("http://{}/metrics", srv.local_addr());
    let out = std::process::Command::new(&python).args(["-c", PY_SCRAPE, &url]).output().unwrap();
    assert!(out.status.success(), "prometheus_client refused the scrape: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["content_type"].as_str().unwrap().starts_with("application/openmetrics-text"), "{v}");
    assert_eq!(v["head_body"], 0, "HEAD answered without a body");
    // The same samples, labels and values as our own strict parser reads.
    let ours = scrape();
    let theirs = v["samples"].as_array().unwrap();
    assert_eq!(theirs.len(), ours.samples.len(), "sample count");
    for s in theirs {
        let name = s[0].as_str().unwrap().to_string();
        let labels: LabelSet =
            s[1].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        let value = s[2].as_f64().unwrap();
        let mine = ours.samples.get(&(name.clone(), labels.clone())).unwrap_or_else(|| panic!("{name}{labels:?} only in theirs"));
        assert_eq!(*mine, value, "{name}{labels:?}");
    }
    let reason = theirs
        .iter()
        .find(|s| s[0] == "hashrig_share_rejects_total" && s[1]["reason"] == "low difficulty \"share\"")
        .expect("the quoted reject reason, unescaped by prometheus_client");
    assert_eq!(reason[2], 1.0);
}

/// A pool that answers every share with a new reason (10,000 of them, some with terminal
/// escape sequences and some very long) must not grow the scrape: at most 16 reasons as given
/// plus one `other`, every count kept, no control characters, no label over the length cap.
#[test]
fn reject_reasons_from_a_flooding_pool_are_capped_and_cleaned() {
    let mut view = common::rig();
    let mut reasons = std::collections::BTreeMap::new();
    for i in 0..10_000 {
        let reason = match i % 3 {
            0 => format!("bad nonce {i}"),
            1 => format!("\x1b[31mred {i}\x1b[0m\r\n\x07"),
            _ => format!("{i} {}", "x".repeat(500)),
        };
        reasons.insert(reason, 1u64);
    }
    view.pools[0].shares.reject_reasons = reasons.clone();
    view.shares.reject_reasons = reasons;
    let text = hashrig_monitor::metrics::render(&view).unwrap();
    let m = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}"));
    let rejects: Vec<(&LabelSet, f64)> = m
        .samples
        .iter()
        .filter(|((name, labels), _)| name == "hashrig_share_rejects_total" && labels["pool"] == "0")
        .map(|((_, labels), v)| (labels, *v))
        .collect();
    assert!(rejects.len() <= 17, "{} reject reason labels", rejects.len());
    assert!(rejects.len() >= 2, "some reasons kept as given, the rest folded");
    assert_eq!(rejects.iter().map(|(_, v)| v).sum::<f64>(), 10_000.0, "every reject still counted");
    assert!(rejects.iter().any(|(l, _)| l["reason"] == "other"), "the folded rest");
    for (labels, _) in &rejects {
        let r = &labels["reason"];
        assert!(r.chars().count() <= 120, "reason of {} chars", r.chars().count());
        assert!(!r.chars().any(char::is_control), "control character in {r:?}");
    }
    assert!(text.len() < 64 * 1024, "scrape of {} bytes", text.len());
}

/// Sends `head` one byte every 150 ms (then spaces) until stopped, 5 s have passed, or a write
/// fails because the server closed for good; gives how long after connecting that was.
fn slow_writer(addr: SocketAddr, head: &'static [u8], stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<Option<Duration>> {
    let mut s = TcpStream::connect(addr).unwrap();
    let t0 = std::time::Instant::now();
    std::thread::spawn(move || {
        let mut bytes = head.iter().copied().chain(std::iter::repeat(b' '));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(5) {
            if s.write_all(&[bytes.next().unwrap()]).is_err() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        None
    })
}

#[test]
fn idle_and_slow_connections_do_not_stop_a_scrape() {
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(srv.local_addr()).unwrap()).collect();
    let slow: Vec<_> = (0..20).map(|_| slow_writer(srv.local_addr(), b"GET /metrics HTTP/1.1\r\nX-Slow: ", stop.clone())).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let r = http_get(srv.local_addr(), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in slow {
        let _ = t.join().unwrap();
    }
    drop(idle);
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with("# EOF\n"));
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
}

#[test]
fn a_client_trickling_its_head_is_cut_off_at_the_header_deadline() {
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut = slow_writer(srv.local_addr(), b"GET /metrics HTTP/1.1\r\nX-Slow: ", stop.clone()).join().unwrap();
    let cut = cut.expect("the server still read the trickle after 5 s: it holds the connection");
    assert!(cut < Duration::from_millis(3500), "cut off after {cut:?} (head deadline 2 s)");
    assert!(cut >= Duration::from_millis(1500), "cut off before the deadline: {cut:?}");
}

#[test]
fn connections_past_the_cap_are_closed_at_once() {
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
    let idle: Vec<TcpStream> = (0..metrics::MAX_CONNECTIONS).map(|_| TcpStream::connect(srv.local_addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(t0.elapsed() < Duration::from_millis(500), "the connection past the cap waited {:?}", t0.elapsed());
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"), "served past the cap");
    drop(idle);
    // Once the idle ones are gone, scrapes are served again.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http_get(srv.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
}

#[test]
fn starts_and_stops_inside_a_tokio_runtime_too() {
    // `hashrig mine` starts the listener from inside its runtime; `bench` from a plain thread
    // (every other test here).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, SharedView::new(common::rig())).unwrap();
        let addr = srv.local_addr();
        let r = tokio::task::spawn_blocking(move || http_get(addr, "GET /metrics HTTP/1.1\r\n\r\n")).await.unwrap();
        assert_eq!(r.status, 200);
        srv.stop();
        assert!(TcpStream::connect(addr).is_err(), "still listening after stop");
    });
}
