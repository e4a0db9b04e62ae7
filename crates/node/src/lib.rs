//! Solo mining against a Bitcoin node: getblocktemplate, coinbase, submitblock
