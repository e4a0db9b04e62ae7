#!/usr/bin/env python3
"""Writes ../src/sha256d.wgsl: the fully unrolled nonce-search shader.

Run from anywhere: `python3 crates/hasher-gpu/tools/gen_kernel.py`. The output is committed; this
script only exists so the 125 unrolled rounds are produced by a program (and can be changed in
one place), not typed by hand. It folds every constant it can see (padding words, the initial
hash value of the second SHA-256, zero message words) so the shader holds only real work; the
GPU compiler hoists what depends only on the uniform parameters out of the nonce loop.
"""
import os

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


def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M


# A value is an int (a constant the script knows) or a str (the name of a WGSL `let`).
class Gen:
    def __init__(self):
        self.lines = []

    def let(self, name, expr):
        if isinstance(expr, int):
            return expr
        self.lines.append(f"        let {name} = {expr};")
        return name

    @staticmethod
    def lit(x):
        return f"0x{x:08x}u"

    def add(self, *xs):
        const = 0
        names = []
        for x in xs:
            if isinstance(x, int):
                const = (const + x) & M
                continue
            # Sums nest only at the top level (call arguments are always names or literals).
            for term in x.split(" + "):
                if term.startswith("0x") and term.endswith("u"):
                    const = (const + int(term[2:-1], 16)) & M
                else:
                    names.append(term)
        if not names:
            return const
        if const:
            names.append(self.lit(const))
        return " + ".join(names)

    def fn1(self, fname, pyf, x):
        if isinstance(x, int):
            return pyf(x)
        return f"{fname}({x})"

    def fn3(self, fname, pyf, x, y, z):
        if all(isinstance(v, int) for v in (x, y, z)):
            return pyf(x, y, z)
        args = ", ".join(v if isinstance(v, str) else self.lit(v) for v in (x, y, z))
        return f"{fname}({args})"


def bs0(x): return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22)
def bs1(x): return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25)
def ss0(x): return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)
def ss1(x): return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10)
def ch(e, f, g): return ((f ^ g) & e) ^ g
def maj(a, b, c): return (a & b) | (c & (a | b))


def schedule(g, w, upto, prefix):
    for i in range(16, upto + 1):
        if w[i] is not None:
            continue
        terms = [g.fn1("ss1", ss1, w[i - 2]), w[i - 7], g.fn1("ss0", ss0, w[i - 15]), w[i - 16]]
        w[i] = g.let(f"{prefix}{i}", g.add(*terms))


def rounds(g, A, E, w, first, last, prefix, need_a_until):
    """Rounds `first..=last`; A[r], E[r] are the a and e produced by round r (SSA names)."""
    for r in range(first, last + 1):
        d = A[r - 4]
        e, f, gg, h = E[r - 1], E[r - 2], E[r - 3], E[r - 4]
        kw = g.add(K[r], w[r])
        t1 = g.let(f"{prefix}t{r}", g.add(h, g.fn1("bs1", bs1, e), g.fn3("ch", ch, e, f, gg), kw))
        E[r] = g.let(f"{prefix}e{r}", g.add(d, t1))
        if r <= need_a_until:
            a, b, c = A[r - 1], A[r - 2], A[r - 3]
            A[r] = g.let(f"{prefix}a{r}", g.add(t1, g.fn1("bs0", bs0, a), g.fn3("maj", maj, a, b, c)))


def body():
    g = Gen()
    # ---- block 2 of the header: rounds 0-2 on the host; round 3 from the host's bases ----
    w = [None] * 64
    w[2] = "tail2"
    w[3] = "w3"
    w[4] = 0x80000000
    for i in range(5, 15):
        w[i] = 0
    w[15] = 640
    w[16] = "w16"
    w[17] = "w17"
    for i in (0, 1):
        w[i] = "UNUSED"  # only in w16/w17, which the host computes
    schedule(g, w, 63, "x")
    A = {2: "a2", 1: "b2", 0: "c2"}
    E = {2: "e2", 1: "f2", 0: "g2"}
    A[3] = g.let("a3", "abase + w3")
    E[3] = g.let("e3", "ebase + w3")
    # Interleaving schedule and rounds is left to the GPU compiler; emit the schedule first.
    rounds(g, A, E, w, 4, 63, "p", 63)
    h1 = [A[63], A[62], A[61], A[60], E[63], E[62], E[61], E[60]]
    for i in range(8):
        h1[i] = g.let(f"hh{i}", g.add(f"m{i}", h1[i]))
    # ---- the second SHA-256, of the 32-byte first hash: rounds 0-60 only ----
    v = [None] * 64
    for i in range(8):
        v[i] = h1[i]
    v[8] = 0x80000000
    for i in range(9, 15):
        v[i] = 0
    v[15] = 256
    schedule(g, v, 60, "y")
    A2 = {-1: IV[0], -2: IV[1], -3: IV[2], -4: IV[3]}
    E2 = {-1: IV[4], -2: IV[5], -3: IV[6], -4: IV[7]}
    # e60 becomes H after round 63; a57.. are never needed for it.
    rounds(g, A2, E2, v, 0, 60, "q", 56)
    g.lines.append(f"        let h7 = {g.add(E2[60], IV[7])};")
    return "\n".join(g.lines)


HEAD = """\
// GENERATED by crates/hasher-gpu/tools/gen_kernel.py: edit that script, then re-run it.
//
// SHA-256d nonce search over Bitcoin block headers. One invocation hashes `npi` consecutive
// nonces. Per work unit the host supplies the midstate (first 64 header bytes compressed), the
// state after rounds 0-2 of the second block, round 3 split into its nonce-free parts, schedule
// words 16-17 and header word 2; everything else here depends on the nonce. The second SHA-256
// stops after round 60: H7 is final then. Early reject: the hash, read as Bitcoin's 256-bit
// little-endian number, has bswap(H7) as its top 32 bits; only nonces whose top word is <= the
// target's are appended (atomic counter, bounded buffer) for the host to verify in full.

struct Params {
    m0: u32, m1: u32, m2: u32, m3: u32, m4: u32, m5: u32, m6: u32, m7: u32,
    a2: u32, b2: u32, c2: u32, e2: u32, f2: u32, g2: u32,
    abase: u32, ebase: u32, w16: u32, w17: u32, tail2: u32,
    start: u32, count: u32, npi: u32, top: u32, pad: u32,
}

// Must match RESULT_CAP in src/kernel.rs.
const CAP: u32 = 8191u;

struct Results {
    // Candidates appended; may exceed CAP (then the host re-scans that dispatch in pieces).
    count: atomic<u32>,
    nonces: array<u32, CAP>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> res: Results;

// Invocations per workgroup; set per adapter when the pipeline is made.
override WG: u32 = 64u;

fn bs0(x: u32) -> u32 { return ((x >> 2u) | (x << 30u)) ^ ((x >> 13u) | (x << 19u)) ^ ((x >> 22u) | (x << 10u)); }
fn bs1(x: u32) -> u32 { return ((x >> 6u) | (x << 26u)) ^ ((x >> 11u) | (x << 21u)) ^ ((x >> 25u) | (x << 7u)); }
fn ss0(x: u32) -> u32 { return ((x >> 7u) | (x << 25u)) ^ ((x >> 18u) | (x << 14u)) ^ (x >> 3u); }
fn ss1(x: u32) -> u32 { return ((x >> 17u) | (x << 15u)) ^ ((x >> 19u) | (x << 13u)) ^ (x >> 10u); }
fn ch(e: u32, f: u32, g: u32) -> u32 { return ((f ^ g) & e) ^ g; }
fn maj(a: u32, b: u32, c: u32) -> u32 { return (a & b) | (c & (a | b)); }
fn bswap(x: u32) -> u32 {
    return (x << 24u) | ((x & 0xff00u) << 8u) | ((x >> 8u) & 0xff00u) | (x >> 24u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = p.m0; let m1 = p.m1; let m2 = p.m2; let m3 = p.m3;
    let m4 = p.m4; let m5 = p.m5; let m6 = p.m6; let m7 = p.m7;
    let a2 = p.a2; let b2 = p.b2; let c2 = p.c2; let e2 = p.e2; let f2 = p.f2; let g2 = p.g2;
    let abase = p.abase; let ebase = p.ebase; let w16 = p.w16; let w17 = p.w17; let tail2 = p.tail2;
    let start = p.start; let count = p.count; let npi = p.npi; let top = p.top;
    let top_byte = top >> 24u;
    // Dispatches are sized so this cannot wrap (see kernel.rs). The last invocations of the
    // last workgroup get fewer nonces (or none): the bound is checked once, not per nonce.
    let first = gid.x * npi;
    let todo = select(0u, min(npi, count - first), first < count);
    for (var i = 0u; i < todo; i = i + 1u) {
        let nonce = start + first + i;
        let w3 = bswap(nonce);
"""

TAIL = """\
        // The hash's most significant byte is H7's lowest: a cheap test before the byte swap.
        if ((h7 & 0xffu) <= top_byte) {
            if (bswap(h7) <= top) {
                let slot = atomicAdd(&res.count, 1u);
                if (slot < CAP) { res.nonces[slot] = nonce; }
            }
        }
    }
}
"""

out = os.path.join(os.path.dirname(__file__), "..", "src", "sha256d.wgsl")
with open(out, "w") as f:
    f.write(HEAD)
    f.write(body())
    f.write("\n")
    f.write(TAIL)
print("wrote", os.path.normpath(out))
