//! Start-up measurements: each setting's rate (samples of at least `tune_time`, median of 3)
//! and the wave (time against workgroup count).

use std::time::{Duration, Instant};

use crate::kernel::{Params, Pipeline, Slot};
use crate::plan::{MAX_DISPATCH_NONCES, MAX_WORKGROUPS};
use crate::{Error, GpuDevice, Options};

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
pub(crate) fn calibrate(
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
pub(crate) fn measure_wave(
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
