//! Stratum V2 for hashrig: a mining client on the reference implementation's crates
//! (`stratum-core` 0.6.0: `codec_sv2` with Noise, `noise_sv2`, `parsers_sv2`, `mining_sv2`), and,
//! with the `testkit` feature, an SV2 test pool whose share checks are `channels_sv2`'s
//! server-side extended and standard channels, so client and pool cannot agree on the same
//! mistake.
//!
//! - [`url`]: `stratum2+tcp://HOST:PORT/AUTHORITY_PUBKEY[?channel=standard]` and the authority
//!   key's text form.
//! - [`conn`]: TCP (TCP_NODELAY), the Noise NX handshake, one write per frame, a reader task.
//! - [`client`]: the failover loop and the channel (extended, or standard where the pool builds
//!   the merkle root); every share settled exactly once.
//!
//! The protocol facts the code relies on are in this crate's REFERENCE.md.

pub mod client;
pub mod conn;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod url;

pub use client::{ChannelInfo, ChannelKind, ClientConfig, ClientEvent, ClientHandle, ClientStatus, ShareOutcome, ShareSubmit, StaleReason, Sv2Job, Sv2Pool};
pub use url::{PoolUrl, is_sv2_url};

/// What goes wrong on an SV2 connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad SV2 pool URL {url}: {why}")]
    Url { url: String, why: String },
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("the pool closed the connection")]
    Closed,
    #[error("Noise handshake failed: {0}")]
    Handshake(String),
    #[error(
        "the pool's certificate is valid from {valid_from} to {not_valid_after} (unix seconds) but this machine's clock says {now}: \
         clock skew is the likely cause (check the system time, e.g. NTP)"
    )]
    CertificateWindow { valid_from: u64, not_valid_after: u64, now: u64 },
    #[error(
        "the pool's certificate is not signed by the authority key in the pool URL: refused \
         (a wrong key in the URL, or not the pool you meant)"
    )]
    AuthorityMismatch,
    #[error("a frame over {limit} bytes: refused (no mining message is that large)")]
    FrameTooLarge { limit: usize },
    #[error("codec: {0}")]
    Codec(String),
    #[error("SetupConnection: {0}")]
    Setup(String),
    #[error("the pool refused to open the channel: {0}")]
    OpenChannel(String),
    #[error("extranonce: {0}")]
    Extranonce(String),
    #[error("protocol: {0}")]
    Protocol(String),
}
