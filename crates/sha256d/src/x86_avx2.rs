//! The x86-64 AVX2 kernel: eight nonces, one per 32-bit lane of a 256-bit vector.
//!
//! The fallback for x86-64 CPUs without SHA-NI. Every lane runs the same SHA-256 on a different
//! nonce, so everything that does not depend on the nonce is a broadcast constant computed once
//! per range:
//! - block 2 starts after round 3 ([`Prehash`]): the nonce enters A and E by one add each;
//!   K+W of rounds 4..17 are constants (padding words, W16, W17); W18..W32 are written out with
//!   their constant terms folded (most of W4..W15 are zero), the generic schedule starts at W33;
//! - block 3: round 0 from the IV is two adds; K+W of rounds 8..15 are constants, W16..W31 skip
//!   the terms of the padding words; the block stops after the T1 half of round 60, which fixes
//!   E after round 60 = H7 - IV7; the 8 lanes are compared with the target's top word at once
//!   (`movemask`), and only candidate lanes are hashed again in full by [`scalar::confirm`].
//!
//! Per round: Ch is `((f ^ g) & e) ^ g`; Maj is `b ^ ((a ^ b) & (b ^ c))` where `b ^ c` is the
//! previous round's `a ^ b` (X^Y reuse), so it costs two ops. Rotates are shift + shift + or
//! (AVX2 has no vector rotate).

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32,
    _mm256_min_epu32, _mm256_movemask_ps, _mm256_set1_epi32, _mm256_setr_epi8,
    _mm256_setr_epi32, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_slli_epi32,
    _mm256_srli_epi32, _mm256_xor_si256,
};

use crate::scalar::{self, Prehash, big_sigma0, big_sigma1, small_sigma0, small_sigma1};
use crate::{IV, K, NonceRange, ScanJob, Target};

/// Nonces per vector.
const LANES: usize = 8;

#[inline]
#[target_feature(enable = "avx2")]
fn add(a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(a, b)
}
#[inline]
#[target_feature(enable = "avx2")]
fn xor(a: __m256i, b: __m256i) -> __m256i {
    _mm256_xor_si256(a, b)
}
#[inline]
#[target_feature(enable = "avx2")]
fn and(a: __m256i, b: __m256i) -> __m256i {
    _mm256_and_si256(a, b)
}
#[inline]
#[target_feature(enable = "avx2")]
fn splat(x: u32) -> __m256i {
    _mm256_set1_epi32(x as i32)
}

/// Σ0(a) = ror2 ^ ror13 ^ ror22.
#[inline]
#[target_feature(enable = "avx2")]
fn bsig0(x: __m256i) -> __m256i {
    let r = xor(xor(_mm256_srli_epi32::<2>(x), _mm256_srli_epi32::<13>(x)), _mm256_srli_epi32::<22>(x));
    let l = xor(xor(_mm256_slli_epi32::<30>(x), _mm256_slli_epi32::<19>(x)), _mm256_slli_epi32::<10>(x));
    xor(r, l)
}
/// Σ1(e) = ror6 ^ ror11 ^ ror25.
#[inline]
#[target_feature(enable = "avx2")]
fn bsig1(x: __m256i) -> __m256i {
    let r = xor(xor(_mm256_srli_epi32::<6>(x), _mm256_srli_epi32::<11>(x)), _mm256_srli_epi32::<25>(x));
    let l = xor(xor(_mm256_slli_epi32::<26>(x), _mm256_slli_epi32::<21>(x)), _mm256_slli_epi32::<7>(x));
    xor(r, l)
}
/// σ0(x) = ror7 ^ ror18 ^ shr3.
#[inline]
#[target_feature(enable = "avx2")]
fn ssig0(x: __m256i) -> __m256i {
    let r = xor(xor(_mm256_srli_epi32::<3>(x), _mm256_srli_epi32::<7>(x)), _mm256_srli_epi32::<18>(x));
    let l = xor(_mm256_slli_epi32::<25>(x), _mm256_slli_epi32::<14>(x));
    xor(r, l)
}
/// σ1(x) = ror17 ^ ror19 ^ shr10.
#[inline]
#[target_feature(enable = "avx2")]
fn ssig1(x: __m256i) -> __m256i {
    let r = xor(xor(_mm256_srli_epi32::<10>(x), _mm256_srli_epi32::<17>(x)), _mm256_srli_epi32::<19>(x));
    let l = xor(_mm256_slli_epi32::<15>(x), _mm256_slli_epi32::<13>(x));
    xor(r, l)
}

/// One round. `kw` is K+W for it; `ab` carries the previous round's `a ^ b` (this round's
/// `b ^ c`) in and this round's `a ^ b` out. Writes the new E into `d` and the new A into `h`.
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr, $ab:ident) => {{
        let ch = xor(and(xor($f, $g), $e), $g);
        let t1 = add(add($h, bsig1($e)), add(ch, $kw));
        let ab_now = xor($a, $b);
        let maj = xor($b, and(ab_now, $ab));
        $ab = ab_now;
        $d = add($d, t1);
        $h = add(t1, add(bsig0($a), maj));
    }};
}

/// Eight rounds from index `$i`, taking K+W from `$kw[$i..$i + 8]`; names come back in order.
macro_rules! rounds8 {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:ident, $i:expr, $ab:ident) => {
        round!($a, $b, $c, $d, $e, $f, $g, $h, $kw[$i], $ab);
        round!($h, $a, $b, $c, $d, $e, $f, $g, $kw[$i + 1], $ab);
        round!($g, $h, $a, $b, $c, $d, $e, $f, $kw[$i + 2], $ab);
        round!($f, $g, $h, $a, $b, $c, $d, $e, $kw[$i + 3], $ab);
        round!($e, $f, $g, $h, $a, $b, $c, $d, $kw[$i + 4], $ab);
        round!($d, $e, $f, $g, $h, $a, $b, $c, $kw[$i + 5], $ab);
        round!($c, $d, $e, $f, $g, $h, $a, $b, $kw[$i + 6], $ab);
        round!($b, $c, $d, $e, $f, $g, $h, $a, $kw[$i + 7], $ab);
    };
}

/// The nonce-independent part of the work, as broadcast vectors.
struct Consts {
    /// Block 2 state after round 3 without the nonce term (A and E get W3 added).
    s3: [__m256i; 8],
    /// `a ^ b` of the state after round 2 (round 4's `b ^ c`).
    ab3: __m256i,
    /// Block 2 K+W for rounds 4..=17 (index = round), schedule words W16, W17 and the folded
    /// constant terms of W18..W32.
    kw2: [__m256i; 18],
    w16: __m256i,
    w17: __m256i,
    c18: __m256i,
    c19: __m256i,
    c20: __m256i,
    c22: __m256i,
    c30: __m256i,
    c31: __m256i,
    c32: __m256i,
    mid: [__m256i; 8],
    /// Block 3: state after round 0 without W0 (A and E get W0 added), round 1's `b ^ c`,
    /// K+W of rounds 8..=15 and the folded constants of W17..W31.
    r0_a: __m256i,
    r0_e: __m256i,
    iv: [__m256i; 8],
    ab0: __m256i,
    kw3: [__m256i; 16],
    c17_3: __m256i,
    c23_3: __m256i,
    c30_3: __m256i,
    pad8: __m256i,
    pad15: __m256i,
    k: [__m256i; 64],
    bswap: __m256i,
    iv7: __m256i,
}

impl Consts {
    #[target_feature(enable = "avx2")]
    fn new(job: &ScanJob, pre: &Prehash) -> Self {
        let mut w = [0u32; 16];
        w[..3].copy_from_slice(&job.tail);
        w[4] = 0x8000_0000;
        w[15] = 80 * 8;
        let [a, b, c, d, e, f, g, _h] = pre.state3;
        let (w16, w17) = (pre.w16, pre.w17);
        let z = _mm256_setzero_si256();
        let mut kw2 = [z; 18];
        for (i, slot) in kw2.iter_mut().enumerate().skip(4) {
            let wi = match i {
                16 => w16,
                17 => w17,
                _ => w[i],
            };
            *slot = splat(K[i].wrapping_add(wi));
        }
        let mut k = [z; 64];
        for (slot, ki) in k.iter_mut().zip(K) {
            *slot = splat(ki);
        }
        // Block 3 padding: W8 = 0x80000000, W15 = 256, the rest of W8..W15 zero.
        let (p8, p15) = (0x8000_0000u32, 32 * 8u32);
        let mut kw3 = [z; 16];
        for (i, slot) in kw3.iter_mut().enumerate().skip(8) {
            let wi = match i {
                8 => p8,
                15 => p15,
                _ => 0,
            };
            *slot = splat(K[i].wrapping_add(wi));
        }
        // Round 0 of block 3 from the IV: T1 = const + W0, so A1 and E1 are const + W0.
        let [ia, ib, ic, id, ie, ig_f, ig, ih] = IV;
        let ch = ((ig_f ^ ig) & ie) ^ ig;
        let t1c = ih.wrapping_add(big_sigma1(ie)).wrapping_add(ch).wrapping_add(K[0]);
        let maj = (ia & ib) | (ic & (ia | ib));
        let t2 = big_sigma0(ia).wrapping_add(maj);
        let mut bs = [0i8; 32];
        for (i, x) in bs.iter_mut().enumerate() {
            *x = ((i & !3) + 3 - (i & 3)) as i8;
        }
        let m = job.midstate.0;
        Self {
            s3: [
                splat(pre.t1_base.wrapping_add(pre.t2)),
                splat(a),
                splat(b),
                splat(c),
                splat(d.wrapping_add(pre.t1_base)),
                splat(e),
                splat(f),
                splat(g),
            ],
            ab3: splat(a ^ b),
            kw2,
            w16: splat(w16),
            w17: splat(w17),
            c18: splat(small_sigma1(w16).wrapping_add(w[2])),
            c19: splat(small_sigma1(w17).wrapping_add(small_sigma0(w[4]))),
            c20: splat(w[4]),
            c22: splat(w[15]),
            c30: splat(small_sigma0(w[15])),
            c31: splat(small_sigma0(w16).wrapping_add(w[15])),
            c32: splat(small_sigma0(w17).wrapping_add(w16)),
            mid: [splat(m[0]), splat(m[1]), splat(m[2]), splat(m[3]), splat(m[4]), splat(m[5]), splat(m[6]), splat(m[7])],
            r0_a: splat(t1c.wrapping_add(t2)),
            r0_e: splat(id.wrapping_add(t1c)),
            iv: [splat(ia), splat(ib), splat(ic), splat(id), splat(ie), splat(ig_f), splat(ig), splat(ih)],
            ab0: splat(ia ^ ib),
            kw3,
            c17_3: splat(small_sigma1(p15)),
            c23_3: splat(small_sigma0(p8)),
            c30_3: splat(small_sigma0(p15)),
            pad8: splat(p8),
            pad15: splat(p15),
            k,
            bswap: _mm256_setr_epi8(
                bs[0], bs[1], bs[2], bs[3], bs[4], bs[5], bs[6], bs[7], bs[8], bs[9], bs[10], bs[11], bs[12],
                bs[13], bs[14], bs[15], bs[16], bs[17], bs[18], bs[19], bs[20], bs[21], bs[22], bs[23], bs[24],
                bs[25], bs[26], bs[27], bs[28], bs[29], bs[30], bs[31],
            ),
            iv7: splat(IV[7]),
        }
    }
}

/// The generic schedule word `W[t]` from the 16 before it.
macro_rules! sched {
    ($w:ident, $t:expr) => {
        add(add(ssig1($w[$t - 2]), $w[$t - 7]), add(ssig0($w[$t - 15]), $w[$t - 16]))
    };
}

/// Schedule and K+W words of both blocks, kept across iterations: the constant entries are
/// written once per range, the rest every iteration.
struct Scratch {
    w2: [__m256i; 64],
    kw2: [__m256i; 64],
    w3: [__m256i; 64],
    kw3: [__m256i; 64],
}

impl Scratch {
    #[target_feature(enable = "avx2")]
    fn new(c: &Consts) -> Self {
        let z = _mm256_setzero_si256();
        let mut s = Scratch { w2: [z; 64], kw2: [z; 64], w3: [z; 64], kw3: [z; 64] };
        s.kw2[4..18].copy_from_slice(&c.kw2[4..18]);
        s.w2[16] = c.w16;
        s.w2[17] = c.w17;
        s.kw3[8..16].copy_from_slice(&c.kw3[8..16]);
        s
    }
}

/// One iteration: the eight nonces in the lanes of `nonces` (native order). Returns, per lane,
/// H7 of the second hash (E after round 60 + IV7).
#[inline]
#[target_feature(enable = "avx2")]
#[allow(unused_assignments, reason = "the round macros also write state the early reject never reads")]
fn hash8(c: &Consts, nonces: __m256i, s: &mut Scratch) -> __m256i {
    let (w, kw) = (&mut s.w2, &mut s.kw2);
    // ---- block 2, from round 4 ----
    let w3 = _mm256_shuffle_epi8(nonces, c.bswap);
    w[3] = w3;
    let [mut a, mut b, mut cc, mut d, mut e, mut f, mut g, mut h] = c.s3;
    a = add(a, w3);
    e = add(e, w3);
    let mut ab = c.ab3;
    // The schedule words that depend on the nonce; zero terms (W5..W14) are left out. W16,
    // W17 and K+W of rounds 4..=17 are constants already in `s`.
    w[18] = add(c.c18, ssig0(w3));
    w[19] = add(c.c19, w3);
    w[20] = add(ssig1(w[18]), c.c20);
    w[21] = ssig1(w[19]);
    w[22] = add(ssig1(w[20]), c.c22);
    w[23] = add(ssig1(w[21]), c.w16);
    w[24] = add(ssig1(w[22]), c.w17);
    w[25] = add(ssig1(w[23]), w[18]);
    w[26] = add(ssig1(w[24]), w[19]);
    w[27] = add(ssig1(w[25]), w[20]);
    w[28] = add(ssig1(w[26]), w[21]);
    w[29] = add(ssig1(w[27]), w[22]);
    w[30] = add(add(ssig1(w[28]), w[23]), c.c30);
    w[31] = add(add(ssig1(w[29]), w[24]), c.c31);
    w[32] = add(add(ssig1(w[30]), w[25]), c.c32);
    for t in 18..33 {
        kw[t] = add(w[t], c.k[t]);
    }
    for t in 33..64 {
        w[t] = sched!(w, t);
        kw[t] = add(w[t], c.k[t]);
    }
    round!(a, b, cc, d, e, f, g, h, kw[4], ab);
    round!(h, a, b, cc, d, e, f, g, kw[5], ab);
    round!(g, h, a, b, cc, d, e, f, kw[6], ab);
    round!(f, g, h, a, b, cc, d, e, kw[7], ab);
    let mut i = 8;
    while i < 64 {
        rounds8!(e, f, g, h, a, b, cc, d, kw, i, ab);
        i += 8;
    }
    // State order is now (e, f, g, h, a, b, cc, d); the first digest is midstate + state.
    let hash1 = [e, f, g, h, a, b, cc, d];

    // ---- block 3 ----
    let (w, kw) = (&mut s.w3, &mut s.kw3);
    for t in 0..8 {
        w[t] = add(hash1[t], c.mid[t]);
        kw[t] = add(w[t], c.k[t]);
    }
    // K+W of rounds 8..=15 are constants already in `s`. W8 = 0x80000000, W9..W14 = 0, W15 = 256.
    w[16] = add(ssig0(w[1]), w[0]);
    w[17] = add(add(ssig0(w[2]), w[1]), c.c17_3);
    w[18] = add(add(ssig1(w[16]), ssig0(w[3])), w[2]);
    w[19] = add(add(ssig1(w[17]), ssig0(w[4])), w[3]);
    w[20] = add(add(ssig1(w[18]), ssig0(w[5])), w[4]);
    w[21] = add(add(ssig1(w[19]), ssig0(w[6])), w[5]);
    w[22] = add(add(ssig1(w[20]), ssig0(w[7])), add(w[6], c.pad15));
    w[23] = add(add(ssig1(w[21]), w[16]), add(w[7], c.c23_3));
    w[24] = add(add(ssig1(w[22]), w[17]), c.pad8);
    w[25] = add(ssig1(w[23]), w[18]);
    w[26] = add(ssig1(w[24]), w[19]);
    w[27] = add(ssig1(w[25]), w[20]);
    w[28] = add(ssig1(w[26]), w[21]);
    w[29] = add(ssig1(w[27]), w[22]);
    w[30] = add(add(ssig1(w[28]), w[23]), c.c30_3);
    w[31] = add(add(ssig1(w[29]), w[24]), add(ssig0(w[16]), c.pad15));
    for t in 16..32 {
        kw[t] = add(w[t], c.k[t]);
    }
    for t in 32..61 {
        w[t] = sched!(w, t);
        kw[t] = add(w[t], c.k[t]);
    }
    // Round 0 from the IV: new A and E are constants plus W0; B..D, F..H are IV words.
    let [a0, b0, c0, _, e0, f0, g0, _] = c.iv;
    let (mut a, mut b, mut cc, mut d, mut e, mut f, mut g) = (a0, b0, c0, add(c.r0_e, w[0]), e0, f0, g0);
    let mut h = add(c.r0_a, w[0]);
    let mut ab = c.ab0;
    // Order after round 0: (h, a, b, cc, d, e, f, g).
    let mut i = 1;
    while i < 57 {
        rounds8!(h, a, b, cc, d, e, f, g, kw, i, ab);
        i += 8;
    }
    round!(h, a, b, cc, d, e, f, g, kw[57], ab);
    round!(g, h, a, b, cc, d, e, f, kw[58], ab);
    round!(f, g, h, a, b, cc, d, e, kw[59], ab);
    // Order is (e, f, g, h, a, b, cc, d): round 60's T1 gives E after round 60.
    let ch = xor(and(xor(b, cc), a), cc);
    let t1 = add(add(d, bsig1(a)), add(ch, kw[60]));
    add(add(h, t1), c.iv7)
}

/// Scans `range` with the AVX2 kernel; the nonces left after the last full group of eight go
/// through the scalar loop.
#[target_feature(enable = "avx2")]
pub(crate) fn scan(job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
    let pre = Prehash::new(job);
    let c = Consts::new(job, &pre);
    let top = target.top_word();
    let topv = splat(top);
    let groups = range.count() / LANES as u64;
    let start = range.start();
    // Lane nonces start..start+7; after the last group of a range ending at 2^32 - 1 they wrap,
    // unused.
    let s = start as i32;
    let mut nonces = _mm256_setr_epi32(
        s,
        s.wrapping_add(1),
        s.wrapping_add(2),
        s.wrapping_add(3),
        s.wrapping_add(4),
        s.wrapping_add(5),
        s.wrapping_add(6),
        s.wrapping_add(7),
    );
    let step = splat(LANES as u32);
    let mut scratch = Scratch::new(&c);
    let mut base = start;
    for _ in 0..groups {
        let h7 = hash8(&c, nonces, &mut scratch);
        // Candidate where bswap(H7) <= top, i.e. min(bswap(H7), top) == bswap(H7).
        let be = _mm256_shuffle_epi8(h7, c.bswap);
        let pass = _mm256_cmpeq_epi32(_mm256_min_epu32(be, topv), be);
        let mask = _mm256_movemask_ps(_mm256_castsi256_ps(pass));
        if mask != 0 {
            for l in 0..LANES {
                if mask & (1 << l) != 0 {
                    scalar::confirm(job, base.wrapping_add(l as u32), target, found);
                }
            }
        }
        nonces = add(nonces, step);
        base = base.wrapping_add(LANES as u32);
    }
    let done = groups * LANES as u64;
    let rest = range.count() - done;
    if rest > 0 {
        // `start + done` is below 2^32 here because `rest > 0` nonces follow it in the range.
        let tail_start = (u64::from(start) + done) as u32;
        scalar::scan_with(job, &pre, tail_start, rest, top, target, found);
    }
    range.count()
}
