//! The solo block policy against the node crate's fake node: a refresh on the same previous
//! block is not a clean job, a block found on the older template is still submitted and
//! accepted, and a block whose previous block is no longer the tip is counted stale.

use std::time::Duration;

use hashrig_miner::solo::SoloSource;
use hashrig_miner::{Fate, JobSource, ShareId, SourceEvent, SourceJob, StaleReason, Submission};
use hashrig_node::testkit::{EASY_BITS, FakeNode, payout, solve};
use hashrig_node::{Auth, BlockStore, SoloConfig};

fn source(node: &FakeNode, dir: &std::path::Path, cookie: &std::path::Path) -> SoloSource {
    std::fs::write(cookie, &node.cookie).unwrap();
    SoloSource::spawn(SoloConfig {
        rpc: hashrig_node::RpcClient::new(node.url().parse().unwrap(), Auth::Cookie(cookie.to_owned())),
        payout: payout().0,
        // The testkit's solve() builds its coinbase with this tag.
        tag: b"/testkit/".to_vec(),
        store: BlockStore::open(dir).unwrap(),
        refresh: Duration::from_millis(300),
        retry: Duration::from_millis(50),
    })
}

async fn next_job(src: &mut SoloSource) -> SourceJob {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), src.next_event()).await.expect("an event in time").expect("source alive") {
            SourceEvent::Job(j) => {
                assert!(matches!(j.job, hashrig_work::HeaderSource::Coinbase(_)), "a node's job is a coinbase to roll: {:?}", j.job);
                return j;
            }
            _ => continue,
        }
    }
}

/// A solo job's coinbase (every solo job is one: `next_job` checks).
fn cb(j: &SourceJob) -> &hashrig_work::job::CoinbaseJob {
    match &j.job {
        hashrig_work::HeaderSource::Coinbase(cb) => cb,
        other => panic!("{other:?}"),
    }
}

async fn settled(src: &mut SoloSource, want: ShareId) -> Fate {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), src.next_event()).await.expect("an event in time").expect("source alive") {
            SourceEvent::Settled { id, fate } if id == want => return fate,
            _ => continue,
        }
    }
}

/// An engine share for a block the testkit solved on the node's current template.
fn block_share(node: &FakeNode) -> hashrig_engine::Share {
    block_share_on(&node.work(), 0)
}

/// The same on a given template, with extranonce2 filled with `fill` (another block each).
fn block_share_on(work: &std::sync::Arc<hashrig_node::SoloWork>, fill: u8) -> hashrig_engine::Share {
    let en2 = vec![fill; work.job.extranonce2_size];
    let found = solve(work, &en2);
    let header: [u8; 80] = bitcoin::consensus::serialize(&found.header).try_into().unwrap();
    hashrig_engine::Share {
        job_id: "engine".into(),
        extranonce2: en2,
        extranonce2_counter: 0,
        ntime: found.header.time,
        nonce: found.header.nonce,
        version: found.header.version.to_consensus() as u32,
        header,
        digest: [0; 32],
        difficulty: 1.0,
        is_block: true,
        device: 0,
        origin: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_on_the_same_tip_is_not_clean_and_a_block_on_the_older_template_is_accepted() {
    let node = FakeNode::start(120, EASY_BITS, "__cookie__:abc");
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(&node, &dir.path().join("blocks"), &dir.path().join("cookie"));
    let first = next_job(&mut src).await;
    assert!(first.clean);
    // Solve on the first template before the node changes its transactions.
    let share = block_share(&node);
    let removed = node.state().txs.pop().expect("the fake node has transactions");
    let refresh = next_job(&mut src).await;
    // The fake node checks a block's transactions against its own list: put it back, as a
    // real node would still know the first template's transactions.
    node.state().txs.push(removed);
    assert_eq!(cb(&refresh).prev_hash, cb(&first).prev_hash);
    assert_ne!(cb(&refresh).merkle_branch, cb(&first).merkle_branch, "the refresh should carry other transactions");
    assert!(!refresh.clean, "a refresh on the same previous block must not void work in flight");
    // The block found on the first template is still a block: submitted, on disk, accepted.
    let id = ShareId(1);
    src.submit(Submission { id, job: first.key.clone(), share }).expect("submitted");
    let pending = std::fs::read_dir(dir.path().join("blocks/pending")).unwrap().count()
        + std::fs::read_dir(dir.path().join("blocks/submitted")).unwrap().count();
    assert!(pending >= 1, "the block is on disk once submit returns");
    assert_eq!(settled(&mut src, id).await, Fate::Accepted);
    let st = node.state();
    assert_eq!(st.submitted.len(), 1);
    assert!(st.submitted[0].accepted, "{:?}", st.submitted[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_on_a_previous_block_that_is_no_longer_the_tip_is_stale() {
    let node = FakeNode::start(50, EASY_BITS, "__cookie__:abc");
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(&node, &dir.path().join("blocks"), &dir.path().join("cookie"));
    let first = next_job(&mut src).await;
    let share = block_share(&node);
    // Someone else's block: the tip moves on.
    {
        let mut st = node.state();
        st.tip = bitcoin::BlockHash::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([9; 32]));
        st.height += 1;
    }
    let moved = loop {
        let j = next_job(&mut src).await;
        if cb(&j).prev_hash != cb(&first).prev_hash {
            break j;
        }
    };
    assert!(moved.clean);
    assert_eq!(src.submit(Submission { id: ShareId(1), job: first.key, share }), Err(StaleReason::PrevBlockChanged));
    assert!(node.state().submitted.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_block_on_a_previous_block_whose_first_block_was_accepted_is_stale_and_not_sent() {
    // The engine may find a second block on the same previous block after the node accepted
    // the first, but before the node's next template arrives. That block can only be refused
    // (bad-prevblk): it is stale, and the node never sees it (CI caught this as a flaky
    // end-to-end run at the OP_16 boundary).
    let node = FakeNode::start(16, EASY_BITS, "__cookie__:abc");
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(&node, &dir.path().join("blocks"), &dir.path().join("cookie"));
    let first = next_job(&mut src).await;
    let work = node.work();
    let one = block_share_on(&work, 0);
    let two = block_share_on(&work, 1);
    src.submit(Submission { id: ShareId(1), job: first.key.clone(), share: one }).expect("submitted");
    assert_eq!(settled(&mut src, ShareId(1)).await, Fate::Accepted);
    assert_eq!(src.submit(Submission { id: ShareId(2), job: first.key, share: two }), Err(StaleReason::PrevBlockChanged));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = node.state();
    assert_eq!(st.submitted.len(), 1, "{:?}", st.submitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_end_every_block_found_is_on_disk_and_in_the_ledger_even_when_the_node_never_answers() {
    use hashrig_miner::{Miner, MinerConfig, Quiet};
    let node = FakeNode::start(700, EASY_BITS, "__cookie__:abc");
    node.refuse_submits();
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    let src = source(&node, &blocks, &dir.path().join("cookie"));
    let cfg = hashrig_hasher_cpu::CpuConfig { threads: Some(1), ..Default::default() };
    let hashers: Vec<Box<dyn hashrig_engine::Hasher>> = vec![Box::new(hashrig_hasher_cpu::CpuHasher::new(&cfg).unwrap())];
    let miner = Miner::start(hashers, src, MinerConfig { shutdown_wait: Duration::from_millis(300), ..Default::default() }).unwrap();
    let out = miner.run(tokio::time::sleep(Duration::from_secs(2)), &mut Quiet).await;
    let l = &out.ledger;
    assert!(out.reconciles(), "{l:#?}");
    assert!(l.blocks.found >= 1, "no block found: {l:#?}");
    assert_eq!(l.blocks.accepted + l.blocks.rejected, 0, "the node refused every submit");
    // Every block is either still with the node (in flight) or waiting behind the first one
    // (also in flight); none was dropped, and each is on disk for the next start.
    assert_eq!(l.blocks.in_flight, l.blocks.found - l.blocks.stale, "{l:#?}");
    let on_disk = std::fs::read_dir(blocks.join("pending")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".hex")).count();
    assert_eq!(on_disk as u64, l.blocks.in_flight, "blocks in flight must all be in pending/");
}
