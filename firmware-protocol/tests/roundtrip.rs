//! Property tests: every frame we can encode decodes to itself, and the streaming decoder
//! survives anything (garbage, splits, corrupted bytes) without panicking or losing frames.

use firmware_protocol::{
    ChipType, Command, Decoder, Destination, Direction, Event, Frame, HeaderJob, Job, JobKind, MidstateJob, NonceResponse,
    RegisterResponse, Response, ResponseForm, ResponseLength, TicketMask, Pll,
};
use proptest::prelude::*;

fn command() -> impl Strategy<Value = Command> {
    let dest = prop_oneof![Just(Destination::All), any::<u8>().prop_map(Destination::Chip)];
    prop_oneof![
        any::<u8>().prop_map(Command::SetAddress),
        Just(Command::ChainInactive),
        (dest.clone(), any::<u8>()).prop_map(|(dest, register)| Command::ReadRegister { dest, register }),
        (dest, any::<u8>(), any::<u32>()).prop_map(|(dest, register, value)| Command::WriteRegister { dest, register, value }),
    ]
}

fn header_job() -> impl Strategy<Value = HeaderJob> {
    (any::<u8>(), any::<[u8; 80]>(), prop_oneof![Just(0x56u8), Just(0x36u8), any::<u8>()], any::<u8>()).prop_map(
        |(id, header, length_byte, nm)| {
            let mut j = HeaderJob::from_header(id, &header);
            j.length_byte = length_byte;
            j.num_midstates = nm;
            j
        },
    )
}

fn midstate_job() -> impl Strategy<Value = MidstateJob> {
    (any::<u8>(), any::<u32>(), any::<u32>(), any::<[u8; 4]>(), prop::collection::vec(any::<[u32; 8]>(), 1..=4), 0u8..=4)
        .prop_map(|(id, nbits, ntime, tail, states, extra)| {
            let mut j = MidstateJob::new(id, nbits, ntime, tail, &states).unwrap();
            // ESP-Miner style: more slots than midstates.
            j.slots = (j.slots + extra).min(4);
            j
        })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u32>(), any::<u8>(), any::<u8>(), any::<Option<[u8; 2]>>())
            .prop_map(|(value, chip_address, register, extra)| Response::Register(RegisterResponse { value, chip_address, register, extra })),
        (any::<u32>(), any::<u8>(), any::<u8>(), any::<Option<u16>>())
            .prop_map(|(nonce, byte6, id_byte, version_bits)| Response::Nonce(NonceResponse { nonce, byte6, id_byte, version_bits })),
    ]
}

fn drain(d: &mut Decoder, out: &mut Vec<Event>) {
    while let Some(e) = d.next_event() {
        out.push(e);
    }
}

proptest! {
    #[test]
    fn commands_round_trip(c in command()) {
        let f = c.encode();
        prop_assert_eq!(Command::parse(f.as_bytes()).unwrap(), c);
    }

    #[test]
    fn header_jobs_round_trip(j in header_job()) {
        let f = j.encode();
        prop_assert_eq!(f.as_bytes().len(), 88);
        prop_assert_eq!(Job::parse(ChipType::Bm1368, f.as_bytes()).unwrap(), Job::Header(j));
    }

    #[test]
    fn midstate_jobs_round_trip(j in midstate_job()) {
        let f = j.encode();
        prop_assert_eq!(Job::parse_kind(JobKind::Midstate, f.as_bytes()).unwrap(), Job::Midstate(j));
    }

    #[test]
    fn responses_round_trip(r in response()) {
        let f = r.encode();
        prop_assert_eq!(Response::parse(f.as_bytes()).unwrap(), r);
    }

    #[test]
    fn any_single_bit_flip_in_a_command_is_caught(c in command(), bit in 0usize..88) {
        let mut bytes = c.encode().as_bytes().to_vec();
        let bit = bit % ((bytes.len() - 2) * 8) + 16;
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Command::parse(&bytes).map(|p| p != c).unwrap_or(true));
    }

    #[test]
    fn ticket_mask_register_round_trips(bits in 0u8..=32) {
        let t = TicketMask::new(bits).unwrap();
        prop_assert_eq!(TicketMask::from_register(t.to_register()).unwrap(), t);
        prop_assert_eq!(TicketMask::from_difficulty(t.difficulty() as f64), t);
    }

    #[test]
    fn pll_register_round_trips(fb in 1u16..=255, rd in 1u8..=63, p1 in 1u8..=7, p2 in 1u8..=7) {
        let p = Pll::new(fb, rd, p1, p2).unwrap();
        for chip in ChipType::KNOWN {
            prop_assert_eq!(Pll::from_register(chip, p.to_register(chip)).unwrap(), p);
        }
    }

    #[test]
    fn decoder_never_panics_and_accounts_for_every_byte(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..40,
        dir in prop_oneof![Just(Direction::HostToChip), Just(Direction::ChipToHost)],
        chip in prop_oneof![Just(ChipType::Bm1397), Just(ChipType::Bm1370), Just(ChipType::Unknown(0x1362))],
    ) {
        let mut d = Decoder::new(dir, chip);
        let mut events = Vec::new();
        for c in bytes.chunks(chunk) {
            d.push(c);
            drain(&mut d, &mut events);
        }
        d.finish();
        drain(&mut d, &mut events);
        prop_assert_eq!(d.buffered(), 0);
        // Every byte is in a frame, a skipped run, or the first byte of a rejected candidate.
        let mut covered = 0u64;
        for e in &events {
            covered += match e {
                Event::Frame { raw, .. } => raw.as_bytes().len() as u64,
                Event::Skipped { len, .. } => *len,
                Event::BadCrc { .. } | Event::Malformed { .. } => 1,
            };
        }
        prop_assert_eq!(covered, bytes.len() as u64);
    }

    #[test]
    fn decoder_recovers_every_frame_between_garbage(
        frames in prop::collection::vec(response(), 1..20),
        junk in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 20),
        chunk in 1usize..30,
    ) {
        // Garbage never contains the preamble's first byte, so it cannot fake a frame start.
        let mut stream = Vec::new();
        let frames: Vec<Response> = frames.into_iter().map(|f| f.with_form(ResponseForm::Long)).collect();
        for (f, j) in frames.iter().zip(&junk) {
            stream.extend(j.iter().map(|b| if *b == 0xaa { 0x00 } else { *b }));
            stream.extend_from_slice(f.encode().as_bytes());
        }
        let mut d = Decoder::new(Direction::ChipToHost, ChipType::Bm1370)
            .with_response_length(ResponseLength::Fixed(ResponseForm::Long));
        let mut got = Vec::new();
        for c in stream.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
        }
        let want: Vec<Frame> = frames.into_iter().map(Frame::Response).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_corrupted_frame_is_flagged_and_the_next_one_still_decodes(
        a in command(), b in command(), at in 2usize..7, flip in 1u8..=255,
    ) {
        let mut bytes = a.encode().as_bytes().to_vec();
        bytes[at] ^= flip;
        // A 5-bit CRC cannot catch every multi-bit error: a corrupted frame may be another
        // valid command. Either way nothing is lost and the next frame decodes.
        let corrupted = Command::parse(&bytes).ok();
        bytes.extend_from_slice(b.encode().as_bytes());
        let mut d = Decoder::new(Direction::HostToChip, ChipType::Bm1366);
        d.push(&bytes);
        d.finish();
        let mut frames = Vec::new();
        while let Some(f) = d.next_frame() {
            frames.push(f);
        }
        match corrupted {
            Some(c) => prop_assert_eq!(frames, vec![Frame::Command(c), Frame::Command(b)]),
            None => {
                prop_assert_eq!(frames, vec![Frame::Command(b)]);
                let s = d.stats();
                prop_assert!(s.bad_crc + s.malformed > 0 || s.skipped_bytes > 0);
            }
        }
    }
}
