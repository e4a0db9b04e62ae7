//! Instruction-level microbenchmark behind `BENCHMARKS.md` section 0.3: latency and throughput of
//! the SHA-NI instructions and of the AVX-512 instructions the `avx512` kernel uses, on the core
//! it runs on, and the cost of mixing the two in one thread (what a hybrid kernel would do).
//!
//! `cargo run --release -p hashrig-sha256d --example isa_ubench`. There are no usable cycle
//! counters in the dev VM (`perf stat` reports them "not supported"), so the cycle is calibrated
//! as the time of one add in a chain of dependent register adds (1 cycle on every x86 core;
//! add-immediate chains are not used because recent Intel cores fold them at rename). Times are
//! thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), best of 5, so other processes on a shared machine
//! hurt less. Each figure is the time of a block of independent (or, for latency, dependent)
//! instructions repeated 10 times per loop iteration, divided by the instruction count.

#[cfg(target_arch = "x86_64")]
fn main() {
    x86::run();
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("isa_ubench measures x86-64 instructions (SHA-NI, AVX-512); nothing to do on this architecture");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    const IT: u64 = 20_000_000;

    /// Best of 5 runs of `f`, in seconds of this thread's CPU time (wall time where the platform
    /// offers no thread clock).
    fn time<F: FnMut()>(mut f: F) -> f64 {
        f();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let (t0, w0) = (thread_cpu(), Instant::now());
            f();
            let dt = match (t0, thread_cpu()) {
                (Some(a), Some(b)) => b - a,
                _ => w0.elapsed().as_secs_f64(),
            };
            best = best.min(dt);
        }
        best
    }

    /// This thread's CPU time from /proc (Linux), in seconds; `None` elsewhere.
    fn thread_cpu() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
        Some(ns * 1e-9)
    }

    /// Time `$body` (an assembly block repeated 10 times per iteration), per repetition. `$feat`
    /// is the target feature the instructions need; `$($reg)*` the vector registers they write.
    macro_rules! block {
        ($feat:literal, $body:expr, $($reg:tt)*) => {{
            #[target_feature(enable = $feat)]
            fn kernel() {
                for _ in 0..IT {
                    // SAFETY: the block only computes on vector registers it declares clobbered
                    // (no memory, no stack).
                    unsafe { asm!(".rept 10", $body, ".endr", $(out($reg) _,)* options(nomem, nostack)) };
                }
            }
            // SAFETY: `run` calls this only after detecting the feature `$feat` names.
            time(|| unsafe { kernel() }) / (IT as f64 * 10.0)
        }};
    }
    macro_rules! sha {
        ($body:expr) => {
            block!("sha", $body, "xmm0" "xmm1" "xmm2" "xmm3" "xmm4" "xmm5" "xmm6" "xmm7" "xmm8" "xmm9" "xmm10" "xmm11" "xmm12" "xmm13" "xmm14" "xmm15")
        };
    }
    macro_rules! zmm {
        ($body:expr) => {
            block!("sha,avx512f", $body, "zmm0" "zmm1" "zmm2" "zmm3" "zmm4" "zmm5" "zmm6" "zmm7" "zmm8" "zmm9" "zmm10" "zmm11" "zmm12" "zmm13" "zmm14" "zmm15")
        };
    }

    pub fn run() {
        let sha = std::is_x86_feature_detected!("sha");
        let avx512 = sha && std::is_x86_feature_detected!("avx512f");
        let add = time(|| {
            let mut x = 0u64;
            let y = std::hint::black_box(3u64);
            for _ in 0..IT {
                // SAFETY: register-only adds, nothing else is touched.
                unsafe { asm!(".rept 100", "add {x}, {y}", ".endr", x = inout(reg) x, y = in(reg) y, options(nomem, nostack)) };
            }
            std::hint::black_box(x);
        });
        let cycle = add / (IT as f64 * 100.0);
        println!("calibration: a dependent add takes {:.3} ns, the core runs at ~{:.2} GHz", cycle * 1e9, 1e-9 / cycle);
        let c = |s: f64, n: f64| s / cycle / n;
        if sha {
            println!("sha256rnds2 latency:            {:.2} cycles", c(sha!("sha256rnds2 xmm1, xmm2"), 1.0));
            println!("sha256rnds2 throughput, 2 chains: {:.2} cycles/instr", c(sha!("sha256rnds2 xmm1, xmm2\nsha256rnds2 xmm3, xmm4"), 2.0));
            let rn8 = c(sha!("sha256rnds2 xmm1, xmm2\nsha256rnds2 xmm3, xmm4\nsha256rnds2 xmm5, xmm6\nsha256rnds2 xmm7, xmm8\nsha256rnds2 xmm9, xmm2\nsha256rnds2 xmm10, xmm4\nsha256rnds2 xmm11, xmm6\nsha256rnds2 xmm12, xmm8"), 8.0);
            println!("sha256rnds2 throughput, 8 chains: {rn8:.2} cycles/instr");
            println!("sha256msg1 latency {:.2}, throughput {:.2} cycles", c(sha!("sha256msg1 xmm1, xmm2"), 1.0),
                c(sha!("sha256msg1 xmm1, xmm2\nsha256msg1 xmm3, xmm2\nsha256msg1 xmm5, xmm2\nsha256msg1 xmm7, xmm2\nsha256msg1 xmm9, xmm2\nsha256msg1 xmm10, xmm2\nsha256msg1 xmm11, xmm2\nsha256msg1 xmm12, xmm2"), 8.0));
            println!("sha256msg2 latency {:.2}, throughput {:.2} cycles", c(sha!("sha256msg2 xmm1, xmm2"), 1.0),
                c(sha!("sha256msg2 xmm1, xmm2\nsha256msg2 xmm3, xmm2\nsha256msg2 xmm5, xmm2\nsha256msg2 xmm7, xmm2\nsha256msg2 xmm9, xmm2\nsha256msg2 xmm10, xmm2\nsha256msg2 xmm11, xmm2\nsha256msg2 xmm12, xmm2"), 8.0));
            println!("=> SHA-NI bound at 61 sha256rnds2 per hash: {:.1} MH/s per core", 1e-6 / (61.0 * rn8 * cycle));
        } else {
            println!("no SHA-NI on this CPU: its instructions are not measured");
        }
        if avx512 {
            println!("vprord zmm throughput:     {:.2} cycles/instr", c(zmm!("vprord zmm1, zmm1, 3\nvprord zmm2, zmm2, 3\nvprord zmm3, zmm3, 3\nvprord zmm4, zmm4, 3\nvprord zmm5, zmm5, 3\nvprord zmm6, zmm6, 3\nvprord zmm7, zmm7, 3\nvprord zmm8, zmm8, 3"), 8.0));
            println!("vpternlogd zmm throughput: {:.2} cycles/instr", c(zmm!("vpternlogd zmm1, zmm9, zmm10, 0x96\nvpternlogd zmm2, zmm9, zmm10, 0x96\nvpternlogd zmm3, zmm9, zmm10, 0x96\nvpternlogd zmm4, zmm9, zmm10, 0x96\nvpternlogd zmm5, zmm9, zmm10, 0x96\nvpternlogd zmm6, zmm9, zmm10, 0x96\nvpternlogd zmm7, zmm9, zmm10, 0x96\nvpternlogd zmm8, zmm9, zmm10, 0x96"), 8.0));
            println!("vpaddd zmm throughput:     {:.2} cycles/instr", c(zmm!("vpaddd zmm1, zmm1, zmm9\nvpaddd zmm2, zmm2, zmm9\nvpaddd zmm3, zmm3, zmm9\nvpaddd zmm4, zmm4, zmm9\nvpaddd zmm5, zmm5, zmm9\nvpaddd zmm6, zmm6, zmm9\nvpaddd zmm7, zmm7, zmm9\nvpaddd zmm8, zmm8, zmm9"), 8.0));
        } else {
            println!("no AVX-512 (with SHA-NI) on this CPU: its instructions are not measured");
        }
        if sha && avx512 {
            let both = c(zmm!("sha256rnds2 xmm13, xmm14\nsha256rnds2 xmm15, xmm14\nvpaddd zmm1, zmm1, zmm9\nvpaddd zmm2, zmm2, zmm9\nvpaddd zmm3, zmm3, zmm9\nvpternlogd zmm4, zmm9, zmm10, 0x96\nvpternlogd zmm5, zmm9, zmm10, 0x96\nvpternlogd zmm6, zmm9, zmm10, 0x96"), 1.0);
            let sha_only = c(zmm!("sha256rnds2 xmm13, xmm14\nsha256rnds2 xmm15, xmm14"), 1.0);
            let zmm_only = c(zmm!("vpaddd zmm1, zmm1, zmm9\nvpaddd zmm2, zmm2, zmm9\nvpaddd zmm3, zmm3, zmm9\nvpternlogd zmm4, zmm9, zmm10, 0x96\nvpternlogd zmm5, zmm9, zmm10, 0x96\nvpternlogd zmm6, zmm9, zmm10, 0x96"), 1.0);
            println!("hybrid: 2 sha256rnds2 + 6 zmm ops in one block: {both:.1} cycles (alone: {sha_only:.1} and {zmm_only:.1})");
        }
    }
}
