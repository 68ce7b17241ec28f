//! The integration tests of the `freshtoken` library, as one test executable with a module
//! per area. Redis comes from `freshtoken-testkit` (std only: no library types, see there).

// Every store × every fault; Redis is one of the stores.
mod dpop;
#[cfg(feature = "redis")]
mod fault_matrix;
mod login;
mod refresh;
mod source;
mod stats;
mod store_conformance;
