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

/// A parsed `asic:` backend: `PORT[,chip=bm1370,freq=MHZ,chips=N,baud=max|115200,diff=D]`.
/// The ASIC crate owns its options: the CLI hands it the text after `asic:` and gets this back,
/// or an error naming the option and what it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct AsicSpec {
    /// The serial port, e.g. `/dev/ttyUSB0`.
    pub port: String,
    pub chip: Option<ChipType>,
    /// Target frequency, MHz (50..=1000).
    pub mhz: Option<f64>,
    /// Chips expected in the chain (1..=256).
    pub chips: Option<usize>,
    /// `baud=max` (raise after init, the default) or `baud=115200` (stay at the reset rate).
    pub raise_baud: Option<bool>,
    /// Ticket difficulty (>= 1; a power of two is used).
    pub ticket_difficulty: Option<f64>,
}

/// Why an `asic:` spec was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsicSpecError {
    #[error("name the serial port, e.g. asic:/dev/ttyUSB0")]
    NoPort,
    #[error("the serial port comes first, e.g. asic:/dev/ttyUSB0,chip=bm1370")]
    PortNotFirst,
    #[error("option `{0}` is not key=value")]
    NotKeyValue(String),
    #[error("unknown option `{0}` (known: chip, freq, chips, baud, diff)")]
    UnknownOption(String),
    #[error("asic option {key}={value}: {takes}")]
    BadValue { key: String, value: String, takes: &'static str },
}

impl AsicSpec {
    /// The chain configuration this spec asks for (defaults elsewhere).
    pub fn config(&self) -> ChainConfig {
        let mut cfg = ChainConfig { chip: self.chip, chips: self.chips, mhz: self.mhz, ..ChainConfig::default() };
        if let Some(raise) = self.raise_baud {
            cfg.raise_baud = raise;
        }
        if let Some(d) = self.ticket_difficulty {
            cfg.ticket_difficulty = d;
        }
        cfg
    }
}

impl std::str::FromStr for AsicSpec {
    type Err = AsicSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let port = parts.next().unwrap_or_default().trim().to_owned();
        if port.is_empty() {
            return Err(AsicSpecError::NoPort);
        }
        if port.contains('=') {
            return Err(AsicSpecError::PortNotFirst);
        }
        let mut out = AsicSpec { port, chip: None, mhz: None, chips: None, raise_baud: None, ticket_difficulty: None };
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| AsicSpecError::NotKeyValue(p.to_owned()))?;
            let (key, value) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            let bad = |takes: &'static str| AsicSpecError::BadValue { key: key.clone(), value: value.clone(), takes };
            match key.as_str() {
                "chip" => out.chip = Some(value.parse().map_err(|_| bad("known chips: bm1397, bm1366, bm1368, bm1370"))?),
                "freq" => {
                    out.mhz = Some(value.parse::<f64>().ok().filter(|f| (50.0..=1000.0).contains(f)).ok_or_else(|| bad("a frequency in MHz, 50..=1000"))?)
                }
                "chips" => out.chips = Some(value.parse::<usize>().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| bad("a chip count, 1..=256"))?),
                "baud" => {
                    out.raise_baud = Some(match value.as_str() {
                        "max" => true,
                        "115200" | "reset" => false,
                        _ => return Err(bad("`max` (raise after init, the default) or `115200` (stay at the reset rate)")),
                    })
                }
                "diff" => {
                    out.ticket_difficulty =
                        Some(value.parse::<f64>().ok().filter(|d| *d >= 1.0).ok_or_else(|| bad("a ticket difficulty >= 1 (a power of two is used)"))?)
                }
                _ => return Err(AsicSpecError::UnknownOption(key)),
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for AsicSpec {
    /// Back to the text it was parsed from (options in a fixed order).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.port)?;
        if let Some(c) = self.chip {
            write!(f, ",chip={}", c.name())?;
        }
        if let Some(m) = self.mhz {
            write!(f, ",freq={m}")?;
        }
        if let Some(n) = self.chips {
            write!(f, ",chips={n}")?;
        }
        if let Some(r) = self.raise_baud {
            f.write_str(if r { ",baud=max" } else { ",baud=115200" })?;
        }
        if let Some(d) = self.ticket_difficulty {
            write!(f, ",diff={d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asic_specs_parse_into_a_chain_config_and_print_back() {
        let s: AsicSpec = "/dev/ttyUSB0,chip=BM1370,freq=525,chips=4,baud=115200,diff=512".parse().unwrap();
        assert_eq!(s.to_string(), "/dev/ttyUSB0,chip=bm1370,freq=525,chips=4,baud=115200,diff=512");
        let cfg = s.config();
        assert_eq!((cfg.chip, cfg.mhz, cfg.chips, cfg.raise_baud, cfg.ticket_difficulty), (Some(ChipType::Bm1370), Some(525.0), Some(4), false, 512.0));
        // Unset options keep the driver's defaults.
        let plain: AsicSpec = "/dev/ttyACM0".parse().unwrap();
        let d = ChainConfig::default();
        assert_eq!((plain.config().raise_baud, plain.config().ticket_difficulty), (d.raise_baud, d.ticket_difficulty));
    }

    #[test]
    fn bad_asic_options_name_the_option_and_what_it_takes() {
        for (spec, want) in [
            ("", AsicSpecError::NoPort),
            ("chip=bm1370", AsicSpecError::PortNotFirst),
            ("/dev/ttyUSB0,turbo", AsicSpecError::NotKeyValue("turbo".into())),
            ("/dev/ttyUSB0,volts=9", AsicSpecError::UnknownOption("volts".into())),
        ] {
            assert_eq!(spec.parse::<AsicSpec>().unwrap_err(), want, "{spec}");
        }
        for (spec, takes) in [("chip=bm9999", "known chips"), ("freq=2000", "50..=1000"), ("chips=0", "1..=256"), ("baud=fast", "`max`"), ("diff=0.5", ">= 1")] {
            let e = format!("/dev/ttyUSB0,{spec}").parse::<AsicSpec>().unwrap_err().to_string();
            assert!(e.contains(spec) && e.contains(takes), "{spec}: {e}");
        }
    }
}
