//! A chain of emulated BM13xx chips on the far end of a real pseudo-terminal (feature
//! `emulator`).
//!
//! [`Emulator::spawn`] opens a pty pair, keeps the master side and returns a handle whose
//! [`Emulator::path`] is the serial device a driver opens (e.g. `/dev/pts/7`). Two threads
//! serve it: one reads host frames and answers them, one hashes the current job for real with
//! `hashrig-sha256d` and sends the nonces that meet each chip's ticket. Dropping the handle stops
//! both threads and removes the symlink, if one was made.
//!
//! What the chain does (notes sections 1-5):
//! - enumeration: a broadcast read of register 0x00 gets one answer per live chip, in chain
//!   order, with the generation's chip id; chain-inactive then set-address gives addresses to
//!   the chips one at a time; a set-address before any chain-inactive reaches every chip;
//! - register writes and reads, broadcast or addressed; unknown registers store what is written;
//! - 0x08 PLL (frequency, feeds the power model), 0x14 ticket mask, 0x10 hash counting number
//!   (stored only), 0xA4 version rolling (BM136x switch to 11-byte responses), baud writes
//!   (0x18 on BM1397, 0x28 on BM136x): the chain switches after the write, and with
//!   `strict_baud` the emulator ignores input and stays silent while the host side of the pty is
//!   set more than 5 % away from the chain's baud (like a real UART reading garbage);
//! - jobs: BM1397 midstate jobs (each midstate = one version, reported in byte 7's low bits),
//!   BM136x full-header jobs (version bits rolled under the 0xA4 mask; the rolled bits come back
//!   in bytes 8-9 and their low bits name the small core, as on real chips).
//!
//! Nonce space (a model of how chains split work, notes 2.3): a nonce's big-endian reading
//! `nonce_h` carries the big core in bits 31-25 and the chip-address field in bits 24-17. A chip
//! at address `a` owns the address fields from `a` up to the next live chip's address, so chips
//! spaced 256/N apart cover the 2^32 nonces exactly once. The emulator hashes the whole nonce
//! space once per version and hands each result to the chip that owns it (one hash per nonce, as
//! the real chain does in parallel).
//!
//! Emulator-only settings (no real chip has them; all documented in the crate README):
//! registers [`reg::EMU_TICKET_ZERO_BITS`] (report hashes with at least K leading zero bits
//! instead of 32 + N, so K < 32 means ticket difficulty below 1: a CPU is ~10^5 times slower
//! than a chip), [`reg::EMU_CORE_MILLIVOLTS`] and [`reg::EMU_POWER_MW`] (the power MODEL's
//! milliwatts for the addressed chip).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{format, vec};

use hashrig_sha256d::{Midstate, NonceRange, ScanJob, Scanner, Target};
use serialport::{SerialPort, TTYPort};

use crate::chip::ChipType;
use crate::command::{Command, Destination};
use crate::decoder::{Decoder, Direction, Event, Frame};
use crate::job::{Job, rolled_version};
use crate::power::PowerModel;
use crate::register::{self, Pll, TicketMask, VersionRolling, addr as reg};
use crate::response::{NonceResponse, RegisterResponse, Response};

mod hashing;
mod wire;

pub use hashing::target_for_zero_bits;
use hashing::*;
use wire::*;

/// Errors of the emulator (the protocol core's [`crate::Error`] is chained where it applies).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("a chain has 1 to 256 chips, not {0}")]
    ChainLength(usize),
    #[error("chip index {index} is outside the chain of {chips}")]
    ChipIndex { index: usize, chips: usize },
    #[error("the emulator needs a known chip generation, not {0}")]
    UnknownChip(ChipType),
    #[error("fault rate {name} = {value} is not a probability in 0..=1")]
    Rate { name: &'static str, value: f64 },
    #[error("could not open a pseudo-terminal pair")]
    Pty(#[source] serialport::Error),
    #[error("could not link {link} to the pty")]
    Link {
        link: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start an emulator thread")]
    Thread(#[source] std::io::Error),
}

/// Faults to inject. Rates are probabilities per response frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Corrupt the CRC bits of a response.
    pub crc_error_rate: f64,
    /// Put 1-8 random bytes before a response.
    pub garbage_rate: f64,
    /// Drop one byte of a response.
    pub drop_byte_rate: f64,
    /// Chips (by chain position, 0-based) that are dead: no answer, no hashing, no address;
    /// they still relay, so the chips behind them work.
    pub dead_chips: Vec<usize>,
    /// Chips whose even-numbered big cores return wrong nonces (the hash does not verify).
    pub bad_core_chips: Vec<usize>,
    /// Send a nonce twice.
    pub duplicate_rate: f64,
    /// Hold a nonce back and send it after the next job arrives (a late nonce for an old job).
    pub late_nonce_rate: f64,
    /// After this many response frames the chain stops answering anything (until
    /// [`Emulator::resume_answering`]).
    pub stop_after_responses: Option<u64>,
}

impl Faults {
    fn validate(&self, chips: usize) -> Result<(), EmulatorError> {
        for (name, value) in [
            ("crc_error_rate", self.crc_error_rate),
            ("garbage_rate", self.garbage_rate),
            ("drop_byte_rate", self.drop_byte_rate),
            ("duplicate_rate", self.duplicate_rate),
            ("late_nonce_rate", self.late_nonce_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(EmulatorError::Rate { name, value });
            }
        }
        for &index in self.dead_chips.iter().chain(&self.bad_core_chips) {
            if index >= chips {
                return Err(EmulatorError::ChipIndex { index, chips });
            }
        }
        Ok(())
    }
}

/// How to build the chain.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub chip: ChipType,
    /// Chips on the chain, 1..=256.
    pub chips: usize,
    pub faults: Faults,
    /// Seed of the fault dice (runs are repeatable for the same input).
    pub seed: u64,
    /// Emulator-only: report hashes with at least this many leading zero bits instead of the
    /// real 32 + N from the ticket mask (None: the real rule). Also settable through register
    /// 0xF8.
    pub ticket_zero_bits: Option<u8>,
    /// Stop hashing a job after this many hashes (None: until the next job). Keeps tests from
    /// burning a core forever.
    pub hash_budget_per_job: Option<u64>,
    /// Hashes per second at most (None: as fast as one thread goes).
    pub max_hashrate: Option<f64>,
    /// Ignore input and stay silent while the host's baud differs from the chain's by > 5 %.
    pub strict_baud: bool,
    /// Make a symlink to the pty here (removed on drop).
    pub link: Option<PathBuf>,
}

impl EmulatorConfig {
    /// A chain of `chips` chips of `chip`, no faults, real ticket rule, 2^26 hashes per job.
    pub fn new(chip: ChipType, chips: usize) -> Self {
        Self {
            chip,
            chips,
            faults: Faults::default(),
            seed: 0x5eed,
            ticket_zero_bits: None,
            hash_budget_per_job: Some(1 << 26),
            max_hashrate: None,
            strict_baud: true,
            link: None,
        }
    }
}

/// Counters, readable at any time with [`Emulator::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    pub frames_in: u64,
    pub bad_frames_in: u64,
    pub jobs_in: u64,
    pub responses_out: u64,
    pub nonces_out: u64,
    pub hashes: u64,
    pub corrupted_crc: u64,
    pub garbage_bytes: u64,
    pub dropped_bytes: u64,
    pub duplicates: u64,
    pub late_nonces: u64,
    pub wrong_nonces: u64,
    /// Bytes ignored because the host's baud did not match the chain's.
    pub baud_mismatch_bytes: u64,
    /// Jobs whose hash budget ran out before the next job came.
    pub budget_exhausted: u64,
}

/// One chip as the emulator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChipSnapshot {
    pub index: usize,
    pub alive: bool,
    pub address: u8,
    pub mhz: f64,
    pub ticket: TicketMask,
    /// The leading zero bits a hash needs to be reported by this chip.
    pub report_zero_bits: u8,
    pub long_responses: bool,
    pub version_mask: u32,
    pub millivolts: u32,
    /// Power MODEL (not a measurement), watts.
    pub model_watts: f64,
}

#[derive(Clone, Debug)]
struct ChipState {
    alive: bool,
    bad_cores: bool,
    address: u8,
    assigned: bool,
    registers: BTreeMap<u8, u32>,
    ticket: TicketMask,
    pll: Option<Pll>,
    rolling: VersionRolling,
    long_responses: bool,
    millivolts: u32,
    zero_bits_override: Option<u8>,
}

/// Reset frequency of the model until a PLL write arrives (ESP-Miner assumes 50 MHz too).
const RESET_MHZ: f64 = 50.0;

impl ChipState {
    fn mhz(&self, chip: ChipType) -> f64 {
        let _ = chip;
        self.pll.map(|p| p.frequency_mhz()).unwrap_or(RESET_MHZ)
    }

    fn report_zero_bits(&self) -> u8 {
        self.zero_bits_override.unwrap_or(32 + self.ticket.zero_bits())
    }

    fn model_watts(&self, chip: ChipType) -> f64 {
        PowerModel::for_chip(chip).map(|m| m.watts(self.mhz(chip), f64::from(self.millivolts) / 1000.0)).unwrap_or(0.0)
    }
}

struct ChainState {
    chips: Vec<ChipState>,
    inactive_seen: bool,
    baud: u32,
    /// Responses held back for the late-nonce fault.
    held: Vec<Vec<u8>>,
}

/// A job the hash thread works on.
struct ActiveJob {
    generation: u64,
    wire_id: u8,
    /// The sweep starts at the chunk holding the job's starting nonce (ESP-Miner always sends
    /// 0; hashrig's driver sends its work unit's range start) and wraps past 2^32.
    start_chunk: u64,
    kind: ActiveKind,
}

enum ActiveKind {
    /// BM1397: one scan job per midstate.
    Midstates(Vec<ScanJob>),
    /// BM136x: the header and the mask the chip rolls under.
    Header { header: [u8; 80], mask: u32 },
}

impl ActiveJob {
    fn versions(&self) -> u64 {
        match &self.kind {
            ActiveKind::Midstates(v) => v.len() as u64,
            ActiveKind::Header { mask, .. } => 1u64 << mask.count_ones(),
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Default)]
struct Counters {
    frames_in: AtomicU64,
    bad_frames_in: AtomicU64,
    jobs_in: AtomicU64,
    responses_out: AtomicU64,
    nonces_out: AtomicU64,
    hashes: AtomicU64,
    corrupted_crc: AtomicU64,
    garbage_bytes: AtomicU64,
    dropped_bytes: AtomicU64,
    duplicates: AtomicU64,
    late_nonces: AtomicU64,
    wrong_nonces: AtomicU64,
    baud_mismatch_bytes: AtomicU64,
    budget_exhausted: AtomicU64,
}

struct Shared {
    chip: ChipType,
    state: Mutex<ChainState>,
    faults: Mutex<Faults>,
    rng: Mutex<Rng>,
    writer: Mutex<TTYPort>,
    /// Our own handle on the slave side: keeps the pty alive between client opens and lets us
    /// read the host's termios speed.
    slave: Mutex<TTYPort>,
    job: Mutex<Option<Arc<ActiveJob>>>,
    job_generation: AtomicU64,
    shutdown: AtomicBool,
    silent: AtomicBool,
    strict_baud: bool,
    budget: Option<u64>,
    max_hashrate: Option<f64>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking emulator thread must not take the other one down with a poisoned lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running emulator. Dropping it stops the chain.
pub struct Emulator {
    path: PathBuf,
    link: Option<PathBuf>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("path", &self.path).field("chip", &self.shared.chip).finish()
    }
}

impl Emulator {
    /// Open a pty and start serving a chain on it.
    pub fn spawn(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        if config.chips == 0 || config.chips > 256 {
            return Err(EmulatorError::ChainLength(config.chips));
        }
        if let ChipType::Unknown(_) = config.chip {
            return Err(EmulatorError::UnknownChip(config.chip));
        }
        config.faults.validate(config.chips)?;
        let (mut master, slave) = TTYPort::pair().map_err(EmulatorError::Pty)?;
        master.set_timeout(Duration::from_millis(20)).map_err(EmulatorError::Pty)?;
        let mut writer = master.try_clone_native().map_err(EmulatorError::Pty)?;
        writer.set_timeout(Duration::from_millis(200)).map_err(EmulatorError::Pty)?;
        let path = PathBuf::from(slave.name().unwrap_or_default());
        let link = match &config.link {
            Some(link) => {
                // Replace a stale link from an earlier run, never a real file.
                if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                    let _ = std::fs::remove_file(link);
                }
                std::os::unix::fs::symlink(&path, link)
                    .map_err(|source| EmulatorError::Link { link: link.clone(), source })?;
                Some(link.clone())
            }
            None => None,
        };
        let ref_mv = PowerModel::for_chip(config.chip).map(|m| (m.ref_volts * 1000.0).round() as u32).unwrap_or(1200);
        let chips = (0..config.chips)
            .map(|i| ChipState {
                alive: !config.faults.dead_chips.contains(&i),
                bad_cores: config.faults.bad_core_chips.contains(&i),
                address: 0,
                assigned: false,
                registers: BTreeMap::new(),
                ticket: TicketMask::new(0).expect("0 bits is valid"),
                pll: None,
                rolling: VersionRolling::from_register(0),
                long_responses: false,
                millivolts: ref_mv,
                zero_bits_override: config.ticket_zero_bits,
            })
            .collect();
        let shared = Arc::new(Shared {
            chip: config.chip,
            state: Mutex::new(ChainState { chips, inactive_seen: false, baud: register::RESET_BAUD, held: Vec::new() }),
            faults: Mutex::new(config.faults.clone()),
            rng: Mutex::new(Rng(config.seed)),
            writer: Mutex::new(writer),
            slave: Mutex::new(slave),
            job: Mutex::new(None),
            job_generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            strict_baud: config.strict_baud,
            budget: config.hash_budget_per_job,
            max_hashrate: config.max_hashrate,
            counters: Counters::default(),
        });
        let io_shared = Arc::clone(&shared);
        let io = std::thread::Builder::new()
            .name("bm13xx-emu-io".into())
            .spawn(move || io_loop(io_shared, master))
            .map_err(EmulatorError::Thread)?;
        let hash_shared = Arc::clone(&shared);
        let hasher = std::thread::Builder::new()
            .name("bm13xx-emu-hash".into())
            .spawn(move || hash_loop(hash_shared))
            .map_err(EmulatorError::Thread)?;
        tracing::info!(path = %path.display(), chip = %config.chip, chips = config.chips, "bm13xx emulator serving");
        Ok(Self { path, link, shared, threads: vec![io, hasher] })
    }

    /// The serial device to open (the pty's slave side).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The symlink made for `config.link`, if any.
    pub fn link(&self) -> Option<&Path> {
        self.link.as_deref()
    }

    pub fn chip(&self) -> ChipType {
        self.shared.chip
    }

    pub fn stats(&self) -> EmulatorStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EmulatorStats {
            frames_in: g(&c.frames_in),
            bad_frames_in: g(&c.bad_frames_in),
            jobs_in: g(&c.jobs_in),
            responses_out: g(&c.responses_out),
            nonces_out: g(&c.nonces_out),
            hashes: g(&c.hashes),
            corrupted_crc: g(&c.corrupted_crc),
            garbage_bytes: g(&c.garbage_bytes),
            dropped_bytes: g(&c.dropped_bytes),
            duplicates: g(&c.duplicates),
            late_nonces: g(&c.late_nonces),
            wrong_nonces: g(&c.wrong_nonces),
            baud_mismatch_bytes: g(&c.baud_mismatch_bytes),
            budget_exhausted: g(&c.budget_exhausted),
        }
    }

    /// Every chip's state.
    pub fn chips(&self) -> Vec<ChipSnapshot> {
        let st = lock(&self.shared.state);
        st.chips
            .iter()
            .enumerate()
            .map(|(index, c)| ChipSnapshot {
                index,
                alive: c.alive,
                address: c.address,
                mhz: c.mhz(self.shared.chip),
                ticket: c.ticket,
                report_zero_bits: c.report_zero_bits(),
                long_responses: c.long_responses,
                version_mask: if c.rolling.is_enabled() { c.rolling.header_mask() } else { 0 },
                millivolts: c.millivolts,
                model_watts: if c.alive { c.model_watts(self.shared.chip) } else { 0.0 },
            })
            .collect()
    }

    /// The chain's UART baud now.
    pub fn baud(&self) -> u32 {
        lock(&self.shared.state).baud
    }

    /// Total power of the chain from the power MODEL, watts (not a measurement).
    pub fn model_watts(&self) -> f64 {
        self.chips().iter().map(|c| c.model_watts).sum()
    }

    /// Replace the faults (dead and bad-core chips keep their start-up setting).
    pub fn set_faults(&self, faults: Faults) -> Result<(), EmulatorError> {
        let chips = lock(&self.shared.state).chips.len();
        faults.validate(chips)?;
        *lock(&self.shared.faults) = faults;
        Ok(())
    }

    /// From now on the chain answers nothing (a chain that stopped).
    pub fn stop_answering(&self) {
        self.shared.silent.store(true, Ordering::Release);
    }

    /// The chain answers again after [`Emulator::stop_answering`] or the
    /// [`Faults::stop_after_responses`] fault (which is cleared, so it does not stop again at
    /// once). Nothing else changes: the chips keep their addresses, registers and baud, as a
    /// chain that hung and came back without a reset would; what reached it while silent was
    /// ignored and stays lost.
    pub fn resume_answering(&self) {
        lock(&self.shared.faults).stop_after_responses = None;
        self.shared.silent.store(false, Ordering::Release);
    }

    /// Is the chain silent (stopped answering)?
    pub fn is_silent(&self) -> bool {
        self.shared.silent.load(Ordering::Acquire)
    }

    /// Stop both threads now (also done on drop).
    pub fn shutdown(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(link) = self.link.take() {
            let _ = std::fs::remove_file(link);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Describe the chain in one line (for the binary's banner).
pub fn describe(config: &EmulatorConfig) -> std::string::String {
    format!(
        "{} x {} ({}), ticket rule: {}",
        config.chips,
        config.chip,
        PowerModel::for_chip(config.chip).map(|m| m.source).unwrap_or("no power model"),
        match config.ticket_zero_bits {
            Some(k) => format!("emulator-only {k} leading zero bits"),
            None => "real (32 + N bits from register 0x14)".into(),
        }
    )
}
