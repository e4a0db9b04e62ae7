//! The CPU backend against the conformance kit, with the best kernel and every kernel forced.

use hashrig_hasher::testkit::{self, KitConfig};
use hashrig_hasher::Hasher;
use hashrig_hasher_cpu::{CpuConfig, CpuHasher};
use hashrig_sha256d::Kernel;

#[test]
fn best_kernel_on_two_threads_passes_the_kit() {
    let mut h = CpuHasher::new(&CpuConfig { threads: Some(2), ..Default::default() }).unwrap();
    testkit::run_all(&mut h, &KitConfig::fast()).unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn every_available_kernel_passes_the_kit_on_one_thread() {
    let kernels = Kernel::available();
    assert!(kernels.contains(&Kernel::Scalar), "the scalar kernel runs everywhere");
    for kernel in kernels {
        // Small batches so the range-edge and epoch checks cross many batch boundaries.
        let cfg = CpuConfig { threads: Some(1), kernel: Some(kernel), batch: Some(4099) };
        let mut h = CpuHasher::new(&cfg).unwrap();
        assert_eq!(h.info().kernel, kernel.name());
        let kit = KitConfig { easy_range: (1 << 16) + 13, count_range: (1 << 16) + 7, ..KitConfig::fast() };
        testkit::run_all(&mut h, &kit).unwrap_or_else(|f| panic!("{kernel}: {f}"));
    }
}

#[test]
fn zero_threads_is_refused() {
    let err = CpuHasher::new(&CpuConfig { threads: Some(0), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}
