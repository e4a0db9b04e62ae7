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
    assert_eq!(h.overflows(), 0, "dispatches are sized to keep candidates inside the buffer");
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
    assert!(h.overflows() > 0, "the test meant to overflow the result buffer and did not");
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
    let twice = hashrig_hasher_gpu::open_hashers("0,0").expect("adapter 0 exists");
    assert_eq!(twice.len(), 1);
    let all = hashrig_hasher_gpu::open_hashers("all").expect("there is an adapter");
    assert!(!all.is_empty());
    assert!(matches!(
        hashrig_hasher_gpu::open_hashers("999"),
        Err(Error::AdapterNotFound { .. })
    ));
}

/// The start-up search tries each workgroup size, then each nonces-per-invocation count at the
/// best size, keeps the fastest, and the tuned hasher is still correct.
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
    let best = t.tried.iter().map(|x| x.2).fold(0.0, f64::max);
    assert_eq!(t.rate, best, "{t:?}");
    assert!(
        t.tried
            .contains(&(t.workgroup, t.nonces_per_invocation, t.rate)),
        "{t:?}"
    );
    let block = testkit::REAL_BLOCKS[1];
    let range = NonceRange::new(block.nonce - 40_000, 80_001).unwrap();
    let (got, _, _) = sweep(&mut h, block.header(), range, block.target());
    assert_eq!(got, BTreeSet::from([block.nonce]));
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
    let e = h.hash(&unit, &ctl, &sink).expect_err("a destroyed device cannot hash");
    let text = error_chain(&e);
    assert!(text.contains(&h.adapter().name), "{text}");
    assert!(text.contains("out of this run"), "{text}");
    let again = h.hash(&unit, &ctl, &sink).expect_err("a failed hasher stays failed");
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
    let e = h.hash(&unit, &ctl, &sink).expect_err("the device reported an error");
    let text = error_chain(&e);
    assert!(text.contains("device error"), "{text}");
    assert!(h.hash(&unit, &ctl, &sink).is_err());
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
