//! Submit latency on loopback: from a verified share handed to the pool client to the pool
//! having read the whole frame (Stratum v1: the JSON line; Stratum V2: the Noise frame,
//! decrypted and parsed), for hashrig's v1 client against the stratum test kit's scripted pool
//! and its SV2 client against the SV2 test pool, on an extended channel (`v2`) and on a standard
//! one (`v2_standard`, `?channel=standard`). The pools stamp each share as it arrives; the
//! latency is that stamp minus the moment of the submit call, so polling for it costs nothing.
//!
//! `cargo bench --bench submit_latency`. Criterion reports the mean per share; the bench also
//! prints p50 and p99 over every share it sent (the goal: p99 <= 1 ms).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

/// How often the bench looks for the pool's stamp.
const POLL: Duration = Duration::from_micros(20);

fn percentiles(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        return;
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    eprintln!("{name}: {} shares, p50 {:.1} us, p99 {:.1} us, max {:.1} us", v.len(), at(0.50).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6, at(1.0).as_secs_f64() * 1e6);
}

fn v1(c: &mut Criterion) {
    use hashrig_stratum::testkit::{PoolSpec, ScriptedPool};
    use hashrig_stratum::{ClientConfig, ClientEvent, ConnId, FoundShare, Password, PoolConfig, Share};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let pool = ScriptedPool::start(PoolSpec::new("bench"));
    let cfg = ClientConfig::new(vec![PoolConfig { url: pool.url().parse().unwrap(), user: "w".into(), password: Password::new("x") }]);
    let (client, mut events, _task) = rt.block_on(async { hashrig_stratum::client::spawn(cfg) });
    let (pool_idx, conn, job) = rt.block_on(async {
        loop {
            if let Some(ClientEvent::Job { pool, conn, job }) = events.recv().await {
                break (pool, conn, job);
            }
        }
    });
    // answers come back as events: drain them so the channel does not grow
    rt.spawn(async move { while events.recv().await.is_some() {} });
    let mut nonce = 0u32;
    let mut all = Vec::new();
    c.bench_function("submit_latency/v1", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                nonce += 1;
                let seen = pool.log().shares.len();
                let share = Share { job_id: job.job_id.clone(), extranonce2: vec![0; job.job.extranonce2_size], ntime: job.job.ntime, nonce, version: job.job.version_bits() };
                let t0 = Instant::now();
                assert!(client.submit(FoundShare { id: nonce as u64, pool: pool_idx, conn: ConnId(conn.0), job: job.clone(), share }));
                let at = loop {
                    if let Some(s) = pool.log().shares.get(seen) {
                        break s.at;
                    }
                    // the pool stamps the arrival: waiting here costs the measurement nothing,
                    // and sleeping leaves the CPU to the client and the pool
                    std::thread::sleep(POLL);
                };
                let d = at.saturating_duration_since(t0);
                all.push(d);
                total += d;
            }
            total
        })
    });
    percentiles("submit_latency/v1", all);
}

fn v2(c: &mut Criterion) {
    sv2(c, "submit_latency/v2", "");
}

fn v2_standard(c: &mut Criterion) {
    sv2(c, "submit_latency/v2_standard", "?channel=standard");
}

/// hashrig's SV2 client against the SV2 test pool, on the channel `query` asks for (none: the
/// default extended channel; `?channel=standard`: a standard channel, the pool builds the
/// merkle root and the share carries no extranonce).
fn sv2(c: &mut Criterion, name: &str, query: &str) {
    use hashrig_sv2::client::{ClientConfig, ClientEvent, ShareSubmit};
    use hashrig_sv2::testkit::{TestPool, TestPoolConfig};
    use hashrig_work::HeaderSource;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let pool = rt.block_on(TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() })).unwrap();
    let cfg = ClientConfig::new(vec![format!("{}{query}", pool.url()).parse().unwrap()], "w");
    let (client, mut events, _task) = rt.block_on(async { hashrig_sv2::client::spawn(cfg) });
    let (pool_idx, conn, job) = rt.block_on(async {
        loop {
            if let Some(ClientEvent::Job { pool, conn, job }) = events.recv().await {
                break (pool, conn, job);
            }
        }
    });
    // what a share on this job carries besides its nonce: the rolled extranonce (extended
    // channel only), ntime and version
    let (extranonce, ntime, version) = match (&job.job, query) {
        (HeaderSource::Coinbase(cb), "") => (vec![0; cb.extranonce2_size], cb.ntime, cb.version_bits()),
        (HeaderSource::Standard(sj), "?channel=standard") => (Vec::new(), sj.ntime, sj.version),
        (other, _) => panic!("{name}: the pool sent the wrong kind of job for this channel: {other:?}"),
    };
    rt.spawn(async move { while events.recv().await.is_some() {} });
    let mut nonce = 0u32;
    let mut all = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                nonce += 1;
                let seen = pool.arrivals();
                let share = ShareSubmit { id: nonce as u64, pool: pool_idx, conn, job_id: job.job_id, extranonce: extranonce.clone(), nonce, ntime, version };
                let t0 = Instant::now();
                assert!(client.submit(share));
                let at = loop {
                    if let Some((_, at)) = pool.arrival(seen) {
                        break at;
                    }
                    std::thread::sleep(POLL);
                };
                let d = at.saturating_duration_since(t0);
                all.push(d);
                total += d;
            }
            total
        })
    });
    percentiles(name, all);
    // The nonces are counted up, so nearly every share misses the target and is rejected:
    // what matters is that the pool read and checked each one on the channel asked for.
    let st = pool.stats();
    assert_eq!(st.standard_channels, u64::from(query == "?channel=standard"), "{name}: {st:#?}");
    assert_eq!(st.dropped, 0, "{name}: {st:#?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = v1, v2, v2_standard
}
criterion_main!(benches);
