//! Cutting the current job into work units: the extranonce2 counter, ntime rolling, the scans
//! of recent jobs to resume, and the record of every unit handed out (what a candidate is
//! checked against).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hashrig_sha256d::{NonceRange, Target};
use hashrig_work::{Job, PreparedHeader};

use crate::{Shared, WorkUnit, lock};

#[derive(Debug)]
pub(crate) struct UnitHeader {
    pub(crate) job: Arc<Job>,
    pub(crate) prepared: PreparedHeader,
}

#[derive(Clone, Debug)]
pub(crate) struct UnitRecord {
    pub(crate) header: Arc<UnitHeader>,
    pub(crate) epoch: u64,
    pub(crate) target: Target,
    pub(crate) version_mask: u32,
    pub(crate) range: NonceRange,
    pub(crate) device: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    pub(crate) epoch: u64,
    pub(crate) job: Option<Arc<Job>>,
    pub(crate) next_counter: u64,
    /// Seconds ntime is rolled past the job's: it moves on by one each time every extranonce2
    /// value has been handed out (up to [`Job::ntime_roll_limit`]).
    pub(crate) ntime_offset: u32,
    pub(crate) current: Option<(Arc<UnitHeader>, NonceRange)>,
    pub(crate) next_unit_id: u64,
    pub(crate) units: BTreeMap<u64, UnitRecord>,
    /// Where the scans of recent jobs stopped (header source, next extranonce2 counter, ntime
    /// offset), newest last: a job given back (a failback to a pool that resumed its session)
    /// goes on from there instead of finding its shares again.
    pub(crate) left_scans: VecDeque<(hashrig_work::HeaderSource, u64, u32)>,
}

/// Scans of earlier jobs remembered for [`Dispatch::left_scans`]: as many as the miner keeps
/// jobs in its book (64), so a pool's job that the miner still knows is never scanned twice.
/// With 16, the soak's failbacks to a session-resuming pool after a busy stint on another found
/// 274 shares a second time in 90 s; with 64, none. A source is about 1 KB.
pub(crate) const LEFT_SCANS: usize = 64;

/// Unit records kept for verification; older ones are forgotten.
pub(crate) const MAX_UNIT_RECORDS: usize = 1 << 16;

impl Shared {
    pub(crate) fn next_unit(&self, device: usize, size: u64) -> Option<WorkUnit> {
        let mut d = lock(&self.dispatch);
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return None;
            }
            if self.paused.is_paused(device) {
                // Wait for a resume; the timeout below re-checks every 100 ms.
            } else if let Some(unit) = self.cut_unit(&mut d, device, size) {
                return Some(unit);
            }
            d = self.work_ready.wait_timeout(d, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    pub(crate) fn cut_unit(&self, d: &mut Dispatch, device: usize, size: u64) -> Option<WorkUnit> {
        let job = d.job.clone()?;
        let need_header = match &d.current {
            None => true,
            Some((_, rest)) => rest.is_empty(),
        };
        if need_header {
            if d.next_counter >= job.extranonce2_space() {
                if d.ntime_offset >= job.ntime_roll_limit() {
                    return None; // This job has no more headers: wait for the next one.
                }
                // Every extranonce2 value is used: start over one second later.
                d.ntime_offset += 1;
                d.next_counter = 0;
                tracing::debug!(job = %job.id, ntime_offset = d.ntime_offset, "extranonce2 space used up: ntime rolled");
            }
            let counter = d.next_counter;
            d.next_counter += 1;
            match job.header_rolled(counter, d.ntime_offset) {
                Ok(prepared) => {
                    d.current = Some((Arc::new(UnitHeader { job: job.clone(), prepared }), NonceRange::FULL));
                }
                Err(error) => {
                    tracing::error!(job = %job.id, counter, %error, "cannot build a header for this job");
                    d.current = None;
                    // No header of this job will build: no extranonce2 or ntime roll either.
                    d.next_counter = u64::MAX;
                    d.ntime_offset = u32::MAX;
                    return None;
                }
            }
        }
        let (header, rest) = d.current.as_mut().expect("a header is ready");
        let range = rest.take_front(size);
        let header = header.clone();
        let id = d.next_unit_id;
        d.next_unit_id += 1;
        let version_mask = if self.infos[device].version_rolling { job.version_mask() } else { 0 };
        let unit = WorkUnit {
            id,
            epoch: d.epoch,
            header: header.prepared.bytes,
            range,
            target: job.share_target,
            version_mask,
        };
        d.units.insert(id, UnitRecord { header, epoch: d.epoch, target: job.share_target, version_mask, range, device });
        while d.units.len() > MAX_UNIT_RECORDS {
            d.units.pop_first();
        }
        Some(unit)
    }
}
