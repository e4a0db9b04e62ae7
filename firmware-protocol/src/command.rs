//! Host -> chip commands (set address, register write/read, chain inactive), CRC5-terminated.

use crate::crc::crc5;
use crate::Error;

/// Host frames start with these two bytes.
pub const HOST_PREAMBLE: [u8; 2] = [0x55, 0xaa];

/// Type byte bits (notes 1.2).
pub mod type_byte {
    pub const JOB: u8 = 0x20;
    pub const CMD: u8 = 0x40;
    pub const ALL: u8 = 0x10;
    pub const SET_ADDRESS: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const INACTIVE: u8 = 0x03;
}

/// Who a register command is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Every chip (broadcast bit set, chip byte 0).
    All,
    /// The chip(s) with this address.
    Chip(u8),
}

/// A host -> chip command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Give the first un-addressed chip this address (`55 AA 40 05 addr 00 crc`).
    SetAddress(u8),
    /// Write a 32-bit register (value sent most significant byte first).
    WriteRegister { dest: Destination, register: u8, value: u32 },
    /// Read a register: every matching chip answers with a register response.
    ReadRegister { dest: Destination, register: u8 },
    /// Every chip stops relaying, ready for set-address (`55 AA 53 05 00 00 03`).
    ChainInactive,
}

/// An encoded command: 7 or 11 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandFrame {
    buf: [u8; 11],
    len: u8,
}

impl CommandFrame {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl AsRef<[u8]> for CommandFrame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Command {
    /// Broadcast register write.
    pub const fn write_all(register: u8, value: u32) -> Self {
        Command::WriteRegister { dest: Destination::All, register, value }
    }

    /// Register write to one chip address.
    pub const fn write_chip(address: u8, register: u8, value: u32) -> Self {
        Command::WriteRegister { dest: Destination::Chip(address), register, value }
    }

    /// Broadcast register read (register 0x00 enumerates the chain).
    pub const fn read_all(register: u8) -> Self {
        Command::ReadRegister { dest: Destination::All, register }
    }

    pub const fn read_chip(address: u8, register: u8) -> Self {
        Command::ReadRegister { dest: Destination::Chip(address), register }
    }

    /// The type byte (0x40, 0x41, 0x42, 0x51, 0x52, 0x53).
    pub const fn type_byte(&self) -> u8 {
        use type_byte::*;
        match self {
            Command::SetAddress(_) => CMD | SET_ADDRESS,
            Command::WriteRegister { dest: Destination::All, .. } => CMD | ALL | WRITE,
            Command::WriteRegister { .. } => CMD | WRITE,
            Command::ReadRegister { dest: Destination::All, .. } => CMD | ALL | READ,
            Command::ReadRegister { .. } => CMD | READ,
            Command::ChainInactive => CMD | ALL | INACTIVE,
        }
    }

    /// The wire bytes, CRC5 included.
    pub fn encode(&self) -> CommandFrame {
        let mut buf = [0u8; 11];
        buf[0] = HOST_PREAMBLE[0];
        buf[1] = HOST_PREAMBLE[1];
        buf[2] = self.type_byte();
        let chip = |d: &Destination| match d {
            Destination::All => 0,
            Destination::Chip(a) => *a,
        };
        let len = match self {
            Command::SetAddress(addr) => {
                buf[4] = *addr;
                7
            }
            Command::ChainInactive => 7,
            Command::ReadRegister { dest, register } => {
                buf[4] = chip(dest);
                buf[5] = *register;
                7
            }
            Command::WriteRegister { dest, register, value } => {
                buf[4] = chip(dest);
                buf[5] = *register;
                buf[6..10].copy_from_slice(&value.to_be_bytes());
                11
            }
        };
        buf[3] = (len - 2) as u8;
        buf[len - 1] = crc5(&buf[2..len - 1]);
        CommandFrame { buf, len: len as u8 }
    }

    /// The frame length a command type byte implies (7 or 11), or None for a non-command byte.
    pub const fn frame_len_for_type(t: u8) -> Option<usize> {
        match t {
            0x40 | 0x42 | 0x52 | 0x53 => Some(7),
            0x41 | 0x51 => Some(11),
            _ => None,
        }
    }

    /// Parse one whole command frame (preamble and CRC checked).
    pub fn parse(frame: &[u8]) -> Result<Self, Error> {
        if frame.len() < 7 {
            return Err(Error::TooShort { len: frame.len(), need: 7 });
        }
        if frame[..2] != HOST_PREAMBLE {
            return Err(Error::BadPreamble { found: [frame[0], frame[1]] });
        }
        let t = frame[2];
        let want = Self::frame_len_for_type(t).ok_or(Error::UnknownType(t))?;
        if frame.len() != want {
            return Err(Error::WrongLength { found: frame.len(), expected: want });
        }
        if frame[3] as usize != want - 2 {
            return Err(Error::BadLengthByte { found: frame[3], expected: (want - 2) as u8 });
        }
        let computed = crc5(&frame[2..want - 1]);
        if frame[want - 1] != computed {
            return Err(Error::Crc5 { found: frame[want - 1], computed });
        }
        let dest = |all: bool| if all { Destination::All } else { Destination::Chip(frame[4]) };
        let all = t & type_byte::ALL != 0;
        if all && frame[4] != 0 {
            return Err(Error::NonZero { field: "chip byte of a broadcast", found: frame[4] });
        }
        Ok(match t & 0x0f {
            type_byte::SET_ADDRESS => {
                if frame[5] != 0 {
                    return Err(Error::NonZero { field: "second set-address byte", found: frame[5] });
                }
                Command::SetAddress(frame[4])
            }
            type_byte::INACTIVE => {
                if frame[5] != 0 {
                    return Err(Error::NonZero { field: "second chain-inactive byte", found: frame[5] });
                }
                Command::ChainInactive
            }
            type_byte::READ => Command::ReadRegister { dest: dest(all), register: frame[5] },
            _ => Command::WriteRegister {
                dest: dest(all),
                register: frame[5],
                value: u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]),
            },
        })
    }
}
