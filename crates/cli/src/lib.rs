//! The `hashrig` command line: subcommands over the library crates. Each subcommand parses its
//! flags, validates them into a plan (bad input is a [`BadInput`] error, exit 2), runs, and
//! prints (`bench`, `econ`, `scan`, `selftest`, `devices` and `decode` through `outln!`: a
//! reader that goes away ends the command quietly, exit 0).
//!
//! What it is for: the user-facing commands (`mine`, `bench`, `econ`, `scan`, `selftest`,
//! `devices`, `decode`). The mining loop is in `hashrig-miner`, but the CLI is not thin yet: besides flags
//! and printing it holds backend selection and opening ([`backend`], including the global
//! through which ASIC telemetry reaches the monitor), the run's power meter ([`metering`]),
//! mine's settings from flags and a TOML file and their merge ([`mine`]), the glue from the
//! engine's stats to the monitor ([`monitoring`]), the bench run ([`bench`]), the scan sweep
//! with its re-verification ([`scan`]) and the serial-port permission check ([`devices`]).
//! What it is not for: hashing, share policy or protocol logic, which live in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod backend;
pub mod bench;
pub mod curtailing;
pub mod decode;
pub mod devices;
pub mod econ;
pub mod live_econ;
pub mod metering;
pub mod monitoring;
pub mod mine;
pub mod scan;
pub mod selftest;

/// hashrig: a SHA-256d mining engine with honest measurement.
#[derive(Debug, Parser)]
#[command(name = "hashrig", version, about)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace; RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mine: Stratum v1 pools (--pool, failover in order) or solo against a node (--node).
    Mine(Box<mine::MineArgs>),
    /// Hash a synthetic job and report hashrate, power, J/TH and economics.
    Bench(bench::BenchArgs),
    /// Known-answer tool: list every nonce of a header's range that meets a target.
    Scan(scan::ScanArgs),
    /// Real-block known-answer tests on each backend and CPU kernel.
    Selftest(selftest::SelftestArgs),
    /// List CPU kernels, GPU adapters, serial ports and power sources.
    Devices(devices::DevicesArgs),
    /// Decode a BM13xx serial capture (hex or raw bytes): each frame's fields, bad CRCs, garbage.
    Decode(decode::DecodeArgs),
    /// Mining economics for a declared or benched machine: profit, break-even, rent or sell power.
    Econ(econ::EconArgs),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Mine(a) => mine::run_cmd(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Scan(a) => scan::run(&a),
        Command::Selftest(a) => selftest::run(&a),
        Command::Devices(a) => devices::run(&a),
        Command::Decode(a) => decode::run(&a),
        Command::Econ(a) => econ::run(&a),
    }
}

/// Bad input from the user (flags, hex, ranges): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A [`BadInput`] error.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// Is this error (or any cause) bad input?
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<BadInput>())
}

/// Did the work stop because the reader of our stdout went away (`hashrig devices | head -1`)?
/// Then `main` exits 0 without a word, as `cat` and ripgrep do: Rust ignores SIGPIPE, so a
/// closed pipe reaches us as this error rather than as the signal that ends a C program.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// `println!` that returns the write error (an `io::Result<()>`) instead of panicking on it;
/// a command whose output goes through it ends through `?` when the pipe closes.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// Logs to stderr; `-v` raises the level, `RUST_LOG` overrides it.
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub use hashrig_monitor::report::fmt_rate;

/// Read an optional config-file value through its type's `FromStr` (the parser its flag
/// uses), so a flag and its file key accept and refuse the same text.
pub(crate) fn de_from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    use serde::Deserialize;
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}"))),
    }
}
