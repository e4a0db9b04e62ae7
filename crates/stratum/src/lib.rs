//! Stratum v1 mining client: typed messages ([`wire`]), a sans-IO session ([`session`]) and a
//! thin tokio transport with TLS, an inactivity watchdog and pool failover ([`client`]).
//!
//! What it is for: talking to Stratum v1 pools as they really speak (the quirks, with their
//! sources, are in the crate's `QUIRKS.md`): configure/version rolling (BIP 310), subscribe with any
//! extranonce sizes, authorize, notify, set_difficulty (applies to the next job),
//! set_extranonce, set_version_mask, client.reconnect, submit, and the error shapes pools
//! send. Jobs come out as [`hashrig_work::job::CoinbaseJob`]s in `bitcoin` types.
//!
//! What it is not for: hashing, deciding what a share is worth (the engine re-verifies every
//! share before it gets here), Stratum v2, or acting as a pool.

pub mod client;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;
pub mod wire;

pub use tls::PoolCa;

pub use client::{ClientConfig, ClientEvent, ConnId, StaleReason, ClientHandle, ClientStats, FoundShare, PoolConfig, PoolUrl};
pub use session::{Event, Password, PoolJob, Session, SessionConfig, SessionStats, Share, ShareOutcome, SubmitError};
pub use wire::{HexU32, Notify, PrevHash, ProtocolError, ServerMessage, StratumError};

/// Errors of the Stratum client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad pool URL {url:?}: {why}")]
    PoolUrl { url: String, why: &'static str },
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error with {url}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} closed the connection")]
    Closed { url: String },
    #[error("{url} refused worker {user:?}")]
    Unauthorized { url: String, user: String },
    #[error("TLS setup failed {host}")]
    Tls {
        host: String,
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    #[error("cannot read CA certificate file {path}")]
    CaRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path} is not valid PEM")]
    CaPem {
        path: std::path::PathBuf,
        #[source]
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("no CERTIFICATE in CA file {path}")]
    CaEmpty { path: std::path::PathBuf },
    #[error("CA file {path} holds a certificate that cannot be a trust anchor")]
    CaCert {
        path: std::path::PathBuf,
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    #[error("TLS handshake with {host} failed")]
    TlsHandshake {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}
