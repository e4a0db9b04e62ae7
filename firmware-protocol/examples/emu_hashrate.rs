//! How fast the emulator hashes on this machine (one thread, best sha256d kernel): sends one
//! BM1370 job over the pty and reads the hash counter for a few seconds.
//!
//! `cargo run --release -p firmware-protocol --features emulator --example emu_hashrate`

use std::io::Write;
use std::time::{Duration, Instant};

use firmware_protocol::emulator::{Emulator, EmulatorConfig};
use firmware_protocol::{ChipType, Command, HeaderJob, reg};

fn main() {
    let mut cfg = EmulatorConfig::new(ChipType::Bm1370, 4);
    cfg.ticket_zero_bits = Some(24);
    cfg.hash_budget_per_job = None;
    let emu = Emulator::spawn(cfg).expect("start the emulator");
    let mut port = serialport::new(emu.path().to_string_lossy(), 115_200).open_native().expect("open the pty");
    port.write_all(Command::write_all(reg::VERSION_ROLLING, 0x9000_ffff).encode().as_bytes()).unwrap();
    port.write_all(HeaderJob::from_header(0x08, &[7u8; 80]).encode().as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (h0, t0) = (emu.stats().hashes, Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let (h1, dt) = (emu.stats().hashes, t0.elapsed().as_secs_f64());
    println!(
        "emulator: {:.2} MH/s ({} hashes in {dt:.2} s, kernel {}), {} nonces sent",
        (h1 - h0) as f64 / dt / 1e6,
        h1 - h0,
        hashrig_sha256d::Scanner::best().kernel(),
        emu.stats().nonces_out
    );
}
