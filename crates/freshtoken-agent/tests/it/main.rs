//! The agent driven in process: a dev-server and the agent share a manual clock, and every
//! wait is on the agent's own notifications (`Handle::changes`), so that tests that once
//! watched files for seconds of real time step through token lifetimes at once.

mod endpoint;
mod expiry;
mod keeper;
mod proxies;
mod reload;
mod says;
mod sinks;
mod support;
