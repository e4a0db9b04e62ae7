//! A pool that sends garbage: invalid JSON, wrong types, a notify with bad field lengths and an
//! oversized line. Each is refused with a logged reason, and mining goes on with valid shares.

use std::sync::Arc;
use std::time::Duration;

use crate::pool_support;
use crate::pool_support::{ConnPlan, Miner, PoolSpec, ScriptedPool};
use serde_json::json;

#[test]
fn garbage_and_oversized_lines_are_refused_and_mining_goes_on() {
    let mut bad_notify = pool_support::real_notify_params();
    bad_notify[1] = json!("00ff"); // prev hash of the wrong length
    let mut bad_branch = pool_support::real_notify_params();
    bad_branch[4] = json!(["abcd"]);
    let garbage = vec![
        "{not json".to_string(),
        "[1,2,3]".to_string(),
        json!({"id": null, "method": "mining.notify", "params": bad_notify}).to_string(),
        json!({"id": null, "method": "mining.notify", "params": bad_branch}).to_string(),
        json!({"id": null, "method": "mining.set_difficulty", "params": ["abc"]}).to_string(),
        format!("{{\"id\":null,\"method\":\"client.show_message\",\"params\":[\"{}\"]}}", "x".repeat(200_000)),
        "\u{1}\u{2}\u{3}".to_string(),
    ];
    let mut spec = PoolSpec::new("g");
    spec.plan = Arc::new(move |_| ConnPlan { garbage: garbage.clone(), ..ConnPlan::default() });
    let pool = ScriptedPool::start(spec);
    let args: Vec<String> = ["--pool", &pool.url(), "--user", "w", "--pass", "x", "--duration", "3", "--threads", "2"].iter().map(|s| s.to_string()).collect();
    let mut m = Miner::start(&args);
    let status = m.wait(Duration::from_secs(30));
    let err = m.stderr();
    assert!(status.success(), "{err}");
    let log = pool.log();
    assert!(log.valid() >= 2, "{err}");
    assert!(log.invalid().is_empty(), "{:?}", log.invalid());
    assert_eq!(log.connections, 1, "garbage must not cost the connection\n{err}");
    for reason in ["invalid JSON", "not a JSON object", "prevhash", "merkle_branch", "difficulty", "line of more than"] {
        assert!(err.contains(reason), "no logged reason containing {reason:?}:\n{err}");
    }
}
