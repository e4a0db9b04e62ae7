//! Backend selection: `--backend cpu | gpu[:N|:name] | asic:PORT[,key=value...] | emu:MODEL` parsed
//! into a [`BackendSpec`], and [`open`], which turns one into hashers.

use std::fmt;
use std::str::FromStr;

use hashrig_hasher::Hasher;
use hashrig_hasher_cpu::{CpuConfig, CpuHasher};
use hashrig_sha256d::Kernel;

use crate::{BadInput, bad_input};

/// Which GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuSelector {
    /// The adapter at this index in `hashrig devices`.
    Index(usize),
    /// The first adapter whose name contains this text (case-insensitive).
    Name(String),
}

/// What `--backend` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    Cpu,
    /// `gpu`, `gpu:1`, `gpu:nvidia`.
    Gpu(Option<GpuSelector>),
    /// `asic:/dev/ttyUSB0,chip=bm1370,freq=500,chips=4`.
    Asic { port: String, options: Vec<(String, String)> },
    /// `emu:bm1370x4`: the chip-chain emulator.
    Emu(String),
}

impl BackendSpec {
    pub fn is_cpu(&self) -> bool {
        matches!(self, BackendSpec::Cpu)
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Cpu => f.write_str("cpu"),
            BackendSpec::Gpu(None) => f.write_str("gpu"),
            BackendSpec::Gpu(Some(GpuSelector::Index(i))) => write!(f, "gpu:{i}"),
            BackendSpec::Gpu(Some(GpuSelector::Name(n))) => write!(f, "gpu:{n}"),
            BackendSpec::Asic { port, options } => {
                write!(f, "asic:{port}")?;
                for (k, v) in options {
                    write!(f, ",{k}={v}")?;
                }
                Ok(())
            }
            BackendSpec::Emu(m) => write!(f, "emu:{m}"),
        }
    }
}

impl FromStr for BackendSpec {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let err = |m: String| BadInput(m);
        match (kind.to_ascii_lowercase().as_str(), rest) {
            ("cpu", None) => Ok(BackendSpec::Cpu),
            ("cpu", Some(_)) => Err(err(format!("backend `{s}`: cpu takes no argument (use --threads and --kernel)"))),
            ("gpu", None) => Ok(BackendSpec::Gpu(None)),
            ("gpu", Some("")) => Err(err(format!("backend `{s}`: give a GPU index or name after `gpu:`"))),
            ("gpu", Some(r)) => Ok(BackendSpec::Gpu(Some(match r.parse::<usize>() {
                Ok(i) => GpuSelector::Index(i),
                Err(_) => GpuSelector::Name(r.to_owned()),
            }))),
            ("asic", Some(r)) if !r.is_empty() => {
                let mut parts = r.split(',');
                let port = parts.next().unwrap_or_default().to_owned();
                if port.is_empty() || port.contains('=') {
                    return Err(err(format!("backend `{s}`: the serial port comes first, e.g. asic:/dev/ttyUSB0,chip=bm1370")));
                }
                let mut options = Vec::new();
                for p in parts {
                    let Some((k, v)) = p.split_once('=') else {
                        return Err(err(format!("backend `{s}`: option `{p}` is not key=value")));
                    };
                    let k = k.trim().to_ascii_lowercase();
                    if !matches!(k.as_str(), "chip" | "freq" | "chips" | "baud" | "diff") {
                        return Err(err(format!("backend `{s}`: unknown option `{k}` (known: chip, freq, chips, baud, diff)")));
                    }
                    options.push((k, v.trim().to_owned()));
                }
                Ok(BackendSpec::Asic { port, options })
            }
            ("asic", _) => Err(err(format!("backend `{s}`: name the serial port, e.g. asic:/dev/ttyUSB0"))),
            ("emu", Some(m)) if !m.is_empty() => Ok(BackendSpec::Emu(m.to_ascii_lowercase())),
            ("emu", _) => Err(err(format!("backend `{s}`: name the emulated chain, e.g. emu:bm1370x4"))),
            _ => Err(err(format!("unknown backend `{s}` (known: cpu, gpu[:N|:name], asic:PORT[,chip=..,freq=..,chips=..], emu:MODEL)"))),
        }
    }
}

/// CPU options shared by the commands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuOptions {
    pub threads: Option<usize>,
    pub kernel: Option<Kernel>,
}

impl CpuOptions {
    /// From the `--threads` and `--kernel` flags: unknown kernels, kernels this CPU lacks (or
    /// `HASHRIG_CPU_DISABLE` masks off), a `HASHRIG_CPU_DISABLE` that does not parse and zero
    /// threads are bad input.
    pub fn parse(threads: Option<usize>, kernel: Option<&str>) -> anyhow::Result<Self> {
        if threads == Some(0) {
            return Err(bad_input("--threads must be at least 1"));
        }
        hashrig_sha256d::disabled_cpu_features().map_err(|e| bad_input(e.to_string()))?;
        let kernel = match kernel {
            None => None,
            Some(k) => {
                let bad = |e: hashrig_sha256d::Error| bad_input(e.to_string());
                Some(hashrig_sha256d::Scanner::new(k.parse().map_err(bad)?).map_err(bad)?.kernel())
            }
        };
        Ok(Self { threads, kernel })
    }

    /// Flags that only make sense for the CPU, given another backend: bad input.
    pub fn check_backend(&self, spec: &BackendSpec) -> anyhow::Result<()> {
        if !spec.is_cpu() && (self.threads.is_some() || self.kernel.is_some()) {
            return Err(bad_input(format!("--threads and --kernel apply to the cpu backend, not `{spec}`")));
        }
        Ok(())
    }
}

/// Open a backend into hashers (one per device).
pub fn open(spec: &BackendSpec, cpu: &CpuOptions) -> anyhow::Result<Vec<Box<dyn Hasher>>> {
    cpu.check_backend(spec)?;
    match spec {
        BackendSpec::Cpu => Ok(vec![Box::new(open_cpu(cpu)?)]),
        BackendSpec::Gpu(sel) => open_gpu(sel.as_ref()),
        BackendSpec::Asic { port, options } => open_asic(port, options),
        BackendSpec::Emu(model) => open_emu(model),
    }
}

/// The CPU hasher. Without `--kernel`, `HASHRIG_KERNEL` may name one (bad input if unknown or
/// unsupported); otherwise the best this CPU has.
pub fn open_cpu(cpu: &CpuOptions) -> anyhow::Result<CpuHasher> {
    let kernel = match cpu.kernel {
        Some(k) => k,
        None => hashrig_sha256d::Scanner::from_env()
            .map_err(|e| bad_input(format!("{}: {e}", hashrig_sha256d::KERNEL_ENV)))?
            .kernel(),
    };
    let cfg = CpuConfig { threads: cpu.threads, kernel: Some(kernel), batch: None };
    Ok(CpuHasher::new(&cfg)?)
}

/// `power` with the PCI bus ids of the NVIDIA GPUs `spec` runs on, so NVML measures those boards
/// and no other; unchanged for other backends or where the adapters cannot be listed.
pub fn power_for(power: &hashrig_power::PowerChoice, spec: &BackendSpec) -> hashrig_power::PowerChoice {
    let mut p = power.clone();
    if let BackendSpec::Gpu(sel) = spec
        && p.gpu
        && let Ok(adapters) = hashrig_hasher_gpu::resolve(&gpu_spec(sel.as_ref()))
        && let Some(ids) = hashrig_hasher_gpu::power::nvml_bus_ids(&adapters)
    {
        p.gpu_pci_bus_ids = ids;
    }
    p
}

/// The `hashrig_hasher_gpu` selection string for a `--backend gpu[:...]` value.
pub fn gpu_spec(sel: Option<&GpuSelector>) -> String {
    match sel {
        None => String::new(),
        Some(GpuSelector::Index(i)) => i.to_string(),
        Some(GpuSelector::Name(n)) => n.clone(),
    }
}

/// The GPU backend: `gpu` the best adapter, `gpu:N` / `gpu:name` one adapter, `gpu:all` every
/// hardware GPU and `gpu:0,1` a list; one hasher per GPU, each tuned at start-up.
fn open_gpu(sel: Option<&GpuSelector>) -> anyhow::Result<Vec<Box<dyn Hasher>>> {
    let spec = gpu_spec(sel);
    // Naming an adapter that is not there is bad input (exit 2); a driver failure is not.
    let hashers = hashrig_hasher_gpu::open_hashers(&spec).map_err(|e| match e {
        hashrig_hasher_gpu::Error::AdapterNotFound { .. } | hashrig_hasher_gpu::Error::SoftwareNotNamed { .. } => bad_input(e.to_string()),
        e => anyhow::Error::new(e),
    })?;
    Ok(hashers.into_iter().map(|h| Box::new(h) as Box<dyn Hasher>).collect())
}

/// Telemetry of every ASIC chain opened in this process (for reports and the health map).
static ASIC_CHAINS: std::sync::Mutex<Vec<hashrig_hasher_asic::ChainStats>> = std::sync::Mutex::new(Vec::new());

/// Snapshots of the chains opened so far (empty without an asic/emu backend).
pub fn asic_snapshots() -> Vec<hashrig_hasher_asic::ChainSnapshot> {
    ASIC_CHAINS.lock().map(|v| v.iter().map(|s| s.snapshot()).collect()).unwrap_or_default()
}

/// `asic:PORT[,chip=bm1370,freq=MHZ,chips=N,baud=115200|max,diff=D]`: a BM13xx chain.
fn open_asic(port: &str, options: &[(String, String)]) -> anyhow::Result<Vec<Box<dyn Hasher>>> {
    let mut cfg = hashrig_hasher_asic::ChainConfig::default();
    for (k, v) in options {
        let bad = |what: &str| bad_input(format!("asic option {k}={v}: {what}"));
        match k.as_str() {
            "chip" => cfg.chip = Some(v.parse().map_err(|_| bad("known chips: bm1397, bm1366, bm1368, bm1370"))?),
            "freq" => cfg.mhz = Some(v.parse::<f64>().ok().filter(|f| (50.0..=1000.0).contains(f)).ok_or_else(|| bad("a frequency in MHz, 50..=1000"))?),
            "chips" => cfg.chips = Some(v.parse::<usize>().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| bad("a chip count, 1..=256"))?),
            "baud" => match v.as_str() {
                "max" => cfg.raise_baud = true,
                "115200" | "reset" => cfg.raise_baud = false,
                _ => return Err(bad("`max` (raise after init, the default) or `115200` (stay at the reset rate)")),
            },
            "diff" => cfg.ticket_difficulty = v.parse::<f64>().ok().filter(|d| *d >= 1.0).ok_or_else(|| bad("a ticket difficulty >= 1 (a power of two is used)"))?,
            _ => return Err(bad("unknown option")),
        }
    }
    let h = hashrig_hasher_asic::open_port(port, cfg)?;
    if let Ok(mut v) = ASIC_CHAINS.lock() {
        v.push(h.stats());
    }
    Ok(vec![Box::new(h)])
}

/// `emu:bm1366x16[,faults]`: the chip-chain emulator in-process over a real pty, driven by the
/// same driver as hardware.
fn open_emu(model: &str) -> anyhow::Result<Vec<Box<dyn Hasher>>> {
    let h = hashrig_hasher_asic::open_emulated(model).map_err(|e| match e {
        e @ (hashrig_hasher_asic::Error::EmuModel(_) | hashrig_hasher_asic::Error::EmuOption(_)) => bad_input(e.to_string()),
        e => anyhow::Error::new(e),
    })?;
    if let Ok(mut v) = ASIC_CHAINS.lock() {
        v.push(h.stats());
    }
    Ok(vec![Box::new(h)])
}

/// Parse `--backend` for clap.
pub fn parse_backend(s: &str) -> Result<BackendSpec, String> {
    s.parse::<BackendSpec>().map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_specs_parse_and_print_back() {
        for s in ["cpu", "gpu", "gpu:1", "gpu:nvidia", "asic:/dev/ttyUSB0", "asic:/dev/ttyUSB0,chip=bm1370,freq=500,chips=4", "emu:bm1370x4"] {
            assert_eq!(s.parse::<BackendSpec>().unwrap().to_string(), s);
        }
        assert_eq!("gpu:1".parse::<BackendSpec>().unwrap(), BackendSpec::Gpu(Some(GpuSelector::Index(1))));
    }

    #[test]
    fn malformed_backends_are_refused_with_the_reason() {
        for (s, why) in [
            ("fpga", "unknown backend"),
            ("asic", "name the serial port"),
            ("asic:/dev/ttyUSB0,turbo", "not key=value"),
            ("asic:/dev/ttyUSB0,volts=9", "unknown option"),
            ("emu:", "name the emulated chain"),
            ("cpu:2", "takes no argument"),
        ] {
            let e = s.parse::<BackendSpec>().unwrap_err();
            assert!(e.0.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn unknown_kernel_and_zero_threads_are_bad_input() {
        assert!(crate::is_bad_input(&CpuOptions::parse(None, Some("neon9")).unwrap_err()));
        assert!(crate::is_bad_input(&CpuOptions::parse(Some(0), None).unwrap_err()));
        assert_eq!(CpuOptions::parse(Some(2), Some("scalar")).unwrap(), CpuOptions { threads: Some(2), kernel: Some(Kernel::Scalar) });
    }
}
