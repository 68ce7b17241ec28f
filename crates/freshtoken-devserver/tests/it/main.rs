//! The integration tests of the dev-server, as one test executable with a module per area.

mod assertions;
mod dpop;
mod genesys;
