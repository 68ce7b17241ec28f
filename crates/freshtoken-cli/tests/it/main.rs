//! The integration tests of the `freshtoken` binary, as one test executable (one link, one
//! process whose threads run the tests), with a module per area. Helpers are in the
//! `freshtoken-testkit` crate.

mod agent;
mod commands;
mod deploy_docs;
mod dpop;
mod exec;
mod fault_matrix;
mod first_run;
mod fleet;
mod fleet_backoff;
mod fleet_bench;
mod fleet_budget;
mod fleet_cluster;
mod fleet_hosts;
mod genesys_docs;
mod genesys_sdk;
mod get;
mod github_action;
mod interop;
mod interop_mtls;
mod json_shapes;
mod listeners;
mod local_users;
mod login;
mod mtls;
mod name_resolution;
mod not_regular_files;
mod providers;
mod proxy;
mod release;
mod reliability;
mod secretless;
mod secrets;
mod security;
mod status_all;
