//! Who may talk to the API: address ranges (CIDR), each granting read or read+write access,
//! in cgminer's `--api-allow` syntax (`W:10.0.0.0/8,192.168.1.5,R:0/0`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Error;

/// An address range, e.g. `192.168.1.0/24`, `::1/128`, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, Error> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::BadCidr { input: format!("{addr}/{prefix}"), reason: "prefix too long" });
        }
        Ok(Cidr::mapped_as_ipv4(addr, prefix))
    }

    /// An IPv4-mapped IPv6 range (`::ffff:a.b.c.d` with a prefix of 96 or more) is kept as the
    /// IPv4 range it names: [`Cidr::contains`] matches mapped peers as IPv4, so in its IPv6
    /// form such a range would match no peer at all.
    fn mapped_as_ipv4(addr: IpAddr, prefix: u8) -> Self {
        match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr { addr: IpAddr::V4(v4), prefix: prefix - 96 },
                None => Cidr { addr, prefix },
            },
            _ => Cidr { addr, prefix },
        }
    }

    /// Does the range hold `ip`? IPv4-mapped IPv6 addresses match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadCidr { input: s.to_string(), reason };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        // cgminer accepts `0/0` for "everyone".
        let addr: IpAddr = if addr == "0" {
            IpAddr::from([0, 0, 0, 0])
        } else {
            addr.parse().map_err(|_| bad("not an IP address"))?
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad("prefix is not a number"))?,
            None => max,
        };
        if prefix > max {
            return Err(bad("prefix too long"));
        }
        Ok(Cidr::mapped_as_ipv4(addr, prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The API's access list. Loopback addresses may always read; everything else needs an entry.
/// Write commands need a `W:` entry (loopback included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    read: Vec<Cidr>,
    write: Vec<Cidr>,
}

/// What a peer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Read,
    Write,
}

impl Access {
    /// Only loopback, read only.
    pub fn loopback_only() -> Self {
        Access::default()
    }

    /// Parse cgminer's list syntax: comma-separated entries, each `[R:|W:]CIDR`.
    pub fn parse(list: &str) -> Result<Self, Error> {
        let mut access = Access::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (write, cidr) = match entry.split_once(':') {
                Some((g, rest)) if g.eq_ignore_ascii_case("w") => (true, rest),
                Some((g, rest)) if g.eq_ignore_ascii_case("r") => (false, rest),
                _ => (false, entry),
            };
            let cidr: Cidr = cidr.parse()?;
            if write {
                access.write.push(cidr);
            }
            access.read.push(cidr);
        }
        Ok(access)
    }

    /// Would any non-loopback peer get in? (Binding a non-loopback address needs this.)
    pub fn allows_remote(&self) -> bool {
        !self.read.is_empty()
    }

    pub fn level(&self, peer: IpAddr) -> Level {
        if self.write.iter().any(|c| c.contains(peer)) {
            Level::Write
        } else if is_loopback(peer) || self.read.iter().any(|c| c.contains(peer)) {
            Level::Read
        } else {
            Level::None
        }
    }
}

pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matches_its_range_only() {
        let c: Cidr = "192.168.1.0/24".parse().unwrap();
        assert!(c.contains("192.168.1.77".parse().unwrap()));
        assert!(!c.contains("192.168.2.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.1.3".parse().unwrap()));
        let all: Cidr = "0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_cidr_is_an_error_naming_the_input() {
        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    /// Found by the `access_list` fuzz target (crates/monitor/fuzz): `r:::1/128, W:::ffff:127.0.0.1`
    /// gave 127.0.0.1 no write access, because an entry in IPv4-mapped IPv6 form matched nobody
    /// (peers are matched as IPv4, mapped ones mapped back first).
    #[test]
    fn ipv4_mapped_entries_match_the_ipv4_peers_they_name() {
        let a = Access::parse("r:::1/128, W:::ffff:127.0.0.1").unwrap();
        assert_eq!(a.level("127.0.0.1".parse().unwrap()), Level::Write);
        assert_eq!(a.level("::ffff:127.0.0.1".parse().unwrap()), Level::Write);
        let c: Cidr = "::ffff:192.168.1.0/120".parse().unwrap();
        assert_eq!(c.to_string(), "192.168.1.0/24");
        assert!(c.contains("192.168.1.77".parse().unwrap()) && c.contains("::ffff:192.168.1.77".parse().unwrap()));
        assert!(!c.contains("192.168.2.1".parse().unwrap()));
        let c = Cidr::new("::ffff:10.0.0.0".parse().unwrap(), 104).unwrap();
        assert!(c.contains("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn loopback_reads_but_writes_only_with_a_w_entry() {
        let a = Access::loopback_only();
        assert_eq!(a.level("127.0.0.1".parse().unwrap()), Level::Read);
        assert_eq!(a.level("10.1.1.1".parse().unwrap()), Level::None);
        let a = Access::parse("W:127.0.0.1,10.0.0.0/8").unwrap();
        assert_eq!(a.level("127.0.0.1".parse().unwrap()), Level::Write);
        assert_eq!(a.level("10.1.1.1".parse().unwrap()), Level::Read);
        assert_eq!(a.level("11.1.1.1".parse().unwrap()), Level::None);
    }
}
