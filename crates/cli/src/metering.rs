//! The power meter of one run, shared by `bench` and `mine`: the source the user named
//! (`--watts`, `--power-cmd`, or mine's `[power]` section) or else one detected (NVML, RAPL,
//! hwmon), polled about once a second, with the live figure for the monitor and the report over
//! the whole run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use hashrig_power::{Meter, PowerChoice, PowerReport};

use crate::bad_input;

/// Where the watts come from when the user says: `--watts` or `--power-cmd`, and mine's
/// `[power]` section (`watts`, `power_cmd`, and `price_cmd`, the file's `--power-price-cmd`),
/// declared once for `bench`, `mine` and the file.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerArgs {
    /// Declare the power draw in watts (when no meter is available).
    #[arg(long, conflicts_with = "power_cmd")]
    #[serde(default)]
    pub watts: Option<f64>,
    /// A command printing the power ("123.4 W") or a cumulative energy ("5.0 J"); run each second.
    #[arg(long)]
    #[serde(default)]
    pub power_cmd: Option<String>,
    /// File only: the `[power]` section's `price_cmd`, as `mine --power-price-cmd`.
    #[arg(skip)]
    #[serde(default)]
    pub price_cmd: Option<String>,
}

impl PowerArgs {
    /// Does this name a meter (a declared wattage or a command)?
    pub fn names_a_meter(&self) -> bool {
        self.watts.is_some() || self.power_cmd.is_some()
    }

    /// The checked choice (`what_watts` / `what_cmd` name the settings in errors).
    pub fn choice(&self, gpu: bool, what_watts: &str, what_cmd: &str) -> anyhow::Result<PowerChoice> {
        let p = PowerChoice { watts: self.watts, command: self.power_cmd.clone(), gpu, ..Default::default() };
        check_choice(&p, what_watts, what_cmd)?;
        Ok(p)
    }
}

/// Check the user's power settings (`what_watts` / `what_cmd` name them in errors).
pub fn check_choice(choice: &PowerChoice, what_watts: &str, what_cmd: &str) -> anyhow::Result<()> {
    if let Some(w) = choice.watts
        && !(w.is_finite() && w > 0.0)
    {
        return Err(bad_input(format!("{what_watts} {w} must be a number of watts above 0")));
    }
    if let Some(cmd) = &choice.command
        && cmd.trim().is_empty()
    {
        return Err(bad_input(format!("{what_cmd} is empty")));
    }
    if choice.watts.is_some() && choice.command.is_some() {
        return Err(bad_input(format!("give {what_watts} or {what_cmd}, not both")));
    }
    Ok(())
}

/// A run's meter, or none (with notes on why).
#[derive(Debug)]
pub struct RunMeter {
    meter: Option<Meter>,
    notes: Vec<String>,
    next_poll: Instant,
}

impl RunMeter {
    /// Pick and start the source. What the user named must work; an auto-detected counter
    /// that fails is only a note.
    pub fn start(choice: &PowerChoice) -> anyhow::Result<RunMeter> {
        let detected = hashrig_power::detect(choice)?;
        let mut notes = detected.notes;
        let user_named = choice.command.is_some() || choice.watts.is_some();
        let meter = match detected.source {
            Some(src) => match Meter::start(src) {
                Ok(m) => Some(m),
                Err(e) if user_named => return Err(e).context("the power meter you named does not work"),
                Err(e) => {
                    notes.push(format!("{e:#}"));
                    None
                }
            },
            None => None,
        };
        Ok(RunMeter { meter, notes, next_poll: Instant::now() + Duration::from_secs(1) })
    }

    /// Take a reading if a second has passed since the last one (call it more often).
    pub fn poll_due(&mut self, now: Instant) {
        let Some(m) = self.meter.as_mut() else { return };
        if now < self.next_poll {
            return;
        }
        if let Err(e) = m.poll() {
            tracing::warn!(error = %format!("{e:#}"), "power reading failed");
        }
        self.next_poll += Duration::from_secs(1);
        if self.next_poll < now {
            self.next_poll = now + Duration::from_secs(1);
        }
    }

    /// The latest power figure.
    pub fn recent_watts(&self) -> Option<f64> {
        self.meter.as_ref().and_then(Meter::recent_watts)
    }

    /// The latest figure for the monitor.
    pub fn live(&self) -> Option<hashrig_monitor::PowerView> {
        crate::monitoring::live_power(self.meter.as_ref())
    }

    /// The power over the whole run, or the notes on why there is none.
    pub fn finish(self) -> (Option<PowerReport>, Vec<String>) {
        let mut notes = self.notes;
        let report = match self.meter {
            Some(m) => match m.finish() {
                Ok(r) => Some(r),
                Err(e) => {
                    notes.push(format!("final power reading failed: {e:#}"));
                    None
                }
            },
            None => None,
        };
        (report, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_power_settings_are_refused_by_their_names() {
        let c = |watts, command: Option<&str>| PowerChoice { watts, command: command.map(str::to_owned), gpu: false, ..Default::default() };
        let e = check_choice(&c(Some(0.0), None), "--watts", "--power-cmd").unwrap_err().to_string();
        assert!(e.contains("--watts 0"), "{e}");
        let e = check_choice(&c(None, Some("  ")), "[power] watts", "[power] power_cmd").unwrap_err().to_string();
        assert_eq!(e, "[power] power_cmd is empty");
        let e = check_choice(&c(Some(5.0), Some("echo 5 W")), "[power] watts", "[power] power_cmd").unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        check_choice(&c(Some(5.0), None), "--watts", "--power-cmd").unwrap();
    }

    #[test]
    fn a_declared_wattage_is_the_runs_power() {
        let mut m = RunMeter::start(&PowerChoice { watts: Some(42.5), command: None, gpu: false, ..Default::default() }).unwrap();
        m.poll_due(Instant::now() + Duration::from_secs(2));
        assert_eq!(m.recent_watts(), Some(42.5));
        let (report, _) = m.finish();
        let report = report.expect("a declared source always reports");
        // An average of the declared figure over time: equal within rounding.
        assert!((report.watts - 42.5).abs() < 1e-6, "{}", report.watts);
        assert!(report.source.starts_with("declared"), "{}", report.source);
    }
}
