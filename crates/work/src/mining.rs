//! The job the engine mines: how to build headers for it, its share target, and whether it
//! replaces older work. Stratum, solo mining and `bench` all produce one of these.
//!
//! A [`Job`] hands out headers by extranonce2 counter; each header gives 2^32 nonces. The engine
//! cuts those into work units. [`HeaderSource`] says where headers come from: coinbase parts (pool
//! or node), one fixed header (known-answer tools), or a synthetic job that never runs out
//! (`bench`).

use hashrig_sha256d::Target;

use crate::job::{CoinbaseJob, JobError, extranonce2_from_counter, header_bytes};
use crate::target::{reference_sha256d, target_from_nbits};

/// How far (seconds) a job's ntime may be rolled past the ntime the pool or node gave.
///
/// Consensus rejects a block whose time is more than 2 hours (7200 s) ahead of the
/// network-adjusted time, and the job's ntime is about the present when it is issued; 7000 s
/// leaves 200 s for clocks that disagree. It is also the window ckpool accepts for a share's
/// ntime (job ntime to job ntime + 7000). Rolling is one second per full pass over the
/// extranonce2 space, so only a very fast device on a job with a 1- or 2-byte extranonce2 gets
/// near it before the next job arrives.
pub const MAX_NTIME_ROLL: u32 = 7000;

/// Where a job's headers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderSource {
    /// A pool's `mining.notify` or a node's template: extranonce2 is rolled by counter.
    Coinbase(CoinbaseJob),
    /// One fixed header (its nonce field ignored): 2^32 nonces and no more.
    Fixed([u8; 80]),
    /// A made-up header whose merkle root changes with the extranonce2 counter; never runs out.
    Synthetic([u8; 80]),
    /// A Stratum V2 standard channel's job: the pool built the merkle root, so there is one
    /// header (no extranonce to roll); ntime and the version bits of its mask may roll.
    Standard(StandardJob),
}

/// A header whose merkle root the pool built (an SV2 standard channel's `NewMiningJob` with the
/// previous block, nbits and time of its `SetNewPrevHash`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardJob {
    pub version: u32,
    /// The previous block hash, internal byte order (as in the header).
    pub prev_hash: [u8; 32],
    /// The pool's merkle root, internal byte order (as in the header).
    pub merkle_root: [u8; 32],
    /// The earliest ntime a share may carry: the job's `min_ntime`, or the `SetNewPrevHash`
    /// time for a future job it activates.
    pub ntime: u32,
    pub nbits: u32,
    /// Version bits the miner may roll (0: none).
    pub version_mask: u32,
}

impl StandardJob {
    /// The 80 header bytes with ntime `ntime` and nonce zero.
    pub fn header(&self, ntime: u32) -> [u8; 80] {
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&self.version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_hash);
        h[36..68].copy_from_slice(&self.merkle_root);
        h[68..72].copy_from_slice(&ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        h
    }
}

impl HeaderSource {
    /// Version bits the miner may roll (0: none).
    pub fn version_mask(&self) -> u32 {
        match self {
            HeaderSource::Coinbase(cb) => cb.version_mask,
            HeaderSource::Standard(sj) => sj.version_mask,
            HeaderSource::Fixed(_) | HeaderSource::Synthetic(_) => 0,
        }
    }

    /// Change the rollable version bits (a pool's new mask); fixed and synthetic headers have
    /// none and keep none.
    pub fn set_version_mask(&mut self, mask: u32) {
        match self {
            HeaderSource::Coinbase(cb) => cb.version_mask = mask,
            HeaderSource::Standard(sj) => sj.version_mask = mask,
            HeaderSource::Fixed(_) | HeaderSource::Synthetic(_) => {}
        }
    }

    /// The header's `nbits`.
    pub fn nbits(&self) -> u32 {
        match self {
            HeaderSource::Coinbase(cb) => cb.nbits.to_consensus(),
            HeaderSource::Standard(sj) => sj.nbits,
            HeaderSource::Fixed(h) | HeaderSource::Synthetic(h) => u32::from_le_bytes([h[72], h[73], h[74], h[75]]),
        }
    }

    /// The extranonce1 (pool's prefix) the headers are built with; empty where the miner rolls
    /// no extranonce (standard, fixed, synthetic).
    pub fn extranonce1(&self) -> &[u8] {
        match self {
            HeaderSource::Coinbase(cb) => &cb.extranonce1,
            _ => &[],
        }
    }
}

/// One header ready to sweep, and what a share found on it must report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedHeader {
    /// The 80 header bytes (nonce field zero).
    pub bytes: [u8; 80],
    /// The extranonce2 bytes that built it (empty for fixed and synthetic headers).
    pub extranonce2: Vec<u8>,
    /// The counter behind them.
    pub extranonce2_counter: u64,
    pub ntime: u32,
}

/// A job for the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job id as the pool or node knows it (returned with shares).
    pub id: String,
    pub source: HeaderSource,
    /// Shares must meet this.
    pub share_target: Target,
    /// True when this job replaces all older work (Stratum `clean_jobs`, a new block): work in
    /// flight becomes stale. False: an update, and shares of older jobs stay valid.
    pub clean: bool,
}

impl Job {
    /// A synthetic job for benchmarks: a header derived from `seed`, nbits of difficulty 1.
    pub fn synthetic(id: impl Into<String>, seed: u64, share_target: Target) -> Job {
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
        let mut seed_block = [0u8; 80];
        seed_block[..8].copy_from_slice(&seed.to_le_bytes());
        h[4..36].copy_from_slice(&reference_sha256d(&seed_block));
        h[68..72].copy_from_slice(&1_700_000_000u32.to_le_bytes());
        h[72..76].copy_from_slice(&0x1d00_ffffu32.to_le_bytes());
        Job { id: id.into(), source: HeaderSource::Synthetic(h), share_target, clean: true }
    }

    /// How many distinct headers (extranonce2 values) the job offers.
    pub fn extranonce2_space(&self) -> u64 {
        match &self.source {
            HeaderSource::Coinbase(cb) if cb.extranonce2_size >= 8 => u64::MAX,
            HeaderSource::Coinbase(cb) => 1u64 << (8 * cb.extranonce2_size),
            HeaderSource::Fixed(_) | HeaderSource::Standard(_) => 1,
            HeaderSource::Synthetic(_) => u64::MAX,
        }
    }

    /// How many seconds past its own ntime a job's headers may roll ntime once every
    /// extranonce2 value is used: [`MAX_NTIME_ROLL`] for pool and node jobs, standard jobs
    /// included (less only where
    /// ntime would pass `u32::MAX`), 0 for fixed and synthetic headers (a fixed header is exactly
    /// its 2^32 nonces; a synthetic job never runs out).
    pub fn ntime_roll_limit(&self) -> u32 {
        match &self.source {
            HeaderSource::Coinbase(cb) => MAX_NTIME_ROLL.min(u32::MAX - cb.ntime),
            HeaderSource::Standard(sj) => MAX_NTIME_ROLL.min(u32::MAX - sj.ntime),
            HeaderSource::Fixed(_) | HeaderSource::Synthetic(_) => 0,
        }
    }

    /// The header for extranonce2 counter `counter` (below [`Self::extranonce2_space`]).
    pub fn header(&self, counter: u64) -> Result<PreparedHeader, JobError> {
        self.header_rolled(counter, 0)
    }

    /// The header for extranonce2 counter `counter` with ntime rolled `ntime_offset` seconds past
    /// the job's (clamped to [`Self::ntime_roll_limit`]; fixed and synthetic headers keep theirs).
    /// The engine rolls ntime when the extranonce2 space is used up, so a fast device with a
    /// 1- or 2-byte extranonce2 and no version rolling keeps getting new headers.
    pub fn header_rolled(&self, counter: u64, ntime_offset: u32) -> Result<PreparedHeader, JobError> {
        match &self.source {
            HeaderSource::Coinbase(cb) => {
                let en2 = extranonce2_from_counter(counter, cb.extranonce2_size);
                let ntime = cb.ntime + ntime_offset.min(self.ntime_roll_limit());
                let header = cb.header(&en2, ntime, cb.version_bits(), 0)?;
                Ok(PreparedHeader { bytes: header_bytes(&header), extranonce2: en2, extranonce2_counter: counter, ntime })
            }
            HeaderSource::Standard(sj) => {
                // One header: only ntime rolls (the counter is always 0, the space being 1).
                let ntime = sj.ntime + ntime_offset.min(self.ntime_roll_limit());
                Ok(PreparedHeader { bytes: sj.header(ntime), extranonce2: Vec::new(), extranonce2_counter: counter, ntime })
            }
            HeaderSource::Fixed(h) => {
                let mut bytes = *h;
                bytes[76..80].fill(0);
                Ok(PreparedHeader { bytes, extranonce2: Vec::new(), extranonce2_counter: counter, ntime: ntime_of(h) })
            }
            HeaderSource::Synthetic(h) => {
                let mut bytes = *h;
                let mut seed = [0u8; 80];
                seed[..8].copy_from_slice(&counter.to_le_bytes());
                seed[8..40].copy_from_slice(&h[4..36]);
                bytes[36..68].copy_from_slice(&reference_sha256d(&seed));
                bytes[76..80].fill(0);
                Ok(PreparedHeader { bytes, extranonce2: Vec::new(), extranonce2_counter: counter, ntime: ntime_of(h) })
            }
        }
    }

    /// Version bits the miner may roll (0: none).
    pub fn version_mask(&self) -> u32 {
        self.source.version_mask()
    }

    /// The job's `nbits`.
    pub fn nbits(&self) -> u32 {
        self.source.nbits()
    }

    /// The network target blocks must meet.
    pub fn network_target(&self) -> Target {
        target_from_nbits(self.nbits())
    }
}

fn ntime_of(h: &[u8; 80]) -> u32 {
    u32::from_le_bytes([h[68], h[69], h[70], h[71]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_headers_differ_by_counter_and_keep_nbits() {
        let job = Job::synthetic("bench", 1, Target::MAX);
        let a = job.header(0).unwrap();
        let b = job.header(1).unwrap();
        assert_ne!(a.bytes, b.bytes);
        assert_eq!(a.bytes[..36], b.bytes[..36]);
        assert_eq!(job.nbits(), 0x1d00_ffff);
        assert_eq!(job.extranonce2_space(), u64::MAX);
    }

    fn pool_job(ntime: u32) -> Job {
        use bitcoin::hashes::Hash;
        let cb = CoinbaseJob {
            prev_hash: bitcoin::BlockHash::all_zeros(),
            coinb1: vec![1, 2],
            extranonce1: vec![3],
            extranonce2_size: 2,
            coinb2: vec![4],
            merkle_branch: vec![],
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            version_mask: 0,
            nbits: bitcoin::CompactTarget::from_consensus(0x1d00_ffff),
            ntime,
        };
        Job { id: "p".into(), source: HeaderSource::Coinbase(cb), share_target: Target::MAX, clean: true }
    }

    #[test]
    fn pool_headers_roll_ntime_up_to_the_limit_and_no_further() {
        let job = pool_job(1_700_000_000);
        assert_eq!(job.extranonce2_space(), 65_536);
        assert_eq!(job.ntime_roll_limit(), MAX_NTIME_ROLL);
        assert_eq!(job.header(5).unwrap(), job.header_rolled(5, 0).unwrap());
        let p = job.header_rolled(5, 3).unwrap();
        assert_eq!(p.ntime, 1_700_000_003);
        assert_eq!(ntime_of(&p.bytes), 1_700_000_003);
        assert_eq!(p.extranonce2, vec![5, 0]);
        // Only ntime differs from the unrolled header.
        let base = job.header(5).unwrap();
        assert_eq!(p.bytes[..68], base.bytes[..68]);
        assert_eq!(p.bytes[72..], base.bytes[72..]);
        assert_eq!(job.header_rolled(5, 1_000_000).unwrap().ntime, 1_700_000_000 + MAX_NTIME_ROLL);
        // Never past u32::MAX.
        let late = pool_job(u32::MAX - 10);
        assert_eq!(late.ntime_roll_limit(), 10);
        assert_eq!(late.header_rolled(0, 7_000).unwrap().ntime, u32::MAX);
        // Fixed and synthetic headers keep their ntime.
        let synthetic = Job::synthetic("s", 1, Target::MAX);
        assert_eq!(synthetic.ntime_roll_limit(), 0);
        assert_eq!(synthetic.header_rolled(0, 9).unwrap(), synthetic.header(0).unwrap());
    }

    fn standard_job(ntime: u32) -> Job {
        let sj = StandardJob {
            version: 0x2000_0000,
            prev_hash: [0x5a; 32],
            merkle_root: [0x3c; 32],
            ntime,
            nbits: 0x1b04_04cb,
            version_mask: 0x1fff_e000,
        };
        Job { id: "s".into(), source: HeaderSource::Standard(sj), share_target: Target::MAX, clean: true }
    }

    #[test]
    fn standard_job_is_the_pools_header_with_only_ntime_rolling() {
        let job = standard_job(1_700_000_000);
        assert_eq!(job.extranonce2_space(), 1);
        assert_eq!(job.ntime_roll_limit(), MAX_NTIME_ROLL);
        assert_eq!(job.version_mask(), 0x1fff_e000);
        assert_eq!(job.nbits(), 0x1b04_04cb);
        let p = job.header(0).unwrap();
        assert!(p.extranonce2.is_empty());
        assert_eq!(p.ntime, 1_700_000_000);
        // The header layout: version, prev hash, merkle root, ntime, nbits, nonce (all LE).
        assert_eq!(p.bytes[0..4], 0x2000_0000u32.to_le_bytes());
        assert_eq!(p.bytes[4..36], [0x5a; 32]);
        assert_eq!(p.bytes[36..68], [0x3c; 32]);
        assert_eq!(p.bytes[68..72], 1_700_000_000u32.to_le_bytes());
        assert_eq!(p.bytes[72..76], 0x1b04_04cbu32.to_le_bytes());
        assert_eq!(p.bytes[76..80], [0, 0, 0, 0]);
        // It hashes as the same header bitcoin builds from those fields.
        use bitcoin::hashes::Hash;
        let header = bitcoin::block::Header {
            version: bitcoin::block::Version::from_consensus(0x2000_0000),
            prev_blockhash: bitcoin::BlockHash::from_byte_array([0x5a; 32]),
            merkle_root: bitcoin::TxMerkleNode::from_byte_array([0x3c; 32]),
            time: 1_700_000_000,
            bits: bitcoin::CompactTarget::from_consensus(0x1b04_04cb),
            nonce: 0,
        };
        assert_eq!(bitcoin::consensus::serialize(&header), p.bytes.to_vec());
        // ntime rolls, nothing else changes; clamped at the limit and at u32::MAX.
        let r = job.header_rolled(0, 42).unwrap();
        assert_eq!(r.ntime, 1_700_000_042);
        assert_eq!(ntime_of(&r.bytes), 1_700_000_042);
        assert_eq!(r.bytes[..68], p.bytes[..68]);
        assert_eq!(r.bytes[72..], p.bytes[72..]);
        assert_eq!(job.header_rolled(0, u32::MAX).unwrap().ntime, 1_700_000_000 + MAX_NTIME_ROLL);
        let late = standard_job(u32::MAX - 3);
        assert_eq!(late.ntime_roll_limit(), 3);
        assert_eq!(late.header_rolled(0, 100).unwrap().ntime, u32::MAX);
        // A new mask applies; no extranonce1.
        let mut src = job.source.clone();
        assert!(src.extranonce1().is_empty());
        src.set_version_mask(0x6000);
        assert_eq!(src.version_mask(), 0x6000);
    }

    #[test]
    fn fixed_header_is_one_header_with_its_nonce_cleared() {
        let mut h = [7u8; 80];
        h[72..76].copy_from_slice(&0x1d00_ffffu32.to_le_bytes());
        let job = Job { id: "x".into(), source: HeaderSource::Fixed(h), share_target: Target::MAX, clean: true };
        assert_eq!(job.extranonce2_space(), 1);
        assert_eq!(job.ntime_roll_limit(), 0);
        let p = job.header(0).unwrap();
        assert_eq!(p.bytes[..76], h[..76]);
        assert_eq!(p.bytes[76..], [0, 0, 0, 0]);
        assert_eq!(job.network_target(), crate::target::difficulty_1_target());
    }
}
