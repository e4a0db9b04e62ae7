//! The flags `bench` and `mine` share for watching a run: `--api` (cgminer's API),
//! `--metrics` (Prometheus), `--report` (HTML page with charts), and the glue that feeds the
//! engine's stats to them (`hashrig_monitor`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hashrig_engine::Stats;
use hashrig_monitor::engine::{Extras, Tracker};
use hashrig_monitor::{Access, Actions, ApiConfig, ApiServer, MetricsServer, RunView, SharedView};

use crate::bad_input;

/// Default address of the cgminer API (cgminer's own default port).
pub const DEFAULT_API: &str = "127.0.0.1:4028";
/// Default address of the metrics listener (9184: clear of node_exporter's 9100).
pub const DEFAULT_METRICS: &str = "127.0.0.1:9184";

/// Watching a run.
///
/// `mine`'s config file reads its `[api]` section into the same type (`listen`, `allow`,
/// `metrics`, `metrics_public`, `report`); a flag replaces the file's value ([`MonitorArgs::or`]).
#[derive(Clone, Debug, Default, PartialEq, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorArgs {
    /// Serve cgminer's API (summary, devs, pools, stats, ...) on ADDR [ADDR default: 127.0.0.1:4028].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_API)]
    #[serde(rename = "listen", default)]
    pub api: Option<SocketAddr>,
    /// Who besides loopback may use the API: comma-separated CIDRs; prefix an entry with W:
    /// to allow write commands (switchpool, quit, ...). Required to bind a non-loopback ADDR.
    #[arg(long, value_name = "CIDR,...")]
    #[serde(rename = "allow", default)]
    pub api_allow: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics [ADDR default: 127.0.0.1:9184].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_METRICS)]
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Let --metrics bind a non-loopback address.
    #[arg(long)]
    #[serde(default)]
    pub metrics_public: bool,
    /// When the run ends, write a self-contained HTML report with charts to PATH.
    #[arg(long, value_name = "PATH.html")]
    #[serde(default)]
    pub report: Option<PathBuf>,
}

impl MonitorArgs {
    /// These flags over `file`'s values, field by field (`metrics_public` if either says so).
    pub fn or(&self, file: MonitorArgs) -> MonitorArgs {
        MonitorArgs {
            api: self.api.or(file.api),
            api_allow: self.api_allow.clone().or(file.api_allow),
            metrics: self.metrics.or(file.metrics),
            metrics_public: self.metrics_public || file.metrics_public,
            report: self.report.clone().or(file.report),
        }
    }
}

/// The running monitor of one run: call [`Monitoring::update`] about once a second and
/// [`Monitoring::finish`] at the end.
#[derive(Debug)]
pub struct Monitoring {
    view: SharedView,
    tracker: Tracker,
    pub extras: Extras,
    api: Option<ApiServer>,
    metrics: Option<MetricsServer>,
    report: Option<PathBuf>,
    quit: Arc<AtomicBool>,
    /// The stratum client of a pool-mining run (switchpool, and its counters).
    client: Arc<Mutex<Option<PoolControl>>>,
    /// The running engine's device pause (ascdisable/ascenable).
    devices: Arc<Mutex<Option<hashrig_engine::DevicePause>>>,
}

/// What the monitor of a pool-mining run reads (counters, failover order) and steers
/// (`switchpool`): the Stratum v1 client, or a failover list of v1 and V2 pools.
#[derive(Clone, Debug)]
pub enum PoolControl {
    V1(hashrig_stratum::ClientHandle),
    /// A Stratum V2 list: its client's failover order and switch.
    V2(hashrig_sv2::ClientHandle),
    /// v1 and V2 pools in one list: the v1 client (which numbers its own pools from 0) and the
    /// list, which knows the global order and which pool is mined on.
    Mixed { v1: hashrig_stratum::ClientHandle, list: hashrig_miner::failover::FailoverHandle },
}

impl PoolControl {
    /// `switchpool` by the pool's position in the user's list.
    fn switch_pool(&self, pool: usize) -> bool {
        match self {
            PoolControl::V1(c) => c.switch_pool(pool),
            PoolControl::V2(c) => c.switch_pool(pool),
            PoolControl::Mixed { list, .. } => list.switch_pool(pool),
        }
    }

    /// The counters, with pool indices as the user's list numbers them.
    fn stats(&self) -> hashrig_stratum::ClientStats {
        match self {
            PoolControl::V1(c) => c.stats(),
            // Shares and their answers are the ledger's; the client adds its order.
            PoolControl::V2(c) => {
                let st = c.status();
                hashrig_stratum::ClientStats { current_pool: st.channels.keys().next().copied(), order: st.order, ..Default::default() }
            }
            PoolControl::Mixed { v1, list } => {
                let mut st = v1.stats();
                st.order = list.order();
                st.current_pool = list.current_pool();
                st
            }
        }
    }
}

/// Write commands a run supports by default: `quit` (stop the run cleanly, as Ctrl-C would),
/// in pool mining `switchpool N` (the stratum client's failover order), and `ascdisable N` /
/// `ascenable N`, which pause and resume engine device N once the engine is attached
/// ([`Monitoring::attach_engine`]).
#[derive(Debug)]
struct RunActions {
    quit: Arc<AtomicBool>,
    client: Arc<Mutex<Option<PoolControl>>>,
    devices: Arc<Mutex<Option<hashrig_engine::DevicePause>>>,
}

impl Actions for RunActions {
    fn quit(&self) -> bool {
        tracing::warn!("quit requested through the API");
        self.quit.store(true, Ordering::Release);
        true
    }

    fn switch_pool(&self, pool: u32) -> bool {
        let client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let done = client.as_ref().is_some_and(|c| c.switch_pool(pool as usize));
        if done {
            tracing::warn!(pool, "switchpool requested through the API");
        }
        done
    }

    fn set_device_enabled(&self, device: u32, enabled: bool) -> bool {
        let pause = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let done = pause.as_ref().is_some_and(|p| p.set_enabled(device as usize, enabled));
        if done {
            tracing::warn!(device, enabled, "device {} through the API", if enabled { "resumed" } else { "paused" });
        }
        done
    }
}

impl Monitoring {
    /// Check the flags and start the listeners they ask for. `actions` serves write commands
    /// (only for peers given `W:` in --api-allow); without it, `quit` is supported and the
    /// caller polls [`Monitoring::quit_requested`].
    pub fn start(args: &MonitorArgs, mode: hashrig_monitor::RunMode, actions: Option<Arc<dyn Actions>>) -> anyhow::Result<Self> {
        let access = match &args.api_allow {
            Some(list) => Access::parse(list).map_err(|e| bad_input(format!("--api-allow: {e}")))?,
            None => Access::loopback_only(),
        };
        if args.api_allow.is_some() && args.api.is_none() {
            return Err(bad_input("--api-allow needs --api"));
        }
        if let Some(path) = &args.report
            && path.is_dir() {
                return Err(bad_input(format!("--report {}: is a directory; name an .html file", path.display())));
            }
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let extras = Extras { mode, started_unix, ..Default::default() };
        let view = SharedView::new(RunView { mode, started_unix, ..Default::default() });
        let quit = Arc::new(AtomicBool::new(false));
        let client = Arc::new(Mutex::new(None));
        let devices = Arc::new(Mutex::new(None));
        let api = match args.api {
            Some(addr) => {
                let mut cfg = ApiConfig::new(addr);
                cfg.access = access;
                cfg.validate().map_err(|e| bad_input(format!("--api: {e}")))?;
                let actions =
                    actions.unwrap_or_else(|| Arc::new(RunActions { quit: quit.clone(), client: client.clone(), devices: devices.clone() }));
                let srv = ApiServer::start(cfg, view.clone(), actions).context("starting the cgminer API")?;
                eprintln!("cgminer API on {}", srv.local_addr());
                Some(srv)
            }
            None => None,
        };
        let metrics = match args.metrics {
            Some(addr) => {
                if !addr.ip().is_loopback() && !args.metrics_public {
                    return Err(bad_input(format!("--metrics {addr} is not loopback: add --metrics-public to allow it")));
                }
                let srv = MetricsServer::start(addr, args.metrics_public, view.clone())
                    .context("starting the metrics listener")?;
                eprintln!("Prometheus metrics at http://{}/metrics", srv.local_addr());
                Some(srv)
            }
            None => None,
        };
        Ok(Monitoring {
            view,
            tracker: Tracker::new(),
            extras,
            api,
            metrics,
            report: args.report.clone(),
            quit,
            client,
            devices,
        })
    }

    /// Did an allowed peer send `quit`?
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::Acquire)
    }

    /// The shared view the listeners read (for a caller that fills pools or power itself).
    pub fn view(&self) -> &SharedView {
        &self.view
    }

    /// Publish a fresh snapshot of the engine's stats.
    pub fn update(&mut self, stats: &Stats) {
        // CPU devices: the hottest CPU sensor hwmon offers (nothing where it has none).
        self.extras.temperatures.retain(|(_, t)| !t.sensor.starts_with("hwmon:"));
        let cpu_temp = hashrig_power::cpu_temperature_at(&hashrig_power::hwmon_root())
            .map(|t| hashrig_monitor::Temperature { sensor: t.sensor, celsius: t.celsius });
        for d in stats.devices.iter().filter(|d| d.info.kind == hashrig_hasher::DeviceKind::Cpu) {
            if let Some(t) = &cpu_temp {
                self.extras.temperatures.push((d.index, t.clone()));
            }
        }
        let client = self.client.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.stats());
        if let Some(st) = client {
            self.client_stats(&st);
        }
        let v = self.tracker.view(stats, &self.extras);
        self.view.set(v);
    }

    /// Publish the final stats, stop the listeners and write the report if asked.
    pub fn finish(mut self, stats: &Stats) -> anyhow::Result<RunView> {
        self.update(stats);
        let view = self.view.snapshot();
        drop(self.api.take());
        drop(self.metrics.take());
        if let Some(path) = &self.report {
            hashrig_monitor::report::write_report(path, &view)
                .with_context(|| format!("writing the report to {}", path.display()))?;
            eprintln!("report written to {}", path.display());
        }
        Ok(view)
    }
}

/// The miner's ledger in the monitor's terms.
pub fn ledger_view(l: &hashrig_miner::LedgerSnapshot) -> hashrig_monitor::LedgerView {
    hashrig_monitor::LedgerView {
        found: l.found,
        accepted: l.accepted,
        rejected: l.rejected,
        stale: l.stale,
        in_flight: l.in_flight,
        reconciles: l.reconciles,
        rejected_by_kind: l.rejected_by_kind.iter().map(|(k, n)| (k.as_str().to_string(), *n)).collect(),
        stale_by_reason: l.stale_by_reason.iter().map(|(k, n)| (k.as_str().to_string(), *n)).collect(),
        blocks_found: l.blocks.found,
        blocks_accepted: l.blocks.accepted,
        blocks_rejected: l.blocks.rejected,
        blocks_stale: l.blocks.stale,
        blocks_in_flight: l.blocks.in_flight,
    }
}

/// The meter's latest figure, for the live view (the final one comes from [`power_view`]).
pub fn live_power(meter: Option<&hashrig_power::Meter>) -> Option<hashrig_monitor::PowerView> {
    let m = meter?;
    let watts = m.recent_watts()?;
    Some(hashrig_monitor::PowerView { watts, source: m.describe(), energy_j: None })
}

/// The power over the whole run.
pub fn power_view(p: &hashrig_power::PowerReport) -> hashrig_monitor::PowerView {
    hashrig_monitor::PowerView { watts: p.watts, source: p.source.clone(), energy_j: Some(p.joules) }
}

/// The economics in the monitor's terms (prices in USD).
pub fn economics_view(e: &hashrig_work::econ::Economics) -> hashrig_monitor::Economics {
    hashrig_monitor::Economics {
        currency: "USD".into(),
        network_difficulty: e.difficulty,
        coin_price: e.btc_price_usd,
        power_price_kwh: e.power_price_usd_kwh,
        revenue_per_day: e.revenue_usd_day,
        cost_per_day: e.cost_usd_day,
        break_even_power_price_kwh: e.break_even_usd_kwh,
        profit_per_day: e.profit_usd_day,
        hashprice_per_ph_day: Some(e.hashprice_usd_ph_day),
        ..Default::default()
    }
}

impl Monitoring {
    /// Name the pools (failover order) before mining starts.
    pub fn set_pools(&mut self, urls: &[String], users: &[String]) {
        self.extras.pools = urls
            .iter()
            .enumerate()
            .map(|(i, url)| hashrig_monitor::PoolView {
                id: i as u32,
                url: url.clone(),
                user: users.get(i).or(users.first()).cloned().unwrap_or_default(),
                priority: i as u32,
                ..Default::default()
            })
            .collect();
    }

    fn pool(&mut self, pool: usize) -> Option<&mut hashrig_monitor::PoolView> {
        self.extras.pools.get_mut(pool)
    }

    pub fn pool_connected(&mut self, pool: usize) {
        for (i, p) in self.extras.pools.iter_mut().enumerate() {
            p.active = i == pool;
        }
        if let Some(p) = self.pool(pool) {
            p.state = hashrig_monitor::PoolState::Alive;
        }
    }

    /// Stratum V2: the kind of channel open on the pool's connection.
    pub fn pool_channel(&mut self, pool: usize, kind: Option<String>) {
        if let Some(p) = self.pool(pool) {
            p.channel = kind;
        }
    }

    /// Up, but not mined on: a pool ranked higher is live (a hot standby in a list of v1 and V2
    /// pools).
    pub fn pool_standby(&mut self, pool: usize) {
        if let Some(p) = self.pool(pool) {
            p.state = hashrig_monitor::PoolState::Alive;
            p.active = false;
        }
    }

    pub fn pool_disconnected(&mut self, pool: usize) {
        if let Some(p) = self.pool(pool) {
            p.state = hashrig_monitor::PoolState::Dead;
            p.active = false;
        }
    }

    /// A job arrived: the pool's current share difficulty (and block height, where known).
    pub fn pool_job(&mut self, pool: usize, difficulty: f64) {
        if let Some(p) = self.pool(pool) {
            p.difficulty = difficulty;
            p.state = hashrig_monitor::PoolState::Alive;
        }
    }

    /// A share was found by engine device `device` (before the pool answers).
    pub fn share_found(&mut self, device: usize, difficulty: f64) {
        self.extras.best_share = self.extras.best_share.max(difficulty);
        let d = self.extras.device_shares.entry(device).or_default();
        d.best_share = d.best_share.max(difficulty);
    }

    /// The running engine, for `ascdisable`/`ascenable` (pause and resume one device).
    pub fn attach_engine(&mut self, engine: &hashrig_engine::Engine) {
        *self.devices.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.device_pause());
    }

    /// Pool mining: the stratum client, for `switchpool` and for its counters (stale shares it
    /// never sent, protocol errors, failover order), read at every [`Monitoring::update`].
    pub fn attach_pool_client(&mut self, client: PoolControl) {
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
    }

    /// The stratum client's counters into the view.
    pub fn client_stats(&mut self, st: &hashrig_stratum::ClientStats) {
        self.extras.protocol_errors = st.protocol_errors.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        for (rank, &pool) in st.order.iter().enumerate() {
            if let Some(p) = self.pool(pool) {
                p.priority = rank as u32;
            }
        }
    }

    /// A share ended in the ledger: counted for the pool it went to and the device that found
    /// it. `job_difficulty` is the share difficulty its job asked for. Stale rejects from the
    /// pool ("stale", "job not found") count as stale, as cgminer does; shares never answered
    /// count as stale for the rig and the device, not for the pool.
    pub fn share_settled(&mut self, pool: usize, device: usize, job_difficulty: f64, fate: &hashrig_miner::Fate) {
        use hashrig_miner::{Fate, RejectKind};
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let d = job_difficulty;
        let dev = self.extras.device_shares.entry(device).or_default();
        match fate {
            Fate::Accepted => {
                dev.accepted += 1;
                dev.difficulty_accepted += d;
                dev.last_share_unix = Some(now);
            }
            Fate::Rejected { kind: RejectKind::StaleJob, .. } | Fate::Stale(_) => dev.stale += 1,
            Fate::Rejected { .. } => {
                dev.rejected += 1;
                dev.difficulty_rejected += d;
            }
        }
        if let Fate::Stale(_) = fate {
            self.extras.stale_unsent += 1;
        }
        let Some(p) = self.pool(pool) else { return };
        match fate {
            Fate::Accepted => {
                p.shares.accepted += 1;
                p.shares.difficulty_accepted += d;
                p.last_share_unix = Some(now);
            }
            // Counted for the rig (stale_unsent above), not as the pool's answer.
            Fate::Stale(_) => {}
            Fate::Rejected { kind, reason } => {
                if *kind == RejectKind::StaleJob {
                    p.shares.stale += 1;
                    p.shares.difficulty_stale += d;
                } else {
                    p.shares.rejected += 1;
                    p.shares.difficulty_rejected += d;
                }
                p.shares.add_reject_reason(reason, 1);
            }
        }
    }
}

