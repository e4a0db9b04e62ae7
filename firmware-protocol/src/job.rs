//! Job frames (type 0x21, CRC16): BM1397 midstate jobs and BM1366/68/70 full-header jobs.

use crate::chip::{ChipType, JobKind};
use crate::command::HOST_PREAMBLE;
use crate::crc::crc16;
use crate::Error;

/// The job type byte.
pub const JOB_TYPE: u8 = 0x21;
/// Longest job frame (BM1397 with 4 midstate slots).
pub const MAX_JOB_FRAME: usize = 152;
/// A full-header job is always 88 bytes on the wire.
pub const HEADER_JOB_FRAME: usize = 88;
/// The length byte ESP-Miner sends on full-header jobs (the true count, 86).
pub const HEADER_JOB_LENGTH_BYTE: u8 = 0x56;
/// The length byte factory firmware sends on full-header jobs; the chips accept it too.
pub const HEADER_JOB_LENGTH_BYTE_FACTORY: u8 = 0x36;

/// Frame length of a midstate job with `slots` 32-byte midstate slots.
pub const fn midstate_job_frame_len(slots: usize) -> usize {
    24 + 32 * slots
}

/// A BM1397 job: up to four host-computed midstates of versions rolled under the pool mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MidstateJob {
    /// Job id byte (ESP-Miner: multiples of 4 below 128).
    pub job_id: u8,
    /// The `num_midstates` byte: how many midstates the chip works on (1..=4).
    pub num_midstates: u8,
    /// Starting nonce: where the chain's sweep begins (ESP-Miner always sends 0; what a real
    /// chip does with another value is undocumented; the emulator starts at the 2^16-nonce
    /// block holding it).
    pub starting_nonce: u32,
    pub nbits: u32,
    pub ntime: u32,
    /// Header bytes 64..68 (the merkle root's last 4 bytes, header order).
    pub merkle_tail: [u8; 4],
    /// Midstate slots as on the wire (see [`midstate_to_wire`]); only `slots` are sent.
    pub midstates: [[u8; 32]; 4],
    /// Number of 32-byte slots on the wire (1..=4). ESP-Miner always sends 4 and sets
    /// `num_midstates` to 1 or 4; cgminer sends exactly `num_midstates`.
    pub slots: u8,
}

/// A BM1366/BM1368/BM1370 job: the whole header but the nonce; the chip rolls version bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderJob {
    /// Job id byte: bits 6-3 on BM1368/70 (bits 7-3 on BM1366), low 3 bits zero.
    pub job_id: u8,
    /// The `num_midstates` byte: 1 from ESP-Miner and factory firmware; the chips ignore it.
    pub num_midstates: u8,
    /// Starting nonce, as in [`MidstateJob::starting_nonce`].
    pub starting_nonce: u32,
    pub nbits: u32,
    pub ntime: u32,
    /// Merkle root in header byte order (header bytes 36..68).
    pub merkle_root: [u8; 32],
    /// Previous block hash in header byte order (header bytes 4..36).
    pub prev_hash: [u8; 32],
    /// Base header version; the chip replaces the bits allowed by register 0xA4.
    pub version: u32,
    /// The length byte sent: 0x56 (ESP-Miner) or 0x36 (factory). The frame is 88 bytes either
    /// way; we keep the byte only to re-encode captures exactly.
    pub length_byte: u8,
}

/// A job frame of either kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Job {
    Midstate(MidstateJob),
    Header(HeaderJob),
}

/// An encoded job (56..=152 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobFrame {
    buf: [u8; MAX_JOB_FRAME],
    len: u8,
}

impl JobFrame {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl AsRef<[u8]> for JobFrame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A SHA-256 state (H0..H7) as a BM1397 job carries it: words in reverse order (H7 first),
/// each most significant byte first.
pub fn midstate_to_wire(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for i in 0..8 {
        out[4 * i..4 * i + 4].copy_from_slice(&state[7 - i].to_be_bytes());
    }
    out
}

/// Inverse of [`midstate_to_wire`].
pub fn midstate_from_wire(wire: &[u8; 32]) -> [u32; 8] {
    let mut state = [0u32; 8];
    for i in 0..8 {
        state[7 - i] = u32::from_be_bytes([wire[4 * i], wire[4 * i + 1], wire[4 * i + 2], wire[4 * i + 3]]);
    }
    state
}

/// A 32-byte hash in header order as a full-header job carries it: eight 4-byte words in
/// reverse order, bytes inside each word unchanged. The transform is its own inverse.
pub fn reverse_words(bytes: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for i in 0..8 {
        out[4 * i..4 * i + 4].copy_from_slice(&bytes[4 * (7 - i)..4 * (7 - i) + 4]);
    }
    out
}

/// `base` with its `mask` bits advanced `k` times, carrying only through mask bits (how
/// ESP-Miner derives the versions of a BM1397 job's midstates, and BIP 320 rolling in general).
pub fn rolled_version(base: u32, mask: u32, k: u32) -> u32 {
    if mask == 0 {
        return base;
    }
    // Compress the mask bits of `base` into a counter, add k, spread them back.
    let mut counter: u64 = 0;
    let mut bit = 0;
    for i in 0..32 {
        if mask & (1 << i) != 0 {
            counter |= u64::from((base >> i) & 1) << bit;
            bit += 1;
        }
    }
    counter = counter.wrapping_add(u64::from(k));
    let mut out = base & !mask;
    let mut bit = 0;
    for i in 0..32 {
        if mask & (1 << i) != 0 {
            out |= (((counter >> bit) & 1) as u32) << i;
            bit += 1;
        }
    }
    out
}

impl MidstateJob {
    /// A job from SHA-256 states (H0..H7 order) of the first 64 header bytes, one per version.
    pub fn new(job_id: u8, nbits: u32, ntime: u32, merkle_tail: [u8; 4], states: &[[u32; 8]]) -> Result<Self, Error> {
        if states.is_empty() || states.len() > 4 {
            return Err(Error::MidstateCount(states.len()));
        }
        let mut midstates = [[0u8; 32]; 4];
        for (slot, s) in midstates.iter_mut().zip(states) {
            *slot = midstate_to_wire(s);
        }
        Ok(Self {
            job_id,
            num_midstates: states.len() as u8,
            starting_nonce: 0,
            nbits,
            ntime,
            merkle_tail,
            midstates,
            slots: states.len() as u8,
        })
    }

    /// Header bytes 64..76 (merkle tail, ntime, nbits) as the sha256 core wants them.
    pub fn tail12(&self) -> [u8; 12] {
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&self.merkle_tail);
        t[4..8].copy_from_slice(&self.ntime.to_le_bytes());
        t[8..].copy_from_slice(&self.nbits.to_le_bytes());
        t
    }

    /// The midstates the chip works on (`num_midstates`, at most the slots sent), H0..H7 order.
    pub fn active_states(&self) -> impl Iterator<Item = [u32; 8]> + '_ {
        let n = self.num_midstates.clamp(1, self.slots.max(1)).min(4) as usize;
        self.midstates[..n].iter().map(midstate_from_wire)
    }

    pub fn encode(&self) -> JobFrame {
        let slots = self.slots.clamp(1, 4) as usize;
        let len = midstate_job_frame_len(slots);
        let mut buf = [0u8; MAX_JOB_FRAME];
        buf[..2].copy_from_slice(&HOST_PREAMBLE);
        buf[2] = JOB_TYPE;
        buf[3] = (len - 2) as u8;
        buf[4] = self.job_id;
        buf[5] = self.num_midstates;
        buf[6..10].copy_from_slice(&self.starting_nonce.to_le_bytes());
        buf[10..14].copy_from_slice(&self.nbits.to_le_bytes());
        buf[14..18].copy_from_slice(&self.ntime.to_le_bytes());
        buf[18..22].copy_from_slice(&self.merkle_tail);
        for i in 0..slots {
            buf[22 + 32 * i..54 + 32 * i].copy_from_slice(&self.midstates[i]);
        }
        let crc = crc16(&buf[2..len - 2]);
        buf[len - 2..len].copy_from_slice(&crc.to_be_bytes());
        JobFrame { buf, len: len as u8 }
    }

    fn parse_checked(frame: &[u8]) -> Result<Self, Error> {
        let len = frame.len();
        let slots = (len - 24) / 32;
        let mut midstates = [[0u8; 32]; 4];
        for (i, slot) in midstates.iter_mut().enumerate().take(slots) {
            slot.copy_from_slice(&frame[22 + 32 * i..54 + 32 * i]);
        }
        Ok(Self {
            job_id: frame[4],
            num_midstates: frame[5],
            starting_nonce: le32(&frame[6..10]),
            nbits: le32(&frame[10..14]),
            ntime: le32(&frame[14..18]),
            merkle_tail: [frame[18], frame[19], frame[20], frame[21]],
            midstates,
            slots: slots as u8,
        })
    }
}

impl HeaderJob {
    /// A job from an 80-byte header (its nonce field is ignored), with ESP-Miner's framing.
    pub fn from_header(job_id: u8, header: &[u8; 80]) -> Self {
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&header[4..36]);
        let mut merkle_root = [0u8; 32];
        merkle_root.copy_from_slice(&header[36..68]);
        Self {
            job_id,
            num_midstates: 1,
            starting_nonce: 0,
            nbits: le32(&header[72..76]),
            ntime: le32(&header[68..72]),
            merkle_root,
            prev_hash,
            version: le32(&header[0..4]),
            length_byte: HEADER_JOB_LENGTH_BYTE,
        }
    }

    /// The 80-byte header for a version and a nonce (nonce as the chip returns it: its value,
    /// stored little-endian in bytes 76..80).
    pub fn header(&self, version: u32, nonce: u32) -> [u8; 80] {
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_hash);
        h[36..68].copy_from_slice(&self.merkle_root);
        h[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }

    pub fn encode(&self) -> JobFrame {
        let mut buf = [0u8; MAX_JOB_FRAME];
        buf[..2].copy_from_slice(&HOST_PREAMBLE);
        buf[2] = JOB_TYPE;
        buf[3] = self.length_byte;
        buf[4] = self.job_id;
        buf[5] = self.num_midstates;
        buf[6..10].copy_from_slice(&self.starting_nonce.to_le_bytes());
        buf[10..14].copy_from_slice(&self.nbits.to_le_bytes());
        buf[14..18].copy_from_slice(&self.ntime.to_le_bytes());
        buf[18..50].copy_from_slice(&reverse_words(&self.merkle_root));
        buf[50..82].copy_from_slice(&reverse_words(&self.prev_hash));
        buf[82..86].copy_from_slice(&self.version.to_le_bytes());
        let crc = crc16(&buf[2..86]);
        buf[86..88].copy_from_slice(&crc.to_be_bytes());
        JobFrame { buf, len: HEADER_JOB_FRAME as u8 }
    }

    fn parse_checked(frame: &[u8]) -> Self {
        let mut m = [0u8; 32];
        m.copy_from_slice(&frame[18..50]);
        let mut p = [0u8; 32];
        p.copy_from_slice(&frame[50..82]);
        Self {
            job_id: frame[4],
            num_midstates: frame[5],
            starting_nonce: le32(&frame[6..10]),
            nbits: le32(&frame[10..14]),
            ntime: le32(&frame[14..18]),
            merkle_root: reverse_words(&m),
            prev_hash: reverse_words(&p),
            version: le32(&frame[82..86]),
            length_byte: frame[3],
        }
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl Job {
    pub fn job_id(&self) -> u8 {
        match self {
            Job::Midstate(j) => j.job_id,
            Job::Header(j) => j.job_id,
        }
    }

    pub fn encode(&self) -> JobFrame {
        match self {
            Job::Midstate(j) => j.encode(),
            Job::Header(j) => j.encode(),
        }
    }

    /// The frame length a job starting with `55 AA 21 <length byte>` has for this chip, or None
    /// when the length byte does not fit a BM1397 job. BM136x jobs are always 88 bytes whatever
    /// the length byte says (notes 1.3, UNSURE there: we follow what the chips accept).
    pub fn frame_len(chip: ChipType, length_byte: u8) -> Option<usize> {
        match chip.job_kind() {
            JobKind::Header => Some(HEADER_JOB_FRAME),
            JobKind::Midstate => midstate_len_from_byte(length_byte),
        }
    }

    /// Parse one whole job frame for a chip generation (preamble, type and CRC16 checked).
    pub fn parse(chip: ChipType, frame: &[u8]) -> Result<Self, Error> {
        Self::parse_kind(chip.job_kind(), frame)
    }

    /// Parse as a given job kind.
    pub fn parse_kind(kind: JobKind, frame: &[u8]) -> Result<Self, Error> {
        if frame.len() < 4 {
            return Err(Error::TooShort { len: frame.len(), need: 4 });
        }
        if frame[..2] != HOST_PREAMBLE {
            return Err(Error::BadPreamble { found: [frame[0], frame[1]] });
        }
        if frame[2] != JOB_TYPE {
            return Err(Error::UnknownType(frame[2]));
        }
        let want = match kind {
            JobKind::Header => HEADER_JOB_FRAME,
            JobKind::Midstate => midstate_len_from_byte(frame[3])
                .ok_or(Error::BadLengthByte { found: frame[3], expected: 0x36 })?,
        };
        if frame.len() != want {
            return Err(Error::WrongLength { found: frame.len(), expected: want });
        }
        let computed = crc16(&frame[2..want - 2]);
        let found = u16::from_be_bytes([frame[want - 2], frame[want - 1]]);
        if found != computed {
            return Err(Error::Crc16 { found, computed });
        }
        Ok(match kind {
            JobKind::Header => Job::Header(HeaderJob::parse_checked(frame)),
            JobKind::Midstate => Job::Midstate(MidstateJob::parse_checked(frame)?),
        })
    }
}

fn midstate_len_from_byte(length_byte: u8) -> Option<usize> {
    let total = length_byte as usize + 2;
    (total >= 56 && (total - 24).is_multiple_of(32) && total <= MAX_JOB_FRAME).then_some(total)
}
