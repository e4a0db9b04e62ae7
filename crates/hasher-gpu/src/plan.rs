//! Sizing the work: how many nonces a dispatch takes, how a unit splits into dispatches, and
//! which versions a nonce carries.

use std::time::Duration;

use crate::kernel::{MAX_VERSIONS, RESULT_CAP};

/// Dispatch limits: the shader's offsets are u32, and a dimension holds 65,535 workgroups.
pub(crate) const MAX_DISPATCH_NONCES: u64 = 1 << 31;
pub(crate) const MAX_WORKGROUPS: u64 = 65_535;

/// What sizes a dispatch: hashes per second, the time one should take, the target's top word,
/// versions per nonce, nonces per workgroup, workgroups per wave, and the result buffer's fill.
pub(crate) struct Sizing {
    pub rate: f64,
    pub time: Duration,
    pub top: u32,
    pub versions: usize,
    pub granule: u64,
    pub wave: u64,
    pub fill: f64,
}

/// The most nonces one dispatch may take: ~`time` in whole waves, and few enough that the
/// expected top-word survivors stay well inside the result buffer. Returns (target, quantum): the
/// quantum is one wave's nonces, or one workgroup's when the result limit is below a wave.
pub(crate) fn dispatch_target(s: &Sizing) -> (u64, u64) {
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
pub(crate) fn split(count: u64, target: u64, quantum: u64) -> Vec<u64> {
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
pub(crate) fn rolled_versions(version: u32, mask: u32, max: usize) -> Vec<u32> {
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
