//! Bring-up and mining against the in-process emulator over a real pty, every generation,
//! one chip and a chain of 16.

mod common;

use common::*;
use firmware_protocol::emulator::Faults;
use hashrig_hasher::{HashCount, Hasher};
use hashrig_hasher_asic::ChipType;

fn mines(chip: ChipType, chips: usize) {
    let (mut h, _) = spawn(chip, chips, Faults::default());
    let info = h.chain_info().clone();
    assert_eq!(info.chip_type, chip);
    assert_eq!(info.chips, chips);
    assert_eq!(info.addresses.len(), chips);
    assert_eq!(info.addresses[chips - 1] as usize, (chips - 1) * (256 / chips));
    assert!((info.mhz - f64::from(chip.default_mhz())).abs() < 7.0, "ramped to {}", info.mhz);
    let want_nominal = info.mhz * 1e6 * f64::from(chip.small_core_count()) * chips as f64;
    assert!((info.nominal_hashrate - want_nominal).abs() < 1.0);
    assert!(info.baud > 115_200, "baud was raised");
    assert!(matches!(h.info().hash_count, HashCount::Estimated { .. }));
    // Emulator state says the same as the driver.
    let snaps = h.emulator().unwrap().chips();
    assert!(snaps.iter().all(|c| (c.mhz - info.mhz).abs() < 1e-6));
    assert_eq!(snaps.iter().map(|c| c.address).collect::<Vec<_>>(), info.addresses);

    let mask = if chip == ChipType::Bm1397 { 0x0000_6000 } else { 0x1fff_e000 };
    // Every ticket nonce comes to the driver; unit target = the ticket's.
    let target = firmware_protocol::emulator::target_for_zero_bits(TEST_BITS);
    let (found, ctl) = run_units(&mut h, 2, target, mask);
    assert!(found.len() >= 20, "{chip} x{chips}: only {} candidates", found.len());
    let mut versions = std::collections::BTreeSet::new();
    let mut chips_seen = std::collections::BTreeSet::new();
    for (unit, c) in &found {
        let d = digest(unit, c);
        assert!(leading_zero_bits(&d) >= u32::from(TEST_BITS), "candidate does not verify");
        assert_eq!((c.version ^ unit.version()) & !mask, 0, "version outside the mask");
        versions.insert(c.version);
        chips_seen.insert(c.origin.chip.unwrap());
        assert!(c.origin.core.is_some());
    }
    assert!(versions.len() > 1, "{chip}: versions were rolled");
    if chips > 1 {
        assert!(chips_seen.len() > 1, "nonces come from several chips: {chips_seen:?}");
    }
    let snap = h.stats().snapshot();
    assert_eq!(snap.hw_errors, 0);
    assert_eq!(snap.duplicates, 0);
    assert_eq!(snap.valid_nonces as usize, found.len());
    assert_eq!(ctl.hashes(), snap.valid_nonces << TEST_BITS);
}

#[test]
fn bm1397_single_chip_mines() {
    mines(ChipType::Bm1397, 1);
}
#[test]
fn bm1366_single_chip_mines() {
    mines(ChipType::Bm1366, 1);
}
#[test]
fn bm1368_single_chip_mines() {
    mines(ChipType::Bm1368, 1);
}
#[test]
fn bm1370_single_chip_mines() {
    mines(ChipType::Bm1370, 1);
}
#[test]
fn bm1397_chain_of_16_mines() {
    mines(ChipType::Bm1397, 16);
}
#[test]
fn bm1366_chain_of_16_mines() {
    mines(ChipType::Bm1366, 16);
}
#[test]
fn bm1368_chain_of_16_mines() {
    mines(ChipType::Bm1368, 16);
}
#[test]
fn bm1370_chain_of_16_mines() {
    mines(ChipType::Bm1370, 16);
}
