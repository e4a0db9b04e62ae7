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

/// Where a job's headers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderSource {
    /// A pool's `mining.notify` or a node's template: extranonce2 is rolled by counter.
    Coinbase(CoinbaseJob),
    /// One fixed header (its nonce field ignored): 2^32 nonces and no more.
    Fixed([u8; 80]),
    /// A made-up header whose merkle root changes with the extranonce2 counter; never runs out.
    Synthetic([u8; 80]),
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
            HeaderSource::Fixed(_) => 1,
            HeaderSource::Synthetic(_) => u64::MAX,
        }
    }

    /// The header for extranonce2 counter `counter` (below [`Self::extranonce2_space`]).
    pub fn header(&self, counter: u64) -> Result<PreparedHeader, JobError> {
        match &self.source {
            HeaderSource::Coinbase(cb) => {
                let en2 = extranonce2_from_counter(counter, cb.extranonce2_size);
                let header = cb.header(&en2, cb.ntime, cb.version_bits(), 0)?;
                Ok(PreparedHeader { bytes: header_bytes(&header), extranonce2: en2, extranonce2_counter: counter, ntime: cb.ntime })
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
        match &self.source {
            HeaderSource::Coinbase(cb) => cb.version_mask,
            _ => 0,
        }
    }

    /// The job's `nbits`.
    pub fn nbits(&self) -> u32 {
        match &self.source {
            HeaderSource::Coinbase(cb) => cb.nbits.to_consensus(),
            HeaderSource::Fixed(h) | HeaderSource::Synthetic(h) => u32::from_le_bytes([h[72], h[73], h[74], h[75]]),
        }
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

    #[test]
    fn fixed_header_is_one_header_with_its_nonce_cleared() {
        let mut h = [7u8; 80];
        h[72..76].copy_from_slice(&0x1d00_ffffu32.to_le_bytes());
        let job = Job { id: "x".into(), source: HeaderSource::Fixed(h), share_target: Target::MAX, clean: true };
        assert_eq!(job.extranonce2_space(), 1);
        let p = job.header(0).unwrap();
        assert_eq!(p.bytes[..76], h[..76]);
        assert_eq!(p.bytes[76..], [0, 0, 0, 0]);
        assert_eq!(job.network_target(), crate::target::difficulty_1_target());
    }
}
