//! PLACEHOLDER until the SIMD kernel lands: delegates to the scalar loop.
use crate::scalar::{Prehash, scan_with};
use crate::{NonceRange, ScanJob, Target};

/// # Safety
/// The caller must have checked the CPU features this kernel is compiled for.
pub(crate) unsafe fn scan(job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
    let pre = Prehash::new(job);
    scan_with(job, &pre, range.start(), range.count(), target.top_word(), target, found);
    range.count()
}
