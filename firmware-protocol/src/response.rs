//! Chip -> host responses: register reads and nonces, in the 9- and 11-byte forms.

use crate::chip::ChipType;
use crate::crc::{crc5, crc5_bits};
use crate::job::rolled_version;
use crate::Error;

/// Chip frames start with these two bytes.
pub const CHIP_PREAMBLE: [u8; 2] = [0xaa, 0x55];
/// Type field (top 3 bits of the last byte) of a register response.
pub const TYPE_REGISTER: u8 = 0;
/// Type field of a nonce response.
pub const TYPE_NONCE: u8 = 4;

/// Which response form a chip uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseForm {
    /// 9 bytes: BM1397 always; BM136x before register 0xA4 is written.
    Short,
    /// 11 bytes: BM1366/68/70 once version rolling (0xA4) is configured.
    Long,
}

impl ResponseForm {
    /// Frame length in bytes.
    #[allow(clippy::len_without_is_empty, reason = "a frame length, never empty")]
    pub const fn len(self) -> usize {
        match self {
            ResponseForm::Short => 9,
            ResponseForm::Long => 11,
        }
    }
}

/// A register value read from one chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterResponse {
    pub value: u32,
    /// Address of the answering chip.
    pub chip_address: u8,
    pub register: u8,
    /// Bytes 8-9 of the 11-byte form (zero in every capture); None in the 9-byte form.
    pub extra: Option<[u8; 2]>,
}

/// A nonce a chip found, with the fields packed around it. Interpreting most fields needs the
/// chip generation: see the accessor methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NonceResponse {
    /// The nonce value: bytes 2..6 read little-endian, i.e. exactly what goes into header bytes
    /// 76..80 (`header[76..80] = nonce.to_le_bytes()`).
    pub nonce: u32,
    /// Byte 6: "midstate_num" in ESP-Miner's BM1397 struct; on BM136x mujina reads it as twice
    /// the whole bits of difficulty above the ticket mask (notes 2.3, UNSURE).
    pub byte6: u8,
    /// Byte 7: job id in the high bits, midstate index / small core in the low bits.
    pub id_byte: u8,
    /// Bytes 8-9 (big-endian) of the 11-byte form: rolled version bits >> 13.
    pub version_bits: Option<u16>,
}

/// Any chip -> host frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    Register(RegisterResponse),
    Nonce(NonceResponse),
}

/// An encoded response (9 or 11 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    buf: [u8; 11],
    len: u8,
}

impl ResponseFrame {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl AsRef<[u8]> for ResponseFrame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl NonceResponse {
    /// The nonce bytes read big-endian ("nonce_h" in ESP-Miner), where the core and chip
    /// fields live.
    pub const fn nonce_h(&self) -> u32 {
        self.nonce.swap_bytes()
    }

    /// Big-core id: bits 31-25 of nonce_h (ESP-Miner, mujina; GP reads 8 bits on BM1397, UNSURE).
    pub const fn core_id(&self) -> u8 {
        (self.nonce_h() >> 25) as u8
    }

    /// Bits 24-17 of nonce_h: the chip-address field ESP-Miner divides by the address interval
    /// to name the chip (not stamped on multi-chip BM1370 chains, notes 2.3).
    pub const fn chip_address_field(&self) -> u8 {
        (self.nonce_h() >> 17) as u8
    }

    /// The job id byte the host sent.
    pub const fn job_id(&self, chip: ChipType) -> u8 {
        chip.job_id_from_response(self.id_byte)
    }

    /// Midstate index (BM1397) or small-core id (BM136x).
    pub const fn sub_id(&self, chip: ChipType) -> u8 {
        chip.sub_id_from_response(self.id_byte)
    }

    /// The header version this nonce was found with, given the job's base version and the
    /// pool's version mask: BM136x replace the mask bits with the returned bits << 13; BM1397
    /// rolls the base `midstate index` times under the mask (ESP-Miner's job construction).
    pub fn version(&self, chip: ChipType, base: u32, mask: u32) -> u32 {
        match (chip, self.version_bits) {
            (ChipType::Bm1397, _) => rolled_version(base, mask, u32::from(self.sub_id(chip))),
            (_, Some(bits)) => (base & !mask) | ((u32::from(bits) << 13) & mask),
            (_, None) => base,
        }
    }
}

impl Response {
    /// Parse one whole 9- or 11-byte response (preamble, CRC5 and type checked).
    pub fn parse(frame: &[u8]) -> Result<Self, Error> {
        let len = frame.len();
        if len != 9 && len != 11 {
            return Err(Error::WrongLength { found: len, expected: if len < 9 { 9 } else { 11 } });
        }
        if frame[..2] != CHIP_PREAMBLE {
            return Err(Error::BadPreamble { found: [frame[0], frame[1]] });
        }
        if crc5(&frame[2..]) != 0 {
            let computed = crc5_bits(&frame[2..], (len - 2) * 8 - 5);
            return Err(Error::Crc5 { found: frame[len - 1] & 0x1f, computed });
        }
        let word = [frame[2], frame[3], frame[4], frame[5]];
        let tail = (len == 11).then(|| [frame[8], frame[9]]);
        match frame[len - 1] >> 5 {
            TYPE_REGISTER => Ok(Response::Register(RegisterResponse {
                value: u32::from_be_bytes(word),
                chip_address: frame[6],
                register: frame[7],
                extra: tail,
            })),
            TYPE_NONCE => Ok(Response::Nonce(NonceResponse {
                nonce: u32::from_le_bytes(word),
                byte6: frame[6],
                id_byte: frame[7],
                version_bits: tail.map(u16::from_be_bytes),
            })),
            other => Err(Error::UnknownResponseType(other)),
        }
    }

    /// The wire bytes: the form follows `extra` / `version_bits` (Some = 11 bytes).
    pub fn encode(&self) -> ResponseFrame {
        let mut buf = [0u8; 11];
        buf[..2].copy_from_slice(&CHIP_PREAMBLE);
        let (ty, tail) = match self {
            Response::Register(r) => {
                buf[2..6].copy_from_slice(&r.value.to_be_bytes());
                buf[6] = r.chip_address;
                buf[7] = r.register;
                (TYPE_REGISTER, r.extra)
            }
            Response::Nonce(n) => {
                buf[2..6].copy_from_slice(&n.nonce.to_le_bytes());
                buf[6] = n.byte6;
                buf[7] = n.id_byte;
                (TYPE_NONCE, n.version_bits.map(u16::to_be_bytes))
            }
        };
        let len = match tail {
            Some(t) => {
                buf[8..10].copy_from_slice(&t);
                11
            }
            None => 9,
        };
        buf[len - 1] = ty << 5;
        buf[len - 1] |= crc5_bits(&buf[2..len], (len - 2) * 8 - 5);
        ResponseFrame { buf, len: len as u8 }
    }

    /// The same response in another form (drops or adds the two tail bytes as zeros).
    pub fn with_form(mut self, form: ResponseForm) -> Self {
        let long = form == ResponseForm::Long;
        match &mut self {
            Response::Register(r) => r.extra = if long { Some(r.extra.unwrap_or([0, 0])) } else { None },
            Response::Nonce(n) => n.version_bits = if long { Some(n.version_bits.unwrap_or(0)) } else { None },
        }
        self
    }
}
