//! The emulator over a real pseudo-terminal, driven by a plain `serialport` client.

use std::time::{Duration, Instant};

use firmware_protocol::emulator::{Emulator, EmulatorConfig, Faults};
use hashrig_sha256d::leading_zero_bits as zero_bits;
use firmware_protocol::{
    ChipType, Command, Decoder, Direction, Event, Frame, HeaderJob, MidstateJob, NonceResponse, Response, ResponseForm, ResponseLength,
    TicketMask, VersionRolling, reg,
};
use serialport::{SerialPort, TTYPort};

const BITS: u8 = 16;

struct Client {
    port: TTYPort,
    decoder: Decoder,
}

impl Client {
    fn open(emu: &Emulator) -> Self {
        let port = serialport::new(emu.path().to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(20))
            .open_native()
            .expect("open the emulator's pty");
        // A live host knows which form it configured: 9 bytes until it writes 0xA4 (BM136x).
        let decoder = Decoder::new(Direction::ChipToHost, emu.chip())
            .with_response_length(ResponseLength::Fixed(ResponseForm::Short));
        Self { port, decoder }
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.port.write_all(bytes).unwrap();
        self.port.flush().unwrap();
    }

    fn cmd(&mut self, c: Command) {
        if let Command::WriteRegister { register: reg::VERSION_ROLLING, .. } = c
            && self.decoder.chip().has_long_responses() {
                self.decoder.set_response_length(ResponseLength::Fixed(ResponseForm::Long));
            }
        self.send(c.encode().as_bytes());
    }

    /// Events until `enough` says stop or `wait` passes.
    fn collect(&mut self, wait: Duration, mut enough: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
        use std::io::Read;
        let end = Instant::now() + wait;
        let mut events = Vec::new();
        let mut buf = [0u8; 1024];
        while Instant::now() < end && !enough(&events) {
            match self.port.read(&mut buf) {
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
            while let Some(e) = self.decoder.next_event() {
                events.push(e);
            }
        }
        events
    }

    fn responses(&mut self, wait: Duration, n: usize) -> Vec<Response> {
        let events = self.collect(wait, |ev| ev.iter().filter(|e| matches!(e, Event::Frame { .. })).count() >= n);
        frames(&events)
    }
}

fn frames(events: &[Event]) -> Vec<Response> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Frame { frame: Frame::Response(r), .. } => Some(*r),
            _ => None,
        })
        .collect()
}

fn nonces(rs: &[Response]) -> Vec<NonceResponse> {
    rs.iter().filter_map(|r| if let Response::Nonce(n) = r { Some(*n) } else { None }).collect()
}

fn config(chip: ChipType, chips: usize) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(chip, chips);
    c.ticket_zero_bits = Some(BITS);
    c.hash_budget_per_job = Some(1 << 23);
    c
}

/// A real block header (block 100 000) as test work.
fn header() -> [u8; 80] {
    let hex = "0100000050120119172a610421a6c3011dd330d9df07b63616c2cc1f1cd00200000000006657a9252aacd5c0b2940996ecff952228c3067cc38d4885efb5a4ac4247e9f337221b4d4c86041b0f2b5710";
    let v: Vec<u8> = (0..80).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    v.try_into().unwrap()
}

fn enumerate(client: &mut Client, chips: usize) -> Vec<Response> {
    client.cmd(Command::read_all(reg::CHIP_ID));
    client.responses(Duration::from_secs(3), chips)
}

/// Enumerate when fewer answers (or none) are expected: waits a short quiet time only.
fn enumerate_short(client: &mut Client, at_most: usize) -> Vec<Response> {
    client.cmd(Command::read_all(reg::CHIP_ID));
    client.responses(Duration::from_millis(1000), at_most + 1)
}

fn address_chain(client: &mut Client, chips: usize) -> Vec<u8> {
    client.cmd(Command::ChainInactive);
    let interval = 256 / chips;
    let addrs: Vec<u8> = (0..chips).map(|i| (i * interval) as u8).collect();
    for a in &addrs {
        client.cmd(Command::SetAddress(*a));
    }
    // Sync: once the first chip answers an addressed read, every command before it was handled.
    client.cmd(Command::read_chip(addrs[0], reg::CHIP_ID));
    assert_eq!(client.responses(Duration::from_secs(3), 1).len(), 1);
    addrs
}

#[test]
fn each_generation_answers_enumeration_with_its_chip_id() {
    for chip in ChipType::KNOWN {
        let emu = Emulator::spawn(config(chip, 3)).unwrap();
        let mut c = Client::open(&emu);
        let rs = enumerate(&mut c, 3);
        assert_eq!(rs.len(), 3, "{chip}");
        for r in rs {
            let Response::Register(r) = r else { panic!("{chip}: {r:?}") };
            assert_eq!(r.value, chip.chip_id_register(0), "{chip}");
            assert_eq!(r.extra, None, "{chip}: 9-byte form before 0xA4");
        }
    }
}

#[test]
fn bm136x_switch_to_11_byte_responses_after_version_rolling_is_written() {
    for chip in [ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370] {
        let emu = Emulator::spawn(config(chip, 1)).unwrap();
        let mut c = Client::open(&emu);
        c.cmd(Command::write_all(reg::VERSION_ROLLING, 0x9000_ffff));
        let rs = enumerate(&mut c, 1);
        let Some(Response::Register(r)) = rs.first().copied() else { panic!("{chip}: {rs:?}") };
        assert_eq!(r.extra, Some([0, 0]), "{chip}");
        assert_eq!(Response::Register(r).encode().as_bytes().len(), 11);
    }
    // BM1397 has no 0xA4: still 9 bytes.
    let emu = Emulator::spawn(config(ChipType::Bm1397, 1)).unwrap();
    let mut c = Client::open(&emu);
    c.cmd(Command::write_all(reg::VERSION_ROLLING, 0x9000_ffff));
    let rs = enumerate(&mut c, 1);
    assert!(matches!(rs[0], Response::Register(r) if r.extra.is_none()));
}

#[test]
fn a_128_chip_chain_takes_addresses_one_by_one() {
    let emu = Emulator::spawn(config(ChipType::Bm1370, 128)).unwrap();
    let mut c = Client::open(&emu);
    assert_eq!(enumerate(&mut c, 128).len(), 128);
    let addrs = address_chain(&mut c, 128);
    // Addressed read of one chip: exactly that chip answers.
    c.cmd(Command::read_chip(addrs[77], reg::CHIP_ID));
    let rs = c.responses(Duration::from_secs(2), 1);
    assert_eq!(rs.len(), 1);
    let Response::Register(r) = rs[0] else { panic!() };
    assert_eq!(r.chip_address, addrs[77]);
    assert_eq!(r.value & 0xff, u32::from(addrs[77]));
    let got: Vec<u8> = emu.chips().iter().map(|s| s.address).collect();
    assert_eq!(got, addrs);
}

#[test]
fn register_writes_read_back_and_drive_pll_ticket_and_power() {
    let emu = Emulator::spawn(config(ChipType::Bm1370, 2)).unwrap();
    let mut c = Client::open(&emu);
    address_chain(&mut c, 2);
    c.cmd(Command::read_chip(0x80, reg::EMU_POWER_MW));
    let Response::Register(p_reset) = c.responses(Duration::from_secs(2), 1)[0] else { panic!() };
    c.cmd(Command::write_all(reg::PLL0, 0x50c0_0230)); // 600 MHz
    c.cmd(Command::write_all(reg::TICKET_MASK, TicketMask::from_difficulty(1024.0).to_register()));
    c.cmd(Command::write_chip(0x80, 0x3c, 0x8000_8b00));
    c.cmd(Command::read_chip(0x80, 0x3c));
    c.cmd(Command::read_chip(0x80, reg::EMU_POWER_MW));
    c.cmd(Command::read_chip(0x00, reg::TICKET_MASK));
    let rs = c.responses(Duration::from_secs(2), 3);
    let vals: Vec<u32> = rs.iter().map(|r| if let Response::Register(r) = r { r.value } else { panic!() }).collect();
    assert_eq!(vals[0], 0x8000_8b00);
    assert!(vals[1] > p_reset.value, "power model rises with the clock: {} -> {}", p_reset.value, vals[1]);
    assert_eq!(vals[2], 0x0000_c0ff);
    let chips = emu.chips();
    assert!((chips[1].mhz - 600.0).abs() < 1e-9);
    assert_eq!(chips[1].ticket.difficulty(), 1024);
    // The model at 600 MHz and 1.15 V: about 18.5 W for a BM1370 (15.1 J/TH x 1.224 TH/s).
    assert!((chips[1].model_watts - f64::from(vals[1]) / 1000.0).abs() < 0.01);
    assert!(chips[1].model_watts > 15.0 && chips[1].model_watts < 25.0, "{}", chips[1].model_watts);
}

#[test]
fn baud_change_needs_both_ends_to_switch() {
    let emu = Emulator::spawn(config(ChipType::Bm1366, 1)).unwrap();
    let mut c = Client::open(&emu);
    c.cmd(Command::write_all(reg::UART_BAUD, 0x1130_0200)); // ~1 Mbaud
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(emu.baud(), 1_041_666);
    // Host still at 115 200: the chain cannot read it.
    assert!(enumerate_short(&mut c, 0).is_empty());
    c.port.set_baud_rate(1_000_000).unwrap();
    assert_eq!(enumerate(&mut c, 1).len(), 1);
}

fn verify_header_nonces(chip: ChipType, chips: usize, want: usize) -> (Vec<NonceResponse>, Emulator) {
    let emu = Emulator::spawn(config(chip, chips)).unwrap();
    let mut c = Client::open(&emu);
    address_chain(&mut c, chips);
    let mask = 0x1fff_e000;
    c.cmd(Command::write_all(reg::VERSION_ROLLING, VersionRolling::enabled(mask).unwrap().to_register()));
    let h = header();
    let job = HeaderJob::from_header(0x18, &h);
    c.send(job.encode().as_bytes());
    let ns = nonces(&c.responses(Duration::from_secs(20), want));
    assert!(ns.len() >= want, "{chip}: only {} nonces", ns.len());
    for n in &ns {
        assert_eq!(n.job_id(chip), 0x18, "{chip}");
        let version = n.version(chip, job.version, mask);
        let digest = hashrig_sha256d::sha256d_header(&job.header(version, n.nonce));
        assert!(zero_bits(&digest) >= u32::from(BITS), "{chip}: nonce {:#x} does not verify", n.nonce);
        // The small core is the low bits of the rolled version field.
        let field = n.version_bits.unwrap();
        assert_eq!(u32::from(n.sub_id(chip)), u32::from(field) % chip.small_cores_per_core());
    }
    (ns, emu)
}

#[test]
fn bm1366_bm1368_bm1370_hash_for_real_and_every_nonce_verifies() {
    for chip in [ChipType::Bm1366, ChipType::Bm1368, ChipType::Bm1370] {
        let (ns, _emu) = verify_header_nonces(chip, 1, 8);
        // Versions are rolled: more than one version field shows up.
        let versions: std::collections::BTreeSet<_> = ns.iter().map(|n| n.version_bits).collect();
        assert!(versions.len() > 1, "{chip}: {versions:?}");
    }
}

#[test]
fn chips_split_the_nonce_space_by_address() {
    let (ns, emu) = verify_header_nonces(ChipType::Bm1370, 4, 24);
    let addrs: Vec<u8> = emu.chips().iter().map(|s| s.address).collect();
    assert_eq!(addrs, vec![0, 64, 128, 192]);
    let owners: std::collections::BTreeSet<u8> = ns.iter().map(|n| n.chip_address_field() / 64).collect();
    assert!(owners.len() >= 3, "results from chips {owners:?}");
}

#[test]
fn bm1397_midstate_jobs_report_the_midstate_index() {
    let emu = Emulator::spawn(config(ChipType::Bm1397, 1)).unwrap();
    let mut c = Client::open(&emu);
    let h = header();
    let mask = 0x1fff_e000;
    let base = u32::from_le_bytes(h[..4].try_into().unwrap());
    let states: Vec<[u32; 8]> = (0..4)
        .map(|k| {
            let mut hk = h;
            hk[..4].copy_from_slice(&firmware_protocol::rolled_version(base, mask, k).to_le_bytes());
            hashrig_sha256d::Midstate::of(hk[..64].try_into().unwrap()).0
        })
        .collect();
    let tail: [u8; 4] = h[64..68].try_into().unwrap();
    let nbits = u32::from_le_bytes(h[72..76].try_into().unwrap());
    let ntime = u32::from_le_bytes(h[68..72].try_into().unwrap());
    let job = MidstateJob::new(0x24, nbits, ntime, tail, &states).unwrap();
    c.send(job.encode().as_bytes());
    let ns = nonces(&c.responses(Duration::from_secs(20), 12));
    assert!(ns.len() >= 12, "only {}", ns.len());
    let mut seen = std::collections::BTreeSet::new();
    for n in &ns {
        assert_eq!(n.job_id(ChipType::Bm1397), 0x24);
        assert_eq!(n.version_bits, None);
        seen.insert(n.sub_id(ChipType::Bm1397));
        let mut hv = h;
        hv[..4].copy_from_slice(&n.version(ChipType::Bm1397, base, mask).to_le_bytes());
        hv[76..].copy_from_slice(&n.nonce.to_le_bytes());
        assert!(zero_bits(&hashrig_sha256d::sha256d_header(&hv)) >= u32::from(BITS));
    }
    assert!(seen.len() > 1, "midstates used: {seen:?}");
}

#[test]
fn emulator_only_ticket_register_raises_the_bar() {
    let emu = Emulator::spawn(config(ChipType::Bm1370, 1)).unwrap();
    let mut c = Client::open(&emu);
    c.cmd(Command::write_all(reg::EMU_TICKET_ZERO_BITS, u32::from(BITS) + 3));
    c.cmd(Command::write_all(reg::VERSION_ROLLING, 0x9000_ffff));
    let job = HeaderJob::from_header(0x08, &header());
    c.send(job.encode().as_bytes());
    let ns = nonces(&c.responses(Duration::from_secs(20), 4));
    assert!(ns.len() >= 4);
    for n in ns {
        let d = hashrig_sha256d::sha256d_header(&job.header(n.version(ChipType::Bm1370, job.version, 0x1fff_e000), n.nonce));
        assert!(zero_bits(&d) >= u32::from(BITS) + 3);
    }
}

/// Run `f` once per generation (BM1397 with midstate jobs, BM1366, BM1368, BM1370), the four
/// side by side in threads named after the chip: a fault test mostly waits on its pty, so four
/// in parallel take about as long as one. Fails naming every generation that failed.
fn each_generation(f: impl Fn(ChipType) + Sync) {
    let f = &f;
    let failed: Vec<ChipType> = std::thread::scope(|s| {
        let runs: Vec<_> = ChipType::KNOWN
            .into_iter()
            .map(|chip| (chip, std::thread::Builder::new().name(chip.to_string()).spawn_scoped(s, move || f(chip)).unwrap()))
            .collect();
        runs.into_iter().filter_map(|(chip, run)| run.join().is_err().then_some(chip)).collect()
    });
    assert!(failed.is_empty(), "failed on {failed:?} (their panics are printed above)");
}

/// The pool's version mask in the job helpers.
const MASK: u32 = 0x1fff_e000;

/// A job sent to a chain of any generation, and the check of a nonce against it.
struct SentJob {
    chip: ChipType,
    header: [u8; 80],
    base: u32,
}

impl SentJob {
    /// BM136x: version rolling under [`MASK`] on, then a full-header job. BM1397: a midstate
    /// job of 4 versions rolled under [`MASK`] (as the driver builds them).
    fn send(c: &mut Client, id: u8, header: [u8; 80]) -> Self {
        let chip = c.decoder.chip();
        let base = u32::from_le_bytes(header[..4].try_into().unwrap());
        if chip.rolls_versions() {
            c.cmd(Command::write_all(reg::VERSION_ROLLING, VersionRolling::enabled(MASK).unwrap().to_register()));
            c.send(HeaderJob::from_header(id, &header).encode().as_bytes());
        } else {
            let states: Vec<[u32; 8]> = (0..4)
                .map(|k| {
                    let mut hk = header;
                    hk[..4].copy_from_slice(&firmware_protocol::rolled_version(base, MASK, k).to_le_bytes());
                    hashrig_sha256d::Midstate::of(hk[..64].try_into().unwrap()).0
                })
                .collect();
            let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
            let job = MidstateJob::new(id, word(72), word(68), header[64..68].try_into().unwrap(), &states).unwrap();
            c.send(job.encode().as_bytes());
        }
        Self { chip, header, base }
    }

    /// Does the nonce's hash (with the version it names) have the emulator-only ticket's bits?
    fn verifies(&self, n: &NonceResponse) -> bool {
        let mut h = self.header;
        h[..4].copy_from_slice(&n.version(self.chip, self.base, MASK).to_le_bytes());
        h[76..].copy_from_slice(&n.nonce.to_le_bytes());
        zero_bits(&hashrig_sha256d::sha256d_header(&h)) >= u32::from(BITS)
    }
}

#[test]
fn fault_dead_chip_is_missing_from_enumeration() {
    each_generation(|chip| {
        let mut cfg = config(chip, 4);
        cfg.faults.dead_chips = vec![2];
        let emu = Emulator::spawn(cfg).unwrap();
        let mut c = Client::open(&emu);
        assert_eq!(enumerate_short(&mut c, 3).len(), 3, "{chip}");
        address_chain(&mut c, 3);
        let addrs: Vec<u8> = emu.chips().iter().filter(|s| s.alive).map(|s| s.address).collect();
        assert_eq!(addrs, vec![0, 85, 170], "{chip}: the chip behind the dead one still takes an address");
        assert!(!emu.chips()[2].alive);
    });
}

#[test]
fn fault_crc_garbage_and_dropped_bytes_are_seen_by_the_host() {
    each_generation(|chip| {
        let mut cfg = config(chip, 16);
        cfg.faults = Faults { crc_error_rate: 0.3, garbage_rate: 0.3, drop_byte_rate: 0.2, ..Faults::default() };
        let emu = Emulator::spawn(cfg).unwrap();
        let mut c = Client::open(&emu);
        let mut good = 0;
        for _ in 0..4 {
            // Some answers are lost to the faults: wait a fixed short time, not for all 16
            // (16 answers are 144 bytes, 13 ms at 115 200 baud).
            c.cmd(Command::read_all(reg::CHIP_ID));
            good += c.responses(Duration::from_millis(500), 16).len();
        }
        let st = emu.stats();
        assert!(st.corrupted_crc > 0 && st.garbage_bytes > 0 && st.dropped_bytes > 0, "{chip}: {st:?}");
        let ds = c.decoder.stats();
        assert!(ds.bad_crc > 0, "{chip}: {ds:?}");
        assert!(ds.skipped_bytes > 0, "{chip}: {ds:?}");
        assert!(good < 64 && good > 10, "{chip}: good frames {good}");
    });
}

#[test]
fn fault_bad_cores_return_nonces_that_do_not_verify() {
    each_generation(|chip| {
        let mut cfg = config(chip, 1);
        cfg.faults.bad_core_chips = vec![0];
        let emu = Emulator::spawn(cfg).unwrap();
        let mut c = Client::open(&emu);
        let job = SentJob::send(&mut c, 0x08, header());
        let ns = nonces(&c.responses(Duration::from_secs(20), 16));
        let (mut ok, mut bad) = (0, 0);
        for n in &ns {
            assert_eq!(n.job_id(chip), 0x08, "{chip}");
            if job.verifies(n) {
                ok += 1;
                assert_eq!(n.core_id() % 2, 1, "{chip}: good nonces come from odd cores");
            } else {
                bad += 1;
                assert_eq!(n.core_id() % 2, 0, "{chip}: bad nonces come from even cores");
            }
        }
        assert!(ok > 0 && bad > 0, "{chip}: ok {ok} bad {bad}");
        assert!(emu.stats().wrong_nonces as usize >= bad, "{chip}");
    });
}

#[test]
fn fault_duplicate_nonces_arrive_twice() {
    each_generation(|chip| {
        let mut cfg = config(chip, 1);
        cfg.faults.duplicate_rate = 1.0;
        let emu = Emulator::spawn(cfg).unwrap();
        let mut c = Client::open(&emu);
        let job = SentJob::send(&mut c, 0x08, header());
        let ns = nonces(&c.responses(Duration::from_secs(20), 8));
        assert!(ns.len() >= 8, "{chip}: {} nonces", ns.len());
        for pair in ns.chunks(2).filter(|p| p.len() == 2) {
            assert_eq!(pair[0], pair[1], "{chip}");
            assert!(job.verifies(&pair[0]), "{chip}: a duplicate is still a good nonce");
        }
        assert!(emu.stats().duplicates >= 4, "{chip}: {:?}", emu.stats());
    });
}

#[test]
fn fault_late_nonces_for_the_old_job_come_after_the_new_job() {
    each_generation(|chip| {
        let mut cfg = config(chip, 1);
        cfg.faults.late_nonce_rate = 1.0;
        let emu = Emulator::spawn(cfg).unwrap();
        let mut c = Client::open(&emu);
        let old = SentJob::send(&mut c, 0x08, header());
        // Everything is held back: nothing arrives for the old job.
        assert!(nonces(&c.responses(Duration::from_millis(700), 1)).is_empty(), "{chip}");
        let mut h2 = header();
        h2[68] ^= 1;
        SentJob::send(&mut c, 0x10, h2);
        let ns = nonces(&c.responses(Duration::from_secs(5), 1));
        assert!(!ns.is_empty(), "{chip}: the held nonces come out after the new job");
        assert_eq!(ns[0].job_id(chip), 0x08, "{chip}: a late nonce names the old job");
        assert!(old.verifies(&ns[0]), "{chip}: and verifies against the old job");
        assert!(emu.stats().late_nonces > 0, "{chip}");
    });
}

#[test]
fn fault_chain_stops_answering() {
    each_generation(|chip| {
        let mut cfg = config(chip, 2);
        cfg.faults.stop_after_responses = Some(3);
        let emu = Emulator::spawn(cfg).unwrap();
        let mut c = Client::open(&emu);
        assert_eq!(enumerate(&mut c, 2).len(), 2, "{chip}");
        assert_eq!(enumerate_short(&mut c, 1).len(), 1, "{chip}: the third response is the last");
        assert!(enumerate_short(&mut c, 0).is_empty(), "{chip}");
        assert!(emu.is_silent(), "{chip}");
        // Resumed, it answers again and the stop-after fault does not silence it at once.
        emu.resume_answering();
        assert!(!emu.is_silent(), "{chip}");
        for _ in 0..2 {
            assert_eq!(enumerate(&mut c, 2).len(), 2, "{chip}");
        }
        assert!(!emu.is_silent(), "{chip}");
        // stop_answering() does the same on demand.
        emu.stop_answering();
        assert!(enumerate_short(&mut c, 0).is_empty(), "{chip}");
        emu.resume_answering();
        assert_eq!(enumerate(&mut c, 2).len(), 2, "{chip}");
    });
}

#[test]
fn invalid_configs_are_refused_with_a_reason() {
    assert!(Emulator::spawn(EmulatorConfig::new(ChipType::Bm1370, 0)).is_err());
    assert!(Emulator::spawn(EmulatorConfig::new(ChipType::Bm1370, 257)).is_err());
    assert!(Emulator::spawn(EmulatorConfig::new(ChipType::Unknown(0x1362), 1)).is_err());
    let mut c = EmulatorConfig::new(ChipType::Bm1370, 2);
    c.faults.dead_chips = vec![5];
    let e = Emulator::spawn(c).unwrap_err();
    assert!(e.to_string().contains("chip index 5"), "{e}");
}

#[test]
fn symlink_points_at_the_pty_and_goes_away_on_drop() {
    let dir = std::env::temp_dir().join(format!("bm13xx-emu-test-{}", std::process::id()));
    let mut c = config(ChipType::Bm1370, 1);
    c.link = Some(dir.clone());
    let emu = Emulator::spawn(c).unwrap();
    assert_eq!(std::fs::read_link(&dir).unwrap(), emu.path());
    drop(emu);
    assert!(std::fs::symlink_metadata(&dir).is_err());
}

#[test]
fn with_the_real_ticket_rule_a_chip_returns_block_100000s_nonce() {
    // No emulator-only setting: the ticket mask (difficulty 256 = 40 zero bits) decides. The job
    // starts its sweep near the block's nonce so the chain reaches it in a fraction of a second;
    // the block's hash has 46 leading zero bits, and nothing else in 2^22 nonces has 40.
    let h = header();
    let block_nonce = u32::from_le_bytes(h[76..80].try_into().unwrap());
    let mut cfg = EmulatorConfig::new(ChipType::Bm1368, 4);
    cfg.hash_budget_per_job = Some(1 << 22);
    let emu = Emulator::spawn(cfg).unwrap();
    let mut c = Client::open(&emu);
    let addrs = address_chain(&mut c, 4);
    c.cmd(Command::write_all(reg::TICKET_MASK, TicketMask::from_difficulty(256.0).to_register()));
    let mut job = HeaderJob::from_header(0x30, &h);
    job.starting_nonce = block_nonce & !0xf_ffff;
    c.send(job.encode().as_bytes());
    let ns = nonces(&c.responses(Duration::from_secs(10), 1));
    assert_eq!(ns.len(), 1, "{ns:?}");
    assert_eq!(ns[0].nonce, block_nonce);
    assert_eq!(ns[0].job_id(ChipType::Bm1368), 0x30);
    assert_eq!(ns[0].version(ChipType::Bm1368, job.version, 0), 1, "no rolling without 0xA4");
    // The chip that owns the nonce's address field sent it.
    let owner = addrs.iter().rev().find(|a| **a <= ns[0].chip_address_field()).unwrap();
    assert_eq!(*owner, ns[0].chip_address_field() / 64 * 64);
    // And no more arrive within the budget.
    assert!(nonces(&c.responses(Duration::from_millis(500), 1)).is_empty());
}
