//! Inputs found by the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`), kept as plain
//! tests that run in every `cargo test`. A new finding may land `#[ignore]`d before its fix;
//! the ignore goes with the fix (none is ignored now).

use hashrig_stratum::HexU32;
use hashrig_stratum::wire::{self, ProtocolError};

/// fuzz target `wire`, crash-32d3b5ba8b3851713c91cae91661708d4dcb5a90: the 8 bytes `+0200004`.
/// `HexU32` is "exactly 8 big-endian hex characters", but `u32::from_str_radix` takes a leading
/// `+`, so `+0200004` reads as 0x00200004 (and prints back as `00200004`).
#[test]
fn hex_u32_refuses_a_plus_sign() {
    assert!(HexU32::try_from("+0200004").is_err(), "{:?}", HexU32::try_from("+0200004"));
    // The same text as a notify's version is not hex: the line is refused, not made a job.
    let line = r#"{"id":null,"method":"mining.notify","params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01","02",[],"+0200004","1c2ac4af","504e86b9",false]}"#;
    assert!(
        matches!(wire::parse_line(line), Err(ProtocolError::BadHex { field: "version", .. })),
        "{:?}",
        wire::parse_line(line)
    );
    let mask = r#"{"id":null,"method":"mining.set_version_mask","params":["+fffe000"]}"#;
    assert!(wire::parse_line(mask).is_err(), "{:?}", wire::parse_line(mask));
}
