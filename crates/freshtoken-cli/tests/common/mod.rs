//! What `tests/agent.rs` (still a test binary of its own) includes as `mod common`: the
//! shared harness, which lives in the `freshtoken-testkit` crate.

pub use freshtoken_testkit::*;
