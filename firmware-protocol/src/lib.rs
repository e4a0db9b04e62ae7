//! The Bitmain BM13xx serial protocol (BM1397, BM1366, BM1368, BM1370): frames, CRCs, typed
//! registers, a streaming decoder and (feature `emulator`) a chip-chain emulator on a real
//! pseudo-terminal.
//!
//! What it is for: everything a host needs to talk to a chain of BM13xx chips over a UART,
//! without doing any I/O itself, so it also fits board firmware (`#![no_std]` with `alloc`).
//! The byte layouts follow the crate's `REFERENCE.md` (the "notes": what the code relies on,
//! with its sources); every frame the sources quote is a golden test in `tests/golden.rs`.
//!
//! What it is not for: driving a serial port, scheduling jobs or verifying shares (the ASIC
//! driver in `hashrig-hasher-asic` does that), hashing (`hashrig-sha256d`), or the older
//! BM1387/BM1384 dialects.
//!
//! # API overview
//!
//! - Encoding, host -> chip: [`Command`] (`SetAddress`, `WriteRegister`, `ReadRegister`,
//!   `ChainInactive`; constructors [`Command::write_all`], [`Command::read_all`], ...) with
//!   [`Command::encode`] -> 7/11 bytes with CRC5; jobs [`MidstateJob`] (BM1397, 1-4 midstates,
//!   built from SHA-256 states with [`MidstateJob::new`]) and [`HeaderJob`] (BM136x,
//!   [`HeaderJob::from_header`]) with `encode()` -> bytes with CRC16.
//! - Decoding, chip -> host: [`Response::parse`] on one 9/11-byte frame gives a
//!   [`RegisterResponse`] or a [`NonceResponse`] whose accessors take the [`ChipType`]:
//!   [`NonceResponse::job_id`], [`NonceResponse::sub_id`] (midstate index or small core),
//!   [`NonceResponse::core_id`], [`NonceResponse::version`] (rolled version for a base version
//!   and mask); `nonce` is the value for header bytes 76..80.
//! - Streams: [`Decoder`] (sans-IO; `push` bytes, `next_event`/`next_frame` out) for either
//!   [`Direction`], resyncing on garbage and counting bad CRCs in [`DecoderStats`].
//! - Registers: [`reg`] (addresses), [`Pll`] (frequency <-> dividers, ESP-Miner's solver),
//!   [`TicketMask`] (difficulty <-> register), [`UartBaud`] / [`baud_from_register`], [`VersionRolling`]
//!   (0xA4), [`HashCountingNumber`] (0x10), [`RegisterMeaning`] for people.
//! - [`PowerModel`]: a labelled per-generation power model.
//! - CRCs: [`crc5`], [`crc16`]. Captures: [`parse_hex`].
//! - Feature `emulator`: `emulator::Emulator::spawn(config)` serves a chain of chips on a
//!   pseudo-terminal; `handle.path()` is the serial device to open. See the crate README.

#![no_std]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod chip;
pub mod command;
pub mod crc;
pub mod decoder;
pub mod job;
pub mod power;
pub mod register;
pub mod response;
pub mod selfcheck;

#[cfg(feature = "emulator")]
pub mod emulator;

pub use chip::{ChipType, JobKind};
pub use command::{Command, CommandFrame, Destination};
pub use crc::{crc16, crc5};
pub use decoder::{Decoder, DecoderStats, Direction, Event, Frame, Raw, ResponseLength};
pub use job::{HeaderJob, Job, JobFrame, MidstateJob, midstate_from_wire, midstate_to_wire, rolled_version};
pub use power::PowerModel;
pub use register::{
    HashCountingNumber, Pll, RegisterMeaning, TicketMask, UartBaud, VersionRolling, addr as reg, baud_from_register,
    register_name,
};
pub use response::{NonceResponse, RegisterResponse, Response, ResponseForm, ResponseFrame};

/// Everything that can be wrong with a frame or a register value. `Copy`, so decoder events
/// can carry it. (Display is written by hand: the core builds without `std` and thiserror's
/// workspace entry brings std with it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    TooShort { len: usize, need: usize },
    WrongLength { found: usize, expected: usize },
    BadPreamble { found: [u8; 2] },
    UnknownType(u8),
    BadLengthByte { found: u8, expected: u8 },
    Crc5 { found: u8, computed: u8 },
    Crc16 { found: u16, computed: u16 },
    NonZero { field: &'static str, found: u8 },
    UnknownResponseType(u8),
    MidstateCount(usize),
    OutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
    BadTicketMask(u32),
    BadVersionMask(u32),
    NoPll { mhz_x100: u32 },
    UnknownChip,
    Hex { position: usize, found: char },
    HexOdd(usize),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooShort { len, need } => write!(f, "frame too short: {len} bytes, need {need}"),
            Error::WrongLength { found, expected } => write!(f, "frame is {found} bytes, expected {expected}"),
            Error::BadPreamble { found } => write!(f, "bad preamble {:02x} {:02x}", found[0], found[1]),
            Error::UnknownType(t) => write!(f, "unknown frame type byte {t:#04x}"),
            Error::BadLengthByte { found, expected } => {
                write!(f, "length byte {found:#04x} does not fit this frame (expected {expected:#04x})")
            }
            Error::Crc5 { found, computed } => write!(f, "bad CRC5: frame has {found:#04x}, computed {computed:#04x}"),
            Error::Crc16 { found, computed } => write!(f, "bad CRC16: frame has {found:#06x}, computed {computed:#06x}"),
            Error::NonZero { field, found } => write!(f, "{field} must be 0, found {found:#04x}"),
            Error::UnknownResponseType(t) => {
                write!(f, "unknown response type {t} in the top bits of the last byte (0 = register, 4 = nonce)")
            }
            Error::MidstateCount(n) => write!(f, "a BM1397 job carries 1 to 4 midstates, not {n}"),
            Error::OutOfRange { field, value, min, max } => write!(f, "{field} {value} is out of range {min}..={max}"),
            Error::BadTicketMask(v) => write!(f, "ticket mask register {v:#010x} is not 2^n - 1 with bit-reversed bytes"),
            Error::BadVersionMask(m) => {
                write!(f, "version mask {m:#010x} has bits outside 0x1fffe000 (the bits a BM136x can roll)")
            }
            Error::NoPll { mhz_x100 } => {
                write!(f, "no PLL setting reaches {}.{:02} MHz for this chip", mhz_x100 / 100, mhz_x100 % 100)
            }
            Error::UnknownChip => f.write_str("unknown chip (known: bm1397, bm1366, bm1368, bm1370)"),
            Error::Hex { position, found } => write!(f, "not hex at character {position}: {found:?}"),
            Error::HexOdd(n) => write!(f, "odd number of hex digits ({n})"),
        }
    }
}

impl core::error::Error for Error {}

/// Bytes from capture text: hex digits with any separators (spaces, commas, colons, newlines,
/// brackets), optional `0x` prefixes, `#` comments to the end of a line.
pub fn parse_hex(text: &str) -> Result<alloc::vec::Vec<u8>, Error> {
    let mut out = alloc::vec::Vec::new();
    let mut digits = 0usize;
    let mut high: Option<u8> = None;
    let mut in_comment = false;
    let chars: alloc::vec::Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_comment {
            if c == '\n' {
                in_comment = false;
            }
            i += 1;
            continue;
        }
        if c == '#' {
            in_comment = true;
            i += 1;
            continue;
        }
        if c == '0' && high.is_none() && matches!(chars.get(i + 1), Some('x') | Some('X')) {
            i += 2;
            continue;
        }
        if let Some(v) = c.to_digit(16) {
            digits += 1;
            match high.take() {
                None => high = Some(v as u8),
                Some(h) => out.push((h << 4) | v as u8),
            }
        } else if !(c.is_whitespace() || matches!(c, ',' | ':' | ';' | '[' | ']' | '{' | '}' | '(' | ')' | '-' | '|')) {
            return Err(Error::Hex { position: i, found: c });
        }
        i += 1;
    }
    if high.is_some() {
        return Err(Error::HexOdd(digits));
    }
    Ok(out)
}
