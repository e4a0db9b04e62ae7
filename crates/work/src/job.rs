//! Header assembly from the parts a pool (Stratum `mining.notify`) or a node
//! (getblocktemplate, split the same way) hands out.
//!
//! A [`CoinbaseJob`] turns `(extranonce2, ntime, version, nonce)` into an 80-byte
//! `bitcoin::block::Header`:
//! 1. `coinbase = coinb1 || extranonce1 || extranonce2 || coinb2` (non-witness serialisation);
//! 2. `root = sha256d(coinbase)`, then `root = sha256d(root || branch[i])` for each branch hash,
//!    the branch hashes used in internal byte order exactly as sent;
//! 3. header = `LE32(version) || prev_hash || root || LE32(ntime) || LE32(nbits) || LE32(nonce)`.
//!
//! The wire quirks (word-swapped prev hash, big-endian hex integers) are undone by the protocol
//! crates before a job gets here: everything in this module is in consensus types.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode, Txid};

/// Why a header could not be built from a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The extranonce2 given has the wrong length for this job.
    #[error("extranonce2 is {got} bytes, the job needs exactly {want}")]
    Extranonce2Size { got: usize, want: usize },
    /// A rolled version sets bits outside the mask the job allows.
    #[error("version {version:#010x} differs from the job's {job_version:#010x} outside the rolling mask {mask:#010x}")]
    VersionOutsideMask { version: u32, job_version: u32, mask: u32 },
}

/// Everything needed to build block headers for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoinbaseJob {
    /// The previous block's hash (consensus type; internal byte order inside).
    pub prev_hash: BlockHash,
    /// Coinbase transaction bytes before extranonce1.
    pub coinb1: Vec<u8>,
    /// Fixed per connection (pool) or empty (solo).
    pub extranonce1: Vec<u8>,
    /// How many extranonce2 bytes the miner chooses.
    pub extranonce2_size: usize,
    /// Coinbase transaction bytes after extranonce2.
    pub coinb2: Vec<u8>,
    /// Merkle branch from the coinbase to the root, hashes in internal byte order.
    pub merkle_branch: Vec<TxMerkleNode>,
    /// The job's block version (before any rolling).
    pub version: Version,
    /// Version bits the miner may change (BIP 310 mask granted by the pool; 0 = none).
    pub version_mask: u32,
    /// The network target in compact form, as it goes into the header.
    pub nbits: CompactTarget,
    /// The job's time; miners may roll it forward.
    pub ntime: u32,
}

impl CoinbaseJob {
    /// The job's version as the raw header field.
    pub fn version_bits(&self) -> u32 {
        self.version.to_consensus() as u32
    }

    /// The coinbase transaction for `extranonce2` (non-witness serialisation).
    pub fn coinbase(&self, extranonce2: &[u8]) -> Result<Vec<u8>, JobError> {
        if extranonce2.len() != self.extranonce2_size {
            return Err(JobError::Extranonce2Size { got: extranonce2.len(), want: self.extranonce2_size });
        }
        let mut tx = Vec::with_capacity(
            self.coinb1.len() + self.extranonce1.len() + extranonce2.len() + self.coinb2.len(),
        );
        tx.extend_from_slice(&self.coinb1);
        tx.extend_from_slice(&self.extranonce1);
        tx.extend_from_slice(extranonce2);
        tx.extend_from_slice(&self.coinb2);
        Ok(tx)
    }

    /// The merkle root the header carries for `extranonce2`.
    pub fn merkle_root(&self, extranonce2: &[u8]) -> Result<TxMerkleNode, JobError> {
        let coinbase = self.coinbase(extranonce2)?;
        let txid = Txid::from_raw_hash(sha256d::Hash::hash(&coinbase));
        Ok(merkle_root_from_branch(txid, &self.merkle_branch))
    }

    /// Check that `version` only differs from the job's version inside the rolling mask.
    pub fn check_version(&self, version: u32) -> Result<(), JobError> {
        let job_version = self.version_bits();
        if (version ^ job_version) & !self.version_mask != 0 {
            return Err(JobError::VersionOutsideMask { version, job_version, mask: self.version_mask });
        }
        Ok(())
    }

    /// The header for one choice of extranonce2, ntime, (rolled) version and nonce.
    pub fn header(&self, extranonce2: &[u8], ntime: u32, version: u32, nonce: u32) -> Result<Header, JobError> {
        self.check_version(version)?;
        Ok(Header {
            version: Version::from_consensus(version as i32),
            prev_blockhash: self.prev_hash,
            merkle_root: self.merkle_root(extranonce2)?,
            time: ntime,
            bits: self.nbits,
            nonce,
        })
    }

    /// The network target this job's blocks must meet.
    pub fn network_target(&self) -> Target {
        Target::from_compact(self.nbits)
    }
}

/// The 80 bytes of a header, as hashed.
pub fn header_bytes(header: &Header) -> [u8; 80] {
    let v = bitcoin::consensus::serialize(header);
    v.try_into().expect("a block header serialises to exactly 80 bytes")
}

/// Fold a coinbase txid up a Stratum merkle branch to the root.
pub fn merkle_root_from_branch(coinbase_txid: Txid, branch: &[TxMerkleNode]) -> TxMerkleNode {
    let mut h = coinbase_txid.to_byte_array();
    let mut buf = [0u8; 64];
    for b in branch {
        buf[..32].copy_from_slice(&h);
        buf[32..].copy_from_slice(b.as_byte_array());
        h = sha256d::Hash::hash(&buf).to_byte_array();
    }
    TxMerkleNode::from_byte_array(h)
}

/// The merkle branch of the first transaction (the coinbase) given the txids of all the
/// *other* transactions of a block in order: what a pool sends in `mining.notify`, and what
/// solo mining needs so that only the coinbase is rehashed per extranonce.
pub fn coinbase_merkle_branch(other_txids: &[Txid]) -> Vec<TxMerkleNode> {
    // Level 0 holds a placeholder for the coinbase at index 0; only index 0's sibling is kept
    // at each level, so the placeholder's value never matters.
    let mut level: Vec<[u8; 32]> = std::iter::once([0u8; 32])
        .chain(other_txids.iter().map(|t| t.to_byte_array()))
        .collect();
    let mut branch = Vec::new();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = *level.last().expect("level is not empty");
            level.push(last);
        }
        branch.push(TxMerkleNode::from_byte_array(level[1]));
        let mut next = Vec::with_capacity(level.len() / 2);
        for pair in level.chunks_exact(2) {
            let mut buf = [0u8; 64];
            buf[..32].copy_from_slice(&pair[0]);
            buf[32..].copy_from_slice(&pair[1]);
            next.push(sha256d::Hash::hash(&buf).to_byte_array());
        }
        level = next;
    }
    branch
}

/// Extranonce2 as miners usually count it: the counter's little-endian bytes, truncated or
/// zero-padded to `size` (ESP-Miner `extranonce_2_generate`: 1 in 4 bytes is `01000000`).
pub fn extranonce2_from_counter(counter: u64, size: usize) -> Vec<u8> {
    let le = counter.to_le_bytes();
    (0..size).map(|i| le.get(i).copied().unwrap_or(0)).collect()
}

/// `(job_version & !mask) | (bits & mask)`: the version a pool rebuilds from the version bits
/// a miner submits (BIP 310).
pub fn apply_version_bits(job_version: u32, mask: u32, bits: u32) -> u32 {
    (job_version & !mask) | (bits & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    #[test]
    fn coinbase_joins_the_four_parts_in_order() {
        // ESP-Miner components/stratum/test/test_mining.c "Check coinbase tx construction".
        let job = CoinbaseJob {
            prev_hash: BlockHash::all_zeros(),
            coinb1: h("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008"),
            extranonce1: h("e9695791"),
            extranonce2_size: 4,
            coinb2: h("072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000"),
            merkle_branch: vec![],
            version: Version::from_consensus(0x2000_0000),
            version_mask: 0,
            nbits: CompactTarget::from_consensus(0x1d00ffff),
            ntime: 0,
        };
        assert_eq!(
            hex::encode(job.coinbase(&h("99999999")).unwrap()),
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008e969579199999999072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000"
        );
        assert_eq!(
            job.coinbase(&h("999999")),
            Err(JobError::Extranonce2Size { got: 3, want: 4 })
        );
    }

    #[test]
    fn extranonce2_counts_little_endian() {
        // ESP-Miner test_mining.c "Test extranonce 2 generation".
        assert_eq!(hex::encode(extranonce2_from_counter(1, 4)), "01000000");
        assert_eq!(hex::encode(extranonce2_from_counter(u64::from(u32::MAX) - 1, 4)), "feffffff");
        assert_eq!(hex::encode(extranonce2_from_counter(u64::from(u32::MAX / 2), 6)), "ffffff7f0000");
        assert_eq!(hex::encode(extranonce2_from_counter(0x0102, 1)), "02");
    }

    #[test]
    fn coinbase_branch_folds_to_the_root_of_the_full_tree() {
        // For 0..=9 other transactions, folding the coinbase txid up the branch must give the
        // same root as the bitcoin crate's full merkle tree over all txids.
        for n in 0..10u8 {
            let coinbase = Txid::from_byte_array([0xc0; 32]);
            let others: Vec<Txid> = (0..n).map(|i| Txid::from_byte_array([i + 1; 32])).collect();
            let all: Vec<Txid> = std::iter::once(coinbase).chain(others.iter().copied()).collect();
            let want = bitcoin::merkle_tree::calculate_root(all.iter().map(|t| t.to_raw_hash()))
                .map(TxMerkleNode::from_raw_hash)
                .expect("non-empty list has a root");
            let got = merkle_root_from_branch(coinbase, &coinbase_merkle_branch(&others));
            assert_eq!(got, want, "{n} other transactions");
        }
    }

    #[test]
    fn version_outside_the_mask_is_refused() {
        let job = CoinbaseJob {
            prev_hash: BlockHash::all_zeros(),
            coinb1: vec![],
            extranonce1: vec![],
            extranonce2_size: 0,
            coinb2: vec![],
            merkle_branch: vec![],
            version: Version::from_consensus(0x2000_0004),
            version_mask: 0x1fff_e000,
            nbits: CompactTarget::from_consensus(0x1d00ffff),
            ntime: 0,
        };
        assert!(job.header(&[], 0, 0x2000_2004, 0).is_ok());
        assert!(job.header(&[], 0, 0x3fff_e004, 0).is_ok());
        assert_eq!(
            job.header(&[], 0, 0x2000_0005, 0),
            Err(JobError::VersionOutsideMask { version: 0x2000_0005, job_version: 0x2000_0004, mask: 0x1fff_e000 })
        );
        assert_eq!(apply_version_bits(0x2000_0004, 0x1fff_e000, 0x0000_6000), 0x2000_6004);
        assert_eq!(apply_version_bits(0x2000_0004, 0x1fff_e000, 0xffff_ffff), 0x3fff_e004);
    }
}
