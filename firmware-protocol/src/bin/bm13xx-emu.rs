//! `bm13xx-emu`: a chain of emulated BM13xx chips behind a pseudo-terminal.
//!
//! Prints the serial device to open, then serves it until killed (Ctrl-C) or until stdin
//! closes when `--until-stdin-closes` is given (handy for scripts and tests).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use firmware_protocol::ChipType;
use firmware_protocol::emulator::{Emulator, EmulatorConfig, Faults, describe};

#[derive(Parser, Debug)]
#[command(name = "bm13xx-emu", about = "Emulate a chain of BM13xx mining chips on a pseudo-terminal")]
struct Args {
    /// Chip generation: bm1397, bm1366, bm1368, bm1370.
    #[arg(long, default_value = "bm1370")]
    chip: ChipType,
    /// Chips on the chain (1..=256).
    #[arg(long, default_value_t = 1)]
    chips: usize,
    /// Make a symlink to the pty at this path (removed on exit).
    #[arg(long)]
    link: Option<PathBuf>,
    /// EMULATOR ONLY: report hashes with at least K leading zero bits instead of 32 + N (K < 32
    /// means ticket difficulty below 1, so a CPU finds nonces). Register 0xF8 sets it too.
    #[arg(long, value_name = "K")]
    ticket_zero_bits: Option<u8>,
    /// Stop hashing a job after this many hashes (0: until the next job).
    #[arg(long, default_value_t = 0)]
    budget_per_job: u64,
    /// Hash at most this many hashes per second (0: one thread flat out).
    #[arg(long, default_value_t = 0.0)]
    max_hashrate: f64,
    /// Accept any host baud (by default the chain ignores a host more than 5 % off its baud).
    #[arg(long)]
    loose_baud: bool,
    /// Seed of the fault dice.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Fault: probability per response of a corrupted CRC.
    #[arg(long, default_value_t = 0.0)]
    crc_error_rate: f64,
    /// Fault: probability per response of 1-8 garbage bytes before it.
    #[arg(long, default_value_t = 0.0)]
    garbage_rate: f64,
    /// Fault: probability per response of one dropped byte.
    #[arg(long, default_value_t = 0.0)]
    drop_byte_rate: f64,
    /// Fault: a dead chip (0-based chain position); repeat for more.
    #[arg(long = "dead-chip")]
    dead_chips: Vec<usize>,
    /// Fault: a chip whose even-numbered cores return wrong nonces; repeat for more.
    #[arg(long = "bad-core-chip")]
    bad_core_chips: Vec<usize>,
    /// Fault: probability that a nonce is sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_rate: f64,
    /// Fault: probability that a nonce is held back and sent after the next job.
    #[arg(long, default_value_t = 0.0)]
    late_nonce_rate: f64,
    /// Fault: the chain stops answering after this many responses.
    #[arg(long)]
    stop_after_responses: Option<u64>,
    /// Exit when stdin reaches end of file.
    #[arg(long)]
    until_stdin_closes: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let config = EmulatorConfig {
        chip: a.chip,
        chips: a.chips,
        faults: Faults {
            crc_error_rate: a.crc_error_rate,
            garbage_rate: a.garbage_rate,
            drop_byte_rate: a.drop_byte_rate,
            dead_chips: a.dead_chips,
            bad_core_chips: a.bad_core_chips,
            duplicate_rate: a.duplicate_rate,
            late_nonce_rate: a.late_nonce_rate,
            stop_after_responses: a.stop_after_responses,
        },
        seed: a.seed,
        ticket_zero_bits: a.ticket_zero_bits,
        hash_budget_per_job: (a.budget_per_job > 0).then_some(a.budget_per_job),
        max_hashrate: (a.max_hashrate > 0.0).then_some(a.max_hashrate),
        strict_baud: !a.loose_baud,
        link: a.link,
    };
    let banner = describe(&config);
    let emu = match Emulator::spawn(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bm13xx-emu: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            return ExitCode::from(2);
        }
    };
    println!("{}", emu.path().display());
    if let Some(link) = emu.link() {
        eprintln!("bm13xx-emu: linked {} -> {}", link.display(), emu.path().display());
    }
    eprintln!("bm13xx-emu: {banner}");
    if a.until_stdin_closes {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    } else {
        loop {
            std::thread::park();
        }
    }
    let s = emu.stats();
    eprintln!(
        "bm13xx-emu: {} frames in, {} jobs, {} responses out ({} nonces), {} hashes",
        s.frames_in, s.jobs_in, s.responses_out, s.nonces_out, s.hashes
    );
    ExitCode::SUCCESS
}
