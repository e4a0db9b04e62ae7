//! A sans-IO streaming decoder: bytes in, frames out.
//!
//! Feed bytes as they arrive with [`Decoder::push`], then take [`Event`]s with
//! [`Decoder::next_event`] until it returns `None` (a partial frame waits for more bytes).
//! Garbage is skipped one byte at a time until a preamble starts a frame whose CRC checks;
//! every skipped run, bad CRC and malformed frame is reported as an event and counted in
//! [`DecoderStats`]. The decoder never panics and never stalls: each call either emits an event,
//! drops at least one byte, or says it needs more input. Call [`Decoder::finish`] at the end of
//! a capture so a trailing partial frame is reported as skipped bytes.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::chip::{ChipType, JobKind};
use crate::command::{Command, HOST_PREAMBLE};
use crate::crc::{crc16, crc5};
use crate::job::{Job, JOB_TYPE, MAX_JOB_FRAME};
use crate::response::{Response, ResponseForm, CHIP_PREAMBLE};
use crate::Error;

/// Which way the bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Host -> chip: commands and jobs (`55 AA`).
    HostToChip,
    /// Chip -> host: register and nonce responses (`AA 55`).
    ChipToHost,
}

/// How long chip responses are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseLength {
    Fixed(ResponseForm),
    /// Take whichever of 9 and 11 bytes has a valid CRC (11 when both do, unless `AA 55`
    /// follows the 9th byte). Waits for 11 bytes before deciding, so use `Fixed` in a live
    /// driver that knows what it configured.
    Auto,
}

/// A decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    Command(Command),
    Job(Job),
    Response(Response),
}

/// The raw bytes of a frame or a rejected candidate (at most 152 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Raw {
    buf: [u8; MAX_JOB_FRAME],
    len: u8,
}

impl Raw {
    fn new(bytes: &[u8]) -> Self {
        let mut buf = [0u8; MAX_JOB_FRAME];
        let n = bytes.len().min(MAX_JOB_FRAME);
        buf[..n].copy_from_slice(&bytes[..n]);
        Self { buf, len: n as u8 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl core::fmt::Debug for Raw {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the decoder found. `offset` is the position of the first byte in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Frame { offset: u64, frame: Frame, raw: Raw },
    /// A preamble and a plausible length, but the CRC does not check. One byte is dropped and
    /// the search resumes (the rest of the candidate is then reported as skipped bytes unless a
    /// frame starts inside it).
    BadCrc { offset: u64, raw: Raw, error: Error },
    /// The CRC checks but the content is not a frame we know (e.g. an unknown type byte).
    Malformed { offset: u64, raw: Raw, error: Error },
    /// Bytes that belong to no frame.
    Skipped { offset: u64, len: u64 },
}

/// Counters since the decoder was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub bytes_in: u64,
    pub frames: u64,
    pub bad_crc: u64,
    pub malformed: u64,
    pub skipped_bytes: u64,
}

/// The streaming decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    direction: Direction,
    chip: ChipType,
    response_length: ResponseLength,
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[pos]`.
    offset: u64,
    skip_start: u64,
    skip_len: u64,
    finished: bool,
    pending: VecDeque<Event>,
    stats: DecoderStats,
}

#[allow(clippy::large_enum_variant, reason = "one short-lived value per step, never stored")]
enum Step {
    NeedMore,
    Drop,
    Emit(Event, usize),
}

impl Decoder {
    /// A decoder for one direction of a link to chips of one generation (`Unknown` decodes
    /// host jobs by trying both kinds). Chip -> host lengths default to the generation's:
    /// 9 bytes for BM1397, `Auto` for the others.
    pub fn new(direction: Direction, chip: ChipType) -> Self {
        let response_length = match chip {
            ChipType::Bm1397 => ResponseLength::Fixed(ResponseForm::Short),
            _ => ResponseLength::Auto,
        };
        Self {
            direction,
            chip,
            response_length,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
            skip_start: 0,
            skip_len: 0,
            finished: false,
            pending: VecDeque::new(),
            stats: DecoderStats::default(),
        }
    }

    /// Set the response length rule (a driver knows whether it enabled the 11-byte form).
    pub fn with_response_length(mut self, rule: ResponseLength) -> Self {
        self.response_length = rule;
        self
    }

    /// Change the response length rule on a live decoder (e.g. after writing 0xA4).
    pub fn set_response_length(&mut self, rule: ResponseLength) {
        self.response_length = rule;
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn chip(&self) -> ChipType {
        self.chip
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.stats.bytes_in += bytes.len() as u64;
    }

    /// No more input will come: whatever is left is reported by the next events.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Forget buffered bytes (e.g. after the link changed baud rate). They are counted as skipped.
    pub fn reset(&mut self) {
        let n = self.buffered() as u64;
        if n > 0 {
            self.note_skip(n);
            self.offset += n;
        }
        self.buf.clear();
        self.pos = 0;
        self.flush_skip();
    }

    /// The next event, or None when more bytes are needed (or everything was consumed).
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            match self.step() {
                Step::NeedMore => {
                    if self.finished && self.buffered() > 0 {
                        self.drop_bytes(1);
                        continue;
                    }
                    self.flush_skip();
                    return self.pending.pop_front();
                }
                Step::Drop => self.drop_bytes(1),
                Step::Emit(event, consumed) => {
                    self.flush_skip();
                    match &event {
                        Event::Frame { .. } => self.stats.frames += 1,
                        Event::BadCrc { .. } => self.stats.bad_crc += 1,
                        Event::Malformed { .. } => self.stats.malformed += 1,
                        Event::Skipped { .. } => {}
                    }
                    self.pending.push_back(event);
                    self.pos += consumed;
                    self.offset += consumed as u64;
                }
            }
        }
    }

    /// Only the frames, skipping the other events (they are still counted in the stats).
    pub fn next_frame(&mut self) -> Option<Frame> {
        while let Some(e) = self.next_event() {
            if let Event::Frame { frame, .. } = e {
                return Some(frame);
            }
        }
        None
    }

    fn drop_bytes(&mut self, n: usize) {
        self.note_skip(n as u64);
        self.pos += n;
        self.offset += n as u64;
    }

    fn note_skip(&mut self, n: u64) {
        if self.skip_len == 0 {
            self.skip_start = self.offset;
        }
        self.skip_len += n;
        self.stats.skipped_bytes += n;
    }

    fn flush_skip(&mut self) {
        if self.skip_len > 0 {
            self.pending.push_back(Event::Skipped { offset: self.skip_start, len: self.skip_len });
            self.skip_len = 0;
        }
    }

    fn step(&self) -> Step {
        let avail = &self.buf[self.pos..];
        match self.direction {
            Direction::HostToChip => self.step_host(avail),
            Direction::ChipToHost => self.step_chip(avail),
        }
    }

    fn step_host(&self, avail: &[u8]) -> Step {
        if avail.len() < 2 {
            return Step::NeedMore;
        }
        if avail[..2] != HOST_PREAMBLE {
            return Step::Drop;
        }
        if avail.len() < 4 {
            return Step::NeedMore;
        }
        let t = avail[2];
        let off = self.offset;
        if let Some(len) = Command::frame_len_for_type(t) {
            if avail[3] as usize != len - 2 {
                return Step::Drop;
            }
            if avail.len() < len {
                return Step::NeedMore;
            }
            let raw = &avail[..len];
            let computed = crc5(&raw[2..len - 1]);
            if raw[len - 1] != computed {
                let error = Error::Crc5 { found: raw[len - 1], computed };
                return Step::Emit(Event::BadCrc { offset: off, raw: Raw::new(raw), error }, 1);
            }
            return match Command::parse(raw) {
                Ok(c) => Step::Emit(Event::Frame { offset: off, frame: Frame::Command(c), raw: Raw::new(raw) }, len),
                Err(error) => Step::Emit(Event::Malformed { offset: off, raw: Raw::new(raw), error }, 1),
            };
        }
        if t != JOB_TYPE {
            return Step::Drop;
        }
        // Jobs: candidate lengths by generation.
        let kinds: &[JobKind] = match self.chip {
            ChipType::Unknown(_) => &[JobKind::Midstate, JobKind::Header],
            c => match c.job_kind() {
                JobKind::Midstate => &[JobKind::Midstate],
                JobKind::Header => &[JobKind::Header],
            },
        };
        let mut first_bad: Option<(usize, Error)> = None;
        for &kind in kinds {
            let chip = match kind {
                JobKind::Midstate => ChipType::Bm1397,
                JobKind::Header => ChipType::Bm1370,
            };
            let Some(len) = Job::frame_len(chip, avail[3]) else { continue };
            if avail.len() < len {
                if self.finished {
                    continue;
                }
                return Step::NeedMore;
            }
            let raw = &avail[..len];
            let computed = crc16(&raw[2..len - 2]);
            let found = u16::from_be_bytes([raw[len - 2], raw[len - 1]]);
            if found != computed {
                if first_bad.is_none() {
                    first_bad = Some((len, Error::Crc16 { found, computed }));
                }
                continue;
            }
            return match Job::parse_kind(kind, raw) {
                Ok(j) => Step::Emit(Event::Frame { offset: off, frame: Frame::Job(j), raw: Raw::new(raw) }, len),
                Err(error) => Step::Emit(Event::Malformed { offset: off, raw: Raw::new(raw), error }, 1),
            };
        }
        match first_bad {
            Some((len, error)) => Step::Emit(Event::BadCrc { offset: off, raw: Raw::new(&avail[..len]), error }, 1),
            None => Step::Drop,
        }
    }

    fn step_chip(&self, avail: &[u8]) -> Step {
        if avail.len() < 2 {
            return Step::NeedMore;
        }
        if avail[..2] != CHIP_PREAMBLE {
            return Step::Drop;
        }
        let off = self.offset;
        let ok = |len: usize| avail.len() >= len && crc5(&avail[2..len]) == 0;
        let len = match self.response_length {
            ResponseLength::Fixed(form) => {
                let len = form.len();
                if avail.len() < len {
                    return Step::NeedMore;
                }
                len
            }
            ResponseLength::Auto => {
                if avail.len() < 11 && !self.finished {
                    return Step::NeedMore;
                }
                if avail.len() < 9 {
                    return Step::NeedMore;
                }
                match (ok(9), ok(11)) {
                    (true, true) => {
                        if avail[9..11] == CHIP_PREAMBLE { 9 } else { 11 }
                    }
                    (true, false) => 9,
                    (false, true) => 11,
                    (false, false) => {
                        let len = if avail.len() >= 11 && self.chip.has_long_responses() { 11 } else { 9 };
                        let raw = &avail[..len];
                        let computed = crate::crc::crc5_bits(&raw[2..], (len - 2) * 8 - 5);
                        let error = Error::Crc5 { found: raw[len - 1] & 0x1f, computed };
                        return Step::Emit(Event::BadCrc { offset: off, raw: Raw::new(raw), error }, 1);
                    }
                }
            }
        };
        let raw = &avail[..len];
        match Response::parse(raw) {
            Ok(r) => Step::Emit(Event::Frame { offset: off, frame: Frame::Response(r), raw: Raw::new(raw) }, len),
            Err(error @ Error::Crc5 { .. }) => Step::Emit(Event::BadCrc { offset: off, raw: Raw::new(raw), error }, 1),
            Err(error) => Step::Emit(Event::Malformed { offset: off, raw: Raw::new(raw), error }, 1),
        }
    }
}
