//! The conformance kit: the checks every backend's own tests run against an open [`Hasher`].
//!
//! What it is for: one definition of "a correct hasher", shared by the CPU, GPU and ASIC
//! backends. Every answer is compared with the `sha2` crate (never with our own kernels), and
//! real block headers anchor the whole thing (mainnet genesis from Bitcoin Core's
//! `src/kernel/chainparams.cpp` and block 125552 from the Bitcoin wiki page "Block hashing
//! algorithm"; the same headers, hashes and sources are in `crates/sha256d/tests/data/blocks.txt`).
//!
//! What it is not for: speed. Sizes come from a [`KitConfig`], so a slow backend (a GPU on a
//! software driver, an emulated ASIC chain) passes in seconds with [`KitConfig::slow`] while the
//! CPU backend sweeps more with [`KitConfig::fast`].
//!
//! Each check returns `Ok(())` or a [`Failure`] naming the check and what went wrong;
//! [`run_all`] runs them in order and stops at the first failure.
//!
//! ```ignore
//! let mut h = MyHasher::open()?;
//! hashrig_hasher::testkit::run_all(&mut h, &KitConfig::fast()).unwrap();
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Candidate, Control, HashCount, Hasher, NonceRange, Sink, Target, UnitOutcome, WorkUnit};

/// The mainnet genesis block header (nonce 2083236893, nbits 0x1d00ffff).
pub const GENESIS_HEADER: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
/// Its block hash, display order.
pub const GENESIS_HASH: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
/// Mainnet block 125552 (nonce 2504433986, nbits 0x1a44b9f2), from the Bitcoin wiki.
pub const BLOCK_125552_HEADER: &str = "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695";
/// Its block hash, display order.
pub const BLOCK_125552_HASH: &str = "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d";

/// A real block for known-answer tests.
#[derive(Clone, Copy, Debug)]
pub struct RealBlock {
    pub name: &'static str,
    /// The whole header, as hashed, in hex.
    pub header_hex: &'static str,
    /// The block hash in display order, in hex.
    pub hash_hex: &'static str,
    pub nonce: u32,
    pub nbits: u32,
}

/// The real blocks every backend must find.
pub const REAL_BLOCKS: [RealBlock; 2] = [
    RealBlock {
        name: "mainnet genesis",
        header_hex: GENESIS_HEADER,
        hash_hex: GENESIS_HASH,
        nonce: 2_083_236_893,
        nbits: 0x1d00_ffff,
    },
    RealBlock {
        name: "mainnet block 125552",
        header_hex: BLOCK_125552_HEADER,
        hash_hex: BLOCK_125552_HASH,
        nonce: 2_504_433_986,
        nbits: 0x1a44_b9f2,
    },
];

impl RealBlock {
    /// The 80-byte header.
    pub fn header(&self) -> [u8; 80] {
        let bytes = hex::decode(self.header_hex).expect("the real block headers are valid hex");
        bytes.try_into().expect("the real block headers are 80 bytes")
    }

    /// The target its nbits field encodes.
    pub fn target(&self) -> Target {
        target_from_nbits(self.nbits)
    }
}

/// Expand a compact `nbits` target (positive values only; the kit's blocks are real ones).
pub fn target_from_nbits(nbits: u32) -> Target {
    let exponent = nbits >> 24;
    let mantissa = nbits & 0x007f_ffff;
    let mut le = [0u8; 32];
    if exponent <= 3 {
        let value = mantissa >> (8 * (3 - exponent));
        le[..4].copy_from_slice(&value.to_le_bytes());
    } else {
        // Byte i of the mantissa lands at byte exponent - 3 + i of the integer.
        for (i, byte) in mantissa.to_le_bytes()[..3].iter().enumerate() {
            let pos = exponent as usize - 3 + i;
            if pos < 32 {
                le[pos] = *byte;
            }
        }
    }
    Target::from_le_bytes(le)
}

/// A target that about one hash in `one_in` meets (`one_in` a power of two up to 2^32).
pub fn easy_target(one_in: u64) -> Target {
    assert!(one_in.is_power_of_two() && one_in <= 1 << 32, "one_in must be a power of two <= 2^32");
    let bits = one_in.trailing_zeros();
    let mut le = [0xffu8; 32];
    // The top 32 bits of the target are 2^(32 - bits) - 1.
    let top = if bits == 0 { u32::MAX } else { ((1u64 << (32 - bits)) - 1) as u32 };
    le[28..32].copy_from_slice(&top.to_le_bytes());
    Target::from_le_bytes(le)
}

/// The reference: sha256d of an 80-byte header with `nonce` in place, by the `sha2` crate.
pub fn reference_digest(header: &[u8; 80], nonce: u32) -> [u8; 32] {
    let mut h = *header;
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    let first = Sha256::digest(h);
    Sha256::digest(first).into()
}

/// Every nonce of `range` whose reference sha256d meets `target`.
pub fn reference_set(header: &[u8; 80], range: NonceRange, target: &Target) -> BTreeSet<u32> {
    (range.start() as u64..range.end())
        .map(|n| n as u32)
        .filter(|&n| target.is_met_by(&reference_digest(header, n)))
        .collect()
}

/// How big the kit's sweeps are: pick by the backend's speed.
#[derive(Clone, Debug)]
pub struct KitConfig {
    /// Nonces swept around each real block's nonce.
    pub real_block_window: u64,
    /// Nonces swept for the easy-target check (about one in 256 meets it).
    pub easy_range: u64,
    /// Nonces swept at each end of the nonce space.
    pub end_range: u64,
    /// How long a hasher may take to return after the epoch moves on.
    pub stop_bound: Duration,
    /// Nonces hashed for the exact-count check.
    pub count_range: u64,
}

impl KitConfig {
    /// For backends doing millions of hashes per second (CPU, GPU hardware).
    pub fn fast() -> Self {
        Self {
            real_block_window: 1 << 16,
            easy_range: (1 << 18) + 13,
            end_range: 1027,
            stop_bound: Duration::from_secs(2),
            count_range: (1 << 18) + 7,
        }
    }

    /// For slow backends (a software GPU driver, an emulated ASIC chain): small sweeps.
    pub fn slow() -> Self {
        Self {
            real_block_window: 1 << 12,
            easy_range: 4096 + 13,
            end_range: 67,
            stop_bound: Duration::from_secs(2),
            count_range: 4096 + 7,
        }
    }
}

/// A failed check: which one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conformance check `{}` failed: {}", self.check, self.detail)
    }
}

impl std::error::Error for Failure {}

fn fail(check: &'static str, detail: impl Into<String>) -> Failure {
    Failure { check, detail: detail.into() }
}

/// Run one unit to the end and collect what the hasher claims.
fn sweep(
    check: &'static str,
    hasher: &mut dyn Hasher,
    header: [u8; 80],
    range: NonceRange,
    target: Target,
) -> Result<(UnitOutcome, Vec<Candidate>, Control), Failure> {
    let ctl = Control::new();
    let (sink, rx) = Sink::channel();
    let unit = WorkUnit { id: 7, epoch: ctl.epoch(), header, range, target, version_mask: 0 };
    let outcome = hasher
        .hash(&unit, &ctl, &sink)
        .map_err(|e| fail(check, format!("hash() returned an error: {e}")))?;
    drop(sink);
    let found: Vec<Candidate> = rx.try_iter().collect();
    for c in &found {
        if c.unit_id != unit.id {
            return Err(fail(check, format!("candidate names unit {} instead of {}", c.unit_id, unit.id)));
        }
        if c.version != unit.version() {
            return Err(fail(check, format!("candidate has version {:#x}, unit had {:#x} and no mask", c.version, unit.version())));
        }
    }
    if !outcome.completed {
        return Err(fail(check, "the unit was not completed although nothing made it stale"));
    }
    Ok((outcome, found, ctl))
}

fn nonce_set(check: &'static str, found: &[Candidate]) -> Result<BTreeSet<u32>, Failure> {
    let mut set = BTreeSet::new();
    for c in found {
        if !set.insert(c.nonce) {
            return Err(fail(check, format!("nonce {:#010x} was reported twice", c.nonce)));
        }
    }
    Ok(set)
}

fn describe_diff(got: &BTreeSet<u32>, want: &BTreeSet<u32>) -> String {
    let missing: Vec<String> = want.difference(got).take(8).map(|n| format!("{n:#010x}")).collect();
    let extra: Vec<String> = got.difference(want).take(8).map(|n| format!("{n:#010x}")).collect();
    format!(
        "hasher found {} nonces, reference {}; missing (first 8): [{}]; extra (first 8): [{}]",
        got.len(),
        want.len(),
        missing.join(", "),
        extra.join(", ")
    )
}

/// A range of `width` nonces around `nonce`, clamped to the nonce space.
fn window_around(nonce: u32, width: u64) -> NonceRange {
    let start = u64::from(nonce).saturating_sub(width / 2);
    let count = width.min((1u64 << 32) - start);
    NonceRange::new(start as u32, count).expect("clamped to the nonce space")
}

/// Finds each real block's nonce at its own nbits target, and nothing else in the window.
pub fn finds_real_block_nonces(hasher: &mut dyn Hasher, cfg: &KitConfig) -> Result<(), Failure> {
    const CHECK: &str = "finds_real_block_nonces";
    for block in REAL_BLOCKS {
        let header = block.header();
        // The anchor itself: the reference must agree with the published block hash.
        let mut display = reference_digest(&header, block.nonce);
        display.reverse();
        if hex::encode(display) != block.hash_hex {
            return Err(fail(CHECK, format!("{}: the reference disagrees with the published hash", block.name)));
        }
        let range = window_around(block.nonce, cfg.real_block_window);
        let (_, found, _) = sweep(CHECK, hasher, header, range, block.target())?;
        let got = nonce_set(CHECK, &found)?;
        if !got.contains(&block.nonce) {
            return Err(fail(
                CHECK,
                format!("{}: nonce {} not found in {range:?}; {}", block.name, block.nonce, describe_diff(&got, &BTreeSet::from([block.nonce])))
            ));
        }
        let want = reference_set(&header, range, &block.target());
        if got != want {
            return Err(fail(CHECK, format!("{}: {}", block.name, describe_diff(&got, &want))));
        }
    }
    Ok(())
}

/// A header that is not a real block (so nothing is special about it), fixed for repeatability.
pub fn synthetic_header(tag: u8) -> [u8; 80] {
    let mut h = REAL_BLOCKS[1].header();
    for (i, b) in h[4..76].iter_mut().enumerate() {
        *b ^= tag.wrapping_mul(31).wrapping_add(i as u8);
    }
    h
}

/// Under an easy target (about 1 in 256), finds exactly the nonces the reference finds, from an
/// odd start and with a count that is not a multiple of any lane width.
pub fn finds_reference_set_under_easy_target(hasher: &mut dyn Hasher, cfg: &KitConfig) -> Result<(), Failure> {
    const CHECK: &str = "finds_reference_set_under_easy_target";
    let header = synthetic_header(1);
    let target = easy_target(256);
    let range = NonceRange::new(1_000_003, cfg.easy_range).expect("a small range near the start");
    let (_, found, _) = sweep(CHECK, hasher, header, range, target)?;
    let got = nonce_set(CHECK, &found)?;
    let want = reference_set(&header, range, &target);
    if want.is_empty() {
        return Err(fail(CHECK, "the reference found nothing: the kit's range is too small to test anything"));
    }
    if got != want {
        return Err(fail(CHECK, describe_diff(&got, &want)));
    }
    Ok(())
}

/// Sweeps ranges to their ends: the last `end_range` nonces (2^32 - 1 included), a range of one
/// at 2^32 - 1 and at 0, and an empty range. Uses the maximum target, so every nonce is reported.
pub fn honours_range_ends(hasher: &mut dyn Hasher, cfg: &KitConfig) -> Result<(), Failure> {
    const CHECK: &str = "honours_range_ends";
    let header = synthetic_header(2);
    let last = u32::MAX;
    let cases = [
        NonceRange::new((1u64 << 32).saturating_sub(cfg.end_range) as u32, cfg.end_range).expect("ends at 2^32"),
        NonceRange::new(last, 1).expect("one nonce"),
        NonceRange::new(0, 1).expect("one nonce"),
        NonceRange::new(0, cfg.end_range).expect("near zero"),
        NonceRange::new(123_456, 0).expect("empty"),
    ];
    for range in cases {
        let (outcome, found, _) = sweep(CHECK, hasher, header, range, Target::MAX)?;
        let got = nonce_set(CHECK, &found)?;
        let want: BTreeSet<u32> = (u64::from(range.start())..range.end()).map(|n| n as u32).collect();
        if got != want {
            return Err(fail(CHECK, format!("{range:?} under the maximum target: {}", describe_diff(&got, &want))));
        }
        if hasher.info().hash_count == HashCount::Exact && outcome.hashes != range.count() {
            return Err(fail(CHECK, format!("{range:?}: reported {} hashes", outcome.hashes)));
        }
    }
    Ok(())
}

/// A hasher sweeping a huge range returns within `cfg.stop_bound` after the epoch moves on,
/// says the unit was not completed, and stops counting hashes.
pub fn stops_after_epoch_bump(hasher: &mut dyn Hasher, cfg: &KitConfig) -> Result<(), Failure> {
    const CHECK: &str = "stops_after_epoch_bump";
    let ctl = Control::new();
    let (sink, _rx) = Sink::channel();
    // A target nothing meets (only an all-zero hash would): the hasher has nothing to report.
    let unit = WorkUnit {
        id: 9,
        epoch: ctl.epoch(),
        header: synthetic_header(3),
        range: NonceRange::FULL,
        target: Target::from_le_bytes([0; 32]),
        version_mask: 0,
    };
    let (done_tx, done_rx) = mpsc::channel::<(Result<UnitOutcome, crate::Error>, Instant)>();
    std::thread::scope(|s| {
        let worker_ctl = ctl.clone();
        let unit = &unit;
        let sink = &sink;
        s.spawn(move || {
            let r = hasher.hash(unit, &worker_ctl, sink);
            let _ = done_tx.send((r, Instant::now()));
        });
        // Let it get going: wait for the first hashes (or a while, for devices that count late).
        let started = Instant::now();
        while ctl.hashes() == 0 && started.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok((r, _)) = done_rx.try_recv() {
            return Err(fail(CHECK, format!("hash() returned before the bump on a 2^32 range: {:?}", r.map(|o| o.completed))));
        }
        let bumped_at = Instant::now();
        ctl.bump_epoch();
        let (result, returned_at) = match done_rx.recv_timeout(cfg.stop_bound) {
            Ok(v) => v,
            Err(_) => {
                // Make it stop somehow so the scope can end, then report.
                ctl.shutdown();
                eprintln!("{CHECK}: the hasher did not stop within {:?} of the epoch bump", cfg.stop_bound);
                return Err(fail(CHECK, format!("did not return within {:?} after the epoch bump", cfg.stop_bound)));
            }
        };
        let outcome = result.map_err(|e| fail(CHECK, format!("hash() returned an error: {e}")))?;
        if outcome.completed {
            return Err(fail(CHECK, "the unit says completed although its epoch ended"));
        }
        let took = returned_at - bumped_at;
        if took > cfg.stop_bound {
            return Err(fail(CHECK, format!("took {took:?} to stop (bound {:?})", cfg.stop_bound)));
        }
        let after_return = ctl.hashes();
        std::thread::sleep(Duration::from_millis(100));
        if ctl.hashes() != after_return {
            return Err(fail(CHECK, "the hash counter kept moving after hash() returned"));
        }
        if outcome.hashes >= 1 << 32 {
            return Err(fail(CHECK, "claims to have hashed the whole range before stopping"));
        }
        Ok(())
    })
}

/// Hash counts: the control's counter, the unit outcome and the range agree (exact devices);
/// estimated devices must at least agree between the outcome and the counter.
pub fn counts_hashes_correctly(hasher: &mut dyn Hasher, cfg: &KitConfig) -> Result<(), Failure> {
    const CHECK: &str = "counts_hashes_correctly";
    let range = NonceRange::new(77, cfg.count_range).expect("a small range");
    let (outcome, _, ctl) = sweep(CHECK, hasher, synthetic_header(4), range, easy_target(1 << 16))?;
    if ctl.hashes() != outcome.hashes {
        return Err(fail(CHECK, format!("control counted {} hashes, outcome says {}", ctl.hashes(), outcome.hashes)));
    }
    if hasher.info().hash_count == HashCount::Exact && outcome.hashes != range.count() {
        return Err(fail(CHECK, format!("an exact device hashed {} nonces of a {}-nonce range", outcome.hashes, range.count())));
    }
    Ok(())
}

/// Run every check in order; the first failure stops the run.
pub fn run_all(hasher: &mut dyn Hasher, cfg: &KitConfig) -> Result<(), Failure> {
    finds_real_block_nonces(hasher, cfg)?;
    finds_reference_set_under_easy_target(hasher, cfg)?;
    honours_range_ends(hasher, cfg)?;
    counts_hashes_correctly(hasher, cfg)?;
    stops_after_epoch_bump(hasher, cfg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbits_expansion_matches_the_difficulty_one_target() {
        let t = target_from_nbits(0x1d00_ffff);
        let mut be = t.0;
        be.reverse();
        assert_eq!(hex::encode(be), "00000000ffff0000000000000000000000000000000000000000000000000000");
    }

    #[test]
    fn real_blocks_meet_their_own_targets_by_the_reference() {
        for b in REAL_BLOCKS {
            assert!(b.target().is_met_by(&reference_digest(&b.header(), b.nonce)), "{}", b.name);
            assert!(!b.target().is_met_by(&reference_digest(&b.header(), b.nonce ^ 1)), "{}", b.name);
        }
    }

    /// A slow but simple hasher over the reference, with switchable bugs, to prove the kit bites.
    struct RefHasher {
        info: crate::DeviceInfo,
        skip_last: bool,
        ignore_epoch: bool,
    }

    impl RefHasher {
        fn new(skip_last: bool, ignore_epoch: bool) -> Self {
            let info = crate::DeviceInfo {
                name: "reference".into(),
                kind: crate::DeviceKind::Cpu,
                kernel: "sha2".into(),
                lanes: 1,
                nominal_hashrate: None,
                hash_count: HashCount::Exact,
                version_rolling: false,
            };
            Self { info, skip_last, ignore_epoch }
        }
    }

    impl Hasher for RefHasher {
        fn info(&self) -> &crate::DeviceInfo {
            &self.info
        }

        fn hash(&mut self, unit: &WorkUnit, ctl: &Control, sink: &Sink) -> Result<UnitOutcome, crate::Error> {
            let end = if self.skip_last { unit.range.end().saturating_sub(1) } else { unit.range.end() };
            let mut done = 0;
            for n in u64::from(unit.range.start())..end {
                let stop = if self.ignore_epoch { ctl.is_shutdown() } else { ctl.is_stale(unit) };
                if stop {
                    ctl.add_hashes(done);
                    return Ok(UnitOutcome { hashes: done, completed: false });
                }
                if unit.target.is_met_by(&reference_digest(&unit.header, n as u32)) {
                    sink.push(Candidate { unit_id: unit.id, nonce: n as u32, version: unit.version(), origin: Default::default() });
                }
                done += 1;
            }
            ctl.add_hashes(done);
            Ok(UnitOutcome { hashes: done, completed: true })
        }
    }

    #[test]
    fn a_correct_reference_hasher_passes_the_slow_kit() {
        run_all(&mut RefHasher::new(false, false), &KitConfig::slow()).unwrap_or_else(|f| panic!("{f}"));
    }

    #[test]
    fn a_hasher_that_drops_the_last_nonce_fails_the_range_end_check() {
        let f = honours_range_ends(&mut RefHasher::new(true, false), &KitConfig::slow()).unwrap_err();
        assert_eq!(f.check, "honours_range_ends");
        assert!(f.detail.contains("0xffffffff"), "{f}");
    }

    #[test]
    fn a_hasher_that_ignores_the_epoch_fails_the_stop_check() {
        let cfg = KitConfig { stop_bound: Duration::from_millis(200), ..KitConfig::slow() };
        let f = stops_after_epoch_bump(&mut RefHasher::new(false, true), &cfg).unwrap_err();
        assert_eq!(f.check, "stops_after_epoch_bump");
    }

    #[test]
    fn easy_target_admits_about_the_asked_share() {
        let h = synthetic_header(9);
        let range = NonceRange::new(0, 1 << 14).unwrap();
        let n = reference_set(&h, range, &easy_target(64)).len();
        // Expect 256; a binomial with p = 1/64 stays well inside this band.
        assert!((180..340).contains(&n), "{n} of 16384 met a 1-in-64 target");
    }
}
