//! The x86-64 SHA-NI kernel: `N` independent nonces interleaved per thread, compiled three
//! times: legacy SSE encoding (`sse`, N = `x86_lanes::SHANI` = 2), VEX (`avx`, N = 2) and EVEX
//! (`evex`, AVX-512VL, N = `x86_lanes::SHANI_EVEX` = 4: the 32 vector registers of the EVEX
//! encoding hold the four lanes' state, schedules and the shared constants without spilling).
//!
//! `sha256rnds2` does two rounds; one nonce alone leaves its unit waiting on the instruction's
//! latency (4 cycles measured on the Emerald Rapids dev machine, about 4 on Zen 4). Each step
//! below is written once per lane (`for l in 0..N` over fixed-size arrays, which the compiler
//! fully unrolls), so the N dependency chains are in flight together. Everything is unrolled
//! with constant indices: the message ring is four named variables whose roles rotate in the
//! source, never an index. `sha256rnds2`, `sha256msg1` and `sha256msg2` exist only in the legacy
//! encoding (registers 0-15); the EVEX build gains the registers for everything around them.
//!
//! Layout (Intel's): the state lives in two vectors, `abef` = lanes (F, E, B, A) and `cdgh` =
//! lanes (H, G, D, C); a message vector holds W[t..t+4] in lanes 0..3. After one `rnds2` the old
//! ABEF is the new CDGH, so the two state variables swap roles each time.
//!
//! Work per nonce (block 2 is the header's second block, block 3 hashes the first digest):
//! - block 2 starts after round 3: rounds 0-2 come from
//!   [`Prehash`](crate::scalar::Prehash), and round 3's nonce term is a plain add into the A
//!   and E lanes. Rounds 4-15 use folded K+W constants (the message words
//!   there are padding). W16/W17 are constants; W18..W31 skip the `msg1`/adds whose inputs are
//!   constant (W4..W15); from W32 on the schedule is the standard one. 30 `rnds2`.
//! - block 3: W0..W7 are the first digest; W8..W15 are padding, so rounds 8-15 use folded
//!   constants and the schedule for W16..W31 drops the ops on constant inputs. It stops after
//!   the `rnds2` of rounds 60-61: lane F of ABEF then holds E after round 60, which is the final
//!   H7 minus IV7. 31 `rnds2`. Only a nonce whose `bswap(H7)` is within the target's top word
//!   is hashed again in full by [`confirm`](crate::scalar::confirm).

use crate::ScanJob;

/// Block 2's message words for nonce 0 (W3 is the nonce), as the schedule constants use them.
fn block2_const_words(job: &ScanJob) -> [u32; 16] {
    let mut w = [0u32; 16];
    w[..3].copy_from_slice(&job.tail);
    w[4] = 0x8000_0000;
    w[15] = 80 * 8;
    w
}

/// Four rounds on every lane: `kw` holds K+W for them (it is clobbered).
macro_rules! rounds4 {
    ($abef:ident, $cdgh:ident, $kw:ident) => {
        for l in 0..N {
            $cdgh[l] = _mm_sha256rnds2_epu32($cdgh[l], $abef[l], $kw[l]);
        }
        for l in 0..N {
            $kw[l] = _mm_shuffle_epi32($kw[l], 0x0e);
        }
        for l in 0..N {
            $abef[l] = _mm_sha256rnds2_epu32($abef[l], $cdgh[l], $kw[l]);
        }
    };
}

/// Four rounds on every lane with K+W constants shared by all lanes (two per vector).
macro_rules! rounds4_const {
    ($abef:ident, $cdgh:ident, $lo:expr, $hi:expr) => {
        for l in 0..N {
            $cdgh[l] = _mm_sha256rnds2_epu32($cdgh[l], $abef[l], $lo);
        }
        for l in 0..N {
            $abef[l] = _mm_sha256rnds2_epu32($abef[l], $cdgh[l], $hi);
        }
    };
}

/// `kw = m + k` on every lane.
macro_rules! add_k {
    ($kw:ident, $m:ident, $k:expr) => {
        for l in 0..N {
            $kw[l] = _mm_add_epi32($m[l], $k);
        }
    };
}

/// The standard schedule step: `a` (W[t-16..]) becomes W[t..t+4] from b (W[t-12..]),
/// c (W[t-8..]) and d (W[t-4..]).
macro_rules! schedule {
    ($a:ident, $b:ident, $c:ident, $d:ident) => {
        for l in 0..N {
            let t = _mm_add_epi32(_mm_sha256msg1_epu32($a[l], $b[l]), _mm_alignr_epi8($d[l], $c[l], 4));
            $a[l] = _mm_sha256msg2_epu32(t, $d[l]);
        }
    };
}

/// The kernel's functions, compiled for one set of CPU features (the same code twice: with AVX
/// enabled the compiler uses the three-operand VEX forms of the SSE instructions, which saves
/// register copies; `sha256rnds2` itself has only the legacy encoding).
macro_rules! shani_kernel {
    ($features:literal, $lanes:expr) => {
        /// Nonces interleaved per iteration.
        const N: usize = $lanes as usize;
        const _: () = assert!(N >= 1 && N <= 4, "the nonce vector holds at most 4 lanes");

        type V = [__m128i; N];

        /// Everything the inner loop needs that does not depend on the nonce.
        pub(super) struct Consts {
            /// ABEF/CDGH after round 3 of block 2, without the nonce's term in A and E.
            abef3: __m128i,
            cdgh3: __m128i,
            /// K+W for rounds 4..15 of block 2, two rounds per vector (low 64 bits).
            kw2: [__m128i; 6],
            /// Block 2, W16..W19 = msg1((0, 0, 0, W3), W4..W7) + `c16`; `ck16` = `c16` + K16..K19.
            w4_7: __m128i,
            c16: __m128i,
            ck16: __m128i,
            /// Block 2, W20..W23 = msg2(`c20`, W16..W19).
            c20: __m128i,
            /// Block 2, W28..W31 = msg2(alignr(W24..27, W20..23) + `c28`, W24..W27).
            c28: __m128i,
            /// The midstate in ABEF/CDGH layout, added after block 2.
            mid_abef: __m128i,
            mid_cdgh: __m128i,
            /// Block 3's initial state (the IV) and its padding words.
            iv_abef: __m128i,
            iv_cdgh: __m128i,
            /// Block 3, W8..W11 and W12..W15 (padding).
            pad8: __m128i,
            pad12: __m128i,
            /// K+W for rounds 8..15 of block 3, two rounds per vector.
            kw3: [__m128i; 4],
            /// K[4g..4g+4] for every group g.
            k: [__m128i; 16],
            /// Byte shuffles that turn the vector of lane nonces (native order) into, for lane l,
            /// (0, bswap(n+l), 0, bswap(n+l)) and (0, 0, 0, bswap(n+l)).
            sh13: V,
            sh3: V,
        }

        use core::arch::x86_64::{
            __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32, _mm_set1_epi32,
            _mm_setr_epi8, _mm_setr_epi32, _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32,
            _mm_sha256rnds2_epu32, _mm_shuffle_epi8, _mm_shuffle_epi32,
        };

        use super::block2_const_words;
        use crate::scalar::{self, Prehash, small_sigma0, small_sigma1};
        use crate::{IV, K, NonceRange, ScanJob, Target};

        #[inline]
        #[target_feature(enable = $features)]
        fn v(a: u32, b: u32, c: u32, d: u32) -> __m128i {
            _mm_setr_epi32(a as i32, b as i32, c as i32, d as i32)
        }

        /// Shuffle mask putting the big-endian bytes of source lane `l` into each lane of `dst`.
        #[inline]
        #[target_feature(enable = $features)]
        fn bswap_mask(l: usize, dst: [bool; 4]) -> __m128i {
            let mut m = [-128i8; 16]; // high bit set: zero byte
            for (d, on) in dst.iter().enumerate() {
                if *on {
                    for b in 0..4 {
                        m[4 * d + b] = (4 * l + 3 - b) as i8;
                    }
                }
            }
            _mm_setr_epi8(
                m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15],
            )
        }

        #[target_feature(enable = $features)]
        fn consts(job: &ScanJob, pre: &Prehash) -> Consts {
            let w = block2_const_words(job);
            let [a, b, c, d, e, f, g, _h] = pre.state3;
            let kw = |i: usize, wi: u32| K[i].wrapping_add(wi);

            let (w16, w17) = (pre.w16, pre.w17);
            let c16 = v(w16, w17, small_sigma1(w16).wrapping_add(w[2]), small_sigma1(w17));
            let k16 = v(K[16], K[17], K[18], K[19]);
            let c28 = v(0, 0, small_sigma0(w[15]), w[15].wrapping_add(small_sigma0(w16)));

            let mut kw2 = [_mm_setzero_si128(); 6];
            for (p, slot) in kw2.iter_mut().enumerate() {
                let i = 4 + 2 * p;
                *slot = v(kw(i, w[i]), kw(i + 1, w[i + 1]), 0, 0);
            }
            let mut w3 = [0u32; 16];
            w3[8] = 0x8000_0000;
            w3[15] = 32 * 8;
            let mut kw3 = [_mm_setzero_si128(); 4];
            for (p, slot) in kw3.iter_mut().enumerate() {
                let i = 8 + 2 * p;
                *slot = v(kw(i, w3[i]), kw(i + 1, w3[i + 1]), 0, 0);
            }
            let mut k = [_mm_setzero_si128(); 16];
            for (g, slot) in k.iter_mut().enumerate() {
                *slot = v(K[4 * g], K[4 * g + 1], K[4 * g + 2], K[4 * g + 3]);
            }
            let mut sh13 = [_mm_setzero_si128(); N];
            let mut sh3 = [_mm_setzero_si128(); N];
            for l in 0..N {
                sh13[l] = bswap_mask(l, [false, true, false, true]);
                sh3[l] = bswap_mask(l, [false, false, false, true]);
            }
            let m = job.midstate.0;
            Consts {
                abef3: v(e, d.wrapping_add(pre.t1_base), a, pre.t1_base.wrapping_add(pre.t2)),
                cdgh3: v(g, f, c, b),
                kw2,
                w4_7: v(w[4], w[5], w[6], w[7]),
                c16,
                ck16: _mm_add_epi32(c16, k16),
                c20: v(w[4], 0, w[15], w16),
                c28,
                mid_abef: v(m[5], m[4], m[1], m[0]),
                mid_cdgh: v(m[7], m[6], m[3], m[2]),
                iv_abef: v(IV[5], IV[4], IV[1], IV[0]),
                iv_cdgh: v(IV[7], IV[6], IV[3], IV[2]),
                pad8: v(w3[8], w3[9], w3[10], w3[11]),
                pad12: v(w3[12], w3[13], w3[14], w3[15]),
                kw3,
                k,
                sh13,
                sh3,
            }
        }

        /// One iteration: N nonces whose native-order values are the lanes of `nv`. Returns, per lane,
        /// E after round 60 of block 3 (the final H7 minus IV7).
        #[inline]
        #[target_feature(enable = $features)]
        fn hash_lanes(c: &Consts, nv: __m128i) -> [u32; N] {
            let z = _mm_setzero_si128();
            let mut abef: V = [z; N];
            let mut cdgh: V = [c.cdgh3; N];
            let mut kw: V = [z; N];
            let (mut m0, mut m1, mut m2, mut m3): (V, V, V, V) = ([z; N], [z; N], [z; N], [z; N]);

            // ---- block 2, from round 4 ----
            for l in 0..N {
                abef[l] = _mm_add_epi32(c.abef3, _mm_shuffle_epi8(nv, c.sh13[l]));
                m3[l] = _mm_shuffle_epi8(nv, c.sh3[l]); // (0, 0, 0, W3)
            }
            rounds4_const!(abef, cdgh, c.kw2[0], c.kw2[1]);
            rounds4_const!(abef, cdgh, c.kw2[2], c.kw2[3]);
            rounds4_const!(abef, cdgh, c.kw2[4], c.kw2[5]);
            // W16..19
            for l in 0..N {
                let t = _mm_sha256msg1_epu32(m3[l], c.w4_7);
                kw[l] = _mm_add_epi32(t, c.ck16);
                m0[l] = _mm_add_epi32(t, c.c16);
            }
            rounds4!(abef, cdgh, kw);
            // W20..23
            for l in 0..N {
                m1[l] = _mm_sha256msg2_epu32(c.c20, m0[l]);
            }
            add_k!(kw, m1, c.k[5]);
            rounds4!(abef, cdgh, kw);
            // W24..27: W8..W12 are zero, so no msg1 and no constant.
            for l in 0..N {
                m2[l] = _mm_sha256msg2_epu32(_mm_alignr_epi8(m1[l], m0[l], 4), m1[l]);
            }
            add_k!(kw, m2, c.k[6]);
            rounds4!(abef, cdgh, kw);
            // W28..31: the msg1 part is constant.
            for l in 0..N {
                m3[l] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_alignr_epi8(m2[l], m1[l], 4), c.c28), m2[l]);
            }
            add_k!(kw, m3, c.k[7]);
            rounds4!(abef, cdgh, kw);
            schedule!(m0, m1, m2, m3);
            add_k!(kw, m0, c.k[8]);
            rounds4!(abef, cdgh, kw);
            schedule!(m1, m2, m3, m0);
            add_k!(kw, m1, c.k[9]);
            rounds4!(abef, cdgh, kw);
            schedule!(m2, m3, m0, m1);
            add_k!(kw, m2, c.k[10]);
            rounds4!(abef, cdgh, kw);
            schedule!(m3, m0, m1, m2);
            add_k!(kw, m3, c.k[11]);
            rounds4!(abef, cdgh, kw);
            schedule!(m0, m1, m2, m3);
            add_k!(kw, m0, c.k[12]);
            rounds4!(abef, cdgh, kw);
            schedule!(m1, m2, m3, m0);
            add_k!(kw, m1, c.k[13]);
            rounds4!(abef, cdgh, kw);
            schedule!(m2, m3, m0, m1);
            add_k!(kw, m2, c.k[14]);
            rounds4!(abef, cdgh, kw);
            schedule!(m3, m0, m1, m2);
            add_k!(kw, m3, c.k[15]);
            rounds4!(abef, cdgh, kw);

            // ---- first digest = midstate + state, as block 3's W0..W3 and W4..W7 ----
            for l in 0..N {
                let s0 = _mm_add_epi32(abef[l], c.mid_abef);
                let s1 = _mm_add_epi32(cdgh[l], c.mid_cdgh);
                let t = _mm_shuffle_epi32(s0, 0x1b); // A B E F
                let u = _mm_shuffle_epi32(s1, 0xb1); // G H C D
                m0[l] = _mm_blend_epi16(t, u, 0xf0); // A B C D
                m1[l] = _mm_alignr_epi8(u, t, 8); // E F G H
            }

            // ---- block 3 ----
            abef = [c.iv_abef; N];
            cdgh = [c.iv_cdgh; N];
            add_k!(kw, m0, c.k[0]);
            rounds4!(abef, cdgh, kw);
            add_k!(kw, m1, c.k[1]);
            rounds4!(abef, cdgh, kw);
            rounds4_const!(abef, cdgh, c.kw3[0], c.kw3[1]);
            rounds4_const!(abef, cdgh, c.kw3[2], c.kw3[3]);
            // W16..19: W9..W12 are zero.
            for l in 0..N {
                m2[l] = _mm_sha256msg2_epu32(_mm_sha256msg1_epu32(m0[l], m1[l]), c.pad12);
            }
            add_k!(kw, m2, c.k[4]);
            rounds4!(abef, cdgh, kw);
            // W20..23
            for l in 0..N {
                let t = _mm_add_epi32(_mm_sha256msg1_epu32(m1[l], c.pad8), _mm_alignr_epi8(m2[l], c.pad12, 4));
                m3[l] = _mm_sha256msg2_epu32(t, m2[l]);
            }
            add_k!(kw, m3, c.k[5]);
            rounds4!(abef, cdgh, kw);
            // W24..27: msg1(W8..11, W12..15) is W8..W11 itself (W9..W12 are zero).
            for l in 0..N {
                let t = _mm_add_epi32(c.pad8, _mm_alignr_epi8(m3[l], m2[l], 4));
                m0[l] = _mm_sha256msg2_epu32(t, m3[l]);
            }
            add_k!(kw, m0, c.k[6]);
            rounds4!(abef, cdgh, kw);
            // W28..31
            for l in 0..N {
                let t = _mm_add_epi32(_mm_sha256msg1_epu32(c.pad12, m2[l]), _mm_alignr_epi8(m0[l], m3[l], 4));
                m1[l] = _mm_sha256msg2_epu32(t, m0[l]);
            }
            add_k!(kw, m1, c.k[7]);
            rounds4!(abef, cdgh, kw);
            schedule!(m2, m3, m0, m1);
            add_k!(kw, m2, c.k[8]);
            rounds4!(abef, cdgh, kw);
            schedule!(m3, m0, m1, m2);
            add_k!(kw, m3, c.k[9]);
            rounds4!(abef, cdgh, kw);
            schedule!(m0, m1, m2, m3);
            add_k!(kw, m0, c.k[10]);
            rounds4!(abef, cdgh, kw);
            schedule!(m1, m2, m3, m0);
            add_k!(kw, m1, c.k[11]);
            rounds4!(abef, cdgh, kw);
            schedule!(m2, m3, m0, m1);
            add_k!(kw, m2, c.k[12]);
            rounds4!(abef, cdgh, kw);
            schedule!(m3, m0, m1, m2);
            add_k!(kw, m3, c.k[13]);
            rounds4!(abef, cdgh, kw);
            schedule!(m0, m1, m2, m3);
            add_k!(kw, m0, c.k[14]);
            rounds4!(abef, cdgh, kw);
            // Rounds 60-61 only: the new ABEF's F lane is E after round 60, i.e. H7 - IV7.
            schedule!(m1, m2, m3, m0);
            add_k!(kw, m1, c.k[15]);
            let mut out = [0u32; N];
            for l in 0..N {
                out[l] = _mm_cvtsi128_si32(_mm_sha256rnds2_epu32(cdgh[l], abef[l], kw[l])) as u32;
            }
            out
        }

        /// Scans `range` with the SHA-NI kernel; the nonces left after the last full group of `N` go
        /// through the scalar loop.
        #[target_feature(enable = $features)]
        pub(crate) fn scan(job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
            let pre = Prehash::new(job);
            let c = consts(job, &pre);
            let top = target.top_word();
            let groups = range.count() / N as u64;
            let start = range.start();

            let mut lane_nonces = [0u32; 4];
            for (l, x) in lane_nonces.iter_mut().enumerate().take(N) {
                // The range is validated, so the first group's nonces do not pass 2^32 - 1.
                *x = start.wrapping_add(l as u32);
            }
            let [n0, n1, n2, n3] = lane_nonces;
            let mut nv = v(n0, n1, n2, n3);
            let step = _mm_set1_epi32(N as i32);
            let mut base = start;
            for _ in 0..groups {
                let e60 = hash_lanes(&c, nv);
                let mut any = false;
                for x in e60 {
                    any |= x.wrapping_add(IV[7]).swap_bytes() <= top;
                }
                if any {
                    for (l, x) in e60.into_iter().enumerate() {
                        if x.wrapping_add(IV[7]).swap_bytes() <= top {
                            scalar::confirm(job, base.wrapping_add(l as u32), target, found);
                        }
                    }
                }
                // After the last group of a range that ends at 2^32 - 1 these wrap; they are not used.
                nv = _mm_add_epi32(nv, step);
                base = base.wrapping_add(N as u32);
            }
            let done = groups * N as u64;
            let rest = range.count() - done;
            if rest > 0 {
                // `start + done` is below 2^32 here because `rest > 0` nonces follow it in the range.
                let tail_start = (u64::from(start) + done) as u32;
                scalar::scan_with(job, &pre, tail_start, rest, top, target, found);
            }
            range.count()
        }
    };
}

/// SHA-NI with the SSE instructions in their legacy two-operand encoding (CPUs without AVX).
pub(crate) mod sse {
    shani_kernel!("sha,sse2,ssse3,sse4.1", crate::x86_lanes::SHANI);
}

/// SHA-NI with the SSE instructions VEX-encoded (needs AVX as well).
pub(crate) mod avx {
    shani_kernel!("sha,sse2,ssse3,sse4.1,avx", crate::x86_lanes::SHANI);
}

/// SHA-NI with AVX-512VL: the EVEX encoding reaches 32 vector registers, so more nonces fit
/// in flight without spilling.
pub(crate) mod evex {
    shani_kernel!("sha,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512vl", crate::x86_lanes::SHANI_EVEX);
}
