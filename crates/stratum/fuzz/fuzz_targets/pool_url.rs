//! Fuzz `PoolUrl::from_str`: no panic; a URL that parses has a host and a port from 1 to 65535,
//! and its `Display` form parses back to the same value.
#![no_main]

use std::str::FromStr;

use hashrig_stratum::PoolUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match PoolUrl::from_str(text) {
        Ok(url) => {
            assert!(!url.host.is_empty() && url.port != 0, "{url:?} from {text:?}");
            let shown = url.to_string();
            let again = PoolUrl::from_str(&shown).unwrap_or_else(|e| panic!("{text:?} -> {shown:?} does not parse again: {e}"));
            assert_eq!(again, url, "{text:?} -> {shown:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
