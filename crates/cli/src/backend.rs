//! Backend selection: `--backend cpu | gpu[:N|:name] | asic:PORT[,key=value...] | emu:MODEL` parsed
//! into a [`BackendSpec`], and [`open`], which turns one into hashers.

use std::fmt;
use std::str::FromStr;

use hashrig_hasher::Hasher;
use hashrig_hasher_cpu::{CpuConfig, CpuHasher};
use hashrig_sha256d::Kernel;

use crate::{BadInput, bad_input};

/// What `--backend` names.
#[derive(Clone, Debug, PartialEq)]
pub enum BackendSpec {
    Cpu,
    /// `gpu`, `gpu:1`, `gpu:nvidia`, `gpu:all`, `gpu:0,1` (the GPU crate parses the selection).
    Gpu(hashrig_hasher_gpu::GpuSelection),
    /// `asic:/dev/ttyUSB0,chip=bm1370,freq=500,chips=4` (the ASIC crate parses its options).
    Asic(hashrig_hasher_asic::AsicSpec),
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
            BackendSpec::Gpu(hashrig_hasher_gpu::GpuSelection::Best) => f.write_str("gpu"),
            BackendSpec::Gpu(sel) => write!(f, "gpu:{sel}"),
            BackendSpec::Asic(spec) => write!(f, "asic:{spec}"),
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
            ("gpu", None) => Ok(BackendSpec::Gpu(hashrig_hasher_gpu::GpuSelection::Best)),
            ("gpu", Some(r)) if r.trim().is_empty() || r.split(',').any(|p| p.trim().is_empty()) => {
                Err(err(format!("backend `{s}`: give GPU indices or names after `gpu:` (e.g. gpu:0, gpu:0,1, gpu:all)")))
            }
            ("gpu", Some(r)) => Ok(BackendSpec::Gpu(r.parse().unwrap_or_default())),
            ("asic", Some(r)) => r.parse().map(BackendSpec::Asic).map_err(|e| err(format!("backend `{s}`: {e}"))),
            ("emu", Some(m)) if !m.is_empty() => {
                // Checked now, so a bad model or fault option is a usage error, not a failure
                // after start-up.
                hashrig_hasher_asic::EmuSpec::parse(m).map_err(|e| err(format!("backend `{s}`: {e}")))?;
                Ok(BackendSpec::Emu(m.to_ascii_lowercase()))
            }
            ("asic", None) => Err(err(format!("backend `{s}`: name the serial port, e.g. asic:/dev/ttyUSB0"))),
            ("emu", _) => Err(err(format!("backend `{s}`: name the emulated chain, e.g. emu:bm1370x4"))),
            _ => Err(err(format!("unknown backend `{s}` (known: cpu, gpu[:N|:name], asic:PORT[,chip=..,freq=..,chips=..], emu:MODEL)"))),
        }
    }
}

/// The device flags of `bench`, `scan` and `mine`, declared once; `mine`'s config file reads
/// its `[backend]` section into the same type (`spec`, `threads`, `kernel`).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceArgs {
    /// cpu, gpu[:N|:name], asic:PORT[,chip=..,freq=..,chips=..,baud=..,diff=..], emu:MODEL
    /// [default: cpu].
    #[arg(long, value_parser = parse_backend)]
    #[serde(rename = "spec", default, deserialize_with = "crate::de_from_str")]
    pub backend: Option<BackendSpec>,
    /// CPU threads (cpu backend; default: every available core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// CPU kernel (cpu backend): scalar, avx2, avx512, sha-ni, sha-ni-sse, sha-ni-avx512, arm-sha2
    /// (default: the best this CPU has; HASHRIG_KERNEL when this is absent).
    #[arg(long)]
    #[serde(default, deserialize_with = "crate::de_from_str")]
    pub kernel: Option<Kernel>,
}

impl DeviceArgs {
    /// These flags over `file`'s values, field by field.
    pub fn or(&self, file: DeviceArgs) -> DeviceArgs {
        DeviceArgs {
            backend: self.backend.clone().or(file.backend),
            threads: self.threads.or(file.threads),
            kernel: self.kernel.or(file.kernel),
        }
    }

    /// The backend (cpu when none is named) and the checked CPU options.
    pub fn resolve(&self) -> anyhow::Result<(BackendSpec, CpuOptions)> {
        let spec = self.backend.clone().unwrap_or(BackendSpec::Cpu);
        let cpu = CpuOptions::new(self.threads, self.kernel)?;
        cpu.check_backend(&spec)?;
        Ok((spec, cpu))
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
    pub fn new(threads: Option<usize>, kernel: Option<Kernel>) -> anyhow::Result<Self> {
        if threads == Some(0) {
            return Err(bad_input("--threads must be at least 1"));
        }
        hashrig_sha256d::disabled_cpu_features().map_err(|e| bad_input(e.to_string()))?;
        let kernel = match kernel {
            None => None,
            Some(k) => Some(hashrig_sha256d::Scanner::new(k).map_err(|e| bad_input(e.to_string()))?.kernel()),
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
        BackendSpec::Gpu(sel) => open_gpu(sel),
        BackendSpec::Asic(spec) => Ok(vec![Box::new(hashrig_hasher_asic::open_port(&spec.port, spec.config())?)]),
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
        && let Ok(adapters) = hashrig_hasher_gpu::resolve(sel)
        && let Some(ids) = hashrig_hasher_gpu::power::nvml_bus_ids(&adapters)
    {
        p.gpu_pci_bus_ids = ids;
    }
    p
}

/// The GPU backend: `gpu` the best adapter, `gpu:N` / `gpu:name` one adapter, `gpu:all` every
/// hardware GPU and `gpu:0,1` a list; one hasher per GPU, each tuned at start-up.
fn open_gpu(sel: &hashrig_hasher_gpu::GpuSelection) -> anyhow::Result<Vec<Box<dyn Hasher>>> {
    // Naming an adapter that is not there is bad input (exit 2); a driver failure is not.
    let hashers = hashrig_hasher_gpu::open_hashers(sel).map_err(|e| match e {
        hashrig_hasher_gpu::Error::AdapterNotFound { .. } | hashrig_hasher_gpu::Error::SoftwareNotNamed { .. } => bad_input(e.to_string()),
        e => anyhow::Error::new(e),
    })?;
    Ok(hashers.into_iter().map(|h| Box::new(h) as Box<dyn Hasher>).collect())
}

/// `emu:bm1366x16[,faults]`: the chip-chain emulator in-process over a real pty, driven by the
/// same driver as hardware.
fn open_emu(model: &str) -> anyhow::Result<Vec<Box<dyn Hasher>>> {
    let h = hashrig_hasher_asic::open_emulated(model).map_err(|e| match e {
        e @ (hashrig_hasher_asic::Error::EmuModel(_) | hashrig_hasher_asic::Error::EmuOption(_)) => bad_input(e.to_string()),
        e => anyhow::Error::new(e),
    })?;
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
        use hashrig_hasher_gpu::{AdapterSelector, GpuSelection};
        assert_eq!("gpu:1".parse::<BackendSpec>().unwrap(), BackendSpec::Gpu(GpuSelection::List(vec![AdapterSelector::Index(1)])));
        assert_eq!("gpu".parse::<BackendSpec>().unwrap(), BackendSpec::Gpu(GpuSelection::Best));
        assert_eq!("gpu:ALL".parse::<BackendSpec>().unwrap(), BackendSpec::Gpu(GpuSelection::All));
        let two = BackendSpec::Gpu(GpuSelection::List(vec![AdapterSelector::Index(0), AdapterSelector::Name("h100".into())]));
        assert_eq!("gpu:0,h100".parse::<BackendSpec>().unwrap(), two);
        assert_eq!(two.to_string(), "gpu:0,h100");
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
        assert!("neon9".parse::<Kernel>().is_err());
        assert!(crate::is_bad_input(&CpuOptions::new(Some(0), None).unwrap_err()));
        assert_eq!(CpuOptions::new(Some(2), Some(Kernel::Scalar)).unwrap(), CpuOptions { threads: Some(2), kernel: Some(Kernel::Scalar) });
    }

    #[test]
    fn the_backend_file_section_and_the_flags_share_one_type_and_one_parser() {
        let file: DeviceArgs = toml::from_str("spec = \"asic:/dev/ttyUSB0,chip=bm1366\"\nthreads = 3\nkernel = \"scalar\"").unwrap();
        assert_eq!(file.backend.as_ref().map(|b| b.to_string()).as_deref(), Some("asic:/dev/ttyUSB0,chip=bm1366"));
        assert_eq!(file.kernel, Some(Kernel::Scalar));
        // A flag wins over the file, field by field.
        let flags = DeviceArgs { threads: Some(1), ..Default::default() };
        let merged = flags.or(file);
        assert_eq!((merged.threads, merged.kernel), (Some(1), Some(Kernel::Scalar)));
        // The file is refused with the same words as the flag.
        for (text, want) in [("kernel = \"neon9\"", "neon9"), ("spec = \"asic:/dev/ttyUSB0,volts=9\"", "unknown option `volts`"), ("spec = \"emu:bm9999x4\"", "bm9999")] {
            let e = toml::from_str::<DeviceArgs>(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

}
