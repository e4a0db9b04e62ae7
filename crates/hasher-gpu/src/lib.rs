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
// Generated with the shader by tools/gen_kernel.py; not formatted by hand or by rustfmt.
#[rustfmt::skip]
mod folded;
mod kernel;
pub mod power;

pub use device::{
    AdapterSelector, AdapterSummary, GpuDevice, SOFTWARE_LABEL, list_adapters, open_all,
    open_device, open_spec, resolve,
};

use kernel::{MAX_VERSIONS, Params, Pipeline, RESULT_CAP, Slot};

/// Errors of the GPU backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu found no adapter at all.
    #[error(
        "no GPU adapter found (no Vulkan, Metal or DX12 driver; on Linux without a GPU, `apt-get install mesa-vulkan-drivers libvulkan1` gives the lavapipe software adapter)"
    )]
    NoAdapter,
    /// An index named a software adapter while a hardware one exists.
    #[error(
        "adapter {index} ({name}) is a software adapter that runs on the CPU, not a GPU; name it (gpu:llvmpipe) to use it anyway"
    )]
    SoftwareNotNamed { index: usize, name: String },
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

/// One setting the start-up tuner timed.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    pub workgroup: u32,
    pub nonces_per_invocation: u32,
    /// Nonces per second: the median of `samples`.
    pub rate: f64,
    /// (nonces, seconds) of each timed sample; each ran for at least [`Options::tune_time`]
    /// (unless one sample already filled the largest dispatch allowed).
    pub samples: Vec<(u64, f64)>,
}

/// What start-up tuning chose and measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    pub workgroup: u32,
    pub nonces_per_invocation: u32,
    /// Nonces per second with that choice (the median of its samples).
    pub rate: f64,
    /// Workgroups the device runs at once, estimated from time against workgroup count: the
    /// fewest at which the rate reaches 90 % of the best seen. Dispatches hold whole multiples.
    pub wave: u32,
    /// (workgroups, seconds: median of 3) of each dispatch the wave measurement timed.
    pub wave_curve: Vec<(u32, f64)>,
    /// Every setting tried.
    pub tried: Vec<Trial>,
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

/// Dispatch limits: the shader's offsets are u32, and a dimension holds 65,535 workgroups.
const MAX_DISPATCH_NONCES: u64 = 1 << 31;
const MAX_WORKGROUPS: u64 = 65_535;

/// What sizes a dispatch: hashes per second, the time one should take, the target's top word,
/// versions per nonce, nonces per workgroup, workgroups per wave, and the result buffer's fill.
struct Sizing {
    rate: f64,
    time: Duration,
    top: u32,
    versions: usize,
    granule: u64,
    wave: u64,
    fill: f64,
}

/// The most nonces one dispatch may take: ~`time` in whole waves, and few enough that the
/// expected top-word survivors stay well inside the result buffer. Returns (target, quantum): the
/// quantum is one wave's nonces, or one workgroup's when the result limit is below a wave.
fn dispatch_target(s: &Sizing) -> (u64, u64) {
    let g = s.granule;
    let wave = s.wave.max(1) * g;
    // One workgroup short of the limit: a start that is not a multiple of npi adds up to one.
    let max = MAX_DISPATCH_NONCES.min((MAX_WORKGROUPS - 1) * g) / g * g;
    let by_time = (s.rate / s.versions as f64 * s.time.as_secs_f64()) as u64;
    // About (top + 1) / 2^32 of all hashes pass the top-word test.
    let pass = (f64::from(s.top) + 1.0) / 4_294_967_296.0 * s.versions as f64;
    let by_results = ((f64::from(RESULT_CAP) * s.fill) / pass).max(1.0) as u64;
    let limit = by_results.min(max);
    if limit >= wave {
        let waves = (by_time.min(limit) / wave).max(1);
        (waves * wave, wave)
    } else {
        ((limit / g).max(1) * g, g)
    }
}

/// Split `count` nonces into dispatches of at most `target` (a multiple of `quantum`, the nonces
/// of one wave), evenly: all but the last a whole number of quanta, and no tiny remainder (the
/// last is at least half the others; where whole quanta cannot give that, plain even parts).
fn split(count: u64, target: u64, quantum: u64) -> Vec<u64> {
    if count == 0 {
        return Vec::new();
    }
    let target = target.max(1);
    let n = count.div_ceil(target);
    let even = count.div_ceil(n);
    let per = even.div_ceil(quantum.max(1)) * quantum.max(1);
    let per = if per <= target { per } else { even };
    let mut out = Vec::with_capacity(n as usize);
    let mut left = count;
    while left > per {
        out.push(per);
        left -= per;
    }
    out.push(left);
    if out.len() > 1 && left * 2 < per {
        // Whole quanta would leave a small last piece: even parts instead.
        let n = out.len() as u64;
        out = (0..n)
            .map(|i| count / n + u64::from(i < count % n))
            .collect();
    }
    out
}

/// The versions a unit's mask lets one nonce carry: the header's own, then those with the mask's
/// lowest bits flipped (BIP 320 rolling: bits outside the mask never change). `max` is 1, 2 or 4.
fn rolled_versions(version: u32, mask: u32, max: usize) -> Vec<u32> {
    let bits: Vec<u32> = (0..32).filter(|b| mask >> b & 1 == 1).collect();
    let mut k = 1usize;
    while k * 2 <= max.min(MAX_VERSIONS) && (k * 2).trailing_zeros() as usize <= bits.len() {
        k *= 2;
    }
    (0..k as u32)
        .map(|j| {
            let flip = bits
                .iter()
                .enumerate()
                .filter(|(i, _)| j >> i & 1 == 1)
                .fold(0u32, |acc, (_, b)| acc | 1 << b);
            version ^ flip
        })
        .collect()
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
pub fn open_hashers(spec: &str) -> Result<Vec<GpuHasher>, Error> {
    let devices = open_spec(spec)?;
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

/// A block of parameters no hash meets (top word 0): timing dispatches write no candidates.
fn timing_params() -> Params {
    Params::for_headers(&[[0u8; 80]], 0)
}

/// Run `groups` workgroups of `pipeline` at `npi`, `repeat` times back to back; seconds taken.
fn time_dispatch(
    dev: &GpuDevice,
    slot: &mut Slot,
    pipeline: &Pipeline,
    npi: u32,
    groups: u64,
    repeat: u32,
    limit: Duration,
) -> Result<f64, Error> {
    let nonces = groups * u64::from(pipeline.workgroup) * u64::from(npi);
    let (params, inv) = timing_params().dispatch(0, nonces, npi);
    let t0 = Instant::now();
    slot.submit(&dev.device, &dev.queue, pipeline, &params, inv, repeat);
    slot.collect(&dev.device, &dev.adapter.name, limit)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Time `pipeline` at `npi` nonces per invocation: `opts.tune_samples` samples, each at least
/// `opts.tune_time` long (one dispatch, or several back to back when one dispatch cannot be that
/// long); the rate is their median.
fn calibrate(
    dev: &GpuDevice,
    layout: &wgpu::BindGroupLayout,
    pipeline: &Pipeline,
    npi: u32,
    opts: &Options,
    limit: Duration,
) -> Result<Trial, Error> {
    let mut slot = Slot::new(&dev.device, layout, "sha256d calibration");
    let per_group = u64::from(pipeline.workgroup) * u64::from(npi);
    let max_groups = (MAX_DISPATCH_NONCES / per_group).min(MAX_WORKGROUPS);
    let want = opts.tune_time.as_secs_f64();
    // Warm up (the first dispatch pays for pipeline set-up), then grow until one is long enough.
    time_dispatch(dev, &mut slot, pipeline, npi, 1, 1, limit)?;
    let (mut groups, mut repeat) = (16u64.min(max_groups), 1u32);
    let mut samples = Vec::new();
    while samples.len() < opts.tune_samples.max(1) {
        let secs = time_dispatch(dev, &mut slot, pipeline, npi, groups, repeat, limit)?;
        let nonces = groups * per_group * u64::from(repeat);
        if secs >= want || repeat >= 1024 {
            samples.push((nonces, secs));
            continue;
        }
        // Aim for 1.2x the time (x4 at most per step while the measurement is too short to trust).
        let scale = if secs >= 0.003 {
            1.2 * want / secs
        } else {
            4.0
        };
        let total = ((groups * u64::from(repeat)) as f64 * scale).ceil() as u64;
        if total <= max_groups {
            groups = total.max(groups + 1);
            repeat = 1;
        } else {
            groups = max_groups;
            repeat = u32::try_from(total.div_ceil(max_groups))
                .unwrap_or(1024)
                .min(1024);
        }
    }
    let mut rates: Vec<f64> = samples
        .iter()
        .map(|(n, s)| *n as f64 / s.max(1e-9))
        .collect();
    rates.sort_by(f64::total_cmp);
    Ok(Trial {
        workgroup: pipeline.workgroup,
        nonces_per_invocation: npi,
        rate: rates[rates.len() / 2],
        samples,
    })
}

/// Nonces per invocation while measuring the wave: long enough per workgroup that the fixed cost
/// of a submit and a wait is small against one wave's time.
const WAVE_NPI: u32 = 256;

/// Time against workgroup count: dispatches of 1, 2, 4, ... workgroups (median of 3 each) until
/// one takes 50 ms, or the count has passed 4x the best-rate point. The wave is the fewest
/// workgroups whose rate (workgroups per second) reaches 90 % of the best seen: below it part of
/// the device idles, above it the work only queues.
fn measure_wave(
    dev: &GpuDevice,
    layout: &wgpu::BindGroupLayout,
    pipeline: &Pipeline,
    limit: Duration,
) -> Result<(u32, Vec<(u32, f64)>), Error> {
    let mut slot = Slot::new(&dev.device, layout, "sha256d wave");
    time_dispatch(dev, &mut slot, pipeline, WAVE_NPI, 1, 1, limit)?;
    let mut curve: Vec<(u32, f64)> = Vec::new();
    let mut groups = 1u64;
    loop {
        let mut t = [0.0; 3];
        for x in &mut t {
            *x = time_dispatch(dev, &mut slot, pipeline, WAVE_NPI, groups, 1, limit)?;
        }
        t.sort_by(f64::total_cmp);
        curve.push((groups as u32, t[1]));
        let best_at = curve
            .iter()
            .max_by(|a, b| (f64::from(a.0) / a.1).total_cmp(&(f64::from(b.0) / b.1)))
            .map_or(1, |c| c.0);
        let per_group = u64::from(pipeline.workgroup) * u64::from(WAVE_NPI);
        if t[1] >= 0.05
            || groups * 2 > MAX_WORKGROUPS
            || groups * 2 * per_group > MAX_DISPATCH_NONCES
            || groups >= 4 * u64::from(best_at)
        {
            break;
        }
        groups *= 2;
    }
    let best = curve
        .iter()
        .map(|c| f64::from(c.0) / c.1)
        .fold(0.0, f64::max);
    let wave = curve
        .iter()
        .find(|c| f64::from(c.0) / c.1 >= 0.9 * best)
        .map_or(1, |c| c.0);
    Ok((wave, curve))
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
    fn units_split_evenly_in_whole_waves_without_a_tiny_remainder() {
        let q = 1000;
        for count in [
            1u64,
            999,
            1000,
            1001,
            5_000,
            9_999,
            10_001,
            123_457,
            1 << 22,
        ] {
            for target in [1000u64, 4000, 10_000, 100_000] {
                let s = split(count, target, q);
                assert_eq!(s.iter().sum::<u64>(), count, "{count} {target}");
                assert!(
                    s.iter().all(|&x| x > 0 && x <= target),
                    "{count} {target} {s:?}"
                );
                let (min, max) = (s.iter().min().unwrap(), s.iter().max().unwrap());
                if s.len() > 1 {
                    assert!(min * 2 >= *max, "tiny remainder: {count} {target} {s:?}");
                }
                assert_eq!(
                    s.len() as u64,
                    count.div_ceil(target),
                    "{count} {target} {s:?}"
                );
            }
        }
        // Whole waves where that splits evenly: 10 waves in 3 dispatches of at most 4.
        assert_eq!(split(10_000, 4000, q), vec![4000, 4000, 2000]);
        assert_eq!(split(12_000, 4000, q), vec![4000, 4000, 4000]);
        assert_eq!(split(9_000, 4000, q), vec![3000, 3000, 3000]);
    }

    #[test]
    fn dispatch_targets_are_whole_waves_within_the_workgroup_and_result_limits() {
        let base = Sizing {
            rate: 7e9,
            time: Duration::from_millis(150),
            top: 0,
            versions: 1,
            granule: 256 * 256,
            wave: 1056,
            fill: 0.25,
        };
        let (t, q) = dispatch_target(&base);
        assert_eq!(q, 1056 * 256 * 256);
        assert_eq!(t % q, 0);
        assert!(
            t as f64 <= 7e9 * 0.15 && t as f64 > 7e9 * 0.15 - q as f64,
            "{t}"
        );
        // A rate far past what a dispatch may hold: capped below 65,535 workgroups even when the
        // start is not aligned (one more invocation block), and below 2^31 nonces.
        for (granule, wave) in [(64 * 32, 1), (512 * 256, 1), (64, 1000)] {
            let s = Sizing {
                rate: 1e15,
                granule,
                wave,
                ..base
            };
            let (t, _) = dispatch_target(&s);
            assert!(t <= MAX_DISPATCH_NONCES, "{t}");
            let groups = (t + granule - 1).div_ceil(granule);
            assert!(groups <= MAX_WORKGROUPS, "{groups} workgroups");
        }
        // An easy target: the expected survivors (k per nonce) stay at a quarter of the buffer.
        let easy = Sizing {
            top: u32::MAX >> 8,
            versions: 4,
            ..base
        };
        let (t, q) = dispatch_target(&easy);
        assert_eq!(q, base.granule);
        let expected = t as f64 * 4.0 / 256.0;
        assert!(expected <= f64::from(RESULT_CAP) * 0.25 + 4.0 * base.granule as f64 / 256.0);
    }

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

    #[test]
    fn rolled_versions_flip_only_mask_bits_and_start_with_the_header_version() {
        let v = 0x2000_0000;
        let mask = 0x1fff_e000;
        assert_eq!(rolled_versions(v, 0, 4), vec![v]);
        assert_eq!(rolled_versions(v, mask, 1), vec![v]);
        assert_eq!(rolled_versions(v, mask, 2), vec![v, v ^ 0x2000]);
        let four = rolled_versions(v, mask, 4);
        assert_eq!(four, vec![v, v ^ 0x2000, v ^ 0x4000, v ^ 0x6000]);
        // A one-bit mask allows two versions at most.
        assert_eq!(rolled_versions(v, 1 << 20, 4), vec![v, v ^ (1 << 20)]);
        for x in four {
            assert_eq!((x ^ v) & !mask, 0);
        }
    }
}
