//! Chip generations and what differs between them on the wire.

use core::fmt;
use core::str::FromStr;

use crate::Error;

/// A BM13xx chip generation, as named by its chip-id register (0x00, top 16 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChipType {
    /// Midstate jobs (up to 4), 9-byte responses, no hardware version rolling.
    Bm1397,
    /// Full-header jobs, rolls version bits 13-28, 11-byte responses once 0xA4 is written.
    Bm1366,
    Bm1368,
    Bm1370,
    /// A chip id we do not know (e.g. 0x1362, 0x1373): decoded generically.
    Unknown(u16),
}

/// How a generation takes its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Host-computed SHA-256 midstates (BM1397).
    Midstate,
    /// The whole header; the chip rolls version bits itself (BM1366/68/70).
    Header,
}

impl ChipType {
    /// The generations this crate implements (Unknown excluded).
    pub const KNOWN: [ChipType; 4] = [ChipType::Bm1397, ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370];

    /// From the 16-bit chip id (`0x1397`, `0x1366`, ...).
    pub const fn from_id(id: u16) -> Self {
        match id {
            0x1397 => ChipType::Bm1397,
            0x1366 => ChipType::Bm1366,
            0x1368 => ChipType::Bm1368,
            0x1370 => ChipType::Bm1370,
            other => ChipType::Unknown(other),
        }
    }

    /// The 16-bit chip id.
    pub const fn id(self) -> u16 {
        match self {
            ChipType::Bm1397 => 0x1397,
            ChipType::Bm1366 => 0x1366,
            ChipType::Bm1368 => 0x1368,
            ChipType::Bm1370 => 0x1370,
            ChipType::Unknown(id) => id,
        }
    }

    /// What register 0x00 reads on this chip at `address` (notes 2.2): id, core byte, address.
    pub const fn chip_id_register(self, address: u8) -> u32 {
        let core_byte: u32 = match self {
            ChipType::Bm1397 => 0x18,
            _ => 0x00,
        };
        ((self.id() as u32) << 16) | (core_byte << 8) | address as u32
    }

    pub const fn job_kind(self) -> JobKind {
        match self {
            ChipType::Bm1397 => JobKind::Midstate,
            _ => JobKind::Header,
        }
    }

    /// Big cores per chip (EM, GP, MJ; notes section 4). 0 when unknown.
    pub const fn cores(self) -> u32 {
        match self {
            ChipType::Bm1397 => 168,
            ChipType::Bm1366 => 112,
            ChipType::Bm1368 => 80,
            ChipType::Bm1370 => 128,
            ChipType::Unknown(_) => 0,
        }
    }

    /// Small cores per big core (4, 8, 16, 16).
    pub const fn small_cores_per_core(self) -> u32 {
        match self {
            ChipType::Bm1397 => 4,
            ChipType::Bm1366 => 8,
            ChipType::Bm1368 | ChipType::Bm1370 => 16,
            ChipType::Unknown(_) => 1,
        }
    }

    /// ESP-Miner's `small_core_count`, the factor of its expected hashrate
    /// (GH/s = MHz x small_core_count / 1000).
    pub const fn small_core_count(self) -> u32 {
        match self {
            ChipType::Bm1397 => 672,
            ChipType::Bm1366 => 894,
            ChipType::Bm1368 => 1276,
            ChipType::Bm1370 => 2040,
            ChipType::Unknown(_) => 0,
        }
    }

    /// ESP-Miner's default frequency in MHz.
    pub const fn default_mhz(self) -> u32 {
        match self {
            ChipType::Bm1397 => 425,
            ChipType::Bm1366 => 485,
            ChipType::Bm1368 => 490,
            ChipType::Bm1370 => 525,
            ChipType::Unknown(_) => 0,
        }
    }

    /// Expected hashes per second per chip at `mhz` (ESP-Miner's formula).
    pub fn expected_hashrate(self, mhz: f64) -> f64 {
        mhz * 1e6 * self.small_core_count() as f64
    }

    /// Does the chip roll version bits itself (register 0xA4)?
    pub const fn rolls_versions(self) -> bool {
        !matches!(self, ChipType::Bm1397)
    }

    /// Does the chip answer in the 11-byte form once version rolling is enabled?
    pub const fn has_long_responses(self) -> bool {
        !matches!(self, ChipType::Bm1397)
    }

    /// Post dividers are stored minus one in register 0x08 (BM1362 and later).
    pub const fn postdiv_minus_one(self) -> bool {
        !matches!(self, ChipType::Bm1397)
    }

    /// The feedback-divider range ESP-Miner's PLL solver allows.
    pub const fn fbdiv_range(self) -> (u16, u16) {
        match self {
            ChipType::Bm1397 => (60, 200),
            ChipType::Bm1366 | ChipType::Bm1368 => (144, 235),
            ChipType::Bm1370 => (160, 239),
            ChipType::Unknown(_) => (1, 0xfff),
        }
    }

    /// The step ESP-Miner uses between job ids (4, 8, 24, 24): a host choice, see notes 3.4.
    pub const fn job_id_step(self) -> u8 {
        match self {
            ChipType::Bm1397 => 4,
            ChipType::Bm1366 => 8,
            _ => 24,
        }
    }

    /// Is `id` a job-id byte the chip can echo back unchanged (through `NonceResponse::job_id`)?
    pub const fn is_valid_job_id(self, id: u8) -> bool {
        match self {
            ChipType::Bm1397 => id & 0x03 == 0 && id < 0x80,
            ChipType::Bm1366 => id & 0x07 == 0,
            ChipType::Bm1368 | ChipType::Bm1370 => id & 0x87 == 0,
            ChipType::Unknown(_) => true,
        }
    }

    /// The job id byte the host sent, recovered from a nonce response's byte 7.
    pub const fn job_id_from_response(self, byte7: u8) -> u8 {
        match self {
            ChipType::Bm1397 => byte7 & 0xfc,
            ChipType::Bm1366 => byte7 & 0xf8,
            ChipType::Bm1368 | ChipType::Bm1370 => (byte7 & 0xf0) >> 1,
            ChipType::Unknown(_) => byte7,
        }
    }

    /// The low bits of byte 7: midstate index (BM1397) or small-core id (BM136x).
    pub const fn sub_id_from_response(self, byte7: u8) -> u8 {
        match self {
            ChipType::Bm1397 => byte7 & 0x03,
            ChipType::Bm1366 => byte7 & 0x07,
            ChipType::Bm1368 | ChipType::Bm1370 => byte7 & 0x0f,
            ChipType::Unknown(_) => 0,
        }
    }

    /// Byte 7 a chip sends for a job id byte and a midstate index / small core.
    pub const fn response_byte7(self, job_id: u8, sub_id: u8) -> u8 {
        match self {
            ChipType::Bm1397 => (job_id & 0xfc) | (sub_id & 0x03),
            ChipType::Bm1366 => (job_id & 0xf8) | (sub_id & 0x07),
            ChipType::Bm1368 | ChipType::Bm1370 => ((job_id << 1) & 0xf0) | (sub_id & 0x0f),
            ChipType::Unknown(_) => job_id,
        }
    }

    /// Lower-case name as used on the command line (`bm1370`, or `unknown-1362`).
    pub fn name(self) -> ChipName {
        ChipName(self)
    }
}

/// Display helper for [`ChipType::name`].
#[derive(Clone, Copy, Debug)]
pub struct ChipName(ChipType);

impl fmt::Display for ChipName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ChipType::Unknown(id) => write!(f, "unknown-{id:04x}"),
            known => write!(f, "bm{:04x}", known.id()),
        }
    }
}

impl fmt::Display for ChipType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChipType::Unknown(id) => write!(f, "unknown chip {id:#06x}"),
            known => write!(f, "BM{:04x}", known.id()),
        }
    }
}

impl FromStr for ChipType {
    type Err = Error;

    /// `bm1370`, `BM1370`, `1370` or `0x1370`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let digits = t
            .strip_prefix("bm")
            .or_else(|| t.strip_prefix("BM"))
            .or_else(|| t.strip_prefix("0x"))
            .unwrap_or(t);
        let id = u16::from_str_radix(digits, 16).map_err(|_| Error::UnknownChip)?;
        match ChipType::from_id(id) {
            ChipType::Unknown(_) => Err(Error::UnknownChip),
            known => Ok(known),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_survives_the_round_trip_through_byte7_for_every_valid_id() {
        for chip in ChipType::KNOWN {
            let mut seen = 0;
            for id in 0..=255u8 {
                if !chip.is_valid_job_id(id) {
                    continue;
                }
                seen += 1;
                for sub in 0..chip.small_cores_per_core().min(16) as u8 {
                    let b7 = chip.response_byte7(id, sub);
                    assert_eq!(chip.job_id_from_response(b7), id, "{chip} id {id}");
                    assert_eq!(chip.sub_id_from_response(b7), sub, "{chip} sub {sub}");
                }
            }
            assert!(seen >= 16, "{chip} has only {seen} job ids");
        }
    }

    #[test]
    fn chip_names_parse_back() {
        for chip in ChipType::KNOWN {
            let name = alloc::format!("{}", chip.name());
            assert_eq!(name.parse::<ChipType>().unwrap(), chip);
        }
        assert!("bm9999".parse::<ChipType>().is_err());
    }
}
