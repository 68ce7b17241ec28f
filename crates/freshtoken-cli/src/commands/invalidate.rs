//! `freshtoken invalidate`: drop a profile's cached token, e.g. after it was revoked.

use crate::cli::{Cli, CredentialArgs};
use crate::exit::CliResult;
use crate::wiring;

pub(crate) async fn run(cli: &Cli, args: &CredentialArgs) -> CliResult {
    let wired = wiring::wire(wiring::settings(cli, args)?).await?;
    let request = wired.token_request().ok();
    let store = wired.store(request.as_ref())?;
    let key = wired.cache_key();
    let removed = store.remove(&key).await?;
    let what = if removed {
        "dropped the cached token of profile"
    } else {
        "no cached token for profile"
    };
    eprintln!("{what} {} ({})", wired.profile(), store.location(&key));
    Ok(())
}
