//! The aarch64 kernel for the ARMv8 SHA-2 crypto extension (`FEAT_SHA256`: Cortex-A76 and
//! later, Raspberry Pi 5, Apple M-series, AWS Graviton): `N` (= `arm_lanes::SHA2`, 4)
//! independent nonces interleaved per thread.
//!
//! The extension works on four rounds at a time: `sha256h` gives the new ABCD and `sha256h2`
//! the new EFGH from the old ABCD, EFGH and a vector of K+W for the four rounds; `sha256su0` and
//! `sha256su1` compute four schedule words. The state lives in two vectors, ABCD and EFGH, lane
//! 0 first. Each step is written once per lane (`for l in 0..N` over fixed-size arrays, which
//! the compiler unrolls), so the N dependency chains are in flight together; aarch64 has 32
//! vector registers, enough for four lanes' state and schedules.
//!
//! The tricks:
//! - the midstate: the header's first block is compressed once per job;
//! - block 2's message words W0..W2 (header tail) and W4..W15 (padding) do not depend on the
//!   nonce: rounds 4..15 take K+W from three constant vectors, and only W0..W3 is built per
//!   nonce (the byte-swapped nonce inserted into lane 3 of a constant vector);
//! - block 3's W8..W15 are padding: rounds 8..15 take K+W from two constant vectors;
//! - early reject: the most significant 32 bits of the hash are `bswap(H7)`, lane 3 of the final
//!   EFGH; only a nonce whose top word is within the target's is hashed again in full by
//!   [`confirm`](crate::scalar::confirm). (Unlike the x86 kernels this one cannot stop after
//!   round 60: the instructions do rounds 60..63 together.)
//!
//! Its speed has not been measured: the project's machines are x86-64, where it runs only under
//! qemu's emulation (for correctness, in CI).

use core::arch::aarch64::{
    uint32x4_t, vaddq_u32, vdupq_n_u32, vgetq_lane_u32, vld1q_u32, vsetq_lane_u32, vsha256h2q_u32, vsha256hq_u32,
    vsha256su0q_u32, vsha256su1q_u32,
};

use crate::scalar;
use crate::{IV, K, NonceRange, ScanJob, Target};

/// Nonces interleaved per iteration.
const N: usize = crate::arm_lanes::SHA2 as usize;

type V = [uint32x4_t; N];

/// Everything the inner loop needs that does not depend on the nonce.
struct Consts {
    /// Block 2's W0..W3 with lane 3 (the nonce) zero.
    w0_3: uint32x4_t,
    /// Block 2's W4..W7, W8..W11, W12..W15 (padding), and K+W for rounds 4..15.
    w2: [uint32x4_t; 3],
    kw2: [uint32x4_t; 3],
    mid_abcd: uint32x4_t,
    mid_efgh: uint32x4_t,
    iv_abcd: uint32x4_t,
    iv_efgh: uint32x4_t,
    /// Block 3's W8..W11 and W12..W15 (padding), and K+W for rounds 8..15.
    pad3: [uint32x4_t; 2],
    kw3: [uint32x4_t; 2],
    /// K[4g..4g+4] for every group g.
    k: [uint32x4_t; 16],
}

#[inline]
#[target_feature(enable = "neon,sha2")]
fn v(x: [u32; 4]) -> uint32x4_t {
    // SAFETY: `x` is four readable, initialised u32s; `vld1q_u32` reads exactly those.
    unsafe { vld1q_u32(x.as_ptr()) }
}

#[target_feature(enable = "neon,sha2")]
fn consts(job: &ScanJob) -> Consts {
    let mut w = [0u32; 16];
    w[..3].copy_from_slice(&job.tail);
    w[4] = 0x8000_0000;
    w[15] = 80 * 8;
    let mut w3 = [0u32; 16];
    w3[8] = 0x8000_0000;
    w3[15] = 32 * 8;
    let group = |w: &[u32; 16], g: usize| [w[4 * g], w[4 * g + 1], w[4 * g + 2], w[4 * g + 3]];
    let kw = |w: &[u32; 16], g: usize| {
        let x = group(w, g);
        [
            x[0].wrapping_add(K[4 * g]),
            x[1].wrapping_add(K[4 * g + 1]),
            x[2].wrapping_add(K[4 * g + 2]),
            x[3].wrapping_add(K[4 * g + 3]),
        ]
    };
    let z = vdupq_n_u32(0);
    let mut k = [z; 16];
    for (g, slot) in k.iter_mut().enumerate() {
        *slot = v([K[4 * g], K[4 * g + 1], K[4 * g + 2], K[4 * g + 3]]);
    }
    let m = job.midstate.0;
    Consts {
        w0_3: v(group(&w, 0)),
        w2: [v(group(&w, 1)), v(group(&w, 2)), v(group(&w, 3))],
        kw2: [v(kw(&w, 1)), v(kw(&w, 2)), v(kw(&w, 3))],
        mid_abcd: v([m[0], m[1], m[2], m[3]]),
        mid_efgh: v([m[4], m[5], m[6], m[7]]),
        iv_abcd: v([IV[0], IV[1], IV[2], IV[3]]),
        iv_efgh: v([IV[4], IV[5], IV[6], IV[7]]),
        pad3: [v(group(&w3, 2)), v(group(&w3, 3))],
        kw3: [v(kw(&w3, 2)), v(kw(&w3, 3))],
        k,
    }
}

/// Four rounds on every lane with the K+W vectors `$kw` (one per lane).
macro_rules! rounds4 {
    ($abcd:ident, $efgh:ident, $kw:expr) => {
        for l in 0..N {
            let abcd = $abcd[l];
            $abcd[l] = vsha256hq_u32(abcd, $efgh[l], $kw[l]);
            $efgh[l] = vsha256h2q_u32($efgh[l], abcd, $kw[l]);
        }
    };
}

/// Four rounds on every lane with K+W shared by all lanes.
macro_rules! rounds4_const {
    ($abcd:ident, $efgh:ident, $kw:expr) => {
        for l in 0..N {
            let abcd = $abcd[l];
            $abcd[l] = vsha256hq_u32(abcd, $efgh[l], $kw);
            $efgh[l] = vsha256h2q_u32($efgh[l], abcd, $kw);
        }
    };
}

/// The standard schedule step: `a` (W[t-16..]) becomes W[t..t+4] from b (W[t-12..]),
/// c (W[t-8..]) and d (W[t-4..]); then four rounds with it.
macro_rules! sched_rounds4 {
    ($abcd:ident, $efgh:ident, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr) => {
        let mut kw = $a;
        for l in 0..N {
            $a[l] = vsha256su1q_u32(vsha256su0q_u32($a[l], $b[l]), $c[l], $d[l]);
            kw[l] = vaddq_u32($a[l], $k);
        }
        rounds4!($abcd, $efgh, kw);
    };
}

/// One iteration: N nonces `base`, `base + 1`, ... Returns, per lane, the final H7.
#[inline]
#[target_feature(enable = "neon,sha2")]
fn hash_lanes(c: &Consts, base: u32) -> [u32; N] {
    let z = vdupq_n_u32(0);
    let mut abcd: V = [c.mid_abcd; N];
    let mut efgh: V = [c.mid_efgh; N];
    let (mut m0, mut m1, mut m2, mut m3): (V, V, V, V) = ([z; N], [c.w2[0]; N], [c.w2[1]; N], [c.w2[2]; N]);
    let mut kw: V = [z; N];

    // ---- block 2 ----
    for l in 0..N {
        m0[l] = vsetq_lane_u32::<3>(base.wrapping_add(l as u32).swap_bytes(), c.w0_3);
        kw[l] = vaddq_u32(m0[l], c.k[0]);
    }
    rounds4!(abcd, efgh, kw);
    rounds4_const!(abcd, efgh, c.kw2[0]);
    rounds4_const!(abcd, efgh, c.kw2[1]);
    rounds4_const!(abcd, efgh, c.kw2[2]);
    sched_rounds4!(abcd, efgh, m0, m1, m2, m3, c.k[4]);
    sched_rounds4!(abcd, efgh, m1, m2, m3, m0, c.k[5]);
    sched_rounds4!(abcd, efgh, m2, m3, m0, m1, c.k[6]);
    sched_rounds4!(abcd, efgh, m3, m0, m1, m2, c.k[7]);
    sched_rounds4!(abcd, efgh, m0, m1, m2, m3, c.k[8]);
    sched_rounds4!(abcd, efgh, m1, m2, m3, m0, c.k[9]);
    sched_rounds4!(abcd, efgh, m2, m3, m0, m1, c.k[10]);
    sched_rounds4!(abcd, efgh, m3, m0, m1, m2, c.k[11]);
    sched_rounds4!(abcd, efgh, m0, m1, m2, m3, c.k[12]);
    sched_rounds4!(abcd, efgh, m1, m2, m3, m0, c.k[13]);
    sched_rounds4!(abcd, efgh, m2, m3, m0, m1, c.k[14]);
    sched_rounds4!(abcd, efgh, m3, m0, m1, m2, c.k[15]);

    // ---- block 3: W0..W7 = midstate + state, W8..W15 padding ----
    for l in 0..N {
        m0[l] = vaddq_u32(abcd[l], c.mid_abcd);
        m1[l] = vaddq_u32(efgh[l], c.mid_efgh);
        m2[l] = c.pad3[0];
        m3[l] = c.pad3[1];
    }
    abcd = [c.iv_abcd; N];
    efgh = [c.iv_efgh; N];
    for l in 0..N {
        kw[l] = vaddq_u32(m0[l], c.k[0]);
    }
    rounds4!(abcd, efgh, kw);
    for l in 0..N {
        kw[l] = vaddq_u32(m1[l], c.k[1]);
    }
    rounds4!(abcd, efgh, kw);
    rounds4_const!(abcd, efgh, c.kw3[0]);
    rounds4_const!(abcd, efgh, c.kw3[1]);
    sched_rounds4!(abcd, efgh, m0, m1, m2, m3, c.k[4]);
    sched_rounds4!(abcd, efgh, m1, m2, m3, m0, c.k[5]);
    sched_rounds4!(abcd, efgh, m2, m3, m0, m1, c.k[6]);
    sched_rounds4!(abcd, efgh, m3, m0, m1, m2, c.k[7]);
    sched_rounds4!(abcd, efgh, m0, m1, m2, m3, c.k[8]);
    sched_rounds4!(abcd, efgh, m1, m2, m3, m0, c.k[9]);
    sched_rounds4!(abcd, efgh, m2, m3, m0, m1, c.k[10]);
    sched_rounds4!(abcd, efgh, m3, m0, m1, m2, c.k[11]);
    sched_rounds4!(abcd, efgh, m0, m1, m2, m3, c.k[12]);
    sched_rounds4!(abcd, efgh, m1, m2, m3, m0, c.k[13]);
    sched_rounds4!(abcd, efgh, m2, m3, m0, m1, c.k[14]);
    sched_rounds4!(abcd, efgh, m3, m0, m1, m2, c.k[15]);
    let mut out = [0u32; N];
    for l in 0..N {
        out[l] = vgetq_lane_u32::<3>(efgh[l]).wrapping_add(IV[7]);
    }
    out
}

/// Scans `range` with the ARMv8 SHA-2 kernel; the nonces left after the last full group of `N`
/// go through the scalar loop.
#[target_feature(enable = "neon,sha2")]
pub(crate) fn scan(job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
    let c = consts(job);
    let top = target.top_word();
    let groups = range.count() / N as u64;
    let start = range.start();
    let mut base = start;
    for _ in 0..groups {
        let h7 = hash_lanes(&c, base);
        let mut any = false;
        for x in h7 {
            any |= x.swap_bytes() <= top;
        }
        if any {
            for (l, x) in h7.into_iter().enumerate() {
                if x.swap_bytes() <= top {
                    scalar::confirm(job, base.wrapping_add(l as u32), target, found);
                }
            }
        }
        // After the last group of a range that ends at 2^32 - 1 this wraps; it is not used.
        base = base.wrapping_add(N as u32);
    }
    let done = groups * N as u64;
    let rest = range.count() - done;
    if rest > 0 {
        // `start + done` is below 2^32 here because `rest > 0` nonces follow it in the range.
        let tail_start = (u64::from(start) + done) as u32;
        let pre = scalar::Prehash::new(job);
        scalar::scan_with(job, &pre, tail_start, rest, top, target, found);
    }
    range.count()
}
