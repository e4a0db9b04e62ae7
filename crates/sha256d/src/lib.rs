//! The double-SHA-256 core of hashrig: what a miner does billions of times a second.
//!
//! What it is for: given the first 64 bytes of a Bitcoin block header (compressed once into a
//! [`Midstate`]) and the 12 header bytes that follow them, sweep a range of nonces and return
//! every nonce whose sha256d meets a 256-bit [`Target`], plus the number of hashes done. Several
//! kernels do the same job ([`Kernel`]): `scalar` (portable); on x86-64 `sha-ni` (SHA extensions,
//! 2 nonces interleaved, VEX-encoded), `sha-ni-sse` (the same in the legacy SSE encoding, for
//! SHA-NI CPUs without AVX), `sha-ni-avx512` (the same with 4 nonces, compiled for AVX-512VL's 32
//! registers), `avx512` (16 nonces in the lanes of a 512-bit vector) and `avx2` (8 lanes); on
//! aarch64 `arm-sha2` (the ARMv8 SHA-2 instructions, 4 nonces interleaved). The best one
//! for this CPU is detected once at run time; any kernel can be forced with [`Scanner::new`] (or
//! the `HASHRIG_KERNEL` environment variable through [`Scanner::from_env`]), and forcing one the
//! CPU lacks is an error, never a crash. `HASHRIG_CPU_DISABLE` ([`CPU_DISABLE_ENV`]) masks CPU
//! features off at detection time, so the fallbacks and that error can be exercised on a CPU
//! that has everything.
//!
//! What it is not for: general-purpose hashing (use `sha2`), share policy, difficulty maths or
//! Bitcoin types (those live in `hashrig-work`). This is the only crate of the workspace that
//! contains `unsafe`; each block says why it is sound.
//!
//! The miner tricks every kernel uses:
//! - the midstate: the first 64-byte block is compressed once per job, not once per nonce;
//! - rounds 0-2 of the second block do not depend on the nonce (message word 3) and are done
//!   once per range; in round 3 the nonce enters only by addition into A and E;
//! - message-schedule words that do not depend on the nonce (W16, W17 and partial sums of the
//!   later ones) are computed once per range, and the constant padding words of both blocks are
//!   folded into the round constants;
//! - early reject: the most significant 32 bits of the hash (read as Bitcoin's little-endian
//!   number) are `bswap(H7)`, and H7 is final after round 60 of the last block, so rounds 61-63
//!   run only for the rare candidate, whose full hash is then checked against the whole target.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

mod scalar;
pub use scalar::Prehash;
#[cfg(target_arch = "aarch64")]
mod arm_sha2;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_shani;

/// SHA-256 initial hash value.
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 round constants.
pub const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The number of nonces: a range may cover all of them.
pub const NONCE_SPACE: u64 = 1 << 32;

/// Errors of the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The kernel exists but this CPU cannot run it (or `HASHRIG_CPU_DISABLE` masks off a
    /// feature it needs; `masked` then names the masked features, empty otherwise).
    #[error("kernel `{kernel}` is not supported by this CPU (available: {available}{})", masked_note(.masked))]
    Unsupported { kernel: Kernel, available: String, masked: String },
    /// `HASHRIG_CPU_DISABLE` names a feature we do not know.
    #[error("{CPU_DISABLE_ENV}: unknown CPU feature `{0}` (known: sha, ssse3, sse4.1, avx, avx2, avx512f, avx512vl, avx512bw, sha2; sha-ni is sha, avx512 is avx512f, sha2 is aarch64's)")]
    UnknownCpuFeature(String),
    /// The kernel name is not one we know.
    #[error("unknown kernel `{0}` (known: scalar, sha-ni-avx512, sha-ni, sha-ni-sse, avx512, avx2, arm-sha2)")]
    UnknownKernel(String),
    /// A nonce range that runs past 2^32 - 1.
    #[error("nonce range start {start} + count {count} runs past the last nonce 4294967295")]
    RangeOverflow { start: u32, count: u64 },
}

fn masked_note(masked: &str) -> String {
    if masked.is_empty() { String::new() } else { format!("; {CPU_DISABLE_ENV} masks off {masked}") }
}

/// The environment variable that masks CPU features off at detection time, like OpenSSL's
/// `OPENSSL_ia32cap`: a comma- or space-separated list of [`CpuFeature`] names (`sha` or
/// `sha-ni`, `ssse3`, `sse4.1`, `avx`, `avx2`, `avx512f` or `avx512`, `avx512vl`, `avx512bw`; on
/// aarch64 `sha2`). Read once, when the CPU is first detected; the
/// kernels then behave as on a CPU without those features (auto-detection falls back, forcing a
/// masked kernel is [`Error::Unsupported`]). It can only take features away, never add one.
pub const CPU_DISABLE_ENV: &str = "HASHRIG_CPU_DISABLE";

/// A CPU feature one of the kernels needs (x86-64, and `sha2` on aarch64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CpuFeature {
    /// The SHA extensions (SHA-NI): both SHA-NI kernels.
    Sha,
    /// SSSE3 (byte shuffles): both SHA-NI kernels.
    Ssse3,
    /// SSE4.1 (blends, extracts): both SHA-NI kernels.
    Sse41,
    /// AVX (the VEX encoding): the `sha-ni` kernel, and `avx2`, which needs AVX too.
    Avx,
    /// AVX2: the `avx2` kernel.
    Avx2,
    /// AVX-512 Foundation: the `avx512` kernel, and `sha-ni-avx512` (through AVX-512VL).
    Avx512f,
    /// AVX-512VL (EVEX-encoded 128/256-bit instructions, 32 vector registers): `sha-ni-avx512`.
    Avx512vl,
    /// AVX-512BW (byte shuffles on 512-bit vectors): the `avx512` kernel.
    Avx512bw,
    /// The ARMv8 SHA-256 instructions (aarch64 `sha2`): the `arm-sha2` kernel.
    ArmSha2,
}

impl CpuFeature {
    pub const ALL: [CpuFeature; 9] = [
        CpuFeature::Sha,
        CpuFeature::Ssse3,
        CpuFeature::Sse41,
        CpuFeature::Avx,
        CpuFeature::Avx2,
        CpuFeature::Avx512f,
        CpuFeature::Avx512vl,
        CpuFeature::Avx512bw,
        CpuFeature::ArmSha2,
    ];

    /// The name `HASHRIG_CPU_DISABLE` takes (the one `is_x86_feature_detected!` uses).
    pub const fn name(self) -> &'static str {
        match self {
            CpuFeature::Sha => "sha",
            CpuFeature::Ssse3 => "ssse3",
            CpuFeature::Sse41 => "sse4.1",
            CpuFeature::Avx => "avx",
            CpuFeature::Avx2 => "avx2",
            CpuFeature::Avx512f => "avx512f",
            CpuFeature::Avx512vl => "avx512vl",
            CpuFeature::Avx512bw => "avx512bw",
            CpuFeature::ArmSha2 => "sha2",
        }
    }

    /// Does the hardware have it (ignoring any mask)? Cached by the standard library.
    pub fn in_hardware(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                CpuFeature::Sha => std::is_x86_feature_detected!("sha"),
                CpuFeature::Ssse3 => std::is_x86_feature_detected!("ssse3"),
                CpuFeature::Sse41 => std::is_x86_feature_detected!("sse4.1"),
                CpuFeature::Avx => std::is_x86_feature_detected!("avx"),
                CpuFeature::Avx2 => std::is_x86_feature_detected!("avx2"),
                CpuFeature::Avx512f => std::is_x86_feature_detected!("avx512f"),
                CpuFeature::Avx512vl => std::is_x86_feature_detected!("avx512vl"),
                CpuFeature::Avx512bw => std::is_x86_feature_detected!("avx512bw"),
                CpuFeature::ArmSha2 => false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            match self {
                CpuFeature::ArmSha2 => std::arch::is_aarch64_feature_detected!("sha2"),
                _ => false,
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }

    /// The feature it builds on: masking that one masks this one too (AVX2 needs AVX's
    /// register state, AVX-512 extends AVX2, VL and BW extend AVX-512F).
    pub const fn builds_on(self) -> Option<CpuFeature> {
        match self {
            CpuFeature::Avx2 => Some(CpuFeature::Avx),
            CpuFeature::Avx512f => Some(CpuFeature::Avx2),
            CpuFeature::Avx512vl | CpuFeature::Avx512bw => Some(CpuFeature::Avx512f),
            CpuFeature::Sha | CpuFeature::Ssse3 | CpuFeature::Sse41 | CpuFeature::Avx | CpuFeature::ArmSha2 => None,
        }
    }

    /// Can the kernels use it: in the hardware and not masked off by `HASHRIG_CPU_DISABLE`?
    /// A feature counts as masked when one it builds on is ([`CpuFeature::builds_on`]: masking
    /// `avx` masks AVX2 and AVX-512 too). A `HASHRIG_CPU_DISABLE` that does not parse masks
    /// every feature (the user asked for less, and we cannot tell what), and
    /// [`Scanner::new`] reports it.
    pub fn is_usable(self) -> bool {
        let masked = |f: CpuFeature| match disabled_cpu_features() {
            Ok(m) => m.contains(&f),
            Err(_) => true,
        };
        let mut f = Some(self);
        while let Some(x) = f {
            if masked(x) {
                return false;
            }
            f = x.builds_on();
        }
        self.in_hardware()
    }
}

impl fmt::Display for CpuFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CpuFeature {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "sha" | "sha-ni" | "shani" => Ok(CpuFeature::Sha),
            "ssse3" => Ok(CpuFeature::Ssse3),
            "sse4.1" | "sse41" | "sse4-1" => Ok(CpuFeature::Sse41),
            "avx" => Ok(CpuFeature::Avx),
            "avx2" => Ok(CpuFeature::Avx2),
            "avx512f" | "avx512" | "avx-512" | "avx-512f" => Ok(CpuFeature::Avx512f),
            "avx512vl" | "avx-512vl" => Ok(CpuFeature::Avx512vl),
            "avx512bw" | "avx-512bw" => Ok(CpuFeature::Avx512bw),
            "sha2" | "arm-sha2" => Ok(CpuFeature::ArmSha2),
            _ => Err(Error::UnknownCpuFeature(s.trim().to_owned())),
        }
    }
}

/// Parse a `HASHRIG_CPU_DISABLE` value: feature names separated by commas or spaces; blank is
/// none. Sorted, without duplicates.
pub fn parse_cpu_disable(value: &str) -> Result<Vec<CpuFeature>, Error> {
    let mut features = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<CpuFeature>, Error>>()?;
    features.sort();
    features.dedup();
    Ok(features)
}

/// The features `HASHRIG_CPU_DISABLE` masks off, read from the environment once per process
/// (the first time anything detects the CPU), or the error if it names an unknown feature.
pub fn disabled_cpu_features() -> Result<&'static [CpuFeature], &'static Error> {
    static MASK: OnceLock<Result<Vec<CpuFeature>, Error>> = OnceLock::new();
    MASK.get_or_init(|| parse_cpu_disable(&std::env::var(CPU_DISABLE_ENV).unwrap_or_default()))
        .as_ref()
        .map(Vec::as_slice)
}

/// SHA-256 state after compressing the first 64 bytes of a header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Midstate(pub [u32; 8]);

impl fmt::Debug for Midstate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Midstate(")?;
        for w in self.0 {
            write!(f, "{w:08x}")?;
        }
        write!(f, ")")
    }
}

impl Midstate {
    /// Compress the first 64 bytes of a block header.
    pub fn of(first64: &[u8; 64]) -> Self {
        let mut state = IV;
        compress(&mut state, first64);
        Self(state)
    }
}

/// A 256-bit target, stored as Bitcoin compares it: the hash digest read as a little-endian
/// integer must be `<=` the target. `bytes` is that integer in little-endian order (the same
/// order as `bitcoin::Target::to_le_bytes`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target(pub [u8; 32]);

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target(0x")?;
        for b in self.0.iter().rev() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Target {
    /// The easiest target: every hash meets it.
    pub const MAX: Target = Target([0xff; 32]);

    /// From the integer's little-endian bytes.
    pub const fn from_le_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From the integer's big-endian bytes (how targets are usually written in hex).
    pub fn from_be_bytes(mut bytes: [u8; 32]) -> Self {
        bytes.reverse();
        Self(bytes)
    }

    /// The most significant 32 bits: a hash whose `bswap(H7)` exceeds this cannot meet the target.
    pub fn top_word(&self) -> u32 {
        u32::from_le_bytes([self.0[28], self.0[29], self.0[30], self.0[31]])
    }

    /// Does this digest (raw sha256d output, as bytes) meet the target?
    pub fn is_met_by(&self, digest: &[u8; 32]) -> bool {
        for i in (0..32).rev() {
            if digest[i] != self.0[i] {
                return digest[i] < self.0[i];
            }
        }
        true
    }
}

/// What a scan needs to know about one header: its midstate and the 12 bytes between byte 64
/// and the nonce (the merkle root's last 4 bytes, ntime, nbits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScanJob {
    pub midstate: Midstate,
    /// Header bytes 64..76 as three big-endian message words (W0..W2 of the second block).
    pub tail: [u32; 3],
}

impl ScanJob {
    /// From a whole 80-byte header; its nonce field (bytes 76..80) is ignored.
    pub fn new(header: &[u8; 80]) -> Self {
        let first: &[u8; 64] = header[..64].try_into().expect("80-byte header has 64 first bytes");
        let tail: [u8; 12] = header[64..76].try_into().expect("80-byte header has bytes 64..76");
        Self::from_parts(Midstate::of(first), &tail)
    }

    /// From a midstate computed elsewhere and header bytes 64..76.
    pub fn from_parts(midstate: Midstate, tail12: &[u8; 12]) -> Self {
        let w = |i: usize| {
            u32::from_be_bytes([tail12[4 * i], tail12[4 * i + 1], tail12[4 * i + 2], tail12[4 * i + 3]])
        };
        Self { midstate, tail: [w(0), w(1), w(2)] }
    }

    /// The raw sha256d digest for one nonce, with the portable code (no early exit).
    pub fn digest(&self, nonce: u32) -> [u8; 32] {
        scalar::full_digest(self, nonce)
    }
}

/// A range of nonces: `start`, `start + 1`, ..., `start + count - 1`, never past 2^32 - 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NonceRange {
    start: u32,
    count: u64,
}

impl NonceRange {
    /// Every nonce.
    pub const FULL: NonceRange = NonceRange { start: 0, count: NONCE_SPACE };

    /// A range of `count` nonces from `start`; `count` may be 0, and `start + count` may be 2^32.
    pub fn new(start: u32, count: u64) -> Result<Self, Error> {
        if u64::from(start) + count > NONCE_SPACE {
            return Err(Error::RangeOverflow { start, count });
        }
        Ok(Self { start, count })
    }

    pub fn start(&self) -> u32 {
        self.start
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// One past the last nonce, as a u64 (2^32 for a range that ends at the top).
    pub fn end(&self) -> u64 {
        u64::from(self.start) + self.count
    }

    /// Is `nonce` one of this range's?
    pub fn contains(&self, nonce: u32) -> bool {
        u64::from(nonce) >= u64::from(self.start()) && u64::from(nonce) < self.end()
    }

    /// Split off the first `n` nonces (fewer if the range is shorter).
    pub fn take_front(&mut self, n: u64) -> NonceRange {
        let n = n.min(self.count);
        let front = NonceRange { start: self.start, count: n };
        self.count -= n;
        // `start + n` is at most 2^32; when the rest is empty the start no longer matters.
        self.start = if self.count == 0 { self.start } else { (u64::from(self.start) + n) as u32 };
        front
    }
}

/// A sha256d nonce-scan kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kernel {
    /// Portable Rust, one nonce at a time. Runs everywhere.
    Scalar,
    /// x86-64 SHA extensions, several nonces interleaved per thread, with the surrounding SSE
    /// instructions VEX-encoded (needs AVX too; fewer register copies, measured faster).
    ShaNi,
    /// x86-64 AVX2, eight nonces in the lanes of a 256-bit vector.
    Avx2,
    /// The same SHA-NI kernel in the legacy SSE encoding, for SHA-NI CPUs without AVX (some
    /// Atom-class cores).
    ShaNiSse,
    /// The SHA-NI kernel compiled for AVX-512VL: the EVEX encoding gives 32 vector registers,
    /// enough for more nonces in flight (4 instead of 2) without spilling.
    ShaNiAvx512,
    /// x86-64 AVX-512 (F and BW), 16 nonces in the lanes of a 512-bit vector, with the native
    /// rotate and three-input logic.
    Avx512,
    /// aarch64 with the ARMv8 SHA-2 instructions, several nonces interleaved per thread.
    ArmSha2,
}

impl Kernel {
    /// Every kernel this build knows, best first.
    pub const ALL: [Kernel; 7] =
        [Kernel::ShaNiAvx512, Kernel::ShaNi, Kernel::ShaNiSse, Kernel::Avx512, Kernel::Avx2, Kernel::ArmSha2, Kernel::Scalar];

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::ShaNi => "sha-ni",
            Kernel::ShaNiSse => "sha-ni-sse",
            Kernel::ShaNiAvx512 => "sha-ni-avx512",
            Kernel::Avx512 => "avx512",
            Kernel::ArmSha2 => "arm-sha2",
            Kernel::Avx2 => "avx2",
        }
    }

    /// Nonces in flight per call of the inner loop (tests sweep every count up to twice this).
    pub const fn lanes(self) -> u32 {
        match self {
            Kernel::Scalar => 1,
            Kernel::ShaNi | Kernel::ShaNiSse => x86_lanes::SHANI,
            Kernel::ShaNiAvx512 => x86_lanes::SHANI_EVEX,
            Kernel::Avx512 => 16,
            Kernel::ArmSha2 => arm_lanes::SHA2,
            Kernel::Avx2 => 8,
        }
    }

    /// The CPU features it needs.
    pub const fn needs(self) -> &'static [CpuFeature] {
        match self {
            Kernel::Scalar => &[],
            Kernel::ShaNi => &[CpuFeature::Sha, CpuFeature::Ssse3, CpuFeature::Sse41, CpuFeature::Avx],
            Kernel::ShaNiSse => &[CpuFeature::Sha, CpuFeature::Ssse3, CpuFeature::Sse41],
            Kernel::ShaNiAvx512 => &[
                CpuFeature::Sha,
                CpuFeature::Ssse3,
                CpuFeature::Sse41,
                CpuFeature::Avx,
                CpuFeature::Avx2,
                CpuFeature::Avx512f,
                CpuFeature::Avx512vl,
            ],
            Kernel::Avx512 => &[CpuFeature::Avx, CpuFeature::Avx2, CpuFeature::Avx512f, CpuFeature::Avx512bw],
            Kernel::ArmSha2 => &[CpuFeature::ArmSha2],
            Kernel::Avx2 => &[CpuFeature::Avx, CpuFeature::Avx2],
        }
    }

    /// Can this CPU run it? Every feature it needs is in the hardware (detected once, then
    /// cached by the standard library) and not masked off by `HASHRIG_CPU_DISABLE`.
    pub fn is_available(self) -> bool {
        self.needs().iter().all(|f| f.is_usable())
    }

    /// The kernels this CPU can run, best first.
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// The best kernel for this CPU, chosen once per process: the first available one in
    /// [`Kernel::ALL`] order, except that when this CPU has both a SHA-NI kernel and `avx512`
    /// the two race (see [`Kernel::race`]). Which of them wins depends on the core, not on its
    /// feature flags: the SHA unit of Intel's Golden/Raptor Cove cores issues one `sha256rnds2`
    /// every 3 cycles (measured on the Emerald Rapids dev machine, where `avx512` is 1.8x
    /// faster); on Zen 4 the SHA unit is faster (the figures, not measured here).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let first = Kernel::ALL.into_iter().find(|k| k.is_available()).unwrap_or(Kernel::Scalar);
            let sha = matches!(first, Kernel::ShaNiAvx512 | Kernel::ShaNi | Kernel::ShaNiSse);
            if sha && Kernel::Avx512.is_available() { Kernel::race(first, Kernel::Avx512) } else { first }
        })
    }

    /// The faster of two available kernels on this CPU: each scans 2^15 nonces of a fixed
    /// header three times, alternately, and the best time of each counts (a few milliseconds in
    /// all; the best of three keeps a busy machine's noise out). A tie goes to `a`.
    pub fn race(a: Kernel, b: Kernel) -> Kernel {
        let (Ok(sa), Ok(sb)) = (Scanner::new(a), Scanner::new(b)) else {
            return if a.is_available() { a } else { b };
        };
        let job = ScanJob::new(&[0x5a; 80]);
        let none = Target::from_le_bytes([0; 32]);
        let range = NonceRange { start: 0, count: 1 << 15 };
        let mut found = Vec::new();
        let time = |s: &Scanner, found: &mut Vec<u32>| {
            let t = std::time::Instant::now();
            s.scan(&job, range, &none, found);
            t.elapsed()
        };
        let (mut ta, mut tb) = (std::time::Duration::MAX, std::time::Duration::MAX);
        for _ in 0..3 {
            ta = ta.min(time(&sa, &mut found));
            tb = tb.min(time(&sb, &mut found));
        }
        if tb < ta { b } else { a }
    }
}

mod x86_lanes {
    /// Independent nonces the SHA-NI kernel interleaves with 16 vector registers. On the 2-vCPU
    /// Zen 4 dev machine 2 beat 3 and 4 (3 spills registers; the out-of-order core overlaps
    /// consecutive iterations anyway), measured back to back in `crates/sha256d/BENCHMARKS.md`.
    pub const SHANI: u32 = 2;
    /// Independent nonces the SHA-NI kernel interleaves when AVX-512VL gives it 32 registers
    /// (4 measured a little faster than 3 on the Emerald Rapids dev machine, where both sit
    /// near the bound set by `sha256rnds2`'s throughput; see `BENCHMARKS.md`).
    pub const SHANI_EVEX: u32 = 4;
}

mod arm_lanes {
    /// Independent nonces the ARMv8 SHA-2 kernel interleaves: `sha256h` has a latency of a few
    /// cycles and issues about once per cycle on recent cores, and four lanes' state and
    /// schedules fit aarch64's 32 vector registers. Not measured (no ARM machine here).
    pub const SHA2: u32 = 4;
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "scalar" | "portable" => Ok(Kernel::Scalar),
            "sha-ni" | "shani" | "sha" => Ok(Kernel::ShaNi),
            "sha-ni-sse" | "shani-sse" => Ok(Kernel::ShaNiSse),
            "sha-ni-avx512" | "shani-avx512" => Ok(Kernel::ShaNiAvx512),
            "avx2" => Ok(Kernel::Avx2),
            "avx512" | "avx-512" => Ok(Kernel::Avx512),
            "arm-sha2" | "armv8-sha2" | "aarch64-sha2" => Ok(Kernel::ArmSha2),
            _ => Err(Error::UnknownKernel(s.to_owned())),
        }
    }
}

/// The environment variable that forces a kernel by name (see [`Kernel::name`]).
pub const KERNEL_ENV: &str = "HASHRIG_KERNEL";

/// A kernel this CPU is known to support: the only way to run a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanner {
    kernel: Kernel,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::best()
    }
}

impl Scanner {
    /// Force a kernel; an error if this CPU lacks it (or if `HASHRIG_CPU_DISABLE` does not
    /// parse).
    pub fn new(kernel: Kernel) -> Result<Self, Error> {
        disabled_cpu_features().map_err(Clone::clone)?;
        if kernel.is_available() {
            Ok(Self { kernel })
        } else {
            let masked = disabled_cpu_features().unwrap_or_default().iter().map(|f| f.name()).collect::<Vec<_>>().join(", ");
            let available = Kernel::available().iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
            Err(Error::Unsupported { kernel, available, masked })
        }
    }

    /// The best kernel for this CPU.
    pub fn best() -> Self {
        Self { kernel: Kernel::best() }
    }

    /// The kernel named by `HASHRIG_KERNEL`, or the best one when it is unset or empty.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var(KERNEL_ENV) {
            Ok(name) if !name.trim().is_empty() => Self::new(name.trim().parse()?),
            _ => Ok(Self::best()),
        }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Hash every nonce of `range` and append to `found` each nonce whose sha256d meets
    /// `target`, in increasing order. Returns the number of hashes done (`range.count()`).
    pub fn scan(&self, job: &ScanJob, range: NonceRange, target: &Target, found: &mut Vec<u32>) -> u64 {
        if range.is_empty() {
            return 0;
        }
        match self.kernel {
            Kernel::Scalar => scalar::scan(job, range, target, found),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `Scanner` holding `ShaNi` is only built by `Scanner::new`/`best` after
            // `Kernel::is_available` confirmed the sha, sse4.1, ssse3 and avx CPU features.
            Kernel::ShaNi => unsafe { x86_shani::avx::scan(job, range, target, found) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `Scanner` holding `ShaNiSse` is only built after `Kernel::is_available`
            // confirmed the sha, sse4.1 and ssse3 CPU features.
            Kernel::ShaNiSse => unsafe { x86_shani::sse::scan(job, range, target, found) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `Scanner` holding `ShaNiAvx512` is only built after `Kernel::is_available`
            // confirmed sha, ssse3, sse4.1, avx, avx2, avx512f and avx512vl.
            Kernel::ShaNiAvx512 => unsafe { x86_shani::evex::scan(job, range, target, found) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `Scanner` holding `Avx512` is only built after `Kernel::is_available`
            // confirmed avx512f and avx512bw (and the avx/avx2 they build on).
            Kernel::Avx512 => unsafe { x86_avx512::scan(job, range, target, found) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `Scanner` holding `Avx2` is only built after the avx2 feature was detected.
            Kernel::Avx2 => unsafe { x86_avx2::scan(job, range, target, found) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a `Scanner` holding `ArmSha2` is only built after `Kernel::is_available`
            // confirmed the aarch64 sha2 feature (neon is part of the aarch64 baseline).
            Kernel::ArmSha2 => unsafe { arm_sha2::scan(job, range, target, found) },
            // Kernels of another architecture: `is_available` is false for them here.
            _ => unreachable!("Scanner::new refuses kernels this architecture lacks"),
        }
    }
}

/// Portable SHA-256 compression of one 64-byte block.
pub fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    let mut w = [0u32; 16];
    for (i, word) in w.iter_mut().enumerate() {
        *word = u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
    }
    scalar::compress_words(state, &w);
}

/// Portable sha256d of a whole 80-byte header (nonce included), raw digest order.
pub fn sha256d_header(header: &[u8; 80]) -> [u8; 32] {
    let nonce = u32::from_le_bytes([header[76], header[77], header[78], header[79]]);
    ScanJob::new(header).digest(nonce)
}

/// Leading zero bits of a digest read as a little-endian 256-bit number, the way targets
/// compare it: a hash meets a target of `2^(256-k) - 1` exactly when it has `k` or more.
/// (ASIC tickets and the chip emulator count difficulty this way.)
pub fn leading_zero_bits(digest: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in digest.iter().rev() {
        if *b != 0 {
            return n + b.leading_zeros();
        }
        n += 8;
    }
    n
}
