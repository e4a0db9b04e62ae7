//! `hashrig selftest`: real-block known answers (mainnet genesis and block 125552), the
//! reference set under an easy target, and nonce-range ends, on each backend and every CPU
//! kernel this machine has. Non-zero exit on any mismatch: for rig burn-in and CI.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use hashrig_hasher::Hasher;
use hashrig_hasher::testkit::{self, KitConfig};
use hashrig_sha256d::Kernel;

use crate::backend::{self, BackendSpec, CpuOptions};

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Test only this backend (default: the CPU with every kernel it has, and other backends
    /// built in).
    #[arg(long, value_parser = backend::parse_backend)]
    pub backend: Option<BackendSpec>,
    /// CPU threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Backends other than the CPU that the default selftest also tries (hook for the GPU/ASIC
/// backends: each returns the specs it can open on this machine).
pub fn other_backends() -> Vec<BackendSpec> {
    let mut specs = Vec::new();
    // Every GPU adapter, software ones (lavapipe) included: a selftest is about correctness.
    // A software adapter is opened by name: by index it is refused while a GPU exists.
    for a in hashrig_hasher_gpu::list_adapters() {
        use hashrig_hasher_gpu::AdapterSelector;
        let sel = if a.is_software() { AdapterSelector::Name(a.name) } else { AdapterSelector::Index(a.index) };
        specs.push(BackendSpec::Gpu(hashrig_hasher_gpu::GpuSelection::List(vec![sel])));
    }
    specs
}

/// One conformance check of the kit.
type Check = fn(&mut dyn Hasher, &KitConfig) -> Result<(), testkit::Failure>;

pub fn run(a: &SelftestArgs) -> anyhow::Result<ExitCode> {
    let cpu = CpuOptions::new(a.threads, None)?;
    // (label, hasher, kit sizes)
    let mut targets: Vec<(String, Box<dyn Hasher>, KitConfig)> = Vec::new();
    match &a.backend {
        Some(spec) => {
            cpu.check_backend(spec)?;
            if spec.is_cpu() {
                push_cpu_kernels(&mut targets, &cpu)?;
            } else {
                for h in backend::open(spec, &cpu)? {
                    targets.push((format!("{spec}"), h, KitConfig::slow()));
                }
            }
        }
        None => {
            push_cpu_kernels(&mut targets, &cpu)?;
            for spec in other_backends() {
                match backend::open(&spec, &CpuOptions::default()) {
                    Ok(hs) => targets.extend(hs.into_iter().map(|h| (spec.to_string(), h, KitConfig::slow()))),
                    Err(e) => crate::outln!("skip  {spec}: {e:#}")?,
                }
            }
        }
    }
    let mut failures = 0;
    for (label, mut h, kit) in targets {
        let started = Instant::now();
        let name = format!("{label} [{}]", h.info().kernel);
        let checks: [(&str, Check); 3] = [
            ("real blocks", testkit::finds_real_block_nonces),
            ("reference set", testkit::finds_reference_set_under_easy_target),
            ("range ends", testkit::honours_range_ends),
        ];
        let mut ok = true;
        for (what, check) in checks {
            if let Err(f) = check(h.as_mut(), &kit) {
                crate::outln!("FAIL  {name}: {what}: {f}")?;
                ok = false;
            }
        }
        if ok {
            crate::outln!("ok    {name}: genesis and block 125552 found, reference set matched, range ends honoured ({:.2} s)", started.elapsed().as_secs_f64())?;
        } else {
            failures += 1;
        }
    }
    if failures > 0 {
        crate::outln!("{failures} backend(s) failed")?;
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn push_cpu_kernels(targets: &mut Vec<(String, Box<dyn Hasher>, KitConfig)>, cpu: &CpuOptions) -> anyhow::Result<()> {
    for k in Kernel::available() {
        let opts = CpuOptions { threads: cpu.threads, kernel: Some(k) };
        targets.push(("cpu".into(), Box::new(backend::open_cpu(&opts)?), KitConfig::fast()));
    }
    Ok(())
}
