//! Every captured or derived frame in the reference notes, decoded and re-encoded byte-exact.
//! Data: tests/data/{host_commands,responses,jobs}.txt (each line names its source).

use firmware_protocol::{
    ChipType, Command, Decoder, Destination, Direction, Event, Frame, HeaderJob, Job, JobKind, Response,
    ResponseForm, ResponseLength, RegisterMeaning, parse_hex,
};

struct Entry {
    id: String,
    kind: Option<String>,
    bytes: Vec<u8>,
}

fn load(name: &str, with_kind: bool) -> Vec<Entry> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("golden data file");
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(if with_kind { 3 } else { 2 }, char::is_whitespace);
        let id = parts.next().unwrap().to_string();
        let kind = with_kind.then(|| parts.next().unwrap().to_string());
        let bytes = parse_hex(parts.next().unwrap()).unwrap_or_else(|e| panic!("{id}: {e}"));
        out.push(Entry { id, kind, bytes });
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    parse_hex(s).unwrap()
}

#[test]
fn every_host_command_in_the_notes_round_trips_byte_exact() {
    let entries = load("host_commands.txt", false);
    assert_eq!(entries.len(), 19 + 30, "all of H1-H19 and S1-S30");
    for e in &entries {
        let cmd = Command::parse(&e.bytes).unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert_eq!(cmd.encode().as_bytes(), &e.bytes[..], "{} re-encodes", e.id);
    }
}

#[test]
fn host_commands_decode_to_what_the_notes_say() {
    let entries = load("host_commands.txt", false);
    let get = |id: &str| Command::parse(&entries.iter().find(|e| e.id == id).unwrap().bytes).unwrap();
    assert_eq!(get("H1"), Command::read_all(0x00));
    assert_eq!(get("H2"), Command::ChainInactive);
    assert_eq!(get("H3"), Command::SetAddress(0x00));
    assert_eq!(get("H4"), Command::SetAddress(0x04));
    assert_eq!(get("H5"), Command::SetAddress(0x08));
    assert_eq!(get("H6"), Command::write_all(0xa4, 0x9000_ffff));
    assert_eq!(get("H7"), Command::write_all(0x14, 0x0000_00ff));
    assert_eq!(get("H8"), Command::write_all(0x28, 0x1130_0200));
    assert_eq!(get("H9"), Command::write_all(0x10, 0x0000_1eb5));
    assert_eq!(get("H14"), Command::WriteRegister { dest: Destination::Chip(0), register: 0x2c, value: 0x007c_0003 });
    assert_eq!(get("H17"), Command::read_chip(0x40, 0x1c));
    assert_eq!(get("H18"), Command::write_chip(0x40, 0x18, 0x0000_7a31));
    // Register meanings the notes give.
    let meaning = |id: &str, chip| match get(id) {
        Command::WriteRegister { register, value, .. } => RegisterMeaning::of(chip, register, value),
        other => panic!("{id} is {other:?}"),
    };
    assert!(matches!(meaning("H7", ChipType::Bm1370), RegisterMeaning::TicketMask { difficulty: 256, .. }));
    assert_eq!(meaning("H8", ChipType::Bm1370), RegisterMeaning::Baud(1_041_666));
    assert_eq!(meaning("S6", ChipType::Bm1397), RegisterMeaning::Baud(115_740));
    assert_eq!(meaning("S9", ChipType::Bm1397), RegisterMeaning::Baud(3_125_000));
    assert_eq!(meaning("H6", ChipType::Bm1366), RegisterMeaning::VersionRolling { enabled: true, mask: 0x1fff_e000 });
    for (id, chip, mhz) in [
        ("S8", ChipType::Bm1397, 425.0),
        ("S16", ChipType::Bm1366, 485.0),
        ("S19", ChipType::Bm1368, 490.0),
        ("S28", ChipType::Bm1370, 525.0),
        ("S29", ChipType::Bm1370, 600.0),
    ] {
        match meaning(id, chip) {
            RegisterMeaning::Pll { mhz: got, .. } => assert!((got - mhz).abs() < 1e-9, "{id}: {got}"),
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn every_response_in_the_notes_round_trips_byte_exact() {
    let entries = load("responses.txt", false);
    assert_eq!(entries.len(), 6);
    for e in &entries {
        let r = Response::parse(&e.bytes).unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert_eq!(r.encode().as_bytes(), &e.bytes[..], "{} re-encodes", e.id);
    }
}

#[test]
fn chip_id_responses_name_their_generation() {
    let entries = load("responses.txt", false);
    for (id, chip, len) in [("R1", ChipType::Bm1397, 9), ("R2", ChipType::Bm1366, 11), ("R3", ChipType::Bm1370, 11), ("R4", ChipType::Bm1370, 9)] {
        let e = entries.iter().find(|e| e.id == id).unwrap();
        assert_eq!(e.bytes.len(), len);
        match Response::parse(&e.bytes).unwrap() {
            Response::Register(r) => {
                assert_eq!(r.register, 0x00, "{id}");
                assert_eq!(r.chip_address, 0x00, "{id}");
                assert_eq!(ChipType::from_id((r.value >> 16) as u16), chip, "{id}");
                assert_eq!(r.value, chip.chip_id_register(0), "{id}");
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[test]
fn bm1370_nonce_capture_decodes_like_esp_miner_logged_it() {
    // ESP-Miner log for this frame: "Job ID: 68, Core: 38/2, Ver: 00B44000" and
    // "ver: 20B44000 Nonce 7552034C" (MJ test_data.rs).
    let r = Response::parse(&hex("AA 55 4C 03 52 75 0C D2 05 A2 9C")).unwrap();
    let Response::Nonce(n) = r else { panic!("not a nonce: {r:?}") };
    let chip = ChipType::Bm1370;
    assert_eq!(n.nonce, 0x7552_034c);
    assert_eq!(n.job_id(chip), 0x68);
    assert_eq!(n.core_id(), 38);
    assert_eq!(n.sub_id(chip), 2);
    assert_eq!(n.version_bits, Some(0x05a2));
    assert_eq!(n.version(chip, 0x2000_0000, 0x1fff_e000), 0x20b4_4000);
    assert_eq!(n.byte6, 0x0c);
}

#[test]
fn bm1397_nonce_response_fields() {
    // GP response.rs: reads the nonce bytes big-endian as 0x97C328B6; we keep the header value.
    let r = Response::parse(&hex("AA 55 97 C3 28 B6 01 63 9C")).unwrap();
    let Response::Nonce(n) = r else { panic!("not a nonce: {r:?}") };
    assert_eq!(n.nonce_h(), 0x97c3_28b6);
    assert_eq!(n.nonce, 0xb628_c397);
    assert_eq!(n.job_id(ChipType::Bm1397), 0x60);
    assert_eq!(n.sub_id(ChipType::Bm1397), 3);
    assert_eq!(n.version_bits, None);
}

#[test]
fn captured_bm1370_job_and_nonce_make_a_header_that_meets_the_share() {
    // The Bitaxe Gamma round trip (MJ test_data.rs): job 0x68 + nonce frame -> accepted share
    // of difficulty 29588 at pool difficulty 8192.
    let job = Job::parse(ChipType::Bm1370, &load("jobs.txt", true).into_iter().find(|e| e.id == "H21").unwrap().bytes).unwrap();
    let Job::Header(job) = job else { panic!("not a header job") };
    assert_eq!(job.job_id, 0x68);
    assert_eq!(job.nbits, 0x1702_3a04);
    assert_eq!(job.ntime, 0x6854_68d7);
    assert_eq!(job.version, 0x2000_0000);
    let Response::Nonce(n) = Response::parse(&hex("AA 55 4C 03 52 75 0C D2 05 A2 9C")).unwrap() else { panic!() };
    let header = job.header(n.version(ChipType::Bm1370, job.version, 0x1fff_e000), n.nonce);
    let digest = hashrig_sha256d::sha256d_header(&header);
    // Difficulty 29588 > 2^14: the hash, read as a little-endian number, has >= 32 + 14 leading zero bits.
    let zeros = hashrig_sha256d::leading_zero_bits(&digest);
    assert!(zeros >= 46, "only {zeros} zero bits");
    // The same with sha2 directly.
    use sha2::Digest;
    let d2: [u8; 32] = sha2::Sha256::digest(sha2::Sha256::digest(header)).into();
    assert_eq!(d2, digest);
}

#[test]
fn every_job_in_the_notes_round_trips_byte_exact() {
    let entries = load("jobs.txt", true);
    assert_eq!(entries.len(), 6);
    for e in &entries {
        let kind = match e.kind.as_deref() {
            Some("midstate") => JobKind::Midstate,
            Some("header") => JobKind::Header,
            other => panic!("{}: kind {other:?}", e.id),
        };
        let job = Job::parse_kind(kind, &e.bytes).unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert_eq!(job.encode().as_bytes(), &e.bytes[..], "{} re-encodes", e.id);
    }
}

#[test]
fn esp_miner_bm1397_job_carries_the_midstate_of_its_header() {
    let e = load("jobs.txt", true).into_iter().find(|e| e.id == "H20").unwrap();
    let Job::Midstate(job) = Job::parse(ChipType::Bm1397, &e.bytes).unwrap() else { panic!() };
    assert_eq!(job.job_id, 0x04);
    assert_eq!(job.num_midstates, 4);
    assert_eq!(job.slots, 4);
    assert_eq!(job.nbits, 0x1705_dd01);
    assert_eq!(job.ntime, 0x6465_8bd8);
    assert_eq!(job.merkle_tail, [0xc6, 0x04, 0xa8, 0x46]);
    // State words from the notes (3.1, recomputed there).
    let words = [0x52eadf91, 0x68739f8a, 0x5d490d3d, 0x1574ddd6, 0xcb21cae1, 0xe3591741, 0x5f7d5de0, 0x4d3185f2];
    let first: Vec<[u32; 8]> = job.active_states().take(1).collect();
    assert_eq!(first[0], words);
    // And recomputed here from the verifier's header (version 0x20000004, prev hash word-swapped,
    // merkle root cd1be821...c604a846).
    let mut prev = hex("bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000");
    for w in prev.chunks_mut(4) {
        w.reverse();
    }
    let merkle = hex("cd1be82132ef0d12053dcece1fa0247fcfdb61d4dbd3eb32ea9ef9b4c604a846");
    let mut first64 = [0u8; 64];
    first64[..4].copy_from_slice(&0x2000_0004u32.to_le_bytes());
    first64[4..36].copy_from_slice(&prev);
    first64[36..64].copy_from_slice(&merkle[..28]);
    assert_eq!(hashrig_sha256d::Midstate::of(&first64).0, words);
    assert_eq!(&merkle[28..], &job.merkle_tail);
}

#[test]
fn gp_midstate_job_fields() {
    let e = load("jobs.txt", true).into_iter().find(|e| e.id == "H23a").unwrap();
    let Job::Midstate(job) = Job::parse(ChipType::Bm1397, &e.bytes).unwrap() else { panic!() };
    assert_eq!((job.job_id, job.num_midstates, job.slots), (0, 1, 1));
    assert_eq!(job.nbits, 0x1707_9e15);
    assert_eq!(job.ntime, 0x638e_3275);
    assert_eq!(job.merkle_tail, 0x706a_b3a2u32.to_le_bytes());
}

#[test]
fn header_job_from_its_header_re_encodes_the_capture() {
    for id in ["H21", "H22"] {
        let e = load("jobs.txt", true).into_iter().find(|e| e.id == id).unwrap();
        let Job::Header(job) = Job::parse(ChipType::Bm1370, &e.bytes).unwrap() else { panic!() };
        let rebuilt = HeaderJob::from_header(job.job_id, &job.header(job.version, 0));
        assert_eq!(rebuilt.encode().as_bytes(), &e.bytes[..], "{id}");
    }
}

#[test]
fn factory_length_byte_is_accepted_and_kept() {
    let e = load("jobs.txt", true).into_iter().find(|e| e.id == "H24").unwrap();
    let Job::Header(job) = Job::parse(ChipType::Bm1370, &e.bytes).unwrap() else { panic!() };
    assert_eq!(job.length_byte, 0x36);
    assert_eq!(job.job_id, 0xa8);
    assert_eq!(job.nbits, 0x1704_2450);
}

#[test]
fn decoder_finds_every_golden_frame_in_one_noisy_stream() {
    // All host frames of one generation family, with garbage between them, fed in odd chunks.
    let cmds = load("host_commands.txt", false);
    let jobs: Vec<_> = load("jobs.txt", true).into_iter().filter(|e| e.kind.as_deref() == Some("header")).collect();
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (i, e) in cmds.iter().chain(jobs.iter()).enumerate() {
        stream.extend_from_slice(&[0x00, 0x55, 0x13, 0xff][..i % 5 % 4]);
        expected.push(e.bytes.clone());
        stream.extend_from_slice(&e.bytes);
    }
    for chunk in [1usize, 3, 7, 64, 1000] {
        let mut d = Decoder::new(Direction::HostToChip, ChipType::Bm1370);
        let mut got = Vec::new();
        for c in stream.chunks(chunk) {
            d.push(c);
            while let Some(ev) = d.next_event() {
                if let Event::Frame { raw, .. } = ev {
                    got.push(raw.as_bytes().to_vec());
                }
            }
        }
        d.finish();
        while let Some(ev) = d.next_event() {
            if let Event::Frame { raw, .. } = ev {
                got.push(raw.as_bytes().to_vec());
            }
        }
        assert_eq!(got, expected, "chunk {chunk}");
        assert_eq!(d.stats().bad_crc, 0);
        assert!(d.stats().skipped_bytes > 0);
    }
}

#[test]
fn decoder_reads_both_response_forms_in_auto_mode() {
    let entries = load("responses.txt", false);
    let mut stream = Vec::new();
    for e in &entries {
        stream.extend_from_slice(&e.bytes);
    }
    let mut d = Decoder::new(Direction::ChipToHost, ChipType::Bm1370).with_response_length(ResponseLength::Auto);
    d.push(&stream);
    d.finish();
    let mut n = 0;
    while let Some(f) = d.next_frame() {
        let Frame::Response(r) = f else { panic!() };
        assert_eq!(r.encode().as_bytes(), &entries[n].bytes[..]);
        n += 1;
    }
    assert_eq!(n, entries.len());
    assert_eq!(d.stats().skipped_bytes, 0);
}

#[test]
fn the_split_frame_from_the_serial_rx_invalid_report_waits_instead_of_failing() {
    // ESP-Miner #268 (notes 9): a read holding the tail of one frame and the start of the next.
    let mut d = Decoder::new(Direction::ChipToHost, ChipType::Bm1366)
        .with_response_length(ResponseLength::Fixed(ResponseForm::Long));
    d.push(&hex("53 04 5E 1B 2E 8F AA 55 6C 00 75"));
    assert_eq!(d.next_event(), Some(Event::Skipped { offset: 0, len: 6 }));
    assert_eq!(d.next_event(), None, "a partial frame waits");
    assert_eq!(d.buffered(), 5);
    // The rest arrives: a whole valid frame forms at offset 6 once its bytes are there.
    let mut full = hex("AA 55 6C 00 75 00 00 00 00 00 00");
    let r = Response::Nonce(firmware_protocol::NonceResponse { nonce: 0x0075_006c, byte6: 0, id_byte: 0, version_bits: Some(0) });
    let good = r.encode();
    full.copy_from_slice(good.as_bytes());
    let mut d = Decoder::new(Direction::ChipToHost, ChipType::Bm1366)
        .with_response_length(ResponseLength::Fixed(ResponseForm::Long));
    d.push(&hex("53 04 5E 1B 2E 8F"));
    d.push(&full[..5]);
    assert_eq!(d.next_event(), Some(Event::Skipped { offset: 0, len: 6 }));
    assert_eq!(d.next_event(), None);
    d.push(&full[5..]);
    match d.next_event() {
        Some(Event::Frame { offset: 6, frame: Frame::Response(got), .. }) => assert_eq!(got, r),
        other => panic!("{other:?}"),
    }
}
