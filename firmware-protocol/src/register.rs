//! Register addresses and typed, validated register values (notes section 4).

use core::fmt;

use crate::chip::ChipType;
use crate::Error;

/// Register addresses used by the drivers.
pub mod addr {
    pub const CHIP_ID: u8 = 0x00;
    /// BM1397 hash rate (bit 31 "long" flag).
    pub const HASH_RATE: u8 = 0x04;
    pub const PLL0: u8 = 0x08;
    pub const CHIP_NONCE_OFFSET: u8 = 0x0c;
    pub const HASH_COUNTING_NUMBER: u8 = 0x10;
    pub const TICKET_MASK: u8 = 0x14;
    /// BM1397: UART divider + clock select; BM136x: nonce-report enables.
    pub const MISC_CONTROL: u8 = 0x18;
    pub const ORDERED_CLOCK_ENABLE: u8 = 0x20;
    /// BM136x UART baud (BM1397: FAST_UART, PLL3-based).
    pub const UART_BAUD: u8 = 0x28;
    pub const UART_RELAY: u8 = 0x2c;
    pub const CORE_REGISTER_CONTROL: u8 = 0x3c;
    pub const NONCE_ERROR_COUNTER: u8 = 0x4c;
    pub const ANALOG_MUX: u8 = 0x54;
    pub const IO_DRIVER_STRENGTH: u8 = 0x58;
    pub const PLL3: u8 = 0x68;
    pub const PLL0_DIVIDER: u8 = 0x70;
    pub const CLOCK_ORDER_CONTROL0: u8 = 0x80;
    pub const CLOCK_ORDER_CONTROL1: u8 = 0x84;
    /// BM136x domain hash counters 0..3 (0x88..0x8b) and the total (0x8c).
    pub const DOMAIN_HASH_COUNTER0: u8 = 0x88;
    pub const TOTAL_HASH_COUNTER: u8 = 0x8c;
    /// Version rolling / midstate generation (also switches responses to 11 bytes).
    pub const VERSION_ROLLING: u8 = 0xa4;
    pub const SOFT_RESET_CONTROL: u8 = 0xa8;
    pub const ADC_CONTROL: u8 = 0xb9;

    /// EMULATOR ONLY (no real chip has it): power of the chip in milliwatts from the model.
    pub const EMU_POWER_MW: u8 = 0xf0;
    /// EMULATOR ONLY: core voltage in millivolts used by the power model (read/write).
    pub const EMU_CORE_MILLIVOLTS: u8 = 0xf4;
    /// EMULATOR ONLY: ticket threshold in leading zero bits of the hash (read/write). Real chips
    /// need 32 + N bits (N from 0x14); the emulator accepts fewer so a CPU finds nonces.
    pub const EMU_TICKET_ZERO_BITS: u8 = 0xf8;
}

/// The crystal every generation runs from.
pub const CRYSTAL_MHZ: f64 = 25.0;
const CRYSTAL_HZ: u32 = 25_000_000;

/// PLL0 dividers: f = 25 MHz x fbdiv / (refdiv x postdiv1 x postdiv2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pll {
    fbdiv: u16,
    refdiv: u8,
    postdiv1: u8,
    postdiv2: u8,
}

impl Pll {
    /// fbdiv 1..=4095, refdiv 1..=63, post dividers 1..=7.
    pub fn new(fbdiv: u16, refdiv: u8, postdiv1: u8, postdiv2: u8) -> Result<Self, Error> {
        range("fbdiv", fbdiv.into(), 1, 0xfff)?;
        range("refdiv", refdiv.into(), 1, 63)?;
        range("postdiv1", postdiv1.into(), 1, 7)?;
        range("postdiv2", postdiv2.into(), 1, 7)?;
        Ok(Self { fbdiv, refdiv, postdiv1, postdiv2 })
    }

    pub fn fbdiv(&self) -> u16 {
        self.fbdiv
    }
    pub fn refdiv(&self) -> u8 {
        self.refdiv
    }
    pub fn postdiv1(&self) -> u8 {
        self.postdiv1
    }
    pub fn postdiv2(&self) -> u8 {
        self.postdiv2
    }

    /// VCO frequency in MHz (25 x fbdiv / refdiv).
    pub fn vco_mhz(&self) -> f64 {
        CRYSTAL_MHZ * f64::from(self.fbdiv) / f64::from(self.refdiv)
    }

    /// Output frequency in MHz.
    pub fn frequency_mhz(&self) -> f64 {
        self.vco_mhz() / f64::from(self.postdiv1) / f64::from(self.postdiv2)
    }

    /// Register 0x08 value for a generation: PLL enable (bit 30), VCO >= 2.4 GHz flag (bit 28,
    /// BM136x only), fbdiv, refdiv and the post dividers (minus one on BM136x).
    pub fn to_register(&self, chip: ChipType) -> u32 {
        let mut flags = 0x4000_0000;
        if chip.postdiv_minus_one() && self.vco_mhz() >= 2400.0 {
            flags |= 0x1000_0000;
        }
        let (p1, p2) = if chip.postdiv_minus_one() {
            (self.postdiv1 - 1, self.postdiv2 - 1)
        } else {
            (self.postdiv1, self.postdiv2)
        };
        flags | (u32::from(self.fbdiv) << 16) | (u32::from(self.refdiv) << 8) | (u32::from(p1) << 4) | u32::from(p2)
    }

    /// Decode register 0x08 (flag bits are not checked).
    pub fn from_register(chip: ChipType, value: u32) -> Result<Self, Error> {
        let fbdiv = ((value >> 16) & 0xfff) as u16;
        let refdiv = ((value >> 8) & 0x3f) as u8;
        let mut p1 = ((value >> 4) & 0x7) as u8;
        let mut p2 = (value & 0x7) as u8;
        if chip.postdiv_minus_one() {
            p1 += 1;
            p2 += 1;
        }
        Self::new(fbdiv, refdiv, p1, p2)
    }

    /// ESP-Miner's search (notes section 4): refdiv 2 then 1, postdiv1 7..1, postdiv2 7..1 with
    /// postdiv1 > postdiv2, fbdiv in the chip's range; prefer the closest frequency, then the
    /// lowest VCO, then the smallest postdiv1 x postdiv2.
    pub fn for_frequency(chip: ChipType, mhz: f64) -> Result<Self, Error> {
        let (lo, hi) = chip.fbdiv_range();
        let mut best: Option<(f64, f64, u8, Pll)> = None;
        for refdiv in [2u8, 1] {
            for p1 in (1..=7u8).rev() {
                for p2 in (1..=7u8).rev() {
                    if p1 <= p2 {
                        continue;
                    }
                    let ideal = mhz * f64::from(refdiv) * f64::from(p1) * f64::from(p2) / CRYSTAL_MHZ;
                    // round half up without std
                    let fb = (ideal + 0.5) as i64;
                    if fb < i64::from(lo) || fb > i64::from(hi) {
                        continue;
                    }
                    let pll = Pll { fbdiv: fb as u16, refdiv, postdiv1: p1, postdiv2: p2 };
                    let err = (pll.frequency_mhz() - mhz).abs_diff();
                    let key = (err, pll.vco_mhz(), p1 * p2);
                    let better = match &best {
                        None => true,
                        Some((e, v, p, _)) => {
                            if (key.0 - *e).abs_diff() > 1e-9 {
                                key.0 < *e
                            } else if (key.1 - *v).abs_diff() > 1e-9 {
                                key.1 < *v
                            } else {
                                key.2 < *p
                            }
                        }
                    };
                    if better {
                        best = Some((key.0, key.1, key.2, pll));
                    }
                }
            }
        }
        best.map(|b| b.3).ok_or(Error::NoPll { mhz_x100: (mhz * 100.0) as u32 })
    }
}

/// `abs` for f64 without std.
trait AbsDiff {
    fn abs_diff(self) -> f64;
}
impl AbsDiff for f64 {
    fn abs_diff(self) -> f64 {
        if self < 0.0 { -self } else { self }
    }
}

/// Register 0x14: the chip reports a nonce only if its hash has 32 + N leading zero bits,
/// i.e. a difficulty of at least 2^N. The value is 2^N - 1 with each byte's bits reversed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketMask {
    zero_bits: u8,
}

impl TicketMask {
    /// N in 0..=32.
    pub fn new(zero_bits: u8) -> Result<Self, Error> {
        range("ticket mask bits", zero_bits.into(), 0, 32)?;
        Ok(Self { zero_bits })
    }

    /// ESP-Miner's rule: N = floor(log2(ceil(difficulty))), i.e. the largest power of two not
    /// above the difficulty (difficulty below 1 gives N = 0).
    pub fn from_difficulty(difficulty: f64) -> Self {
        let mut n = 0u8;
        while n < 32 && f64::from(1u32 << n) * 2.0 <= ceil(difficulty) {
            n += 1;
        }
        Self { zero_bits: n }
    }

    /// N: extra zero bits above the 32 of difficulty 1.
    pub fn zero_bits(&self) -> u8 {
        self.zero_bits
    }

    /// 2^N.
    pub fn difficulty(&self) -> u64 {
        1u64 << self.zero_bits
    }

    pub fn to_register(&self) -> u32 {
        let m: u32 = if self.zero_bits >= 32 { u32::MAX } else { (1u32 << self.zero_bits) - 1 };
        let b = m.to_be_bytes();
        u32::from_be_bytes([b[0].reverse_bits(), b[1].reverse_bits(), b[2].reverse_bits(), b[3].reverse_bits()])
    }

    pub fn from_register(value: u32) -> Result<Self, Error> {
        let b = value.to_be_bytes();
        let m = u32::from_be_bytes([b[0].reverse_bits(), b[1].reverse_bits(), b[2].reverse_bits(), b[3].reverse_bits()]);
        if m.wrapping_add(1) & m != 0 {
            return Err(Error::BadTicketMask(value));
        }
        Ok(Self { zero_bits: m.count_ones() as u8 })
    }
}

fn ceil(x: f64) -> f64 {
    let t = x as i64 as f64;
    if t < x { t + 1.0 } else { t }
}

/// The UART baud divider: baud = 25 MHz / (8 x (divider + 1)). BM1397 keeps it in register
/// 0x18 (BT8D: bits 12-8, high bits 27-24), BM136x in 0x28 (bits 15-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UartBaud {
    divider: u16,
}

impl UartBaud {
    /// Largest divider any generation stores (BM1397: 9 bits).
    pub const MAX_DIVIDER: u16 = 0x1ff;
    /// The reset divider of every generation (115 740 baud).
    pub const RESET: UartBaud = UartBaud { divider: 26 };

    pub fn from_divider(divider: u16) -> Result<Self, Error> {
        range("UART divider", divider.into(), 0, Self::MAX_DIVIDER.into())?;
        Ok(Self { divider })
    }

    /// The divider giving the baud closest to `baud` (e.g. 1 000 000 -> 1 041 666).
    pub fn closest(baud: u32) -> Result<Self, Error> {
        range("baud", baud.into(), u64::from(CRYSTAL_HZ / 8 / (u32::from(Self::MAX_DIVIDER) + 1)), u64::from(CRYSTAL_HZ / 8))?;
        let d = (CRYSTAL_HZ as f64 / (8.0 * f64::from(baud)) + 0.5) as u32;
        Self::from_divider((d.max(1) - 1) as u16)
    }

    pub fn divider(&self) -> u16 {
        self.divider
    }

    pub fn baud(&self) -> u32 {
        CRYSTAL_HZ / (8 * (u32::from(self.divider) + 1))
    }

    /// The register that holds the divider on this generation.
    pub fn register(chip: ChipType) -> u8 {
        if chip == ChipType::Bm1397 { addr::MISC_CONTROL } else { addr::UART_BAUD }
    }

    /// `base` (the register's other bits, e.g. 0x0000_7A31 on BM1397, 0x1130_0000 on BM136x)
    /// with this divider put in.
    pub fn to_register(&self, chip: ChipType, base: u32) -> Result<u32, Error> {
        let d = u32::from(self.divider);
        if chip == ChipType::Bm1397 {
            Ok((base & !0x0f00_1f00) | ((d >> 5) << 24) | ((d & 0x1f) << 8))
        } else {
            range("UART divider", d.into(), 0, 0xff)?;
            Ok((base & !0xff00) | (d << 8))
        }
    }

    /// The divider a write of `value` to `register` sets, if that is the baud register.
    pub fn from_register(chip: ChipType, register: u8, value: u32) -> Option<Self> {
        let divider = match (chip, register) {
            (ChipType::Bm1397, addr::MISC_CONTROL) => (((value >> 24) & 0xf) << 5) | ((value >> 8) & 0x1f),
            (ChipType::Bm1397, _) => return None,
            (_, addr::UART_BAUD) => (value >> 8) & 0xff,
            _ => return None,
        };
        Some(Self { divider: divider as u16 })
    }
}

/// The UART baud a register write sets, if it is the baud register of this generation.
pub fn baud_from_register(chip: ChipType, register: u8, value: u32) -> Option<u32> {
    UartBaud::from_register(chip, register, value).map(|b| b.baud())
}

/// The reset baud of every generation: 25 MHz / (8 x 27) = 115 740.
pub const RESET_BAUD: u32 = 115_740;

/// Register 0xA4: bit 31 enables version rolling, bits 29-28 the midstate generation code,
/// bits 15-0 the pool's version mask >> 13.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionRolling(u32);

impl VersionRolling {
    /// The bits a BM136x can roll (13-28).
    pub const MAX_MASK: u32 = 0x1fff_e000;

    /// Enabled for a header version mask (must lie within bits 13-28), with ESP-Miner's
    /// generation code 1 (`0x9000_0000 | mask >> 13`; mask 0x1FFFE000 gives 0x9000FFFF).
    pub fn enabled(mask: u32) -> Result<Self, Error> {
        if mask & !Self::MAX_MASK != 0 {
            return Err(Error::BadVersionMask(mask));
        }
        Ok(Self(0x9000_0000 | (mask >> 13)))
    }

    pub const fn from_register(value: u32) -> Self {
        Self(value)
    }

    pub const fn to_register(&self) -> u32 {
        self.0
    }

    pub const fn is_enabled(&self) -> bool {
        self.0 & 0x8000_0000 != 0
    }

    /// The header version bits the chip may change.
    pub const fn header_mask(&self) -> u32 {
        (self.0 & 0xffff) << 13
    }
}

/// Register 0x10: 25 MHz crystal ticks per nonce sweep before the next version batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashCountingNumber(pub u32);

impl HashCountingNumber {
    /// ESP-Miner's value: 2^32 / next_pow2(cores) / next_pow2(chips) x 25 / MHz x 0.5, minus 268
    /// on BM1370 (its "HW errata"), floored.
    pub fn esp_miner(chip: ChipType, chips: u32, mhz: f64) -> Self {
        let cores = chip.cores().max(1).next_power_of_two();
        let chips = chips.max(1).next_power_of_two();
        let space = 4_294_967_296.0 / f64::from(cores) / f64::from(chips);
        let mut v = space * CRYSTAL_MHZ / mhz * 0.5;
        if chip == ChipType::Bm1370 {
            v -= 268.0;
        }
        Self(if v <= 0.0 { 0 } else { v as u32 })
    }
}

/// What a register value means, for people reading captures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RegisterMeaning {
    ChipId { chip: ChipType, core_byte: u8, address: u8 },
    Pll { pll: Pll, mhz: f64 },
    TicketMask { zero_bits: u8, difficulty: u64 },
    Baud(u32),
    VersionRolling { enabled: bool, mask: u32 },
    HashCountingNumber(u32),
    /// A register we show as a raw value.
    Raw,
    /// The value does not decode as this register (e.g. a ticket mask that is not 2^n - 1).
    Invalid,
}

impl RegisterMeaning {
    /// Interpret `value` of `register` for a chip generation.
    pub fn of(chip: ChipType, register: u8, value: u32) -> Self {
        if let Some(baud) = baud_from_register(chip, register, value) {
            return RegisterMeaning::Baud(baud);
        }
        match register {
            addr::CHIP_ID => RegisterMeaning::ChipId {
                chip: ChipType::from_id((value >> 16) as u16),
                core_byte: (value >> 8) as u8,
                address: value as u8,
            },
            addr::PLL0 => match Pll::from_register(chip, value) {
                Ok(pll) => RegisterMeaning::Pll { pll, mhz: pll.frequency_mhz() },
                Err(_) => RegisterMeaning::Invalid,
            },
            addr::TICKET_MASK => match TicketMask::from_register(value) {
                Ok(t) => RegisterMeaning::TicketMask { zero_bits: t.zero_bits(), difficulty: t.difficulty() },
                Err(_) => RegisterMeaning::Invalid,
            },
            addr::VERSION_ROLLING if chip.rolls_versions() => {
                let v = VersionRolling::from_register(value);
                RegisterMeaning::VersionRolling { enabled: v.is_enabled(), mask: v.header_mask() }
            }
            addr::HASH_COUNTING_NUMBER => RegisterMeaning::HashCountingNumber(value),
            _ => RegisterMeaning::Raw,
        }
    }
}

impl fmt::Display for RegisterMeaning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterMeaning::ChipId { chip, core_byte, address } => {
                write!(f, "chip id {chip}, core byte {core_byte:#04x}, address {address:#04x}")
            }
            RegisterMeaning::Pll { pll, mhz } => write!(
                f,
                "PLL {mhz:.2} MHz (fbdiv {}, refdiv {}, postdiv {}x{}, VCO {:.0} MHz)",
                pll.fbdiv(),
                pll.refdiv(),
                pll.postdiv1(),
                pll.postdiv2(),
                pll.vco_mhz()
            ),
            RegisterMeaning::TicketMask { zero_bits, difficulty } => {
                write!(f, "ticket mask: difficulty {difficulty} (32+{zero_bits} zero bits)")
            }
            RegisterMeaning::Baud(b) => write!(f, "UART {b} baud"),
            RegisterMeaning::VersionRolling { enabled, mask } => {
                write!(f, "version rolling {}, mask {mask:#010x}", if *enabled { "on" } else { "off" })
            }
            RegisterMeaning::HashCountingNumber(v) => write!(f, "hash counting number {v} ticks"),
            RegisterMeaning::Raw => Ok(()),
            RegisterMeaning::Invalid => f.write_str("(value does not decode for this register)"),
        }
    }
}

/// A short name for a register address, for people.
pub fn register_name(chip: ChipType, register: u8) -> &'static str {
    match register {
        addr::CHIP_ID => "CHIP_ID",
        addr::HASH_RATE => "HASH_RATE",
        addr::PLL0 => "PLL0",
        addr::CHIP_NONCE_OFFSET => "CHIP_NONCE_OFFSET",
        addr::HASH_COUNTING_NUMBER => "HASH_COUNTING_NUMBER",
        addr::TICKET_MASK => "TICKET_MASK",
        addr::MISC_CONTROL => "MISC_CONTROL",
        addr::ORDERED_CLOCK_ENABLE => "ORDERED_CLOCK_ENABLE",
        addr::UART_BAUD if chip == ChipType::Bm1397 => "FAST_UART",
        addr::UART_BAUD => "UART_BAUD",
        addr::UART_RELAY => "UART_RELAY",
        addr::CORE_REGISTER_CONTROL => "CORE_REGISTER_CONTROL",
        0x40 => "CORE_REGISTER_VALUE",
        addr::NONCE_ERROR_COUNTER => "NONCE_ERROR_COUNTER",
        addr::ANALOG_MUX => "ANALOG_MUX",
        addr::IO_DRIVER_STRENGTH => "IO_DRIVER_STRENGTH",
        addr::PLL3 => "PLL3",
        addr::PLL0_DIVIDER => "PLL0_DIVIDER",
        addr::CLOCK_ORDER_CONTROL0 => "CLOCK_ORDER_CONTROL0",
        addr::CLOCK_ORDER_CONTROL1 => "CLOCK_ORDER_CONTROL1",
        0x88..=0x8b => "DOMAIN_HASH_COUNTER",
        addr::TOTAL_HASH_COUNTER => "TOTAL_HASH_COUNTER",
        addr::VERSION_ROLLING => "VERSION_ROLLING",
        addr::SOFT_RESET_CONTROL => "SOFT_RESET_CONTROL",
        addr::ADC_CONTROL => "ADC_CONTROL",
        addr::EMU_POWER_MW => "EMU_POWER_MW (emulator only)",
        addr::EMU_CORE_MILLIVOLTS => "EMU_CORE_MILLIVOLTS (emulator only)",
        addr::EMU_TICKET_ZERO_BITS => "EMU_TICKET_ZERO_BITS (emulator only)",
        _ => "?",
    }
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), Error> {
    if value < min || value > max {
        return Err(Error::OutOfRange { field, value, min, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pll_solver_matches_esp_miner_examples() {
        // EM test_pll.c: 450 MHz in range 60-200 -> fbdiv 72, refdiv 2, pd 2x1.
        let p = Pll::for_frequency(ChipType::Bm1397, 450.0).unwrap();
        assert_eq!((p.fbdiv(), p.refdiv(), p.postdiv1(), p.postdiv2()), (72, 2, 2, 1));
        // Notes section 5 (derived frames).
        assert_eq!(Pll::for_frequency(ChipType::Bm1397, 425.0).unwrap().to_register(ChipType::Bm1397), 0x4044_0221);
        assert_eq!(Pll::for_frequency(ChipType::Bm1366, 485.0).unwrap().to_register(ChipType::Bm1366), 0x50c2_0240);
        assert_eq!(Pll::for_frequency(ChipType::Bm1368, 490.0).unwrap().to_register(ChipType::Bm1368), 0x50c4_0240);
        assert_eq!(Pll::for_frequency(ChipType::Bm1370, 525.0).unwrap().to_register(ChipType::Bm1370), 0x40a8_0230);
        assert_eq!(Pll::for_frequency(ChipType::Bm1370, 600.0).unwrap().to_register(ChipType::Bm1370), 0x50c0_0230);
    }

    #[test]
    fn pll_register_defaults_decode_to_200_mhz() {
        // CG defaults `40 F0 02 35` (BM1397, pd as-is) and `40 F0 02 24` (BM136x, pd - 1).
        let a = Pll::from_register(ChipType::Bm1397, 0x40f0_0235).unwrap();
        assert!((a.frequency_mhz() - 200.0).abs_diff() < 1e-9);
        let b = Pll::from_register(ChipType::Bm1370, 0x40f0_0224).unwrap();
        assert!((b.frequency_mhz() - 200.0).abs_diff() < 1e-9);
    }

    #[test]
    fn ticket_mask_values_from_cgminer_table() {
        assert_eq!(TicketMask::from_difficulty(256.0).to_register(), 0x0000_00ff);
        assert_eq!(TicketMask::from_difficulty(1024.0).to_register(), 0x0000_c0ff);
        assert_eq!(TicketMask::from_difficulty(64.0).to_register(), 0x0000_00fc);
        assert_eq!(TicketMask::from_difficulty(1000.0).difficulty(), 512);
        assert_eq!(TicketMask::from_register(0x0000_c0ff).unwrap().difficulty(), 1024);
        assert!(TicketMask::from_register(0x0000_00aa).is_err());
        assert!(TicketMask::from_register(0x0000_ff00).is_err());
    }

    #[test]
    fn baud_registers_decode_like_the_notes() {
        assert_eq!(baud_from_register(ChipType::Bm1397, 0x18, 0x0000_7a31), Some(115_740));
        assert_eq!(baud_from_register(ChipType::Bm1397, 0x18, 0x0000_6031), Some(3_125_000));
        assert_eq!(baud_from_register(ChipType::Bm1397, 0x18, 0x0000_6131), Some(1_562_500));
        assert_eq!(baud_from_register(ChipType::Bm1370, 0x28, 0x1130_0200), Some(1_041_666));
        assert_eq!(baud_from_register(ChipType::Bm1366, 0x28, 0x0130_1a00), Some(115_740));
        assert_eq!(baud_from_register(ChipType::Bm1370, 0x18, 0xf000_c100), None);
    }

    #[test]
    fn uart_baud_encodes_the_notes_register_values() {
        let mbaud = UartBaud::closest(1_000_000).unwrap();
        assert_eq!(mbaud.baud(), 1_041_666);
        assert_eq!(mbaud.to_register(ChipType::Bm1370, 0x1130_0000).unwrap(), 0x1130_0200);
        let fast = UartBaud::closest(3_125_000).unwrap();
        assert_eq!(fast.to_register(ChipType::Bm1397, 0x0000_7a31).unwrap(), 0x0000_6031);
        let reset = UartBaud::closest(115_200).unwrap();
        assert_eq!(reset, UartBaud::RESET);
        assert_eq!(reset.to_register(ChipType::Bm1397, 0x0000_6031).unwrap(), 0x0000_7a31);
        assert_eq!(UartBaud::from_register(ChipType::Bm1397, 0x18, 0x0000_6131).unwrap().baud(), 1_562_500);
        assert!(UartBaud::from_divider(0x200).is_err());
        assert!(UartBaud::from_divider(300).unwrap().to_register(ChipType::Bm1366, 0).is_err());
        assert!(UartBaud::closest(0).is_err());
    }

    #[test]
    fn hash_counting_numbers_match_esp_miner() {
        assert_eq!(HashCountingNumber::esp_miner(ChipType::Bm1366, 1, 485.0).0, 0x000d_3224);
        assert_eq!(HashCountingNumber::esp_miner(ChipType::Bm1368, 1, 490.0).0, 0x000d_0fac);
        assert_eq!(HashCountingNumber::esp_miner(ChipType::Bm1370, 1, 525.0).0, 0x000c_2fb7);
    }

    #[test]
    fn version_rolling_register_for_the_stratum_mask() {
        let v = VersionRolling::enabled(0x1fff_e000).unwrap();
        assert_eq!(v.to_register(), 0x9000_ffff);
        assert_eq!(v.header_mask(), 0x1fff_e000);
        assert!(VersionRolling::enabled(0xffff_ffff).is_err());
    }
}
