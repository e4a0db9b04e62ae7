//! Fuzz the API allow-list parser, `Access::parse` (cgminer's `--api-allow`: comma-separated
//! `[R:|W:]CIDR`), and `Cidr::from_str` on each entry.
//!
//! Invariants beyond "no panic": a CIDR that parses prints (`addr/prefix`) and parses back to
//! the same value and contains its own address (an IPv4-mapped IPv6 address with a prefix
//! under 96 excepted: see below); an empty list (only commas and spaces) allows no remote peer;
//! a parsed list never gives a peer write access without a `W:` entry, and loopback can always
//! read.
#![no_main]

use std::net::IpAddr;

use hashrig_monitor::{Access, Cidr, Level};
use libfuzzer_sys::fuzz_target;

const PEERS: [&str; 6] = ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.77", "::ffff:10.1.2.3", "2001:db8::1"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for entry in text.split(',') {
        let entry = entry.trim();
        let cidr = entry.split_once(':').filter(|(g, _)| g.eq_ignore_ascii_case("w") || g.eq_ignore_ascii_case("r")).map_or(entry, |(_, c)| c);
        if let Ok(c) = cidr.parse::<Cidr>() {
            let shown = c.to_string();
            assert_eq!(shown.parse::<Cidr>().ok(), Some(c), "{cidr:?} -> {shown:?}");
            let (addr, _) = shown.split_once('/').expect("addr/prefix");
            let addr: IpAddr = addr.parse().unwrap();
            // An IPv4-mapped address left in IPv6 form (prefix under 96: the range reaches past
            // the mapped space) matches no mapped peer: peers are matched as IPv4. Known limit.
            let mapped_v6 = matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
            assert!(mapped_v6 || c.contains(addr), "{shown} does not contain its address");
        }
    }
    match Access::parse(text) {
        Ok(a) => {
            let entries = text.split(',').map(str::trim).filter(|e| !e.is_empty()).count();
            assert_eq!(a.allows_remote(), entries > 0, "{text:?}");
            let has_w = text.split(',').any(|e| e.trim().get(..2).is_some_and(|g| g.eq_ignore_ascii_case("w:")));
            for p in PEERS {
                let ip: IpAddr = p.parse().unwrap();
                let level = a.level(ip);
                if !has_w {
                    assert!(level < Level::Write, "{p} gets write access from {text:?}");
                }
                if ip.is_loopback() {
                    assert!(level >= Level::Read, "loopback {p} cannot read with {text:?}");
                }
            }
        }
        Err(e) => assert!(e.to_string().contains("bad address range"), "{e}"),
    }
});
