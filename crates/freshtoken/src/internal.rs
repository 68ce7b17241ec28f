//! Helpers the sibling crates (the CLI, the proxy, the dev-server, the fuzz targets) share
//! with the library, kept out of the documented API: they may change at any time.
//!
//! Everything here is `pub` only so that those crates reach it; a user of the library has
//! no need of it, and nothing here is covered by semver.

pub use crate::fetch::fmt_duration;
pub use crate::request::refuse_plain_http;
pub use crate::retry::parse_retry_after;
pub use crate::store::atomic::{is_temporary_of, write_file_atomically};
pub use crate::store::record::Record;
pub use crate::store::redact_url;
pub use crate::sync::lock;
pub use crate::tls::load_ca_file;

/// Host names resolved in Rust, the same on every host (see the module's own docs).
pub mod dns {
    pub use crate::dns::*;
}

/// Checks on who owns files and folders (see the module's own docs).
pub mod owned {
    pub use crate::owned::*;
}

/// Opening and reading regular files without following symlinks or blocking on FIFOs.
pub mod regular_file {
    pub use crate::regular_file::*;
}

/// Entry points for the fuzz targets in `fuzz/` (run by `scripts/fuzz.sh`): the parsers of
/// outside input that are private to the crate. The public parsers (`jwt`, `discovery`)
/// are fuzzed through the API itself.
pub mod fuzzing {
    pub use crate::response::{OAuthErrorBody, excerpt, parse_error_body, parse_success};
}
