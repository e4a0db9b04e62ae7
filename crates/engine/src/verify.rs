//! Re-verification: every candidate a hasher returns is hashed again with the portable
//! reference (never the kernel that found it) against the record of its unit; what meets the
//! unit's target becomes a share, the rest are hardware errors.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use hashrig_work::target::{difficulty_of_target, hash_difficulty, reference_sha256d};

use crate::{Candidate, Share, ShareSink, Shared, lock};

impl Shared {
    pub(crate) fn verify(&self, c: Candidate, sink: &mut dyn ShareSink) {
        let (record, epoch) = {
            let d = lock(&self.dispatch);
            (d.units.get(&c.unit_id).cloned(), d.epoch)
        };
        let Some(rec) = record else {
            lock(&self.counters).unknown_candidates += 1;
            tracing::warn!(unit = c.unit_id, "candidate for a unit the engine no longer knows");
            return;
        };
        let mut header = rec.header.prepared.bytes;
        let job_version = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let version_ok = (c.version ^ job_version) & !rec.version_mask == 0;
        header[0..4].copy_from_slice(&c.version.to_le_bytes());
        header[76..80].copy_from_slice(&c.nonce.to_le_bytes());
        let digest = reference_sha256d(&header);
        let valid = version_ok && rec.range.contains(c.nonce) && rec.target.is_met_by(&digest);
        let mut k = lock(&self.counters);
        let dev = &mut k.devices[rec.device];
        if !valid {
            dev.hw_errors += 1;
            *dev.hw_by_origin.entry(c.origin).or_default() += 1;
            tracing::warn!(device = rec.device, chip = ?c.origin.chip, core = ?c.origin.core, nonce = c.nonce, "hardware error: candidate fails verification");
            return;
        }
        dev.valid_nonces += 1;
        dev.nonce_difficulty_sum += difficulty_of_target(&rec.target);
        let job = &rec.header.job;
        if !job.share_target.is_met_by(&digest) {
            return; // A valid nonce for an easier unit target, below share difficulty.
        }
        if rec.epoch != epoch {
            k.stale += 1;
            tracing::debug!(job = %job.id, nonce = c.nonce, "stale share (a clean job replaced its work)");
            return;
        }
        let is_block = job.network_target().is_met_by(&digest);
        k.shares += 1;
        if is_block {
            k.blocks += 1;
        }
        drop(k);
        let p = &rec.header.prepared;
        sink.submit(Share {
            job_id: job.id.clone(),
            extranonce2: p.extranonce2.clone(),
            extranonce2_counter: p.extranonce2_counter,
            ntime: p.ntime,
            nonce: c.nonce,
            version: c.version,
            header,
            digest,
            difficulty: hash_difficulty(&digest),
            is_block,
            device: rec.device,
            origin: c.origin,
        });
    }
}

pub(crate) fn verifier(shared: &Shared, rx: &mpsc::Receiver<Candidate>, mut sink: impl ShareSink) {
    let interval = shared.cfg.sample_interval;
    let mut next_sample = shared.started + interval;
    loop {
        let wait = next_sample.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        match rx.recv_timeout(wait) {
            Ok(c) => shared.verify(c, &mut sink),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_sample {
            shared.take_sample();
            next_sample += interval;
        }
    }
    shared.take_sample();
}
