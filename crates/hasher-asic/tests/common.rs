// Shared helpers for the emulator tests (included with `mod common;`).
#![allow(dead_code)]

use std::time::Duration;

use firmware_protocol::emulator::{Emulator, EmulatorConfig, Faults};
use hashrig_hasher::{Candidate, Control, Hasher, NonceRange, Sink, Target, WorkUnit};
use hashrig_hasher_asic::{AsicHasher, ChipType, SerialLink, emulated_config};

/// A header that is not a real block, distinct per tag.
pub fn header(tag: u8) -> [u8; 80] {
    let mut h = [0u8; 80];
    for (i, b) in h.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(tag);
    }
    h[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    h
}

/// Ticket of the emulated tests: 12 leading zero bits (one hash in 4096 comes back).
pub const TEST_BITS: u8 = 12;

pub fn spawn(chip: ChipType, chips: usize, faults: Faults) -> (AsicHasher<SerialLink>, ()) {
    let mut ecfg = EmulatorConfig::new(chip, chips);
    ecfg.faults = faults;
    ecfg.hash_budget_per_job = Some(1 << 24);
    let emu = Emulator::spawn(ecfg).expect("emulator starts");
    let mut cfg = emulated_config(chip, chips);
    cfg.emulator_ticket_zero_bits = Some(TEST_BITS);
    cfg.job_interval = Some(Duration::from_millis(300));
    cfg.heartbeat = Duration::from_millis(200);
    (AsicHasher::with_emulator(emu, cfg).expect("chain comes up"), ())
}

/// Run `units` units of one epoch each (fresh header per unit) and collect candidates.
pub fn run_units(h: &mut AsicHasher<SerialLink>, units: u64, target: Target, mask: u32) -> (Vec<(WorkUnit, Candidate)>, Control) {
    let ctl = Control::new();
    let (sink, rx) = Sink::channel();
    let mut all = Vec::new();
    let mut units_sent = Vec::new();
    for i in 0..units {
        let unit = WorkUnit {
            id: 100 + i,
            epoch: ctl.epoch(),
            header: header(i as u8),
            range: NonceRange::FULL,
            target,
            version_mask: mask,
        };
        h.hash(&unit, &ctl, &sink).expect("hash runs");
        units_sent.push(unit);
    }
    drop(sink);
    for c in rx.try_iter() {
        let u = units_sent.iter().find(|u| u.id == c.unit_id).expect("candidate names a unit we sent").clone();
        all.push((u, c));
    }
    (all, ctl)
}

/// sha256d of a unit's header with a candidate's version and nonce.
pub fn digest(unit: &WorkUnit, c: &Candidate) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = unit.header;
    h[0..4].copy_from_slice(&c.version.to_le_bytes());
    h[76..80].copy_from_slice(&c.nonce.to_le_bytes());
    let d: [u8; 32] = Sha256::digest(Sha256::digest(h)).into();
    d
}

pub fn leading_zero_bits(d: &[u8; 32]) -> u32 {
    hashrig_hasher_asic::leading_zero_bits(d)
}

pub fn quiet() -> Duration {
    Duration::from_millis(50)
}
