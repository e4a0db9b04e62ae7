//! The shared conformance kit on an emulated chain, for the checks an ASIC can take.
//!
//! A chip sweeps the whole nonce space from 0 on every job and cannot be told to hash a narrow
//! range, so the kit's range checks (real blocks near nonce 2^31, the last nonces below 2^32,
//! every nonce under the maximum target) would need an emulator that starts at the job's
//! starting-nonce field; they are not run here. The epoch and counting checks are.

mod common;

use common::*;
use firmware_protocol::emulator::Faults;
use hashrig_hasher::testkit::{KitConfig, counts_hashes_correctly, stops_after_epoch_bump};
use hashrig_hasher_asic::ChipType;

#[test]
fn emulated_chain_stops_within_the_kit_bound_after_an_epoch_bump() {
    for chip in [ChipType::Bm1397, ChipType::Bm1370] {
        let (mut h, _) = spawn(chip, 4, Faults::default());
        stops_after_epoch_bump(&mut h, &KitConfig::slow()).unwrap_or_else(|f| panic!("{chip}: {f}"));
    }
}

#[test]
fn emulated_chain_counts_hashes_consistently() {
    let (mut h, _) = spawn(ChipType::Bm1366, 2, Faults::default());
    counts_hashes_correctly(&mut h, &KitConfig::slow()).unwrap();
    assert!(h.stats().snapshot().valid_nonces > 0, "the count rests on real nonces");
}
