//! `freshtoken invalidate`: drop a profile's cached token, e.g. after it was revoked.

use crate::cli::{Cli, CredentialArgs};
use crate::exit::CliResult;
use crate::settings::Settings;

pub fn run(cli: &Cli, args: &CredentialArgs) -> CliResult {
    let runtime = super::runtime()?;
    let settings = runtime.block_on(Settings::resolve(cli, args))?;
    let request = settings.token_request().ok();
    let store = settings.store(request.as_ref())?;
    let key = settings.cache_key();
    let removed = runtime.block_on(store.remove(&key))?;
    if removed {
        eprintln!(
            "dropped the cached token of profile {} ({})",
            settings.profile,
            store.location(&key)
        );
    } else {
        eprintln!(
            "no cached token for profile {} ({})",
            settings.profile,
            store.location(&key)
        );
    }
    Ok(())
}
