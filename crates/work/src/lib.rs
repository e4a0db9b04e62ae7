//! Jobs and work units over bitcoin types: header assembly, targets and difficulty, share checks

pub mod job;
