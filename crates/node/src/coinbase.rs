//! The coinbase transaction of a solo block, split around the extranonce like a Stratum job.
//!
//! scriptSig = `<BIP 34 height> <push of extranonce2> <push of tag>`; the height is written the
//! way Bitcoin Core's `CScript() << nHeight` writes it (OP_1..OP_16 for 1..16, else a minimal
//! little-endian number push), which is the prefix Core's `ContextualCheckBlock` compares.
//! Outputs: the payout, then (segwit) the witness commitment `OP_RETURN aa21a9ed <32 bytes>`.

use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{Amount, ScriptBuf, Wtxid};

/// Bytes of extranonce the miner rolls in solo mode.
pub const EXTRANONCE2_SIZE: usize = 8;

/// The BIP 34 height exactly as Core's `CScript() << nHeight` serialises it.
pub fn bip34_height_script(height: u32) -> Vec<u8> {
    match height {
        0 => vec![0x00],
        1..=16 => vec![0x50 + height as u8],
        _ => {
            let mut n = Vec::new();
            let mut v = height;
            while v > 0 {
                n.push((v & 0xff) as u8);
                v >>= 8;
            }
            if n.last().is_some_and(|b| b & 0x80 != 0) {
                n.push(0);
            }
            let mut s = vec![n.len() as u8];
            s.extend_from_slice(&n);
            s
        }
    }
}

/// The BIP 141 witness commitment for a block whose non-coinbase transactions have these
/// wtxids, with the all-zero witness reserved value.
pub fn witness_commitment(other_wtxids: &[Wtxid]) -> [u8; 32] {
    let leaves = std::iter::once([0u8; 32]).chain(other_wtxids.iter().map(|w| w.to_byte_array()));
    let root = merkle_root_bytes(leaves.collect());
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&root);
    // buf[32..] is the witness reserved value: 32 zero bytes.
    sha256d::Hash::hash(&buf).to_byte_array()
}

fn merkle_root_bytes(mut level: Vec<[u8; 32]>) -> [u8; 32] {
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = *level.last().expect("not empty");
            level.push(last);
        }
        level = level
            .chunks_exact(2)
            .map(|p| {
                let mut buf = [0u8; 64];
                buf[..32].copy_from_slice(&p[0]);
                buf[32..].copy_from_slice(&p[1]);
                sha256d::Hash::hash(&buf).to_byte_array()
            })
            .collect();
    }
    level[0]
}

/// The witness commitment output script: `OP_RETURN PUSH36 aa21a9ed <commitment>`.
pub fn commitment_script(commitment: &[u8; 32]) -> ScriptBuf {
    let mut s = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    s.extend_from_slice(commitment);
    ScriptBuf::from_bytes(s)
}

/// A coinbase cut around its extranonce2, in non-witness serialisation (what the txid and the
/// merkle root are computed over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoinbaseParts {
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    /// Segwit: the coinbase input needs the 32-byte zero witness in the block.
    pub segwit: bool,
}

impl CoinbaseParts {
    /// The whole coinbase for `extranonce2`, non-witness serialisation.
    pub fn tx_bytes(&self, extranonce2: &[u8]) -> Vec<u8> {
        [&self.coinb1[..], extranonce2, &self.coinb2[..]].concat()
    }

    /// The coinbase as it goes into the block: with the witness reserved value when segwit.
    pub fn block_tx_bytes(&self, extranonce2: &[u8]) -> Vec<u8> {
        let plain = self.tx_bytes(extranonce2);
        if !self.segwit {
            return plain;
        }
        // version || marker 00 flag 01 || inputs..outputs || witness (1 item of 32 zeros) || locktime
        let n = plain.len();
        let mut out = Vec::with_capacity(n + 2 + 34);
        out.extend_from_slice(&plain[..4]);
        out.extend_from_slice(&[0x00, 0x01]);
        out.extend_from_slice(&plain[4..n - 4]);
        out.push(0x01);
        out.push(0x20);
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&plain[n - 4..]);
        out
    }
}

fn compact_size(n: usize, out: &mut Vec<u8>) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
}

fn push_data(data: &[u8], out: &mut Vec<u8>) {
    assert!(data.len() < 0x4c, "only short pushes are used in the coinbase scriptSig");
    out.push(data.len() as u8);
    out.extend_from_slice(data);
}

/// Longest tag kept in the scriptSig (it must stay within 100 bytes in all).
pub const MAX_TAG: usize = 40;

/// Build the coinbase: version 1, one input (null prevout, scriptSig = height, extranonce2
/// push, tag push; sequence 0xffffffff), outputs payout (+ witness commitment), locktime 0.
pub fn build(
    height: u32,
    value: Amount,
    payout: &ScriptBuf,
    witness_commitment: Option<[u8; 32]>,
    tag: &[u8],
) -> CoinbaseParts {
    let tag = &tag[..tag.len().min(MAX_TAG)];
    let mut script_head = bip34_height_script(height);
    script_head.push(EXTRANONCE2_SIZE as u8); // push opcode for the extranonce2 bytes
    let mut script_tail = Vec::new();
    if !tag.is_empty() {
        push_data(tag, &mut script_tail);
    }
    let script_len = script_head.len() + EXTRANONCE2_SIZE + script_tail.len();

    let mut coinb1 = Vec::new();
    coinb1.extend_from_slice(&1u32.to_le_bytes());
    coinb1.push(1); // one input
    coinb1.extend_from_slice(&[0u8; 32]);
    coinb1.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    compact_size(script_len, &mut coinb1);
    coinb1.extend_from_slice(&script_head);

    let mut coinb2 = script_tail;
    coinb2.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    let outputs = 1 + usize::from(witness_commitment.is_some());
    compact_size(outputs, &mut coinb2);
    coinb2.extend_from_slice(&value.to_sat().to_le_bytes());
    compact_size(payout.len(), &mut coinb2);
    coinb2.extend_from_slice(payout.as_bytes());
    if let Some(c) = witness_commitment {
        let s = commitment_script(&c);
        coinb2.extend_from_slice(&0u64.to_le_bytes());
        compact_size(s.len(), &mut coinb2);
        coinb2.extend_from_slice(s.as_bytes());
    }
    coinb2.extend_from_slice(&0u32.to_le_bytes());
    CoinbaseParts { coinb1, coinb2, segwit: witness_commitment.is_some() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_one_to_sixteen_are_single_opcodes_like_core() {
        assert_eq!(bip34_height_script(1), vec![0x51]);
        assert_eq!(bip34_height_script(16), vec![0x60]);
        assert_eq!(bip34_height_script(17), vec![0x01, 0x11]);
        assert_eq!(bip34_height_script(127), vec![0x01, 0x7f]);
        assert_eq!(bip34_height_script(128), vec![0x02, 0x80, 0x00]);
        assert_eq!(bip34_height_script(840_000), vec![0x03, 0x40, 0xd1, 0x0c]);
    }
}
