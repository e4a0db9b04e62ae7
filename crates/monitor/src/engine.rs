//! From the engine's [`Stats`] snapshot to a [`RunView`].
//!
//! The engine counts; this turns counts into what the API, metrics and report show: rates over
//! 5 s / 1 min windows (from the engine's cumulative samples, and per device from the history
//! a [`Tracker`] keeps between snapshots), a rate series for the chart, the hashrate interval,
//! and J/TH from the power figure the caller measured.
//!
//! Gaps, said plainly: the engine's stats do not carry per-chip valid nonces yet, so per-chip
//! entries carry hardware errors only; share difficulty sums, per-device share answers and the
//! best share come from the caller's [`Extras`] (the pools' answers), else show as 0.

use std::collections::{BTreeMap, VecDeque};

use hashrig_engine::{HashCount, Stats};

use crate::view::*;

/// What the run knows beyond the engine's counters.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// "bench" or "mine".
    pub mode: RunMode,
    pub started_unix: u64,
    pub pools: Vec<PoolView>,
    pub power: Option<PowerView>,
    pub economics: Option<Economics>,
    pub temperatures: Vec<(usize, Temperature)>,
    /// Highest share difficulty seen (the engine does not keep it).
    pub best_share: f64,
    /// The pools' answers per device (by engine device index), where the caller tracks them.
    pub device_shares: BTreeMap<usize, DeviceShares>,
    /// Shares found but never submitted because their job was gone by then (the miner's job
    /// book or the stratum client dropped them). Counted as stale, like cgminer does; the
    /// engine's own stale count is added to this.
    pub stale_unsent: u64,
    /// Pool protocol errors by kind (malformed lines, unknown methods, ...).
    pub protocol_errors: BTreeMap<String, u64>,
    /// The miner's share ledger, when mining.
    pub ledger: Option<crate::view::LedgerView>,
    /// Curtailment on a live power price, when asked for.
    pub curtail: Option<crate::view::CurtailView>,
}

/// One device's shares as the pools answered them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceShares {
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub difficulty_accepted: f64,
    pub difficulty_rejected: f64,
    pub best_share: f64,
    pub last_share_unix: Option<u64>,
}

/// Keeps the per-device history the windowed rates need. Feed it every snapshot (about once a
/// second); it keeps a little over a minute.
#[derive(Debug, Default)]
pub struct Tracker {
    /// (elapsed seconds, hashes per device)
    history: VecDeque<(f64, Vec<u64>)>,
}

/// Rate over the last `window` seconds of cumulative `(t, count)` points, or `None` with fewer
/// than two points.
fn window_rate(points: &[(f64, f64)], window: f64) -> Option<f64> {
    let &(t1, h1) = points.last()?;
    // The latest point at least `window` before the last; else the oldest.
    let &(t0, h0) = points.iter().rev().find(|(t, _)| t1 - t >= window).or_else(|| points.first())?;
    if t1 > t0 { Some((h1 - h0).max(0.0) / (t1 - t0)) } else { None }
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `stats` and build the view.
    pub fn view(&mut self, stats: &Stats, extras: &Extras) -> RunView {
        let per_dev: Vec<u64> = stats.devices.iter().map(|d| d.hashes).collect();
        if self.history.back().is_none_or(|(t, _)| stats.elapsed_s > *t) {
            self.history.push_back((stats.elapsed_s, per_dev));
        }
        while self.history.len() > 2 && stats.elapsed_s - self.history[1].0 > 65.0 {
            self.history.pop_front();
        }
        to_view(stats, extras, &self.history)
    }
}

/// Convert one snapshot without per-device history (device windows fall back to the average).
pub fn to_run_view(stats: &Stats, extras: &Extras) -> RunView {
    to_view(stats, extras, &VecDeque::new())
}

fn to_view(stats: &Stats, extras: &Extras, history: &VecDeque<(f64, Vec<u64>)>) -> RunView {
    // Rig rates from the engine's samples, plus the current totals as the newest point.
    let mut rig: Vec<(f64, f64)> = stats.samples.iter().map(|s| (s.t_s, s.hashes as f64)).collect();
    if rig.last().is_none_or(|(t, _)| stats.elapsed_s > *t) {
        rig.push((stats.elapsed_s, stats.hashes as f64));
    }
    let rig_rates = Rates {
        avg: stats.hashrate,
        s5: window_rate(&rig, 5.0).unwrap_or(stats.hashrate),
        m1: window_rate(&rig, 60.0).unwrap_or(stats.hashrate),
    };
    // Rate per sample interval, from the run's start (0 hashes at 0 s). A last interval much
    // shorter than the others (the engine samples once more when it stops) says little: drop it.
    let mut points: Vec<(f64, u64)> = vec![(0.0, 0)];
    points.extend(stats.samples.iter().filter(|s| s.t_s > 0.0).map(|s| (s.t_s, s.hashes)));
    let mut samples: Vec<Sample> = points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| Sample { t_s: w[1].0, hashrate: w[1].1.saturating_sub(w[0].1) as f64 / (w[1].0 - w[0].0) })
        .collect();
    if points.len() >= 4 {
        let n = points.len();
        let last = points[n - 1].0 - points[n - 2].0;
        let typical = points[n - 2].0 - points[n - 3].0;
        if last < 0.5 * typical {
            samples.pop();
        }
    }

    let mut ci_low = 0.0;
    let mut ci_high = 0.0;
    let mut any_ci = false;
    let devices: Vec<DeviceView> = stats
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let points: Vec<(f64, f64)> =
                history.iter().filter_map(|(t, v)| v.get(i).map(|&h| (*t, h as f64))).collect();
            let hashrate = Rates {
                avg: d.hashrate,
                s5: window_rate(&points, 5.0).unwrap_or(d.hashrate),
                m1: window_rate(&points, 60.0).unwrap_or(d.hashrate),
            };
            match d.hashrate_ci95 {
                Some([lo, hi]) => {
                    any_ci = true;
                    ci_low += lo;
                    ci_high += hi;
                }
                None => {
                    ci_low += d.hashrate;
                    ci_high += d.hashrate;
                }
            }
            // A chip chain's own telemetry counts valid nonces per chip and core; without it,
            // the engine's re-verification errors by origin are all there is.
            let chips = match d.health.as_ref().and_then(|h| h.chain()) {
                Some(chain) => chain_chips(chain),
                None => chips_from_errors(&d.hw_errors_by_origin),
            };
            let ds = extras.device_shares.get(&d.index).cloned().unwrap_or_default();
            DeviceView {
                id: d.index as u32,
                name: d.info.name.clone(),
                kind: d.info.kind,
                kernel: d.info.kernel.clone(),
                enabled: !d.failed && !d.paused,
                hashrate,
                nominal_hashrate: d.info.nominal_hashrate,
                estimated: matches!(d.info.hash_count, HashCount::Estimated { .. }),
                hashes: d.hashes as f64,
                valid_nonces: d.valid_nonces,
                hw_errors: d.hw_errors,
                temperatures: extras
                    .temperatures
                    .iter()
                    .filter(|(dev, _)| *dev == d.index)
                    .map(|(_, t)| t.clone())
                    .collect(),
                chips,
                accepted: ds.accepted,
                rejected: ds.rejected,
                stale: ds.stale,
                difficulty_accepted: ds.difficulty_accepted,
                difficulty_rejected: ds.difficulty_rejected,
                best_share: ds.best_share,
                last_share_unix: ds.last_share_unix,
            }
        })
        .collect();

    let j_per_th = extras
        .power
        .as_ref()
        .and_then(|p| hashrig_engine::j_per_th(p.energy_j.unwrap_or(p.watts * stats.elapsed_s), stats.hashes as f64));
    let mut shares = Shares { accepted: stats.accepted, rejected: stats.rejected, stale: stats.stale, ..Default::default() };
    if extras.pools.is_empty() && extras.mode == RunMode::Bench {
        // A bench has no pool to accept: shares found are counted as found.
        shares.accepted = stats.accepted.max(stats.shares);
    }
    if !extras.pools.is_empty() {
        // The pools' own answers, with reasons and difficulty, summed over pools.
        shares = Shares::default();
        for p in &extras.pools {
            shares.accepted += p.shares.accepted;
            shares.rejected += p.shares.rejected;
            shares.stale += p.shares.stale;
            shares.difficulty_accepted += p.shares.difficulty_accepted;
            shares.difficulty_rejected += p.shares.difficulty_rejected;
            shares.difficulty_stale += p.shares.difficulty_stale;
        }
        shares.reject_reasons =
            bound_reasons(extras.pools.iter().flat_map(|p| p.shares.reject_reasons.iter().map(|(r, n)| (r.as_str(), *n))));
        // Found but never sent: stale too (cgminer counts discarded stale work the same way).
        shares.stale += extras.stale_unsent + stats.stale;
    }
    RunView {
        mode: extras.mode,
        started_unix: extras.started_unix,
        elapsed_s: stats.elapsed_s,
        hashrate: rig_rates,
        hashrate_ci: any_ci.then_some(Interval { low: ci_low, high: ci_high }),
        hashes: stats.hashes as f64,
        shares,
        best_share: extras.best_share,
        blocks_found: stats.blocks,
        devices,
        pools: extras
            .pools
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.shares.reject_reasons = p.shares.bounded_reject_reasons();
                p
            })
            .collect(),
        power: extras.power.clone(),
        j_per_th,
        samples,
        economics: extras.economics.clone(),
        protocol_errors: extras.protocol_errors.clone(),
        ledger: extras.ledger.clone(),
        curtail: extras.curtail.clone(),
    }
}

/// Per-chip counts from the engine's hardware errors by origin (chip, core).
fn chips_from_errors(errors: &[hashrig_engine::OriginErrors]) -> Vec<ChipView> {
    let mut chips: Vec<ChipView> = Vec::new();
    for o in errors {
        let Some(chip) = o.chip else { continue };
        let idx = match chips.iter().position(|c| c.index == chip) {
            Some(p) => p,
            None => {
                chips.push(ChipView { index: chip, ..Default::default() });
                chips.len() - 1
            }
        };
        let c = &mut chips[idx];
        c.hw_errors += o.count;
        if let Some(core) = o.core {
            match c.cores.iter_mut().find(|x| x.index == core) {
                Some(x) => x.hw_errors += o.count,
                None => c.cores.push(CoreView { index: core, nonces: 0, hw_errors: o.count }),
            }
        }
    }
    chips.sort_by_key(|c| c.index);
    for c in &mut chips {
        c.cores.sort_by_key(|x| x.index);
    }
    chips
}

/// Per-chip and per-core counts from a chip chain's telemetry.
fn chain_chips(chain: &hashrig_engine::ChainSnapshot) -> Vec<ChipView> {
    chain
        .per_chip
        .iter()
        .map(|c| ChipView {
            index: c.index,
            nonces: c.nonces,
            hw_errors: c.hw_errors,
            est_hashrate: c.est_hashrate,
            temperature: None,
            cores: c.cores.iter().map(|k| CoreView { index: k.core, nonces: k.nonces, hw_errors: k.hw_errors }).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with_samples(points: &[(f64, u64)]) -> Stats {
        Stats {
            elapsed_s: points.last().map_or(0.0, |p| p.0),
            hashes: points.last().map_or(0, |p| p.1),
            hashrate: 0.0,
            shares: 0,
            blocks: 0,
            stale: 0,
            accepted: 0,
            rejected: 0,
            hw_errors: 0,
            unknown_candidates: 0,
            jobs: 0,
            epoch: 0,
            devices: Vec::new(),
            samples: points
                .iter()
                .map(|&(t_s, hashes)| hashrig_engine::Sample { t_s, hashes, shares: 0, hw_errors: 0 })
                .collect(),
        }
    }

    #[test]
    fn rate_series_starts_at_zero_and_drops_a_stub_last_interval() {
        // 100 H/s each second, then a 0.05 s stub when the engine stopped.
        let s = stats_with_samples(&[(1.0, 100), (2.0, 200), (3.0, 300), (3.05, 301)]);
        let v = to_run_view(&s, &Extras::default());
        let rates: Vec<(f64, f64)> = v.samples.iter().map(|x| (x.t_s, x.hashrate)).collect();
        assert_eq!(rates, vec![(1.0, 100.0), (2.0, 100.0), (3.0, 100.0)]);
    }

    #[test]
    fn window_rate_uses_the_last_window_of_cumulative_points() {
        // 100 H/s for 10 s, then 300 H/s for 10 s.
        let pts: Vec<(f64, f64)> = (0..=20)
            .map(|t| {
                let t = t as f64;
                (t, if t <= 10.0 { 100.0 * t } else { 1000.0 + 300.0 * (t - 10.0) })
            })
            .collect();
        assert_eq!(window_rate(&pts, 5.0), Some(300.0));
        // Less than a minute of history: the rate over all of it.
        assert_eq!(window_rate(&pts, 60.0), Some(4000.0 / 20.0));
        assert_eq!(window_rate(&pts[..1], 5.0), None);
    }
}

#[cfg(test)]
mod reject_reason_tests {
    use super::*;

    #[test]
    fn pools_with_endless_reject_reasons_give_a_bounded_view() {
        let mut pool = PoolView::default();
        for i in 0..10_000u64 {
            pool.shares.reject_reasons.insert(format!("\x1b]0;title\x07reason {i}"), 1);
        }
        let extras = Extras { mode: RunMode::Mine, pools: vec![pool.clone(), pool], ..Default::default() };
        let stats = Stats {
            elapsed_s: 1.0,
            hashes: 0,
            hashrate: 0.0,
            shares: 0,
            blocks: 0,
            stale: 0,
            accepted: 0,
            rejected: 0,
            hw_errors: 0,
            unknown_candidates: 0,
            jobs: 0,
            epoch: 0,
            devices: Vec::new(),
            samples: Vec::new(),
        };
        let v = to_run_view(&stats, &extras);
        for shares in std::iter::once(&v.shares).chain(v.pools.iter().map(|p| &p.shares)) {
            assert!(shares.reject_reasons.len() <= 17, "{} reasons", shares.reject_reasons.len());
            for r in shares.reject_reasons.keys() {
                assert!(!r.chars().any(char::is_control), "{r:?}");
                assert!(!r.contains("title"), "the escape sequence's text goes too: {r:?}");
            }
        }
        assert_eq!(v.shares.reject_reasons.values().sum::<u64>(), 20_000);
        assert_eq!(v.pools[0].shares.reject_reasons.values().sum::<u64>(), 10_000);
    }
}

