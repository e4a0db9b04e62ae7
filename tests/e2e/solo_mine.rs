//! Solo mining through `hashrig mine --node` against a fake node (tests/e2e/solo_support.rs) that checks
//! every block with the bitcoin crate, and the crash-safety path: a block found just before the
//! miner is killed is on disk and is the first thing submitted after a restart.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bitcoin::hashes::Hash;
use crate::pool_support::{Miner, wait_for};
use crate::solo_support::{FakeNode, payout};

const COOKIE: &str = "__cookie__:5f0d6e1c2b";
/// Target about 2^-16: a block every ~65k hashes, easy on a debug-build CPU.
const BITS: u32 = 0x1f00_ffff;

fn solo_args(node: &FakeNode, cookie: &Path, blocks: &Path, extra: &[&str]) -> Vec<String> {
    let (_, addr) = payout();
    let mut v: Vec<String> = [
        "--node", &node.url(), "--rpc-cookie", cookie.to_str().unwrap(), "--address", &addr,
        "--network", "regtest", "--blocks-dir", blocks.to_str().unwrap(), "--threads", "2", "--status-interval", "0.5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".hex")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn solo_blocks_across_the_op_n_height_boundary_are_accepted_by_a_checking_node() {
    let tmp = tempfile::tempdir().unwrap();
    let cookie = tmp.path().join(".cookie");
    std::fs::write(&cookie, COOKIE).unwrap();
    let blocks = tmp.path().join("blocks");
    // Heights 15 and 16 use OP_15/OP_16 for BIP 34; 17 onwards a number push.
    let node = FakeNode::start(15, BITS, COOKIE);
    let m = Miner::start(&solo_args(&node, &cookie, &blocks, &[]));
    let ok = wait_for(Duration::from_secs(25), || node.state().submitted.iter().filter(|s| s.accepted).count() >= 3);
    let first3: Vec<_> = node.state().submitted.iter().take(3).cloned().collect();
    // Every block the node accepted is moved from pending/ to submitted/ by the miner.
    let saved = wait_for(Duration::from_secs(5), || {
        let on_disk = files(&blocks.join("submitted"));
        first3.iter().all(|s| on_disk.contains(&format!("{}.hex", s.hash)))
    });
    let err = m.stderr();
    drop(m);
    let st = node.state();
    assert!(ok, "submitted: {:?}\n{err}", st.submitted);
    assert!(saved, "{:?} vs {:?}", first3, files(&blocks.join("submitted")));
    let rejected: Vec<_> = st.submitted.iter().filter(|s| !s.accepted).collect();
    assert!(rejected.is_empty(), "rejected: {rejected:?}\n{err}");
    let heights: Vec<u64> = first3.iter().map(|s| s.height).collect();
    assert_eq!(heights, [15, 16, 17]);
    assert_eq!(st.unauthorized, 0);
    drop(st);
    assert!(err.contains("accepted"), "{err}");
}

#[test]
fn a_block_found_before_the_miner_is_killed_is_submitted_first_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let cookie = tmp.path().join(".cookie");
    std::fs::write(&cookie, COOKIE).unwrap();
    let blocks = tmp.path().join("blocks");
    let node = FakeNode::start(300, BITS, COOKIE);
    node.hang_submit.store(true, Ordering::SeqCst);
    let mut m = Miner::start(&solo_args(&node, &cookie, &blocks, &[]));
    let pending = blocks.join("pending");
    let found = wait_for(Duration::from_secs(25), || !files(&pending).is_empty());
    assert!(found, "no block written\n{}", m.stderr());
    // Kill -9 right after the block hit the disk (its submission is hanging).
    m.child.kill().unwrap();
    m.child.wait().unwrap();
    // A second block on the same tip, found while the first was with the node, waits on disk
    // too (it is never dropped while its previous block may still be the tip).
    let all_saved = files(&pending);
    assert!(!all_saved.is_empty(), "{all_saved:?}");
    assert!(node.state().submitted.is_empty());

    node.hang_submit.store(false, Ordering::SeqCst);
    let m2 = Miner::start(&solo_args(&node, &cookie, &blocks, &[]));
    let ok = wait_for(Duration::from_secs(20), || !node.state().submitted.is_empty());
    let err = m2.stderr();
    assert!(ok, "nothing submitted after restart\n{err}");
    // The blocks left pending go to the node before any new work (each in its own task, so
    // in no set order); the first it answers is one of them, accepted at the height they build.
    let first = node.state().submitted[0].clone();
    assert!(all_saved.contains(&format!("{}.hex", first.hash)), "{first:?} is not one of the saved blocks {all_saved:?}");
    assert!(first.accepted, "{first:?}");
    assert_eq!(first.height, 300);
    // Every block left pending is answered and moved out of pending/ (a second one on the same
    // previous block is refused by the node once the first is the tip).
    let ok = wait_for(Duration::from_secs(5), || {
        let left = files(&pending);
        all_saved.iter().all(|f| !left.contains(f)) && files(&blocks.join("submitted")).contains(&format!("{}.hex", first.hash))
    });
    assert!(ok, "pending {:?} submitted {:?} rejected {:?}\n{err}", files(&pending), files(&blocks.join("submitted")), files(&blocks.join("rejected")));
}

#[test]
fn a_payout_address_of_another_network_is_refused_before_mining() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashrig"))
        .args(["mine", "--node", "http://127.0.0.1:1", "--rpc-user", "u", "--rpc-pass", "p", "--network", "mainnet"])
        .args(["--address", &payout().1, "--blocks-dir", tmp.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a mainnet address"), "{err}");
}

#[test]
fn nbits_come_from_each_fresh_template_like_the_testnet_twenty_minute_rule() {
    // The node first asks for a difficulty a CPU cannot meet in the test's time, then (same tip,
    // as when a testnet block's time passes parent + 20 min) for an easy one: the miner must
    // take nbits from the fresh template and its block must carry the new bits.
    let tmp = tempfile::tempdir().unwrap();
    let cookie = tmp.path().join(".cookie");
    std::fs::write(&cookie, COOKIE).unwrap();
    let node = FakeNode::start(500, 0x1d00_ffff, COOKIE);
    let m = Miner::start(&solo_args(&node, &cookie, &tmp.path().join("blocks"), &[]));
    assert!(wait_for(Duration::from_secs(10), || node.state().templates >= 1), "{}", m.stderr());
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.state().submitted.is_empty());
    node.state().bits = BITS;
    let ok = wait_for(Duration::from_secs(20), || node.state().submitted.iter().any(|s| s.accepted));
    let err = m.stderr();
    let st = node.state();
    assert!(ok, "{:?}\n{err}", st.submitted);
    assert!(st.submitted.iter().all(|s| s.accepted), "{:?}", st.submitted);
}

#[test]
fn a_block_is_retried_until_the_node_answers() {
    // The node answers the first two submitblock calls with a 503 that is not JSON (its work
    // queue is full): the miner keeps the block and retries until the node really answers.
    let tmp = tempfile::tempdir().unwrap();
    let cookie = tmp.path().join(".cookie");
    std::fs::write(&cookie, COOKIE).unwrap();
    let node = FakeNode::start(1000, BITS, COOKIE);
    node.fail_submits.store(2, Ordering::SeqCst);
    let m = Miner::start(&solo_args(&node, &cookie, &tmp.path().join("blocks"), &[]));
    let ok = wait_for(Duration::from_secs(20), || node.state().submitted.iter().any(|s| s.accepted));
    let err = m.stderr();
    let st = node.state();
    assert!(ok, "{:?}\n{err}", st.submitted);
    assert_eq!(st.refused_attempts.len(), 2);
    // The refused attempts were the very block that was then accepted.
    let first = &st.submitted[0];
    let refused_hash = |h: &String| {
        let header: bitcoin::block::Header = bitcoin::consensus::deserialize(&hex::decode(&h[..160]).unwrap()).unwrap();
        header.block_hash()
    };
    assert!(st.refused_attempts.iter().all(|h| refused_hash(h) == first.hash));
    assert!(first.accepted && first.height == 1000);
    assert!(err.contains("retrying"), "{err}");
}

#[test]
fn each_long_poll_sends_the_longpollid_of_the_previous_template() {
    let tmp = tempfile::tempdir().unwrap();
    let cookie = tmp.path().join(".cookie");
    std::fs::write(&cookie, COOKIE).unwrap();
    // Difficulty 1: no block is found here, so only long polls move the template on.
    let node = FakeNode::start(200, 0x1d00_ffff, COOKIE);
    let m = Miner::start(&solo_args(&node, &cookie, &tmp.path().join("blocks"), &[]));
    // The fake node holds a long poll up to 2 s while its tip is unchanged.
    assert!(wait_for(Duration::from_secs(20), || node.state().gbt.len() >= 2), "{}", m.stderr());
    // A new tip: the long poll in flight returns with it, and the next one names it.
    let new_id = {
        let mut s = node.state();
        s.tip = bitcoin::BlockHash::from_byte_array([0x43; 32]);
        s.height += 1;
        format!("{}{}", s.tip, s.height)
    };
    let named = wait_for(Duration::from_secs(20), || node.state().gbt.iter().any(|(asked, _)| asked.as_deref() == Some(new_id.as_str())));
    let err = m.stderr();
    drop(m);
    let gbt = node.state().gbt.clone();
    assert!(named, "no long poll named the new tip's id {new_id}: {gbt:?}\n{err}");
    assert_eq!(gbt[0].0, None, "the first request is not a long poll");
    for w in gbt.windows(2) {
        assert_eq!(w[1].0.as_deref(), Some(w[0].1.as_str()), "{gbt:?}");
    }
}
