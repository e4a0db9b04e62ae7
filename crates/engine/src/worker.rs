//! One thread per hasher: take a unit, hash it, count what it did; a device that fails
//! [`MAX_DEVICE_ERRORS_IN_A_ROW`] times in a row is dropped from the run with its last error.

use std::time::{Duration, Instant};

use crate::{Hasher, Shared, Sink, lock};
use hashrig_hasher::error_chain;

/// Errors in a row after which a device is dropped from the run.
const MAX_DEVICE_ERRORS_IN_A_ROW: u32 = 3;

pub(crate) fn worker(shared: &Shared, index: usize, mut hasher: Box<dyn Hasher>, sink: &Sink) {
    let ctl = shared.controls[index].clone();
    let info = &shared.infos[index];
    let min = shared.cfg.min_unit_hashes.max(info.lanes);
    let mut measured: Option<f64> = None;
    let mut errors_in_a_row = 0;
    loop {
        let size = match measured.or(info.nominal_hashrate) {
            Some(r) => ((r * shared.cfg.unit_seconds) as u64).clamp(min, 1 << 32),
            None => shared.cfg.first_unit_hashes.max(min),
        };
        let Some(unit) = shared.next_unit(index, size) else { break };
        let t0 = Instant::now();
        match hasher.hash(&unit, &ctl, sink) {
            Ok(outcome) => {
                errors_in_a_row = 0;
                let dt = t0.elapsed().as_secs_f64();
                if outcome.hashes > 0 && dt > 0.005 {
                    let now = outcome.hashes as f64 / dt;
                    measured = Some(measured.map_or(now, |r| 0.5 * r + 0.5 * now));
                }
            }
            Err(error) => {
                errors_in_a_row += 1;
                tracing::error!(device = %info.name, %error, "hasher error");
                let mut k = lock(&shared.counters);
                let dev = &mut k.devices[index];
                dev.device_errors += 1;
                dev.last_error = Some(error_chain(&error));
                if errors_in_a_row >= MAX_DEVICE_ERRORS_IN_A_ROW {
                    dev.failed = true;
                    tracing::error!(device = %info.name, "device failed {errors_in_a_row} times in a row: dropped from the run");
                    break;
                }
                drop(k);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
