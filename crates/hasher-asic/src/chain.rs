//! One BM13xx chain: bring-up, the job-slot table, nonce responses back to candidates, and the
//! heartbeat that notices a chain that stopped answering.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use firmware_protocol::decoder::{Decoder, DecoderStats, Direction, Event, Frame, ResponseLength};
use firmware_protocol::register::{VersionRolling, addr as reg};
use firmware_protocol::response::{NonceResponse, RegisterResponse, Response, ResponseForm};
use firmware_protocol::{ChipType, Command, HeaderJob, MidstateJob, rolled_version};
use hashrig_hasher::{Candidate, NonceRange, Origin, Sink, Target, WorkUnit};
use hashrig_sha256d::{Midstate, sha256d_header};

use crate::Error;
use crate::init::{cmd, init_sequence, io, rejected_since, send};
use crate::port::Port;
use crate::setup::{ChainConfig, ChainInfo};
use crate::stats::{ChainStats, NonceKind};

struct Slot {
    unit_id: u64,
    header: [u8; 80],
    /// BM1397: the version of each midstate.
    versions: Vec<u32>,
    /// BM136x: the bits the chip rolls.
    mask: u32,
    range: NonceRange,
    target: Target,
    flushed: bool,
    seen: HashSet<(u32, u32)>,
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Hashes the valid nonces stand for.
    pub hashes: u64,
    pub pushed: u64,
    pub frames: u64,
}

/// A chain that was brought up, on its port.
pub struct Chain<P: Port> {
    port: P,
    cfg: ChainConfig,
    info: ChainInfo,
    decoder: Decoder,
    /// What `decoder` had rejected when last added to `stats` (it starts at zero per decoder).
    decoder_accounted: DecoderStats,
    stats: ChainStats,
    slots: Vec<Option<Slot>>,
    ids: Vec<u8>,
    next_id: usize,
    epoch: Option<u64>,
    /// The job id sent last.
    current: Option<u8>,
    rolling_mask: Option<u32>,
    next_heartbeat: Instant,
    frames_since_heartbeat: u64,
    heartbeat_answers: Vec<bool>,
    missed_in_row: u32,
    model_mw: Vec<Option<u32>>,
    buf: Vec<u8>,
}

impl<P: Port> std::fmt::Debug for Chain<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("port", &self.port.name()).field("info", &self.info).finish()
    }
}

/// The valid job-id bytes of a generation, in the order they are used.
fn job_ids(chip: ChipType) -> Vec<u8> {
    let step = match chip {
        ChipType::Bm1397 => 4,
        _ => 8,
    };
    (0..128u16).step_by(step).map(|i| i as u8).filter(|&i| chip.is_valid_job_id(i)).collect()
}

impl<P: Port> Chain<P> {
    /// Reset state, enumerate, address, configure and clock the chain (notes section 5).
    pub fn bring_up(mut port: P, cfg: ChainConfig, stats: ChainStats) -> Result<Self, Error> {
        let info = init_sequence(&mut port, &cfg, Some(&stats))?;
        stats.set_chain(&info);
        let form = if info.chip_type.has_long_responses() { ResponseForm::Long } else { ResponseForm::Short };
        let decoder = Decoder::new(Direction::ChipToHost, info.chip_type).with_response_length(ResponseLength::Fixed(form));
        let chips = info.chips;
        let ids = job_ids(info.chip_type);
        let rolling_mask = info.chip_type.rolls_versions().then_some(VersionRolling::MAX_MASK);
        Ok(Self {
            port,
            next_heartbeat: Instant::now() + cfg.heartbeat,
            cfg,
            info,
            decoder,
            decoder_accounted: DecoderStats::default(),
            stats,
            slots: (0..128).map(|_| None).collect(),
            ids,
            next_id: 0,
            epoch: None,
            current: None,
            rolling_mask,
            frames_since_heartbeat: 1,
            heartbeat_answers: vec![true; chips],
            missed_in_row: 0,
            model_mw: vec![None; chips],
            buf: vec![0u8; 4096],
        })
    }

    /// Bring the same chain up again on the same port (after it stopped answering).
    pub fn reinit(&mut self) -> Result<(), Error> {
        self.stats.with(|c| c.reinit());
        // What the old decoder rejected stays counted; the new one starts from zero.
        self.account_decoder();
        let info = init_sequence(&mut self.port, &self.cfg, Some(&self.stats))?;
        self.stats.set_chain(&info);
        let form = if info.chip_type.has_long_responses() { ResponseForm::Long } else { ResponseForm::Short };
        self.decoder = Decoder::new(Direction::ChipToHost, info.chip_type).with_response_length(ResponseLength::Fixed(form));
        self.decoder_accounted = DecoderStats::default();
        self.rolling_mask = info.chip_type.rolls_versions().then_some(VersionRolling::MAX_MASK);
        self.heartbeat_answers = vec![true; info.chips];
        self.model_mw = vec![None; info.chips];
        self.info = info;
        // Jobs sent before the re-init are gone from the chips.
        for s in self.slots.iter_mut().flatten() {
            s.flushed = true;
        }
        self.missed_in_row = 0;
        self.frames_since_heartbeat = 1;
        self.next_heartbeat = Instant::now() + self.cfg.heartbeat;
        Ok(())
    }

    pub fn info(&self) -> &ChainInfo {
        &self.info
    }

    pub fn stats(&self) -> &ChainStats {
        &self.stats
    }

    /// The link (tests and benches feed recorded bytes through it).
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    pub fn port_name(&self) -> String {
        self.port.name()
    }

    /// The configuration the chain was brought up with.
    pub fn config(&self) -> &ChainConfig {
        &self.cfg
    }

    /// Has the chain missed `stall_heartbeats` heartbeats in a row?
    pub fn stalled(&self) -> bool {
        self.missed_in_row >= self.cfg.stall_heartbeats
    }

    /// Time one job should run: ESP-Miner's intervals (BM1366 2 s, BM1368/70 0.5 s, divided by
    /// the chain length rounded up to a power of two), never longer than the chain takes to
    /// exhaust the job's nonce x version space at its nominal rate.
    pub fn job_interval(&self, version_mask: u32) -> Duration {
        if let Some(d) = self.cfg.job_interval {
            return d;
        }
        let chip = self.info.chip_type;
        let pow2 = self.info.chips.max(1).next_power_of_two() as f64;
        let versions = match chip {
            ChipType::Bm1397 => 4f64.min(2f64.powi(version_mask.count_ones() as i32)),
            _ => 2f64.powi((version_mask & VersionRolling::MAX_MASK).count_ones() as i32),
        };
        let exhaust = 4_294_967_296.0 * versions / self.info.nominal_hashrate.max(1.0);
        let esp = match chip {
            ChipType::Bm1397 => exhaust * 0.75,
            ChipType::Bm1366 => 2.0 / pow2,
            _ => 0.5 / pow2,
        };
        Duration::from_secs_f64(esp.min(exhaust).max(0.005))
    }

    /// Start work on a unit: a new epoch flushes the job table first; then the job goes out.
    pub fn start_unit(&mut self, unit: &WorkUnit) -> Result<u8, Error> {
        if self.epoch.is_some_and(|e| e != unit.epoch) {
            for s in self.slots.iter_mut().flatten() {
                s.flushed = true;
            }
            self.stats.with(|c| c.flush());
        }
        self.epoch = Some(unit.epoch);
        self.send_job(unit)
    }

    /// One job frame for `unit`. Its starting-nonce field carries `unit.range.start()`.
    ///
    /// What a range means on a chain: the chip and core fields sit in the low 16 bits of the
    /// nonce value (nonce_h bits 31-17, notes 2.3), so every block of 2^16 consecutive nonce
    /// values holds a slice for every chip and core, and the chain advances through the space
    /// block by block, all chips at once. The starting nonce is taken as where that sweep
    /// begins (the emulator starts at the 2^16 block holding it and wraps past 2^32). The range
    /// is never a bound on what the chain hashes: nonces outside it still count toward the
    /// hashrate estimate, they are just not pushed as candidates. ESP-Miner always sends 0 and
    /// what a real chip does with another value is not documented (notes 3.1/3.2); the engine
    /// hands an ASIC whole-space units (`lanes` = 2^32), so on hardware the field is 0 as in
    /// ESP-Miner, and only narrower units (the conformance kit) send anything else.
    fn send_job(&mut self, unit: &WorkUnit) -> Result<u8, Error> {
        let chip = self.info.chip_type;
        let id = self.ids[self.next_id % self.ids.len()];
        self.next_id = (self.next_id + 1) % self.ids.len();
        let base = unit.version();
        // The rate's window opens before any byte of the job (or its version-mask write) leaves.
        self.stats.with(|c| c.job_going_out());
        let mut slot = Slot {
            unit_id: unit.id,
            header: unit.header,
            versions: vec![base],
            mask: 0,
            range: unit.range,
            target: unit.target,
            flushed: false,
            seen: HashSet::new(),
        };
        let frame = if chip.rolls_versions() {
            let mask = unit.version_mask & VersionRolling::MAX_MASK;
            if self.rolling_mask != Some(mask) {
                let value = VersionRolling::enabled(mask).map_err(Error::Protocol)?.to_register();
                cmd(&mut self.port, Command::write_all(reg::VERSION_ROLLING, value))?;
                self.rolling_mask = Some(mask);
            }
            slot.mask = mask;
            let mut job = HeaderJob::from_header(id, &unit.header);
            job.starting_nonce = unit.range.start();
            job.encode()
        } else {
            let mask = unit.version_mask;
            let n = if mask == 0 { 1 } else { 4u32.min(1 << mask.count_ones().min(2)) };
            slot.versions = (0..n).map(|k| rolled_version(base, mask, k)).collect();
            let states: Vec<[u32; 8]> = slot
                .versions
                .iter()
                .map(|v| {
                    let mut first = [0u8; 64];
                    first.copy_from_slice(&unit.header[..64]);
                    first[0..4].copy_from_slice(&v.to_le_bytes());
                    Midstate::of(&first).0
                })
                .collect();
            let le = |r: std::ops::Range<usize>| u32::from_le_bytes(unit.header[r].try_into().expect("4 bytes"));
            let tail = [unit.header[64], unit.header[65], unit.header[66], unit.header[67]];
            let mut job = MidstateJob::new(id, le(72..76), le(68..72), tail, &states).map_err(Error::Protocol)?;
            job.starting_nonce = unit.range.start();
            job.encode()
        };
        self.slots[id as usize] = Some(slot);
        self.current = Some(id);
        send(&mut self.port, frame.as_bytes())?;
        self.stats.with(|c| c.job_sent());
        Ok(id)
    }

    /// The chip index owning a nonce's address field (largest address not above it).
    fn chip_index(&self, field: u8) -> usize {
        match self.info.addresses.iter().rposition(|&a| a <= field) {
            Some(i) => i,
            None => self.info.addresses.len().saturating_sub(1),
        }
    }

    /// Read for up to `timeout`, handle every frame, push candidates; heartbeat when due.
    pub fn poll(&mut self, timeout: Duration, sink: &Sink) -> Result<PollOutcome, Error> {
        let mut out = PollOutcome::default();
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.heartbeat()?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let n = self.port.read_timeout(&mut buf, timeout).map_err(io("read from the chain"));
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.buf = buf;
                return Err(e);
            }
        };
        if n > 0 {
            self.decoder.push(&buf[..n]);
        }
        self.buf = buf;
        while let Some(event) = self.decoder.next_event() {
            if let Event::Frame { frame: Frame::Response(r), .. } = event {
                out.frames += 1;
                self.frames_since_heartbeat += 1;
                match r {
                    Response::Nonce(nr) => self.on_nonce(nr, sink, &mut out),
                    Response::Register(rr) => self.on_register(rr),
                }
            }
        }
        if n > 0 {
            self.account_decoder();
        }
        Ok(out)
    }

    /// Add what the live decoder rejected since the last call to the chain's totals.
    fn account_decoder(&mut self) {
        let (bad, skipped) = rejected_since(&self.decoder, &self.decoder_accounted);
        if bad + skipped > 0 {
            self.stats.with(|c| c.add_decoder(bad, skipped));
        }
        self.decoder_accounted = self.decoder.stats();
    }

    fn heartbeat(&mut self) -> Result<(), Error> {
        if self.frames_since_heartbeat == 0 {
            self.missed_in_row += 1;
            self.stats.with(|c| c.missed_heartbeat());
            tracing::warn!(port = %self.port.name(), missed = self.missed_in_row, "chain did not answer a heartbeat");
        } else {
            self.missed_in_row = 0;
        }
        let answers = std::mem::replace(&mut self.heartbeat_answers, vec![false; self.info.chips]);
        self.stats.with(|c| c.set_answering(&answers));
        if self.cfg.emulator_power_model {
            let total: Option<u32> = self.model_mw.iter().copied().sum();
            if let Some(mw) = total {
                self.stats.with(|c| c.set_model_watts(Some(f64::from(mw) / 1000.0)));
            }
            cmd(&mut self.port, Command::read_all(reg::EMU_POWER_MW))?;
        }
        cmd(&mut self.port, Command::read_all(reg::CHIP_ID))?;
        self.frames_since_heartbeat = 0;
        self.next_heartbeat = Instant::now() + self.cfg.heartbeat;
        Ok(())
    }

    fn on_register(&mut self, r: RegisterResponse) {
        let Some(i) = self.info.addresses.iter().position(|&a| a == r.chip_address) else { return };
        match r.register {
            reg::CHIP_ID => self.heartbeat_answers[i] = true,
            reg::EMU_POWER_MW => self.model_mw[i] = Some(r.value),
            _ => {}
        }
    }

    fn on_nonce(&mut self, r: NonceResponse, sink: &Sink, out: &mut PollOutcome) {
        let chip = self.info.chip_type;
        let wire = r.job_id(chip);
        let core = u16::from(r.core_id());
        let index = self.chip_index(r.chip_address_field());
        let origin = Origin { chip: Some(index as u16), core: Some(core) };
        let Some(slot) = self.slots.get_mut(wire as usize).and_then(|s| s.as_mut()) else {
            self.stats.with(|c| c.unknown_job());
            return;
        };
        if slot.flushed {
            self.stats.record(index, core, NonceKind::Late);
            return;
        }
        let base = slot.versions[0];
        let version = match chip {
            ChipType::Bm1397 => match slot.versions.get(usize::from(r.sub_id(chip))) {
                Some(&v) => v,
                None => {
                    // A midstate index we never sent: the chip is confused.
                    self.stats.record(index, core, NonceKind::HwError);
                    return;
                }
            },
            _ => r.version(chip, base, slot.mask),
        };
        let mut header = slot.header;
        header[0..4].copy_from_slice(&version.to_le_bytes());
        header[76..80].copy_from_slice(&r.nonce.to_le_bytes());
        let digest = sha256d_header(&header);
        let candidate = Candidate { unit_id: slot.unit_id, nonce: r.nonce, version, origin };
        if hashrig_sha256d::leading_zero_bits(&digest) < u32::from(self.info.ticket_zero_bits) {
            // Wrong result: counted here, and handed to the engine, whose re-verification
            // counts it per chip/core and never submits it.
            self.stats.record(index, core, NonceKind::HwError);
            sink.push(candidate);
            out.pushed += 1;
            return;
        }
        if !slot.seen.insert((version, r.nonce)) {
            self.stats.record(index, core, NonceKind::Duplicate);
            return;
        }
        self.stats.record(index, core, NonceKind::Valid);
        if self.current != Some(wire) {
            // For a job a newer one replaced without a flush: still good work, counted apart.
            self.stats.with(|c| c.superseded());
        }
        out.hashes += 1u64 << self.info.ticket_zero_bits.min(63);
        if slot.range.contains(r.nonce) && slot.target.is_met_by(&digest) {
            sink.push(candidate);
            out.pushed += 1;
        }
    }
}

