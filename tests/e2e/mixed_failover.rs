//! Stratum v1 and Stratum V2 pools in one failover list, through `hashrig mine`: the v1 scripted
//! pool (its own share checker) first, the SV2 test pool (channels_sv2's checker) second. Mining
//! moves to the V2 pool the moment the v1 pool drops, back when it returns, and to the V2 pool
//! again on `switchpool`; every share hashrig counts accepted is one of the two pools credited.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hashrig_sv2::testkit::{TestPool, TestPoolConfig};

use crate::pool_support::{ConnPlan, Miner, PoolSpec, ScriptedPool, wait_for};
use crate::sv2_mine::{final_accepted, runtime};

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// One cgminer API command, its answer as text.
fn ask(addr: SocketAddr, cmd: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(cmd.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8_lossy(&raw).trim_end_matches('\0').to_string()
}

/// The same, as JSON.
fn api(addr: SocketAddr, cmd: &str) -> serde_json::Value {
    let raw = ask(addr, cmd);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

#[test]
fn a_v1_and_a_v2_pool_in_one_list_fail_over_back_and_switch_and_every_share_reconciles() {
    // The v1 pool: its first connection closes at its 3rd share; the next two attempts are
    // refused (down); from the 4th connection on it works.
    let mut spec = PoolSpec::new("v1");
    spec.plan = Arc::new(|n| match n {
        0 => ConnPlan { drop_at_share: Some(3), ..ConnPlan::default() },
        1 | 2 => ConnPlan { refuse: true, ..ConnPlan::default() },
        _ => ConnPlan::default(),
    });
    let v1 = ScriptedPool::start(spec);
    let rt = runtime();
    let v2 = rt.block_on(TestPool::start(TestPoolConfig::default())).unwrap();
    let m = Miner::start(&args(&[
        "--pool", &v1.url(), "--pool", &v2.url(), "--user", "tb1qexample.mixed", "--pass", "x", "--threads", "1",
        "--failback-interval", "0.7", "--status-interval", "0.3", "--duration", "90",
        "--api", "127.0.0.1:0", "--api-allow", "W:127.0.0.1",
    ]));
    let credited = || v2.stats().credited;
    // 1. The v1 pool is mined while it works; the V2 pool waits connected (a standby).
    // (Checked at the end: the V2 pool's first share came after the v1 pool dropped.)
    assert!(wait_for(Duration::from_secs(30), || v1.log().valid_on(0) >= 2), "{}", m.stderr());
    // 2. It drops: mining moves to the V2 pool at once; 3. it is back: mining fails back.
    let back = wait_for(Duration::from_secs(40), || credited() >= 1 && v1.log().shares.iter().any(|s| s.valid && s.conn >= 3));
    assert!(back, "v2 credited {}, v1 {:?}\n{}", credited(), v1.log().shares.iter().map(|s| s.conn).collect::<Vec<_>>(), m.stderr());
    let err = m.stderr();
    assert!(err.contains(&format!("pool #1 {} (extended channel)", v2.url())), "status line on the V2 pool: {err}");
    // 4. switchpool to the V2 pool (the user's index 1): mining moves there while v1 is up.
    let addr: SocketAddr = err.lines().find_map(|l| l.strip_prefix("cgminer API on ")).expect("API address").trim().parse().unwrap();
    let before = credited();
    let ans = api(addr, r#"{"command":"switchpool","parameter":"1"}"#);
    assert_eq!(ans["STATUS"][0]["STATUS"], "S", "{ans}");
    assert!(wait_for(Duration::from_secs(30), || credited() >= before + 2), "{}", m.stderr());
    // The API's view follows within a second (it is refreshed every tick).
    let mut pools = serde_json::Value::Null;
    let shown = wait_for(Duration::from_secs(5), || {
        pools = api(addr, r#"{"command":"pools"}"#);
        let p = &pools["POOLS"];
        p[0]["Priority"].as_u64() == Some(1) && p[1]["Stratum Active"].as_bool() == Some(true)
    });
    assert!(shown, "{pools}\n{}", m.stderr());
    let p = &pools["POOLS"];
    assert_eq!((p[0]["Protocol"].as_str(), p[1]["Protocol"].as_str()), (Some("stratum"), Some("stratum2")), "{pools}");
    assert_eq!((p[0]["Priority"].as_u64(), p[1]["Priority"].as_u64()), (Some(1), Some(0)), "{pools}");
    assert_eq!((p[0]["Stratum Active"].as_bool(), p[1]["Stratum Active"].as_bool()), (Some(false), Some(true)), "{pools}");
    assert_eq!(p[0]["Status"], "Alive", "the v1 pool is a live standby: {pools}");
    assert_eq!(p[1]["Channel"], "extended", "{pools}");
    let bye = ask(addr, r#"{"command":"quit"}"#);
    assert!(bye.contains("BYE"), "{bye}");
    let mut m = m;
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    // Every share accepted is one a pool credited, on either protocol.
    let stats = v2.stats();
    let accepted = final_accepted(&err).unwrap_or_else(|| panic!("no final line:\n{err}"));
    let v1_accepted = v1.log().accepted() as u64;
    assert_eq!(accepted, v1_accepted + stats.credited, "v1 accepted {v1_accepted}, V2 credited {}: {stats:#?}\n{err}", stats.credited);
    assert!(v1.log().invalid().is_empty() && v1.log().rejected() == 0, "{:?}", v1.log().invalid());
    assert!(stats.rejected.is_empty(), "{stats:#?}");
    assert!(err.contains("ledger reconciles"), "{err}");
    // One channel on the V2 pool all along: it was a standby, never reconnected; and it was not
    // mined on while the v1 pool worked.
    assert_eq!(stats.channels_opened, 1, "{stats:#?}");
    let dropped_at = v1.log().shares.iter().find(|s| s.conn == 0 && !s.answered).map(|s| s.at).expect("the v1 pool dropped a share");
    let (_, first_v2) = v2.arrival(0).expect("shares on the V2 pool");
    assert!(first_v2 > dropped_at, "the standby was mined on before the v1 pool dropped");
}
