//! What a chain is asked to be ([`ChainConfig`]) and what bring-up found ([`ChainInfo`]).
//! Both the bring-up (`init.rs`), the running chain (`chain.rs`) and its telemetry
//! (`stats.rs`) read these; this module depends on none of them.

use std::time::Duration;

use firmware_protocol::ChipType;

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
