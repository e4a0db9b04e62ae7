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
            SourceEvent::Job(j) => return j,
            _ => continue,
        }
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
    let work = node.work();
    let en2 = vec![0u8; work.job.extranonce2_size];
    let found = solve(&work, &en2);
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
    assert_eq!(refresh.job.prev_hash, first.job.prev_hash);
    assert_ne!(refresh.job.merkle_branch, first.job.merkle_branch, "the refresh should carry other transactions");
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
        if j.job.prev_hash != first.job.prev_hash {
            break j;
        }
    };
    assert!(moved.clean);
    assert_eq!(src.submit(Submission { id: ShareId(1), job: first.key, share }), Err(StaleReason::PrevBlockChanged));
    assert!(node.state().submitted.is_empty());
}
