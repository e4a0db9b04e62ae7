//! A Bitmain BM13xx chain (BM1397, BM1366, BM1368, BM1370) on a serial line, as a
//! [`hashrig_hasher::Hasher`].
//!
//! What it is for: bring a chain up the way real firmware does (enumerate, address, configure,
//! ramp the PLL, raise the baud), keep it fed with jobs built from the engine's work units, turn
//! each nonce response back into a header (job slot, rolled version or midstate index) and a
//! [`hashrig_hasher::Candidate`] naming its chip and core, and count what goes wrong per chip
//! and core (hardware errors, duplicates, late nonces for flushed jobs) without ever handing a
//! duplicate or a late nonce on. It estimates the chain's hashrate from the nonces at the ticket
//! difficulty, with a 95 % Poisson interval ([`ChainStats`]).
//!
//! What it is not for: the wire format (the `firmware-protocol` crate), deciding what a share is
//! worth (the engine re-verifies every candidate), power rails, fans or reset lines of a
//! particular board (a plain serial port has none).
//!
//! Links: [`SerialLink`] (the `serialport` crate) for hardware and the emulator's pty; any
//! [`Port`] (a `UnixStream` pair in tests) for a scripted chip. With the `emulator` feature,
//! [`open_emulated`] starts `firmware_protocol::emulator` in-process and opens it over its pty.

mod chain;
mod init;
mod port;
mod setup;
mod stats;

use std::time::{Duration, Instant};

use hashrig_hasher::{Control, DeviceInfo, DeviceKind, HashCount, Hasher, Sink, UnitOutcome, WorkUnit};

pub use chain::{Chain, PollOutcome};
pub use hashrig_sha256d::leading_zero_bits;
pub use init::probe;
pub use setup::{AsicSpec, AsicSpecError, ChainConfig, ChainInfo, HOST_RESET_BAUD};
pub use firmware_protocol::ChipType;
pub use port::{Port, SerialLink};
pub use stats::{ChainSnapshot, ChainStats, ChipHealth, CoreHealth, Estimate, TruthFn, estimate, poisson_ci95};

/// Everything that goes wrong talking to a chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open serial port {port}")]
    Open {
        port: String,
        #[source]
        source: serialport::Error,
    },
    #[error(
        "permission denied opening {port}: add your user to the dialout group (`sudo usermod -aG dialout $USER`, then log in again)"
    )]
    PermissionDenied { port: String },
    #[error("{port} is not a serial port (not a terminal device)")]
    NotSerial { port: String },
    #[error("serial I/O failed: could not {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no BM13xx chip answered on {port} (tried {bauds:?} baud, up to {waited:?} each): is this a BM13xx chain, powered, and the right port?"
    )]
    NoChain { port: String, bauds: Vec<u32>, waited: Duration },
    #[error("a chip on {port} has id {id:#06x}, not a BM1397/BM1366/BM1368/BM1370")]
    UnknownChip { port: String, id: u16 },
    #[error("the chain mixes {first} and {other} chips")]
    MixedChips { first: ChipType, other: ChipType },
    #[error("expected {expected} chips, the chain has {found}")]
    WrongChip { expected: ChipType, found: ChipType },
    #[error("the chain on {port} went silent after init (host at {baud} baud)")]
    SilentAfterInit { port: String, baud: u32 },
    #[error("the chain on {port} stopped answering ({missed} heartbeats missed); re-init failed")]
    Stalled {
        port: String,
        missed: u32,
        #[source]
        source: Option<Box<Error>>,
    },
    #[error("protocol value rejected")]
    Protocol(#[source] firmware_protocol::Error),
    #[error("unknown emulated chain `{0}` (e.g. bm1366x16: a generation, `x`, a chip count 1..=256)")]
    EmuModel(String),
    #[error(
        "bad emulator option `{0}` (known: crc=R, garbage=R, drop=R, dup=R, late=R with R in 0..=1; bad-core=I[+I..], dead=I[+I..], stop-after=N, bits=1..=40, rate=H/s)"
    )]
    EmuOption(String),
    #[cfg(feature = "emulator")]
    #[error("cannot start the emulator")]
    Emulator(#[source] firmware_protocol::emulator::EmulatorError),
}

/// Open a serial port, naming permission problems plainly.
pub fn open_serial(path: &str) -> Result<SerialLink, Error> {
    SerialLink::open(path, HOST_RESET_BAUD).map_err(|source| classify_open_error(path, source))
}

/// Our error for a failed open: permission problems get the dialout hint; a file that is not a
/// terminal (ENOTTY from the terminal ioctls `serialport` makes on open, e.g. `/dev/null` or a
/// plain file) is named as not a serial port.
pub fn classify_open_error(path: &str, source: serialport::Error) -> Error {
    let text = source.to_string().to_ascii_lowercase();
    let denied = matches!(source.kind(), serialport::ErrorKind::Io(std::io::ErrorKind::PermissionDenied)) || text.contains("permission denied");
    // ENOTTY reads "Not a typewriter" (nix, which `serialport` uses) or "Inappropriate ioctl
    // for device" (libc's strerror).
    let not_a_tty = text.contains("not a typewriter") || text.contains("inappropriate ioctl");
    if denied {
        Error::PermissionDenied { port: path.to_owned() }
    } else if not_a_tty {
        Error::NotSerial { port: path.to_owned() }
    } else {
        Error::Open { port: path.to_owned(), source }
    }
}

/// Serial ports the OS knows, one line each: path, and what kind (USB ids when known).
pub fn list_ports() -> Result<Vec<String>, Error> {
    let ports = serialport::available_ports().map_err(|source| Error::Open { port: "(listing ports)".into(), source })?;
    Ok(ports
        .into_iter()
        .map(|p| match p.port_type {
            serialport::SerialPortType::UsbPort(u) => format!(
                "{} (USB {:04x}:{:04x}{}{})",
                p.port_name,
                u.vid,
                u.pid,
                u.manufacturer.map(|m| format!(", {m}")).unwrap_or_default(),
                u.product.map(|m| format!(", {m}")).unwrap_or_default()
            ),
            serialport::SerialPortType::PciPort => format!("{} (PCI)", p.port_name),
            serialport::SerialPortType::BluetoothPort => format!("{} (Bluetooth)", p.port_name),
            serialport::SerialPortType::Unknown => p.port_name,
        })
        .collect())
}

/// Open `path` and ask for chip ids: "4 x BM1370" or why not.
pub fn probe_port(path: &str) -> Result<(ChipType, usize), Error> {
    let mut link = open_serial(path)?;
    probe(&mut link, Duration::from_millis(500))
}

/// Re-init back-off: after a failed attempt wait `ChainConfig::reinit_backoff` (1 s), doubling
/// after each further failure up to `ChainConfig::reinit_backoff_max` (30 s); a success starts
/// over.
#[derive(Debug)]
struct Backoff {
    /// No attempt before this.
    next: Instant,
    /// The wait the next failure sets.
    delay: Duration,
    /// The wait the last failure set (None: no failure since the chain last ran).
    last: Option<Duration>,
    base: Duration,
    max: Duration,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Self {
        Self { next: Instant::now(), delay: base, last: None, base, max: max.max(base) }
    }

    fn failed(&mut self) {
        self.next = Instant::now() + self.delay;
        self.last = Some(self.delay);
        self.delay = (self.delay * 2).min(self.max);
    }

    fn succeeded(&mut self) {
        self.delay = self.base;
        self.last = None;
    }
}

/// A chain as a [`Hasher`].
pub struct AsicHasher<P: Port> {
    chain: Chain<P>,
    info: DeviceInfo,
    stalled: bool,
    backoff: Backoff,
    #[cfg(feature = "emulator")]
    emulator: Option<std::sync::Arc<firmware_protocol::emulator::Emulator>>,
}

impl<P: Port> std::fmt::Debug for AsicHasher<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsicHasher").field("chain", &self.chain).finish()
    }
}

fn device_info(port: &str, i: &ChainInfo, emulated: bool) -> DeviceInfo {
    let what = if emulated { "emulated " } else { "" };
    DeviceInfo {
        name: format!("{} x {what}{} @ {:.2} MHz on {port}", i.chips, i.chip.to_uppercase(), i.mhz),
        kind: DeviceKind::Asic,
        kernel: i.chip.clone(),
        // Every job covers the whole nonce space (the chips split it among themselves), so the
        // engine must hand out whole-space units: a narrower range would waste the chain.
        lanes: 1 << 32,
        nominal_hashrate: Some(i.nominal_hashrate),
        hash_count: HashCount::Estimated { ticket_difficulty: i.ticket_difficulty },
        version_rolling: true,
    }
}

impl<P: Port> AsicHasher<P> {
    /// Bring the chain on `port` up.
    pub fn new(port: P, cfg: ChainConfig) -> Result<Self, Error> {
        let name = port.name();
        let backoff = Backoff::new(cfg.reinit_backoff, cfg.reinit_backoff_max);
        let chain = Chain::bring_up(port, cfg, ChainStats::new())?;
        let info = device_info(&name, chain.info(), false);
        Ok(Self {
            chain,
            info,
            stalled: false,
            backoff,
            #[cfg(feature = "emulator")]
            emulator: None,
        })
    }

    pub fn chain_info(&self) -> &ChainInfo {
        self.chain.info()
    }

    /// Has the chain stopped answering (and not been brought back yet)?
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// While the chain is stalled: the wait set by the last failed re-init before the next
    /// attempt (it doubles with each failure, up to `ChainConfig::reinit_backoff_max`). None when
    /// no re-init has failed since the chain last ran.
    pub fn reinit_backoff(&self) -> Option<Duration> {
        self.backoff.last
    }

    /// The live counters (clone it before handing the hasher to the engine).
    pub fn stats(&self) -> ChainStats {
        self.chain.stats().clone()
    }

    fn stall_error(&self, source: Option<Error>) -> hashrig_hasher::Error {
        hashrig_hasher::Error::Device {
            device: self.info.name.clone(),
            source: Box::new(Error::Stalled {
                port: self.chain.port_name(),
                missed: self.chain.stats().snapshot().missed_heartbeats as u32,
                source: source.map(Box::new),
            }),
        }
    }

    /// Try a re-init when the back-off allows; Ok(true) when the chain is back.
    fn recover(&mut self, unit: &WorkUnit, ctl: &Control) -> Result<bool, hashrig_hasher::Error> {
        while Instant::now() < self.backoff.next {
            if ctl.is_stale(unit) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::warn!(port = %self.chain.port_name(), "re-initialising a chain that stopped answering");
        match self.chain.reinit() {
            Ok(()) => {
                tracing::info!(port = %self.chain.port_name(), "chain answers again after re-init");
                self.stalled = false;
                self.backoff.succeeded();
                Ok(true)
            }
            Err(e) => {
                self.backoff.failed();
                tracing::warn!(port = %self.chain.port_name(), retry_in = ?self.backoff.last, "re-init failed");
                Err(self.stall_error(Some(e)))
            }
        }
    }
}

impl<P: Port> Hasher for AsicHasher<P> {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn health_probe(&self) -> Option<std::sync::Arc<dyn hashrig_hasher::health::HealthProbe>> {
        Some(std::sync::Arc::new(self.chain.stats().clone()))
    }

    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, hashrig_hasher::Error> {
        let mut hashes = 0u64;
        if ctl.is_stale(unit) {
            return Ok(UnitOutcome { hashes, completed: false });
        }
        if self.stalled && !self.recover(unit, ctl)? {
            return Ok(UnitOutcome { hashes, completed: false });
        }
        let device = |e: Error| hashrig_hasher::Error::Device { device: self.info.name.clone(), source: Box::new(e) };
        self.chain.start_unit(unit).map_err(device)?;
        let deadline = Instant::now() + self.chain.job_interval(unit.version_mask);
        loop {
            let step = self.chain.poll(Duration::from_millis(1), sink);
            let step = match step {
                Ok(s) => s,
                Err(e) => return Err(hashrig_hasher::Error::Device { device: self.info.name.clone(), source: Box::new(e) }),
            };
            if step.hashes > 0 {
                hashes += step.hashes;
                ctl.add_hashes(step.hashes);
            }
            if self.chain.stalled() {
                self.stalled = true;
                self.backoff.next = Instant::now();
                // First attempt at once; if it works the engine simply gets the unit back early.
                self.recover(unit, ctl)?;
                return Ok(UnitOutcome { hashes, completed: false });
            }
            if ctl.is_stale(unit) {
                return Ok(UnitOutcome { hashes, completed: false });
            }
            if Instant::now() >= deadline {
                return Ok(UnitOutcome { hashes, completed: true });
            }
        }
    }
}

/// Open a chain on a serial port path (`asic:PORT`).
pub fn open_port(path: &str, cfg: ChainConfig) -> Result<AsicHasher<SerialLink>, Error> {
    let link = open_serial(path)?;
    AsicHasher::new(link, cfg)
}

/// Parse `bm1366x16` into a generation and a chip count.
pub fn parse_emu_model(model: &str) -> Result<(ChipType, usize), Error> {
    let bad = || Error::EmuModel(model.to_owned());
    let (chip, n) = model.split_once(['x', 'X']).ok_or_else(bad)?;
    let chip: ChipType = chip.parse().map_err(|_| bad())?;
    let n: usize = n.parse().map_err(|_| bad())?;
    if !(1..=256).contains(&n) {
        return Err(bad());
    }
    Ok((chip, n))
}

#[cfg(feature = "emulator")]
mod emulated {
    use std::sync::Arc;

    use super::*;
    use firmware_protocol::emulator::{Emulator, EmulatorConfig, Faults};

    /// The emulator-only ticket used by [`open_emulated`] unless told otherwise: 2^16 hashes per
    /// nonce, a few hundred nonces a second from a CPU-speed emulator.
    pub const EMU_TICKET_ZERO_BITS: u8 = 16;

    /// Driver settings for an emulated chain: no pacing, emulator-only ticket and power model.
    pub fn emulated_config(chip: ChipType, chips: usize) -> ChainConfig {
        ChainConfig {
            chip: Some(chip),
            chips: Some(chips),
            emulator_ticket_zero_bits: Some(EMU_TICKET_ZERO_BITS),
            emulator_power_model: true,
            pacing: Duration::ZERO,
            enumerate_quiet: Duration::from_millis(100),
            job_interval: Some(Duration::from_secs(1)),
            ..ChainConfig::default()
        }
    }

    impl AsicHasher<SerialLink> {
        /// Bring `emu` up over its pty; the emulator lives as long as the hasher.
        pub fn with_emulator(emu: Emulator, cfg: ChainConfig) -> Result<Self, Error> {
            let path = emu.path().to_string_lossy().into_owned();
            let link = open_serial(&path)?;
            let mut h = AsicHasher::new(link, cfg)?;
            h.info = device_info(&path, h.chain.info(), true);
            let emu = Arc::new(emu);
            let truth = Arc::clone(&emu);
            h.chain.stats().set_truth(Arc::new(move || truth.stats().hashes));
            h.emulator = Some(emu);
            Ok(h)
        }

        /// The emulator behind this hasher, if any (its stats hold the true hash count).
        pub fn emulator(&self) -> Option<&Emulator> {
            self.emulator.as_deref()
        }

        /// A shared handle on the emulator, readable while the hasher works on another thread.
        pub fn emulator_handle(&self) -> Option<Arc<Emulator>> {
            self.emulator.clone()
        }
    }

    /// A parsed `emu:` spec: `bm1366x16[,crc=R,garbage=R,drop=R,dup=R,late=R,bad-core=I,dead=I,
    /// stop-after=N,bits=K,rate=H]` (rates are probabilities per response frame; `bad-core` and
    /// `dead` name chips by chain position, `+`-separated; `bits` is the emulator-only ticket in
    /// leading zero bits; `rate` caps the emulator's hashes per second).
    #[derive(Clone, Debug)]
    pub struct EmuSpec {
        pub chip: ChipType,
        pub chips: usize,
        pub faults: Faults,
        pub ticket_zero_bits: u8,
        pub max_hashrate: Option<f64>,
    }

    impl EmuSpec {
        pub fn parse(spec: &str) -> Result<Self, Error> {
            let mut parts = spec.split(',');
            let (chip, chips) = parse_emu_model(parts.next().unwrap_or_default().trim())?;
            let mut out = Self { chip, chips, faults: Faults::default(), ticket_zero_bits: EMU_TICKET_ZERO_BITS, max_hashrate: None };
            for p in parts {
                let bad = || Error::EmuOption(p.to_owned());
                let (k, v) = p.split_once('=').ok_or_else(bad)?;
                let (k, v) = (k.trim(), v.trim());
                let rate = || v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or_else(bad);
                let list = || v.split('+').map(|i| i.parse::<usize>().map_err(|_| bad())).collect::<Result<Vec<_>, _>>();
                match k {
                    "crc" => out.faults.crc_error_rate = rate()?,
                    "garbage" => out.faults.garbage_rate = rate()?,
                    "drop" => out.faults.drop_byte_rate = rate()?,
                    "dup" => out.faults.duplicate_rate = rate()?,
                    "late" => out.faults.late_nonce_rate = rate()?,
                    "bad-core" => out.faults.bad_core_chips = list()?,
                    "dead" => out.faults.dead_chips = list()?,
                    "stop-after" => out.faults.stop_after_responses = Some(v.parse().map_err(|_| bad())?),
                    "bits" => out.ticket_zero_bits = v.parse().ok().filter(|b| (1..=40).contains(b)).ok_or_else(bad)?,
                    "rate" => out.max_hashrate = Some(v.parse().ok().filter(|r: &f64| *r > 0.0).ok_or_else(bad)?),
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
    }

    /// `emu:bm1366x16[,faults...]`: an emulated chain over a real pty, driven like hardware.
    pub fn open_emulated(spec: &str) -> Result<AsicHasher<SerialLink>, Error> {
        let s = EmuSpec::parse(spec)?;
        let mut ecfg = EmulatorConfig::new(s.chip, s.chips);
        ecfg.hash_budget_per_job = None;
        ecfg.max_hashrate = s.max_hashrate;
        ecfg.faults = s.faults;
        let emu = Emulator::spawn(ecfg).map_err(Error::Emulator)?;
        let mut cfg = emulated_config(s.chip, s.chips);
        cfg.emulator_ticket_zero_bits = Some(s.ticket_zero_bits);
        // Dead chips do not answer enumeration: do not insist on the count.
        AsicHasher::with_emulator(emu, cfg)
    }
}

#[cfg(feature = "emulator")]
pub use emulated::{EMU_TICKET_ZERO_BITS, EmuSpec, emulated_config, open_emulated};

#[cfg(all(test, feature = "emulator"))]
mod emu_spec_tests {
    use super::*;

    #[test]
    fn a_bare_model_gives_the_defaults() {
        let s = EmuSpec::parse("bm1366x16").unwrap();
        assert_eq!((s.chip, s.chips), (ChipType::Bm1366, 16));
        assert_eq!(s.faults, firmware_protocol::emulator::Faults::default());
        assert_eq!(s.ticket_zero_bits, EMU_TICKET_ZERO_BITS);
        assert_eq!(s.max_hashrate, None);
        let s = EmuSpec::parse("BM1397X1").unwrap();
        assert_eq!((s.chip, s.chips), (ChipType::Bm1397, 1));
        assert_eq!(EmuSpec::parse("bm1370x256").unwrap().chips, 256);
    }

    #[test]
    fn every_option_lands_in_its_field() {
        let s = EmuSpec::parse(
            "bm1368x8, crc=0.05,garbage=0.1,drop=0.02,dup=0.25,late=1,bad-core=1+3,dead=7,stop-after=500,bits=20,rate=2e6",
        )
        .unwrap();
        assert_eq!((s.chip, s.chips), (ChipType::Bm1368, 8));
        let f = &s.faults;
        assert_eq!(
            (f.crc_error_rate, f.garbage_rate, f.drop_byte_rate, f.duplicate_rate, f.late_nonce_rate),
            (0.05, 0.1, 0.02, 0.25, 1.0)
        );
        assert_eq!(f.bad_core_chips, vec![1, 3]);
        assert_eq!(f.dead_chips, vec![7]);
        assert_eq!(f.stop_after_responses, Some(500));
        assert_eq!(s.ticket_zero_bits, 20);
        assert_eq!(s.max_hashrate, Some(2e6));
    }

    #[test]
    fn bad_models_are_refused() {
        for spec in ["", "bm1366", "bm9999x4", "bm1366x0", "bm1366x257", "bm1366x-1", "bm1366xfour", "x4"] {
            assert!(matches!(EmuSpec::parse(spec), Err(Error::EmuModel(_))), "{spec:?} accepted");
        }
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        for opt in [
            "crc=2",
            "crc=-0.1",
            "garbage=x",
            "late",
            "dead=a",
            "bad-core=1+",
            "stop-after=-3",
            "bits=0",
            "bits=41",
            "rate=0",
            "rate=fast",
            "turbo=1",
        ] {
            match EmuSpec::parse(&format!("bm1370x4,{opt}")) {
                Err(Error::EmuOption(o)) => assert_eq!(o, opt),
                other => panic!("{opt}: {other:?}"),
            }
        }
    }

    #[test]
    fn chip_indexes_are_checked_when_the_emulator_starts() {
        // The parser takes any index; the emulator refuses one outside the chain.
        let s = EmuSpec::parse("bm1366x2,dead=5").unwrap();
        assert_eq!(s.faults.dead_chips, vec![5]);
        let err = open_emulated("bm1366x2,dead=5").unwrap_err();
        assert!(matches!(err, Error::Emulator(_)), "{err}");
    }
}
