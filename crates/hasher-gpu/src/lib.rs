//! The GPU backend of hashrig: a [`Hasher`] over wgpu (Vulkan, Metal, DX12; any adapter, a
//! software one such as Mesa's lavapipe included, named as such) running one WGSL SHA-256d
//! nonce-search shader.
//!
//! What it is for: sweeping nonce ranges of block headers fast on a GPU, rolling the header's
//! version bits where the job allows (overt AsicBoost: k = 2 or 4 versions per nonce share block
//! 2's message schedule). Per work unit the host does everything that does not depend on the nonce
//! (`hashrig-sha256d`'s midstate and prehash per version, then every sum of such values the
//! shader would otherwise redo: `src/folded.rs`); the shader (`src/sha256d.wgsl`, generated with
//! `folded.rs` by `tools/gen_kernel.py`) hashes `npi` consecutive nonces per invocation, stepping
//! the byte-swapped nonce word by one add, stops the second SHA-256 after round 60, rejects on the
//! top word and appends (nonce, version) survivors to a bounded buffer. The host re-verifies every
//! survivor against the whole target before pushing it to the [`Sink`]; a buffer overflow makes
//! the host re-scan that dispatch in pieces, so no candidate is ever dropped.
//!
//! The device, pipelines, bind groups and buffers are made once per hasher ([`GpuHasher::new`])
//! and reused. Start-up measures the wave (how many workgroups the GPU runs at once: time against
//! workgroup count) and tunes the workgroup size and nonces per invocation (each setting timed
//! over >= 100 ms, median of 3). A unit is split evenly into dispatches of whole waves, ~150 ms
//! each; two are queued at a time, so the GPU never waits for the host within a unit. A new epoch
//! stops work between dispatches; the hash counter moves once per dispatch. Any device error
//! (lost, uncaptured, a failed map, a dispatch over 2 s) ends the hasher with an error.
//!
//! Device creation ([`open_device`], [`open_spec`], [`list_adapters`]: one entry per card, a
//! software adapter only by name or when alone) is kept apart from the code that uses a device
//! ([`GpuHasher::new`] takes any [`GpuDevice`]). Power on NVIDIA GPUs: [`power`] matches an
//! adapter to NVML by PCI bus id.
//!
//! What it is not for: share policy, difficulty, or CPU hashing.

use std::time::{Duration, Instant};

use hashrig_hasher::{
    Candidate, Control, DeviceInfo, DeviceKind, HashCount, Hasher, Origin, Sink, UnitOutcome,
    WorkUnit,
};
use hashrig_sha256d::{NonceRange, ScanJob};

mod device;
mod error;
// Generated with the shader by tools/gen_kernel.py; not formatted by hand or by rustfmt.
#[rustfmt::skip]
mod folded;
mod kernel;
mod plan;
pub mod power;
mod tune;

pub use device::{
    AdapterSelector, AdapterSummary, GpuDevice, SOFTWARE_LABEL, list_adapters, open_all,
    GpuSelection, open_device, open_spec, resolve,
};

pub use error::Error;
use error::{Health, error_chain, wait_limit};
use kernel::{MAX_VERSIONS, Params, Pipeline, Slot};
use plan::{Sizing, dispatch_target, rolled_versions, split};
pub use tune::{Trial, Tuning};
use tune::{calibrate, measure_wave};

/// The name every output shows for a GPU hasher: the adapter, its API and what kind of adapter
/// it is, so a software adapter ([`SOFTWARE_LABEL`]) is never taken for a GPU.
pub fn device_name(adapter: &AdapterSummary) -> String {
    format!(
        "{} ({}, {})",
        adapter.name,
        adapter.backend,
        adapter.kind_label()
    )
}

/// How to tune and size dispatches. The defaults depend on the adapter ([`Options::for_adapter`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// How long one dispatch should take (a whole number of waves near this).
    pub dispatch_time: Duration,
    /// How long each tuning sample runs (at least).
    pub tune_time: Duration,
    /// Samples per setting; the median counts.
    pub tune_samples: usize,
    /// Workgroup sizes to try (those over the adapter's limits are skipped).
    pub workgroups: Vec<u32>,
    /// Nonces per invocation to try: powers of two up to 256 (others are skipped).
    pub nonces_per_invocation: Vec<u32>,
    /// Expected top-word survivors per dispatch, as a fraction of the result buffer. Above 1 the
    /// buffer overflows often and dispatches get re-scanned in pieces (tests use that).
    pub result_fill: f64,
    /// Most header versions hashed per nonce when a unit allows version rolling (1, 2 or 4;
    /// 1 turns AsicBoost off).
    pub max_versions: usize,
}

impl Options {
    /// Software adapters (lavapipe) get one setting and 40 ms dispatches; hardware GPUs a small
    /// search and ~150 ms dispatches.
    pub fn for_adapter(adapter: &AdapterSummary) -> Self {
        let (workgroups, nonces_per_invocation) = if adapter.is_software() {
            (vec![64], vec![32])
        } else {
            (vec![64, 128, 256, 512], vec![32, 64, 256])
        };
        Self {
            // A GPU's last, partly filled wave costs little in ~150 ms. A software adapter has no
            // waves worth the name and shares the CPU with everything else: short dispatches keep
            // its stop after an epoch bump (two dispatches in flight) quick on a loaded machine.
            dispatch_time: Duration::from_millis(if adapter.is_software() { 40 } else { 150 }),
            tune_time: Duration::from_millis(100),
            tune_samples: 3,
            workgroups,
            nonces_per_invocation,
            result_fill: 0.25,
            max_versions: MAX_VERSIONS,
        }
    }
}

/// A GPU running the WGSL sha256d shader.
#[derive(Debug)]
pub struct GpuHasher {
    dev: GpuDevice,
    layout: wgpu::BindGroupLayout,
    /// Compiled entry points at the tuned workgroup size, by versions per nonce (1 first; 2 and
    /// 4 made when a unit first rolls versions).
    pipelines: Vec<Pipeline>,
    slots: [Slot; 2],
    /// For synchronous re-scans after a result-buffer overflow.
    spare: Slot,
    npi: u32,
    /// Hashes per second, updated after every dispatch.
    rate: f64,
    dispatch_time: Duration,
    result_fill: f64,
    max_versions: usize,
    tuning: Tuning,
    info: DeviceInfo,
    /// Candidates the GPU claimed that fail even the top-word test on the host.
    hardware_errors: u64,
    /// Dispatches whose candidates overflowed the result buffer (each was re-scanned).
    overflows: u64,
    /// Nonce counts of the dispatches of the last unit (tests check the split).
    last_split: Vec<u64>,
    /// Errors wgpu reported through its callbacks.
    health: Health,
    /// Set once the device failed: every later `hash` returns this, nothing is dispatched.
    failed: Option<String>,
    /// How long one dispatch may take ([`wait_limit`]).
    limit: Duration,
}

impl GpuHasher {
    /// Tune for this device with its default [`Options`] and get ready to hash.
    pub fn new(dev: GpuDevice) -> Result<Self, Error> {
        let opts = Options::for_adapter(&dev.adapter);
        Self::with_options(dev, &opts)
    }

    /// Open the adapter `sel` names and tune for it.
    pub fn open(sel: &AdapterSelector) -> Result<Self, Error> {
        Self::new(open_device(sel)?)
    }

    pub fn with_options(dev: GpuDevice, opts: &Options) -> Result<Self, Error> {
        let name = dev.adapter.name.clone();
        let health = Health::watch(&dev.device, &name);
        let limit = wait_limit(&dev.adapter);
        let layout = kernel::bind_layout(&dev.device);
        let limits = dev.device.limits();
        let mut workgroups: Vec<u32> = opts
            .workgroups
            .iter()
            .copied()
            .filter(|&w| {
                w > 0
                    && w <= limits.max_compute_workgroup_size_x
                    && w <= limits.max_compute_invocations_per_workgroup
            })
            .collect();
        if workgroups.is_empty() {
            workgroups.push(limits.max_compute_workgroup_size_x.clamp(1, 64));
        }
        let mut npis: Vec<u32> = opts
            .nonces_per_invocation
            .iter()
            .copied()
            .filter(|&n| n.is_power_of_two() && n <= 256)
            .collect();
        if npis.is_empty() {
            npis.push(64);
        }
        let started = Instant::now();
        let tune =
            |pipeline: &Pipeline, npi: u32| calibrate(&dev, &layout, pipeline, npi, opts, limit);

        // Workgroup size first (at the middle nonces-per-invocation), then nonces per invocation.
        let mid_npi = npis[npis.len() / 2];
        let mut tried = Vec::new();
        let mut best: Option<(Pipeline, u32, f64)> = None;
        for &wg in &workgroups {
            let pipeline = Pipeline::new(&dev.device, &layout, wg, 1, &name)?;
            let trial = tune(&pipeline, mid_npi)?;
            let rate = trial.rate;
            tried.push(trial);
            if best.as_ref().is_none_or(|b| rate > b.2) {
                best = Some((pipeline, mid_npi, rate));
            }
        }
        let (pipeline, mut npi, mut rate) = best.expect("at least one workgroup size");
        for &n in npis.iter().filter(|&&n| n != mid_npi) {
            let trial = tune(&pipeline, n)?;
            let r = trial.rate;
            tried.push(trial);
            if r > rate {
                npi = n;
                rate = r;
            }
        }
        let (wave, wave_curve) = measure_wave(&dev, &layout, &pipeline, limit)?;
        let tuning = Tuning {
            workgroup: pipeline.workgroup,
            nonces_per_invocation: npi,
            rate,
            wave,
            wave_curve,
            tried,
        };
        tracing::info!(
            adapter = %name,
            workgroup = tuning.workgroup,
            nonces_per_invocation = npi,
            wave,
            rate_mhs = rate / 1e6,
            took_ms = started.elapsed().as_millis() as u64,
            "gpu tuned"
        );
        let slots = [
            Slot::new(&dev.device, &layout, "sha256d slot 0"),
            Slot::new(&dev.device, &layout, "sha256d slot 1"),
        ];
        let spare = Slot::new(&dev.device, &layout, "sha256d re-scan slot");
        let max_versions = opts.max_versions.clamp(1, MAX_VERSIONS);
        let per_dispatch = (rate * opts.dispatch_time.as_secs_f64()) as u64;
        let info = DeviceInfo {
            name: device_name(&dev.adapter),
            kind: DeviceKind::Gpu,
            kernel: "wgsl".into(),
            lanes: (per_dispatch / u64::from(npi)).max(u64::from(pipeline.workgroup)),
            nominal_hashrate: Some(rate),
            hash_count: HashCount::Exact,
            version_rolling: max_versions > 1,
        };
        Ok(Self {
            dev,
            layout,
            pipelines: vec![pipeline],
            slots,
            spare,
            npi,
            rate,
            dispatch_time: opts.dispatch_time,
            result_fill: opts.result_fill,
            max_versions,
            tuning,
            info,
            hardware_errors: 0,
            overflows: 0,
            last_split: Vec::new(),
            health,
            failed: None,
            limit,
        })
    }

    /// The adapter this hasher runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.dev.adapter
    }

    /// The wgpu device this hasher runs on (tests use it to inject faults).
    pub fn device(&self) -> &wgpu::Device {
        &self.dev.device
    }

    /// What start-up tuning chose.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Candidates the GPU returned that the host found wrong (should stay 0).
    pub fn hardware_errors(&self) -> u64 {
        self.hardware_errors
    }

    /// Dispatches whose result buffer overflowed and were re-scanned in pieces.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// How long one dispatch may take before the device counts as hung and the hasher ends
    /// (default 2 s; 10 s on a software adapter).
    pub fn set_wait_limit(&mut self, limit: Duration) {
        self.limit = limit;
    }

    /// Nonces in each dispatch of the last unit hashed, in order.
    pub fn last_split(&self) -> &[u64] {
        &self.last_split
    }

    /// Nonces one workgroup covers.
    fn granule(&self) -> u64 {
        u64::from(self.tuning.workgroup) * u64::from(self.npi)
    }

    /// The most nonces the next dispatch may take with `versions` per nonce: ~`dispatch_time`
    /// in whole waves, and few enough that the expected top-word survivors stay well inside the
    /// result buffer. Returns (target, quantum): the quantum is one wave's nonces, or one
    /// workgroup's when the result limit is below a wave.
    fn dispatch_target(&self, top: u32, versions: usize) -> (u64, u64) {
        dispatch_target(&Sizing {
            rate: self.rate,
            time: self.dispatch_time,
            top,
            versions,
            granule: self.granule(),
            wave: u64::from(self.tuning.wave.max(1)),
            fill: self.result_fill,
        })
    }

    fn pipeline_index(&mut self, versions: usize) -> Result<usize, Error> {
        if let Some(i) = self.pipelines.iter().position(|p| p.versions == versions) {
            return Ok(i);
        }
        let p = Pipeline::new(
            &self.dev.device,
            &self.layout,
            self.tuning.workgroup,
            versions,
            &self.dev.adapter.name,
        )?;
        self.pipelines.push(p);
        Ok(self.pipelines.len() - 1)
    }

    /// Check what the GPU returned on the host and push what meets the whole target.
    fn deliver(
        &mut self,
        unit: &WorkUnit,
        jobs: &[(u32, ScanJob)],
        mut found: Vec<(u32, u32)>,
        sink: &Sink,
    ) {
        found.sort_unstable();
        found.dedup();
        let top = unit.target.top_word();
        for (nonce, j) in found {
            let Some((version, job)) = jobs.get(j as usize) else {
                self.hardware_errors += 1;
                tracing::warn!(adapter = %self.dev.adapter.name, nonce, j, "gpu returned a version index it was not given");
                continue;
            };
            let digest = job.digest(nonce);
            if unit.target.is_met_by(&digest) {
                sink.push(Candidate {
                    unit_id: unit.id,
                    nonce,
                    version: *version,
                    origin: Origin::default(),
                });
            } else if u32::from_le_bytes([digest[28], digest[29], digest[30], digest[31]]) > top {
                // Passing the top word but not the full target is normal; failing it is not.
                self.hardware_errors += 1;
                tracing::warn!(adapter = %self.dev.adapter.name, nonce, version, "gpu returned a nonce that fails the top-word test");
            }
        }
    }

    /// Re-scan a dispatch whose candidates overflowed the buffer, in halves, synchronously.
    fn rescan(
        &mut self,
        pipeline: usize,
        base: &Params,
        range: NonceRange,
    ) -> Result<Vec<(u32, u32)>, Error> {
        let mut found = Vec::new();
        let mut todo = vec![range];
        while let Some(mut r) = todo.pop() {
            if r.is_empty() {
                continue;
            }
            let piece = if r.count() > 1 {
                r.take_front(r.count() / 2)
            } else {
                r.take_front(1)
            };
            let (params, inv) = base.dispatch(piece.start(), piece.count(), self.npi);
            self.spare.submit(
                &self.dev.device,
                &self.dev.queue,
                &self.pipelines[pipeline],
                &params,
                inv,
                1,
            );
            let back = self
                .spare
                .collect(&self.dev.device, &self.dev.adapter.name, self.limit)?;
            if back.overflowed && piece.count() > 1 {
                todo.push(piece);
            } else {
                // A single nonce cannot overflow (at most 4 entries).
                found.extend(back.found);
            }
            todo.push(r);
        }
        Ok(found)
    }
}

/// Open and tune the GPUs a `--gpu` value names ([`resolve`]): "" or "auto" the best adapter,
/// "all" every hardware adapter (a software one only when there is none), else a comma-separated
/// list of indices and names ("0,1", "H100"). One hasher per card; they tune in parallel.
pub fn open_hashers(sel: &GpuSelection) -> Result<Vec<GpuHasher>, Error> {
    let devices = open_spec(sel)?;
    std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .into_iter()
            .map(|d| s.spawn(move || GpuHasher::new(d)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("tuning thread panicked"))
            .collect()
    })
}

impl Hasher for GpuHasher {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn hash(
        &mut self,
        unit: &WorkUnit,
        ctl: &Control,
        sink: &Sink,
    ) -> Result<UnitOutcome, hashrig_hasher::Error> {
        if self.failed.is_none()
            && let Some(reason) = self.health.get()
        {
            self.failed = Some(reason);
        }
        if let Some(reason) = &self.failed {
            return Err(hashrig_hasher::Error::Device {
                device: self.info.name.clone(),
                source: Box::new(Error::Failed {
                    adapter: self.dev.adapter.name.clone(),
                    reason: reason.clone(),
                }),
            });
        }
        self.hash_unit(unit, ctl, sink).map_err(|e| {
            // A device error leaves buffers mid-map and dispatches unfinished: never reuse them.
            let reason = self.health.get().unwrap_or_else(|| error_chain(&e));
            tracing::error!(adapter = %self.dev.adapter.name, %reason, "gpu hasher stopped");
            self.failed = Some(reason.clone());
            hashrig_hasher::Error::Device {
                device: self.info.name.clone(),
                source: Box::new(Error::Failed {
                    adapter: self.dev.adapter.name.clone(),
                    reason,
                }),
            }
        })
    }
}

impl GpuHasher {
    fn hash_unit(
        &mut self,
        unit: &WorkUnit,
        ctl: &Control,
        sink: &Sink,
    ) -> Result<UnitOutcome, Error> {
        let versions = rolled_versions(unit.version(), unit.version_mask, self.max_versions);
        let k = versions.len();
        let jobs: Vec<(u32, ScanJob)> = versions
            .iter()
            .map(|&v| {
                let mut h = unit.header;
                h[0..4].copy_from_slice(&v.to_le_bytes());
                (v, ScanJob::new(&h))
            })
            .collect();
        let headers: Vec<[u8; 80]> = versions
            .iter()
            .map(|&v| {
                let mut h = unit.header;
                h[0..4].copy_from_slice(&v.to_le_bytes());
                h
            })
            .collect();
        let top = unit.target.top_word();
        let base = Params::for_headers(&headers, top);
        let pipeline = self.pipeline_index(k)?;
        let (target, quantum) = self.dispatch_target(top, k);
        let sizes = split(unit.range.count(), target, quantum);
        self.last_split = sizes.clone();
        let mut sizes = sizes.into_iter();
        let mut rest = unit.range;
        let mut hashes = 0u64;
        // Dispatches in flight, oldest first: (slot, range, submitted at).
        let mut inflight: std::collections::VecDeque<(usize, NonceRange, Instant)> =
            std::collections::VecDeque::new();
        let mut next_slot = 0usize;
        let mut last_done: Option<Instant> = None;
        let mut stale = false;
        loop {
            // Keep both slots busy while there is work and the unit is current.
            while inflight.len() < self.slots.len() && !rest.is_empty() {
                if ctl.is_stale(unit) {
                    stale = true;
                    break;
                }
                let n = sizes.next().unwrap_or(rest.count());
                let range = rest.take_front(n);
                let (params, inv) = base.dispatch(range.start(), range.count(), self.npi);
                self.slots[next_slot].submit(
                    &self.dev.device,
                    &self.dev.queue,
                    &self.pipelines[pipeline],
                    &params,
                    inv,
                    1,
                );
                inflight.push_back((next_slot, range, Instant::now()));
                next_slot = (next_slot + 1) % self.slots.len();
            }
            let Some((slot, range, submitted)) = inflight.pop_front() else {
                break;
            };
            let back =
                self.slots[slot].collect(&self.dev.device, &self.dev.adapter.name, self.limit)?;
            if let Some(reason) = self.health.get() {
                // An error reported during this dispatch: its results cannot be trusted.
                return Err(Error::Failed {
                    adapter: self.dev.adapter.name.clone(),
                    reason,
                });
            }
            let now = Instant::now();
            // The GPU worked on this dispatch from when it was queued or the previous one ended.
            let began = last_done.map_or(submitted, |t| t.max(submitted));
            let secs = (now - began).as_secs_f64();
            let done = range.count() * k as u64;
            if secs > 0.0 && range.count() >= self.granule() {
                self.rate = 0.7 * self.rate + 0.3 * (done as f64 / secs);
            }
            last_done = Some(now);
            let found = if back.overflowed {
                self.overflows += 1;
                tracing::debug!(adapter = %self.dev.adapter.name, ?range, "result buffer overflowed; re-scanning in pieces");
                self.rescan(pipeline, &base, range)?
            } else {
                back.found
            };
            self.deliver(unit, &jobs, found, sink);
            hashes += done;
            ctl.add_hashes(done);
            if !stale && ctl.is_stale(unit) {
                stale = true;
            }
            if stale {
                // Stop queueing; finish (and count) what is already on the GPU.
                rest = NonceRange::new(0, 0).expect("empty range");
                if inflight.is_empty() {
                    break;
                }
            }
        }
        Ok(UnitOutcome {
            hashes,
            completed: hashes == unit.range.count() * k as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hardware_gpu_gets_two_seconds_per_dispatch() {
        let mut a = AdapterSummary {
            index: 0,
            name: "NVIDIA H100".into(),
            backend: "vulkan".into(),
            device_type: "discrete".into(),
            driver: String::new(),
            driver_info: String::new(),
            vendor: 0x10de,
            device_id: 0,
            pci_bus_id: String::new(),
            also_listed_by: Vec::new(),
        };
        assert_eq!(wait_limit(&a), Duration::from_secs(2));
        a.device_type = "cpu".into();
        assert!(wait_limit(&a) > Duration::from_secs(2));
    }
}
