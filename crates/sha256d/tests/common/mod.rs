//! Reference helpers shared by the test binaries: everything here is computed with the `sha2`
//! crate and plain integer comparisons, independently of the code under test.
#![allow(dead_code)]

use hashrig_sha256d::{Kernel, NonceRange, ScanJob, Scanner, Target};
use sha2::{Digest, Sha256};

/// sha256d of a header with `nonce` written into bytes 76..80, by the `sha2` crate.
pub fn sha2_digest(header: &[u8; 80], nonce: u32) -> [u8; 32] {
    let mut h = *header;
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    Sha256::digest(Sha256::digest(h)).into()
}

/// Does the digest, read as a little-endian 256-bit integer, not exceed the target's integer?
/// Compared most significant byte first, written without the crate's `Target::is_met_by`.
pub fn meets(digest: &[u8; 32], target: &Target) -> bool {
    let d: Vec<u8> = digest.iter().rev().copied().collect();
    let t: Vec<u8> = target.0.iter().rev().copied().collect();
    d <= t
}

/// Every nonce of the range whose sha2 sha256d meets the target, in increasing order.
pub fn brute_force(header: &[u8; 80], start: u32, count: u64, target: &Target) -> Vec<u32> {
    (0..count)
        .map(|i| (u64::from(start) + i) as u32)
        .filter(|&n| meets(&sha2_digest(header, n), target))
        .collect()
}

/// Scan with one forced kernel and return the found nonces, checking the hash count.
pub fn scan(kernel: Kernel, header: &[u8; 80], start: u32, count: u64, target: &Target) -> Vec<u32> {
    let scanner = Scanner::new(kernel).expect("only available kernels are scanned");
    assert_eq!(scanner.kernel(), kernel);
    let range = NonceRange::new(start, count).expect("test ranges stay within the nonce space");
    let mut found = Vec::new();
    let done = scanner.scan(&ScanJob::new(header), range, target, &mut found);
    assert_eq!(done, count, "kernel {kernel} reports the hashes it did");
    found
}

/// The target of a compact `nbits` field: mantissa * 256^(exponent - 3).
pub fn target_from_nbits(nbits: u32) -> Target {
    let exp = (nbits >> 24) as usize;
    let mantissa = nbits & 0x00ff_ffff;
    assert!((3..=32).contains(&exp), "test nbits have a normal exponent");
    let mut le = [0u8; 32];
    for (i, b) in mantissa.to_le_bytes()[..3].iter().enumerate() {
        le[exp - 3 + i] = *b;
    }
    Target::from_le_bytes(le)
}

/// A target whose most significant 32 bits are `top` and whose lower bits are all ones.
pub fn target_with_top(top: u32) -> Target {
    let mut le = [0xffu8; 32];
    le[28..].copy_from_slice(&top.to_le_bytes());
    Target::from_le_bytes(le)
}

pub struct Block {
    pub name: String,
    pub nonce: u32,
    pub nbits: u32,
    pub header: [u8; 80],
    pub hash_display: String,
}

/// The real block headers of `tests/data/blocks.txt`.
pub fn blocks() -> Vec<Block> {
    let text = include_str!("../data/blocks.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 5, "blocks.txt line has 5 fields: {line}");
            Block {
                name: f[0].to_owned(),
                nonce: f[1].parse().expect("decimal nonce"),
                nbits: u32::from_str_radix(f[2], 16).expect("hex nbits"),
                header: hex::decode(f[3]).expect("hex header").try_into().expect("80-byte header"),
                hash_display: f[4].to_owned(),
            }
        })
        .collect()
}
