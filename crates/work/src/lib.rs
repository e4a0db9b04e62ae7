//! Jobs and work units over bitcoin types: header assembly, targets and difficulty, share checks

pub mod job;
pub mod econ;
pub mod mining;
pub mod target;

pub use mining::{HeaderSource, Job, MAX_NTIME_ROLL, PreparedHeader, StandardJob};
