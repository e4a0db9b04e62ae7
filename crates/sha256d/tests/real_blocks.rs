//! Real mainnet headers (tests/data/blocks.txt): every kernel finds the real nonce, and only it,
//! when scanning a range around it at the block's own target.

mod common;

use common::{blocks, scan, sha2_digest, target_from_nbits};
use hashrig_sha256d::{Kernel, Target, sha256d_header};

#[test]
fn real_headers_hash_to_their_block_hashes() {
    let blocks = blocks();
    assert_eq!(blocks.len(), 2, "genesis and block 125552");
    for b in blocks {
        let mut display = sha256d_header(&b.header);
        assert_eq!(display, sha2_digest(&b.header, b.nonce), "{}", b.name);
        display.reverse();
        assert_eq!(hex::encode(display), b.hash_display, "{}", b.name);
        let nonce_field = u32::from_le_bytes(b.header[76..80].try_into().expect("4 bytes"));
        assert_eq!(nonce_field, b.nonce, "{}: the header carries the listed nonce", b.name);
    }
}

#[test]
fn real_block_hashes_meet_their_nbits_target() {
    for b in blocks() {
        let target = target_from_nbits(b.nbits);
        assert!(target.is_met_by(&sha256d_header(&b.header)), "{}", b.name);
        assert!(common::meets(&sha256d_header(&b.header), &target), "{}", b.name);
    }
}

#[test]
fn every_kernel_finds_the_real_nonce_and_only_it_at_the_block_target() {
    for b in blocks() {
        let target = target_from_nbits(b.nbits);
        // 4099 nonces (not a multiple of any lane count) with the real one off-centre.
        let start = b.nonce - 1500;
        for k in Kernel::available() {
            let found = scan(k, &b.header, start, 4099, &target);
            assert_eq!(found, vec![b.nonce], "kernel {k}, block {}", b.name);
        }
    }
}

#[test]
fn every_kernel_finds_the_real_nonce_in_every_lane_position() {
    // Start the range at each offset before the nonce, so the winning nonce sits in every lane
    // of every kernel and in the scalar tail.
    let b = &blocks()[1];
    let target = target_from_nbits(b.nbits);
    for k in Kernel::available() {
        for back in 0..=2 * k.lanes() + 1 {
            for count in [u64::from(back) + 1, u64::from(back) + 9] {
                let found = scan(k, &b.header, b.nonce - back, count, &target);
                assert_eq!(found, vec![b.nonce], "kernel {k}, nonce at offset {back} of {count}");
            }
        }
    }
}

#[test]
fn a_real_block_is_not_found_at_a_target_just_below_its_hash() {
    for b in blocks() {
        let digest = sha256d_header(&b.header);
        // The digest's integer with its most significant non-zero byte lowered by one: below
        // the hash but sharing its top word for these very low hashes, so only the full
        // comparison rejects it.
        let mut t = digest;
        let i = (0..32).rev().find(|&i| t[i] != 0).expect("a non-zero hash");
        t[i] -= 1;
        let target = Target::from_le_bytes(t);
        for k in Kernel::available() {
            let found = scan(k, &b.header, b.nonce - 10, 20, &target);
            assert_eq!(found, Vec::<u32>::new(), "kernel {k}, block {}", b.name);
        }
    }
}
