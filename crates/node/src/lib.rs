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
#[cfg(feature = "testkit")]
pub mod testkit;

use std::path::PathBuf;
use std::str::FromStr;

pub use rpc::{Auth, NodeUrl, RpcClient};
pub use solo::{BlockAnswer, FoundBlock, PendingOutcome, SoloConfig, SoloEvent, SoloHandle, SoloStats};
pub use store::{BlockStore, PendingScan, StoredBlock};
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
    #[error("cannot reach {url} for {method}")]
    Transport {
        url: String,
        method: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} did not answer {method} within {limit:?}")]
    Timeout { url: String, method: String, limit: std::time::Duration },
    #[error("{url} answered {method} with HTTP {status}: {body}")]
    HttpStatus { url: String, method: String, status: u16, body: String },
    #[error("bad HTTP answer from {url}: {why}")]
    Http { url: String, why: String },
    #[error("{url} refused the RPC credentials (check the cookie file given with --rpc-cookie, or --rpc-user/--rpc-pass)")]
    Unauthorized { url: String },
    #[error("node error {code} on {method}: {message}")]
    Rpc { method: String, code: i64, message: String },
    #[error("unusable block template: {why}")]
    Template { why: String },
    #[error("our witness commitment {ours} differs from the node's {node}")]
    WitnessCommitmentMismatch { ours: String, node: String },
    #[error("unknown network {0:?} (mainnet, testnet4, testnet3, signet, regtest)")]
    Network(String),
    #[error("payout address {address:?} is not a {} address", network_name(*.network))]
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

/// Bitcoin Core's RPC_IN_WARMUP: the node is still loading and will answer later.
pub const RPC_IN_WARMUP: i64 = -28;

impl Error {
    /// Whether the same call may well succeed later: the node is starting (RPC -28, no cookie
    /// file yet), busy (HTTP 5xx), unreachable or slow. Configuration mistakes (bad URL,
    /// credentials, address) and bad templates are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } | Error::Cookie { .. } => true,
            Error::HttpStatus { status, .. } => *status >= 500,
            Error::Rpc { code, .. } => *code == RPC_IN_WARMUP,
            _ => false,
        }
    }
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

/// The name [`parse_network`] takes for `n` (`mainnet` rather than the crate's `bitcoin`).
pub fn network_name(n: bitcoin::Network) -> &'static str {
    match n {
        bitcoin::Network::Bitcoin => "mainnet",
        bitcoin::Network::Testnet4 => "testnet4",
        bitcoin::Network::Testnet => "testnet3",
        bitcoin::Network::Signet => "signet",
        bitcoin::Network::Regtest => "regtest",
    }
}

/// The payout script of `address`, which must belong to `network`.
pub fn payout_script(address: &str, network: bitcoin::Network) -> Result<bitcoin::ScriptBuf, Error> {
    let wrap = |source| Error::Address { address: address.to_owned(), network, source };
    let a = bitcoin::Address::from_str(address).map_err(wrap)?;
    let a = a.require_network(network).map_err(wrap)?;
    Ok(a.script_pubkey())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Network;

    /// BIP 173's P2WPKH examples (same key hash on both): mainnet `bc1`, test networks `tb1`.
    const MAIN_P2WPKH: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
    const TEST_P2WPKH: &str = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx";
    const P2WPKH_SCRIPT: &str = "0014751e76e8199196d454941c45d1b3a323f1433bd6";
    /// BIP 350's mainnet taproot example.
    const MAIN_P2TR: &str = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0";
    const P2TR_SCRIPT: &str = "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    fn script(addr: &str, net: &str) -> Result<String, Error> {
        payout_script(addr, parse_network(net)?).map(|s| hex::encode(s.as_bytes()))
    }

    #[test]
    fn network_names_as_users_type_them() {
        for (name, net) in [("mainnet", Network::Bitcoin), ("Testnet4", Network::Testnet4), ("signet", Network::Signet), ("regtest", Network::Regtest), ("testnet3", Network::Testnet)] {
            assert_eq!(parse_network(name).unwrap(), net, "{name}");
        }
        let e = parse_network("testnet5").unwrap_err();
        assert!(e.to_string().contains("\"testnet5\"") && e.to_string().contains("testnet4"), "{e}");
    }

    #[test]
    fn mainnet_addresses_pay_to_their_script_on_mainnet_only() {
        assert_eq!(script(MAIN_P2WPKH, "mainnet").unwrap(), P2WPKH_SCRIPT);
        assert_eq!(script(MAIN_P2TR, "mainnet").unwrap(), P2TR_SCRIPT);
        for net in ["testnet4", "signet", "regtest"] {
            let e = script(MAIN_P2WPKH, net).unwrap_err();
            assert!(matches!(e, Error::Address { .. }), "{e:?}");
            assert_eq!(e.to_string(), format!("payout address \"{MAIN_P2WPKH}\" is not a {net} address"));
        }
    }

    #[test]
    fn tb1_addresses_serve_testnet4_and_signet_but_not_mainnet_or_regtest() {
        assert_eq!(script(TEST_P2WPKH, "testnet4").unwrap(), P2WPKH_SCRIPT);
        assert_eq!(script(TEST_P2WPKH, "signet").unwrap(), P2WPKH_SCRIPT);
        for net in ["mainnet", "regtest"] {
            let e = script(TEST_P2WPKH, net).unwrap_err();
            assert_eq!(e.to_string(), format!("payout address \"{TEST_P2WPKH}\" is not a {net} address"), "{e:?}");
        }
    }

    #[test]
    fn regtest_bcrt1_addresses_serve_regtest_only_and_garbage_is_refused() {
        let bcrt = bitcoin::Address::from_script(&bitcoin::ScriptBuf::from_bytes(hex::decode(P2WPKH_SCRIPT).unwrap()), Network::Regtest).unwrap().to_string();
        assert!(bcrt.starts_with("bcrt1q"), "{bcrt}");
        assert_eq!(script(&bcrt, "regtest").unwrap(), P2WPKH_SCRIPT);
        for net in ["mainnet", "testnet4", "signet"] {
            assert!(script(&bcrt, net).is_err(), "{net}");
        }
        // A mistyped checksum is refused whatever the network.
        let typo = MAIN_P2WPKH.replace("f3t4", "f3t5");
        let e = script(&typo, "mainnet").unwrap_err();
        assert!(matches!(e, Error::Address { .. }), "{e:?}");
    }
}
