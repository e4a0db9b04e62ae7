//! The client against the test pool at the handshake and channel-open steps: a wrong authority
//! key and a certificate outside its validity window are refused with errors that say so, and a
//! pool granting fewer extranonce bytes than asked is refused.

use std::time::Duration;

use hashrig_sv2::client::{self, ClientConfig, ClientEvent};
use hashrig_sv2::testkit::{TestPool, TestPoolConfig, other_authority_key};

/// The client's first event against `url`.
async fn first_event(url: &str, tweak: impl FnOnce(&mut ClientConfig)) -> ClientEvent {
    let mut cfg = ClientConfig::new(vec![url.parse().unwrap()], "w.1");
    cfg.retry_delay = Duration::from_secs(30);
    tweak(&mut cfg);
    let (handle, mut events, task) = client::spawn(cfg);
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("an event in time").expect("an event");
    handle.shutdown(Duration::from_millis(10)).await;
    task.abort();
    ev
}

#[tokio::test]
async fn the_right_key_opens_an_extended_channel() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    match first_event(&pool.url(), |_| {}).await {
        ClientEvent::Connected { channel, .. } => {
            assert_eq!(channel.kind, client::ChannelKind::Extended);
            assert_eq!(channel.extranonce_size, 4);
            assert!(!channel.extranonce_prefix.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_authority_key_is_refused_with_a_clear_error() {
    let pool = TestPool::start(TestPoolConfig::default()).await.unwrap();
    let url = format!("stratum2+tcp://{}/{}", pool.addr(), other_authority_key());
    match first_event(&url, |_| {}).await {
        ClientEvent::Notice(n) => assert!(n.contains("not signed by the authority key in the pool URL"), "{n}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.stats().channels_opened, 0);
}

#[tokio::test]
async fn a_certificate_outside_its_window_names_clock_skew() {
    // Issued two hours ago for one hour: expired by this machine's clock.
    let cfg = TestPoolConfig { cert_clock_offset: -7200, cert_validity: Duration::from_secs(3600), ..Default::default() };
    let pool = TestPool::start(cfg).await.unwrap();
    match first_event(&pool.url(), |_| {}).await {
        ClientEvent::Notice(n) => assert!(n.contains("clock skew is the likely cause"), "{n}"),
        other => panic!("{other:?}"),
    }
    // ...and one issued in the future, too
    let cfg = TestPoolConfig { cert_clock_offset: 7200, ..Default::default() };
    let pool = TestPool::start(cfg).await.unwrap();
    match first_event(&pool.url(), |_| {}).await {
        ClientEvent::Notice(n) => assert!(n.contains("clock skew"), "{n}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_client_asking_more_extranonce_than_the_pool_grants_is_refused() {
    let pool = TestPool::start(TestPoolConfig { rollable_extranonce: 2, ..Default::default() }).await.unwrap();
    match first_event(&pool.url(), |c| c.min_extranonce_size = 4).await {
        ClientEvent::Notice(n) => assert!(n.contains("min-extranonce-size-too-large"), "{n}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn extranonce_grants_are_checked_both_ways() {
    use hashrig_sv2::client::check_extranonce;
    assert!(check_extranonce(4, 4, 4).is_ok());
    assert!(check_extranonce(4, 2, 4).unwrap_err().to_string().contains("asked for at least 4"));
    assert!(check_extranonce(30, 4, 2).unwrap_err().to_string().contains("exceed the 32 bytes"));
    assert!(check_extranonce(0, 0, 0).is_err());
}

#[tokio::test]
async fn an_sv1_port_gives_a_handshake_error_not_a_hang() {
    // A listener that answers with a Stratum v1 line and closes.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"{\"id\":null,\"error\":\"bad\"}\n").await;
        }
    });
    let url = format!("stratum2+tcp://{addr}/{}", hashrig_sv2::testkit::AUTHORITY_PUBLIC);
    match first_event(&url, |_| {}).await {
        ClientEvent::Notice(n) => assert!(n.contains("handshake"), "{n}"),
        other => panic!("{other:?}"),
    }
}
