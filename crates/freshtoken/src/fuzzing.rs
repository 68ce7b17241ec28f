//! Entry points for the fuzz targets in `fuzz/` (run by `scripts/fuzz.sh`): the parsers of
//! outside input that are private to the crate, reachable from there without widening their
//! visibility everywhere. The public parsers (`jwt`, `retry`, `discovery`, `store::Record`)
//! are fuzzed through the API itself. Not part of the API: it may change at any time.

pub use crate::response::{OAuthErrorBody, excerpt, parse_error_body, parse_success};
