//! Power meters: where a run's energy figure comes from, and the average watts over the run.
//!
//! What it is for: each [`PowerSource`] reads either a cumulative energy counter
//! ([`Reading::Energy`]: Linux powercap RAPL `energy_uj`, hwmon `energy*_input`, NVML total
//! energy, a meter command printing joules) or an instantaneous power ([`Reading::Power`]: a meter
//! command printing watts, a wattage the user declares). A [`Meter`] samples one source over a
//! run and yields a [`PowerReport`] whose `source` always names where the figure came from.
//! [`detect`] picks a source in a fixed order (the user's command, the user's wattage, NVML when
//! the run uses a GPU and the `nvml` feature is on, RAPL, hwmon) and returns `None` when there
//! is none: the report then says "unknown". Nothing here ever invents a figure.
//!
//! What it is not for: attributing power to devices (RAPL measures the CPU package, NVML one
//! GPU, a wall meter the whole box: the source's description says which), or estimating power
//! from a device's specification.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hashrig_hasher::error_chain;

mod sysfs;
pub use sysfs::{CpuTemperature, Hwmon, Rapl, cpu_temperature_at, hwmon_at, rapl_at};

#[cfg(feature = "nvml")]
mod nvml;
#[cfg(feature = "nvml")]
pub use nvml::{NvmlGpu, parse_pci_bus_id};

/// Default sysfs roots.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";
pub const HWMON_ROOT: &str = "/sys/class/hwmon";

/// Environment variables that move [`detect`]'s sysfs roots elsewhere: a directory laid out like
/// `/sys/class/powercap` (or `/sys/class/hwmon`), or an empty one to hide the machine's
/// counters. For tests of the whole binary, and for reading counters copied from another box.
pub const POWERCAP_ROOT_ENV: &str = "HASHRIG_POWERCAP_ROOT";
pub const HWMON_ROOT_ENV: &str = "HASHRIG_HWMON_ROOT";

/// Errors of the power crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a number: {text:?}")]
    NotANumber { path: PathBuf, text: String },
    #[error("cannot run the power meter command `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the power meter command `{command}` failed ({status})")]
    CommandFailed { command: String, status: String },
    #[error("the power meter command `{command}` took longer than {seconds} s")]
    CommandTimeout { command: String, seconds: u64 },
    #[error("the power meter command `{command}` printed {output:?}")]
    MeterOutput {
        command: String,
        output: String,
        #[source]
        source: ParseError,
    },
    #[error("declared power must be a finite number of watts above zero, got {0}")]
    BadWatts(f64),
    #[cfg(feature = "nvml")]
    #[error("NVML")]
    Nvml(#[source] nvml_wrapper::error::NvmlError),
    #[error("NVML sees {0} NVIDIA GPUs and the run did not say which it used (PCI bus ids), so their power is not a measure of it")]
    NvmlWhichGpu(u32),
}

/// Why a meter's output was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no output")]
    Empty,
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("unknown unit `{0}` (use W, kW, mW, J, kJ, Wh or kWh)")]
    UnknownUnit(String),
    #[error("negative or non-finite value")]
    Negative,
}

/// One reading of a source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// A cumulative energy counter, in joules (monotonic; wraparound already undone).
    Energy { joules: f64 },
    /// Power right now, in watts.
    Power { watts: f64 },
}

/// Something that can say how much power is being drawn.
pub trait PowerSource: Send + fmt::Debug {
    /// Where the figure comes from, for reports: e.g. "rapl: package-0 (CPU package)".
    fn describe(&self) -> String;
    fn read(&mut self) -> Result<Reading, Error>;
}

/// A wattage the user declares (`--watts`).
#[derive(Clone, Debug)]
pub struct Declared {
    watts: f64,
}

impl Declared {
    pub fn new(watts: f64) -> Result<Self, Error> {
        if watts.is_finite() && watts > 0.0 { Ok(Self { watts }) } else { Err(Error::BadWatts(watts)) }
    }
}

impl PowerSource for Declared {
    fn describe(&self) -> String {
        format!("declared: {} W (--watts)", self.watts)
    }

    fn read(&mut self) -> Result<Reading, Error> {
        Ok(Reading::Power { watts: self.watts })
    }
}

/// A meter command the user names (`--power-cmd`): run with `sh -c`, its last non-empty output
/// line is a power ("123.4", "123.4 W", "1.2 kW") or a cumulative energy reading ("5.0 J",
/// "0.3 Wh", "1.5 kWh") of a meter that counts up.
#[derive(Clone, Debug)]
pub struct MeterCommand {
    command: String,
    timeout: Duration,
}

impl MeterCommand {
    pub fn new(command: impl Into<String>) -> Self {
        Self { command: command.into(), timeout: Duration::from_secs(5) }
    }
}

impl PowerSource for MeterCommand {
    fn describe(&self) -> String {
        format!("command: {}", self.command)
    }

    fn read(&mut self) -> Result<Reading, Error> {
        let out = run_with_timeout(&self.command, self.timeout)?;
        parse_meter_output(&out).map_err(|source| Error::MeterOutput {
            command: self.command.clone(),
            output: out.trim().chars().take(200).collect(),
            source,
        })
    }
}

fn run_with_timeout(command: &str, timeout: Duration) -> Result<String, Error> {
    run_command(command, timeout).map_err(|e| match e {
        CommandError::Spawn(source) => Error::Spawn { command: command.to_owned(), source },
        CommandError::Timeout => Error::CommandTimeout { command: command.to_owned(), seconds: timeout.as_secs() },
        CommandError::Failed(status) => Error::CommandFailed { command: command.to_owned(), status },
    })
}

/// Why [`run_command`] has no output to give.
#[derive(Debug)]
pub enum CommandError {
    /// It could not be started, waited for or read.
    Spawn(std::io::Error),
    /// It ran past its time limit and was killed.
    Timeout,
    /// It exited unsuccessfully (the exit status, as text).
    Failed(String),
}

/// Run `command` with `sh -c` (stdin closed, stderr dropped) for at most `timeout`, and return
/// what it printed on stdout. Shared by the power meter command and the live price command.
pub fn run_command(command: &str, timeout: Duration) -> Result<String, CommandError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(CommandError::Spawn)?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandError::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(CommandError::Spawn(e)),
        }
    }
    let out = child.wait_with_output().map_err(CommandError::Spawn)?;
    if !out.status.success() {
        return Err(CommandError::Failed(out.status.to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parse a meter's output: the last non-empty line, a number and an optional unit.
pub fn parse_meter_output(text: &str) -> Result<Reading, ParseError> {
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty()).ok_or(ParseError::Empty)?;
    let split = line.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))).unwrap_or(line.len());
    // "1e3 W" vs "5 J": an 'e' followed by a unit letter is still part of the number, fine.
    let (num, unit) = line.split_at(split);
    let value: f64 = num.trim().parse().map_err(|_| ParseError::NotANumber(line.to_owned()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(ParseError::Negative);
    }
    let unit = unit.trim();
    let reading = match unit {
        "" | "W" | "w" => Reading::Power { watts: value },
        "kW" => Reading::Power { watts: value * 1e3 },
        "mW" => Reading::Power { watts: value * 1e-3 },
        "J" | "j" => Reading::Energy { joules: value },
        "kJ" => Reading::Energy { joules: value * 1e3 },
        "Wh" => Reading::Energy { joules: value * 3600.0 },
        "kWh" => Reading::Energy { joules: value * 3.6e6 },
        other => return Err(ParseError::UnknownUnit(other.to_owned())),
    };
    Ok(reading)
}

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct PowerChoice {
    pub watts: Option<f64>,
    pub command: Option<String>,
    /// Also consider NVML GPU counters (when the run uses an NVIDIA GPU).
    pub gpu: bool,
    /// The PCI bus ids of the GPUs the run uses: NVML reads (and sums) exactly those. Empty: the
    /// machine's only NVIDIA GPU, if it has exactly one.
    pub gpu_pci_bus_ids: Vec<String>,
}

/// A chosen source, or none, with notes on what was tried.
#[derive(Debug)]
pub struct Detected {
    pub source: Option<Box<dyn PowerSource>>,
    /// Why each counter that was tried was not used ("rapl: /sys/...: permission denied").
    pub notes: Vec<String>,
}

/// Pick a source: the user's command, the user's wattage, (with `gpu` and the `nvml` feature)
/// NVML, RAPL, then hwmon. `None` when there is none. The sysfs roots are [`POWERCAP_ROOT`] and
/// [`HWMON_ROOT`] unless [`POWERCAP_ROOT_ENV`] / [`HWMON_ROOT_ENV`] name others.
pub fn detect(choice: &PowerChoice) -> Result<Detected, Error> {
    detect_at(choice, &powercap_root(), &hwmon_root())
}

fn root_from_env(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

/// Where powercap (RAPL) zones are read: [`POWERCAP_ROOT`], or [`POWERCAP_ROOT_ENV`]'s.
pub fn powercap_root() -> PathBuf {
    root_from_env(POWERCAP_ROOT_ENV, POWERCAP_ROOT)
}

/// Where every hwmon read happens (energy counters and CPU temperatures): [`HWMON_ROOT`], or
/// [`HWMON_ROOT_ENV`]'s.
pub fn hwmon_root() -> PathBuf {
    root_from_env(HWMON_ROOT_ENV, HWMON_ROOT)
}

/// [`detect`] with other sysfs roots (tests).
pub fn detect_at(choice: &PowerChoice, powercap: &Path, hwmon: &Path) -> Result<Detected, Error> {
    let mut notes = Vec::new();
    if let Some(cmd) = &choice.command {
        return Ok(Detected { source: Some(Box::new(MeterCommand::new(cmd.clone()))), notes });
    }
    if let Some(w) = choice.watts {
        return Ok(Detected { source: Some(Box::new(Declared::new(w)?)), notes });
    }
    // A GPU run is measured at the GPU: its board counter comes before the CPU package's.
    if choice.gpu {
        match gpu_source(&choice.gpu_pci_bus_ids) {
            Ok(Some(s)) => return Ok(Detected { source: Some(s), notes }),
            Ok(None) => notes.push("nvml: not available".to_owned()),
            Err(e) => notes.push(format!("nvml: {}", error_chain(&e))),
        }
    }
    match rapl_at(powercap) {
        Ok(Some(r)) => return Ok(Detected { source: Some(Box::new(r)), notes }),
        Ok(None) => notes.push(format!("rapl: no readable zones under {}", powercap.display())),
        Err(e) => notes.push(format!("rapl: {}", error_chain(&e))),
    }
    match hwmon_at(hwmon) {
        Ok(Some(h)) => return Ok(Detected { source: Some(Box::new(h)), notes }),
        Ok(None) => notes.push(format!("hwmon: no energy counters under {}", hwmon.display())),
        Err(e) => notes.push(format!("hwmon: {}", error_chain(&e))),
    }
    Ok(Detected { source: None, notes })
}

/// The NVML slot: the total-energy counters of the GPUs at `pci_bus_ids` (summed), or with none
/// named the machine's only NVIDIA GPU; where NVML loads.
#[cfg(feature = "nvml")]
pub fn gpu_source(pci_bus_ids: &[String]) -> Result<Option<Box<dyn PowerSource>>, Error> {
    let gpu = if pci_bus_ids.is_empty() { NvmlGpu::only_gpu()? } else { NvmlGpu::by_pci_bus_ids(pci_bus_ids)? };
    Ok(gpu.map(|g| Box::new(g) as Box<dyn PowerSource>))
}

/// The NVML slot: this build has no NVML support (feature `nvml`).
#[cfg(not(feature = "nvml"))]
pub fn gpu_source(_pci_bus_ids: &[String]) -> Result<Option<Box<dyn PowerSource>>, Error> {
    Ok(None)
}

/// Energy over a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PowerReport {
    /// Average power over the run.
    pub watts: f64,
    pub joules: f64,
    pub seconds: f64,
    /// Where the figure came from.
    pub source: String,
    /// Readings taken.
    pub readings: usize,
}

/// Samples one source over a run.
#[derive(Debug)]
pub struct Meter {
    source: Box<dyn PowerSource>,
    started: Instant,
    first_energy: Option<f64>,
    last: (Instant, Reading),
    /// Time-weighted integral of power readings (joules), for power sources.
    power_integral: f64,
    readings: usize,
    /// The latest interval's average, for live displays.
    recent_watts: Option<f64>,
}

impl Meter {
    /// Take the first reading now.
    pub fn start(source: Box<dyn PowerSource>) -> Result<Self, Error> {
        Self::start_at(source, Instant::now())
    }

    pub fn start_at(mut source: Box<dyn PowerSource>, now: Instant) -> Result<Self, Error> {
        let r = source.read()?;
        let first_energy = match r {
            Reading::Energy { joules } => Some(joules),
            Reading::Power { .. } => None,
        };
        let recent_watts = match r {
            Reading::Power { watts } => Some(watts),
            Reading::Energy { .. } => None,
        };
        Ok(Self { source, started: now, first_energy, last: (now, r), power_integral: 0.0, readings: 1, recent_watts })
    }

    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Take a reading now (call about once a second: it also catches counter wraparound).
    pub fn poll(&mut self) -> Result<(), Error> {
        self.poll_at(Instant::now())
    }

    pub fn poll_at(&mut self, now: Instant) -> Result<(), Error> {
        let r = self.source.read()?;
        let dt = now.saturating_duration_since(self.last.0).as_secs_f64();
        match (self.last.1, r) {
            (Reading::Power { watts: a }, Reading::Power { watts: b }) => {
                self.power_integral += 0.5 * (a + b) * dt;
                self.recent_watts = Some(b);
            }
            (Reading::Energy { joules: a }, Reading::Energy { joules: b }) => {
                if dt > 0.0 {
                    self.recent_watts = Some((b - a).max(0.0) / dt);
                }
            }
            // A meter that switches between watts and joules: start over from this reading.
            (_, Reading::Energy { joules }) => {
                self.first_energy = Some(joules);
                self.started = now;
            }
            (_, Reading::Power { watts }) => {
                self.first_energy = None;
                self.started = now;
                self.power_integral = 0.0;
                self.recent_watts = Some(watts);
            }
        }
        self.last = (now, r);
        self.readings += 1;
        Ok(())
    }

    /// Power over the last interval (or the latest power reading).
    pub fn recent_watts(&self) -> Option<f64> {
        self.recent_watts
    }

    /// A final reading and the run's figures.
    pub fn finish(self) -> Result<PowerReport, Error> {
        self.finish_at(Instant::now())
    }

    pub fn finish_at(mut self, now: Instant) -> Result<PowerReport, Error> {
        self.poll_at(now)?;
        let seconds = now.saturating_duration_since(self.started).as_secs_f64();
        let joules = match (self.first_energy, self.last.1) {
            (Some(first), Reading::Energy { joules }) => (joules - first).max(0.0),
            _ => self.power_integral,
        };
        let watts = if seconds > 0.0 {
            joules / seconds
        } else {
            match self.last.1 {
                Reading::Power { watts } => watts,
                Reading::Energy { .. } => 0.0,
            }
        };
        Ok(PowerReport { watts, joules, seconds, source: self.source.describe(), readings: self.readings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_output_in_watts_and_joules_parses() {
        assert_eq!(parse_meter_output("123.4"), Ok(Reading::Power { watts: 123.4 }));
        assert_eq!(parse_meter_output("123.4 W\n"), Ok(Reading::Power { watts: 123.4 }));
        assert_eq!(parse_meter_output("noise\n5.0 J\n\n"), Ok(Reading::Energy { joules: 5.0 }));
        assert_eq!(parse_meter_output("1.5kW"), Ok(Reading::Power { watts: 1500.0 }));
        assert_eq!(parse_meter_output("0.5 Wh"), Ok(Reading::Energy { joules: 1800.0 }));
    }

    #[test]
    fn meter_output_garbage_is_refused_with_the_reason() {
        assert_eq!(parse_meter_output(""), Err(ParseError::Empty));
        assert_eq!(parse_meter_output("watts: lots"), Err(ParseError::NotANumber("watts: lots".into())));
        assert_eq!(parse_meter_output("12 furlongs"), Err(ParseError::UnknownUnit("furlongs".into())));
        assert_eq!(parse_meter_output("-3 W"), Err(ParseError::Negative));
    }

    #[derive(Debug)]
    struct Script(Vec<Reading>, usize);

    impl PowerSource for Script {
        fn describe(&self) -> String {
            "script".into()
        }
        fn read(&mut self) -> Result<Reading, Error> {
            let r = self.0[self.1.min(self.0.len() - 1)];
            self.1 += 1;
            Ok(r)
        }
    }

    #[test]
    fn energy_counter_gives_average_watts_over_the_run() {
        let t0 = Instant::now();
        let src = Script(vec![Reading::Energy { joules: 1000.0 }, Reading::Energy { joules: 1500.0 }, Reading::Energy { joules: 3000.0 }], 0);
        let mut m = Meter::start_at(Box::new(src), t0).unwrap();
        m.poll_at(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(m.recent_watts(), Some(100.0));
        let r = m.finish_at(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(r.joules, 2000.0);
        assert_eq!(r.watts, 200.0);
        assert_eq!(r.readings, 3);
        assert_eq!(r.source, "script");
    }

    #[test]
    fn power_readings_are_integrated_over_time() {
        let t0 = Instant::now();
        let src = Script(vec![Reading::Power { watts: 100.0 }, Reading::Power { watts: 100.0 }, Reading::Power { watts: 300.0 }], 0);
        let mut m = Meter::start_at(Box::new(src), t0).unwrap();
        m.poll_at(t0 + Duration::from_secs(2)).unwrap();
        let r = m.finish_at(t0 + Duration::from_secs(4)).unwrap();
        // 2 s at 100 W, then 2 s ramping 100 -> 300 W: 200 + 400 J over 4 s.
        assert_eq!(r.joules, 600.0);
        assert_eq!(r.watts, 150.0);
    }

    #[test]
    fn declared_wattage_is_named_as_declared() {
        let m = Meter::start(Box::new(Declared::new(65.0).unwrap())).unwrap();
        let r = m.finish().unwrap();
        assert_eq!(r.watts, 65.0);
        assert!(r.source.starts_with("declared"));
        assert!(Declared::new(0.0).is_err());
        assert!(Declared::new(f64::NAN).is_err());
    }
}
