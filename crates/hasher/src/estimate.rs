//! Hashrate estimated from a count of returned nonces: each nonce at unit difficulty `d` stands
//! for `d * 2^32` hashes, and the count is Poisson, so the rate comes with Garwood's exact 95 %
//! interval. Used by the ASIC driver (per chain, chip and core) and by the engine (per device
//! whose hash count is [`crate::HashCount::Estimated`]).

use serde::Serialize;

/// A hashrate estimated from a Poisson count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Hashes per second.
    pub rate: f64,
    /// 95 % interval [low, high], hashes per second.
    pub ci95: [f64; 2],
    pub nonces: u64,
    pub seconds: f64,
}

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The 95 % interval of a Poisson mean given `n` events (Garwood's exact interval: the means
/// for which seeing `n` or more / `n` or fewer has probability 2.5 %). Solved by bisection on
/// the Poisson CDF below 500 events, Wilson-Hilferty's chi-square approximation above (where it
/// is good to far better than the interval's width).
pub fn poisson_ci95(n: u64) -> [f64; 2] {
    if n >= 500 {
        let n = n as f64;
        let lower = n * (1.0 - 1.0 / (9.0 * n) - Z95 / (3.0 * n.sqrt())).powi(3);
        let m = n + 1.0;
        let upper = m * (1.0 - 1.0 / (9.0 * m) + Z95 / (3.0 * m.sqrt())).powi(3);
        return [lower, upper];
    }
    // P(X <= k; mu), summed in log space.
    let cdf = |k: u64, mu: f64| -> f64 {
        let mut term = (-mu).exp();
        let mut sum = term;
        for i in 1..=k {
            term *= mu / i as f64;
            sum += term;
        }
        sum.min(1.0)
    };
    // Find mu with cdf(k, mu) = p; cdf falls as mu grows.
    let solve = |k: u64, p: f64| -> f64 {
        let (mut lo, mut hi) = (0.0f64, 10.0 + 3.0 * k as f64);
        for _ in 0..80 {
            let mid = 0.5 * (lo + hi);
            if cdf(k, mid) > p { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    };
    let lower = if n == 0 { 0.0 } else { solve(n - 1, 0.975) };
    [lower, solve(n, 0.025)]
}

/// Rate and interval from `n` nonces at `difficulty` over `seconds`.
pub fn estimate(n: u64, difficulty: f64, seconds: f64) -> Estimate {
    let per = difficulty * 4_294_967_296.0 / seconds.max(1e-9);
    let [lo, hi] = poisson_ci95(n);
    Estimate { rate: n as f64 * per, ci95: [lo * per, hi * per], nonces: n, seconds }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_interval_matches_published_garwood_values() {
        // Garwood 95 % limits (e.g. Ulm 1990 table): n=0 -> [0, 3.689], n=1 -> [0.0253, 5.572],
        // n=10 -> [4.795, 18.39], n=100 -> [81.36, 121.6].
        let cases = [(0u64, 0.0, 3.689), (1, 0.0253, 5.572), (10, 4.795, 18.39), (100, 81.36, 121.6)];
        for (n, lo, hi) in cases {
            let [l, h] = poisson_ci95(n);
            assert!((l - lo).abs() <= 0.02 * lo.max(0.05), "n={n}: low {l} vs {lo}");
            assert!((h - hi).abs() <= 0.01 * hi, "n={n}: high {h} vs {hi}");
        }
    }

    #[test]
    fn estimate_scales_with_ticket_difficulty() {
        let e = estimate(100, 256.0, 10.0);
        assert!((e.rate - 100.0 * 256.0 * 4_294_967_296.0 / 10.0).abs() < 1.0);
        assert!(e.ci95[0] < e.rate && e.rate < e.ci95[1]);
    }
}

/// Joules per terahash: watts over hashes per second, or joules over hashes (the same ratio).
/// The one place the unit is worked out. None when there is no rate or no energy to divide
/// (a zero-watt reading is a broken meter, not a free rig), or an input is not finite.
pub fn j_per_th(watts_or_joules: f64, hashrate_or_hashes: f64) -> Option<f64> {
    let ok = |x: f64| x.is_finite() && x > 0.0;
    (ok(watts_or_joules) && ok(hashrate_or_hashes)).then(|| watts_or_joules / (hashrate_or_hashes / 1e12))
}

#[cfg(test)]
mod j_per_th_tests {
    use super::j_per_th;

    #[test]
    fn j_per_th_is_watts_over_terahashes_per_second_and_none_without_a_rate_or_energy() {
        // An S21-class figure: 3 500 W at 200 TH/s is 17.5 J/TH.
        assert_eq!(j_per_th(3500.0, 200e12), Some(17.5));
        // Joules over hashes is the same ratio: 10 s of the same rig.
        assert_eq!(j_per_th(35_000.0, 2000e12), Some(17.5));
        assert_eq!(j_per_th(100.0, 0.0), None);
        assert_eq!(j_per_th(0.0, 1e12), None);
        assert_eq!(j_per_th(f64::NAN, 1e12), None);
        assert_eq!(j_per_th(100.0, f64::INFINITY), None);
    }
}
