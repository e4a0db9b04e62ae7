//! What the engine counts, and the [`Stats`] snapshot it hands out: per device (hashes, the
//! rate and its interval where it is estimated, hardware errors by origin, health) and for the
//! run (shares, blocks, stale, samples over time).

use std::collections::{HashMap, VecDeque};

use hashrig_hasher::health::Health;

use crate::{Control, DeviceInfo, HashCount, Origin, Shared, lock};

/// Hardware errors of one chip/core.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OriginErrors {
    pub chip: Option<u16>,
    pub core: Option<u16>,
    pub count: u64,
}

/// One device's counters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeviceStats {
    pub index: usize,
    pub info: DeviceInfo,
    /// Hashes done (exact devices) or estimated by the device (ASIC).
    pub hashes: u64,
    /// Hashes per second over the run.
    pub hashrate: f64,
    /// 95 % confidence interval of the hashrate when it is estimated from returned nonces;
    /// null when the count is exact.
    pub hashrate_ci95: Option<[f64; 2]>,
    /// Candidates that verified against their unit's target.
    pub valid_nonces: u64,
    /// Candidates that did not: never submitted.
    pub hw_errors: u64,
    pub hw_errors_by_origin: Vec<OriginErrors>,
    /// Errors the hasher itself returned.
    pub device_errors: u64,
    pub last_error: Option<String>,
    /// The device failed repeatedly and was dropped from the run.
    pub failed: bool,
    /// Paused through [`Engine::device_pause`] (takes no new work until resumed).
    pub paused: bool,
    /// The device's own telemetry (per-chip health of an ASIC chain), sampled with these
    /// stats; none for hashers without a probe. Not serialized here: reports carry it once
    /// (a bench report's `asic_chains`, the view's per-chip health).
    #[serde(skip)]
    pub health: Option<Health>,
}

/// Totals at one moment.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds since the engine started.
    pub t_s: f64,
    pub hashes: u64,
    pub shares: u64,
    pub hw_errors: u64,
}

/// A snapshot of everything the engine counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    pub elapsed_s: f64,
    pub hashes: u64,
    /// Hashes per second over the whole run.
    pub hashrate: f64,
    /// Shares found on current work and handed to the sink.
    pub shares: u64,
    /// Of those, blocks.
    pub blocks: u64,
    /// Shares found on work a clean job made stale: counted, not submitted.
    pub stale: u64,
    /// Results the caller reported back.
    pub accepted: u64,
    pub rejected: u64,
    pub hw_errors: u64,
    /// Candidates naming a unit the engine no longer knows (too old): counted, not submitted.
    pub unknown_candidates: u64,
    pub jobs: u64,
    pub epoch: u64,
    pub devices: Vec<DeviceStats>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Default)]
pub(crate) struct DevCounters {
    pub(crate) valid_nonces: u64,
    pub(crate) hw_errors: u64,
    pub(crate) hw_by_origin: HashMap<Origin, u64>,
    pub(crate) device_errors: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) failed: bool,
    /// Sum over valid nonces of their unit target's difficulty (for estimated devices).
    pub(crate) nonce_difficulty_sum: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) devices: Vec<DevCounters>,
    pub(crate) shares: u64,
    pub(crate) blocks: u64,
    pub(crate) stale: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) unknown_candidates: u64,
    pub(crate) jobs: u64,
    pub(crate) samples: VecDeque<Sample>,
}

/// Hashrate of a device whose count is estimated from returned nonces, with its 95 % interval.
///
/// The device's hash counter is what it credited for valid nonces at its ticket difficulty
/// (`ticket_difficulty * 2^32` hashes each; the ASIC driver counts a nonce only after checking
/// it meets the ticket), so `hashes / (ticket_difficulty * 2^32)` is that nonce count: the rate
/// is `hashes / elapsed`, consistent with the reported hash total, and the interval is Garwood's
/// for that count. Where the ticket difficulty is unusable, the shares this engine re-verified
/// stand in (fewer of them: a wider interval).
pub(crate) fn estimate(c: &DevCounters, hashes: u64, ticket_difficulty: f64, elapsed_s: f64) -> (f64, Option<[f64; 2]>) {
    if elapsed_s <= 0.0 {
        return (0.0, None);
    }
    let per_ticket = ticket_difficulty * 4_294_967_296.0;
    if per_ticket.is_finite() && per_ticket >= 1.0 {
        let n = (hashes as f64 / per_ticket).round() as u64;
        let e = hashrig_hasher::estimate::estimate(n, ticket_difficulty, elapsed_s);
        return (hashes as f64 / elapsed_s, Some(e.ci95));
    }
    if c.valid_nonces == 0 {
        return (hashes as f64 / elapsed_s, None);
    }
    let mean_difficulty = c.nonce_difficulty_sum / c.valid_nonces as f64;
    let e = hashrig_hasher::estimate::estimate(c.valid_nonces, mean_difficulty, elapsed_s);
    (e.rate, Some(e.ci95))
}

impl Shared {
    pub(crate) fn total_hashes(&self) -> u64 {
        self.controls.iter().map(Control::hashes).sum()
    }

    pub(crate) fn take_sample(&self) {
        let hashes = self.total_hashes();
        let t_s = self.started.elapsed().as_secs_f64();
        let mut k = lock(&self.counters);
        let hw_errors = k.devices.iter().map(|d| d.hw_errors).sum();
        let s = Sample { t_s, hashes, shares: k.shares, hw_errors };
        k.samples.push_back(s);
        while k.samples.len() > self.cfg.max_samples {
            k.samples.pop_front();
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let epoch = lock(&self.dispatch).epoch;
        // Probes first: a probe takes its hasher's own lock, never while ours is held.
        let mut health: Vec<Option<Health>> = self.probes.iter().map(|p| p.as_ref().map(|p| p.sample())).collect();
        let k = lock(&self.counters);
        let per_sec = |h: f64| if elapsed_s > 0.0 { h / elapsed_s } else { 0.0 };
        let devices: Vec<DeviceStats> = k
            .devices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let hashes = self.controls[index].hashes();
                let info = self.infos[index].clone();
                let (hashrate, hashrate_ci95) = match info.hash_count {
                    HashCount::Exact => (per_sec(hashes as f64), None),
                    HashCount::Estimated { ticket_difficulty } => estimate(c, hashes, ticket_difficulty, elapsed_s),
                };
                let mut by_origin: Vec<OriginErrors> = c
                    .hw_by_origin
                    .iter()
                    .map(|(o, n)| OriginErrors { chip: o.chip, core: o.core, count: *n })
                    .collect();
                by_origin.sort_by_key(|o| (o.chip, o.core));
                DeviceStats {
                    index,
                    info,
                    hashes,
                    hashrate,
                    hashrate_ci95,
                    valid_nonces: c.valid_nonces,
                    hw_errors: c.hw_errors,
                    hw_errors_by_origin: by_origin,
                    device_errors: c.device_errors,
                    last_error: c.last_error.clone(),
                    failed: c.failed,
                    paused: self.paused.is_paused(index),
                    health: health.get_mut(index).and_then(Option::take),
                }
            })
            .collect();
        let hashes = devices.iter().map(|d| d.hashes).sum::<u64>();
        Stats {
            elapsed_s,
            hashes,
            hashrate: devices.iter().map(|d| d.hashrate).sum(),
            shares: k.shares,
            blocks: k.blocks,
            stale: k.stale,
            accepted: k.accepted,
            rejected: k.rejected,
            hw_errors: devices.iter().map(|d| d.hw_errors).sum(),
            unknown_candidates: k.unknown_candidates,
            jobs: k.jobs,
            epoch,
            devices,
            samples: k.samples.iter().copied().collect(),
        }
    }
}
