//! The x86-64 AVX-512 kernel: 16 nonces, one per 32-bit lane of a 512-bit vector.
//!
//! For x86-64 CPUs with AVX-512 (F and BW) and no SHA-NI (Skylake-SP, Cascade Lake), and the
//! fastest kernel on CPUs whose SHA unit is slow (see `Kernel::ALL`). It is the AVX2 kernel
//! (`x86_avx2.rs`, which explains the tricks) twice as wide, with AVX-512's native rotate
//! `vprord` (one instruction where AVX2 needs shift, shift, or) and three-input logic
//! `vpternlogd`: Σ0, Σ1, σ0 and σ1 are three rotates or shifts and one `vpternlogd`; Ch
//! (`e ? f : g`, truth table 0xca) and Maj (0xe8) are one instruction each. The tricks are the
//! AVX2 kernel's, early reject included: block 2 starts after round 3, the nonce-independent
//! schedule terms are folded into broadcast constants, block 3 stops after the T1 half of
//! round 60, and the 16 lanes are compared with the target's top word in one `vpcmpud` into a
//! mask register; only candidate lanes are hashed again in full by [`scalar::confirm`].

use core::arch::x86_64::{
    __m512i, _mm_setr_epi8, _mm512_add_epi32, _mm512_broadcast_i32x4, _mm512_cmple_epu32_mask, _mm512_ror_epi32,
    _mm512_set1_epi32, _mm512_setr_epi32, _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_srli_epi32,
    _mm512_ternarylogic_epi32,
};

use crate::scalar::{self, Prehash, big_sigma0, big_sigma1, small_sigma0, small_sigma1};
use crate::{IV, K, NonceRange, ScanJob, Target};

/// Nonces per vector.
const LANES: usize = 16;

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn add(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(a, b)
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn splat(x: u32) -> __m512i {
    _mm512_set1_epi32(x as i32)
}

/// `a ^ b ^ c` in one instruction.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0x96>(a, b, c)
}
/// Σ0(a) = ror2 ^ ror13 ^ ror22.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn bsig0(x: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<2>(x), _mm512_ror_epi32::<13>(x), _mm512_ror_epi32::<22>(x))
}
/// Σ1(e) = ror6 ^ ror11 ^ ror25.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn bsig1(x: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<6>(x), _mm512_ror_epi32::<11>(x), _mm512_ror_epi32::<25>(x))
}
/// σ0(x) = ror7 ^ ror18 ^ shr3.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn ssig0(x: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<7>(x), _mm512_ror_epi32::<18>(x), _mm512_srli_epi32::<3>(x))
}
/// σ1(x) = ror17 ^ ror19 ^ shr10.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn ssig1(x: __m512i) -> __m512i {
    xor3(_mm512_ror_epi32::<17>(x), _mm512_ror_epi32::<19>(x), _mm512_srli_epi32::<10>(x))
}

/// One round. `kw` is K+W for it. Writes the new E into `d` and the new A into `h`. Ch and Maj
/// are one `vpternlogd` each.
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {{
        let ch = _mm512_ternarylogic_epi32::<0xca>($e, $f, $g);
        let t1 = add(add($h, bsig1($e)), add(ch, $kw));
        let maj = _mm512_ternarylogic_epi32::<0xe8>($a, $b, $c);
        $d = add($d, t1);
        $h = add(t1, add(bsig0($a), maj));
    }};
}

/// Eight rounds from index `$i`, taking K+W from `$kw[$i..$i + 8]`; names come back in order.
macro_rules! rounds8 {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:ident, $i:expr) => {
        round!($a, $b, $c, $d, $e, $f, $g, $h, $kw[$i]);
        round!($h, $a, $b, $c, $d, $e, $f, $g, $kw[$i + 1]);
        round!($g, $h, $a, $b, $c, $d, $e, $f, $kw[$i + 2]);
        round!($f, $g, $h, $a, $b, $c, $d, $e, $kw[$i + 3]);
        round!($e, $f, $g, $h, $a, $b, $c, $d, $kw[$i + 4]);
        round!($d, $e, $f, $g, $h, $a, $b, $c, $kw[$i + 5]);
        round!($c, $d, $e, $f, $g, $h, $a, $b, $kw[$i + 6]);
        round!($b, $c, $d, $e, $f, $g, $h, $a, $kw[$i + 7]);
    };
}

/// The nonce-independent part of the work, as broadcast vectors.
struct Consts {
    /// Block 2 state after round 3 without the nonce term (A and E get W3 added).
    s3: [__m512i; 8],
    /// Block 2 K+W for rounds 4..=17 (index = round), schedule words W16, W17 and the folded
    /// constant terms of W18..W32.
    kw2: [__m512i; 18],
    w16: __m512i,
    w17: __m512i,
    c18: __m512i,
    c19: __m512i,
    c20: __m512i,
    c22: __m512i,
    c30: __m512i,
    c31: __m512i,
    c32: __m512i,
    mid: [__m512i; 8],
    /// Block 3: state after round 0 without W0 (A and E get W0 added), 
    /// K+W of rounds 8..=15 and the folded constants of W17..W31.
    r0_a: __m512i,
    r0_e: __m512i,
    iv: [__m512i; 8],
    kw3: [__m512i; 16],
    c17_3: __m512i,
    c23_3: __m512i,
    c30_3: __m512i,
    pad8: __m512i,
    pad15: __m512i,
    k: [__m512i; 64],
    bswap: __m512i,
    iv7: __m512i,
}

impl Consts {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn new(job: &ScanJob, pre: &Prehash) -> Self {
        let mut w = [0u32; 16];
        w[..3].copy_from_slice(&job.tail);
        w[4] = 0x8000_0000;
        w[15] = 80 * 8;
        let [a, b, c, d, e, f, g, _h] = pre.state3;
        let (w16, w17) = (pre.w16, pre.w17);
        let z = _mm512_setzero_si512();
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
        let mut bs = [0i8; 16];
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
            kw3,
            c17_3: splat(small_sigma1(p15)),
            c23_3: splat(small_sigma0(p8)),
            c30_3: splat(small_sigma0(p15)),
            pad8: splat(p8),
            pad15: splat(p15),
            k,
            // The same 16-byte shuffle in each 128-bit block (`vpshufb` works per block).
            bswap: _mm512_broadcast_i32x4(_mm_setr_epi8(
                bs[0], bs[1], bs[2], bs[3], bs[4], bs[5], bs[6], bs[7], bs[8], bs[9], bs[10], bs[11], bs[12],
                bs[13], bs[14], bs[15],
            )),
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
    w2: [__m512i; 64],
    kw2: [__m512i; 64],
    w3: [__m512i; 64],
    kw3: [__m512i; 64],
}

impl Scratch {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn new(c: &Consts) -> Self {
        let z = _mm512_setzero_si512();
        let mut s = Scratch { w2: [z; 64], kw2: [z; 64], w3: [z; 64], kw3: [z; 64] };
        s.kw2[4..18].copy_from_slice(&c.kw2[4..18]);
        s.w2[16] = c.w16;
        s.w2[17] = c.w17;
        s.kw3[8..16].copy_from_slice(&c.kw3[8..16]);
        s
    }
}

/// One iteration: the 16 nonces in the lanes of `nonces` (native order). Returns, per lane,
/// H7 of the second hash (E after round 60 + IV7).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(unused_assignments, reason = "the round macros also write state the early reject never reads")]
fn hash16(c: &Consts, nonces: __m512i, s: &mut Scratch) -> __m512i {
    let (w, kw) = (&mut s.w2, &mut s.kw2);
    // ---- block 2, from round 4 ----
    let w3 = _mm512_shuffle_epi8(nonces, c.bswap);
    w[3] = w3;
    let [mut a, mut b, mut cc, mut d, mut e, mut f, mut g, mut h] = c.s3;
    a = add(a, w3);
    e = add(e, w3);
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
    round!(a, b, cc, d, e, f, g, h, kw[4]);
    round!(h, a, b, cc, d, e, f, g, kw[5]);
    round!(g, h, a, b, cc, d, e, f, kw[6]);
    round!(f, g, h, a, b, cc, d, e, kw[7]);
    let mut i = 8;
    while i < 64 {
        rounds8!(e, f, g, h, a, b, cc, d, kw, i);
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
    // Order after round 0: (h, a, b, cc, d, e, f, g).
    let mut i = 1;
    while i < 57 {
        rounds8!(h, a, b, cc, d, e, f, g, kw, i);
        i += 8;
    }
    round!(h, a, b, cc, d, e, f, g, kw[57]);
    round!(g, h, a, b, cc, d, e, f, kw[58]);
    round!(f, g, h, a, b, cc, d, e, kw[59]);
    // Order is (e, f, g, h, a, b, cc, d): round 60's T1 gives E after round 60.
    let ch = _mm512_ternarylogic_epi32::<0xca>(a, b, cc);
    let t1 = add(add(d, bsig1(a)), add(ch, kw[60]));
    add(add(h, t1), c.iv7)
}

/// Scans `range` with the AVX-512 kernel; the nonces left after the last full group of 16 go
/// through the scalar loop.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) fn scan(job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
    let pre = Prehash::new(job);
    let c = Consts::new(job, &pre);
    let top = target.top_word();
    let topv = splat(top);
    let groups = range.count() / LANES as u64;
    let start = range.start();
    // Lane nonces start..start+7; after the last group of a range ending at 2^32 - 1 they wrap,
    // unused.
    let mut nonces = add(splat(start), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    let step = splat(LANES as u32);
    let mut scratch = Scratch::new(&c);
    let mut base = start;
    for _ in 0..groups {
        let h7 = hash16(&c, nonces, &mut scratch);
        // Candidate where bswap(H7) <= top: one compare into a mask register.
        let be = _mm512_shuffle_epi8(h7, c.bswap);
        let mask = _mm512_cmple_epu32_mask(be, topv);
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
