//! Fuzz `getblocktemplate` handling: a `BlockTemplate` from JSON, then `SoloWork::from_template`.
//!
//! Input: first byte 0..=0x7f: the rest is the node's JSON answer (`result` member) as text.
//! First byte 0x80..=0xff: the rest fills the template's fields directly (so the fuzzer reaches
//! the transaction decoding without writing JSON): version, height, bits, curtime, value,
//! previous hash, then raw transactions split at each `ff ff ff ff ee`; the low bit of the first
//! byte asks for the segwit rule.
//!
//! Invariants beyond "no panic": work that is built has the template's height and
//! transactions; the block it assembles for a header (`block_bytes`) decodes as a whole block
//! (every byte used) with the template's transactions, a merkle root that matches its
//! transactions and, with segwit, a witness commitment that checks.
#![no_main]

use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::{Block, ScriptBuf};
use hashrig_node::coinbase::EXTRANONCE2_SIZE;
use hashrig_node::template::TemplateTx;
use hashrig_node::{BlockTemplate, SoloWork};
use libfuzzer_sys::fuzz_target;

fn take<const N: usize>(d: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(d.len());
    out[..n].copy_from_slice(&d[..n]);
    *d = &d[n..];
    out
}

fn structured(flags: u8, mut d: &[u8]) -> BlockTemplate {
    let version = i64::from(i32::from_le_bytes(take(&mut d)));
    let height = u64::from(u32::from_le_bytes(take(&mut d)));
    let bits = u32::from_le_bytes(take(&mut d));
    let curtime = u64::from(u32::from_le_bytes(take(&mut d)));
    let value = u64::from_le_bytes(take(&mut d));
    let prev: [u8; 32] = take(&mut d);
    let mut transactions = Vec::new();
    let sep = [0xff, 0xff, 0xff, 0xff, 0xee];
    while !d.is_empty() {
        let end = d.windows(sep.len()).position(|w| w == sep).unwrap_or(d.len());
        transactions.push(TemplateTx { data: hex::encode(&d[..end]) });
        d = &d[(end + sep.len()).min(d.len())..];
    }
    BlockTemplate {
        version,
        previousblockhash: hex::encode(prev),
        transactions,
        coinbasevalue: value,
        bits: format!("{bits:08x}"),
        curtime,
        height,
        longpollid: None,
        default_witness_commitment: None,
        rules: if flags & 1 == 1 { vec!["segwit".into()] } else { vec![] },
        target: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let t = if first < 0x80 {
        match serde_json::from_slice::<BlockTemplate>(rest) {
            Ok(t) => t,
            Err(_) => return,
        }
    } else {
        structured(first, rest)
    };
    // A P2WPKH payout (BIP 173's example key hash).
    let payout = ScriptBuf::from_bytes(hex::decode("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap());
    let work = match SoloWork::from_template(&t, &payout, b"/hashrig fuzz/") {
        Ok(w) => w,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(u64::from(work.height), t.height);
    assert_eq!(work.txs.len(), t.transactions.len());
    assert_eq!(work.job.extranonce2_size, EXTRANONCE2_SIZE);
    let _ = work.target();

    let extranonce2 = [0x5au8; EXTRANONCE2_SIZE];
    let header = work.job.header(&extranonce2, work.job.ntime, work.job.version_bits(), 7).expect("header for the job's own version");
    let bytes = work.block_bytes(&extranonce2, &header);
    let block: Block = deserialize(&bytes).unwrap_or_else(|e| panic!("assembled block does not decode as a whole block: {e}"));
    assert_eq!(block.header, header);
    assert_eq!(block.txdata.len(), t.transactions.len() + 1);
    assert!(block.txdata[0].is_coinbase());
    assert!(block.check_merkle_root(), "merkle root does not match the block's transactions");
    if work.parts.segwit {
        assert!(block.check_witness_commitment(), "witness commitment does not check");
    }
    assert_eq!(block.header.prev_blockhash.to_byte_array().len(), 32);
});
