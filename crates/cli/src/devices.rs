//! `hashrig devices`: what this machine offers: CPU kernels, GPU adapters, serial ports, power
//! sources. The GPU and serial sections are hooks the GPU and ASIC backends fill.

use std::process::ExitCode;

use clap::Args;
use hashrig_sha256d::Kernel;

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Also ask each serial port for BM13xx chip ids (writes to the ports; ~2 s per silent port).
    #[arg(long)]
    pub probe: bool,
}

pub fn run(a: &DevicesArgs) -> anyhow::Result<ExitCode> {
    println!("CPU: {} ({} threads available)", cpu_model(), hashrig_hasher_cpu::available_threads());
    let masked = hashrig_sha256d::disabled_cpu_features().map_err(|e| crate::bad_input(e.to_string()))?;
    if !masked.is_empty() {
        let names: Vec<&str> = masked.iter().map(|f| f.name()).collect();
        println!("  {} masks off: {}", hashrig_sha256d::CPU_DISABLE_ENV, names.join(", "));
    }
    let best = Kernel::best();
    for k in Kernel::ALL {
        let state = if !k.is_available() && k.needs().iter().all(|f| f.in_hardware()) {
            "masked off (HASHRIG_CPU_DISABLE)"
        } else if !k.is_available() {
            "not supported by this CPU"
        } else if k == best {
            "available (default)"
        } else {
            "available"
        };
        println!("  kernel {:<10} {state}", k.name());
    }
    println!("GPU adapters:");
    for line in gpu_adapters() {
        println!("  {line}");
    }
    println!("Serial ports:");
    for line in serial_ports(a.probe) {
        println!("  {line}");
    }
    println!("Power sources:");
    for line in power_sources() {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The source `hashrig bench` would pick without `--watts`/`--power-cmd`: for the default CPU
/// bench, and for a GPU bench when that differs (NVML comes first there).
pub fn power_sources() -> Vec<String> {
    let detect = |gpu: bool| hashrig_power::detect(&hashrig_power::PowerChoice { gpu, ..Default::default() });
    let describe = |d: &Result<hashrig_power::Detected, hashrig_power::Error>| match d {
        Ok(d) => d.source.as_ref().map_or_else(|| "none found: power reported as unknown unless given --watts or --power-cmd".to_owned(), |s| s.describe()),
        Err(e) => format!("error: {e}"),
    };
    let cpu = detect(false);
    let mut lines = vec![format!("bench (cpu): {}", describe(&cpu))];
    if let Ok(d) = &cpu {
        lines.extend(d.notes.iter().map(|n| format!("  ({n})")));
    }
    let gpu = detect(true);
    if describe(&gpu) != describe(&cpu) {
        lines.push(format!("bench --backend gpu: {}", describe(&gpu)));
    }
    lines
}

/// One line per GPU adapter wgpu finds (index for `--backend gpu:N`, backend, type, driver).
pub fn gpu_adapters() -> Vec<String> {
    let list = hashrig_hasher_gpu::list_adapters();
    if list.is_empty() {
        return vec!["none found (no Vulkan/Metal/DX12 driver; on Linux without a GPU, `apt-get install mesa-vulkan-drivers libvulkan1` gives the lavapipe software adapter)".to_owned()];
    }
    list.iter()
        .map(|a| {
            let nvml = if hashrig_hasher_gpu::NvmlEnergy::for_adapter(a).is_some() { ", NVML power" } else { "" };
            format!("{a}{nvml}")
        })
        .collect()
}

/// One line per serial port; with `probe`, what answered on it (use it with
/// `--backend asic:PORT`).
pub fn serial_ports(probe: bool) -> Vec<String> {
    let ports = match hashrig_hasher_asic::list_ports() {
        Ok(p) => p,
        Err(e) => return vec![format!("cannot list serial ports: {e}")],
    };
    if ports.is_empty() {
        return vec!["none found (a BM13xx board shows up as /dev/ttyUSB* or /dev/ttyACM*)".to_owned()];
    }
    ports
        .into_iter()
        .map(|line| {
            if !probe {
                return line;
            }
            let path = line.split(' ').next().unwrap_or_default().to_owned();
            match hashrig_hasher_asic::probe_port(&path) {
                Ok((chip, n)) => format!("{line}: {n} x {chip} answered"),
                Err(e) => format!("{line}: {e}"),
            }
        })
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}
