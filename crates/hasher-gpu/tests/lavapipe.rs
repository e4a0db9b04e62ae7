//! The GPU backend against the conformance kit and the CPU reference, on whatever adapter wgpu
//! finds (in CI: Mesa's lavapipe, a software Vulkan driver; `.ci/run` installs it).
//!
//! Without any adapter every test prints "SKIPPED: no GPU adapter" and passes, unless
//! `HASHRIG_REQUIRE_GPU=1` (CI sets it), where a missing adapter fails the test.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};

use hashrig_hasher::testkit::{self, KitConfig, easy_target, synthetic_header};
use hashrig_hasher::{Control, Hasher, NonceRange, Sink, Target, WorkUnit};
use hashrig_hasher_gpu::{AdapterSelector, Error, GpuHasher, Options, open_device};
use hashrig_sha256d::{ScanJob, Scanner};

fn require_gpu() -> bool {
    std::env::var("HASHRIG_REQUIRE_GPU").is_ok_and(|v| v.trim() == "1")
}

fn open(opts: impl FnOnce(&mut Options)) -> Option<GpuHasher> {
    match open_device(&AdapterSelector::Best) {
        Ok(dev) => {
            let mut o = Options::for_adapter(&dev.adapter);
            opts(&mut o);
            Some(
                GpuHasher::with_options(dev, &o)
                    .expect("an adapter was found, so the hasher must open"),
            )
        }
        Err(Error::NoAdapter) if !require_gpu() => {
            // Straight to stderr, not eprintln!: the test harness would swallow that for a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no GPU adapter (install mesa-vulkan-drivers for lavapipe; HASHRIG_REQUIRE_GPU=1 makes this a failure)"
            );
            None
        }
        Err(e) => {
            panic!("no usable GPU adapter and HASHRIG_REQUIRE_GPU=1 (or the adapter failed): {e}")
        }
    }
}

/// One hasher for the whole test binary: making the pipeline costs a second or so on lavapipe.
fn shared() -> Option<MutexGuard<'static, GpuHasher>> {
    static H: OnceLock<Option<Mutex<GpuHasher>>> = OnceLock::new();
    let h = H.get_or_init(|| open(|_| ()).map(Mutex::new)).as_ref()?;
    Some(h.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn kit() -> KitConfig {
    KitConfig::fast()
}

#[test]
fn finds_the_real_block_nonces() {
    let Some(mut h) = shared() else { return };
    testkit::finds_real_block_nonces(&mut *h, &kit()).unwrap();
}

#[test]
fn finds_the_reference_set_under_an_easy_target() {
    let Some(mut h) = shared() else { return };
    testkit::finds_reference_set_under_easy_target(&mut *h, &kit()).unwrap();
}

#[test]
fn honours_range_ends() {
    let Some(mut h) = shared() else { return };
    testkit::honours_range_ends(&mut *h, &kit()).unwrap();
}

#[test]
fn counts_hashes_exactly() {
    let Some(mut h) = shared() else { return };
    testkit::counts_hashes_correctly(&mut *h, &kit()).unwrap();
}

#[test]
fn stops_after_an_epoch_bump() {
    let Some(mut h) = shared() else { return };
    testkit::stops_after_epoch_bump(&mut *h, &kit()).unwrap();
}

fn sweep(
    h: &mut dyn Hasher,
    header: [u8; 80],
    range: NonceRange,
    target: Target,
) -> (BTreeSet<u32>, u64, u64) {
    let ctl = Control::new();
    let (sink, rx) = Sink::channel();
    let unit = WorkUnit {
        id: 1,
        epoch: ctl.epoch(),
        header,
        range,
        target,
        version_mask: 0,
    };
    let out = h.hash(&unit, &ctl, &sink).expect("hash");
    assert!(out.completed);
    drop(sink);
    let found: Vec<u32> = rx.try_iter().map(|c| c.nonce).collect();
    let set: BTreeSet<u32> = found.iter().copied().collect();
    assert_eq!(set.len(), found.len(), "a nonce was reported twice");
    (set, out.hashes, ctl.hashes())
}

fn cpu_reference(header: &[u8; 80], range: NonceRange, target: &Target) -> BTreeSet<u32> {
    let mut found = Vec::new();
    Scanner::best().scan(&ScanJob::new(header), range, target, &mut found);
    found.into_iter().collect()
}

/// Several double-buffered dispatches in one unit find exactly what the CPU kernel finds.
#[test]
fn many_dispatches_find_the_cpu_reference_set() {
    let Some(mut h) = shared() else { return };
    let header = synthetic_header(11);
    let target = easy_target(1 << 12);
    let range = NonceRange::new(0x7fff_0001, (1 << 22) + 5).unwrap();
    let (got, hashes, counted) = sweep(&mut *h, header, range, target);
    let want = cpu_reference(&header, range, &target);
    assert!(
        want.len() > 500,
        "the reference found only {} nonces",
        want.len()
    );
    assert_eq!(got, want);
    assert_eq!(hashes, range.count());
    assert_eq!(counted, range.count());
    assert_eq!(h.hardware_errors(), 0);
    assert_eq!(
        h.overflows(),
        0,
        "dispatches are sized to keep candidates inside the buffer"
    );
}

/// When more nonces pass than the result buffer holds, the dispatch is re-scanned: nothing is
/// dropped, nothing doubled.
#[test]
fn result_buffer_overflow_loses_no_candidate() {
    // Dispatches sized to expect 8x more survivors than the buffer holds.
    let Some(mut h) = open(|o| o.result_fill = 8.0) else {
        return;
    };
    let header = synthetic_header(12);
    let range = NonceRange::new(5, 100_003).unwrap();
    let (got, hashes, _) = sweep(&mut h, header, range, Target::MAX);
    assert_eq!(got.len() as u64, range.count());
    assert_eq!(got.first().copied(), Some(5));
    assert_eq!(got.last().copied(), Some(100_007));
    assert_eq!(hashes, range.count());
    assert!(
        h.overflows() > 0,
        "the test meant to overflow the result buffer and did not"
    );
    // An easy target with overflowing dispatches still matches the CPU exactly.
    let target = easy_target(4);
    let range = NonceRange::new(u32::MAX - 70_000, 70_001).unwrap();
    let (got, _, _) = sweep(&mut h, header, range, target);
    assert_eq!(got, cpu_reference(&header, range, &target));
}

/// The genesis block's nonce at the real difficulty, through a window several dispatches wide.
#[test]
fn finds_the_genesis_nonce_in_a_wide_window() {
    let Some(mut h) = shared() else { return };
    let block = testkit::REAL_BLOCKS[0];
    let range = NonceRange::new(block.nonce - (1 << 20), 1 << 21).unwrap();
    let (got, _, _) = sweep(&mut *h, block.header(), range, block.target());
    assert_eq!(got, BTreeSet::from([block.nonce]));
}

/// `--backend gpu:0,0` must not open one adapter as two hashers; `gpu:all` opens at least one.
#[test]
fn open_hashers_opens_each_named_adapter_once() {
    if hashrig_hasher_gpu::list_adapters().is_empty() {
        // open() says SKIPPED or fails under HASHRIG_REQUIRE_GPU=1.
        assert!(open(|_| ()).is_none());
        return;
    }
    let twice = hashrig_hasher_gpu::open_hashers(&"0,0".parse().unwrap()).expect("adapter 0 exists");
    assert_eq!(twice.len(), 1);
    let all = hashrig_hasher_gpu::open_hashers(&"all".parse().unwrap()).expect("there is an adapter");
    assert!(!all.is_empty());
    assert!(matches!(
        hashrig_hasher_gpu::open_hashers(&"999".parse().unwrap()),
        Err(Error::AdapterNotFound { .. })
    ));
}

/// The start-up search tries each workgroup size, then each nonces-per-invocation count at the
/// best size, keeps the fastest, times every setting over >= 100 ms (median of 3), and the tuned
/// hasher is still correct.
#[test]
fn tuning_keeps_the_fastest_setting_it_tried() {
    let Some(mut h) = open(|o| {
        o.workgroups = vec![32, 64];
        o.nonces_per_invocation = vec![8, 32];
    }) else {
        return;
    };
    let t = h.tuning().clone();
    assert_eq!(t.tried.len(), 3, "{t:?}");
    let best = t.tried.iter().map(|x| x.rate).fold(0.0, f64::max);
    assert_eq!(t.rate, best, "{t:?}");
    assert!(
        t.tried
            .iter()
            .any(|x| (x.workgroup, x.nonces_per_invocation, x.rate)
                == (t.workgroup, t.nonces_per_invocation, t.rate)),
        "{t:?}"
    );
    for x in &t.tried {
        assert_eq!(x.samples.len(), 3, "{x:?}");
        assert!(
            x.samples.iter().all(|s| s.1 >= 0.1),
            "a sample under 100 ms: {x:?}"
        );
        let mut rates: Vec<f64> = x.samples.iter().map(|s| s.0 as f64 / s.1).collect();
        rates.sort_by(f64::total_cmp);
        assert_eq!(x.rate, rates[1], "the rate is the median: {x:?}");
    }
    let block = testkit::REAL_BLOCKS[1];
    let range = NonceRange::new(block.nonce - 40_000, 80_001).unwrap();
    let (got, _, _) = sweep(&mut h, block.header(), range, block.target());
    assert_eq!(got, BTreeSet::from([block.nonce]));
}

/// The wave is measured at start (time against workgroup count) and a unit is split evenly into
/// dispatches of whole waves, with no tiny remainder.
#[test]
fn units_are_split_evenly_into_dispatches_of_whole_waves() {
    let Some(mut h) = open(|o| o.dispatch_time = std::time::Duration::from_millis(20)) else {
        return;
    };
    let t = h.tuning().clone();
    assert!(t.wave >= 1, "{t:?}");
    assert!(t.wave_curve.len() >= 2, "{t:?}");
    assert!(t.wave_curve.iter().any(|c| c.0 == t.wave), "{t:?}");
    assert!(
        t.wave_curve.windows(2).all(|w| w[1].0 == 2 * w[0].0),
        "{t:?}"
    );
    let header = synthetic_header(13);
    let range = NonceRange::new(77, (1 << 21) + 12_345).unwrap();
    let (got, hashes, _) = sweep(&mut h, header, range, easy_target(1 << 14));
    assert_eq!(got, cpu_reference(&header, range, &easy_target(1 << 14)));
    assert_eq!(hashes, range.count());
    let split = h.last_split().to_vec();
    assert!(
        split.len() > 1,
        "the unit should take several dispatches: {split:?}"
    );
    assert_eq!(split.iter().sum::<u64>(), range.count());
    let (min, max) = (split.iter().min().unwrap(), split.iter().max().unwrap());
    assert!(min * 2 >= *max, "a tiny remainder dispatch: {split:?}");
    let wave_nonces =
        u64::from(t.wave) * u64::from(t.workgroup) * u64::from(t.nonces_per_invocation);
    let whole = split[..split.len() - 1]
        .iter()
        .all(|n| n % wave_nonces == 0);
    let even = max - min <= 1;
    assert!(
        whole || even,
        "neither whole waves nor even parts: {split:?} (wave {wave_nonces} nonces)"
    );
}

/// Real mainnet headers whose version already carries rolled bits (BIP 320), with the mask pools
/// grant (bits 13-28).
const ROLLED_MASK: u32 = 0x1fff_e000;
/// (header, display-order hash): block 785,530 (Foundry USA, 2023-04-15), and a mainnet block
/// with nbits 0x172c4e11 (2022); both at version 0x3fffe000.
const ROLLED_BLOCKS: [(&str, &str); 2] = [
    (
        "00e0ff3f5ffe3b0d9247dc437e18edc19252e4517cee941752d501000000000000000000206bde3a10826e2acb2f28fba70463601c789293d0c9c4348d7a0d06711e97c0bcb13a64b2e0051743f09a40",
        "000000000000000000039a294df2039d5fc759f5fd4dde06f09a17efc29a01e4",
    ),
    (
        "00e0ff3fd877ad23af1d0d3e0eb6a700d85b692975dacd36e47b1b00000000000000000095ba61df5961d7fa0a45cd7467e11f20932c7a0b74c59318e86581c6b509554876f6c65c114e2c17e42524d3",
        "00000000000000000000cb86b70db7b77ab82effbc61523480df5ada02384d99",
    ),
];

fn rolled_block(i: usize) -> ([u8; 80], u32, u32, Target) {
    use sha2::Digest;
    let header: [u8; 80] = hex::decode(ROLLED_BLOCKS[i].0).unwrap().try_into().unwrap();
    let mut hash: [u8; 32] = sha2::Sha256::digest(sha2::Sha256::digest(header)).into();
    hash.reverse();
    assert_eq!(
        hex::encode(hash),
        ROLLED_BLOCKS[i].1,
        "the test data is the real block"
    );
    let version = u32::from_le_bytes(header[0..4].try_into().unwrap());
    let nonce = u32::from_le_bytes(header[76..80].try_into().unwrap());
    let nbits = u32::from_le_bytes(header[72..76].try_into().unwrap());
    (header, version, nonce, hashrig_work_free_target(nbits))
}

/// The target nbits encodes (the compact form: 3 mantissa bytes, an exponent in bytes).
fn hashrig_work_free_target(nbits: u32) -> Target {
    let exp = (nbits >> 24) as usize;
    let mant = nbits & 0x00ff_ffff;
    let mut le = [0u8; 32];
    for (k, b) in mant.to_le_bytes()[..3].iter().enumerate() {
        le[exp - 3 + k] = *b;
    }
    Target::from_le_bytes(le)
}

/// Every (version, nonce) pair in `range` whose sha256d meets `target`, over `versions`, by the
/// CPU core; each re-checked with the sha2 crate.
fn reference_pairs(
    header: &[u8; 80],
    versions: &[u32],
    range: NonceRange,
    target: &Target,
) -> BTreeSet<(u32, u32)> {
    use sha2::Digest;
    let mut out = BTreeSet::new();
    for &v in versions {
        let mut h = *header;
        h[0..4].copy_from_slice(&v.to_le_bytes());
        for n in cpu_reference(&h, range, target) {
            h[76..80].copy_from_slice(&n.to_le_bytes());
            let d: [u8; 32] = sha2::Sha256::digest(sha2::Sha256::digest(h)).into();
            assert!(
                target.is_met_by(&d),
                "the CPU core and sha2 disagree on {v:#x}/{n:#x}"
            );
            out.insert((v, n));
        }
    }
    out
}

fn sweep_pairs(
    h: &mut dyn Hasher,
    header: [u8; 80],
    mask: u32,
    range: NonceRange,
    target: Target,
) -> (BTreeSet<(u32, u32)>, u64) {
    let ctl = Control::new();
    let (sink, rx) = Sink::channel();
    let unit = WorkUnit {
        id: 1,
        epoch: ctl.epoch(),
        header,
        range,
        target,
        version_mask: mask,
    };
    let out = h.hash(&unit, &ctl, &sink).expect("hash");
    assert!(out.completed);
    assert_eq!(ctl.hashes(), out.hashes);
    drop(sink);
    let found: Vec<(u32, u32)> = rx.try_iter().map(|c| (c.version, c.nonce)).collect();
    let set: BTreeSet<(u32, u32)> = found.iter().copied().collect();
    assert_eq!(set.len(), found.len(), "a pair was reported twice");
    (set, out.hashes)
}

/// AsicBoost: with a version mask the GPU hashes 4 versions per nonce (sharing block 2's
/// schedule) and finds exactly the (version, nonce) pairs the reference finds, on real headers
/// with their real mask: every pair under an easy target, and at the real target the real block,
/// reached by rolling from another version.
#[test]
fn asicboost_finds_exactly_the_reference_pairs_on_real_headers() {
    let Some(mut h) = shared() else { return };
    assert!(h.info().version_rolling);
    for i in 0..ROLLED_BLOCKS.len() {
        let (header, version, nonce, target) = rolled_block(i);
        assert_eq!(
            version & ROLLED_MASK,
            0x1fff_e000,
            "the real version has rolled bits"
        );
        // Start from a version two mask bits away: the fourth rolled version is the real one.
        let mut unit_header = header;
        unit_header[0..4].copy_from_slice(&(version ^ 0x6000).to_le_bytes());
        let range = NonceRange::new(nonce - (1 << 18), 1 << 19).unwrap();
        let (got, hashes) = sweep_pairs(&mut *h, unit_header, ROLLED_MASK, range, target);
        assert_eq!(got, BTreeSet::from([(version, nonce)]), "block {i}");
        assert_eq!(hashes, 4 * range.count(), "four versions per nonce");
        // An easy target: many pairs, all four versions, exactly the reference's.
        let easy = easy_target(1 << 10);
        let range = NonceRange::new(nonce.wrapping_sub(70_000), 150_001).unwrap();
        let versions = [
            version,
            version ^ 0x2000,
            version ^ 0x4000,
            version ^ 0x6000,
        ];
        let want = reference_pairs(&header, &versions, range, &easy);
        assert!(
            want.len() > 300,
            "the reference found only {} pairs",
            want.len()
        );
        for v in versions {
            assert!(want.iter().any(|p| p.0 == v), "no pair with version {v:#x}");
        }
        let (got, _) = sweep_pairs(&mut *h, header, ROLLED_MASK, range, easy);
        assert_eq!(got, want, "block {i}");
        assert_eq!(h.hardware_errors(), 0);
    }
}

/// Two versions per nonce (entry point main2) where the hasher is told to roll at most two.
#[test]
fn asicboost_with_two_versions_matches_the_reference() {
    let Some(mut h) = open(|o| o.max_versions = 2) else {
        return;
    };
    let (header, version, nonce, _) = rolled_block(0);
    let easy = easy_target(1 << 9);
    let range = NonceRange::new(nonce - 30_000, 60_000).unwrap();
    let want = reference_pairs(&header, &[version, version ^ 0x2000], range, &easy);
    let (got, hashes) = sweep_pairs(&mut h, header, ROLLED_MASK, range, easy);
    assert_eq!(got, want);
    assert_eq!(hashes, 2 * range.count());
}

fn one_unit(header: [u8; 80], ctl: &Control) -> WorkUnit {
    WorkUnit {
        id: 1,
        epoch: ctl.epoch(),
        header,
        range: NonceRange::new(0, 1 << 20).unwrap(),
        target: easy_target(1 << 8),
        version_mask: 0,
    }
}

/// A device that goes away (here: destroyed under the hasher, as a driver reset would) ends the
/// hasher with an error naming the GPU; no panic, and every later call says the same.
#[test]
fn a_lost_device_ends_the_hasher_with_an_error_not_a_panic() {
    let Some(mut h) = open(|_| ()) else { return };
    let device = h.device().clone();
    let ctl = Control::new();
    let (sink, _rx) = Sink::channel();
    let unit = one_unit(synthetic_header(21), &ctl);
    h.hash(&unit, &ctl, &sink).expect("a healthy device hashes");
    device.destroy();
    let e = h
        .hash(&unit, &ctl, &sink)
        .expect_err("a destroyed device cannot hash");
    let text = error_chain(&e);
    assert!(text.contains(&h.adapter().name), "{text}");
    assert!(text.contains("out of this run"), "{text}");
    let again = h
        .hash(&unit, &ctl, &sink)
        .expect_err("a failed hasher stays failed");
    assert!(error_chain(&again).contains("out of this run"));
}

/// An error wgpu reports outside any error scope (its default handler panics) ends the hasher
/// with that error instead.
#[test]
fn an_uncaptured_device_error_ends_the_hasher_with_an_error_not_a_panic() {
    let Some(mut h) = open(|_| ()) else { return };
    let device = h.device().clone();
    // A mapped-at-creation buffer whose size is not a multiple of 4 is a validation error.
    let _bad = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("deliberately invalid"),
        size: 3,
        usage: wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: true,
    });
    let ctl = Control::new();
    let (sink, _rx) = Sink::channel();
    let unit = one_unit(synthetic_header(22), &ctl);
    let e = h
        .hash(&unit, &ctl, &sink)
        .expect_err("the device reported an error");
    let text = error_chain(&e);
    assert!(text.contains("device error"), "{text}");
    assert!(h.hash(&unit, &ctl, &sink).is_err());
}

/// A dispatch that outlasts the wait limit (a hung device) ends the hasher with an error that
/// says so; later calls fail at once instead of touching the still-pending buffers.
#[test]
fn a_dispatch_past_the_wait_limit_ends_the_hasher_with_an_error_not_a_panic() {
    let Some(mut h) = open(|_| ()) else { return };
    h.set_wait_limit(std::time::Duration::from_millis(1));
    let ctl = Control::new();
    let (sink, _rx) = Sink::channel();
    let mut unit = one_unit(synthetic_header(23), &ctl);
    unit.range = NonceRange::new(0, 1 << 24).unwrap();
    let e = h
        .hash(&unit, &ctl, &sink)
        .expect_err("no dispatch of millions of nonces takes 1 ms");
    let text = error_chain(&e);
    assert!(
        text.contains("waiting for a dispatch") && text.contains("out of this run"),
        "{text}"
    );
    let t0 = std::time::Instant::now();
    assert!(h.hash(&unit, &ctl, &sink).is_err());
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(500),
        "a failed hasher answers at once"
    );
}

use hashrig_hasher::error_chain;
