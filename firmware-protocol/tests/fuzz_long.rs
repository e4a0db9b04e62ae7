//! The fuzz target's checks (`selfcheck::check_decoder`) under proptest, so they run in every
//! `cargo test` without nightly. The default is a quick 500 cases; the long run documented in
//! the README sets `FUZZ_CASES` (e.g. `FUZZ_CASES=1000000 cargo test --release -p
//! firmware-protocol --test fuzz_long`).

use firmware_protocol::selfcheck::check_decoder;
use firmware_protocol::{ChipType, Command, HeaderJob, NonceResponse, Response};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

/// Byte soup biased towards the protocol: preambles, valid frames, and corrupted copies.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        Just(vec![0x55, 0xaa]),
        Just(vec![0xaa, 0x55]),
        (any::<u8>(), any::<u32>()).prop_map(|(r, v)| Command::write_all(r, v).encode().as_bytes().to_vec()),
        any::<u8>().prop_map(|a| Command::SetAddress(a).encode().as_bytes().to_vec()),
        (any::<u8>(), any::<[u8; 80]>()).prop_map(|(id, h)| HeaderJob::from_header(id, &h).encode().as_bytes().to_vec()),
        (any::<u32>(), any::<u8>(), any::<Option<u16>>()).prop_map(|(n, b, v)| {
            Response::Nonce(NonceResponse { nonce: n, byte6: 0, id_byte: b, version_bits: v }).encode().as_bytes().to_vec()
        }),
        Just(Response::Register(firmware_protocol::RegisterResponse {
            value: ChipType::Bm1370.chip_id_register(0),
            chip_address: 0,
            register: 0,
            extra: Some([0, 0]),
        })
        .encode()
        .as_bytes()
        .to_vec()),
    ];
    (any::<[u8; 2]>(), prop::collection::vec((piece, any::<u16>()), 0..24)).prop_map(|(cfg, pieces)| {
        let mut out = cfg.to_vec();
        for (mut p, flip) in pieces {
            // Corrupt some pieces: one byte flipped.
            if flip % 7 == 0 && !p.is_empty() {
                let at = usize::from(flip >> 3) % p.len();
                p[at] ^= 1 + (flip as u8 & 0x7f);
            }
            out.extend(p);
        }
        out
    })
}

#[test]
fn decoder_invariants_hold_on_random_protocol_soup() {
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let frames = std::cell::Cell::new(0usize);
    runner
        .run(&input(), |data| {
            frames.set(frames.get() + check_decoder(&data));
            Ok(())
        })
        .unwrap();
    assert!(frames.get() > 0, "the soup produced no frames: the generator is broken");
}
