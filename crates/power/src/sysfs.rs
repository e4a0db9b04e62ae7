//! Energy counters in sysfs: Linux powercap RAPL zones and hwmon `energy*_input`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, PowerSource, Reading};

fn read_trimmed(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map(|s| s.trim().to_owned()).map_err(|source| Error::Read { path: path.to_owned(), source })
}

fn read_u64(path: &Path) -> Result<u64, Error> {
    let text = read_trimmed(path)?;
    text.parse().map_err(|_| Error::NotANumber { path: path.to_owned(), text })
}

/// A counter in microjoules that may wrap at `max` (RAPL) or never (hwmon).
#[derive(Clone, Debug)]
struct Counter {
    path: PathBuf,
    label: String,
    max_uj: Option<u64>,
    last_raw: u64,
    total_uj: u128,
}

impl Counter {
    fn open(path: PathBuf, label: String, max_uj: Option<u64>) -> Result<Self, Error> {
        let last_raw = read_u64(&path)?;
        Ok(Self { path, label, max_uj, last_raw, total_uj: 0 })
    }

    fn advance(&mut self) -> Result<(), Error> {
        let raw = read_u64(&self.path)?;
        let delta = if raw >= self.last_raw {
            raw - self.last_raw
        } else {
            match self.max_uj {
                // The counter wrapped at max_energy_range_uj (and restarted from 0).
                Some(max) if self.last_raw <= max => max - self.last_raw + raw,
                // A counter that went backwards otherwise was reset: count from the new value.
                _ => 0,
            }
        };
        self.total_uj += u128::from(delta);
        self.last_raw = raw;
        Ok(())
    }
}

fn sum_joules(counters: &mut [Counter]) -> Result<Reading, Error> {
    let mut uj = 0u128;
    for c in counters.iter_mut() {
        c.advance()?;
        uj += c.total_uj;
    }
    Ok(Reading::Energy { joules: uj as f64 * 1e-6 })
}

fn labels(counters: &[Counter]) -> String {
    counters.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(" + ")
}

/// RAPL energy over the top-level powercap zones (CPU packages; or `psys`, the whole platform,
/// where the firmware exposes it). Sub-zones (`intel-rapl:0:0`) and the `-mmio` duplicates are
/// left out so nothing is counted twice.
#[derive(Clone, Debug)]
pub struct Rapl {
    zones: Vec<Counter>,
}

/// Find RAPL zones under `root` (normally `/sys/class/powercap`). `Ok(None)` when there are none;
/// an error when zones exist but cannot be read (`energy_uj` is root-only on most kernels).
pub fn rapl_at(root: &Path) -> Result<Option<Rapl>, Error> {
    let Ok(entries) = fs::read_dir(root) else { return Ok(None) };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // "intel-rapl:0" yes; "intel-rapl:0:0" (sub-zone) and "intel-rapl-mmio:0" no.
            name.matches(':').count() == 1 && !name.contains("mmio") && p.join("energy_uj").exists()
        })
        .collect();
    dirs.sort();
    let mut zones = Vec::new();
    for dir in dirs {
        let name = read_trimmed(&dir.join("name")).unwrap_or_else(|_| dir.display().to_string());
        let max = read_u64(&dir.join("max_energy_range_uj")).ok();
        zones.push((name, Counter::open(dir.join("energy_uj"), String::new(), max)?));
    }
    if zones.is_empty() {
        return Ok(None);
    }
    // psys covers the packages and more: use it alone when present.
    let zones: Vec<Counter> = if zones.iter().any(|(n, _)| n == "psys") {
        zones.into_iter().filter(|(n, _)| n == "psys").map(|(n, c)| Counter { label: n, ..c }).collect()
    } else {
        zones.into_iter().map(|(n, c)| Counter { label: n, ..c }).collect()
    };
    Ok(Some(Rapl { zones }))
}

impl PowerSource for Rapl {
    fn describe(&self) -> String {
        let scope = if self.zones.iter().any(|z| z.label == "psys") { "platform" } else { "CPU package only" };
        format!("rapl: {} ({scope})", labels(&self.zones))
    }

    fn read(&mut self) -> Result<Reading, Error> {
        sum_joules(&mut self.zones)
    }
}

/// hwmon energy counters (`energy*_input`, microjoules), e.g. `amd_energy`'s per-socket
/// counters; per-core counters (`Ecore*`) are left out so nothing is counted twice.
#[derive(Clone, Debug)]
pub struct Hwmon {
    inputs: Vec<Counter>,
}

/// Find hwmon energy counters under `root` (normally `/sys/class/hwmon`).
pub fn hwmon_at(root: &Path) -> Result<Option<Hwmon>, Error> {
    let Ok(entries) = fs::read_dir(root) else { return Ok(None) };
    let mut devs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    devs.sort();
    let mut inputs = Vec::new();
    for dev in devs {
        let Ok(files) = fs::read_dir(&dev) else { continue };
        let chip = read_trimmed(&dev.join("name")).unwrap_or_else(|_| "hwmon".into());
        let mut names: Vec<String> = files
            .filter_map(Result::ok)
            .filter_map(|f| f.file_name().into_string().ok())
            .filter(|n| n.starts_with("energy") && n.ends_with("_input"))
            .collect();
        names.sort();
        for name in names {
            let stem = name.trim_end_matches("_input");
            let label = read_trimmed(&dev.join(format!("{stem}_label"))).unwrap_or_else(|_| stem.to_owned());
            if label.starts_with("Ecore") {
                continue;
            }
            inputs.push(Counter::open(dev.join(&name), format!("{chip}/{label}"), None)?);
        }
    }
    Ok((!inputs.is_empty()).then_some(Hwmon { inputs }))
}

impl PowerSource for Hwmon {
    fn describe(&self) -> String {
        format!("hwmon: {}", labels(&self.inputs))
    }

    fn read(&mut self) -> Result<Reading, Error> {
        sum_joules(&mut self.inputs)
    }
}

/// A CPU temperature reading: the hwmon driver it came from and degrees Celsius.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTemperature {
    /// `hwmon:DRIVER`, e.g. `hwmon:k10temp`.
    pub sensor: String,
    pub celsius: f64,
}

/// The hottest reading of the CPU temperature drivers under `hwmon_root` (`/sys/class/hwmon`):
/// coretemp, k10temp, zenpower, cpu_thermal. `None` where there are none (VMs, containers).
pub fn cpu_temperature_at(hwmon_root: &Path) -> Option<CpuTemperature> {
    const CPU_DRIVERS: [&str; 4] = ["coretemp", "k10temp", "zenpower", "cpu_thermal"];
    let mut best: Option<CpuTemperature> = None;
    for dir in fs::read_dir(hwmon_root).ok()?.flatten() {
        let dir = dir.path();
        let Ok(name) = fs::read_to_string(dir.join("name")) else { continue };
        let name = name.trim();
        if !CPU_DRIVERS.contains(&name) {
            continue;
        }
        for f in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = f.file_name();
            let file = file.to_string_lossy();
            if !(file.starts_with("temp") && file.ends_with("_input")) {
                continue;
            }
            let Some(milli) = fs::read_to_string(f.path()).ok().and_then(|t| t.trim().parse::<f64>().ok()) else {
                continue;
            };
            let celsius = milli / 1000.0;
            if (-40.0..=150.0).contains(&celsius) && best.as_ref().is_none_or(|b| celsius > b.celsius) {
                best = Some(CpuTemperature { sensor: format!("hwmon:{name}"), celsius });
            }
        }
    }
    best
}
