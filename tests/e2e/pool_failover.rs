//! Failover and failback across an ordered pool list, a pool that stays connected but goes
//! silent, and shares left unanswered by a dropped connection, all through `hashrig mine`
//! against scripted pools (tests/e2e/pool_support.rs) that check every share independently.

use std::sync::Arc;
use std::time::Duration;

use crate::pool_support::{ConnPlan, Miner, PoolSpec, ScriptedPool, wait_for};
use serde_json::json;

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn miner(pools: &[&ScriptedPool], extra: &[&str]) -> Miner {
    let mut a = Vec::new();
    for p in pools {
        a.extend(args(&["--pool", &p.url()]));
    }
    a.extend(args(&["--user", "w.1", "--pass", "x", "--threads", "2", "--status-interval", "0.5"]));
    a.extend(args(extra));
    Miner::start(&a)
}

#[test]
fn fails_over_when_the_primary_drops_and_fails_back_when_it_returns() {
    // Primary: first connection closes at its 2nd share; the next two attempts are refused
    // (down); from the 4th connection on it works again.
    let mut a = PoolSpec::new("a");
    a.plan = Arc::new(|n| match n {
        0 => ConnPlan { drop_at_share: Some(2), ..ConnPlan::default() },
        1 | 2 => ConnPlan { refuse: true, ..ConnPlan::default() },
        _ => ConnPlan::default(),
    });
    let a = ScriptedPool::start(a);
    let mut bspec = PoolSpec::new("b");
    bspec.en1_base = 0xb000_0000;
    let b = ScriptedPool::start(bspec);
    let m = miner(&[&a, &b], &["--failback-interval", "0.7", "--silence-timeout", "5"]);
    let ok = wait_for(Duration::from_secs(25), || {
        let la = a.log();
        la.shares.iter().filter(|s| s.valid && s.conn >= 3).count() >= 2 && b.log().valid() >= 1
    });
    let err = m.stderr();
    let ac = a.log().connections;
    let av = a.log().valid();
    let bv = b.log().valid();
    assert!(ok, "A: {ac} conns, {av} valid; B: {bv} valid\n{err}");
    assert!(a.log().invalid().is_empty() && b.log().invalid().is_empty(), "{err}");
    assert!(err.contains("preferred pool is back"), "{err}");
    // The share A dropped unanswered could not go to B (another pool's job): counted stale,
    // not lost. The status line shows it.
    let max_stale = |text: &str| {
        text.lines()
            .filter_map(|l| l.split(" stale ").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    assert!(wait_for(Duration::from_secs(5), || max_stale(&m.stderr()) >= 1), "{}", m.stderr());
}

#[test]
fn a_pool_that_goes_silent_is_left_for_the_backup_and_retried_later() {
    let mut a = PoolSpec::new("a");
    a.plan = Arc::new(|n| if n == 0 { ConnPlan { silent: true, ..ConnPlan::default() } } else { ConnPlan::default() });
    let a = ScriptedPool::start(a);
    let mut bspec = PoolSpec::new("b");
    bspec.en1_base = 0xb000_0000;
    let b = ScriptedPool::start(bspec);
    let m = miner(&[&a, &b], &["--silence-timeout", "1", "--failback-interval", "1"]);
    let ok = wait_for(Duration::from_secs(25), || {
        let la = a.log();
        b.log().valid() >= 1 && la.shares.iter().any(|s| s.valid && s.conn >= 1)
    });
    let err = m.stderr();
    let ac = a.log().connections;
    let av = a.log().valid();
    let bv = b.log().valid();
    assert!(ok, "A: {ac} conns, {av} valid; B: {bv} valid\n{err}");
    assert!(err.contains("no message for 1 s"), "{err}");
}

#[test]
fn shares_unanswered_when_the_connection_drops_are_resubmitted_after_reconnecting() {
    // One pool that resumes the session (same extranonce1, same jobs) after dropping the
    // connection at the first share without answering it.
    let mut spec = PoolSpec::new("s");
    spec.same_extranonce1 = true;
    spec.plan = Arc::new(|n| if n == 0 { ConnPlan { drop_at_share: Some(1), ..ConnPlan::default() } } else { ConnPlan::default() });
    let pool = ScriptedPool::start(spec);
    let m = miner(&[&pool], &["--failback-interval", "0.5"]);
    let resubmitted = |p: &ScriptedPool| {
        let log = p.log();
        let dropped: Vec<_> = log.shares.iter().filter(|s| s.conn == 0 && !s.answered).cloned().collect();
        dropped.iter().any(|d| {
            log.shares.iter().any(|s| s.conn >= 1 && s.valid && s.job_id == d.job_id && s.extranonce2 == d.extranonce2 && s.nonce == d.nonce && s.ntime == d.ntime)
        })
    };
    let ok = wait_for(Duration::from_secs(20), || resubmitted(&pool));
    let err = m.stderr();
    assert!(ok, "{:?}\n{err}", pool.log().shares);
}

#[test]
fn client_reconnect_makes_the_miner_reconnect_to_its_configured_pool_not_the_host_it_names() {
    // The pool redirects us to another (listening) pool: we go back to the configured one.
    let elsewhere = ScriptedPool::start(PoolSpec::new("e"));
    let target = json!([elsewhere.addr.ip().to_string(), elsewhere.addr.port(), 0]);
    let mut spec = PoolSpec::new("c");
    spec.plan = Arc::new(move |n| {
        if n == 0 { ConnPlan { reconnect_at_share: Some(1), reconnect_params: Some(target.clone()), ..ConnPlan::default() } } else { ConnPlan::default() }
    });
    let pool = ScriptedPool::start(spec);
    let m = miner(&[&pool], &[]);
    let ok = wait_for(Duration::from_secs(20), || pool.log().shares.iter().any(|s| s.valid && s.conn == 1));
    let err = m.stderr();
    assert!(ok, "{:?}\n{err}", pool.log().shares);
    assert!(err.contains("pool asked for a reconnect"), "{err}");
    assert!(pool.log().invalid().is_empty());
    assert_eq!(elsewhere.log().connections, 0, "followed the redirect to another host");
}

#[test]
fn a_tls_pool_whose_handshake_fails_is_skipped_for_the_next_pool() {
    // The first URL asks for TLS from a pool that only speaks plain TCP: the handshake fails
    // with a clear error and the miner moves on to the second pool.
    let a = ScriptedPool::start(PoolSpec::new("a"));
    let b = ScriptedPool::start(PoolSpec::new("b"));
    let tls_url = format!("stratum+ssl://{}", a.addr);
    let m = Miner::start(&args(&["--pool", &tls_url, "--pool", &b.url(), "--user", "w", "--pass", "x", "--threads", "2"]));
    let ok = wait_for(Duration::from_secs(20), || b.log().valid() >= 1);
    let err = m.stderr();
    assert!(ok, "{err}");
    assert!(err.contains("TLS handshake with 127.0.0.1 failed"), "{err}");
    assert_eq!(a.log().valid(), 0);
}

#[test]
fn probing_a_black_hole_primary_never_stalls_mining_on_the_backup() {
    // The primary drops us at the first share, then accepts TCP but never says a word: every
    // failback probe hangs until the connect timeout (3 s). Meanwhile shares must keep reaching
    // the backup without a stall of that length (the backup's difficulty is low enough that a
    // 2.5 s gap between shares is out of reach of chance even on a slow, busy CPU).
    let mut a = PoolSpec::new("a");
    a.plan = Arc::new(|n| if n == 0 { ConnPlan { drop_at_share: Some(1), ..ConnPlan::default() } } else { ConnPlan { mute: true, ..ConnPlan::default() } });
    let a = ScriptedPool::start(a);
    let mut bspec = PoolSpec::new("b");
    bspec.en1_base = 0xb000_0000;
    bspec.difficulty = 1.0 / 65536.0;
    let b = ScriptedPool::start(bspec);
    let m = miner(&[&a, &b], &["--silence-timeout", "3", "--failback-interval", "0.3"]);
    let ok = wait_for(Duration::from_secs(25), || {
        let lb = b.log();
        lb.shares.first().is_some_and(|f| f.at.elapsed() > Duration::from_secs(6)) && a.log().connections >= 3
    });
    let err = m.stderr();
    assert!(ok, "A conns {}, B shares {}\n{err}", a.log().connections, b.log().shares.len());
    let lb = b.log();
    let times: Vec<_> = lb.shares.iter().map(|s| s.at).collect();
    let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(worst < Duration::from_millis(2500), "a {worst:?} gap between shares on the backup\n{err}");
    assert!(lb.invalid().is_empty());
}

#[test]
fn a_job_the_pool_sends_again_after_a_reconnect_is_not_rescanned_into_duplicate_shares() {
    // The pool drops the connection at a share (twice), then resumes the session: same
    // extranonce1, the same job sent again. Scanning it again from the start would find the
    // same shares again, and the pool would answer "Duplicate share".
    let mut spec = PoolSpec::new("d");
    spec.same_extranonce1 = true;
    spec.plan = Arc::new(|n| if n < 2 { ConnPlan { drop_at_share: Some(4), ..ConnPlan::default() } } else { ConnPlan::default() });
    let pool = ScriptedPool::start(spec);
    let mut m = miner(&[&pool], &["--failback-interval", "0.5", "--duration", "6"]);
    assert!(m.wait(Duration::from_secs(40)).success(), "{}", m.stderr());
    let err = m.stderr();
    let log = pool.log();
    assert!(log.connections >= 3, "the pool should have been reconnected to twice: {}\n{err}", log.connections);
    assert!(log.shares.iter().any(|s| s.conn >= 2 && s.valid), "no share after the reconnects\n{err}");
    let dups: Vec<_> = log.shares.iter().filter(|s| s.reason.contains("Duplicate")).collect();
    assert!(dups.is_empty(), "{} duplicate shares sent: {dups:?}\n{err}", dups.len());
    assert!(err.contains("; ledger reconciles"), "{err}");
}
