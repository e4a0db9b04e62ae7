//! Fuzz the streaming decoder: arbitrary bytes, any direction / generation / response rule /
//! chunking. The checks live in `firmware_protocol::selfcheck::check_decoder` (also run by the
//! long property test), so a crash here is a broken invariant or a panic on input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    firmware_protocol::selfcheck::check_decoder(data);
});
