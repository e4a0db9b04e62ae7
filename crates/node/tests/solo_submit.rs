//! Found blocks against the test kit's fake node: what counts as an answer (BIP 22), what is
//! retried (RPC -28, HTTP 503, dropped connections), damaged files in `pending/`, blocks on disk
//! before `submit` returns and submitted side by side, and shutdown with blocks unanswered.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::BlockHash;
use hashrig_node::solo::{self, submit_until_answered};
use hashrig_node::testkit::{EASY_BITS, FakeNode, Scripted, payout, solve};
use hashrig_node::{Auth, BlockAnswer, BlockStore, Error, RpcClient, SoloConfig, SoloEvent, SoloHandle};
use tokio::sync::mpsc::UnboundedReceiver;

const COOKIE: &str = "__cookie__:5f0d6e1c2b";
const RETRY: Duration = Duration::from_millis(20);
/// How long a test waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

struct Rig {
    node: FakeNode,
    tmp: tempfile::TempDir,
    rpc: RpcClient,
    store: BlockStore,
}

impl Rig {
    fn new() -> Rig {
        let node = FakeNode::start(300, EASY_BITS, COOKIE);
        let tmp = tempfile::tempdir().unwrap();
        let cookie = tmp.path().join(".cookie");
        std::fs::write(&cookie, COOKIE).unwrap();
        let rpc = RpcClient::new(node.url().parse().unwrap(), Auth::Cookie(cookie));
        let store = BlockStore::open(tmp.path().join("blocks")).unwrap();
        Rig { node, tmp, rpc, store }
    }
    fn cfg(&self) -> SoloConfig {
        SoloConfig { rpc: self.rpc.clone(), payout: payout().0, tag: b"/t/".to_vec(), store: self.store.clone(), refresh: Duration::from_secs(5), retry: RETRY }
    }
    fn dir(&self, sub: &str) -> PathBuf {
        self.tmp.path().join("blocks").join(sub)
    }
    /// A block on the node's current tip, saved to `pending/`.
    fn saved_block(&self, extranonce2: u8) -> hashrig_node::StoredBlock {
        let b = solve(&self.node.work(), &[extranonce2; 8]);
        self.store.save(&b.work.block_bytes(&b.extranonce2, &b.header)).unwrap()
    }
}

fn hex_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".hex")).collect();
    v.sort();
    v
}

/// The next `BlockResult`, skipping work and node errors; panics after [`PATIENCE`].
async fn next_result(rx: &mut UnboundedReceiver<SoloEvent>) -> (BlockHash, BlockAnswer) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("no block result within {PATIENCE:?}"),
            Ok(None) => panic!("the event channel closed"),
            Ok(Some(SoloEvent::BlockResult { hash, answer })) => return (hash, answer),
            Ok(Some(_)) => {}
        }
    }
}

/// Wait (polling) until `cond` holds; false after [`PATIENCE`].
async fn until(mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < PATIENCE {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

async fn spawn_and_submit(rig: &Rig, extranonces: &[u8]) -> (SoloHandle, UnboundedReceiver<SoloEvent>, Vec<hashrig_node::StoredBlock>) {
    let (h, rx, _task) = solo::spawn(rig.cfg());
    let work = rig.node.work();
    let stored = extranonces.iter().map(|&e| h.submit(solve(&work, &[e; 8])).unwrap()).collect();
    (h, rx, stored)
}

#[tokio::test]
async fn rpc_error_minus_28_while_the_node_starts_is_retried_until_accepted() {
    let rig = Rig::new();
    let b = rig.saved_block(1);
    rig.node.warmup_submits(2);
    let answer = submit_until_answered(&rig.rpc, &b, RETRY).await;
    assert_eq!(answer, BlockAnswer::Accepted);
    let st = rig.node.state();
    let outcomes: Vec<_> = st.attempts_for(b.hash).iter().map(|a| a.outcome.clone()).collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes[0].contains("-28") && outcomes[1].contains("-28") && outcomes[2] == "checked", "{outcomes:?}");
    assert!(st.submitted[0].accepted);
}

#[tokio::test]
async fn any_other_rpc_error_is_retried_too() {
    let rig = Rig::new();
    let b = rig.saved_block(1);
    rig.node.script_submits([Scripted::RpcError { code: -1, message: "something odd".into() }]);
    assert_eq!(submit_until_answered(&rig.rpc, &b, RETRY).await, BlockAnswer::Accepted);
    assert_eq!(rig.node.state().attempts.len(), 2);
}

#[tokio::test]
async fn http_503_and_dropped_connections_are_retried_with_a_doubling_pause() {
    let rig = Rig::new();
    let b = rig.saved_block(1);
    rig.node.fail_submits.store(1, Ordering::SeqCst);
    rig.node.script_submits([Scripted::Drop, Scripted::busy()]);
    let answer = submit_until_answered(&rig.rpc, &b, RETRY).await;
    assert_eq!(answer, BlockAnswer::Accepted);
    let st = rig.node.state();
    let a = st.attempts_for(b.hash);
    let outcomes: Vec<_> = a.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["refused 503", "Drop", "Http { status: 503, body: \"Work queue depth exceeded\" }", "checked"]);
    // Pauses of 20, 40 and 80 ms at least between the attempts.
    for (i, w) in a.windows(2).enumerate() {
        let gap = w[1].at - w[0].at;
        assert!(gap >= RETRY * (1 << i), "gap {i} is {gap:?}");
    }
}

#[test]
fn the_retry_pause_doubles_up_to_thirty_seconds() {
    let mut p = Duration::from_secs(2);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(p.as_secs());
        p = solo::next_pause(p, Duration::from_secs(2));
    }
    assert_eq!(seen, [2, 4, 8, 16, 30, 30]);
    // A first pause above the cap is kept as given.
    assert_eq!(solo::next_pause(Duration::from_secs(60), Duration::from_secs(60)), Duration::from_secs(60));
}

#[tokio::test]
async fn inconclusive_is_its_own_answer_and_not_counted_rejected() {
    let rig = Rig::new();
    rig.node.answer_next_submit("inconclusive");
    let (h, mut rx, stored) = spawn_and_submit(&rig, &[1]).await;
    let (hash, answer) = next_result(&mut rx).await;
    assert_eq!((hash, &answer), (stored[0].hash, &BlockAnswer::Inconclusive));
    assert!(!answer.is_rejection());
    let st = h.stats();
    assert_eq!((st.blocks_rejected, st.blocks_inconclusive, st.blocks_accepted), (0, 1, 0));
    assert_eq!(hex_files(&rig.dir("submitted")), [format!("{hash}.hex")]);
    let note = std::fs::read_to_string(rig.dir("submitted").join(format!("{hash}.note"))).unwrap();
    assert!(note.starts_with("inconclusive"), "{note}");
    assert!(hex_files(&rig.dir("pending")).is_empty() && hex_files(&rig.dir("rejected")).is_empty());
}

#[tokio::test]
async fn duplicate_counts_as_accepted() {
    let rig = Rig::new();
    rig.node.answer_next_submit("duplicate");
    let (h, mut rx, _) = spawn_and_submit(&rig, &[1]).await;
    assert_eq!(next_result(&mut rx).await.1, BlockAnswer::Duplicate);
    assert_eq!((h.stats().blocks_accepted, h.stats().blocks_rejected), (1, 0));
}

#[tokio::test]
async fn a_reject_string_is_a_rejection_with_its_reason() {
    let rig = Rig::new();
    rig.node.answer_next_submit("bad-cb-amount");
    let (h, mut rx, stored) = spawn_and_submit(&rig, &[1]).await;
    let (hash, answer) = next_result(&mut rx).await;
    assert_eq!(hash, stored[0].hash);
    assert_eq!(answer, BlockAnswer::Rejected("bad-cb-amount".into()));
    assert!(answer.is_rejection());
    assert_eq!(h.stats().blocks_rejected, 1);
    assert_eq!(hex_files(&rig.dir("rejected")), [format!("{hash}.hex")]);
    assert_eq!(std::fs::read_to_string(rig.dir("rejected").join(format!("{hash}.reason"))).unwrap().trim(), "bad-cb-amount");
    // Only one attempt: a rejection is an answer, not something to retry.
    assert_eq!(rig.node.state().attempts.len(), 1);
}

#[tokio::test]
async fn damaged_pending_files_are_reported_and_left_while_good_blocks_are_submitted() {
    let rig = Rig::new();
    let good = [rig.saved_block(1), rig.saved_block(2)];
    let pending = rig.dir("pending");
    let not_hex = pending.join("0000not-hex.hex");
    let truncated = pending.join("0001truncated.hex");
    std::fs::write(&not_hex, "this is not hex").unwrap();
    let whole = std::fs::read_to_string(&good[0].path).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();

    let (_h, mut rx, _task) = solo::spawn(rig.cfg());
    let mut damaged = Vec::new();
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match tokio::time::timeout(PATIENCE, rx.recv()).await.expect("events within the limit").expect("channel open") {
            SoloEvent::StoreDamaged { path, why } => damaged.push((path, why)),
            SoloEvent::BlockResult { hash, .. } => answered.push(hash),
            _ => {}
        }
    }
    damaged.sort();
    let paths: Vec<_> = damaged.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths, [not_hex.clone(), truncated.clone()], "{damaged:?}");
    assert!(damaged[0].1.contains("not hex"), "{damaged:?}");
    assert!(damaged[1].1.contains("not a whole block"), "{damaged:?}");
    answered.sort();
    let mut want: Vec<_> = good.iter().map(|b| b.hash).collect();
    want.sort();
    assert_eq!(answered, want);
    // Both good blocks reached the node; the damaged files are where they were, untouched.
    assert!(want.iter().all(|h| !rig.node.state().attempts_for(*h).is_empty()));
    assert_eq!(std::fs::read_to_string(&not_hex).unwrap(), "this is not hex");
    assert_eq!(std::fs::read_to_string(&truncated).unwrap(), whole[..whole.len() / 2]);
    assert_eq!(hex_files(&pending), ["0000not-hex.hex", "0001truncated.hex"]);
}

#[tokio::test]
async fn submit_pending_goes_on_after_a_block_whose_file_cannot_be_moved() {
    let rig = Rig::new();
    let blocks = [rig.saved_block(1), rig.saved_block(2)];
    std::fs::write(rig.dir("pending").join("broken.hex"), "zz").unwrap();
    // `submitted/` is a file: moving an accepted block there fails.
    std::fs::remove_dir(rig.dir("submitted")).unwrap();
    std::fs::write(rig.dir("submitted"), "in the way").unwrap();
    let out = solo::submit_pending(&rig.cfg()).await.unwrap();
    let hashes: Vec<_> = out.answered.iter().map(|(h, _)| *h).collect();
    assert_eq!(hashes.len(), 2, "{out:?}");
    assert!(blocks.iter().all(|b| hashes.contains(&b.hash)), "{out:?}");
    assert_eq!(rig.node.state().attempts.len(), 2);
    assert_eq!(out.damaged.len(), 1);
    // The block that could not be moved is still pending (it will be submitted again).
    assert!(hex_files(&rig.dir("pending")).contains(&format!("{}.hex", out.answered[0].0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_on_disk_when_submit_returns_and_are_retried_side_by_side() {
    let rig = Rig::new();
    rig.node.refuse_submits();
    let (h, mut rx, _task) = solo::spawn(rig.cfg());
    let work = rig.node.work();
    let a = h.submit(solve(&work, &[1; 8])).unwrap();
    assert!(a.path.exists() && a.path.starts_with(rig.dir("pending")));
    let b = h.submit(solve(&work, &[2; 8])).unwrap();
    assert!(b.path.exists());
    assert_eq!(hex_files(&rig.dir("pending")).len(), 2);
    // The second block is tried while the first is still being refused.
    let both_tried = until(|| {
        let st = rig.node.state();
        st.attempts_for(a.hash).len() >= 2 && st.attempts_for(b.hash).len() >= 2
    })
    .await;
    assert!(both_tried, "{:?}", rig.node.state().attempts);
    assert_eq!(h.in_flight().len(), 2);
    rig.node.serve_submits();
    let mut got = vec![next_result(&mut rx).await.0, next_result(&mut rx).await.0];
    got.sort();
    let mut want = vec![a.hash, b.hash];
    want.sort();
    assert_eq!(got, want);
    assert!(hex_files(&rig.dir("pending")).is_empty());
    assert!(h.in_flight().is_empty());
    // One got the tip; the other, on the same previous block, is then a stale rejection.
    let st = h.stats();
    assert_eq!((st.blocks_found, st.blocks_accepted, st.blocks_rejected), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_node_refusing_names_both_blocks_which_stay_pending_for_the_next_start() {
    let rig = Rig::new();
    rig.node.refuse_submits();
    let (h, mut rx, task) = solo::spawn(rig.cfg());
    let work = rig.node.work();
    let a = h.submit(solve(&work, &[1; 8])).unwrap();
    let b = h.submit(solve(&work, &[2; 8])).unwrap();
    let t = Instant::now();
    let left = h.shutdown(Duration::from_millis(300)).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let mut want = vec![a.hash, b.hash];
    want.sort();
    assert_eq!(left, want);
    let mut files = vec![format!("{}.hex", a.hash), format!("{}.hex", b.hash)];
    files.sort();
    assert_eq!(hex_files(&rig.dir("pending")), files);
    // The template loop has stopped and no block has a result.
    tokio::time::timeout(PATIENCE, task).await.expect("the template loop ends").unwrap();
    while let Ok(ev) = rx.try_recv() {
        assert!(!matches!(ev, SoloEvent::BlockResult { .. }), "{ev:?}");
    }
    // Aborted: no more attempts after shutdown returned.
    let n = rig.node.state().attempts.len();
    tokio::time::sleep(RETRY * 8).await;
    assert_eq!(rig.node.state().attempts.len(), n);
    assert!(h.shutdown(Duration::ZERO).await.is_empty());

    // Next start, node serving: both are submitted before any new block, and answered.
    rig.node.serve_submits();
    let (_h2, mut rx2, _task2) = solo::spawn(rig.cfg());
    let mut got = vec![next_result(&mut rx2).await.0, next_result(&mut rx2).await.0];
    got.sort();
    assert_eq!(got, want);
    assert!(hex_files(&rig.dir("pending")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_blocks_the_node_is_about_to_answer() {
    let rig = Rig::new();
    rig.node.fail_submits.store(2, Ordering::SeqCst);
    let (h, mut rx, _task) = solo::spawn(rig.cfg());
    let a = h.submit(solve(&rig.node.work(), &[1; 8])).unwrap();
    let left = h.shutdown(PATIENCE).await;
    assert!(left.is_empty(), "{left:?}");
    // Its result was sent before shutdown returned.
    let mut results = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let SoloEvent::BlockResult { hash, answer } = ev {
            results.push((hash, answer));
        }
    }
    assert_eq!(results, [(a.hash, BlockAnswer::Accepted)]);
}

#[tokio::test]
async fn a_block_that_cannot_be_saved_is_still_submitted_and_the_error_returned() {
    let rig = Rig::new();
    let (h, mut rx, _task) = solo::spawn(rig.cfg());
    std::fs::remove_dir(rig.dir("pending")).unwrap();
    std::fs::write(rig.dir("pending"), "in the way").unwrap();
    let found = solve(&rig.node.work(), &[1; 8]);
    let hash = found.header.block_hash();
    let e = h.submit(found).unwrap_err();
    assert!(matches!(e, Error::Store { .. }), "{e:?}");
    assert_eq!(next_result(&mut rx).await, (hash, BlockAnswer::Accepted));
    assert_eq!(h.stats().blocks_unsaved, 1);
}

// --- the RPC client's errors ---

#[tokio::test]
async fn rpc_errors_are_typed() {
    let rig = Rig::new();
    let b = rig.saved_block(1);
    let call = || rig.rpc.call_with_timeout("submitblock", serde_json::json!([hex::encode(&b.bytes)]), Duration::from_millis(500));

    rig.node.warmup_submits(1);
    let e = call().await.unwrap_err();
    assert!(matches!(e, Error::Rpc { code: -28, .. }) && e.is_transient(), "{e:?}");

    rig.node.script_submits([Scripted::busy()]);
    let e = call().await.unwrap_err();
    assert!(matches!(&e, Error::HttpStatus { status: 503, body, .. } if body == "Work queue depth exceeded") && e.is_transient(), "{e:?}");

    rig.node.drop_submits(1);
    let e = call().await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }) && e.is_transient(), "{e:?}");

    rig.node.hang_submit.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let e = call().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }) && t.elapsed() < Duration::from_secs(2), "{e:?} after {:?}", t.elapsed());
    rig.node.hang_submit.store(false, Ordering::SeqCst);

    rig.node.script_submits([Scripted::Result("inconclusive".into())]);
    assert_eq!(call().await.unwrap(), serde_json::json!("inconclusive"));
    assert_eq!(call().await.unwrap(), serde_json::Value::Null);

    let nobody = RpcClient::new("http://127.0.0.1:1".parse().unwrap(), Auth::UserPass { user: "u".into(), password: "p".into() });
    let e = nobody.call("getblockcount", serde_json::json!([])).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
}

#[tokio::test]
async fn a_wrong_cookie_says_so_and_the_cookie_file_is_read_again_on_each_call() {
    let rig = Rig::new();
    let cookie = rig.tmp.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:stale").unwrap();
    let e = rig.rpc.call("getblocktemplate", serde_json::json!([{"rules": ["segwit"]}])).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }) && !e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("cookie"), "{e}");
    assert!(!e.to_string().contains("stale"), "{e}");
    // The node restarted and wrote a new cookie: the next call uses it.
    std::fs::write(&cookie, COOKIE).unwrap();
    let t = rig.rpc.call("getblocktemplate", serde_json::json!([{"rules": ["segwit"]}])).await.unwrap();
    assert_eq!(t["height"], 300);
    assert_eq!(rig.node.state().unauthorized, 1);
}
