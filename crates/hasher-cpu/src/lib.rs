//! The CPU hasher: the sha256d core's nonce scan spread over a rayon thread pool of its own.
//!
//! What it is for: implementing [`Hasher`] on the CPU. A unit's range is cut into big contiguous
//! batches (2^18 nonces by default); each pool thread claims the next batch from a shared cursor,
//! scans it with one [`Scanner`] kernel, pushes the batch's candidates to the sink, adds the
//! batch's hash count to the control with a single atomic add, and checks the epoch before
//! claiming another. Nothing is shared per hash, and a stale unit leaves nothing to drain.
//!
//! What it is not for: choosing kernels cleverly (the core detects the best one; a kernel can be
//! forced with [`CpuConfig::kernel`]) or verifying what it finds (the engine re-verifies every
//! candidate).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hashrig_hasher::{
    Candidate, Control, DeviceInfo, DeviceKind, Error as HasherError, HashCount, Hasher, NonceRange, Origin,
    Sink, UnitOutcome, WorkUnit,
};
use hashrig_sha256d::{Kernel, ScanJob, Scanner};

/// The default batch: 2^18 nonces, a few milliseconds to tens of milliseconds per thread.
pub const DEFAULT_BATCH: u64 = 1 << 18;

/// Errors opening a CPU hasher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The forced kernel cannot run here.
    #[error("cannot use the requested CPU kernel")]
    Kernel(#[source] hashrig_sha256d::Error),
    /// The thread pool could not be built.
    #[error("cannot start a pool of {threads} CPU threads")]
    Pool {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// Zero threads or a zero batch.
    #[error("invalid CPU hasher option: {0}")]
    Invalid(&'static str),
}

/// How to open a [`CpuHasher`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuConfig {
    /// Threads in the pool; `None` = the cores available to this process.
    pub threads: Option<usize>,
    /// Force a kernel; `None` = the best this CPU has.
    pub kernel: Option<Kernel>,
    /// Nonces per batch; `None` = [`DEFAULT_BATCH`].
    pub batch: Option<u64>,
}

/// The cores available to this process (1 if unknown).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A CPU hasher with its own thread pool.
#[derive(Debug)]
pub struct CpuHasher {
    pool: rayon::ThreadPool,
    scanner: Scanner,
    batch: u64,
    threads: usize,
    info: DeviceInfo,
}

impl CpuHasher {
    /// Open with `cfg`: builds the pool and checks the kernel.
    pub fn new(cfg: &CpuConfig) -> Result<Self, Error> {
        let threads = cfg.threads.unwrap_or_else(available_threads);
        if threads == 0 {
            return Err(Error::Invalid("thread count must be at least 1"));
        }
        let batch = cfg.batch.unwrap_or(DEFAULT_BATCH);
        if batch == 0 {
            return Err(Error::Invalid("batch size must be at least 1"));
        }
        let scanner = match cfg.kernel {
            Some(k) => Scanner::new(k).map_err(Error::Kernel)?,
            None => Scanner::best(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hashrig-cpu-{i}"))
            .build()
            .map_err(|source| Error::Pool { threads, source })?;
        let kernel = scanner.kernel();
        let info = DeviceInfo {
            name: format!("cpu: {threads} thread{}", if threads == 1 { "" } else { "s" }),
            kind: DeviceKind::Cpu,
            kernel: kernel.name().to_owned(),
            lanes: threads as u64 * u64::from(kernel.lanes()),
            nominal_hashrate: None,
            hash_count: HashCount::Exact,
            version_rolling: false,
        };
        Ok(Self { pool, scanner, batch, threads, info })
    }

    /// The best kernel on every available core.
    pub fn with_defaults() -> Result<Self, Error> {
        Self::new(&CpuConfig::default())
    }

    pub fn kernel(&self) -> Kernel {
        self.scanner.kernel()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Hasher for CpuHasher {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, HasherError> {
        let job = ScanJob::new(&unit.header);
        let version = unit.version();
        let range = unit.range;
        let batch = self.batch;
        let batches = range.count().div_ceil(batch);
        let scanner = self.scanner;
        // Each pool thread claims the next batch from this cursor (one atomic add per batch) and
        // stops claiming as soon as the unit is stale: nothing is left to drain afterwards.
        let next = AtomicU64::new(0);
        // Set when the sink's receiver is gone: nobody listens, stop like a stale unit.
        let orphaned = AtomicBool::new(false);
        let per_thread: Vec<u64> = self.pool.broadcast(|_| {
            let mut found = Vec::new();
            let mut done_here = 0u64;
            loop {
                if ctl.is_stale(unit) || orphaned.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    break;
                }
                let start = u64::from(range.start()) + i * batch;
                let count = batch.min(range.end() - start);
                let sub = NonceRange::new(start as u32, count).expect("a batch lies inside the unit's range");
                found.clear();
                let done = scanner.scan(&job, sub, &unit.target, &mut found);
                for &nonce in &found {
                    let c = Candidate { unit_id: unit.id, nonce, version, origin: Origin::default() };
                    if !sink.push(c) {
                        orphaned.store(true, Ordering::Relaxed);
                    }
                }
                ctl.add_hashes(done);
                done_here += done;
            }
            done_here
        });
        let hashes: u64 = per_thread.iter().sum();
        let orphaned = orphaned.load(Ordering::Relaxed);
        Ok(UnitOutcome { hashes, completed: hashes == range.count() && !orphaned })
    }
}
