//! The end-to-end tests of the `hashrig` command line, in one test binary (as ripgrep does):
//! each module runs the real binary (`CARGO_BIN_EXE_hashrig`) the way a user would. One binary
//! links the CLI's dependency graph once instead of once per file; see the README's "Tests".
//!
//! Run one file's tests with a filter on its module: `cargo test --test e2e pool_mine::`.
//! The soak run is in here too, ignored: `cargo test --release --test e2e soak:: -- --ignored --nocapture`.

// Support code shared by the modules below.
mod monitor_support;
mod pool_support;
mod solo_support;

mod asic_cli;
mod cli_bench;
mod cli_decode;
mod cli_econ;
mod cli_gpu;
mod cli_pipe;
mod cli_scan;
mod cli_selftest;
mod mine_curtail;
mod mixed_failover;
mod monitor_bench;
mod monitor_mine;
mod pool_failover;
mod pool_malformed;
mod pool_mine;
mod report_bench;
mod soak;
mod solo_mine;
mod solo_real_node;
mod sv2_farm;
mod sv2_mine;
