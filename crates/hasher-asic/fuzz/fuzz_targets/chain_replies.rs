//! Fuzz the chain driver fed hostile chip replies: `Chain::bring_up` then `Chain::start_unit`
//! and `Chain::poll` over a scripted `Port` (the public trait the tests use for a chip on a
//! socket pair). Every read the driver makes returns the next piece of the input, followed by
//! what an honest chain would answer to the commands it sent (each chip's id for a chip-id
//! read), so bring-up usually succeeds and everything after it is the fuzzer's.
//!
//! Input: byte 0: chip generation (bits 0-1), chips 1..=4 (bits 2-3), an every-poll heartbeat
//! (bit 4), the emulator's 0-bit ticket so that every nonce passes the ticket check (bit 5),
//! "framed" pieces (bit 6: each 10-byte group below becomes a response frame with a good CRC,
//! so nonces for the jobs sent are reachable), raw pieces otherwise. Then pieces, each a length
//! byte and that many bytes; a length byte of 0 starts a new work unit (a new epoch when the
//! next byte is odd), which flushes the job table.
//!
//! Invariants beyond "no panic": the driver's reads and polls never fail; polls take bounded
//! time; every response frame the driver decodes (counted by a second decoder over the very
//! bytes it read) is one nonce outcome (valid, hardware error, duplicate, late or unknown job)
//! or a register answer; no more candidates are pushed than frames decoded; every candidate
//! names a unit that was started and a chip of the chain.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use firmware_protocol::register::addr as reg;
use firmware_protocol::{ChipType, Command, Decoder, Direction, Frame, NonceResponse, RegisterResponse, Response, ResponseForm, ResponseLength};
use hashrig_hasher::{NonceRange, Sink, Target, WorkUnit};
use hashrig_hasher_asic::{Chain, ChainConfig, ChainStats, Port};
use libfuzzer_sys::fuzz_target;

struct FakeChain {
    pieces: VecDeque<Vec<u8>>,
    pending: VecDeque<u8>,
    answers: Vec<u8>,
    chip: ChipType,
    chips: usize,
    form: ResponseForm,
    /// Every byte handed to the driver since `tapping` was set.
    tap: Vec<u8>,
    tapping: bool,
    read_chip_id: Vec<u8>,
}

impl Port for FakeChain {
    fn read_timeout(&mut self, buf: &mut [u8], _timeout: Duration) -> io::Result<usize> {
        if self.pending.is_empty() {
            if let Some(p) = self.pieces.pop_front() {
                self.pending.extend(p);
            }
            self.pending.extend(self.answers.drain(..));
        }
        let n = buf.len().min(self.pending.len());
        for (dst, src) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *dst = src;
        }
        if self.tapping {
            self.tap.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }

    fn write_all_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes == self.read_chip_id.as_slice() {
            let interval = 256 / self.chips;
            for i in 0..self.chips {
                let addr = (i * interval) as u8;
                let r = Response::Register(RegisterResponse { value: self.chip.chip_id_register(addr), chip_address: addr, register: reg::CHIP_ID, extra: None });
                self.answers.extend_from_slice(r.with_form(self.form).encode().as_bytes());
            }
        }
        Ok(())
    }

    fn set_baud(&mut self, _baud: u32) -> io::Result<()> {
        Ok(())
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.answers.clear();
        Ok(())
    }

    fn name(&self) -> String {
        "fuzz chain".into()
    }
}

/// A 10-byte group as a response frame with a good CRC (framed mode).
fn frame(g: &[u8], form: ResponseForm) -> Vec<u8> {
    let mut b = [0u8; 10];
    b[..g.len()].copy_from_slice(g);
    let r = if b[0] & 1 == 0 {
        Response::Nonce(NonceResponse { nonce: u32::from_le_bytes([b[1], b[2], b[3], b[4]]), byte6: b[5], id_byte: b[6], version_bits: Some(u16::from_be_bytes([b[7], b[8]])) })
    } else {
        Response::Register(RegisterResponse { value: u32::from_le_bytes([b[1], b[2], b[3], b[4]]), chip_address: b[5], register: b[6], extra: Some([b[7], b[8]]) })
    };
    let bytes = r.with_form(form).encode().as_bytes().to_vec();
    // Bit 1 of the first byte: cut the frame short at b[9] % len bytes (a torn frame).
    if b[0] & 2 == 2 { bytes[..usize::from(b[9]) % bytes.len()].to_vec() } else { bytes }
}

fn header(tag: u8) -> [u8; 80] {
    let mut h = [0u8; 80];
    for (i, b) in h.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(tag);
    }
    h[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    h
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfgb, mut rest)) = data.split_first() else { return };
    let chip = [ChipType::Bm1397, ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370][usize::from(cfgb & 3)];
    let chips = 1 + usize::from((cfgb >> 2) & 3);
    let heartbeat_every_poll = cfgb & 0x10 != 0;
    let zero_ticket = cfgb & 0x20 != 0;
    let framed = cfgb & 0x40 != 0;
    let form = if chip.has_long_responses() { ResponseForm::Long } else { ResponseForm::Short };

    // Pieces: (Some(bytes)) to read, or None: start a unit (with the byte after the 0).
    let mut script: Vec<Result<Vec<u8>, u8>> = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 {
            let arg = tail.first().copied().unwrap_or(0);
            script.push(Err(arg));
            rest = tail.get(1..).unwrap_or(&[]);
            continue;
        }
        let n = usize::from(len).min(tail.len());
        let raw = &tail[..n];
        rest = &tail[n..];
        script.push(Ok(if framed { raw.chunks(10).flat_map(|g| frame(g, form)).collect() } else { raw.to_vec() }));
    }
    // The first two pieces go to bring-up (enumeration and the link check read once each when
    // the chips answer); the rest to polls.
    let mut port = FakeChain {
        pieces: VecDeque::new(),
        pending: VecDeque::new(),
        answers: Vec::new(),
        chip,
        chips,
        form,
        tap: Vec::new(),
        tapping: false,
        read_chip_id: Command::read_all(reg::CHIP_ID).encode().as_bytes().to_vec(),
    };
    let mut polls = Vec::new();
    for (i, s) in script.into_iter().enumerate() {
        match s {
            Ok(p) if i < 2 => port.pieces.push_back(p),
            other => polls.push(other),
        }
    }
    let cfg = ChainConfig {
        chip: None,
        chips: Some(chips),
        mhz: None,
        emulator_ticket_zero_bits: zero_ticket.then_some(0),
        raise_baud: false,
        pacing: Duration::ZERO,
        // Honest answers come with the first read; this only bounds inputs that spoil them.
        enumerate_timeout: Duration::from_micros(100),
        enumerate_quiet: Duration::ZERO,
        job_interval: None,
        heartbeat: if heartbeat_every_poll { Duration::ZERO } else { Duration::from_secs(3600) },
        ..ChainConfig::default()
    };
    let started = Instant::now();
    let mut chain = match Chain::bring_up(port, cfg, ChainStats::new()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let n_chips = chain.info().chips;
    assert!(n_chips >= 1 && chain.info().addresses.len() == n_chips);
    let port = chain.port_mut();
    port.pieces.clear();
    port.pending.clear();
    port.tapping = true;

    let (sink, rx) = Sink::channel();
    let mut unit_ids = Vec::new();
    let mut epoch = 0u64;
    let mut start_unit = |chain: &mut Chain<FakeChain>, arg: u8, unit_ids: &mut Vec<u64>| {
        if arg & 1 == 1 {
            epoch += 1;
        }
        let id = unit_ids.len() as u64 + 1000;
        let unit = WorkUnit {
            id,
            epoch,
            header: header(arg),
            range: if arg & 2 == 2 { NonceRange::FULL } else { NonceRange::new(0, 1 << 31).unwrap_or(NonceRange::FULL) },
            target: Target::MAX,
            version_mask: if arg & 4 == 4 { 0x1fff_e000 } else { 0 },
        };
        chain.start_unit(&unit).expect("start a unit");
        unit_ids.push(id);
    };
    start_unit(&mut chain, 1, &mut unit_ids);

    let before = chain.stats().snapshot();
    let (mut frames, mut pushed) = (0u64, 0u64);
    for step in polls {
        match step {
            Err(arg) => start_unit(&mut chain, arg, &mut unit_ids),
            Ok(piece) => {
                chain.port_mut().pieces.push_back(piece);
                let t = Instant::now();
                let out = chain.poll(Duration::ZERO, &sink).expect("poll over a working port");
                assert!(t.elapsed() < Duration::from_secs(1), "one poll took {:?}", t.elapsed());
                frames += out.frames;
                pushed += out.pushed;
            }
        }
    }
    assert!(pushed <= frames, "{pushed} candidates from {frames} frames");

    // The same bytes through a second decoder: every response frame is accounted for.
    let after = chain.stats().snapshot();
    let mut d = Decoder::new(Direction::ChipToHost, chip).with_response_length(ResponseLength::Fixed(form));
    d.push(&chain.port_mut().tap);
    let (mut nonces, mut registers) = (0u64, 0u64);
    while let Some(f) = d.next_frame() {
        match f {
            Frame::Response(Response::Nonce(_)) => nonces += 1,
            Frame::Response(Response::Register(_)) => registers += 1,
            other => panic!("a chip-to-host decoder gave {other:?}"),
        }
    }
    assert_eq!(frames, nonces + registers, "driver frames vs decoded frames");
    let outcomes = (after.valid_nonces - before.valid_nonces)
        + (after.hw_errors - before.hw_errors)
        + (after.duplicates - before.duplicates)
        + (after.late - before.late)
        + (after.unknown_job - before.unknown_job);
    assert_eq!(outcomes, nonces, "nonce frames vs outcomes counted");
    drop(sink);
    for c in rx.try_iter() {
        assert!(unit_ids.contains(&c.unit_id), "candidate for unit {} never started", c.unit_id);
        assert!(c.origin.chip.is_some_and(|i| usize::from(i) < n_chips), "{:?}", c.origin);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "one input took {:?}", started.elapsed());
});
