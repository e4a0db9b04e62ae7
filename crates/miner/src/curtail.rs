//! Curtailment: stop hashing while power costs more than mining earns, and start again when it
//! costs less.
//!
//! A [`Curtailer`] is a state machine with no clock and no process of its own. The caller
//! feeds it price readings (a price in USD/kWh, or the error of a reading that failed), the
//! threshold in force (a fixed `--curtail-above`, or the live break-even price), and the time,
//! as seconds since any fixed start; it answers with [`Change`]s to apply to the devices, and
//! keeps the counters (time curtailed, the power cost avoided, failed readings).
//!
//! The rules:
//! - **Curtail** on a good reading above the threshold.
//! - **Resume** on a good reading below `resume_fraction` (95 %) of the threshold. A reading
//!   between the two leaves things as they are (hysteresis), and each reading changes the state
//!   at most once.
//! - **A failed reading** (the command fails, prints something that is not a price, or times
//!   out) changes nothing: it is counted, and the last good price is held for
//!   [`CurtailConfig::hold_s`] seconds after it was read.
//! - **Stale**: once the held price is older than that, there is no price. A curtailed rig
//!   resumes (it never stays off on a price it no longer has), and no curtailment starts
//!   until a good reading comes again.
//! - No threshold yet (the break-even needs a measured hashrate): no curtailment.
//!
//! The cost avoided is, for each stretch of time curtailed, its length times the power the rig
//! drew while mining times the price in force.

use hashrig_work::econ;

/// What a curtailer is told once.
#[derive(Clone, Debug, PartialEq)]
pub struct CurtailConfig {
    /// Act on prices (pause and resume); when false the prices are only read and shown.
    pub enabled: bool,
    /// Resume below this fraction of the threshold (0 < f <= 1).
    pub resume_fraction: f64,
    /// How long a good price stays in force without a newer one, seconds.
    pub hold_s: f64,
}

impl Default for CurtailConfig {
    fn default() -> Self {
        CurtailConfig { enabled: true, resume_fraction: 0.95, hold_s: 600.0 }
    }
}

/// A change of state the caller applies to the devices.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Pause every device: the price is above the threshold.
    Curtail { price: f64, threshold: f64 },
    /// Resume: the price fell below `resume_below`.
    Resume { price: f64, resume_below: f64 },
    /// Resume: no good price for longer than the hold (`age_s` since the last one, or since
    /// the curtailer started when there never was one).
    ResumeStale { age_s: f64 },
}

/// Why a price reading failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("the price command printed nothing")]
    Empty,
    #[error("`{0}` is not a price: want a number of USD per kWh, such as 0.052 or `0.052 USD/kWh`")]
    NotAPrice(String),
    #[error("the price {0} is negative")]
    Negative(String),
    #[error("`{0}`: unknown unit, only USD/kWh is read")]
    UnknownUnit(String),
}

/// Read a price command's output: its last non-empty line, a number of USD per kWh, optionally
/// followed by `USD/kWh` (any case, `$/kWh` too).
pub fn parse_price(text: &str) -> Result<f64, PriceError> {
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty()).ok_or(PriceError::Empty)?;
    let short: String = line.chars().take(80).collect();
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let (num, unit) = line.split_at(end);
    let value: f64 = num.parse().map_err(|_| PriceError::NotAPrice(short.clone()))?;
    if !value.is_finite() {
        return Err(PriceError::NotAPrice(short));
    }
    if value < 0.0 {
        return Err(PriceError::Negative(short));
    }
    let unit = unit.trim();
    if !(unit.is_empty() || unit.eq_ignore_ascii_case("usd/kwh") || unit.eq_ignore_ascii_case("$/kwh")) {
        return Err(PriceError::UnknownUnit(short));
    }
    Ok(value)
}

/// The electricity price (USD/kWh) at which mining's revenue equals its power cost, for a rig
/// hashing `hashrate_hs` on `watts` at a hashprice in USD per PH/s per day.
pub fn break_even_usd_kwh(hashrate_hs: f64, watts: f64, hashprice_usd_ph_day: f64) -> Result<f64, econ::EconError> {
    let d = econ::decide(&econ::DecisionInputs {
        hashrate_hs,
        power_w: watts,
        hashprice_usd_ph_day,
        power_price_usd_kwh: 0.0,
        rent_usd_hour: None,
        power_sale_usd_kwh: None,
    })?;
    Ok(d.break_even_power_price_usd_kwh)
}

/// The counters and the state, for printing and the monitor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurtailState {
    pub curtailed: bool,
    /// The price in force (the last good one, while it is held), USD/kWh.
    pub price: Option<f64>,
    /// The threshold in force, USD/kWh.
    pub threshold: Option<f64>,
    /// Seconds spent curtailed.
    pub curtailed_s: f64,
    /// USD not spent on power while curtailed.
    pub cost_avoided_usd: f64,
    /// Price readings that failed (command error, garbage, timeout).
    pub price_errors: u64,
    /// Good price readings.
    pub price_readings: u64,
    /// Times the rig was curtailed.
    pub curtailments: u64,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Curtailer {
    cfg: CurtailConfig,
    state: CurtailState,
    /// When the last good price was read.
    price_at: Option<f64>,
    /// When the curtailer started (for "never had a price").
    start: f64,
    /// Last time the counters were brought up to date.
    last: f64,
    stale_reported: bool,
}

impl Curtailer {
    /// A curtailer that starts, mining, at `now_s`.
    pub fn new(cfg: CurtailConfig, now_s: f64) -> Self {
        Curtailer { cfg, state: CurtailState::default(), price_at: None, start: now_s, last: now_s, stale_reported: false }
    }

    pub fn state(&self) -> &CurtailState {
        &self.state
    }

    pub fn config(&self) -> &CurtailConfig {
        &self.cfg
    }

    /// The price below which a curtailed rig resumes.
    pub fn resume_below(&self) -> Option<f64> {
        self.state.threshold.map(|t| t * self.cfg.resume_fraction)
    }

    /// Set the threshold in force (None: not known yet). Takes effect at the next reading.
    pub fn set_threshold(&mut self, threshold: Option<f64>) {
        self.state.threshold = threshold.filter(|t| t.is_finite() && *t >= 0.0);
    }

    /// Bring the counters up to `now_s`: time curtailed, and the cost avoided at `mining_watts`
    /// (the power the rig drew while mining; `None` when unknown: no cost is counted). Call it
    /// before each reading and each [`Curtailer::check_stale`].
    pub fn advance(&mut self, now_s: f64, mining_watts: Option<f64>) {
        let dt = (now_s - self.last).max(0.0);
        self.last = self.last.max(now_s);
        if self.state.curtailed {
            self.state.curtailed_s += dt;
            if let (Some(w), Some(p)) = (mining_watts, self.state.price)
                && w.is_finite()
                && w > 0.0
            {
                self.state.cost_avoided_usd += dt / 3600.0 * w / 1000.0 * p;
            }
        }
    }

    /// A good price read at `now_s`.
    pub fn price(&mut self, now_s: f64, price: f64) -> Option<Change> {
        self.state.price = Some(price);
        self.state.price_readings += 1;
        self.price_at = Some(now_s);
        self.stale_reported = false;
        if !self.cfg.enabled {
            return None;
        }
        let threshold = self.state.threshold?;
        if !self.state.curtailed && price > threshold {
            self.state.curtailed = true;
            self.state.curtailments += 1;
            return Some(Change::Curtail { price, threshold });
        }
        let resume_below = threshold * self.cfg.resume_fraction;
        if self.state.curtailed && price < resume_below {
            self.state.curtailed = false;
            return Some(Change::Resume { price, resume_below });
        }
        None
    }

    /// A reading that failed at `now_s`: counted; the held price stays. Then as
    /// [`Curtailer::check_stale`].
    pub fn failed(&mut self, now_s: f64) -> Option<Change> {
        self.state.price_errors += 1;
        self.check_stale(now_s)
    }

    /// Drop a price older than the hold; a curtailed rig then resumes.
    pub fn check_stale(&mut self, now_s: f64) -> Option<Change> {
        let since = self.price_at.unwrap_or(self.start);
        let age_s = now_s - since;
        if age_s <= self.cfg.hold_s {
            return None;
        }
        self.state.price = None;
        if self.state.curtailed {
            self.state.curtailed = false;
            self.stale_reported = true;
            return Some(Change::ResumeStale { age_s });
        }
        None
    }

    /// Whether the price went stale (and has not come back) since the last call that said so;
    /// true once per stale spell, for a log line when nothing was curtailed.
    pub fn newly_stale(&mut self, now_s: f64) -> bool {
        let since = self.price_at.unwrap_or(self.start);
        if now_s - since > self.cfg.hold_s && !self.stale_reported {
            self.stale_reported = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rig() -> Curtailer {
        let mut c = Curtailer::new(CurtailConfig { enabled: true, resume_fraction: 0.95, hold_s: 600.0 }, 0.0);
        c.set_threshold(Some(0.10));
        c
    }

    #[test]
    fn prices_are_read_as_plain_numbers_or_usd_per_kwh() {
        assert_eq!(parse_price("0.052\n"), Ok(0.052));
        assert_eq!(parse_price("noise\n0.07 USD/kWh\n\n"), Ok(0.07));
        assert_eq!(parse_price("0.07 usd/kwh"), Ok(0.07));
        assert_eq!(parse_price("0"), Ok(0.0));
        assert_eq!(parse_price(""), Err(PriceError::Empty));
        assert!(matches!(parse_price("garbage"), Err(PriceError::NotAPrice(_))));
        assert!(matches!(parse_price("NaN"), Err(PriceError::NotAPrice(_))));
        assert!(matches!(parse_price("inf"), Err(PriceError::NotAPrice(_))));
        assert!(matches!(parse_price("-0.01"), Err(PriceError::Negative(_))));
        assert!(matches!(parse_price("5 EUR/MWh"), Err(PriceError::UnknownUnit(_))));
    }

    #[test]
    fn break_even_matches_the_worked_example() {
        // 19 J/TH at $38/PH/day breaks even at 0.038 / 0.456 = $0.0833/kWh.
        let b = break_even_usd_kwh(1e12, 19.0, 38.0).unwrap();
        assert!((b - 0.038 / 0.456).abs() < 1e-12, "{b}");
        assert!(break_even_usd_kwh(0.0, 19.0, 38.0).is_err());
    }

    #[test]
    fn above_the_threshold_curtails_and_below_resumes() {
        let mut c = rig();
        assert_eq!(c.price(1.0, 0.05), None);
        assert!(!c.state().curtailed);
        // Exactly at the threshold is not above it.
        assert_eq!(c.price(2.0, 0.10), None);
        assert_eq!(c.price(3.0, 0.50), Some(Change::Curtail { price: 0.50, threshold: 0.10 }));
        assert!(c.state().curtailed);
        // Another high reading changes nothing.
        assert_eq!(c.price(4.0, 0.40), None);
        let r = c.price(5.0, 0.05).unwrap();
        assert!(matches!(r, Change::Resume { price, resume_below } if price == 0.05 && (resume_below - 0.095).abs() < 1e-12), "{r:?}");
        assert_eq!(c.state().curtailments, 1);
        assert_eq!(c.state().price_readings, 5);
    }

    #[test]
    fn between_95_percent_and_the_threshold_nothing_changes() {
        let mut c = rig();
        assert_eq!(c.price(0.0, 0.11).map(|_| ()), Some(()));
        // 0.097 is below the threshold but above 95 % of it: still curtailed.
        assert_eq!(c.price(1.0, 0.097), None);
        assert!(c.state().curtailed);
        assert_eq!(c.price(2.0, 0.0951), None);
        assert!(matches!(c.price(3.0, 0.094), Some(Change::Resume { .. })));
        // And when mining, the same band does not curtail.
        assert_eq!(c.price(4.0, 0.099), None);
        assert!(!c.state().curtailed);
    }

    #[test]
    fn without_a_threshold_or_when_disabled_nothing_is_paused() {
        let mut c = Curtailer::new(CurtailConfig::default(), 0.0);
        assert_eq!(c.price(1.0, 9.0), None, "no break-even yet");
        assert_eq!(c.state().price, Some(9.0));
        let mut c = Curtailer::new(CurtailConfig { enabled: false, ..CurtailConfig::default() }, 0.0);
        c.set_threshold(Some(0.1));
        assert_eq!(c.price(1.0, 9.0), None, "watching prices only");
        // A threshold set while curtailed takes effect at the next reading.
        let mut c = rig();
        c.price(0.0, 0.2);
        c.set_threshold(Some(0.5));
        assert!(matches!(c.price(1.0, 0.4), Some(Change::Resume { .. })));
    }

    #[test]
    fn time_and_cost_avoided_are_counted_only_while_curtailed() {
        let mut c = rig();
        c.advance(10.0, Some(100.0));
        c.price(10.0, 0.50);
        // One hour curtailed at 100 W and $0.50/kWh: 0.1 kWh, $0.05.
        c.advance(3610.0, Some(100.0));
        assert!((c.state().curtailed_s - 3600.0).abs() < 1e-9);
        assert!((c.state().cost_avoided_usd - 0.05).abs() < 1e-12, "{}", c.state().cost_avoided_usd);
        c.price(3610.0, 0.01);
        c.advance(7210.0, Some(100.0));
        assert!((c.state().curtailed_s - 3600.0).abs() < 1e-9);
        // Unknown power: time counts, cost does not.
        c.price(7210.0, 1.0);
        c.advance(7220.0, None);
        assert!((c.state().curtailed_s - 3610.0).abs() < 1e-9);
        assert!((c.state().cost_avoided_usd - 0.05).abs() < 1e-12);
        // Time never runs backwards.
        c.advance(7000.0, Some(100.0));
        assert!((c.state().curtailed_s - 3610.0).abs() < 1e-9);
    }

    #[test]
    fn failed_readings_are_counted_and_hold_the_last_price_then_mining_resumes() {
        let mut c = rig();
        c.price(0.0, 0.50);
        assert!(c.state().curtailed);
        for t in [60.0, 120.0, 599.0] {
            assert_eq!(c.failed(t), None);
            assert!(c.state().curtailed, "the held price still stands at {t}");
            assert_eq!(c.state().price, Some(0.50));
        }
        assert_eq!(c.state().price_errors, 3);
        assert_eq!(c.failed(601.0), Some(Change::ResumeStale { age_s: 601.0 }));
        assert!(!c.state().curtailed);
        assert_eq!(c.state().price, None);
        assert_eq!(c.state().price_errors, 4);
        // Silence (no reading at all) ends the same way.
        let mut c = rig();
        c.price(0.0, 0.50);
        assert_eq!(c.check_stale(600.0), None);
        assert!(matches!(c.check_stale(600.5), Some(Change::ResumeStale { .. })));
        assert_eq!(c.check_stale(700.0), None, "one change");
        // A good price later starts over.
        assert!(matches!(c.price(701.0, 0.50), Some(Change::Curtail { .. })));
    }

    #[test]
    fn no_curtailment_on_a_stale_price_and_stale_is_told_once() {
        let mut c = rig();
        assert!(!c.newly_stale(600.0));
        assert!(c.newly_stale(601.0));
        assert!(!c.newly_stale(700.0));
        c.price(800.0, 0.05);
        assert!(!c.newly_stale(900.0));
        assert!(c.newly_stale(1401.0));
    }
}
