//! Nonce-scan throughput of every sha256d kernel this CPU can run, next to the `sha2` crate with
//! a midstate (the baseline any kernel must beat), on the mainnet genesis header.
//!
//! `cargo bench --bench sha256d`. Throughput is in nonces (hashes) per second; criterion prints
//! it as "elem/s". The target is impossible (all zeros), so only the early-reject path runs, as
//! it does for nearly every nonce in real mining.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hashrig_sha256d::{IV, Kernel, NonceRange, ScanJob, Scanner, Target};

const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
const NONCES: u64 = 1 << 20;
/// The two-thread benches scan more per iteration, so the threads' start-up skew is amortised.
const NONCES_X2: u64 = 1 << 22;
const START: u32 = 0x1000_0000;

fn genesis() -> [u8; 80] {
    hex::decode(GENESIS).expect("hex").try_into().expect("80 bytes")
}

/// The baseline: `sha2`'s compression function with the midstate done once, two compressions
/// per nonce, and the top word of the result compared like the kernels do.
fn sha2_midstate_scan(header: &[u8; 80], start: u32, count: u64, top: u32) -> u64 {
    let first: [u8; 64] = header[..64].try_into().expect("64 bytes");
    let mut mid = IV;
    sha2::block_api::compress256(&mut mid, &[first]);
    let mut block2 = [0u8; 64];
    block2[..16].copy_from_slice(&header[64..80]);
    block2[16] = 0x80;
    block2[62..].copy_from_slice(&(80u16 * 8).to_be_bytes());
    let mut block3 = [0u8; 64];
    block3[32] = 0x80;
    block3[62..].copy_from_slice(&(32u16 * 8).to_be_bytes());
    let mut hits = 0;
    for i in 0..count {
        let nonce = (u64::from(start) + i) as u32;
        block2[12..16].copy_from_slice(&nonce.to_le_bytes());
        let mut s = mid;
        sha2::block_api::compress256(&mut s, &[block2]);
        for (chunk, w) in block3[..32].chunks_exact_mut(4).zip(s) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        let mut h = IV;
        sha2::block_api::compress256(&mut h, &[block3]);
        if h[7].swap_bytes() <= top {
            hits += 1;
        }
    }
    hits
}

fn scan(scanner: Scanner, job: &ScanJob, start: u32, count: u64, target: &Target) -> usize {
    let mut found = Vec::new();
    let range = NonceRange::new(start, count).expect("bench range fits");
    scanner.scan(job, range, target, &mut found);
    found.len()
}

fn bench_kernels(c: &mut Criterion) {
    let header = genesis();
    let job = ScanJob::new(&header);
    let impossible = Target::from_le_bytes([0; 32]);
    let mut g = c.benchmark_group("sha256d scan 2^20 nonces");
    g.throughput(Throughput::Elements(NONCES));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));

    g.bench_function("sha2 crate with midstate", |b| {
        b.iter(|| sha2_midstate_scan(black_box(&header), START, NONCES, 0))
    });
    for kernel in Kernel::available() {
        let scanner = Scanner::new(kernel).expect("available");
        g.bench_function(kernel.name(), |b| {
            b.iter(|| scan(scanner, black_box(&job), START, NONCES, &impossible))
        });
    }
    g.finish();
}

fn bench_two_threads(c: &mut Criterion) {
    let header = genesis();
    let job = ScanJob::new(&header);
    let impossible = Target::from_le_bytes([0; 32]);
    let mut g = c.benchmark_group("sha256d scan 2^22 nonces on 2 threads");
    g.throughput(Throughput::Elements(NONCES_X2));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    let half = NONCES_X2 / 2;
    g.bench_function("sha2 crate with midstate x2 threads", |b| {
        b.iter(|| {
            let header = &header;
            std::thread::scope(|s| {
                let a = s.spawn(move || sha2_midstate_scan(black_box(header), START, half, 0));
                let b = s.spawn(move || sha2_midstate_scan(black_box(header), START + half as u32, half, 0));
                a.join().expect("thread") + b.join().expect("thread")
            })
        })
    });
    // Both cores: each SIMD kernel on two threads, each with half of the range.
    for kernel in Kernel::available().into_iter().filter(|k| *k != Kernel::Scalar) {
        let scanner = Scanner::new(kernel).expect("available");
        g.bench_function(format!("{} x2 threads", kernel.name()), |b| {
            b.iter(|| {
                let (job, impossible) = (&job, &impossible);
                std::thread::scope(|s| {
                    let a = s.spawn(move || scan(scanner, black_box(job), START, half, impossible));
                    let b = s.spawn(move || scan(scanner, black_box(job), START + half as u32, half, impossible));
                    a.join().expect("thread") + b.join().expect("thread")
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_kernels, bench_two_threads);
criterion_main!(benches);
