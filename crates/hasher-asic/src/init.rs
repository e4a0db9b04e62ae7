//! Bring-up: enumerate the chips, address them, write the generation's configuration,
//! ramp the PLL, raise the baud and check the link; and `probe`, which only asks for chip ids.
//! The register writes follow ESP-Miner and factory firmware captures (firmware-protocol's
//! REFERENCE.md); register addresses use firmware-protocol's named constants, the values are
//! the captured ones.
//!
//! Also the small link helpers the running chain shares: framed writes and register reads.

use std::time::{Duration, Instant};

use firmware_protocol::decoder::{Decoder, DecoderStats, Direction, Frame, ResponseLength};
use firmware_protocol::register::{HashCountingNumber, Pll, TicketMask, VersionRolling, addr as reg};
use firmware_protocol::response::{RegisterResponse, Response, ResponseForm};
use firmware_protocol::{ChipType, Command};

use crate::Error;
use crate::port::Port;
use crate::setup::{ChainConfig, ChainInfo, HOST_RESET_BAUD};
use crate::stats::ChainStats;

pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

pub(crate) fn send<P: Port>(port: &mut P, bytes: &[u8]) -> Result<(), Error> {
    port.write_all_bytes(bytes).map_err(io("write to the chain"))
}

pub(crate) fn cmd<P: Port>(port: &mut P, c: Command) -> Result<(), Error> {
    send(port, c.encode().as_bytes())
}

/// Frames a decoder rejected (bad CRC or malformed) and bytes it skipped, beyond `before`.
pub(crate) fn rejected_since(d: &Decoder, before: &DecoderStats) -> (u64, u64) {
    let now = d.stats();
    let bad = (now.bad_crc + now.malformed).saturating_sub(before.bad_crc + before.malformed);
    (bad, now.skipped_bytes.saturating_sub(before.skipped_bytes))
}

/// Add everything a bring-up decoder rejected to the chain's totals (None: a probe, not kept).
pub(crate) fn account_all(stats: Option<&ChainStats>, d: &Decoder) {
    if let Some(stats) = stats {
        let (bad, skipped) = rejected_since(d, &DecoderStats::default());
        stats.with(|c| c.add_decoder(bad, skipped));
    }
}

/// Register answers collected for `wait` (or until `quiet` passes after the last one).
pub(crate) fn collect_registers<P: Port>(
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
pub(crate) fn init_sequence<P: Port>(port: &mut P, cfg: &ChainConfig, stats: Option<&ChainStats>) -> Result<ChainInfo, Error> {
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
            for (r, v) in [(reg::CLOCK_ORDER_CONTROL0, 0), (reg::CLOCK_ORDER_CONTROL1, 0), (reg::ORDERED_CLOCK_ENABLE, 1), (reg::CORE_REGISTER_CONTROL, 0x8000_8074), (reg::TICKET_MASK, ticket.to_register()), (reg::PLL3, 0xc070_0111), (reg::UART_BAUD, 0x0600_000f), (reg::MISC_CONTROL, 0x0000_7a31)] {
                all(port, r, v)?;
            }
        }
        ChipType::Bm1366 | ChipType::Bm1368 => {
            let core = if chip == ChipType::Bm1366 { [0x8000_8540, 0x8000_8020] } else { [0x8000_8b00, 0x8000_8018] };
            all(port, reg::SOFT_RESET_CONTROL, 0x0007_0000)?;
            all(port, reg::MISC_CONTROL, 0xff0f_c100)?;
            address_chain(port)?;
            all(port, reg::CORE_REGISTER_CONTROL, core[0])?;
            all(port, reg::CORE_REGISTER_CONTROL, core[1])?;
            all(port, reg::TICKET_MASK, ticket.to_register())?;
            all(port, reg::ANALOG_MUX, 3)?;
            all(port, reg::IO_DRIVER_STRENGTH, 0x0211_1111)?;
            for (r, v) in [(reg::SOFT_RESET_CONTROL, 0x0007_01f0), (reg::MISC_CONTROL, 0xf000_c100), (reg::CORE_REGISTER_CONTROL, core[0]), (reg::CORE_REGISTER_CONTROL, core[1]), (reg::CORE_REGISTER_CONTROL, 0x8000_82aa)] {
                each(port, r, v)?;
            }
        }
        ChipType::Bm1370 => {
            all(port, reg::SOFT_RESET_CONTROL, 0x0007_0000)?;
            all(port, reg::MISC_CONTROL, 0xf000_c100)?;
            address_chain(port)?;
            all(port, reg::CORE_REGISTER_CONTROL, 0x8000_8b00)?;
            all(port, reg::CORE_REGISTER_CONTROL, 0x8000_800c)?;
            all(port, reg::TICKET_MASK, ticket.to_register())?;
            all(port, reg::IO_DRIVER_STRENGTH, 0x0001_1111)?;
            for (r, v) in [(reg::SOFT_RESET_CONTROL, 0x0007_01f0), (reg::MISC_CONTROL, 0xf000_c100), (reg::CORE_REGISTER_CONTROL, 0x8000_8b00), (reg::CORE_REGISTER_CONTROL, 0x8000_800c), (reg::CORE_REGISTER_CONTROL, 0x8000_82aa)] {
                each(port, r, v)?;
            }
            for (r, v) in [(reg::ADC_CONTROL, 0x0000_4480), (reg::ANALOG_MUX, 2), (reg::ADC_CONTROL, 0x0000_4480), (reg::CORE_REGISTER_CONTROL, 0x8000_8dee)] {
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
