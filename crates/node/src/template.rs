//! `getblocktemplate` (BIP 22/23/145) as Bitcoin Core answers it, turned into solo work: a
//! coinbase split around the extranonce and a [`CoinbaseJob`] the engine can mine.

use std::sync::Arc;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, Target, Transaction, Txid, Wtxid};
use hashrig_work::job::{CoinbaseJob, coinbase_merkle_branch, header_bytes};
use serde::Deserialize;

use crate::Error;
use crate::coinbase::{self, CoinbaseParts, EXTRANONCE2_SIZE};

/// The template fields a miner needs.
#[derive(Clone, Debug, Deserialize)]
pub struct BlockTemplate {
    pub version: i64,
    pub previousblockhash: String,
    #[serde(default)]
    pub transactions: Vec<TemplateTx>,
    pub coinbasevalue: u64,
    pub bits: String,
    pub curtime: u64,
    pub height: u64,
    #[serde(default)]
    pub longpollid: Option<String>,
    #[serde(default)]
    pub default_witness_commitment: Option<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TemplateTx {
    /// Raw transaction hex (with witness where it has one).
    pub data: String,
}

/// One template made ready to mine.
#[derive(Clone, Debug)]
pub struct SoloWork {
    pub height: u32,
    pub parts: CoinbaseParts,
    /// Header parts: extranonce1 empty, extranonce2 of [`EXTRANONCE2_SIZE`] bytes.
    pub job: CoinbaseJob,
    /// Raw transactions after the coinbase, as the node gave them.
    pub txs: Vec<Vec<u8>>,
    pub longpollid: Option<String>,
}

fn parse_hex32_display(field: &'static str, s: &str) -> Result<[u8; 32], Error> {
    let mut b: [u8; 32] = hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::Template { why: format!("`{field}` is not 64 hex digits: {s:?}") })?;
    b.reverse();
    Ok(b)
}

impl SoloWork {
    /// Build work from a template, paying `payout`, with `tag` in the coinbase scriptSig.
    pub fn from_template(t: &BlockTemplate, payout: &ScriptBuf, tag: &[u8]) -> Result<Arc<SoloWork>, Error> {
        let bad = |why: String| Error::Template { why };
        let height = u32::try_from(t.height).map_err(|_| bad(format!("height {} out of range", t.height)))?;
        let prev = BlockHash::from_byte_array(parse_hex32_display("previousblockhash", &t.previousblockhash)?);
        let nbits = u32::from_str_radix(&t.bits, 16).map_err(|_| bad(format!("`bits` is not hex: {:?}", t.bits)))?;
        if t.bits.len() != 8 {
            return Err(bad(format!("`bits` is not 8 hex digits: {:?}", t.bits)));
        }
        let version = i32::try_from(t.version).or_else(|_| u32::try_from(t.version).map(|v| v as i32))
            .map_err(|_| bad(format!("version {} out of range", t.version)))?;
        let ntime = u32::try_from(t.curtime).map_err(|_| bad(format!("curtime {} out of range", t.curtime)))?;

        let mut txs = Vec::with_capacity(t.transactions.len());
        let mut txids: Vec<Txid> = Vec::with_capacity(t.transactions.len());
        let mut wtxids: Vec<Wtxid> = Vec::with_capacity(t.transactions.len());
        for (i, tx) in t.transactions.iter().enumerate() {
            let raw = hex::decode(&tx.data).map_err(|_| bad(format!("transaction {i} is not hex")))?;
            // The whole of it: bytes after the transaction would go into the block as they are
            // and make it invalid.
            let parsed: Transaction = bitcoin::consensus::deserialize(&raw)
                .map_err(|e| bad(format!("transaction {i} does not decode: {e}")))?;
            txids.push(parsed.compute_txid());
            wtxids.push(parsed.compute_wtxid());
            txs.push(raw);
        }
        let segwit = t.rules.iter().any(|r| r == "segwit" || r == "!segwit") || t.default_witness_commitment.is_some();
        let commitment = if segwit {
            let ours = coinbase::witness_commitment(&wtxids);
            if let Some(core) = &t.default_witness_commitment {
                let ours_hex = hex::encode(coinbase::commitment_script(&ours).as_bytes());
                if !core.eq_ignore_ascii_case(&ours_hex) {
                    return Err(Error::WitnessCommitmentMismatch { ours: ours_hex, node: core.clone() });
                }
            }
            Some(ours)
        } else {
            None
        };
        let parts = coinbase::build(height, Amount::from_sat(t.coinbasevalue), payout, commitment, tag);
        let job = CoinbaseJob {
            prev_hash: prev,
            coinb1: parts.coinb1.clone(),
            extranonce1: Vec::new(),
            extranonce2_size: EXTRANONCE2_SIZE,
            coinb2: parts.coinb2.clone(),
            merkle_branch: coinbase_merkle_branch(&txids),
            version: Version::from_consensus(version),
            version_mask: 0,
            nbits: CompactTarget::from_consensus(nbits),
            ntime,
        };
        Ok(Arc::new(SoloWork { height, parts, job, txs, longpollid: t.longpollid.clone() }))
    }

    /// The network target blocks on this template must meet.
    pub fn target(&self) -> Target {
        self.job.network_target()
    }

    /// The serialised block for a header found with `extranonce2`.
    pub fn block_bytes(&self, extranonce2: &[u8], header: &Header) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&header_bytes(header));
        let n = self.txs.len() + 1;
        let mut count = Vec::new();
        bitcoin::consensus::Encodable::consensus_encode(&bitcoin::VarInt(n as u64), &mut count)
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(&count);
        out.extend_from_slice(&self.parts.block_tx_bytes(extranonce2));
        for tx in &self.txs {
            out.extend_from_slice(tx);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The genesis block's coinbase: a transaction that decodes.
    const TX: &str = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";

    fn template(txs: &[String]) -> BlockTemplate {
        BlockTemplate {
            version: 0x2000_0000,
            previousblockhash: "11".repeat(32),
            transactions: txs.iter().map(|d| TemplateTx { data: d.clone() }).collect(),
            coinbasevalue: 5_000_000_000,
            bits: "207fffff".into(),
            curtime: 1_700_000_600,
            height: 101,
            longpollid: None,
            default_witness_commitment: None,
            rules: vec!["segwit".into()],
            target: None,
        }
    }

    /// Found by the `template` fuzz target (crates/node/fuzz): a template transaction with bytes
    /// after it decoded (the leftovers were not looked at), and the block built from the template
    /// carried them, so it did not decode as a block. The fuzzer's input: one byte `11` before the
    /// genesis coinbase, which reads as a (segwit-flagged, empty) transaction and leaves the rest.
    #[test]
    fn a_transaction_with_bytes_after_it_is_refused() {
        let payout = ScriptBuf::from_bytes(vec![0x51]);
        assert!(SoloWork::from_template(&template(&[TX.to_string()]), &payout, b"t").is_ok());
        for data in [format!("{TX}00"), format!("11{TX}")] {
            let e = SoloWork::from_template(&template(std::slice::from_ref(&data)), &payout, b"t").unwrap_err();
            assert!(matches!(&e, Error::Template { why } if why.contains("transaction 0 does not decode")), "{data}: {e}");
        }
    }
}
