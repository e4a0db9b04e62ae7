//! Prometheus metrics of a [`RunView`], encoded by the `prometheus-client` crate (OpenMetrics
//! text), served at `GET /metrics` (and `HEAD`) by [`MetricsServer`]: `hyper`'s HTTP/1 server
//! on a small single-threaded tokio runtime of its own thread, so it starts the same from a
//! plain thread (`hashrig bench`) and from inside a tokio runtime (`hashrig mine`).
//!
//! The registry is built from a fresh snapshot at every scrape, so what a scrape shows is one
//! consistent view of the run. Counters are cumulative over the run (they restart with it).
//!
//! Limits, so that idle or slow clients cannot hold the listener: one request per connection;
//! the request head must arrive within [`HEADER_READ_TIMEOUT`] of accept and be at most
//! [`MAX_HEAD`] bytes (else 431); a whole connection lasts at most [`CONNECTION_DEADLINE`];
//! at most [`MAX_CONNECTIONS`] are served at once, and a connection past that is closed at once
//! (logged, at most once every 10 s with the count), never queued.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Error;
use crate::listener::{RefusalLog, ServerThread};
use crate::view::{RunView, SharedView};

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
            dev_rate.get_or_create(&l(&[("device", &id), ("kind", d.kind.as_str()), ("window", w)])).set(fin(v));
        }
        let dl = l(&[("device", &id), ("kind", d.kind.as_str())]);
        hashes.get_or_create(&dl).inc_by(fin(d.hashes).max(0.0));
        hw.get_or_create(&dl).inc_by(d.hw_errors as f64);
        nonces.get_or_create(&dl).inc_by(d.valid_nonces as f64);
        for (result, n) in [("accepted", d.accepted), ("rejected", d.rejected), ("stale", d.stale)] {
            dev_shares.get_or_create(&l(&[("device", &id), ("kind", d.kind.as_str()), ("result", result)])).inc_by(n as f64);
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
    let pool_proto = gauge(&mut reg, "pool_protocol", "1 for the pool's protocol (stratum, stratum2, gbt) and, on Stratum V2, the channel kind open");
    for p in &view.pools {
        pool_proto
            .get_or_create(&l(&[("pool", &p.id.to_string()), ("protocol", p.protocol()), ("channel", p.channel.as_deref().unwrap_or(""))]))
            .set(1.0);
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

    if let Some(lg) = &view.ledger {
        let sh = gauge(&mut reg, "ledger_shares", "The share ledger: shares the engine verified, by where they ended (found = accepted + rejected + stale + in_flight)");
        for (state, n) in [("found", lg.found), ("accepted", lg.accepted), ("rejected", lg.rejected), ("stale", lg.stale), ("in_flight", lg.in_flight)] {
            sh.get_or_create(&l(&[("state", state)])).set(n as f64);
        }
        let st = gauge(&mut reg, "ledger_stale_shares", "Stale shares in the ledger by reason");
        for (reason, n) in &lg.stale_by_reason {
            st.get_or_create(&l(&[("reason", reason)])).set(*n as f64);
        }
        let ok = gauge(&mut reg, "ledger_reconciles", "1 when the ledger's totals add up to the shares found");
        ok.get_or_create(&Vec::new()).set(if lg.reconciles { 1.0 } else { 0.0 });
    }

    if let Some(c) = &view.curtail {
        let one = |reg: &mut Registry, name: &str, help: &str, v: f64| gauge(reg, name, help).get_or_create(&Vec::new()).set(fin(v));
        one(&mut reg, "curtailed", "1 while the devices are paused because power costs more than the threshold", if c.curtailed { 1.0 } else { 0.0 });
        one(&mut reg, "curtailed_seconds", "Seconds spent curtailed this run", c.curtailed_s);
        one(&mut reg, "curtail_cost_avoided_usd", "Power cost not spent while curtailed this run, USD", c.cost_avoided_usd);
        one(&mut reg, "curtail_price_errors", "Power price readings that failed this run", c.price_errors as f64);
        if let Some(p) = c.price_usd_kwh {
            one(&mut reg, "curtail_power_price_usd_kwh", "The live power price curtailment acts on, USD per kWh", p);
        }
        if let Some(t) = c.threshold_usd_kwh {
            one(&mut reg, "curtail_threshold_usd_kwh", "Curtail above this power price, USD per kWh", t);
        }
    }

    let blocks = counter(&mut reg, "blocks_found", "Blocks found this run");
    blocks.get_or_create(&Vec::new()).inc_by(view.blocks_found as f64);
    let best = gauge(&mut reg, "best_share_difficulty", "Highest share difficulty this run");
    best.get_or_create(&Vec::new()).set(fin(view.best_share));
    let up = gauge(&mut reg, "run_elapsed_seconds", "Seconds since the run started");
    up.get_or_create(&l(&[("mode", view.mode.as_str())])).set(fin(view.elapsed_s));

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

    if let Some(e) = &view.economics {
        let cur = e.currency.to_lowercase();
        let cur = if cur.chars().all(|c| c.is_ascii_lowercase()) && !cur.is_empty() { cur } else { "money".to_string() };
        let one = |reg: &mut Registry, name: &str, help: &str, v: f64| {
            gauge(reg, name, help).get_or_create(&Vec::new()).set(fin(v));
        };
        one(&mut reg, &format!("revenue_{cur}_per_day"), "Expected mining revenue per day at the run's rate and prices", e.revenue_per_day);
        one(&mut reg, &format!("power_price_{cur}_per_kwh"), "The power price the economics use", e.power_price_kwh);
        one(&mut reg, "network_difficulty", "Network difficulty the economics use (the job's nbits, or as given)", e.network_difficulty);
        if let Some(h) = e.hashprice_per_ph_day {
            one(&mut reg, &format!("hashprice_{cur}_per_ph_day"), "What 1 PH/s earns a day", h);
        }
        if let Some(p) = e.profit_per_day.or(e.cost_per_day.map(|c| e.revenue_per_day - c)) {
            one(&mut reg, &format!("profit_{cur}_per_day"), "Mining revenue minus power cost per day", p);
        }
        if let Some(b) = e.break_even_power_price_kwh {
            one(&mut reg, &format!("break_even_{cur}_per_kwh"), "The power price at which mining's revenue equals its power cost", b);
        }
        if let Some(b) = e.break_even_hashprice_per_ph_day {
            one(&mut reg, &format!("break_even_hashprice_{cur}_per_ph_day"), "The hashprice below which mining loses money at this power price", b);
        }
        if !e.alternatives.is_empty() {
            let g = gauge(&mut reg, &format!("alternative_profit_{cur}_per_day"), "Profit per day of another use of the same machine and power, after the power");
            for a in &e.alternatives {
                g.get_or_create(&l(&[("use", &a.name.replace(' ', "_"))])).set(fin(a.profit_per_day));
            }
        }
    }

    let mut out = String::new();
    encode(&mut out, &reg).map_err(Error::Metrics)?;
    Ok(out)
}

/// Time a client has, from accept, to send its whole request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a connection lasts, from accept to close, whatever the client does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request head read (hyper's smallest buffer); a larger one gets 431.
pub const MAX_HEAD: usize = 8192;

/// A running `/metrics` listener. Stops when dropped (or on [`MetricsServer::stop`]).
#[derive(Debug)]
pub struct MetricsServer(ServerThread);

impl MetricsServer {
    /// Bind `listen` and serve scrapes of `view` from a thread of its own (with its own
    /// single-threaded tokio runtime: callable with or without a runtime around). Refuses
    /// non-loopback addresses unless `allow_remote` (the caller's explicit flag).
    pub fn start(listen: SocketAddr, allow_remote: bool, view: SharedView) -> Result<Self, Error> {
        if !crate::access::is_loopback(listen.ip()) && !allow_remote {
            return Err(Error::OpenBind { addr: listen });
        }
        let listener = TcpListener::bind(listen).map_err(|source| Error::Bind { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: listen, source })?;
        listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| Error::Bind { addr, source })?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| Error::Bind { addr, source })?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = ServerThread::spawn(
            "metrics-http",
            addr,
            move || {
                let _ = stop.send(());
            },
            move || {
                runtime.block_on(accept_loop(listener, view, stopped));
                // Dropping the runtime ends the connections still open.
            },
        )?;
        tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
        Ok(MetricsServer(server))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    pub fn stop(mut self) {
        self.0.shutdown();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, view: SharedView, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refusals = RefusalLog::new("metrics", MAX_CONNECTIONS);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.refused(peer);
            drop(stream);
            continue;
        };
        let view = view.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let view = view.clone();
                async move { Ok::<_, Infallible>(answer(&req, &view)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                // `Content-Type`, `Content-Length` as most servers write them (some scrapers and
                // shell scripts match header names case-sensitively).
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: connection ended with an error"),
                Err(_) => tracing::debug!(%peer, "metrics: connection closed at its deadline"),
            }
        });
    }
}

fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let body: Bytes = body.into();
    let mut r = Response::new(Full::new(body.clone()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    // Set here so that a HEAD answer carries the length a GET would get (hyper sends no body
    // for HEAD, and would not add the length itself).
    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

/// The answer to one request: `/metrics` (and `/`) for GET and HEAD, 405 for other methods,
/// 404 for other paths.
fn answer(req: &Request<Incoming>, view: &SharedView) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET or HEAD only\n");
        r.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => match render(&view.snapshot()) {
            Ok(body) => text_response(StatusCode::OK, CONTENT_TYPE, body),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: encoding failed");
                text_response(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "encoding failed\n")
            }
        },
        "/" => text_response(StatusCode::OK, "text/plain", "hashrig: metrics at /metrics\n"),
        _ => text_response(StatusCode::NOT_FOUND, "text/plain", "not found; try /metrics\n"),
    }
}
