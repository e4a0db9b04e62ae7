//! Curtailment in `hashrig mine`: the flags, the price command run on its own thread, and the
//! glue between [`hashrig_miner::curtail::Curtailer`] (which decides) and the engine's device
//! pause (which acts).
//!
//! The price command runs with `sh -c` every `--power-price-interval` seconds (60 by default) on
//! a thread of its own, never on the async workers; each run has a timeout (the interval, at
//! least 2 s and at most 30 s). Its last non-empty output line is a price in USD/kWh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hashrig_miner::curtail::{Change, CurtailConfig, Curtailer, parse_price};
use hashrig_work::econ;

use crate::bad_input;

/// Curtailment flags of `hashrig mine`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CurtailArgs {
    /// A command printing the live power price in USD/kWh ("0.052" or "0.052 USD/kWh"); run
    /// every --power-price-interval seconds.
    #[arg(long, value_name = "CMD")]
    pub power_price_cmd: Option<String>,
    /// Seconds between runs of --power-price-cmd [default: 60].
    #[arg(long, value_name = "SECS")]
    pub power_price_interval: Option<f64>,
    /// Pause every device while the live price is above the break-even price (or above
    /// --curtail-above); resume below 95 % of it. Needs --power-price-cmd.
    #[arg(long)]
    pub curtail: bool,
    /// Curtail above this power price, USD/kWh, instead of the break-even (implies --curtail).
    #[arg(long, value_name = "USD/kWh", allow_negative_numbers = true)]
    pub curtail_above: Option<String>,
    /// Hold the last good price this long when the price command fails [default: 600]; past
    /// that, a curtailed rig resumes mining.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub price_hold: Option<f64>,
}

/// Where the break-even's revenue comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Revenue {
    Hashprice(f64),
    /// A BTC price and fees per block (BTC): the hashprice follows the network difficulty of
    /// the jobs.
    BtcPrice { usd: f64, fees_btc: f64 },
}

/// The checked curtailment settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CurtailSettings {
    pub command: String,
    pub interval: Duration,
    /// Act on the price (else only read and show it).
    pub enabled: bool,
    /// A fixed threshold, USD/kWh; none: the break-even.
    pub above: Option<f64>,
    pub hold: Duration,
    pub revenue: Option<Revenue>,
}

fn amount(flag: &str, v: &Option<String>) -> Result<Option<f64>> {
    v.as_deref().map(|s| econ::parse_amount(s).map_err(|e| bad_input(format!("{flag}: {e}")))).transpose()
}

fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(bad_input(format!("{flag} must be a number of seconds >= 0, got {v}")));
    }
    Ok(Duration::from_secs_f64(v))
}

impl CurtailArgs {
    /// Check the flags. `file_cmd` is the config file's `[power] price_cmd`; `power_known`
    /// whether the power is declared or metered by the user's command, and `revenue` the
    /// hashprice or coin price given to the live economics (`--hashprice`, `--btc-price`):
    /// the break-even needs both.
    pub fn resolve(&self, file_cmd: Option<String>, power_known: bool, revenue: Option<Revenue>) -> Result<Option<CurtailSettings>> {
        let above = amount("--curtail-above", &self.curtail_above)?;
        let enabled = self.curtail || above.is_some();
        let command = self.power_price_cmd.clone().or(file_cmd);
        let Some(command) = command else {
            if enabled {
                return Err(bad_input("--curtail needs a live price: give --power-price-cmd CMD (or [power] price_cmd in the config file)"));
            }
            for (set, flag) in [(self.power_price_interval.is_some(), "--power-price-interval"), (self.price_hold.is_some(), "--price-hold")] {
                if set {
                    return Err(bad_input(format!("{flag} needs --power-price-cmd CMD")));
                }
            }
            return Ok(None);
        };
        if command.trim().is_empty() {
            return Err(bad_input("--power-price-cmd is empty"));
        }
        let interval = seconds("--power-price-interval", self.power_price_interval.unwrap_or(60.0))?;
        if interval < Duration::from_millis(100) {
            return Err(bad_input("--power-price-interval must be at least 0.1 seconds"));
        }
        let hold = seconds("--price-hold", self.price_hold.unwrap_or(600.0))?;
        if enabled && above.is_none() && (revenue.is_none() || !power_known) {
            let missing = match (revenue.is_none(), power_known) {
                (true, false) => "a hashprice (--hashprice USD/PH/day, or --btc-price USD) and the power (--watts or --power-cmd)",
                (true, true) => "a hashprice (--hashprice USD/PH/day, or --btc-price USD with the pool's network difficulty)",
                _ => "the power (--watts or --power-cmd)",
            };
            return Err(bad_input(format!(
                "--curtail needs a threshold: give --curtail-above USD/kWh, or {missing} so the break-even price can be worked out"
            )));
        }
        Ok(Some(CurtailSettings { command, interval, enabled, above, hold, revenue }))
    }
}

/// Run `command` with `sh -c`, at most `timeout`, and read its price; or say why there is none.
fn run_with_timeout(command: &str, timeout: Duration) -> std::result::Result<f64, String> {
    use hashrig_power::CommandError;
    let text = hashrig_power::run_command(command, timeout).map_err(|e| match e {
        CommandError::Spawn(e) => format!("cannot run the price command: {e}"),
        CommandError::Timeout => format!("the price command gave no answer within {:.1} s", timeout.as_secs_f64()),
        CommandError::Failed(status) => format!("the price command failed ({status})"),
    })?;
    parse_price(&text).map_err(|e| e.to_string())
}

/// The price command on its own thread: one result per run, with the time it ended.
#[derive(Debug)]
struct PricePoller {
    rx: mpsc::Receiver<(Instant, std::result::Result<f64, String>)>,
    stop: Arc<AtomicBool>,
}

impl PricePoller {
    fn start(command: String, interval: Duration) -> Result<PricePoller> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let timeout = interval.clamp(Duration::from_secs(2), Duration::from_secs(30));
        std::thread::Builder::new().name("hashrig-price".into()).spawn(move || {
            let mut next = Instant::now();
            while !stop2.load(Ordering::Acquire) {
                let r = run_with_timeout(&command, timeout);
                if tx.send((Instant::now(), r)).is_err() {
                    return;
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now;
                }
                while !stop2.load(Ordering::Acquire) && Instant::now() < next {
                    std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
                }
            }
        })?;
        Ok(PricePoller { rx, stop })
    }
}

impl Drop for PricePoller {
    fn drop(&mut self) {
        // The thread ends after the command it runs (bounded by the timeout); not waited for.
        self.stop.store(true, Ordering::Release);
    }
}

/// Curtailment during one run.
#[derive(Debug)]
pub struct RunCurtail {
    settings: CurtailSettings,
    curtailer: Curtailer,
    poller: PricePoller,
    started: Instant,
    /// Devices this curtailment paused (a device already paused through the API stays as it was).
    paused: Vec<usize>,
    /// Hashes and seconds counted while every device was mining, for the break-even's rate.
    mined: (u64, f64),
    last: Option<(Instant, u64, bool)>,
    /// The power the rig drew while mining, watts.
    mining_watts: Option<f64>,
    /// Network difficulty of the latest job.
    difficulty: Option<f64>,
    break_even_noted: bool,
}

impl RunCurtail {
    pub fn start(settings: CurtailSettings) -> Result<RunCurtail> {
        let poller = PricePoller::start(settings.command.clone(), settings.interval)?;
        let cfg = CurtailConfig { enabled: settings.enabled, resume_fraction: 0.95, hold_s: settings.hold.as_secs_f64() };
        let mut curtailer = Curtailer::new(cfg, 0.0);
        curtailer.set_threshold(settings.above);
        if settings.enabled {
            match settings.above {
                Some(a) => tracing::info!(above = a, resume_below = a * 0.95, "curtailment on: above {a} USD/kWh the devices pause"),
                None => tracing::info!("curtailment on: above the break-even price the devices pause"),
            }
        }
        Ok(RunCurtail {
            settings,
            curtailer,
            poller,
            started: Instant::now(),
            paused: Vec::new(),
            mined: (0, 0.0),
            last: None,
            mining_watts: None,
            difficulty: None,
            break_even_noted: false,
        })
    }

    /// The network difficulty of a new job (for `--btc-price`).
    pub fn job_difficulty(&mut self, d: f64) {
        if d.is_finite() && d > 0.0 {
            self.difficulty = Some(d);
        }
    }

    fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Once a second: take the price readings that came, keep the break-even current, apply
    /// the decisions to the devices, count.
    pub fn tick(&mut self, engine: &hashrig_engine::Engine, now: Instant, watts: Option<f64>) {
        let curtailed = self.curtailer.state().curtailed;
        // The mining rate and power, only over seconds when nothing was paused by us.
        let h = engine.hashes();
        if let Some((t, h0, clean)) = self.last
            && clean
            && !curtailed
        {
            self.mined.0 += h.saturating_sub(h0);
            self.mined.1 += now.saturating_duration_since(t).as_secs_f64();
        }
        if !curtailed {
            self.mining_watts = watts.or(self.mining_watts);
        }
        if self.settings.above.is_none() && !curtailed {
            let threshold = self.break_even();
            if threshold.is_some() && !self.break_even_noted {
                self.break_even_noted = true;
                tracing::info!(break_even = threshold.unwrap_or_default(), "break-even power price worked out: curtailment can act");
            }
            self.curtailer.set_threshold(threshold);
        }
        let mut changed = false;
        while let Ok((at, r)) = self.poller.rx.try_recv() {
            let t = self.secs(at);
            self.curtailer.advance(t, self.mining_watts);
            let change = match r {
                Ok(p) => {
                    tracing::debug!(price = p, "power price");
                    self.curtailer.price(t, p)
                }
                Err(e) => {
                    let held = self.curtailer.state().price;
                    tracing::warn!(
                        error = %e,
                        errors = self.curtailer.state().price_errors + 1,
                        held = held.map_or("none".to_string(), |p| format!("{p} USD/kWh")),
                        "power price reading failed: mining state unchanged, last good price held for at most {:.0} s",
                        self.settings.hold.as_secs_f64()
                    );
                    self.curtailer.failed(t)
                }
            };
            changed |= self.apply(engine, change);
        }
        let t = self.secs(now);
        self.curtailer.advance(t, self.mining_watts);
        let stale = self.curtailer.check_stale(t);
        changed |= self.apply(engine, stale);
        if self.curtailer.newly_stale(t) {
            tracing::warn!(hold_s = self.settings.hold.as_secs_f64(), "no good power price for longer than the hold: mining on, not curtailing on a stale price");
        }
        self.last = Some((now, h, !changed));
    }

    fn break_even(&self) -> Option<f64> {
        let (hashes, secs) = self.mined;
        if secs < 2.0 || hashes == 0 {
            return None;
        }
        let hashprice = match self.settings.revenue? {
            Revenue::Hashprice(h) => h,
            Revenue::BtcPrice { usd, fees_btc } => econ::hashprice_from_network(self.difficulty?, usd, econ::BLOCK_SUBSIDY_BTC, fees_btc).ok()?,
        };
        hashrig_miner::curtail::break_even_usd_kwh(hashes as f64 / secs, self.mining_watts?, hashprice).ok()
    }

    fn apply(&mut self, engine: &hashrig_engine::Engine, change: Option<Change>) -> bool {
        let Some(change) = change else { return false };
        let pause = engine.device_pause();
        match change {
            Change::Curtail { price, threshold } => {
                for i in 0..engine.devices().len() {
                    if !pause.is_paused(i) && pause.set_enabled(i, false) {
                        self.paused.push(i);
                    }
                }
                tracing::warn!(price, threshold, devices = self.paused.len(), "curtailed: power price {price} USD/kWh is above {threshold:.4} USD/kWh, devices paused");
            }
            Change::Resume { price, resume_below } => {
                self.resume(&pause);
                tracing::info!(price, resume_below, "curtailment over: power price {price} USD/kWh is below {resume_below:.4} USD/kWh, devices resumed");
            }
            Change::ResumeStale { age_s } => {
                self.resume(&pause);
                tracing::warn!(age_s, "curtailment over: no good power price for {age_s:.0} s (longer than the hold), devices resumed");
            }
        }
        true
    }

    fn resume(&mut self, pause: &hashrig_engine::DevicePause) {
        for i in self.paused.drain(..) {
            pause.set_enabled(i, true);
        }
    }

    /// Count up to the end of the run.
    pub fn finish(&mut self, now: Instant) {
        let t = self.secs(now);
        self.curtailer.advance(t, self.mining_watts);
    }

    /// For the monitor.
    pub fn view(&self) -> hashrig_monitor::CurtailView {
        let s = self.curtailer.state();
        hashrig_monitor::CurtailView {
            curtailed: s.curtailed,
            price_usd_kwh: s.price,
            threshold_usd_kwh: s.threshold,
            resume_below_usd_kwh: self.curtailer.resume_below(),
            curtailed_s: s.curtailed_s,
            cost_avoided_usd: s.cost_avoided_usd,
            curtailments: s.curtailments,
            price_errors: s.price_errors,
        }
    }

    /// " | CURTAILED price 0.5 > 0.1 USD/kWh, curtailed 12 s, avoided $0.000123, price errors 0"
    pub fn status_part(&self) -> String {
        let s = self.curtailer.state();
        let price = s.price.map_or("price ?".to_string(), |p| format!("price {p} USD/kWh"));
        let head = match (s.curtailed, s.threshold) {
            (true, Some(t)) => format!("CURTAILED ({price} > {t:.4})"),
            (false, Some(t)) if self.settings.enabled => format!("{price} (curtail above {t:.4})"),
            _ => price,
        };
        format!(" | {head}, curtailed {:.0} s, avoided ${:.6}, price errors {}", s.curtailed_s, s.cost_avoided_usd, s.price_errors)
    }

    /// ", curtailed 12.0 s (1 time), cost avoided $0.000123, price errors 0" for the final line.
    pub fn final_part(&self) -> String {
        let s = self.curtailer.state();
        format!(
            ", curtailed {:.1} s ({} time{}), cost avoided ${:.6}, price errors {}",
            s.curtailed_s,
            s.curtailments,
            if s.curtailments == 1 { "" } else { "s" },
            s.cost_avoided_usd,
            s.price_errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CurtailArgs {
        CurtailArgs { power_price_cmd: Some("echo 0.05".into()), ..CurtailArgs::default() }
    }

    #[test]
    fn curtailment_needs_a_price_and_a_threshold() {
        let e = CurtailArgs { curtail: true, ..CurtailArgs::default() }.resolve(None, true, None).unwrap_err().to_string();
        assert!(e.contains("--power-price-cmd"), "{e}");
        let e = CurtailArgs { curtail: true, ..args() }.resolve(None, true, None).unwrap_err().to_string();
        assert!(e.contains("--curtail-above") && e.contains("--hashprice"), "{e}");
        let e = CurtailArgs { curtail: true, ..args() }.resolve(None, false, Some(Revenue::Hashprice(38.0))).unwrap_err().to_string();
        assert!(e.contains("--watts"), "{e}");
        let e = CurtailArgs { curtail_above: Some("-0.1".into()), ..args() }.resolve(None, true, None).unwrap_err().to_string();
        assert!(e.contains("--curtail-above") && e.contains("negative"), "{e}");
        let e = CurtailArgs { curtail_above: Some("abc".into()), ..args() }.resolve(None, true, None).unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
        let s = CurtailArgs { curtail_above: Some("0.1".into()), ..args() }.resolve(None, false, None).unwrap().unwrap();
        assert!(s.enabled && s.above == Some(0.1) && s.interval == Duration::from_secs(60) && s.hold == Duration::from_secs(600));
        let btc = Some(Revenue::BtcPrice { usd: 100_000.0, fees_btc: 0.0 });
        let s = CurtailArgs { curtail: true, ..args() }.resolve(None, true, btc).unwrap().unwrap();
        assert_eq!(s.revenue, btc);
        // The file's command, and only watching prices.
        let s = CurtailArgs::default().resolve(Some("echo 0.1".into()), false, None).unwrap().unwrap();
        assert!(!s.enabled && s.command == "echo 0.1");
        assert_eq!(CurtailArgs::default().resolve(None, false, None).unwrap(), None);
    }

    #[test]
    fn the_price_command_is_run_with_a_timeout_and_read() {
        assert_eq!(run_with_timeout("echo '0.07 USD/kWh'", Duration::from_secs(5)).unwrap(), 0.07);
        assert!(run_with_timeout("exit 1", Duration::from_secs(5)).unwrap_err().contains("failed"));
        assert!(run_with_timeout("echo cheap", Duration::from_secs(5)).unwrap_err().contains("not a price"));
        let e = run_with_timeout("sleep 5", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("no answer"), "{e}");
    }
}
