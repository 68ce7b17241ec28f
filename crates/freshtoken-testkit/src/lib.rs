//! The one test harness of the workspace: everything the integration tests of several crates
//! start or talk to, written once instead of copied into each test file (or included with
//! `#[path]`, each copy with `#![allow(dead_code)]`).
//!
//! - [`server`]: the dev-server on a runtime of its own, with the test client's credentials.
//! - [`sandbox`]: a clean environment, HOME and cache directory for one run of the binary.
//! - [`process`]: bounded waits on processes a test starts (a hang fails the test, with the
//!   output so far, instead of holding the suite), and assertions on their output.
//! - [`signal`]: signals to those processes, as an operator or a supervisor sends them.
//! - [`redis_server`]: a real `redis-server` on a free loopback port.
//! - [`redis_cluster`]: a real six-node Redis Cluster on loopback (or in a [`NetLab`]'s
//!   services namespace), with failovers.
//! - [`redis_sentinel`]: a real primary, replica and three sentinels on loopback (or in a
//!   [`NetLab`]'s services namespace).
//! - [`netns`]: fleet "machines" as network namespaces on a bridge (needs root).
//! - [`oidc`]: the `oidc-provider` npm package, an authorization server nobody here wrote.
//! - [`tls`]: an HTTPS upstream behind a certificate authority of the test's own.
//! - [`mtls`]: the dev-server behind a mutual-TLS listener, and client certificates.
//! - [`clients`]: minimal HTTP/1.1 clients over TCP, over a unix socket, and through curl.
//! - [`users`]: acting as another local user (when the tests run as root).
//!
//! A helper that needs a program that is missing (`redis-server`, `node`, `curl`) fails
//! with a message that says how to install it; `scripts/test.sh` installs them all.
//!
//! # Why the library's own tests may use it
//!
//! The testkit depends on `freshtoken-devserver`, which depends on the `freshtoken` library,
//! and the library dev-depends on the testkit: a dev-dependency cycle. Cargo allows it, and
//! the library's integration tests (`crates/freshtoken/tests/it`) link the same `freshtoken`
//! as the dev-server does, so nothing there comes in two copies. The library's unit tests
//! (in `src/`, built as a second copy of the crate) would see two: a `Token` from this kit
//! would not be their `Token`. So the testkit hands out no library types at all — its
//! [`redis_server::RedisServer`] needs only std, [`server::Server`] speaks in the dev-server's own
//! types and strings — and the unit tests do not use it.
//!
//! Everything is re-exported at the root, so that a test module needs one
//! `use freshtoken_testkit::*;`.

// A test harness bounds real processes in real time ("did not hang"): the wall clock is
// the point here, unlike in the crates it tests.
#![allow(clippy::disallowed_methods)]

pub mod ca;
pub mod clients;
pub mod mtls;
pub mod netns;
pub mod oidc;
pub mod process;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod sandbox;
pub mod server;
pub mod signal;
pub mod tls;
pub mod users;

pub use clients::*;
pub use mtls::*;
pub use netns::*;
pub use oidc::*;
pub use process::*;
pub use redis_cluster::*;
pub use redis_sentinel::*;
pub use redis_server::*;
pub use sandbox::*;
pub use server::*;
pub use signal::*;
pub use users::*;
