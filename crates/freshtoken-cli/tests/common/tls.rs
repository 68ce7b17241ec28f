//! What `tests/agent.rs` includes as `mod tls`: the TLS upstream of `freshtoken-testkit`.

pub use freshtoken_testkit::tls::*;
