//! The monitor's view of a run: a plain snapshot that the API, the metrics and the report read.
//!
//! The engine (or a test) fills a [`RunView`]; nothing here computes mining statistics. Rates
//! are hashes per second; difficulties are pool difficulty (difficulty 1 = 2^32 hashes).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// A snapshot of one run (bench or mine).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// "bench" or "mine".
    pub mode: String,
    /// Unix seconds when the run started.
    pub started_unix: u64,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Whole-rig hashrate.
    pub hashrate: Rates,
    /// The rig hashrate's confidence interval (95 %), where it is estimated from nonces/shares.
    pub hashrate_ci: Option<Interval>,
    /// Hashes done (exact for CPU/GPU, estimated for ASIC chains).
    pub hashes: f64,
    pub shares: Shares,
    /// Highest share difficulty seen this run.
    pub best_share: f64,
    pub blocks_found: u64,
    pub devices: Vec<DeviceView>,
    pub pools: Vec<PoolView>,
    pub power: Option<PowerView>,
    /// Joules per terahash over the run, when both energy and hashes are known.
    pub j_per_th: Option<f64>,
    /// Rig hashrate over time, oldest first.
    pub samples: Vec<Sample>,
    pub economics: Option<Economics>,
    /// Pool protocol errors by kind (mining only).
    #[serde(default)]
    pub protocol_errors: BTreeMap<String, u64>,
}

/// Hashrates over three windows, in hashes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Average over the whole run.
    pub avg: f64,
    /// Last 5 seconds.
    pub s5: f64,
    /// Last minute.
    pub m1: f64,
}

/// A two-sided interval, e.g. a 95 % confidence interval of a hashrate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Share counts (per pool or for the whole rig).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shares {
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    /// Rejected shares by the reason the pool gave ("duplicate", "low difficulty", ...).
    pub reject_reasons: BTreeMap<String, u64>,
    pub difficulty_accepted: f64,
    pub difficulty_rejected: f64,
    pub difficulty_stale: f64,
}

/// One hashing device (a CPU backend, a GPU, an ASIC chain).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: u32,
    pub name: String,
    /// "cpu", "gpu" or "asic".
    pub kind: String,
    /// Kernel or chip model, e.g. "sha-ni", "wgsl", "bm1370".
    pub kernel: String,
    pub enabled: bool,
    pub hashrate: Rates,
    /// Nominal hashrate (ASIC: frequency x cores), if known.
    pub nominal_hashrate: Option<f64>,
    /// Whether the hash count is exact or estimated from returned nonces.
    pub estimated: bool,
    pub hashes: f64,
    /// Candidates that passed re-verification (cgminer's "Diff1 Work" counts these too).
    pub valid_nonces: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    /// Candidates that failed re-verification.
    pub hw_errors: u64,
    pub difficulty_accepted: f64,
    pub difficulty_rejected: f64,
    pub best_share: f64,
    pub last_share_unix: Option<u64>,
    pub temperatures: Vec<Temperature>,
    /// Per-chip counts for ASIC chains (empty otherwise).
    pub chips: Vec<ChipView>,
}

/// A temperature sensor reading.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
}

/// One chip of an ASIC chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChipView {
    pub index: u16,
    pub nonces: u64,
    pub hw_errors: u64,
    /// Estimated from nonces at the ticket difficulty.
    pub est_hashrate: f64,
    pub temperature: Option<f64>,
    pub cores: Vec<CoreView>,
}

/// One core of a chip.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreView {
    pub index: u16,
    pub nonces: u64,
    pub hw_errors: u64,
}

/// A pool (Stratum) or a node (solo mining).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolView {
    pub id: u32,
    pub url: String,
    pub user: String,
    pub state: PoolState,
    /// The pool currently given work.
    pub active: bool,
    pub priority: u32,
    pub shares: Shares,
    /// Current share difficulty the pool asked for.
    pub difficulty: f64,
    pub best_share: f64,
    pub last_share_unix: Option<u64>,
    pub block_height: Option<u64>,
}

/// Connection state of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolState {
    #[default]
    Connecting,
    Alive,
    Dead,
    Disabled,
}

impl PoolState {
    /// The word cgminer uses for the pool's `Status`.
    pub fn cgminer_status(self) -> &'static str {
        match self {
            PoolState::Connecting => "Unknown",
            PoolState::Alive => "Alive",
            PoolState::Dead => "Dead",
            PoolState::Disabled => "Disabled",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Connecting => "connecting",
            PoolState::Alive => "alive",
            PoolState::Dead => "dead",
            PoolState::Disabled => "disabled",
        }
    }
}

/// Power draw and where the figure came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerView {
    pub watts: f64,
    /// "rapl", "hwmon", "nvml", "meter", "declared", ...
    pub source: String,
    /// Energy over the run, when measured by a counter.
    pub energy_j: Option<f64>,
}

/// One point of the hashrate-over-time series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Hashes per second over the interval ending at `t_s`.
    pub hashrate: f64,
}

/// Money, where the user gave prices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Economics {
    pub currency: String,
    pub network_difficulty: f64,
    pub coin_price: f64,
    /// Price of one kWh.
    pub power_price_kwh: f64,
    pub revenue_per_day: f64,
    /// Power cost per day; `None` when the power draw is unknown.
    pub cost_per_day: Option<f64>,
    /// The power price at which revenue equals cost.
    pub break_even_power_price_kwh: Option<f64>,
}

impl RunView {
    /// Hardware errors over all devices.
    pub fn hw_errors(&self) -> u64 {
        self.devices.iter().map(|d| d.hw_errors).sum()
    }

    /// Valid nonces over all devices.
    pub fn valid_nonces(&self) -> u64 {
        self.devices.iter().map(|d| d.valid_nonces).sum()
    }

    /// Hardware errors as a percentage of all candidates (valid + failed); 0 with none.
    pub fn hw_error_percent(&self) -> f64 {
        percent(self.hw_errors(), self.valid_nonces() + self.hw_errors())
    }
}

impl DeviceView {
    /// Hardware errors as a percentage of this device's candidates.
    pub fn hw_error_percent(&self) -> f64 {
        percent(self.hw_errors, self.valid_nonces + self.hw_errors)
    }

    /// Indices (into `chips`) of chips that look weak: estimated hashrate under half the
    /// median chip's, or more than 5 % of their nonces failing re-verification.
    pub fn weak_chips(&self) -> Vec<usize> {
        if self.chips.is_empty() {
            return Vec::new();
        }
        let mut rates: Vec<f64> = self.chips.iter().map(|c| c.est_hashrate).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        self.chips
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.est_hashrate < 0.5 * median
                    || percent(c.hw_errors, c.nonces + c.hw_errors) > 5.0
            })
            .map(|(i, _)| i)
            .collect()
    }
}

pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// A view shared between whoever updates it (the engine's stats loop) and the servers.
#[derive(Clone, Debug, Default)]
pub struct SharedView(Arc<RwLock<RunView>>);

impl SharedView {
    pub fn new(view: RunView) -> Self {
        SharedView(Arc::new(RwLock::new(view)))
    }

    /// A copy of the current view.
    pub fn snapshot(&self) -> RunView {
        self.0.read().clone()
    }

    /// Replace the view.
    pub fn set(&self, view: RunView) {
        *self.0.write() = view;
    }

    /// Change the view in place.
    pub fn update(&self, f: impl FnOnce(&mut RunView)) {
        f(&mut self.0.write());
    }
}
