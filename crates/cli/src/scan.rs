//! `hashrig scan`: a known-answer tool for testers. Sweeps a nonce range of one header (its own
//! nonce field ignored) and lists every nonce that meets the target, each re-verified with the
//! portable reference, with its block hash in display order. Exit 0 found, 1 none, 2 bad input.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use hashrig_hasher::{Control, Hasher, NonceRange, Sink, Target, WorkUnit};
use hashrig_work::target::{
    difficulty_of_target, display_hash, hash_difficulty, parse_target_hex, reference_sha256d, target_from_difficulty,
    target_from_nbits,
};

use crate::backend;
use crate::bad_input;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The 80-byte block header in hex (160 hex digits); its nonce field is ignored.
    #[arg(long)]
    pub header: String,
    /// First nonce.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Nonces to sweep (default: from --start to the last nonce).
    #[arg(long)]
    pub count: Option<u64>,
    /// Target as 64 hex digits, big-endian (default: the header's own nbits target).
    #[arg(long, conflicts_with = "difficulty")]
    pub target: Option<String>,
    /// Target as a pool difficulty (1 = 0x00000000ffff0000...).
    #[arg(long)]
    pub difficulty: Option<f64>,
    #[command(flatten)]
    pub device: backend::DeviceArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One nonce that met the target.
#[derive(Debug, serde::Serialize)]
pub struct Found {
    pub nonce: u32,
    pub nonce_hex: String,
    /// Block hash, display order.
    pub hash: String,
    pub difficulty: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct ScanReport {
    pub start: u32,
    pub count: u64,
    /// Big-endian hex.
    pub target: String,
    pub target_difficulty: f64,
    pub found: Vec<Found>,
    pub hashes: u64,
    pub seconds: f64,
    /// Candidates the backend claimed that failed the reference check (not listed).
    pub hw_errors: u64,
}

/// A validated scan.
#[derive(Debug)]
pub struct ScanPlan {
    pub header: [u8; 80],
    pub range: NonceRange,
    pub target: Target,
}

/// Validate the flags: every problem is bad input.
pub fn plan(a: &ScanArgs) -> anyhow::Result<ScanPlan> {
    let text: String = a.header.chars().filter(|c| !c.is_whitespace()).collect();
    let text = text.strip_prefix("0x").unwrap_or(&text);
    let bytes = hex::decode(text).map_err(|e| bad_input(format!("--header is not valid hex: {e}")))?;
    let header: [u8; 80] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| bad_input(format!("--header must be 80 bytes (160 hex digits), got {} bytes", b.len())))?;
    if a.start >= 1 << 32 {
        return Err(bad_input(format!("--start {} is beyond the last nonce 4294967295", a.start)));
    }
    let count = a.count.unwrap_or((1 << 32) - a.start);
    if count == 0 {
        return Err(bad_input("--count must be at least 1"));
    }
    if count > 1 << 32 {
        return Err(bad_input(format!("--count {count} is more than the 2^32 nonces there are")));
    }
    let range = NonceRange::new(a.start as u32, count).map_err(|e| bad_input(e.to_string()))?;
    let target = match (&a.target, a.difficulty) {
        (Some(t), _) => parse_target_hex(t).map_err(|e| bad_input(e.to_string()))?,
        (None, Some(d)) => target_from_difficulty(d).map_err(|e| bad_input(e.to_string()))?,
        (None, None) => target_from_nbits(u32::from_le_bytes([header[72], header[73], header[74], header[75]])),
    };
    Ok(ScanPlan { header, range, target })
}

pub fn run(a: &ScanArgs) -> anyhow::Result<ExitCode> {
    let p = plan(a)?;
    let (spec, cpu) = a.device.resolve()?;
    let mut hashers = backend::open(&spec, &cpu)?;
    let report = scan(&mut hashers, &p)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::outln!("target {} (difficulty {:.6})", report.target, report.target_difficulty)?;
        for f in &report.found {
            crate::outln!("nonce {} ({}) hash {} difficulty {:.3}", f.nonce, f.nonce_hex, f.hash, f.difficulty)?;
        }
        crate::outln!("{} found in {} nonces from {} ({:.2} s)", report.found.len(), report.count, report.start, report.seconds)?;
    }
    if report.hw_errors > 0 {
        eprintln!("warning: {} candidate(s) from the backend failed the reference check and are not listed", report.hw_errors);
    }
    if report.found.is_empty() {
        eprintln!("no nonce in the range meets the target");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Sweep the plan's range, split evenly over the hashers, and re-verify what they claim.
pub fn scan(hashers: &mut [Box<dyn Hasher>], p: &ScanPlan) -> anyhow::Result<ScanReport> {
    let started = Instant::now();
    let ctl = Control::new();
    let (sink, rx) = Sink::channel();
    let n = hashers.len().max(1) as u64;
    let share = p.range.count().div_ceil(n);
    let mut rest = p.range;
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, h) in hashers.iter_mut().enumerate() {
            let range = rest.take_front(share);
            let unit = WorkUnit { id: i as u64, epoch: ctl.epoch(), header: p.header, range, target: p.target, version_mask: 0 };
            let (ctl, sink) = (ctl.clone(), sink.clone());
            handles.push(s.spawn(move || -> anyhow::Result<u64> { Ok(h.hash(&unit, &ctl, &sink)?.hashes) }));
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a hasher thread panicked")))).collect()
    });
    drop(sink);
    let mut hashes = 0;
    for r in results {
        hashes += r?;
    }
    let mut nonces: Vec<u32> = rx.try_iter().map(|c| c.nonce).collect();
    nonces.sort_unstable();
    nonces.dedup();
    let mut found = Vec::new();
    let mut hw_errors = 0;
    for nonce in nonces {
        let mut h = p.header;
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        let digest = reference_sha256d(&h);
        if p.range.contains(nonce) && p.target.is_met_by(&digest) {
            found.push(Found { nonce, nonce_hex: format!("{nonce:#010x}"), hash: display_hash(&digest), difficulty: hash_difficulty(&digest) });
        } else {
            hw_errors += 1;
        }
    }
    let mut be = p.target.0;
    be.reverse();
    Ok(ScanReport {
        start: p.range.start(),
        count: p.range.count(),
        target: hex::encode(be),
        target_difficulty: difficulty_of_target(&p.target),
        found,
        hashes,
        seconds: started.elapsed().as_secs_f64(),
        hw_errors,
    })
}
