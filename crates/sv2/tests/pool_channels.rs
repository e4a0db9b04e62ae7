//! The test pool with several channels on one connection, as the reference translator proxy
//! opens them when it does not aggregate its miners (tests/e2e/sv2_farm.rs relies on this): each
//! channel gets its own jobs, answers and counts; opening one sends nothing to the others (their
//! work stays valid); a share for a channel that is not open is refused; a client's
//! `CloseChannel` ends that channel alone.

use std::time::Duration;

use hashrig_sv2::conn::{self, Inbound, Reader, Writer};
use hashrig_sv2::testkit::{AUTHORITY_PUBLIC, TestPool, TestPoolConfig};
use hashrig_sv2::url::decode_authority_key;
use stratum_core::binary_sv2::{B032Owned, Str0255Owned, U256Owned};
use stratum_core::common_messages_sv2::{Protocol, SetupConnectionOwned};
use stratum_core::mining_sv2::{CloseChannelOwned, OpenExtendedMiningChannelOwned, SubmitSharesExtendedOwned};
use stratum_core::parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};

fn s255(s: &str) -> Str0255Owned {
    Str0255Owned::new(s.as_bytes().to_vec()).unwrap()
}

async fn next(rx: &mut Reader) -> MiningOwned {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a message in time") {
        Some(Inbound::Message(AnyMessageOwned::Mining(m))) => m,
        other => panic!("expected a mining message, got {other:?}"),
    }
}

/// Nothing more arrives for `d`.
async fn quiet(rx: &mut Reader, d: Duration) {
    if let Ok(m) = tokio::time::timeout(d, rx.recv()).await {
        panic!("expected nothing, got {m:?}");
    }
}

/// Open an extended channel: its id, its first job's id and the previous block hash it is on.
async fn open(w: &mut Writer, rx: &mut Reader, request_id: u32, user: &str) -> (u32, u32, Vec<u8>) {
    let m = OpenExtendedMiningChannelOwned {
        request_id,
        user_identity: s255(user),
        nominal_hash_rate: 1e6,
        max_target: U256Owned::from([0xffu8; 32]),
        min_extranonce_size: 4,
    };
    w.send(AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannel(m))).await.unwrap();
    let id = match next(rx).await {
        MiningOwned::OpenExtendedMiningChannelSuccess(ok) => {
            assert_eq!(ok.request_id, request_id);
            ok.channel_id
        }
        other => panic!("{other:?}"),
    };
    let job = match next(rx).await {
        MiningOwned::NewExtendedMiningJob(j) => {
            assert_eq!(j.channel_id, id, "the new channel's job");
            j.job_id
        }
        other => panic!("{other:?}"),
    };
    match next(rx).await {
        MiningOwned::SetNewPrevHash(p) => {
            assert_eq!((p.channel_id, p.job_id), (id, job), "the new channel's job goes live");
            (id, job, p.prev_hash.as_bytes().to_vec())
        }
        other => panic!("{other:?}"),
    }
}

async fn submit(w: &mut Writer, channel_id: u32, sequence_number: u32, job_id: u32, extranonce: Vec<u8>) {
    let s = SubmitSharesExtendedOwned { channel_id, sequence_number, job_id, nonce: 0, ntime: 0, version: 0x2000_0000, extranonce: B032Owned::new(extranonce).unwrap() };
    w.send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesExtended(s))).await.unwrap();
}

/// The error code of the next message, a `SubmitShares.Error` for (channel, sequence number).
async fn refused(rx: &mut Reader, channel_id: u32, seq: u32) -> String {
    match next(rx).await {
        MiningOwned::SubmitSharesError(e) => {
            assert_eq!((e.channel_id, e.sequence_number), (channel_id, seq));
            String::from_utf8(e.error_code.as_bytes().to_vec()).unwrap()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn several_channels_on_one_connection_are_kept_and_counted_apart() {
    let pool = TestPool::start(TestPoolConfig { job_interval: None, ..Default::default() }).await.unwrap();
    let key = decode_authority_key(AUTHORITY_PUBLIC).unwrap();
    let (mut w, mut rx) = conn::connect("127.0.0.1", pool.addr().port(), key, Duration::from_secs(5)).await.unwrap();
    let setup = SetupConnectionOwned {
        protocol: Protocol::MiningProtocol,
        min_version: 2,
        max_version: 2,
        flags: 0,
        endpoint_host: s255("127.0.0.1"),
        endpoint_port: pool.addr().port(),
        vendor: s255("test"),
        hardware_version: s255(""),
        firmware: s255(""),
        device_id: s255(""),
    };
    w.send(AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(setup))).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap() {
        Some(Inbound::Message(AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)))) => {}
        other => panic!("{other:?}"),
    }

    let (a, job_a, prev_a) = open(&mut w, &mut rx, 1, "farm.miner1").await;
    let (b, job_b, prev_b) = open(&mut w, &mut rx, 2, "farm.miner2").await;
    assert_ne!(a, b);
    // The second channel joins the first one's block: channel a got nothing (no new block
    // that would void its work), and both are on the same previous block.
    assert_eq!(prev_a, prev_b);
    quiet(&mut rx, Duration::from_millis(300)).await;

    // Each channel's shares are checked by its own reference channel and counted on it.
    submit(&mut w, b, 1, job_b, vec![0; 1]).await;
    assert_eq!(refused(&mut rx, b, 1).await, "bad-extranonce-size");
    submit(&mut w, a, 1, job_a, vec![0; 1]).await;
    assert_eq!(refused(&mut rx, a, 1).await, "bad-extranonce-size");
    submit(&mut w, b, 2, job_b, vec![0; 1]).await;
    assert_eq!(refused(&mut rx, b, 2).await, "bad-extranonce-size");
    // A channel never opened.
    submit(&mut w, 99, 3, job_a, vec![0; 4]).await;
    assert_eq!(refused(&mut rx, 99, 3).await, "invalid-channel-id");

    // The client closes channel a: it is gone, b goes on.
    let close = CloseChannelOwned { channel_id: a, reason_code: s255("downstream disconnected") };
    w.send(AnyMessageOwned::Mining(MiningOwned::CloseChannel(close))).await.unwrap();
    submit(&mut w, a, 2, job_a, vec![0; 4]).await;
    assert_eq!(refused(&mut rx, a, 2).await, "invalid-channel-id");
    submit(&mut w, b, 3, job_b, vec![0; 1]).await;
    assert_eq!(refused(&mut rx, b, 3).await, "bad-extranonce-size");

    let st = pool.stats();
    assert_eq!((st.connections, st.channels_opened, st.channels.len()), (1, 2, 2), "{st:#?}");
    let (ca, cb) = (&st.channels[0], &st.channels[1]);
    assert_eq!((ca.connection, ca.channel_id, ca.user_identity.as_str(), ca.rejected, ca.closed), (0, a, "farm.miner1", 1, true), "{st:#?}");
    assert_eq!((cb.connection, cb.channel_id, cb.user_identity.as_str(), cb.rejected, cb.closed), (0, b, "farm.miner2", 3, false), "{st:#?}");
    assert_eq!(st.rejected.get("bad-extranonce-size"), Some(&4), "{st:#?}");
    assert_eq!(st.rejected.get("invalid-channel-id"), Some(&2), "{st:#?}");
}
