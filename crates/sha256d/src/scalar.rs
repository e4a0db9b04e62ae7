//! The portable kernel, and the nonce-independent precomputation every kernel shares.

use crate::{IV, K, NonceRange, ScanJob, Target};

#[inline(always)]
pub(crate) fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
#[inline(always)]
pub(crate) fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}
#[inline(always)]
pub(crate) fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
#[inline(always)]
pub(crate) fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}
#[inline(always)]
fn ch(e: u32, f: u32, g: u32) -> u32 {
    ((f ^ g) & e) ^ g
}
#[inline(always)]
fn maj(a: u32, b: u32, c: u32) -> u32 {
    (a & b) | (c & (a | b))
}

/// One SHA-256 round on state `s` = [a, b, c, d, e, f, g, h] with `kw` = `K[i] + W[i]`.
#[inline(always)]
fn round(s: &mut [u32; 8], kw: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h.wrapping_add(big_sigma1(e)).wrapping_add(ch(e, f, g)).wrapping_add(kw);
    let t2 = big_sigma0(a).wrapping_add(maj(a, b, c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

/// Full compression of 16 message words into `state`.
pub(crate) fn compress_words(state: &mut [u32; 8], block: &[u32; 16]) {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(block);
    for i in 16..64 {
        w[i] = small_sigma1(w[i - 2])
            .wrapping_add(w[i - 7])
            .wrapping_add(small_sigma0(w[i - 15]))
            .wrapping_add(w[i - 16]);
    }
    let mut s = *state;
    for i in 0..64 {
        round(&mut s, K[i].wrapping_add(w[i]));
    }
    for (x, y) in state.iter_mut().zip(s) {
        *x = x.wrapping_add(y);
    }
}

/// Message words of the second header block for a nonce: tail, byte-swapped nonce, padding.
pub(crate) fn block2_words(job: &ScanJob, nonce: u32) -> [u32; 16] {
    let mut w = [0u32; 16];
    w[..3].copy_from_slice(&job.tail);
    w[3] = nonce.swap_bytes();
    w[4] = 0x8000_0000;
    w[15] = 80 * 8;
    w
}

/// Message words of the block that hashes a 32-byte digest (state words + padding).
pub(crate) fn block3_words(hash1: &[u32; 8]) -> [u32; 16] {
    let mut w = [0u32; 16];
    w[..8].copy_from_slice(hash1);
    w[8] = 0x8000_0000;
    w[15] = 32 * 8;
    w
}

/// The raw sha256d digest of a header given by `job` and `nonce`, without shortcuts.
pub(crate) fn full_digest(job: &ScanJob, nonce: u32) -> [u8; 32] {
    let mut hash1 = job.midstate.0;
    compress_words(&mut hash1, &block2_words(job, nonce));
    let mut hash2 = IV;
    compress_words(&mut hash2, &block3_words(&hash1));
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(hash2) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Work that does not depend on the nonce, done once per job and range (every kernel, the GPU
/// backend's host side included, starts block 2 from this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prehash {
    /// State after rounds 0..=2 of block 2: [a, b, c, d, e, f, g, h].
    pub state3: [u32; 8],
    /// Round 3's T1 without the message word: h + Σ1(e) + Ch(e, f, g) + K3.
    pub t1_base: u32,
    /// Round 3's T2: Σ0(a) + Maj(a, b, c). Does not depend on the nonce.
    pub t2: u32,
    /// Schedule words 16 and 17 of block 2: they use W0..W2, W9..W15 only.
    pub w16: u32,
    pub w17: u32,
}

impl Prehash {
    pub fn new(job: &ScanJob) -> Self {
        let w = block2_words(job, 0);
        let mut s = job.midstate.0;
        for (i, wi) in w.iter().enumerate().take(3) {
            round(&mut s, K[i].wrapping_add(*wi));
        }
        let [a, b, c, _d, e, f, g, h] = s;
        let t1_base = h.wrapping_add(big_sigma1(e)).wrapping_add(ch(e, f, g)).wrapping_add(K[3]);
        let t2 = big_sigma0(a).wrapping_add(maj(a, b, c));
        let w16 = small_sigma1(w[14]).wrapping_add(w[9]).wrapping_add(small_sigma0(w[1])).wrapping_add(w[0]);
        let w17 = small_sigma1(w[15]).wrapping_add(w[10]).wrapping_add(small_sigma0(w[2])).wrapping_add(w[1]);
        Self { state3: s, t1_base, t2, w16, w17 }
    }
}

/// The first hash (state after block 2, midstate added) for one nonce, from the prehash.
#[inline(always)]
fn first_hash(job: &ScanJob, pre: &Prehash, nonce: u32) -> [u32; 8] {
    let w3 = nonce.swap_bytes();
    let w = block2_words(job, nonce);
    let mut ws = [0u32; 64];
    ws[..16].copy_from_slice(&w);
    ws[16] = pre.w16;
    ws[17] = pre.w17;
    for i in 18..64 {
        ws[i] = small_sigma1(ws[i - 2])
            .wrapping_add(ws[i - 7])
            .wrapping_add(small_sigma0(ws[i - 15]))
            .wrapping_add(ws[i - 16]);
    }
    let [a, b, c, d, e, f, g, _h] = pre.state3;
    let t1 = pre.t1_base.wrapping_add(w3);
    let mut s = [t1.wrapping_add(pre.t2), a, b, c, d.wrapping_add(t1), e, f, g];
    for i in 4..64 {
        round(&mut s, K[i].wrapping_add(ws[i]));
    }
    let mut hash1 = job.midstate.0;
    for (x, y) in hash1.iter_mut().zip(s) {
        *x = x.wrapping_add(y);
    }
    hash1
}

/// H7 of the second hash: final after round 60, so rounds 61-63 are skipped.
#[inline(always)]
fn second_hash_h7(hash1: &[u32; 8]) -> u32 {
    let b = block3_words(hash1);
    let mut ws = [0u32; 61];
    ws[..16].copy_from_slice(&b);
    for i in 16..61 {
        ws[i] = small_sigma1(ws[i - 2])
            .wrapping_add(ws[i - 7])
            .wrapping_add(small_sigma0(ws[i - 15]))
            .wrapping_add(ws[i - 16]);
    }
    let mut s = IV;
    for i in 0..61 {
        round(&mut s, K[i].wrapping_add(ws[i]));
    }
    // After 61 rounds, e will have become h by round 64.
    IV[7].wrapping_add(s[4])
}

/// Checks a nonce that passed a kernel's early reject against the whole target.
#[inline]
pub(crate) fn confirm(job: &ScanJob, nonce: u32, target: &Target, found: &mut Vec<u32>) {
    if target.is_met_by(&full_digest(job, nonce)) {
        found.push(nonce);
    }
}

pub(crate) fn scan(job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
    let pre = Prehash::new(job);
    let top = target.top_word();
    scan_with(job, &pre, range.start(), range.count(), top, target, found);
    range.count()
}

/// The scalar loop, also used by the SIMD kernels for the nonces left over after their lanes.
pub(crate) fn scan_with(
    job: &ScanJob,
    pre: &Prehash,
    start: u32,
    count: u64,
    top: u32,
    target: &Target,
    found: &mut Vec<u32>,
) {
    for i in 0..count {
        // `start + i` stays below 2^32 because the range was validated.
        let nonce = (u64::from(start) + i) as u32;
        let h7 = second_hash_h7(&first_hash(job, pre, nonce));
        if h7.swap_bytes() <= top {
            confirm(job, nonce, target, found);
        }
    }
}
