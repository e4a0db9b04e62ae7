//! Solo mining against a Bitcoin node's JSON-RPC: `getblocktemplate` (segwit rules, long
//! polling), the coinbase (BIP 34 height as Core encodes it, payout, witness commitment,
//! extranonce), `submitblock`, and a store that writes each found block to disk and fsyncs it
//! before it is submitted, so a crash never loses a block.
//!
//! What it is for: turning templates into [`hashrig_work::job::CoinbaseJob`]s and found headers
//! back into blocks a node accepts. What it is not for: hashing, transaction selection (the
//! node's template is used as is), or talking to the P2P network.

pub mod coinbase;
pub mod rpc;
pub mod solo;
pub mod store;
pub mod template;

use std::path::PathBuf;
use std::str::FromStr;

pub use rpc::{Auth, NodeUrl, RpcClient};
pub use solo::{FoundBlock, SoloConfig, SoloEvent, SoloHandle, SoloStats};
pub use store::{BlockStore, StoredBlock};
pub use template::{BlockTemplate, SoloWork};

/// Errors of solo mining.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad node URL {url:?}: {why}")]
    NodeUrl { url: String, why: &'static str },
    #[error("cannot read the RPC cookie file {}", path.display())]
    Cookie {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error talking to {url}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} did not answer {method} within {secs} s")]
    Timeout { url: String, method: String, secs: u64 },
    #[error("bad HTTP answer from {url}: {why}")]
    Http { url: String, why: String },
    #[error("{url} refused the RPC credentials (check --rpc-cookie or --rpc-user/--rpc-pass)")]
    Unauthorized { url: String },
    #[error("node error {code} on {method}: {message}")]
    Rpc { method: String, code: i64, message: String },
    #[error("unusable block template: {why}")]
    Template { why: String },
    #[error("our witness commitment {ours} differs from the node's {node}")]
    WitnessCommitmentMismatch { ours: String, node: String },
    #[error("unknown network {0:?} (mainnet, testnet4, testnet3, signet, regtest)")]
    Network(String),
    #[error("payout address {address:?} is not valid for {network}")]
    Address {
        address: String,
        network: bitcoin::Network,
        #[source]
        source: bitcoin::address::ParseError,
    },
    #[error("block store {}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A network name as users type it.
pub fn parse_network(s: &str) -> Result<bitcoin::Network, Error> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "mainnet" | "main" | "bitcoin" => bitcoin::Network::Bitcoin,
        "testnet4" => bitcoin::Network::Testnet4,
        "testnet" | "testnet3" | "test" => bitcoin::Network::Testnet,
        "signet" => bitcoin::Network::Signet,
        "regtest" => bitcoin::Network::Regtest,
        _ => return Err(Error::Network(s.to_owned())),
    })
}

/// The payout script of `address`, which must belong to `network`.
pub fn payout_script(address: &str, network: bitcoin::Network) -> Result<bitcoin::ScriptBuf, Error> {
    let wrap = |source| Error::Address { address: address.to_owned(), network, source };
    let a = bitcoin::Address::from_str(address).map_err(wrap)?;
    let a = a.require_network(network).map_err(wrap)?;
    Ok(a.script_pubkey())
}
