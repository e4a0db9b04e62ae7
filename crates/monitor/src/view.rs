//! The monitor's view of a run: a plain snapshot that the API, the metrics and the report read.
//!
//! The engine (or a test) fills a [`RunView`]; nothing here computes mining statistics. Rates
//! are hashes per second; difficulties are pool difficulty (difficulty 1 = 2^32 hashes).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

pub use hashrig_engine::DeviceKind;

/// What kind of run a view describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Hashing synthetic work to measure the rig; shares found count as found.
    #[default]
    Bench,
    /// Mining for a pool or a node.
    Mine,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Bench => "bench",
            RunMode::Mine => "mine",
        }
    }
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one run (bench or mine).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub mode: RunMode,
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
    /// The share ledger (mining only): where every share the engine verified ended.
    #[serde(default)]
    pub ledger: Option<LedgerView>,
    /// Curtailment on a live power price (mining with `--power-price-cmd`).
    #[serde(default)]
    pub curtail: Option<CurtailView>,
}

/// Curtailment as the monitor shows it: whether the devices are paused on the power price,
/// the price and threshold in force, and what curtailing has saved so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CurtailView {
    /// The devices are paused because power costs more than the threshold.
    pub curtailed: bool,
    /// The price in force, USD/kWh (none before the first good reading or once it is stale).
    pub price_usd_kwh: Option<f64>,
    /// Curtail above this price, USD/kWh (a fixed one or the break-even).
    pub threshold_usd_kwh: Option<f64>,
    /// Resume below this price, USD/kWh.
    pub resume_below_usd_kwh: Option<f64>,
    /// Seconds spent curtailed.
    pub curtailed_s: f64,
    /// Power cost not spent while curtailed, USD.
    pub cost_avoided_usd: f64,
    /// Times the rig was curtailed.
    pub curtailments: u64,
    /// Price readings that failed (command error, garbage, timeout).
    pub price_errors: u64,
}

/// The miner's share ledger as the monitor shows it: every share the engine verified is
/// accepted, rejected, stale (with a reason) or still in flight, and
/// `found == accepted + rejected + stale + in_flight` (`reconciles`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerView {
    pub found: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub in_flight: u64,
    pub reconciles: bool,
    /// Rejects by kind (stale_job, duplicate, low_difficulty, unauthorized, block_invalid, other).
    pub rejected_by_kind: BTreeMap<String, u64>,
    /// Stale shares by reason (job_replaced, connection_lost, no_answer, queue_full, ...).
    pub stale_by_reason: BTreeMap<String, u64>,
    pub blocks_found: u64,
    pub blocks_accepted: u64,
    pub blocks_rejected: u64,
    pub blocks_stale: u64,
    pub blocks_in_flight: u64,
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
    /// Rejected shares by the reason the pool gave ("duplicate", "low difficulty", ...). Fill
    /// it with [`Shares::add_reject_reason`], which keeps it bounded; the API, metrics and
    /// engine views read it through [`Shares::bounded_reject_reasons`] anyway.
    pub reject_reasons: BTreeMap<String, u64>,
    pub difficulty_accepted: f64,
    pub difficulty_rejected: f64,
    pub difficulty_stale: f64,
}

/// Distinct reject reasons kept as the pools gave them (after [`clean_reason`]); every further
/// distinct reason is counted under [`OTHER_REASON`]. A pool chooses its reason strings, and
/// each becomes a metrics label and a map entry, so their number is bounded here.
pub const MAX_REJECT_REASONS: usize = 16;
/// Where reasons past [`MAX_REJECT_REASONS`] are counted.
pub const OTHER_REASON: &str = "other";
/// Longest reject reason kept, in characters; longer ones are cut.
pub const MAX_REASON_CHARS: usize = 120;

/// A pool's reject reason made safe to show as a label or API text: terminal escape sequences
/// (CSI `ESC [ .. final`, OSC `ESC ] .. BEL|ESC \`, two-character `ESC x`) and every other
/// control character removed, surrounding whitespace trimmed, cut to [`MAX_REASON_CHARS`]
/// characters. An empty result reads "unknown".
pub fn clean_reason(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_REASON_CHARS * 4));
    let mut kept = 0usize;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            match chars.next() {
                // CSI: parameters and intermediates up to one final byte in '@'..='~'.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (and the other string commands): up to BEL or ESC \.
                Some(']' | 'P' | '^' | '_' | 'X') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                // Two-character sequences (ESC c, ESC 7, ...): drop both.
                _ => {}
            }
            continue;
        }
        if c.is_control() {
            continue;
        }
        if kept == MAX_REASON_CHARS {
            break;
        }
        out.push(c);
        kept += 1;
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        "unknown".to_string()
    } else if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_string()
    }
}

impl Shares {
    /// Count `n` rejects for the pool's `reason`: cleaned with [`clean_reason`], and once
    /// [`MAX_REJECT_REASONS`] distinct reasons are kept, new ones count under [`OTHER_REASON`].
    /// What a caller should use to fill [`Shares::reject_reasons`].
    pub fn add_reject_reason(&mut self, reason: &str, n: u64) {
        let reason = clean_reason(reason);
        let kept = self.reject_reasons.len() - usize::from(self.reject_reasons.contains_key(OTHER_REASON));
        let key = if self.reject_reasons.contains_key(&reason) || kept < MAX_REJECT_REASONS {
            reason
        } else {
            OTHER_REASON.to_string()
        };
        *self.reject_reasons.entry(key).or_default() += n;
    }

    /// [`Shares::reject_reasons`] bounded, whoever filled it: reasons cleaned (those that clean
    /// to the same text summed), the [`MAX_REJECT_REASONS`] most frequent kept (ties by name),
    /// the rest summed under [`OTHER_REASON`]. Counts add up to the same total.
    pub fn bounded_reject_reasons(&self) -> BTreeMap<String, u64> {
        bound_reasons(self.reject_reasons.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

/// Clean, merge and cap reject reasons (see [`Shares::bounded_reject_reasons`]).
pub(crate) fn bound_reasons<'a>(reasons: impl IntoIterator<Item = (&'a str, u64)>) -> BTreeMap<String, u64> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, n) in reasons {
        let e = merged.entry(clean_reason(reason)).or_default();
        *e = e.saturating_add(n);
    }
    let mut other = merged.remove(OTHER_REASON).unwrap_or(0);
    if merged.len() > MAX_REJECT_REASONS {
        let mut by_count: Vec<(String, u64)> = merged.into_iter().collect();
        // Most frequent first; equal counts keep name order (the sort is stable).
        by_count.sort_by_key(|e| std::cmp::Reverse(e.1));
        let rest = by_count.split_off(MAX_REJECT_REASONS);
        other = rest.iter().fold(other, |acc, (_, n)| acc.saturating_add(*n));
        merged = by_count.into_iter().collect();
    }
    if other > 0 {
        merged.insert(OTHER_REASON.to_string(), other);
    }
    merged
}

/// One hashing device (a CPU backend, a GPU, an ASIC chain).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: u32,
    pub name: String,
    pub kind: DeviceKind,
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
    /// Stratum V2: the kind of channel open on the connection (`extended`, `standard`); `None`
    /// for Stratum v1 and solo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl PoolView {
    /// The protocol, from the URL's scheme: `stratum2` (V2), `stratum` (v1) or `gbt` (a node).
    pub fn protocol(&self) -> &'static str {
        let u = self.url.to_ascii_lowercase();
        if u.starts_with("stratum2+") {
            "stratum2"
        } else if u.starts_with("stratum") {
            "stratum"
        } else {
            "gbt"
        }
    }
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
    /// The hashrate the figures are for, hashes per second (the run's measured rate).
    #[serde(default)]
    pub hashrate_hs: f64,
    /// The power the figures are for, watts (measured or declared); `None` when unknown.
    #[serde(default)]
    pub watts: Option<f64>,
    /// What 1 PH/s earns a day at this difficulty and coin price (or as given).
    #[serde(default)]
    pub hashprice_per_ph_day: Option<f64>,
    /// Mining's revenue minus power cost per day; `None` when the power is unknown.
    #[serde(default)]
    pub profit_per_day: Option<f64>,
    /// The hashprice below which mining loses money at this power price.
    #[serde(default)]
    pub break_even_hashprice_per_ph_day: Option<f64>,
    /// The other uses of the same machine and power (rent, sell power), when priced.
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
    /// The use with the highest profit per day: "mining", "rent", "sell power" or "off".
    #[serde(default)]
    pub best: Option<String>,
    /// How much the best use makes over the next best, per day.
    #[serde(default)]
    pub best_by_per_day: Option<f64>,
}

/// Another use of the machine and its power, priced against mining.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// "rent" or "sell power".
    pub name: String,
    /// Income before power, per day (24 x rent, or the kWh drawn x the sale price).
    pub income_per_day: f64,
    /// Income minus the power bought at this run's power price, per day.
    pub profit_per_day: f64,
}

impl Economics {
    /// kWh the machine draws a day, when its power is known.
    pub fn energy_kwh_day(&self) -> Option<f64> {
        self.watts.filter(|w| *w > 0.0).map(|w| w * 24.0 / 1000.0)
    }

    /// Mining's profit per day at another power price: revenue minus the kWh drawn at `price`.
    pub fn mining_profit_at(&self, price: f64) -> Option<f64> {
        self.energy_kwh_day().map(|k| self.revenue_per_day - k * price)
    }

    /// An alternative's profit per day at another power price (every use draws the same power).
    pub fn alternative_profit_at(&self, alt: &Alternative, price: f64) -> Option<f64> {
        self.energy_kwh_day().map(|k| alt.income_per_day - k * price)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_reason_drops_escape_sequences_and_controls_and_cuts_long_text() {
        assert_eq!(clean_reason("\x1b[1;31mlow difficulty\x1b[0m\r\n"), "low difficulty");
        assert_eq!(clean_reason("\x1b]0;owned\x07dup\x1b]2;x\x1b\\licate"), "duplicate");
        assert_eq!(clean_reason("a\x00b\tc\x7fd\u{9b}e"), "abcde");
        assert_eq!(clean_reason("  \x1b[2J "), "unknown");
        let long = "é".repeat(500);
        assert_eq!(clean_reason(&long).chars().count(), MAX_REASON_CHARS);
        assert_eq!(clean_reason("low difficulty \"share\""), "low difficulty \"share\"");
    }

    #[test]
    fn add_reject_reason_keeps_sixteen_and_folds_the_rest() {
        let mut s = Shares::default();
        for i in 0..10_000u64 {
            s.add_reject_reason(&format!("reason {i}"), 1);
        }
        s.add_reject_reason("reason 3", 5);
        assert_eq!(s.reject_reasons.len(), MAX_REJECT_REASONS + 1);
        assert_eq!(s.reject_reasons["reason 3"], 6, "a kept reason still counts as itself");
        assert_eq!(s.reject_reasons[OTHER_REASON], 10_000 - 16);
        assert_eq!(s.reject_reasons.values().sum::<u64>(), 10_005);
        assert_eq!(s.bounded_reject_reasons(), s.reject_reasons, "already bounded");
    }

    #[test]
    fn bounded_reject_reasons_keep_the_most_frequent_and_merge_cleaned_duplicates() {
        let mut s = Shares::default();
        for i in 0..40u64 {
            s.reject_reasons.insert(format!("r{i:02}"), i + 1);
        }
        s.reject_reasons.insert("\x1b[31mr39\x1b[0m".into(), 100);
        let b = s.bounded_reject_reasons();
        assert_eq!(b.len(), 17);
        assert_eq!(b["r39"], 140, "the same reason once cleaned");
        assert!(b.contains_key("r24") && !b.contains_key("r23"), "{b:?}");
        assert_eq!(b.values().sum::<u64>(), s.reject_reasons.values().sum::<u64>());
    }
}
