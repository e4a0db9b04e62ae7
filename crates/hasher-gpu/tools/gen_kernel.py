#!/usr/bin/env python3
"""Writes ../src/sha256d.wgsl (the nonce-search shader) and ../src/folded.rs (its host side).

Run from anywhere: `python3 crates/hasher-gpu/tools/gen_kernel.py`. Both outputs are committed;
this script exists so the unrolled rounds are produced by a program (and can be changed in one
place), not typed by hand.

What it does beyond unrolling:
- Constants it can see are folded (padding words, zero message words, the second SHA-256's
  initial state).
- Values that depend only on the work unit (the midstate, the state after round 2 of block 2,
  the schedule words 16-17, header word 2) are "host values": any function of them, and any sum
  with two or more such terms, is computed once per unit on the host (`src/folded.rs`, generated
  from the same definitions) and read from the uniform buffer, so the shader never redoes it.
- AsicBoost (overt version rolling): entry point `main{k}` hashes k header versions per nonce.
  Rolling the version changes only the header's first 64 bytes, so each version has its own
  midstate (its own host values), while block 2's message schedule (header bytes 64-79: the
  merkle root's tail, time, bits, nonce) is the same for all k: the shader computes it once per
  nonce and shares it.
- The nonce word: block 2 holds the nonce byte-swapped (W3 = bswap(nonce)). An invocation's
  nonces are consecutive and never cross a multiple of 256 (the host aligns them), so W3 steps by
  adding 1 << 24: no byte swap per nonce.
"""
import os
import sys

M = 0xFFFFFFFF
IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]
# Versions per nonce the shader has entry points for.
KS = [1, 2, 4]
# Candidate slots in the result buffer (RESULT_CAP in src/kernel.rs).
CAP = 8191


def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M


def bs0(x): return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22)
def bs1(x): return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25)
def ss0(x): return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)
def ss1(x): return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10)
def ch(e, f, g): return ((f ^ g) & e) ^ g
def maj(a, b, c): return (a & b) | (c & (a | b))


PY = {"bs0": bs0, "bs1": bs1, "ss0": ss0, "ss1": ss1, "ch": ch, "maj": maj}


class U:
    """A host value: depends only on the work unit. `scope` is "v" (differs per version: it
    depends on the midstate) or "s" (shared by all versions)."""

    def __init__(self, name, scope, rust):
        self.name, self.scope, self.rust = name, scope, rust


class Sum:
    """A nonce-dependent sum not yet bound to a `let`: names (WGSL lets), at most one host value,
    a constant. Bound lazily when used as a function argument; flattened into other sums."""

    def __init__(self, names, u, const, hint):
        self.names, self.u, self.const, self.hint = names, u, const, hint
        self.bound = None


class Gen:
    def __init__(self):
        self.lines = []
        self.host = []  # U, in definition order (each refers only to earlier ones or bases)
        self.by_rust = {}
        self.used = set()  # names of host values the shader reads
        self.j = 0  # the version being emitted
        self.bases = {}
        for i in range(8):
            self.base(f"m{i}", "v", f"v.m[{i}]")
        for n in ("a2", "b2", "c2", "e2", "f2", "g2", "abase", "ebase"):
            self.base(n, "v", f"v.{n}")
        for n in ("w16", "w17", "tail2"):
            self.base(n, "s", f"s.{n}")

    def base(self, name, scope, rust):
        u = U(name, scope, rust)
        self.bases[name] = u
        self.host.append(u)
        self.by_rust[rust] = u

    def hostval(self, rust, args):
        if rust in self.by_rust:
            return self.by_rust[rust]
        scope = "v" if any(isinstance(a, U) and a.scope == "v" for a in args) else "s"
        u = U(f"{scope}{len(self.host)}", scope, rust)
        self.host.append(u)
        self.by_rust[rust] = u
        return u

    @staticmethod
    def lit(x):
        return f"0x{x:08x}u"

    def wgsl_u(self, u):
        self.used.add(u.name)
        return f"j{self.j}_{u.name}" if u.scope == "v" else u.name

    def name(self, x):
        """A WGSL operand for x (binding a sum to a `let` the first time)."""
        if isinstance(x, int):
            return self.lit(x)
        if isinstance(x, U):
            return self.wgsl_u(x)
        if isinstance(x, Sum):
            if x.bound is None:
                self.lines.append(f"        let {x.hint} = {self.render(x)};")
                x.bound = x.hint
            return x.bound
        return x

    def render(self, s):
        terms = list(s.names)
        if s.u is not None:
            terms.append(self.wgsl_u(s.u))
        if s.const:
            terms.append(self.lit(s.const))
        return " + ".join(terms)

    def let(self, hint, x):
        """Name a value: constants and host values need no `let`; sums stay lazy."""
        if isinstance(x, Sum):
            x.hint = hint
            return x
        if isinstance(x, str):
            self.lines.append(f"        let {hint} = {x};")
            return hint
        return x

    def add(self, *xs):
        const, us, names = 0, [], []
        for x in xs:
            if isinstance(x, int):
                const = (const + x) & M
            elif isinstance(x, U):
                us.append(x)
            elif isinstance(x, Sum) and x.bound is None:
                const = (const + x.const) & M
                names += x.names
                if x.u is not None:
                    us.append(x.u)
            elif isinstance(x, Sum):
                names.append(x.bound)
            else:
                names.append(x)
        if len(us) > 1 or (us and const):
            rust = "add(&[" + ", ".join([u.name for u in us] + ([f"0x{const:08x}"] if const else [])) + "])"
            us, const = [self.hostval(rust, us)], 0
        u = us[0] if us else None
        if not names:
            return u if u is not None else const
        return Sum(names, u, const, None)

    def fn(self, f, *args):
        if all(isinstance(a, int) for a in args):
            return PY[f](*args)
        if all(isinstance(a, (int, U)) for a in args):
            rust = f"{f}(" + ", ".join(a.name if isinstance(a, U) else f"0x{a:08x}" for a in args) + ")"
            return self.hostval(rust, args)
        return f"{f}(" + ", ".join(self.name(a) for a in args) + ")"


def schedule(g, w, upto, prefix):
    for i in range(16, upto + 1):
        if w[i] is not None:
            continue
        terms = [g.fn("ss1", w[i - 2]), w[i - 7], g.fn("ss0", w[i - 15]), w[i - 16]]
        w[i] = g.let(f"{prefix}{i}", g.add(*terms))
        g.name(w[i]) if isinstance(w[i], Sum) else None


def rounds(g, A, E, w, first, last, prefix, need_a_until):
    """Rounds `first..=last`; A[r], E[r] are the a and e produced by round r."""
    for r in range(first, last + 1):
        d = A[r - 4]
        e, f, gg, h = E[r - 1], E[r - 2], E[r - 3], E[r - 4]
        t1 = g.let(f"{prefix}t{r}", g.add(h, g.fn("bs1", e), g.fn("ch", e, f, gg), K[r], w[r]))
        # t1 feeds both new e and new a: bind it once.
        g.name(t1) if isinstance(t1, Sum) else None
        E[r] = g.let(f"{prefix}e{r}", g.add(d, t1))
        if r <= need_a_until:
            a, b, c = A[r - 1], A[r - 2], A[r - 3]
            A[r] = g.let(f"{prefix}a{r}", g.add(t1, g.fn("bs0", a), g.fn("maj", a, b, c)))


def version_body(g, j, x):
    """Rounds 4-63 of block 2 and the second SHA-256 for version j, sharing the schedule x."""
    g.j = j
    p = f"j{j}_"
    b = g.bases
    A = {2: b["a2"], 1: b["b2"], 0: b["c2"]}
    E = {2: b["e2"], 1: b["f2"], 0: b["g2"]}
    A[3] = g.let(f"{p}a3", g.add(b["abase"], "w3"))
    E[3] = g.let(f"{p}e3", g.add(b["ebase"], "w3"))
    rounds(g, A, E, x, 4, 63, p + "p", 63)
    h1 = [A[63], A[62], A[61], A[60], E[63], E[62], E[61], E[60]]
    for i in range(8):
        h1[i] = g.let(f"{p}hh{i}", g.add(b[f"m{i}"], h1[i]))
        g.name(h1[i])
    # ---- the second SHA-256, of the 32-byte first hash: rounds 0-60 only ----
    v = [None] * 64
    for i in range(8):
        v[i] = h1[i]
    v[8] = 0x80000000
    for i in range(9, 15):
        v[i] = 0
    v[15] = 256
    schedule(g, v, 60, p + "y")
    A2 = {-1: IV[0], -2: IV[1], -3: IV[2], -4: IV[3]}
    E2 = {-1: IV[4], -2: IV[5], -3: IV[6], -4: IV[7]}
    # e60 becomes H7 after round 63; a57.. are never needed for it.
    rounds(g, A2, E2, v, 0, 60, p + "q", 56)
    h7 = g.name(g.let(f"{p}h7", g.add(E2[60], IV[7])))
    g.lines.append(f"""        // Top byte of the hash (H7's lowest), then the whole top word: rarely taken.
        if (({h7} & 0xffu) <= top_byte) {{
            if (bswap({h7}) <= top) {{
                let slot = atomicAdd(&res.count, 1u);
                if (slot < CAP) {{ res.found[slot] = vec2<u32>(base + i, {j}u); }}
            }}
        }}""")


def entry(g, k):
    """The loop body of `main{k}`: the shared schedule, then k versions."""
    g.lines = []
    w = [None] * 64
    w[2] = g.bases["tail2"]
    w[3] = "w3"
    w[4] = 0x80000000
    for i in range(5, 15):
        w[i] = 0
    w[15] = 640
    w[16] = g.bases["w16"]
    w[17] = g.bases["w17"]
    for i in (0, 1):
        w[i] = "UNUSED"  # only in w16/w17, which the host computes
    schedule(g, w, 63, "x")
    for j in range(k):
        version_body(g, j, w)
    return g.lines


HEAD = """\
// GENERATED by crates/hasher-gpu/tools/gen_kernel.py: edit that script, then re-run it.
//
// SHA-256d nonce search over Bitcoin block headers. Entry point `main{{k}}` hashes k header
// versions (overt AsicBoost; k = 1 without version rolling) for each of `npi` consecutive nonces
// per invocation. Everything that depends only on the work unit is computed on the host
// (src/folded.rs) and read from `p`; block 2's message schedule is computed once per nonce and
// shared by the k versions, each of which has its own midstate. The second SHA-256 stops after
// round 60: H7 is final then. Early reject: the hash, read as Bitcoin's 256-bit little-endian
// number, has bswap(H7) as its top 32 bits; only (nonce, version) pairs whose top word is <= the
// target's are appended (atomic counter, bounded buffer) for the host to verify in full.

struct Params {{
    // x: base (the first nonce of invocation 0, a multiple of npi), y/z: the dispatch's nonces
    // as offsets from base, [y, z); w: npi (a power of two <= 256).
    run: vec4<u32>,
    // x: the target's top 32 bits, y: its top byte.
    top: vec4<u32>,
    // Host values shared by all versions.
    s: array<vec4<u32>, {ns4}>,
    // Host values of version j at v[j * {nv4} ..].
    v: array<vec4<u32>, {nv_all}>,
}}

// Must match RESULT_CAP in src/kernel.rs.
const CAP: u32 = {cap}u;

struct Results {{
    // Candidates appended; may exceed CAP (then the host re-scans that dispatch in pieces).
    count: atomic<u32>,
    // (nonce, version index).
    found: array<vec2<u32>, CAP>,
}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> res: Results;

// Invocations per workgroup; set per adapter when the pipeline is made.
override WG: u32 = 64u;

fn bs0(x: u32) -> u32 {{ return ((x >> 2u) | (x << 30u)) ^ ((x >> 13u) | (x << 19u)) ^ ((x >> 22u) | (x << 10u)); }}
fn bs1(x: u32) -> u32 {{ return ((x >> 6u) | (x << 26u)) ^ ((x >> 11u) | (x << 21u)) ^ ((x >> 25u) | (x << 7u)); }}
fn ss0(x: u32) -> u32 {{ return ((x >> 7u) | (x << 25u)) ^ ((x >> 18u) | (x << 14u)) ^ (x >> 3u); }}
fn ss1(x: u32) -> u32 {{ return ((x >> 17u) | (x << 15u)) ^ ((x >> 19u) | (x << 13u)) ^ (x >> 10u); }}
fn ch(e: u32, f: u32, g: u32) -> u32 {{ return ((f ^ g) & e) ^ g; }}
fn maj(a: u32, b: u32, c: u32) -> u32 {{ return (a & b) | (c & (a | b)); }}
fn bswap(x: u32) -> u32 {{
    return (x << 24u) | ((x & 0xff00u) << 8u) | ((x >> 8u) & 0xff00u) | (x >> 24u);
}}
"""

ENTRY_HEAD = """
@compute @workgroup_size(WG)
fn main{k}(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let base = p.run.x; let lo_all = p.run.y; let hi_all = p.run.z; let npi = p.run.w;
    let top = p.top.x; let top_byte = p.top.y;
{loads}
    // This invocation's nonces: base + [lo, hi), inside one aligned block of npi nonces (which
    // never crosses a multiple of 256), clipped to the dispatch. Dispatches are sized so these
    // offsets cannot wrap (see kernel.rs).
    let first = gid.x * npi;
    let lo = max(first, lo_all);
    let hi = min(first + npi, hi_all);
    // W3 = bswap(nonce); within the block the nonce's low byte (W3's top byte) only counts up.
    var w3 = bswap(base + lo);
    for (var i = lo; i < hi; i = i + 1u) {{
"""

ENTRY_TAIL = """
        w3 = w3 + 0x01000000u;
    }
}
"""


def rust_expr(rust):
    return rust


def main():
    g = Gen()
    bodies = {k: entry(g, k) for k in KS}
    # Host values the shader reads, in a fixed order: shared ones, then per-version ones.
    shared = [u for u in g.host if u.scope == "s" and u.name in g.used]
    per_v = [u for u in g.host if u.scope == "v" and u.name in g.used]
    ns4 = max(1, (len(shared) + 3) // 4)
    nv4 = max(1, (len(per_v) + 3) // 4)
    comp = "xyzw"
    out = [HEAD.format(ns4=ns4, nv4=nv4, nv_all=nv4 * max(KS), cap=CAP)]
    for k in KS:
        loads = []
        for i, u in enumerate(shared):
            loads.append(f"    let {u.name} = p.s[{i // 4}].{comp[i % 4]};")
        for j in range(k):
            for i, u in enumerate(per_v):
                loads.append(f"    let j{j}_{u.name} = p.v[{j * nv4 + i // 4}].{comp[i % 4]};")
        out.append(ENTRY_HEAD.format(k=k, loads="\n".join(loads)))
        out.append("\n".join(bodies[k]))
        out.append(ENTRY_TAIL)
    here = os.path.dirname(__file__)
    # An optional argument writes both files to another folder (the test that checks the
    # committed files are this script's output uses it).
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "src")
    wgsl = os.path.normpath(os.path.join(outdir, "sha256d.wgsl"))
    with open(wgsl, "w") as f:
        f.write("".join(out))

    # The host side: every host value from the bases, in definition order.
    lines = []
    for u in g.host:
        if u.name in g.bases:
            lines.append(f"    let {u.name} = {u.rust};")
        else:
            lines.append(f"    let {u.name} = {u.rust};")
    body = "\n".join(lines)
    rs = f"""// GENERATED by crates/hasher-gpu/tools/gen_kernel.py: edit that script, then re-run it.
//
// The shader's host values (see the script): every value that depends only on the work unit,
// computed once per unit, in the order the uniform buffer holds them.

#![allow(clippy::all, dead_code, unused_variables)]

/// Host values shared by all versions (`Params.s` in the shader).
pub(crate) const SHARED: usize = {len(shared)};
/// Host values per version (`Params.v`, {nv4} vec4s per version).
pub(crate) const PER_VERSION: usize = {len(per_v)};
/// vec4s per version in `Params.v`.
pub(crate) const PER_VERSION_VEC4: usize = {nv4};
/// vec4s in `Params.s`.
pub(crate) const SHARED_VEC4: usize = {ns4};
/// Versions per nonce the shader has entry points for (`main1`, `main2`, ...).
pub(crate) const VERSIONS: [u32; {len(KS)}] = {KS};

/// What one version contributes: its midstate and the state of block 2 after round 2, round 3
/// without the nonce word (new a = abase + W3, new e = ebase + W3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionBase {{
    pub m: [u32; 8],
    pub a2: u32,
    pub b2: u32,
    pub c2: u32,
    pub e2: u32,
    pub f2: u32,
    pub g2: u32,
    pub abase: u32,
    pub ebase: u32,
}}

/// What all versions share: block 2's schedule words 16-17 and message word 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SharedBase {{
    pub w16: u32,
    pub w17: u32,
    pub tail2: u32,
}}

fn rotr(x: u32, n: u32) -> u32 {{ x.rotate_right(n) }}
fn bs0(x: u32) -> u32 {{ rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22) }}
fn bs1(x: u32) -> u32 {{ rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25) }}
fn ss0(x: u32) -> u32 {{ rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3) }}
fn ss1(x: u32) -> u32 {{ rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10) }}
fn ch(e: u32, f: u32, g: u32) -> u32 {{ ((f ^ g) & e) ^ g }}
fn maj(a: u32, b: u32, c: u32) -> u32 {{ (a & b) | (c & (a | b)) }}
fn add(xs: &[u32]) -> u32 {{ xs.iter().fold(0u32, |s, x| s.wrapping_add(*x)) }}

/// The shared host values, in `Params.s` order.
pub(crate) fn shared(s: &SharedBase) -> [u32; SHARED] {{
    let v = VersionBase::default();
{body}
    [{", ".join(u.name for u in shared)}]
}}

/// One version's host values, in `Params.v` order.
pub(crate) fn per_version(v: &VersionBase, s: &SharedBase) -> [u32; PER_VERSION] {{
{body}
    [{", ".join(u.name for u in per_v)}]
}}
"""
    rsp = os.path.normpath(os.path.join(outdir, "folded.rs"))
    with open(rsp, "w") as f:
        f.write(rs)
    print("wrote", wgsl, "and", rsp, f"({len(shared)} shared, {len(per_v)} per-version host values)")


main()
