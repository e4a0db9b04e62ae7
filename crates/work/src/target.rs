//! Targets and difficulty: compact `nbits` to a target (through `bitcoin`'s `CompactTarget` and
//! `Target`), pool difficulty to a share target and back, the difficulty of one hash, and the
//! portable reference hash the engine re-verifies every candidate with.
//!
//! Difficulty here is the pool ("bdiff") kind: difficulty 1 is the target
//! `0xFFFF * 2^208` (`0x00000000FFFF0000...`), and a target for difficulty `d` is that divided
//! by `d`, rounded down.

use bitcoin::{CompactTarget, Target as BtcTarget};
use hashrig_sha256d::Target;
use sha2::{Digest, Sha256};

/// Why a target or difficulty was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// Difficulty must be a finite number above zero.
    #[error("difficulty {0} is not a finite number above zero")]
    BadDifficulty(f64),
    /// So high that the target rounds to zero: nothing could meet it.
    #[error("difficulty {0} is so high that no hash could meet it")]
    DifficultyTooHigh(f64),
    /// A target given in hex is not 64 hex digits.
    #[error("target `{0}` is not 64 hex digits (a 256-bit big-endian number)")]
    BadTargetHex(String),
}

/// The difficulty-1 target, `0xFFFF * 2^208`.
pub fn difficulty_1_target() -> Target {
    Target::from_le_bytes(BtcTarget::MAX.to_le_bytes())
}

/// Our target from `bitcoin`'s.
pub fn from_bitcoin(t: BtcTarget) -> Target {
    Target::from_le_bytes(t.to_le_bytes())
}

/// `bitcoin`'s target from ours.
pub fn to_bitcoin(t: &Target) -> BtcTarget {
    BtcTarget::from_le_bytes(t.0)
}

/// The target a header's `nbits` field encodes.
pub fn target_from_nbits(nbits: u32) -> Target {
    from_bitcoin(BtcTarget::from_compact(CompactTarget::from_consensus(nbits)))
}

/// The network difficulty of `nbits` (relative to difficulty 1).
pub fn difficulty_from_nbits(nbits: u32) -> f64 {
    BtcTarget::from_compact(CompactTarget::from_consensus(nbits)).difficulty_float()
}

/// The share target for pool difficulty `d` (any positive value, fractions included):
/// `floor(0xFFFF * 2^208 / d)`, capped at the largest 256-bit number.
pub fn target_from_difficulty(d: f64) -> Result<Target, TargetError> {
    if !d.is_finite() || d <= 0.0 {
        return Err(TargetError::BadDifficulty(d));
    }
    // d = m * 2^e with m an integer below 2^53.
    let (m, e) = decompose(d);
    // target = 0xFFFF * 2^(208 - e) / m. Compute (0xFFFF << (208 - e + 128)) / m, then >> 128,
    // in 512-bit arithmetic (u32 limbs, little-endian).
    let shift = 208 - e + 128;
    if shift < 0 {
        return Err(TargetError::DifficultyTooHigh(d));
    }
    let shift = shift as usize;
    if shift + 16 > 512 - 32 {
        // Tiny difficulty: the quotient is far beyond 2^256.
        return Ok(Target::MAX);
    }
    let mut num = [0u32; 16];
    // 0xFFFF << shift.
    let limb = shift / 32;
    let bit = shift % 32;
    let wide = 0xFFFFu64 << bit;
    num[limb] = wide as u32;
    if limb + 1 < 16 {
        num[limb + 1] = (wide >> 32) as u32;
    }
    let mut rem: u128 = 0;
    for l in num.iter_mut().rev() {
        let cur = (rem << 32) | u128::from(*l);
        *l = (cur / u128::from(m)) as u32;
        rem = cur % u128::from(m);
    }
    // >> 128: drop four limbs; anything above 256 bits caps at MAX.
    if num[12..].iter().any(|&l| l != 0) {
        return Ok(Target::MAX);
    }
    let mut le = [0u8; 32];
    for (i, l) in num[4..12].iter().enumerate() {
        le[4 * i..4 * i + 4].copy_from_slice(&l.to_le_bytes());
    }
    if le == [0; 32] {
        return Err(TargetError::DifficultyTooHigh(d));
    }
    Ok(Target::from_le_bytes(le))
}

/// `d = m * 2^e` exactly, `m < 2^53`.
fn decompose(d: f64) -> (u64, i64) {
    let bits = d.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    }
}

/// A 256-bit little-endian number as f64 (rounded).
fn le256_to_f64(le: &[u8; 32]) -> f64 {
    le.iter().rev().fold(0.0, |acc, &b| acc * 256.0 + f64::from(b))
}

/// The pool difficulty a target stands for (`0xFFFF * 2^208 / target`).
pub fn difficulty_of_target(t: &Target) -> f64 {
    le256_to_f64(&difficulty_1_target().0) / le256_to_f64(&t.0)
}

/// The share difficulty of a hash (raw sha256d digest): difficulty 1's target over the hash.
pub fn hash_difficulty(digest: &[u8; 32]) -> f64 {
    le256_to_f64(&difficulty_1_target().0) / le256_to_f64(digest)
}

/// A target written as 64 hex digits, big-endian (how targets are usually shown).
pub fn parse_target_hex(s: &str) -> Result<Target, TargetError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(s).map_err(|_| TargetError::BadTargetHex(s.to_owned()))?;
    let be: [u8; 32] = bytes.try_into().map_err(|_| TargetError::BadTargetHex(s.to_owned()))?;
    Ok(Target::from_be_bytes(be))
}

/// The portable reference: sha256d of 80 header bytes by the `sha2` crate (never one of our
/// kernels), raw digest order.
pub fn reference_sha256d(header: &[u8; 80]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(header)).into()
}

/// A raw digest as a block hash is shown: byte-reversed hex.
pub fn display_hash(digest: &[u8; 32]) -> String {
    let mut d = *digest;
    d.reverse();
    hex::encode(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be_hex(t: &Target) -> String {
        let mut b = t.0;
        b.reverse();
        hex::encode(b)
    }

    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

    fn genesis() -> [u8; 80] {
        hex::decode(GENESIS).unwrap().try_into().unwrap()
    }

    #[test]
    fn genesis_nbits_is_the_difficulty_one_target() {
        assert_eq!(be_hex(&target_from_nbits(0x1d00ffff)), "00000000ffff0000000000000000000000000000000000000000000000000000");
        assert_eq!(target_from_nbits(0x1d00ffff), difficulty_1_target());
        assert_eq!(difficulty_from_nbits(0x1d00ffff), 1.0);
    }

    #[test]
    fn block_125552_nbits_expands_and_its_hash_meets_it() {
        let t = target_from_nbits(0x1a44b9f2);
        assert_eq!(be_hex(&t), "00000000000044b9f20000000000000000000000000000000000000000000000");
        let header: [u8; 80] = hex::decode("0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695").unwrap().try_into().unwrap();
        let d = reference_sha256d(&header);
        assert!(t.is_met_by(&d));
        assert_eq!(display_hash(&d), "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d");
    }

    #[test]
    fn difficulty_one_two_and_a_half_give_exact_targets() {
        assert_eq!(target_from_difficulty(1.0).unwrap(), difficulty_1_target());
        assert_eq!(be_hex(&target_from_difficulty(2.0).unwrap()), "000000007fff8000000000000000000000000000000000000000000000000000");
        assert_eq!(be_hex(&target_from_difficulty(0.5).unwrap()), "00000001fffe0000000000000000000000000000000000000000000000000000");
        assert_eq!(be_hex(&target_from_difficulty(65536.0).unwrap()), format!("000000000000ffff{}", "0".repeat(48)));
    }

    #[test]
    fn difficulty_survives_a_round_trip_through_the_target() {
        for d in [1e-6, 0.001, 1.0, 3.0, 1000.0, 65536.0, 1.2e12, 1.1e14] {
            let back = difficulty_of_target(&target_from_difficulty(d).unwrap());
            assert!((back / d - 1.0).abs() < 1e-9, "{d} -> {back}");
        }
    }

    #[test]
    fn tiny_difficulty_caps_at_the_largest_target_and_bad_values_are_refused() {
        assert_eq!(target_from_difficulty(1e-30).unwrap(), Target::MAX);
        assert_eq!(target_from_difficulty(0.0), Err(TargetError::BadDifficulty(0.0)));
        assert!(matches!(target_from_difficulty(f64::NAN), Err(TargetError::BadDifficulty(_))));
        assert_eq!(target_from_difficulty(1e80), Err(TargetError::DifficultyTooHigh(1e80)));
    }

    #[test]
    fn hash_difficulty_of_the_genesis_block() {
        // 0xFFFF * 2^208 / 0x000000000019d668...: computed independently with Python integers.
        let d = hash_difficulty(&reference_sha256d(&genesis()));
        assert!((d - 2536.4262984453103).abs() < 1e-6, "{d}");
    }

    #[test]
    fn target_hex_parses_big_endian_and_rejects_garbage() {
        let t = parse_target_hex("00000000ffff0000000000000000000000000000000000000000000000000000").unwrap();
        assert_eq!(t, difficulty_1_target());
        assert!(matches!(parse_target_hex("zz"), Err(TargetError::BadTargetHex(_))));
        assert!(matches!(parse_target_hex("00ff"), Err(TargetError::BadTargetHex(_))));
    }
}
