//! The fake Bitcoin node for the solo-mining tests lives in hashrig-node's test kit
//! (`hashrig_node::testkit`, cargo feature `testkit`); this module only re-exports it.

pub use hashrig_node::testkit::*;
