//! The shared conformance kit on an emulated chain, for the checks an ASIC can take.
//!
//! The driver sends a unit's range start as the job's starting nonce and the emulator starts
//! its sweep at the 2^16-nonce block holding it, so windows near a real block's nonce (around
//! 2^31) are reached in the first milliseconds of a job: the real-block and easy-target checks
//! run here, with an emulator-only ticket of 8 leading zero bits (the easy target is one hash in
//! 256, so every nonce that meets it comes back) and a small hash budget per job (the chain
//! stops after 2^18 hashes, enough to cover any of the kit's windows, so nothing from one sweep
//! arrives during the next).
//!
//! Not run: `honours_range_ends` wants every nonce under the maximum target reported, i.e. a
//! ticket of 0 bits (every hash sent back); the emulator's ticket override is 1 bit at least,
//! and a real chip's is 32. The epoch and counting checks run with the usual test ticket.

mod common;

use std::time::Duration;

use common::*;
use firmware_protocol::emulator::{Emulator, EmulatorConfig, Faults};
use hashrig_hasher::testkit::{
    KitConfig, counts_hashes_correctly, finds_real_block_nonces, finds_reference_set_under_easy_target, stops_after_epoch_bump,
};
use hashrig_hasher_asic::{AsicHasher, ChipType, SerialLink, emulated_config};

/// Ticket for the range checks: 8 leading zero bits, as easy as the kit's easy target.
const KIT_BITS: u8 = 8;

/// A chain for the range checks: low ticket, 2^18 hashes per job, half a second per unit.
fn spawn_for_ranges(chip: ChipType, chips: usize) -> AsicHasher<SerialLink> {
    let mut ecfg = EmulatorConfig::new(chip, chips);
    ecfg.hash_budget_per_job = Some(1 << 18);
    let emu = Emulator::spawn(ecfg).expect("emulator starts");
    let mut cfg = emulated_config(chip, chips);
    cfg.emulator_ticket_zero_bits = Some(KIT_BITS);
    cfg.job_interval = Some(Duration::from_millis(500));
    cfg.heartbeat = Duration::from_millis(200);
    AsicHasher::with_emulator(emu, cfg).expect("chain comes up")
}

#[test]
fn emulated_chains_find_the_real_block_nonces() {
    for chip in [ChipType::Bm1397, ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370] {
        let mut h = spawn_for_ranges(chip, 4);
        finds_real_block_nonces(&mut h, &KitConfig::slow()).unwrap_or_else(|f| panic!("{chip}: {f}"));
        let s = h.stats().snapshot();
        assert_eq!(s.hw_errors, 0, "{chip}: no faults injected");
        // The window is a slice of what the chain hashed: more ticket nonces came back than
        // the two blocks' windows hold (4096 nonces each, ~16 at 8 bits).
        assert!(s.valid_nonces > 64, "{chip}: only {} ticket nonces", s.valid_nonces);
    }
}

#[test]
fn emulated_chains_find_the_reference_set_under_an_easy_target() {
    for chip in [ChipType::Bm1397, ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370] {
        let mut h = spawn_for_ranges(chip, 4);
        finds_reference_set_under_easy_target(&mut h, &KitConfig::slow()).unwrap_or_else(|f| panic!("{chip}: {f}"));
    }
}

#[test]
fn a_16_chip_chain_finds_the_reference_set_under_an_easy_target() {
    let mut h = spawn_for_ranges(ChipType::Bm1366, 16);
    finds_reference_set_under_easy_target(&mut h, &KitConfig::slow()).unwrap();
}

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
