//! The mining engine: jobs to work units to hashers to re-verified shares; stats
