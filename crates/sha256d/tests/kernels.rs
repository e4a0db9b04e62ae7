//! Every kernel this CPU can run, each forced in turn, against the `sha2` crate.

mod common;

use common::{brute_force, scan, sha2_digest, target_with_top};
use hashrig_sha256d::{Kernel, NONCE_SPACE, ScanJob, Target};
use proptest::prelude::*;

fn kernels() -> Vec<Kernel> {
    let k = Kernel::available();
    assert!(k.contains(&Kernel::Scalar), "the scalar kernel runs everywhere");
    k
}

/// The largest lane count among the available kernels: counts up to twice it run every tail.
fn max_lanes() -> u32 {
    kernels().iter().map(|k| k.lanes()).max().unwrap_or(1)
}

/// A header with every byte distinct from its neighbour's pattern, fixed for the exhaustive tests.
fn fixed_header(seed: u8) -> [u8; 80] {
    let mut h = [0u8; 80];
    for (i, b) in h.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(seed);
    }
    h
}

#[test]
fn simd_kernels_are_detected_on_x86_64_with_the_features() {
    // Guards against a detection bug that would silently test only the scalar kernel. A
    // HASHRIG_CPU_DISABLE in the environment takes features away on purpose.
    #[cfg(target_arch = "x86_64")]
    {
        let masked = hashrig_sha256d::disabled_cpu_features().expect("HASHRIG_CPU_DISABLE parses");
        let has = |name: &str, f: hashrig_sha256d::CpuFeature| {
            let hw = match name {
                "sha" => std::is_x86_feature_detected!("sha"),
                "avx" => std::is_x86_feature_detected!("avx"),
                "avx2" => std::is_x86_feature_detected!("avx2"),
                "avx512f" => std::is_x86_feature_detected!("avx512f"),
                "avx512vl" => std::is_x86_feature_detected!("avx512vl"),
                _ => unreachable!("only the features named below"),
            };
            hw && !masked.contains(&f)
        };
        use hashrig_sha256d::CpuFeature as F;
        let sha = has("sha", F::Sha) && !masked.contains(&F::Ssse3) && !masked.contains(&F::Sse41);
        let avx = has("avx", F::Avx);
        assert_eq!(Kernel::ShaNiSse.is_available(), sha);
        assert_eq!(Kernel::ShaNi.is_available(), sha && avx);
        let avx2 = avx && has("avx2", F::Avx2);
        assert_eq!(Kernel::Avx2.is_available(), avx2);
        let avx512f = avx2 && has("avx512f", F::Avx512f);
        assert_eq!(Kernel::ShaNiAvx512.is_available(), sha && avx512f && has("avx512vl", F::Avx512vl));
        if masked.is_empty() {
            assert_eq!(Kernel::ShaNiSse.is_available(), std::is_x86_feature_detected!("sha"));
        }
    }
    // The best kernel is the first available one, or `avx512` when it won the race against the
    // first (a SHA-NI kernel).
    let first = Kernel::available()[0];
    let best = Kernel::best();
    assert!(best == first || (best == Kernel::Avx512 && first.name().starts_with("sha-ni")), "best {best}, first {first}");
}

#[test]
fn kernels_this_machine_cannot_run_are_named_and_required_ones_must_run() {
    // Every property and real-block test of this crate runs each available kernel; the ones the
    // CPU lacks are named here so a green run on a machine without them is not mistaken for
    // coverage. `HASHRIG_REQUIRE_KERNELS` (comma-separated names) turns a missing one into a
    // failure: CI sets it where it knows the CPU (the aarch64 run under qemu `-cpu max`).
    for k in Kernel::ALL.into_iter().filter(|k| !k.is_available()) {
        let needs = k.needs().iter().map(|f| f.name()).collect::<Vec<_>>().join(", ");
        eprintln!("SKIPPED: kernel `{k}` is NOT tested here: it needs {needs}, which this CPU lacks or HASHRIG_CPU_DISABLE masks");
    }
    let required = std::env::var("HASHRIG_REQUIRE_KERNELS").unwrap_or_default();
    for name in required.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let k: Kernel = name.parse().expect("HASHRIG_REQUIRE_KERNELS names known kernels");
        assert!(k.is_available(), "HASHRIG_REQUIRE_KERNELS requires kernel `{k}`, which this machine cannot run");
    }
}

#[test]
fn every_count_up_to_twice_the_lanes_reports_every_nonce_at_the_max_target() {
    // At Target::MAX every nonce qualifies, so each lane and each tail path must emit its nonce.
    let header = fixed_header(1);
    for k in kernels() {
        for count in 0..=u64::from(2 * max_lanes() + 1) {
            let start = 1000;
            let found = scan(k, &header, start, count, &Target::MAX);
            let want: Vec<u32> = (0..count).map(|i| start + i as u32).collect();
            assert_eq!(found, want, "kernel {k}, count {count}");
        }
    }
}

#[test]
fn every_count_up_to_twice_the_lanes_matches_sha2_at_a_one_in_four_target() {
    let header = fixed_header(2);
    let target = target_with_top(0x3fff_ffff);
    for k in kernels() {
        for count in 0..=u64::from(2 * max_lanes() + 1) {
            for start in [0u32, 7, 123_456] {
                let want = brute_force(&header, start, count, &target);
                assert_eq!(scan(k, &header, start, count, &target), want, "kernel {k}, start {start}, count {count}");
            }
        }
    }
}

#[test]
fn ranges_ending_at_the_last_nonce_match_sha2() {
    let header = fixed_header(3);
    let target = target_with_top(0x7fff_ffff);
    for k in kernels() {
        for count in 0..=u64::from(2 * max_lanes() + 1) {
            let start = (NONCE_SPACE - count) as u32;
            let want = brute_force(&header, start, count, &target);
            let found = scan(k, &header, start, count, &target);
            assert_eq!(found, want, "kernel {k}, count {count} ending at 2^32 - 1");
            if count > 0 {
                let all = scan(k, &header, start, count, &Target::MAX);
                assert_eq!(all.last().copied(), Some(u32::MAX), "kernel {k} hashes nonce 2^32 - 1");
                assert_eq!(all.len() as u64, count);
            }
        }
    }
}

#[test]
fn easy_target_finds_the_same_set_as_scalar_and_sha2() {
    // Top word 0x0fffffff: about one nonce in 16 qualifies, so the candidate path runs often.
    let header = fixed_header(4);
    let target = target_with_top(0x0fff_ffff);
    let (start, count) = (0x1234_5678, 3001);
    let want = brute_force(&header, start, count, &target);
    assert!(want.len() > 100, "the easy target is met about once in 16 nonces, got {}", want.len());
    let scalar = scan(Kernel::Scalar, &header, start, count, &target);
    assert_eq!(scalar, want);
    for k in kernels() {
        assert_eq!(scan(k, &header, start, count, &target), scalar, "kernel {k}");
    }
}

#[test]
fn a_hash_equal_to_the_target_meets_it_and_one_above_does_not() {
    // The early reject only looks at the top word; the full comparison must decide the rest.
    let header = fixed_header(5);
    let nonce = 77_777u32;
    let digest = sha2_digest(&header, nonce);
    let exact = Target::from_le_bytes(digest);
    let mut below = digest;
    // digest - 1 as a little-endian integer (the digest of this header is not zero).
    for b in below.iter_mut() {
        let (v, borrow) = b.overflowing_sub(1);
        *b = v;
        if !borrow {
            break;
        }
    }
    let below = Target::from_le_bytes(below);
    for k in kernels() {
        let start = nonce - 5;
        let hits = scan(k, &header, start, 11, &exact);
        assert!(hits.contains(&nonce), "kernel {k}: a hash equal to the target meets it");
        assert_eq!(hits, common::brute_force(&header, start, 11, &exact), "kernel {k}");
        let hits = scan(k, &header, start, 11, &below);
        assert!(!hits.contains(&nonce), "kernel {k}: a hash one above the target does not");
        assert_eq!(hits, common::brute_force(&header, start, 11, &below), "kernel {k}");
    }
}

#[test]
fn digest_of_a_job_matches_sha2() {
    let header = fixed_header(6);
    let job = ScanJob::new(&header);
    for nonce in [0u32, 1, 0x7c2b_ac1d, u32::MAX] {
        assert_eq!(job.digest(nonce), sha2_digest(&header, nonce));
    }
}

fn arb_target() -> impl Strategy<Value = Target> {
    // Random bytes with 0..=4 leading zero bits in the top byte: hit rates from 1 in 32 to
    // everything, so both the reject and the confirm paths run; sometimes the top word is an
    // exact hash's (see below), so ties on the top word reach the full comparison.
    (any::<[u8; 32]>(), 0u32..=4).prop_map(|(mut b, shift)| {
        b[31] >>= shift;
        Target::from_le_bytes(b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_kernel_matches_sha2_on_random_headers_and_targets(
        header in any::<[u8; 80]>(),
        start in any::<u32>(),
        count in 0u64..=64,
        target in arb_target(),
        at_top in any::<bool>(),
    ) {
        let start = if at_top { (NONCE_SPACE - count) as u32 } else { start.min((NONCE_SPACE - count) as u32) };
        let want = brute_force(&header, start, count, &target);
        for k in kernels() {
            prop_assert_eq!(&scan(k, &header, start, count, &target), &want, "kernel {}", k);
        }
    }

    #[test]
    fn every_kernel_separates_a_top_word_tie_by_the_lower_words(
        header in any::<[u8; 80]>(),
        start in 0u32..1_000_000,
        pick in 0u64..24,
        lower in any::<[u8; 28]>(),
    ) {
        // The target's top word equals one hash's top word; its lower 224 bits are random, so
        // that hash meets the target or not depending on the lower words only.
        let nonce = start + pick as u32;
        let digest = sha2_digest(&header, nonce);
        let mut t = [0u8; 32];
        t[..28].copy_from_slice(&lower);
        t[28..].copy_from_slice(&digest[28..]);
        let target = Target::from_le_bytes(t);
        let want = brute_force(&header, start, 24, &target);
        for k in kernels() {
            prop_assert_eq!(&scan(k, &header, start, 24, &target), &want, "kernel {}", k);
        }
    }
}
