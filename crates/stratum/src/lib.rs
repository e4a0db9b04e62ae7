//! Stratum v1 client: typed messages, sans-IO session, tokio transport
