//! A per-generation power MODEL (not a measurement): static + dynamic power from frequency
//! and core voltage, calibrated so that each chip at its reference point draws what the
//! published J/TH figure says (notes section 6). Anything computed here must be labelled
//! "model" wherever it is shown.

use crate::chip::ChipType;

/// Calibration of one generation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerModel {
    pub chip: ChipType,
    /// Published efficiency at the reference point, J/TH.
    pub joules_per_th: f64,
    /// Reference frequency (MHz) and core voltage (V) the efficiency is taken at.
    pub ref_mhz: f64,
    pub ref_volts: f64,
    /// Share of the reference power that does not scale with frequency (leakage, I/O).
    pub static_share: f64,
    /// Where the J/TH figure comes from.
    pub source: &'static str,
}

impl PowerModel {
    /// The model for a generation; None for unknown chips.
    pub fn for_chip(chip: ChipType) -> Option<Self> {
        let (jth, mhz, volts, source) = match chip {
            ChipType::Bm1397 => (45.0, 425.0, 1.40, "S17: 56 TH/s, 2520 W (notes 6)"),
            ChipType::Bm1366 => (21.5, 485.0, 1.20, "S19 XP: 21.5 J/TH (notes 6)"),
            ChipType::Bm1368 => (17.5, 490.0, 1.166, "S21: 200 TH/s, ~3500 W (notes 6)"),
            ChipType::Bm1370 => (15.1, 525.0, 1.15, "S21 Pro: 234 TH/s, 3531 W (notes 6)"),
            ChipType::Unknown(_) => return None,
        };
        Some(Self { chip, joules_per_th: jth, ref_mhz: mhz, ref_volts: volts, static_share: 0.10, source })
    }

    /// Watts one chip draws at the reference point.
    pub fn reference_watts(&self) -> f64 {
        self.chip.expected_hashrate(self.ref_mhz) / 1e12 * self.joules_per_th
    }

    /// Modelled watts of one chip: static part scales with V, dynamic part with f x V^2.
    pub fn watts(&self, mhz: f64, volts: f64) -> f64 {
        let p0 = self.reference_watts();
        let v = volts / self.ref_volts;
        p0 * self.static_share * v + p0 * (1.0 - self.static_share) * (mhz / self.ref_mhz) * v * v
    }

    /// Modelled J/TH at a frequency and voltage (hashrate from ESP-Miner's formula).
    pub fn joules_per_th_at(&self, mhz: f64, volts: f64) -> f64 {
        let th = self.chip.expected_hashrate(mhz) / 1e12;
        if th <= 0.0 { f64::INFINITY } else { self.watts(mhz, volts) / th }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_reproduces_published_efficiency_at_the_reference_point() {
        for chip in ChipType::KNOWN {
            let m = PowerModel::for_chip(chip).unwrap();
            let j = m.joules_per_th_at(m.ref_mhz, m.ref_volts);
            assert!((j - m.joules_per_th).abs() < 1e-9, "{chip}: {j}");
        }
    }

    #[test]
    fn model_power_rises_with_frequency_and_voltage() {
        let m = PowerModel::for_chip(ChipType::Bm1370).unwrap();
        assert!(m.watts(600.0, 1.15) > m.watts(525.0, 1.15));
        assert!(m.watts(525.0, 1.25) > m.watts(525.0, 1.15));
        // Lower voltage at the same clock is more efficient.
        assert!(m.joules_per_th_at(525.0, 1.10) < m.joules_per_th_at(525.0, 1.15));
    }
}
