//! Operating a rig: what a person or a dashboard sees of a running `hashrig bench` or
//! `hashrig mine`.
//!
//! What it is for: serving a [`RunView`] (a plain snapshot the engine fills) three ways:
//! - [`cgminer`]: cgminer's RPC API on TCP (default `127.0.0.1:4028`), for pyasic, Home
//!   Assistant integrations and rig monitors;
//! - [`metrics`]: Prometheus `/metrics` over `hyper`'s HTTP/1 server (opt-in);
//! - [`report`]: one self-contained HTML page with inline SVG charts (hashrate over time, the
//!   per-chip health map of an ASIC chain) and the run's JSON embedded.
//!
//! [`engine`] turns the engine's `Stats` snapshots into a [`RunView`] (windowed rates, the rate
//! series for the chart, J/TH from the caller's power figure).
//!
//! Limits against clients that connect and stall (both listeners): the cgminer API gives each
//! request 2 s from accept ([`ApiConfig::read_timeout`]) and serves 64 connections at once
//! ([`ApiConfig::max_connections`]); `/metrics` gives a request head 2 s
//! ([`metrics::HEADER_READ_TIMEOUT`]), a connection 5 s in all, and serves 64 at once
//! ([`metrics::MAX_CONNECTIONS`]). Past the cap a new connection is closed at once, never
//! queued. Pool reject reasons, which become metrics labels, are cleaned of control characters
//! and escape sequences, cut to 120 characters, and at most 16 distinct ones are kept per pool,
//! the rest counted as `other` ([`Shares::add_reject_reason`], [`MAX_REJECT_REASONS`]).
//!
//! What it computes from the engine's counts ([`engine`]): hashrates over 5 s and 1 min windows
//! and the rate series for the chart; the rig's interval as the sums of its devices' interval
//! ends (a conservative bound, not a joint interval); J/TH as the caller's energy over the
//! engine's hash total.
//!
//! What it is not for: counting hashes or estimating a device's average rate and its interval
//! (the engine does), measuring power (`hashrig-power`), economics (`hashrig-work`, handed in by
//! the caller), or controlling the miner by itself: write commands go through the
//! [`cgminer::Actions`] the caller provides, and only for peers the access list allows.

pub mod access;
pub mod cgminer;
pub mod engine;
mod listener;
pub mod metrics;
pub mod report;
pub mod view;

use std::net::SocketAddr;

pub use access::{Access, Cidr, Level};
pub use cgminer::{Actions, ApiConfig, ApiServer, NoActions};
pub use metrics::MetricsServer;
pub use view::*;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad address range {input:?}: {reason}")]
    BadCidr { input: String, reason: &'static str },
    #[error("refusing to listen on {addr} (not loopback) without an allow-list (--api-allow CIDR,...)")]
    OpenBind { addr: SocketAddr },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the metrics")]
    Metrics(#[source] std::fmt::Error),
    #[error("cannot draw the {chart} chart: {message}")]
    Chart { chart: &'static str, message: String },
    #[error("cannot encode the run as JSON")]
    Json(#[source] serde_json::Error),
    #[error("cannot write the report to {}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
