//! The host side of the link: frames read from the pty, commands and register writes applied
//! to the chips, jobs installed, and response frames written back (with injected faults).

use super::*;

pub(super) fn io_loop(shared: Arc<Shared>, mut master: TTYPort) {
    let mut decoder = Decoder::new(Direction::HostToChip, shared.chip);
    let mut buf = [0u8; 4096];
    while !shared.shutdown.load(Ordering::Acquire) {
        let n = match master.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "pty read failed; retrying");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if shared.silent.load(Ordering::Acquire) {
            continue;
        }
        if shared.strict_baud && !baud_matches(&shared) {
            shared.counters.baud_mismatch_bytes.fetch_add(n as u64, Ordering::Relaxed);
            decoder.reset();
            continue;
        }
        decoder.push(&buf[..n]);
        while let Some(event) = decoder.next_event() {
            match event {
                Event::Frame { frame, .. } => {
                    shared.counters.frames_in.fetch_add(1, Ordering::Relaxed);
                    handle_frame(&shared, frame);
                }
                Event::BadCrc { .. } | Event::Malformed { .. } => {
                    shared.counters.bad_frames_in.fetch_add(1, Ordering::Relaxed);
                }
                Event::Skipped { .. } => {}
            }
        }
    }
}

/// Is the host's side of the pty within 5 % of the chain's baud?
pub(super) fn baud_matches(shared: &Shared) -> bool {
    let host = match lock(&shared.slave).baud_rate() {
        Ok(b) if b > 0 => f64::from(b),
        _ => return true,
    };
    let chain = f64::from(lock(&shared.state).baud);
    (host - chain).abs() / chain <= 0.05
}

pub(super) fn handle_frame(shared: &Shared, frame: Frame) {
    match frame {
        Frame::Command(cmd) => handle_command(shared, cmd),
        Frame::Job(job) => handle_job(shared, job),
        Frame::Response(_) => {}
    }
}

pub(super) fn handle_command(shared: &Shared, cmd: Command) {
    let chip = shared.chip;
    let mut out: Vec<Response> = Vec::new();
    {
        let mut st = lock(&shared.state);
        match cmd {
            Command::ChainInactive => {
                st.inactive_seen = true;
                for c in st.chips.iter_mut() {
                    c.assigned = false;
                }
            }
            Command::SetAddress(a) => {
                if st.inactive_seen {
                    if let Some(c) = st.chips.iter_mut().find(|c| c.alive && !c.assigned) {
                        c.address = a;
                        c.assigned = true;
                    }
                } else {
                    for c in st.chips.iter_mut().filter(|c| c.alive) {
                        c.address = a;
                    }
                }
            }
            Command::WriteRegister { dest, register, value } => {
                let mut new_baud = None;
                for c in st.chips.iter_mut().filter(|c| c.alive && matches_dest(c, dest)) {
                    write_register(chip, c, register, value);
                    if let Some(b) = register::baud_from_register(chip, register, value) {
                        new_baud = Some(b);
                    }
                }
                if let Some(b) = new_baud {
                    tracing::debug!(baud = b, "chain switches baud");
                    st.baud = b;
                }
            }
            Command::ReadRegister { dest, register } => {
                let total_hashes = shared.counters.hashes.load(Ordering::Relaxed);
                let alive = st.chips.iter().filter(|c| c.alive).count().max(1) as u64;
                for c in st.chips.iter().filter(|c| c.alive && matches_dest(c, dest)) {
                    let value = read_register(chip, c, register, total_hashes / alive);
                    let extra = c.long_responses.then_some([0u8, 0u8]);
                    out.push(Response::Register(RegisterResponse { value, chip_address: c.address, register, extra }));
                }
            }
        }
    }
    for r in out {
        send(shared, r.encode().as_bytes(), false);
    }
}

pub(super) fn matches_dest(c: &ChipState, dest: Destination) -> bool {
    match dest {
        Destination::All => true,
        Destination::Chip(a) => c.address == a,
    }
}

pub(super) fn write_register(chip: ChipType, c: &mut ChipState, register: u8, value: u32) {
    match register {
        reg::CHIP_ID | reg::EMU_POWER_MW => return,
        reg::PLL0 => {
            if let Ok(p) = Pll::from_register(chip, value) {
                c.pll = Some(p);
            }
        }
        reg::TICKET_MASK => {
            if let Ok(t) = TicketMask::from_register(value) {
                c.ticket = t;
            }
        }
        reg::VERSION_ROLLING if chip.rolls_versions() => {
            c.rolling = VersionRolling::from_register(value);
            // Any write to 0xA4 switches BM136x to the 11-byte form (notes 2.1).
            c.long_responses = true;
        }
        reg::EMU_CORE_MILLIVOLTS => c.millivolts = value.min(5000),
        reg::EMU_TICKET_ZERO_BITS => c.zero_bits_override = (value != 0).then_some(value.min(255) as u8),
        _ => {}
    }
    c.registers.insert(register, value);
}

pub(super) fn read_register(chip: ChipType, c: &ChipState, register: u8, hashes_per_chip: u64) -> u32 {
    match register {
        reg::CHIP_ID => chip.chip_id_register(c.address),
        reg::EMU_POWER_MW => (c.model_watts(chip) * 1000.0).round() as u32,
        reg::EMU_CORE_MILLIVOLTS => c.millivolts,
        reg::EMU_TICKET_ZERO_BITS => u32::from(c.report_zero_bits()),
        // Difficulty-1 results this chip's share of the hashing stands for (2^32 hashes each).
        reg::TOTAL_HASH_COUNTER if chip.rolls_versions() => (hashes_per_chip >> 32) as u32,
        reg::UART_BAUD if chip.rolls_versions() => c.registers.get(&register).copied().unwrap_or(0x0130_1a00),
        _ => c.registers.get(&register).copied().unwrap_or(0),
    }
}

pub(super) fn handle_job(shared: &Shared, job: Job) {
    shared.counters.jobs_in.fetch_add(1, Ordering::Relaxed);
    let mask = {
        let st = lock(&shared.state);
        st.chips.iter().find(|c| c.alive && c.rolling.is_enabled()).map(|c| c.rolling.header_mask()).unwrap_or(0)
    };
    let generation = shared.job_generation.fetch_add(1, Ordering::AcqRel) + 1;
    let start_chunk = u64::from(match job {
        Job::Midstate(j) => j.starting_nonce,
        Job::Header(j) => j.starting_nonce,
    }) / CHUNK;
    let (wire_id, kind) = match job {
        Job::Midstate(j) => {
            let tail = j.tail12();
            let scans = j.active_states().map(|s| ScanJob::from_parts(Midstate(s), &tail)).collect();
            (j.job_id, ActiveKind::Midstates(scans))
        }
        Job::Header(j) => (j.job_id, ActiveKind::Header { header: j.header(j.version, 0), mask }),
    };
    *lock(&shared.job) = Some(Arc::new(ActiveJob { generation, wire_id, start_chunk, kind }));
    // Late nonces for the previous job come out after the new job went in.
    let held = std::mem::take(&mut lock(&shared.state).held);
    for frame in held {
        shared.counters.late_nonces.fetch_add(1, Ordering::Relaxed);
        send(shared, &frame, true);
    }
}

/// Send one response frame through the fault injector.
pub(super) fn send(shared: &Shared, frame: &[u8], is_nonce: bool) {
    if shared.silent.load(Ordering::Acquire) {
        return;
    }
    if shared.strict_baud && !baud_matches(shared) {
        return;
    }
    let faults = lock(&shared.faults).clone();
    let limit = faults.stop_after_responses.unwrap_or(u64::MAX);
    if shared.counters.responses_out.load(Ordering::Relaxed) >= limit {
        shared.silent.store(true, Ordering::Release);
        return;
    }
    let mut bytes = frame.to_vec();
    let mut copies = 1;
    {
        let mut rng = lock(&shared.rng);
        if rng.chance(faults.crc_error_rate) {
            let last = bytes.len() - 1;
            bytes[last] ^= 1 + (rng.next() % 31) as u8;
            shared.counters.corrupted_crc.fetch_add(1, Ordering::Relaxed);
        }
        if rng.chance(faults.drop_byte_rate) {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes.remove(at);
            shared.counters.dropped_bytes.fetch_add(1, Ordering::Relaxed);
        }
        if rng.chance(faults.garbage_rate) {
            let n = 1 + (rng.next() % 8) as usize;
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(0..0, junk);
            shared.counters.garbage_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        if is_nonce && rng.chance(faults.duplicate_rate) {
            copies = 2;
            shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut w = lock(&shared.writer);
    for _ in 0..copies {
        if let Err(e) = w.write_all(&bytes) {
            tracing::debug!(error = %e, "pty write failed (nobody reading?)");
            return;
        }
        shared.counters.responses_out.fetch_add(1, Ordering::Relaxed);
        if is_nonce {
            shared.counters.nonces_out.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = w.flush();
}
