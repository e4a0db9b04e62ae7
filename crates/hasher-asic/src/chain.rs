//! One BM13xx chain: bring-up, the job-slot table, nonce responses back to candidates, and the
//! heartbeat that notices a chain that stopped answering.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use firmware_protocol::decoder::{Decoder, DecoderStats, Direction, Event, Frame, ResponseLength};
use firmware_protocol::register::{HashCountingNumber, Pll, TicketMask, VersionRolling, addr as reg};
use firmware_protocol::response::{NonceResponse, RegisterResponse, Response, ResponseForm};
use firmware_protocol::{ChipType, Command, HeaderJob, MidstateJob, rolled_version};
use hashrig_hasher::{Candidate, NonceRange, Origin, Sink, Target, WorkUnit};
use hashrig_sha256d::{Midstate, sha256d_header};

use crate::Error;
use crate::port::Port;
use crate::stats::{ChainStats, NonceKind};

/// The host's baud before anything is raised (the chips sit at 115 740, 0.5 % away).
pub const HOST_RESET_BAUD: u32 = 115_200;

/// How to bring a chain up and run it.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// The generation expected; a chain of another one is an error. None: take what answers.
    pub chip: Option<ChipType>,
    /// Chips expected; a different count is logged (and the chips found are used).
    pub chips: Option<usize>,
    /// Target frequency (MHz); None: the generation's ESP-Miner default.
    pub mhz: Option<f64>,
    /// Ticket difficulty written to register 0x14 (ESP-Miner: 256).
    pub ticket_difficulty: f64,
    /// EMULATOR ONLY (register 0xF8, no real chip has it): report hashes with this many leading
    /// zero bits instead of 32 + N, so a CPU-speed emulated chain returns nonces often.
    pub emulator_ticket_zero_bits: Option<u8>,
    /// EMULATOR ONLY: read the power MODEL register 0xF0 with each heartbeat.
    pub emulator_power_model: bool,
    /// Raise the baud rate after init (BM1397 3.125 Mbaud, BM136x ~1 Mbaud).
    pub raise_baud: bool,
    /// Pause between configuration steps and PLL ramp steps (real chips: ~10 ms).
    pub pacing: Duration,
    /// How long enumeration waits for the first chip-id answer.
    pub enumerate_timeout: Duration,
    /// Silence after the last answer that ends enumeration.
    pub enumerate_quiet: Duration,
    /// Time between jobs on one unit's header; None: from the chain's nominal rate.
    pub job_interval: Option<Duration>,
    /// Time between heartbeat reads of register 0x00.
    pub heartbeat: Duration,
    /// Heartbeats in a row with no frame at all before the chain counts as stalled.
    pub stall_heartbeats: u32,
    /// Wait after the first failed re-init of a stalled chain; it doubles after each further
    /// failure up to `reinit_backoff_max` (1 s and 30 s; tests shorten them).
    pub reinit_backoff: Duration,
    /// The longest wait between re-init attempts.
    pub reinit_backoff_max: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            chip: None,
            chips: None,
            mhz: None,
            ticket_difficulty: 256.0,
            emulator_ticket_zero_bits: None,
            emulator_power_model: false,
            raise_baud: true,
            pacing: Duration::from_millis(10),
            enumerate_timeout: Duration::from_millis(1200),
            enumerate_quiet: Duration::from_millis(300),
            job_interval: None,
            heartbeat: Duration::from_secs(1),
            stall_heartbeats: 3,
            reinit_backoff: Duration::from_secs(1),
            reinit_backoff_max: Duration::from_secs(30),
        }
    }
}

/// The chain found by a bring-up.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChainInfo {
    pub chip: String,
    #[serde(skip)]
    pub chip_type: ChipType,
    /// Chips that answered enumeration; these get the addresses.
    pub chips: usize,
    /// Chips the configuration expected (`ChainConfig::chips`), if it said.
    pub expected_chips: Option<usize>,
    /// Expected chips that did not answer (0 when none was expected). A dead chip still relays,
    /// so the chips behind it work, but which position it held cannot be told from the host.
    pub missing_chips: usize,
    /// Addresses given, in chain order (interval 256 / chips).
    pub addresses: Vec<u8>,
    pub mhz: f64,
    /// Big cores per chip and small cores per chip (ESP-Miner's count).
    pub cores_per_chip: u32,
    pub small_cores_per_chip: u32,
    /// MHz x small cores x chips, H/s.
    pub nominal_hashrate: f64,
    /// The UART rate the host runs at after bring-up.
    pub baud: u32,
    /// Leading zero bits a returned hash has (32 + ticket bits, or the emulator override).
    pub ticket_zero_bits: u8,
    /// Each returned nonce stands for `ticket_difficulty * 2^32` hashes.
    pub ticket_difficulty: f64,
    /// Emulated chains: the power MODEL (watts) read at bring-up; never a measurement.
    pub model_watts: Option<f64>,
}

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

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn send<P: Port>(port: &mut P, bytes: &[u8]) -> Result<(), Error> {
    port.write_all_bytes(bytes).map_err(io("write to the chain"))
}

fn cmd<P: Port>(port: &mut P, c: Command) -> Result<(), Error> {
    send(port, c.encode().as_bytes())
}

/// Leading zero bits of a digest read as a little-endian 256-bit number (as targets compare).
pub fn zero_bits(digest: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in digest.iter().rev() {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Frames a decoder rejected (bad CRC or malformed) and bytes it skipped, beyond `before`.
fn rejected_since(d: &Decoder, before: &DecoderStats) -> (u64, u64) {
    let now = d.stats();
    let bad = (now.bad_crc + now.malformed).saturating_sub(before.bad_crc + before.malformed);
    (bad, now.skipped_bytes.saturating_sub(before.skipped_bytes))
}

/// Add everything a bring-up decoder rejected to the chain's totals (None: a probe, not kept).
fn account_all(stats: Option<&ChainStats>, d: &Decoder) {
    if let Some(stats) = stats {
        let (bad, skipped) = rejected_since(d, &DecoderStats::default());
        stats.with(|c| c.add_decoder(bad, skipped));
    }
}

/// Register answers collected for `wait` (or until `quiet` passes after the last one).
fn collect_registers<P: Port>(
    port: &mut P,
    decoder: &mut Decoder,
    register: u8,
    wait: Duration,
    quiet: Duration,
) -> Result<Vec<RegisterResponse>, Error> {
    let start = Instant::now();
    let mut last: Option<Instant> = None;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let now = Instant::now();
        match last {
            Some(t) if now - t >= quiet => break,
            None if now - start >= wait => break,
            _ => {}
        }
        let n = port.read_timeout(&mut buf, Duration::from_millis(5)).map_err(io("read from the chain"))?;
        if n == 0 {
            continue;
        }
        decoder.push(&buf[..n]);
        while let Some(f) = decoder.next_frame() {
            if let Frame::Response(Response::Register(r)) = f
                && r.register == register {
                    out.push(r);
                    last = Some(Instant::now());
                }
        }
    }
    decoder.finish();
    while let Some(f) = decoder.next_frame() {
        if let Frame::Response(Response::Register(r)) = f
            && r.register == register {
                out.push(r);
            }
    }
    Ok(out)
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
        if zero_bits(&digest) < u32::from(self.info.ticket_zero_bits) {
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
        let in_range = u64::from(r.nonce) >= u64::from(slot.range.start()) && u64::from(r.nonce) < slot.range.end();
        if in_range && slot.target.is_met_by(&digest) {
            sink.push(candidate);
            out.pushed += 1;
        }
    }
}

/// Host baud after the raise, and the register write that raises the chain's.
fn baud_plan(chip: ChipType) -> (u8, u32, u32) {
    match chip {
        // 0x18 = 0x00006031: divider 0 -> 3.125 Mbaud (ESP-Miner `BM1397_set_max_baud`).
        ChipType::Bm1397 => (reg::MISC_CONTROL, 0x0000_6031, 3_125_000),
        // 0x28 = 0x11300200: 1 041 667 baud; the host runs 1 000 000 (ESP-Miner).
        _ => (reg::UART_BAUD, 0x1130_0200, 1_000_000),
    }
}

fn enumerate<P: Port>(port: &mut P, cfg: &ChainConfig, wait: Duration, stats: Option<&ChainStats>) -> Result<Vec<RegisterResponse>, Error> {
    port.clear_input().map_err(io("clear the input buffer"))?;
    // ESP-Miner (BM136x) enables version rolling before enumerating so the answers come in the
    // 11-byte form; BM1397 ignores the write. Either form is decoded.
    for _ in 0..3 {
        cmd(port, Command::write_all(reg::VERSION_ROLLING, 0x9000_ffff))?;
    }
    cmd(port, Command::read_all(reg::CHIP_ID))?;
    let mut decoder = Decoder::new(Direction::ChipToHost, ChipType::Unknown(0)).with_response_length(ResponseLength::Auto);
    let answers = collect_registers(port, &mut decoder, reg::CHIP_ID, wait, cfg.enumerate_quiet);
    account_all(stats, &decoder);
    answers
}

/// Bring-up; what its decoders reject is added to `stats` (None: a probe, nothing kept).
fn init_sequence<P: Port>(port: &mut P, cfg: &ChainConfig, stats: Option<&ChainStats>) -> Result<ChainInfo, Error> {
    // A chain fresh from reset listens at 115 740 baud; one left running by an earlier host
    // (no reset line on a plain serial port) may still be at the raised rate: try both.
    let mut answers = Vec::new();
    let mut bauds = vec![HOST_RESET_BAUD];
    if cfg.raise_baud {
        for chip in [cfg.chip.unwrap_or(ChipType::Bm1370), ChipType::Bm1397] {
            let b = baud_plan(chip).2;
            if !bauds.contains(&b) {
                bauds.push(b);
            }
        }
    }
    let mut tried = Vec::new();
    for &b in &bauds {
        port.set_baud(b).map_err(io("set the host baud rate"))?;
        // The reset rate gets the full wait; the raised rates (a chain left running) half.
        let wait = if tried.is_empty() { cfg.enumerate_timeout } else { cfg.enumerate_timeout / 2 };
        answers = enumerate(port, cfg, wait, stats)?;
        tried.push(b);
        if !answers.is_empty() {
            break;
        }
    }
    if answers.is_empty() {
        return Err(Error::NoChain { port: port.name(), bauds: tried, waited: cfg.enumerate_timeout });
    }
    // A noisy link can eat an answer (bad CRC): when fewer chips answered than configured, ask
    // again a few times and keep the best count.
    if let Some(want) = cfg.chips {
        for _ in 0..3 {
            if answers.len() >= want {
                break;
            }
            let again = enumerate(port, cfg, cfg.enumerate_timeout, stats)?;
            if again.len() > answers.len() {
                answers = again;
            }
        }
    }
    let id = (answers[0].value >> 16) as u16;
    let chip = ChipType::from_id(id);
    if let ChipType::Unknown(id) = chip {
        return Err(Error::UnknownChip { port: port.name(), id });
    }
    if let Some(other) = answers.iter().map(|a| ChipType::from_id((a.value >> 16) as u16)).find(|&c| c != chip) {
        return Err(Error::MixedChips { first: chip, other });
    }
    if let Some(want) = cfg.chip
        && want != chip {
            return Err(Error::WrongChip { expected: want, found: chip });
        }
    let n = answers.len();
    if let Some(want) = cfg.chips
        && want != n {
            tracing::warn!(expected = want, found = n, "chip count differs from the configured one; using the chips that answered");
        }
    let interval = (256 / n) as u16;
    let addresses: Vec<u8> = (0..n as u16).map(|i| (i * interval) as u8).collect();
    let mhz = cfg.mhz.unwrap_or(f64::from(chip.default_mhz()));
    let ticket = TicketMask::from_difficulty(cfg.ticket_difficulty);
    let pace = || std::thread::sleep(cfg.pacing);
    let all = |port: &mut P, r: u8, v: u32| cmd(port, Command::write_all(r, v));
    let each = |port: &mut P, r: u8, v: u32| -> Result<(), Error> {
        for &a in &addresses {
            cmd(port, Command::write_chip(a, r, v))?;
        }
        Ok(())
    };
    let address_chain = |port: &mut P| -> Result<(), Error> {
        cmd(port, Command::ChainInactive)?;
        for &a in &addresses {
            cmd(port, Command::SetAddress(a))?;
        }
        Ok(())
    };
    pace();
    match chip {
        ChipType::Bm1397 => {
            address_chain(port)?;
            for (r, v) in [(0x80, 0), (0x84, 0), (0x20, 1), (0x3c, 0x8000_8074), (reg::TICKET_MASK, ticket.to_register()), (0x68, 0xc070_0111), (0x28, 0x0600_000f), (0x18, 0x0000_7a31)] {
                all(port, r, v)?;
            }
        }
        ChipType::Bm1366 | ChipType::Bm1368 => {
            let core = if chip == ChipType::Bm1366 { [0x8000_8540, 0x8000_8020] } else { [0x8000_8b00, 0x8000_8018] };
            all(port, 0xa8, 0x0007_0000)?;
            all(port, 0x18, 0xff0f_c100)?;
            address_chain(port)?;
            all(port, 0x3c, core[0])?;
            all(port, 0x3c, core[1])?;
            all(port, reg::TICKET_MASK, ticket.to_register())?;
            all(port, 0x54, 3)?;
            all(port, 0x58, 0x0211_1111)?;
            for (r, v) in [(0xa8, 0x0007_01f0), (0x18, 0xf000_c100), (0x3c, core[0]), (0x3c, core[1]), (0x3c, 0x8000_82aa)] {
                each(port, r, v)?;
            }
        }
        ChipType::Bm1370 => {
            all(port, 0xa8, 0x0007_0000)?;
            all(port, 0x18, 0xf000_c100)?;
            address_chain(port)?;
            all(port, 0x3c, 0x8000_8b00)?;
            all(port, 0x3c, 0x8000_800c)?;
            all(port, reg::TICKET_MASK, ticket.to_register())?;
            all(port, 0x58, 0x0001_1111)?;
            for (r, v) in [(0xa8, 0x0007_01f0), (0x18, 0xf000_c100), (0x3c, 0x8000_8b00), (0x3c, 0x8000_800c), (0x3c, 0x8000_82aa)] {
                each(port, r, v)?;
            }
            for (r, v) in [(0xb9, 0x0000_4480), (0x54, 2), (0xb9, 0x0000_4480), (0x3c, 0x8000_8dee)] {
                all(port, r, v)?;
            }
        }
        ChipType::Unknown(_) => unreachable!("rejected above"),
    }
    pace();
    // PLL ramp in 6.25 MHz steps from 56.25 MHz (ESP-Miner, factory firmware).
    let mut f: f64 = 56.25;
    loop {
        let step = f.min(mhz);
        let pll = Pll::for_frequency(chip, step).map_err(Error::Protocol)?;
        all(port, reg::PLL0, pll.to_register(chip))?;
        pace();
        if step >= mhz {
            break;
        }
        f += 6.25;
    }
    let actual_mhz = Pll::for_frequency(chip, mhz).map_err(Error::Protocol)?.frequency_mhz();
    if chip.rolls_versions() {
        all(port, reg::HASH_COUNTING_NUMBER, HashCountingNumber::esp_miner(chip, n as u32, actual_mhz).0)?;
        all(port, reg::VERSION_ROLLING, VersionRolling::enabled(VersionRolling::MAX_MASK).map_err(Error::Protocol)?.to_register())?;
    }
    if let Some(k) = cfg.emulator_ticket_zero_bits {
        all(port, reg::EMU_TICKET_ZERO_BITS, u32::from(k))?;
    }
    let mut baud = HOST_RESET_BAUD;
    let form = if chip.has_long_responses() { ResponseForm::Long } else { ResponseForm::Short };
    let mut decoder = Decoder::new(Direction::ChipToHost, chip).with_response_length(ResponseLength::Fixed(form));
    // The baud write can be lost (the chain read it after our side had already switched, or
    // line noise ate it): then the check below hears nothing. Go back to the reset baud and
    // say it again, waiting longer each time, before calling the chain silent.
    const BAUD_TRIES: u32 = 3;
    let mut heard = false;
    for attempt in 0..BAUD_TRIES {
        if cfg.raise_baud {
            let (r, v, host) = baud_plan(chip);
            if attempt > 0 {
                tracing::warn!(port = %port.name(), attempt, "no answer at the raised baud; repeating the baud change");
                port.set_baud(HOST_RESET_BAUD).map_err(io("set the host baud rate"))?;
                std::thread::sleep(Duration::from_millis(20));
            }
            all(port, r, v)?;
            // Let the write leave the UART before switching our side (ESP-Miner waits for TX
            // drain); longer on each retry.
            std::thread::sleep(Duration::from_millis(20 << (2 * attempt)));
            port.set_baud(host).map_err(io("raise the host baud rate"))?;
            baud = host;
            std::thread::sleep(Duration::from_millis(10));
            port.clear_input().map_err(io("clear the input buffer"))?;
        }
        // Check the link (and the new baud) with a read every chip must answer.
        cmd(port, Command::read_all(reg::CHIP_ID))?;
        let answers = collect_registers(port, &mut decoder, reg::CHIP_ID, cfg.enumerate_timeout, cfg.enumerate_quiet);
        heard = !answers.inspect_err(|_| account_all(stats, &decoder))?.is_empty();
        if heard || !cfg.raise_baud {
            break;
        }
    }
    if !heard {
        account_all(stats, &decoder);
        return Err(Error::SilentAfterInit { port: port.name(), baud });
    }
    let model_watts = if cfg.emulator_power_model {
        cmd(port, Command::read_all(reg::EMU_POWER_MW))?;
        let mw = collect_registers(port, &mut decoder, reg::EMU_POWER_MW, cfg.enumerate_timeout, cfg.enumerate_quiet);
        let mw = mw.inspect_err(|_| account_all(stats, &decoder))?;
        (!mw.is_empty()).then(|| mw.iter().map(|r| f64::from(r.value)).sum::<f64>() / 1000.0)
    } else {
        None
    };
    account_all(stats, &decoder);
    let ticket_zero_bits = cfg.emulator_ticket_zero_bits.unwrap_or(32 + ticket.zero_bits());
    let info = ChainInfo {
        chip: chip.name().to_string(),
        chip_type: chip,
        chips: n,
        expected_chips: cfg.chips,
        missing_chips: cfg.chips.map_or(0, |e| e.saturating_sub(n)),
        addresses,
        mhz: actual_mhz,
        cores_per_chip: chip.cores(),
        small_cores_per_chip: chip.small_core_count(),
        nominal_hashrate: chip.expected_hashrate(actual_mhz) * n as f64,
        baud,
        ticket_zero_bits,
        ticket_difficulty: 2f64.powi(i32::from(ticket_zero_bits) - 32),
        model_watts,
    };
    tracing::info!(port = %port.name(), chip = %info.chip, chips = n, mhz = info.mhz, baud, nominal_ths = info.nominal_hashrate / 1e12, "chain up");
    Ok(info)
}

/// Ask whatever is on `port` for chip ids, changing nothing but the version-rolling register:
/// the generation and the number of chips that answered (at the reset baud, then the raised
/// rates).
pub fn probe<P: Port>(port: &mut P, wait: Duration) -> Result<(ChipType, usize), Error> {
    let cfg = ChainConfig { enumerate_timeout: wait, ..ChainConfig::default() };
    let mut tried = Vec::new();
    for b in [HOST_RESET_BAUD, 1_000_000, 3_125_000] {
        port.set_baud(b).map_err(io("set the host baud rate"))?;
        tried.push(b);
        let answers = enumerate(port, &cfg, wait, None)?;
        if let Some(first) = answers.first() {
            return Ok((ChipType::from_id((first.value >> 16) as u16), answers.len()));
        }
    }
    Err(Error::NoChain { port: port.name(), bauds: tried, waited: wait })
}
