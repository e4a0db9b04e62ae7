//! The GPU backend of hashrig: a [`Hasher`] over wgpu (Vulkan, Metal, DX12; any adapter, a
//! software one such as Mesa's lavapipe included) running one WGSL SHA-256d nonce-search shader.
//!
//! What it is for: sweeping nonce ranges of block headers fast on a GPU. Per work unit the host
//! does everything that does not depend on the nonce (midstate, rounds 0-2 of the second block,
//! round 3's nonce-free parts, schedule words 16-17); the shader (`src/sha256d.wgsl`, generated
//! by `tools/gen_kernel.py`) hashes `npi` nonces per invocation, stops the second SHA-256 after
//! round 60 and rejects on the top word, and appends survivors to a bounded buffer through an
//! atomic counter. The host re-verifies every survivor against the whole target with
//! `hashrig-sha256d` before pushing it to the [`Sink`]; a buffer overflow makes the host
//! re-scan that dispatch in pieces, so no candidate is ever dropped.
//!
//! The device, pipeline, bind groups and buffers are made once per hasher ([`GpuHasher::new`])
//! and reused. Two buffer sets make a double buffer: dispatch N+1 is queued before N is read
//! back, so the GPU never waits for the host. Dispatches are sized by time (tens of ms, from a
//! rate measured at start-up and updated after every dispatch, where the workgroup size and the
//! nonces per invocation are also tuned); a new epoch stops work between dispatches; the hash
//! counter moves once per dispatch.
//!
//! Device creation ([`open_device`], [`open_all`], [`list_adapters`]) is kept apart from the code
//! that uses a device ([`GpuHasher::new`] takes any [`GpuDevice`]). Power on NVIDIA GPUs comes
//! from NVML's total-energy counter ([`power::NvmlEnergy`], cargo feature `nvml`, the library
//! loaded at run time: none there means power unknown, not an error).
//!
//! What it is not for: share policy, difficulty, version rolling (not done on the GPU: the
//! hasher says `version_rolling: false`), or CPU hashing.

use std::time::{Duration, Instant};

use hashrig_hasher::{
    Candidate, Control, DeviceInfo, DeviceKind, HashCount, Hasher, Origin, Sink, UnitOutcome,
    WorkUnit,
};
use hashrig_sha256d::{NonceRange, ScanJob};

mod device;
mod kernel;
pub mod power;

pub use device::{
    AdapterSelector, AdapterSummary, GpuDevice, list_adapters, open_all, open_device,
};
pub use power::NvmlEnergy;

use kernel::{Params, Pipeline, RESULT_CAP, Slot};

/// Errors of the GPU backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu found no adapter at all.
    #[error(
        "no GPU adapter found (no Vulkan, Metal or DX12 driver; on Linux without a GPU, `apt-get install mesa-vulkan-drivers libvulkan1` gives the lavapipe software adapter)"
    )]
    NoAdapter,
    /// `--gpu` named an adapter that is not there.
    #[error("no GPU adapter matches {selector} (adapters: {available})")]
    AdapterNotFound { selector: String, available: String },
    /// The adapter refused to open a device.
    #[error("cannot open a device on {adapter}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// The shader or pipeline failed validation (a bug, or an adapter wgpu cannot drive).
    #[error("the sha256d shader cannot run on {adapter}: {message}")]
    Shader { adapter: String, message: String },
    /// Waiting for a dispatch failed (timed out: the device hung).
    #[error("waiting for a dispatch on {adapter} failed")]
    Wait {
        adapter: String,
        #[source]
        source: wgpu::PollError,
    },
    /// The result buffer could not be mapped for reading.
    #[error("cannot read results back from {adapter}")]
    Map {
        adapter: String,
        #[source]
        source: wgpu::BufferAsyncError,
    },
    /// The device stopped answering (lost, driver reset).
    #[error("the device {adapter} was lost")]
    Lost { adapter: String },
    /// The device reported an error (lost, a validation or out-of-memory error outside an error
    /// scope, an unreadable result buffer): this hasher is finished, every later call says so.
    #[error("the GPU {adapter} failed and is out of this run: {reason}")]
    Failed { adapter: String, reason: String },
}

/// How long one dispatch may take before the device counts as hung. Dispatches are sized to
/// ~100-250 ms, so 2 s is far past any healthy one. Software adapters run on CPU cores shared
/// with everything else (a loaded CI machine), so they get more.
fn wait_limit(adapter: &AdapterSummary) -> Duration {
    if adapter.is_software() {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    }
}

/// An error and its sources, ": "-joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    chain
}

/// The first error wgpu reported outside an error scope, or the device-lost reason: set from
/// wgpu's callbacks (which would otherwise panic), read by the hasher between dispatches.
#[derive(Clone, Debug, Default)]
struct Health(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Health {
    /// Replace wgpu's default handlers (the uncaptured-error one panics) on `device`.
    fn watch(device: &wgpu::Device, adapter: &str) -> Self {
        let health = Self::default();
        let (h, name) = (health.clone(), adapter.to_owned());
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            tracing::error!(adapter = %name, error = %e, "gpu error");
            h.set(format!("device error: {e}"));
        }));
        let (h, name) = (health.clone(), adapter.to_owned());
        device.set_device_lost_callback(move |reason, message| {
            tracing::error!(adapter = %name, ?reason, %message, "gpu device lost");
            h.set(format!("device lost ({reason:?}): {message}"));
        });
        health
    }

    fn set(&self, reason: String) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(reason);
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What start-up tuning chose, and the rate it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    pub workgroup: u32,
    pub nonces_per_invocation: u32,
    /// Nonces per second measured with that choice (one dispatch, tens of ms).
    pub rate: f64,
    /// Every (workgroup, nonces per invocation, rate) tried.
    pub tried: Vec<(u32, u32, f64)>,
}

/// How to tune and size dispatches. The defaults depend on the adapter ([`Options::for_adapter`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// How long one dispatch should take.
    pub dispatch_time: Duration,
    /// Workgroup sizes to try (those over the adapter's limits are skipped).
    pub workgroups: Vec<u32>,
    /// Nonces per invocation to try.
    pub nonces_per_invocation: Vec<u32>,
    /// Expected top-word survivors per dispatch, as a fraction of the result buffer. Above 1 the
    /// buffer overflows often and dispatches get re-scanned in pieces (tests use that).
    pub result_fill: f64,
}

impl Options {
    /// Software adapters (lavapipe) get one cheap setting; hardware GPUs a small search.
    pub fn for_adapter(adapter: &AdapterSummary) -> Self {
        if adapter.is_software() {
            Self {
                dispatch_time: Duration::from_millis(30),
                workgroups: vec![64],
                nonces_per_invocation: vec![32],
                result_fill: 0.25,
            }
        } else {
            Self {
                dispatch_time: Duration::from_millis(40),
                workgroups: vec![64, 128, 256, 512],
                nonces_per_invocation: vec![64, 256, 1024],
                result_fill: 0.25,
            }
        }
    }
}

/// The largest dispatch: the shader's offsets are u32, and a dimension holds 65,535 workgroups.
const MAX_DISPATCH_NONCES: u64 = 1 << 31;
const MAX_WORKGROUPS: u64 = 65_535;

/// A GPU running the WGSL sha256d shader.
#[derive(Debug)]
pub struct GpuHasher {
    dev: GpuDevice,
    pipeline: Pipeline,
    slots: [Slot; 2],
    /// For synchronous re-scans after a result-buffer overflow.
    spare: Slot,
    npi: u32,
    /// Nonces per second, updated after every dispatch.
    rate: f64,
    dispatch_time: Duration,
    result_fill: f64,
    tuning: Tuning,
    info: DeviceInfo,
    /// Candidates the GPU claimed that fail even the top-word test on the host.
    hardware_errors: u64,
    /// Dispatches whose candidates overflowed the result buffer (each was re-scanned).
    overflows: u64,
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
        let npis: Vec<u32> = opts
            .nonces_per_invocation
            .iter()
            .copied()
            .filter(|&n| n > 0)
            .collect();
        let npis = if npis.is_empty() { vec![64] } else { npis };
        let started = Instant::now();

        // Workgroup size first (at the middle nonces-per-invocation), then nonces per invocation.
        let mid_npi = npis[npis.len() / 2];
        let mut tried = Vec::new();
        let mut best: Option<(Pipeline, u32, f64)> = None;
        for &wg in &workgroups {
            let pipeline = Pipeline::new(&dev.device, wg, &name)?;
            let rate = if workgroups.len() == 1 && npis.len() == 1 {
                calibrate(&dev, &pipeline, mid_npi, opts.dispatch_time, limit)?
            } else {
                calibrate(&dev, &pipeline, mid_npi, opts.dispatch_time / 2, limit)?
            };
            tried.push((wg, mid_npi, rate));
            if best.as_ref().is_none_or(|b| rate > b.2) {
                best = Some((pipeline, mid_npi, rate));
            }
        }
        let (pipeline, mut npi, mut rate) = best.expect("at least one workgroup size");
        for &n in npis.iter().filter(|&&n| n != mid_npi) {
            let r = calibrate(&dev, &pipeline, n, opts.dispatch_time / 2, limit)?;
            tried.push((pipeline.workgroup, n, r));
            if r > rate {
                npi = n;
                rate = r;
            }
        }
        let tuning = Tuning {
            workgroup: pipeline.workgroup,
            nonces_per_invocation: npi,
            rate,
            tried,
        };
        tracing::info!(
            adapter = %name,
            workgroup = tuning.workgroup,
            nonces_per_invocation = npi,
            rate_mhs = rate / 1e6,
            took_ms = started.elapsed().as_millis() as u64,
            "gpu tuned"
        );
        let slots = [
            Slot::new(&dev.device, &pipeline, "sha256d slot 0"),
            Slot::new(&dev.device, &pipeline, "sha256d slot 1"),
        ];
        let spare = Slot::new(&dev.device, &pipeline, "sha256d re-scan slot");
        let per_dispatch = (rate * opts.dispatch_time.as_secs_f64()) as u64;
        let info = DeviceInfo {
            name: format!("{} ({})", dev.adapter.name, dev.adapter.backend),
            kind: DeviceKind::Gpu,
            kernel: "wgsl".into(),
            lanes: (per_dispatch / u64::from(npi)).max(u64::from(pipeline.workgroup)),
            nominal_hashrate: Some(rate),
            hash_count: HashCount::Exact,
            version_rolling: false,
        };
        Ok(Self {
            dev,
            pipeline,
            slots,
            spare,
            npi,
            rate,
            dispatch_time: opts.dispatch_time,
            result_fill: opts.result_fill,
            tuning,
            info,
            hardware_errors: 0,
            overflows: 0,
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

    /// Nonces per invocation group (one workgroup's worth): dispatches are multiples of it.
    fn granule(&self) -> u64 {
        u64::from(self.pipeline.workgroup) * u64::from(self.npi)
    }

    /// How many nonces the next dispatch takes: by time, and small enough that the expected
    /// number of top-word survivors stays well inside the result buffer.
    fn dispatch_size(&self, top: u32) -> u64 {
        let g = self.granule();
        let by_time = ((self.rate * self.dispatch_time.as_secs_f64()) as u64)
            .div_ceil(g)
            .max(1)
            * g;
        let max = MAX_DISPATCH_NONCES.min(MAX_WORKGROUPS * g);
        // About (top + 1) / 2^32 of all nonces pass the top-word test.
        let pass = (f64::from(top) + 1.0) / 4_294_967_296.0;
        let by_results = ((f64::from(RESULT_CAP) * self.result_fill) / pass).max(1.0) as u64;
        by_time.min(max).min(by_results).max(1)
    }

    fn params(&self, base: &Params, range: NonceRange) -> Params {
        Params {
            start: range.start(),
            count: range.count() as u32,
            npi: self.npi,
            ..*base
        }
    }

    /// Check what the GPU returned on the host and push what meets the whole target.
    fn deliver(&mut self, unit: &WorkUnit, job: &ScanJob, mut nonces: Vec<u32>, sink: &Sink) {
        nonces.sort_unstable();
        nonces.dedup();
        let top = unit.target.top_word();
        for nonce in nonces {
            let digest = job.digest(nonce);
            if unit.target.is_met_by(&digest) {
                sink.push(Candidate {
                    unit_id: unit.id,
                    nonce,
                    version: unit.version(),
                    origin: Origin::default(),
                });
            } else if u32::from_le_bytes([digest[28], digest[29], digest[30], digest[31]]) > top {
                // Passing the top word but not the full target is normal; failing it is not.
                self.hardware_errors += 1;
                tracing::warn!(adapter = %self.dev.adapter.name, nonce, "gpu returned a nonce that fails the top-word test");
            }
        }
    }

    /// Re-scan a dispatch whose candidates overflowed the buffer, in halves, synchronously.
    fn rescan(&mut self, base: &Params, range: NonceRange) -> Result<Vec<u32>, Error> {
        let mut found = Vec::new();
        let mut todo = vec![range];
        while let Some(mut r) = todo.pop() {
            if r.count() > 1 {
                let half = r.take_front(r.count() / 2);
                let params = self.params(base, half);
                self.spare
                    .submit(&self.dev.device, &self.dev.queue, &self.pipeline, &params);
                let back = self
                    .spare
                    .collect(&self.dev.device, &self.dev.adapter.name, self.limit)?;
                if back.overflowed {
                    todo.push(half);
                } else {
                    found.extend(back.nonces);
                }
                todo.push(r);
            } else if r.count() == 1 {
                let params = self.params(base, r);
                self.spare
                    .submit(&self.dev.device, &self.dev.queue, &self.pipeline, &params);
                found.extend(
                    self.spare
                        .collect(&self.dev.device, &self.dev.adapter.name, self.limit)?
                        .nonces,
                );
            }
        }
        Ok(found)
    }
}

/// Open and tune the GPUs a `--gpu` value names: "" or "auto" the best adapter, "all" every
/// hardware adapter (lavapipe only when there is none), else a comma-separated list of indices
/// and name substrings ("0,1", "H100"). One hasher per GPU; they tune in parallel.
pub fn open_hashers(spec: &str) -> Result<Vec<GpuHasher>, Error> {
    let devices = if spec.trim().eq_ignore_ascii_case("all") {
        open_all()?
    } else {
        let mut seen = Vec::new();
        let mut devices = Vec::new();
        for part in spec.split(',') {
            let sel: AdapterSelector = part.parse().unwrap_or_default();
            let dev = open_device(&sel)?;
            // "0,0" or a name matching twice must not open one GPU as two hashers.
            if !seen.contains(&dev.adapter.index) {
                seen.push(dev.adapter.index);
                devices.push(dev);
            }
        }
        devices
    };
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

/// Measure the rate of `pipeline` at `npi` nonces per invocation with dispatches of about
/// `time`: one small warm-up, then dispatches growing 4x until one takes that long.
fn calibrate(
    dev: &GpuDevice,
    pipeline: &Pipeline,
    npi: u32,
    time: Duration,
    limit: Duration,
) -> Result<f64, Error> {
    let mut slot = Slot::new(&dev.device, pipeline, "sha256d calibration");
    // A target nothing meets: the shader writes no candidates.
    let base = Params::for_header(&[0u8; 80], 0);
    let g = u64::from(pipeline.workgroup) * u64::from(npi);
    let max = MAX_DISPATCH_NONCES.min(MAX_WORKGROUPS * g);
    let mut n = g;
    let mut warm = false;
    loop {
        let params = Params {
            start: 0,
            count: n as u32,
            npi,
            ..base
        };
        let t0 = Instant::now();
        slot.submit(&dev.device, &dev.queue, pipeline, &params);
        slot.collect(&dev.device, &dev.adapter.name, limit)?;
        let took = t0.elapsed();
        if !warm {
            warm = true;
            n = (g * 16).min(max);
            continue;
        }
        if took >= time || n >= max {
            return Ok(n as f64 / took.as_secs_f64().max(1e-6));
        }
        // Aim straight for the time when the measurement is long enough to trust.
        let next = if took >= Duration::from_millis(3) {
            ((n as f64 * time.as_secs_f64() / took.as_secs_f64()) as u64).div_ceil(g) * g
        } else {
            n * 4
        };
        n = next.clamp(n + g, max);
    }
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
        if self.failed.is_none() {
            if let Some(reason) = self.health.get() {
                self.failed = Some(reason);
            }
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
    ) -> Result<UnitOutcome, hashrig_hasher::Error> {
        let device_err = |e: Error, name: &str| hashrig_hasher::Error::Device {
            device: name.to_owned(),
            source: Box::new(e),
        };
        let name = self.info.name.clone();
        let job = ScanJob::new(&unit.header);
        let top = unit.target.top_word();
        let base = Params::for_header(&unit.header, top);
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
                let range = rest.take_front(self.dispatch_size(top));
                let params = self.params(&base, range);
                self.slots[next_slot].submit(
                    &self.dev.device,
                    &self.dev.queue,
                    &self.pipeline,
                    &params,
                );
                inflight.push_back((next_slot, range, Instant::now()));
                next_slot = (next_slot + 1) % self.slots.len();
            }
            let Some((slot, range, submitted)) = inflight.pop_front() else {
                break;
            };
            let back = self.slots[slot]
                .collect(&self.dev.device, &self.dev.adapter.name, self.limit)
                .map_err(|e| device_err(e, &name))?;
            if let Some(reason) = self.health.get() {
                // An error reported during this dispatch: its results cannot be trusted.
                return Err(device_err(
                    Error::Failed {
                        adapter: self.dev.adapter.name.clone(),
                        reason,
                    },
                    &name,
                ));
            }
            let now = Instant::now();
            // The GPU worked on this dispatch from when it was queued or the previous one ended.
            let began = last_done.map_or(submitted, |t| t.max(submitted));
            let secs = (now - began).as_secs_f64();
            if secs > 0.0 && range.count() >= self.granule() {
                let sample = range.count() as f64 / secs;
                self.rate = 0.7 * self.rate + 0.3 * sample;
            }
            last_done = Some(now);
            let nonces = if back.overflowed {
                self.overflows += 1;
                tracing::debug!(adapter = %self.dev.adapter.name, ?range, "result buffer overflowed; re-scanning in pieces");
                self.rescan(&base, range)
                    .map_err(|e| device_err(e, &name))?
            } else {
                back.nonces
            };
            self.deliver(unit, &job, nonces, sink);
            hashes += range.count();
            ctl.add_hashes(range.count());
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
            completed: hashes == unit.range.count(),
        })
    }
}
