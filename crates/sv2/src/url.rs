//! `stratum2+tcp://HOST:PORT/AUTHORITY_PUBKEY[?channel=standard|extended]` pool URLs and the
//! authority key's text form. The optional `channel` picks the channel kind for that pool
//! (extended unless the client's configuration says otherwise).
//!
//! The key is written as the reference implementation writes it (see REFERENCE.md): base58 with
//! a 4-byte double-SHA-256 checksum, over 34 bytes: a little-endian `u16` key version (1), then
//! the 32-byte x-only secp256k1 public key.

use crate::Error;
use crate::client::ChannelKind;

/// The URL scheme of a Stratum V2 pool.
pub const SCHEME: &str = "stratum2+tcp://";

/// One SV2 pool as the user gave it.
#[derive(Clone, PartialEq, Eq)]
pub struct PoolUrl {
    pub host: String,
    pub port: u16,
    /// The x-only public key the pool's certificate must be signed with.
    pub authority: [u8; 32],
    /// `?channel=...`: the channel kind to open on this pool; `None`: the client's default.
    pub channel: Option<ChannelKind>,
}

impl std::fmt::Debug for PoolUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolUrl({self})")
    }
}

impl std::fmt::Display for PoolUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}:{}/{}", self.host, self.port, encode_authority_key(&self.authority))?;
        match self.channel {
            Some(kind) => write!(f, "?channel={}", kind.as_str()),
            None => Ok(()),
        }
    }
}

/// Whether `s` is meant as an SV2 pool (its scheme), before it is parsed.
pub fn is_sv2_url(s: &str) -> bool {
    s.len() >= SCHEME.len() && s[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
}

impl std::str::FromStr for PoolUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Url { url: s.to_string(), why: why.to_string() };
        if !is_sv2_url(s) {
            return Err(bad("it does not start with stratum2+tcp://"));
        }
        let rest = &s[SCHEME.len()..];
        let (hostport, key) = rest
            .split_once('/')
            .ok_or_else(|| bad("the pool's authority public key is missing (stratum2+tcp://HOST:PORT/AUTHORITY_PUBKEY)"))?;
        let (key, query) = match key.split_once('?') {
            Some((k, q)) => (k, Some(q)),
            None => (key, None),
        };
        let key = key.trim_end_matches('/');
        let channel = match query {
            None => None,
            Some(q) => match q.split_once('=') {
                Some((name, value)) if name.eq_ignore_ascii_case("channel") => match value.to_ascii_lowercase().as_str() {
                    "standard" => Some(ChannelKind::Standard),
                    "extended" => Some(ChannelKind::Extended),
                    _ => return Err(bad("the channel is `standard` or `extended` (?channel=standard)")),
                },
                _ => return Err(bad("the only setting after `?` is channel=standard or channel=extended")),
            },
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("the port is missing (HOST:PORT)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        let authority = decode_authority_key(key).map_err(|why| bad(&why))?;
        Ok(PoolUrl { host: host.to_string(), port, authority, channel })
    }
}

/// The key version the reference implementation writes in front of an authority key.
const KEY_VERSION: u16 = 1;

/// Decode an authority public key from its base58-check text.
pub fn decode_authority_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = bitcoin::base58::decode_check(s).map_err(|e| format!("the authority public key is not valid base58-check: {e}"))?;
    if bytes.len() != 34 {
        return Err(format!("the authority public key is {} bytes once decoded, not 34 (2 of version, 32 of key)", bytes.len()));
    }
    let version = u16::from_le_bytes([bytes[0], bytes[1]]);
    if version != KEY_VERSION {
        return Err(format!("the authority public key has version {version}, not {KEY_VERSION}"));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[2..]);
    // A point on the curve (x-only): checked by the Noise initiator when it takes the key.
    stratum_core::noise_sv2::Initiator::from_raw_k(key)
        .map_err(|_| "the authority public key is not a valid secp256k1 x-only public key".to_string())?;
    Ok(key)
}

/// The text form of an authority public key (what a pool operator publishes).
pub fn encode_authority_key(key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&KEY_VERSION.to_le_bytes());
    bytes.extend_from_slice(key);
    bitcoin::base58::encode_check(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authority key pair of the reference implementation's codec example
    /// (codec_sv2 7.0.0 examples/encrypted.rs); its public key is the one its configs use.
    const REF_PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

    #[test]
    fn the_reference_key_round_trips() {
        let k = decode_authority_key(REF_PUBLIC).unwrap();
        assert_eq!(encode_authority_key(&k), REF_PUBLIC);
    }

    #[test]
    fn urls_parse_and_print() {
        let u: PoolUrl = format!("stratum2+tcp://pool.example:3336/{REF_PUBLIC}").parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("pool.example", 3336));
        assert_eq!(u.to_string(), format!("stratum2+tcp://pool.example:3336/{REF_PUBLIC}"));
        let v6: PoolUrl = format!("stratum2+tcp://[::1]:3336/{REF_PUBLIC}").parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(u.channel, None);
    }

    #[test]
    fn the_channel_kind_is_chosen_per_pool_in_the_url() {
        let u: PoolUrl = format!("stratum2+tcp://pool.example:3336/{REF_PUBLIC}?channel=standard").parse().unwrap();
        assert_eq!(u.channel, Some(ChannelKind::Standard));
        assert_eq!(u.authority, decode_authority_key(REF_PUBLIC).unwrap());
        assert_eq!(u.to_string(), format!("stratum2+tcp://pool.example:3336/{REF_PUBLIC}?channel=standard"));
        let e: PoolUrl = format!("stratum2+tcp://pool.example:3336/{REF_PUBLIC}/?channel=Extended").parse().unwrap();
        assert_eq!(e.channel, Some(ChannelKind::Extended));
        let bad = format!("stratum2+tcp://pool:1/{REF_PUBLIC}?channel=group").parse::<PoolUrl>().unwrap_err().to_string();
        assert!(bad.contains("`standard` or `extended`"), "{bad}");
        let bad = format!("stratum2+tcp://pool:1/{REF_PUBLIC}?kind=standard").parse::<PoolUrl>().unwrap_err().to_string();
        assert!(bad.contains("only setting after `?`"), "{bad}");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let e = "stratum2+tcp://pool:3336".parse::<PoolUrl>().unwrap_err().to_string();
        assert!(e.contains("authority public key is missing"), "{e}");
        let e = format!("stratum2+tcp://pool/{REF_PUBLIC}").parse::<PoolUrl>().unwrap_err().to_string();
        assert!(e.contains("port is missing"), "{e}");
        // one character changed: the checksum catches it
        let mut k = REF_PUBLIC.to_string();
        k.replace_range(5..6, if &k[5..6] == "A" { "B" } else { "A" });
        let e = format!("stratum2+tcp://pool:1/{k}").parse::<PoolUrl>().unwrap_err().to_string();
        assert!(e.contains("base58-check"), "{e}");
        assert!(!is_sv2_url("stratum+tcp://pool:3333"));
    }
}
