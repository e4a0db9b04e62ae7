//! Prometheus metrics of a [`RunView`], encoded by the `prometheus-client` crate (OpenMetrics
//! text), served at `GET /metrics` by a tiny std-thread HTTP listener.
//!
//! The registry is built from a fresh snapshot at every scrape, so what a scrape shows is one
//! consistent view of the run. Counters are cumulative over the run (they restart with it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::view::{RunView, SharedView};
use crate::Error;

/// The content type of what [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type GaugeF = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterF = Family<Labels, Counter<f64, AtomicU64>>;

/// Label pairs with their values escaped for the text format. prometheus-client (0.24) writes
/// label values verbatim, so a pool's reject reason with a quote in it would break the scrape;
/// the metrics test parses such a value back to catch double or missing escaping.
fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), escape_label_value(v))).collect()
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> GaugeF {
    let g = GaugeF::default();
    reg.register(name, help, g.clone());
    g
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> CounterF {
    let c = CounterF::default();
    reg.register(name, help, c.clone());
    c
}

fn fin(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// Encode `view` in the OpenMetrics text format.
pub fn render(view: &RunView) -> Result<String, Error> {
    let mut reg = Registry::with_prefix("hashrig");

    let rig_rate = gauge(&mut reg, "hashrate_hashes_per_second", "Whole-rig hashrate over a window (5s, 1m, avg)");
    for (w, v) in [("5s", view.hashrate.s5), ("1m", view.hashrate.m1), ("avg", view.hashrate.avg)] {
        rig_rate.get_or_create(&l(&[("window", w)])).set(fin(v));
    }
    if let Some(ci) = view.hashrate_ci {
        let g = gauge(&mut reg, "hashrate_ci_hashes_per_second", "95% confidence interval of the average hashrate");
        g.get_or_create(&l(&[("bound", "low")])).set(fin(ci.low));
        g.get_or_create(&l(&[("bound", "high")])).set(fin(ci.high));
    }
    let dev_rate = gauge(&mut reg, "device_hashrate_hashes_per_second", "Per-device hashrate over a window");
    let hashes = counter(&mut reg, "hashes", "Hashes done (estimated from nonces for ASIC chains)");
    let hw = counter(&mut reg, "hardware_errors", "Candidates that failed re-verification, per device");
    let nonces = counter(&mut reg, "valid_nonces", "Candidates that passed re-verification, per device");
    let temp = gauge(&mut reg, "temperature_celsius", "Temperature per device and sensor");
    let chip_nonces = counter(&mut reg, "chip_nonces", "Valid nonces per ASIC chip");
    let chip_hw = counter(&mut reg, "chip_hardware_errors", "Hardware errors per ASIC chip");
    let chip_rate = gauge(&mut reg, "chip_hashrate_hashes_per_second", "Estimated hashrate per ASIC chip");
    let dev_shares = counter(&mut reg, "device_shares", "Shares per device as the pools answered them (accepted, rejected, stale)");
    for d in &view.devices {
        let id = d.id.to_string();
        for (w, v) in [("5s", d.hashrate.s5), ("1m", d.hashrate.m1), ("avg", d.hashrate.avg)] {
            dev_rate.get_or_create(&l(&[("device", &id), ("kind", &d.kind), ("window", w)])).set(fin(v));
        }
        let dl = l(&[("device", &id), ("kind", &d.kind)]);
        hashes.get_or_create(&dl).inc_by(fin(d.hashes).max(0.0));
        hw.get_or_create(&dl).inc_by(d.hw_errors as f64);
        nonces.get_or_create(&dl).inc_by(d.valid_nonces as f64);
        for (result, n) in [("accepted", d.accepted), ("rejected", d.rejected), ("stale", d.stale)] {
            dev_shares.get_or_create(&l(&[("device", &id), ("kind", &d.kind), ("result", result)])).inc_by(n as f64);
        }
        for t in &d.temperatures {
            temp.get_or_create(&l(&[("device", &id), ("sensor", &t.sensor)])).set(fin(t.celsius));
        }
        for c in &d.chips {
            let cl = l(&[("device", &id), ("chip", &c.index.to_string())]);
            chip_nonces.get_or_create(&cl).inc_by(c.nonces as f64);
            chip_hw.get_or_create(&cl).inc_by(c.hw_errors as f64);
            chip_rate.get_or_create(&cl).set(fin(c.est_hashrate));
        }
    }

    let shares = counter(&mut reg, "shares", "Shares submitted, by pool and result (accepted, rejected, stale)");
    let rejects = counter(&mut reg, "share_rejects", "Rejected shares by pool and the reason the pool gave");
    let pool_up = gauge(&mut reg, "pool_up", "1 when the pool connection is alive");
    let pool_state = gauge(&mut reg, "pool_state", "1 for the pool's current connection state");
    let pool_diff = gauge(&mut reg, "pool_difficulty", "Share difficulty the pool asks for");
    for p in &view.pools {
        let id = p.id.to_string();
        for (result, n) in [("accepted", p.shares.accepted), ("rejected", p.shares.rejected), ("stale", p.shares.stale)] {
            shares.get_or_create(&l(&[("pool", &id), ("result", result)])).inc_by(n as f64);
        }
        // Bounded and cleaned here too, whoever filled the view: each reason is a label.
        for (reason, n) in &p.shares.bounded_reject_reasons() {
            rejects.get_or_create(&l(&[("pool", &id), ("reason", reason)])).inc_by(*n as f64);
        }
        pool_up
            .get_or_create(&l(&[("pool", &id), ("url", &p.url)]))
            .set(if p.state == crate::PoolState::Alive { 1.0 } else { 0.0 });
        pool_state.get_or_create(&l(&[("pool", &id), ("state", p.state.as_str())])).set(1.0);
        pool_diff.get_or_create(&l(&[("pool", &id)])).set(fin(p.difficulty));
    }
    if view.pools.is_empty() {
        // A bench run has no pool: still count its shares (all "accepted" locally).
        let s = &view.shares;
        for (result, n) in [("accepted", s.accepted), ("rejected", s.rejected), ("stale", s.stale)] {
            shares.get_or_create(&l(&[("pool", "none"), ("result", result)])).inc_by(n as f64);
        }
    }

    // The whole rig: the pools' answers plus shares found but never sent because their job
    // had gone (stale).
    let rig_shares = counter(&mut reg, "rig_shares", "Shares of the whole rig by result; stale includes shares never sent");
    for (result, n) in [("accepted", view.shares.accepted), ("rejected", view.shares.rejected), ("stale", view.shares.stale)] {
        rig_shares.get_or_create(&l(&[("result", result)])).inc_by(n as f64);
    }
    if !view.protocol_errors.is_empty() {
        let pe = counter(&mut reg, "pool_protocol_errors", "Pool protocol errors by kind");
        for (kind, n) in &view.protocol_errors {
            pe.get_or_create(&l(&[("kind", kind)])).inc_by(*n as f64);
        }
    }

    let blocks = counter(&mut reg, "blocks_found", "Blocks found this run");
    blocks.get_or_create(&Vec::new()).inc_by(view.blocks_found as f64);
    let best = gauge(&mut reg, "best_share_difficulty", "Highest share difficulty this run");
    best.get_or_create(&Vec::new()).set(fin(view.best_share));
    let up = gauge(&mut reg, "run_elapsed_seconds", "Seconds since the run started");
    up.get_or_create(&l(&[("mode", &view.mode)])).set(fin(view.elapsed_s));

    if let Some(p) = &view.power {
        let w = gauge(&mut reg, "power_watts", "Power draw; the label says where the figure came from");
        w.get_or_create(&l(&[("source", &p.source)])).set(fin(p.watts));
        if let Some(e) = p.energy_j {
            let c = counter(&mut reg, "energy_joules", "Energy used this run, from a counter");
            c.get_or_create(&l(&[("source", &p.source)])).inc_by(fin(e).max(0.0));
        }
    }
    if let Some(j) = view.j_per_th {
        let g = gauge(&mut reg, "joules_per_terahash", "Energy per terahash over the run");
        let source = view.power.as_ref().map(|p| p.source.as_str()).unwrap_or("unknown");
        g.get_or_create(&l(&[("source", source)])).set(fin(j));
    }

    let mut out = String::new();
    encode(&mut out, &reg).map_err(Error::Metrics)?;
    Ok(out)
}

/// A running `/metrics` listener. Stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Longest request head we read.
const MAX_HEAD: usize = 8192;

impl MetricsServer {
    /// Bind `listen` and serve scrapes of `view`. Refuses non-loopback addresses unless
    /// `allow_remote` (the caller's explicit flag).
    pub fn start(listen: SocketAddr, allow_remote: bool, view: SharedView) -> Result<Self, Error> {
        if !crate::access::is_loopback(listen.ip()) && !allow_remote {
            return Err(Error::OpenBind { addr: listen });
        }
        let listener = TcpListener::bind(listen).map_err(|source| Error::Bind { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: listen, source })?;
        listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let view = view.clone();
                            // One short-lived thread per scrape; a scraper is one client.
                            let _ = std::thread::Builder::new().name("metrics-conn".into()).spawn(move || {
                                let copy = stream.try_clone();
                                if let Err(e) = serve(stream, &view) {
                                    tracing::debug!(%peer, error = %e, "metrics: connection ended with an error");
                                }
                                if let Ok(c) = copy {
                                    crate::cgminer::close_gracefully(c, Instant::now() + Duration::from_millis(200));
                                }
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                        Err(e) => {
                            tracing::warn!(error = %e, "metrics: accept failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|source| Error::Bind { addr, source })?;
        tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    respond_to(stream, "GET", status, content_type, body)
}

/// Answer `method`: a HEAD gets the same head (Content-Length of the body it would get) and no
/// body (RFC 9110 9.3.2).
fn respond_to(stream: &mut TcpStream, method: &str, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

fn serve(mut stream: TcpStream, view: &SharedView) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let timeout = Duration::from_secs(2);
    stream.set_write_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head too large\n");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break false,
            Err(e) => return Err(e),
        }
    };
    if !complete {
        return respond(&mut stream, "408 Request Timeout", "text/plain", "incomplete request\n");
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(&mut stream, "400 Bad Request", "text/plain", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return respond(&mut stream, "400 Bad Request", "text/plain", "HTTP/1.x only\n");
    }
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET or HEAD only\n");
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => match render(&view.snapshot()) {
            Ok(body) => respond_to(&mut stream, method, "200 OK", CONTENT_TYPE, &body),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: encoding failed");
                respond_to(&mut stream, method, "500 Internal Server Error", "text/plain", "encoding failed\n")
            }
        },
        "/" => respond_to(&mut stream, method, "200 OK", "text/plain", "hashrig: metrics at /metrics\n"),
        _ => respond_to(&mut stream, method, "404 Not Found", "text/plain", "not found; try /metrics\n"),
    }
}
