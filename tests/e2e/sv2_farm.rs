//! A farm: the SV2 test pool (shares checked by channels_sv2's server-side channel), the
//! reference translator proxy (`translator_sv2` 0.6.0, built by .ci/run) in front of it, and four
//! `hashrig mine` processes on Stratum v1 behind it. Two tests:
//! - one aggregated extended channel for the farm; one process stopped cleanly (SIGINT) and
//!   restarted midway: the shares the pool credits equal the sum the five runs count accepted;
//! - a channel per rig (`aggregate_channels = false`); one process killed (SIGKILL: it prints
//!   nothing, so its own count is unknown) and restarted midway: every other run's count equals
//!   what the pool credited on its channel exactly, and the killed run's part (the pool's total
//!   minus the others' counts, which is also its channel's credit) lies between what it was last
//!   seen to have accepted and the shares it had sent.
//!
//! The translator answers each v1 share itself and forwards those meeting the upstream target
//! (REFERENCE.md of crates/sv2); with vardiff off it gives the miners the pool's target, so every
//! share it accepts is forwarded and the counts match one to one.
//!
//! Needs the translator binary: `HASHRIG_TRANSLATOR=/path/to/translator_sv2`. Without it the test
//! skips loudly, and fails under `HASHRIG_REQUIRE_TRANSLATOR=1` (CI).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashrig_sv2::testkit::{AUTHORITY_PUBLIC, TestPool, TestPoolConfig};

use crate::pool_support::{Miner, wait_for};
use crate::sv2_mine::{final_accepted, runtime};

fn translator() -> Option<PathBuf> {
    let found = std::env::var_os("HASHRIG_TRANSLATOR").map(PathBuf::from).filter(|p| p.is_file());
    if found.is_none() {
        if std::env::var("HASHRIG_REQUIRE_TRANSLATOR").as_deref() == Ok("1") {
            panic!("HASHRIG_REQUIRE_TRANSLATOR=1 but HASHRIG_TRANSLATOR does not name the translator_sv2 binary (see .ci/run)");
        }
        eprintln!(
            "SKIPPED sv2_farm: no translator proxy (cargo install translator_sv2 --version 0.6.0 --locked, then set HASHRIG_TRANSLATOR to the binary)"
        );
    }
    found
}

/// The translator process, its stdout collected (its log goes there); killed on drop.
struct Translator {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Drop for Translator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `aggregate`: one upstream channel for all miners (the proxy asks the pool for 2 + 2
/// extranonce bytes, 2 of them to tell its miners apart), or one channel per miner (it asks for
/// the miners' 4 as they are).
fn start_translator(bin: &PathBuf, dir: &std::path::Path, pool_port: u16, port: u16, aggregate: bool) -> Translator {
    let extranonce2 = if aggregate { 2 } else { 4 };
    let cfg = dir.join("tproxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "downstream_address = \"127.0.0.1\"\n\
             downstream_port = {port}\n\
             max_supported_version = 2\n\
             min_supported_version = 2\n\
             downstream_extranonce2_size = {extranonce2}\n\
             aggregate_channels = {aggregate}\n\
             [downstream_difficulty_config]\n\
             min_individual_miner_hashrate = 5_000_000.0\n\
             shares_per_minute = 60.0\n\
             enable_vardiff = false\n\
             job_keepalive_interval_secs = 0\n\
             [[upstreams]]\n\
             address = \"127.0.0.1\"\n\
             port = {pool_port}\n\
             authority_pubkey = \"{AUTHORITY_PUBLIC}\"\n\
             user_identity = \"farm\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start translator_sv2");
    let out = Arc::new(Mutex::new(String::new()));
    for mut pipe in [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    Translator { child, out }
}

fn rig(port: u16, name: &str) -> Miner {
    rig_with(port, name, &[])
}

fn rig_with(port: u16, name: &str, more: &[&str]) -> Miner {
    let args: Vec<String> = [
        "--pool", &format!("stratum+tcp://127.0.0.1:{port}"), "--user", name, "--pass", "x", "--threads", "1", "--duration", "120",
        "--status-interval", "1",
    ]
    .iter()
    .chain(more)
    .map(|s| s.to_string())
    .collect();
    Miner::start(&args)
}

/// Stop a rig the way a user does (Ctrl-C: SIGINT) and return its final accepted count.
fn stop(m: &mut Miner) -> u64 {
    let ok = Command::new("kill").args(["-INT", &m.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    assert!(err.contains("ledger reconciles"), "{err}");
    final_accepted(&err).unwrap_or_else(|| panic!("no final line:\n{err}"))
}

/// The accepted count of the last status line ("[  3s] ... | accepted N ...").
fn live_accepted(err: &str) -> u64 {
    err.lines()
        .rev()
        .find_map(|l| {
            let rest = &l[l.find("| accepted ")? + "| accepted ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The final line's "in flight N" and "rejected N".
fn final_counts(err: &str, word: &str) -> u64 {
    let line = err.lines().rev().find(|l| l.starts_with("mined ")).unwrap();
    let rest = &line[line.find(&format!("{word} ")).unwrap() + word.len() + 1..];
    rest.split_whitespace().next().unwrap().trim_end_matches([',', ';']).parse().unwrap()
}

#[test]
fn four_rigs_behind_the_translator_proxy_reconcile_exactly_with_the_pool() {
    let Some(bin) = translator() else { return };
    let rt = runtime();
    let pool = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tp = start_translator(&bin, dir.path(), pool.addr().port(), port, true);
    // Its own word that the v1 port is open (no probe: a probe looks like a miner).
    assert!(wait_for(Duration::from_secs(60), || tp.out.lock().unwrap().contains("listening on")), "{}", tp.out.lock().unwrap());

    let mut rigs: Vec<Miner> = (0..4).map(|i| rig(port, &format!("rig{i}"))).collect();
    let mut accepted = 0u64;
    // Every rig has shares accepted before the stop and restart of rig 0.
    let going = wait_for(Duration::from_secs(60), || rigs.iter().all(|m| live_accepted(&m.stderr()) >= 1));
    assert!(going, "{}\n---\n{}", rigs[0].stderr(), tp.out.lock().unwrap());
    let first = stop(&mut rigs[0]);
    assert!(first >= 1, "{}", rigs[0].stderr());
    accepted += first;
    rigs[0] = rig(port, "rig0");
    std::thread::sleep(Duration::from_secs(6));
    let mut lines = Vec::new();
    for m in rigs.iter_mut() {
        accepted += stop(m);
        let err = m.stderr();
        assert_eq!(final_counts(&err, "rejected"), 0, "{err}");
        assert_eq!(final_counts(&err, "in flight"), 0, "{err}");
        lines.push(err.lines().rev().find(|l| l.starts_with("mined ")).unwrap().to_string());
    }
    // The proxy forwards what it accepted; the pool acknowledges within its flush interval.
    let settled = wait_for(Duration::from_secs(10), || {
        let s = pool.stats();
        s.valid == accepted && s.credited == s.valid
    });
    let stats = pool.stats();
    assert!(settled, "the rigs counted {accepted} accepted, the pool credited {}: {stats:#?}\n{lines:#?}\n{}", stats.credited, tp.out.lock().unwrap());
    assert!(stats.rejected.is_empty(), "{stats:#?}");
    eprintln!("farm: 5 hashrig runs (4 rigs, one restarted) accepted {accepted} in total (rig0's first run {first}); the pool credited {}", stats.credited);
    assert!(accepted >= 8, "too few shares to tell: {lines:#?}");
    // One upstream connection and channel for the whole farm, asking 2 + 2 extranonce bytes.
    assert_eq!((stats.connections, stats.channels_opened), (1, 1), "{stats:#?}");
    assert_eq!(stats.min_extranonce_asked, vec![4], "{stats:#?}");
}

/// The address of a rig's `/metrics`, from its stderr ("Prometheus metrics at http://ADDR/metrics").
fn metrics_addr(err: &str) -> Option<std::net::SocketAddr> {
    err.lines().find_map(|l| l.strip_prefix("Prometheus metrics at http://")).map(|a| a.trim_end_matches("/metrics").parse().unwrap())
}

/// `hashrig_ledger_shares{state="STATE"}` from a rig's `/metrics`.
fn ledger_metric(addr: std::net::SocketAddr, state: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut http = String::new();
    s.read_to_string(&mut http).unwrap();
    let key = format!("hashrig_ledger_shares{{state=\"{state}\"}} ");
    let v = http.lines().find_map(|l| l.strip_prefix(key.as_str())).unwrap_or_else(|| panic!("no {key} in:\n{http}"));
    v.trim().parse::<f64>().unwrap_or_else(|e| panic!("{key}{v}: {e}")) as u64
}

/// The shares a run sent: each is logged "share found" before it is handed to the pool client
/// (crates/miner's run loop; the log goes to stderr unbuffered), so a killed run's stderr
/// holds a line for every share it could have had credited. Shares found and dropped before
/// sending are not counted: the bound is at most the run's found count, so at least as tight.
fn shares_sent(err: &str) -> u64 {
    err.lines().filter(|l| l.contains(" share found")).count() as u64
}

#[test]
fn a_rig_killed_midway_loses_nothing_else_each_channel_credited_exactly() {
    let Some(bin) = translator() else { return };
    let rt = runtime();
    let pool = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tp = start_translator(&bin, dir.path(), pool.addr().port(), port, false);
    assert!(wait_for(Duration::from_secs(60), || tp.out.lock().unwrap().contains("listening on")), "{}", tp.out.lock().unwrap());
    let log = || tp.out.lock().unwrap().clone();

    // One at a time, each after the previous one's channel opened: rig i has the pool's
    // channel i (the proxy names them farm.miner1, farm.miner2, ... in the order it opens them).
    let mut rigs: Vec<Miner> = Vec::new();
    for i in 0..4 {
        let more: &[&str] = if i == 0 { &["--metrics", "127.0.0.1:0"] } else { &[] };
        rigs.push(rig_with(port, &format!("rig{i}"), more));
        let opened = wait_for(Duration::from_secs(30), || pool.stats().channels.len() == i + 1);
        assert!(opened, "rig{i}'s channel did not open: {:#?}\n{}\n---\n{}", pool.stats(), rigs[i].stderr(), log());
    }
    // Midway: every rig has shares accepted, rig 0 a few.
    let going = wait_for(Duration::from_secs(60), || rigs.iter().all(|m| live_accepted(&m.stderr()) >= 1) && live_accepted(&rigs[0].stderr()) >= 3);
    assert!(going, "{}\n---\n{}", rigs[0].stderr(), log());
    let metrics = metrics_addr(&rigs[0].stderr()).unwrap_or_else(|| panic!("rig0 names no metrics address:\n{}", rigs[0].stderr()));

    // Rig 0: its accepted count as last seen, then SIGKILL at once (no final line, no shutdown).
    let seen = ledger_metric(metrics, "accepted");
    rigs[0].child.kill().unwrap();
    let status = rigs[0].wait(Duration::from_secs(10));
    assert_eq!(status.signal(), Some(9), "{status:?}");
    // All of its stderr read: the reader thread lets go of the buffer at end of file.
    let read_all = wait_for(Duration::from_secs(10), || Arc::strong_count(&rigs[0].stderr) == 1);
    assert!(read_all, "rig0's stderr still open after the kill");
    let killed_err = rigs[0].stderr();
    assert!(!killed_err.lines().any(|l| l.starts_with("mined ")), "a killed run prints no final line:\n{killed_err}");
    let sent = shares_sent(&killed_err);
    assert!(seen >= 3 && sent >= seen, "seen {seen} accepted, sent {sent}:\n{killed_err}");

    // Its second life gets the fifth channel; everyone mines on a while.
    rigs[0] = rig(port, "rig0");
    let reopened = wait_for(Duration::from_secs(30), || pool.stats().channels.len() == 5);
    assert!(reopened, "{:#?}\n{}\n---\n{}", pool.stats(), rigs[0].stderr(), log());
    assert!(wait_for(Duration::from_secs(30), || live_accepted(&rigs[0].stderr()) >= 1), "{}", rigs[0].stderr());
    std::thread::sleep(Duration::from_secs(3));

    // Every surviving run stops cleanly and reconciles: its accepted count is exact.
    let mut counts = Vec::new();
    let mut lines = Vec::new();
    for m in rigs.iter_mut() {
        counts.push(stop(m));
        let err = m.stderr();
        assert_eq!(final_counts(&err, "rejected"), 0, "{err}");
        assert_eq!(final_counts(&err, "in flight"), 0, "{err}");
        lines.push(err.lines().rev().find(|l| l.starts_with("mined ")).unwrap().to_string());
    }
    // The proxy closes each rig's channel when the rig leaves; the pool credits what the
    // channel sent first. Every channel closed and every valid share credited: settled.
    let settled = wait_for(Duration::from_secs(15), || {
        let s = pool.stats();
        s.channels.iter().all(|c| c.closed) && s.credited == s.valid
    });
    let stats = pool.stats();
    assert!(settled, "not settled: {stats:#?}\n{lines:#?}\n{}", log());
    assert!(stats.rejected.is_empty(), "{stats:#?}");
    // One upstream connection, five channels in the order the runs started, each asking the
    // miners' 4 extranonce bytes as they are.
    assert_eq!(stats.connections, 1, "{stats:#?}");
    let users: Vec<&str> = stats.channels.iter().map(|c| c.user_identity.as_str()).collect();
    assert_eq!(users, ["farm.miner1", "farm.miner2", "farm.miner3", "farm.miner4", "farm.miner5"], "{stats:#?}");
    assert_eq!(stats.min_extranonce_asked, vec![4; 5], "{stats:#?}");

    // The survivors: rigs 1..3 on channels 1..3 (indices), rig 0's second life on the fifth.
    let survivors: Vec<(usize, u64)> = vec![(1, counts[1]), (2, counts[2]), (3, counts[3]), (4, counts[0])];
    for &(ch, accepted) in &survivors {
        let c = &stats.channels[ch];
        assert_eq!((c.credited, c.valid, c.rejected), (accepted, accepted, 0), "channel {ch} ({}) vs its run's {accepted} accepted: {stats:#?}\n{lines:#?}", c.user_identity);
        assert!(accepted >= 1, "{lines:#?}");
    }
    let survivors_sum: u64 = survivors.iter().map(|&(_, a)| a).sum();
    // The killed run's part: what the pool credited beyond the survivors' exact counts. It is
    // its own channel's credit, at least what it was last seen to have accepted (each of those
    // the proxy had answered, so forwarded) and at most what it had sent.
    let killed = stats.credited.checked_sub(survivors_sum).unwrap_or_else(|| panic!("the pool credited less than the survivors counted: {stats:#?}\n{lines:#?}"));
    assert_eq!(killed, stats.channels[0].credited, "{stats:#?}");
    assert!(seen <= killed && killed <= sent, "the killed run: last seen {seen} accepted, sent {sent}, the pool credited {killed} for it: {stats:#?}");
    eprintln!(
        "farm (a channel per rig): the killed run was seen with {seen} accepted, had sent {sent}, the pool credited {killed} for it; \
         the 4 surviving runs counted {counts:?} (rig0's second life first), credited exactly; pool total {}",
        stats.credited
    );
}
