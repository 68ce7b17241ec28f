//! A `Fetch` of your own: tokens minted by a command (a cloud CLI, a vault agent), cached
//! and refreshed ahead of expiry by a `CachedSource` like any other.
//!
//! ```text
//! cargo run -p freshtoken --example custom_fetch -- LIFETIME_SECS COMMAND [ARG…]
//! cargo run -p freshtoken --example custom_fetch -- 3600 gcloud auth print-access-token
//! ```

use std::time::Duration;

use async_trait::async_trait;
use freshtoken::{
    Budget, CacheKey, CachedSource, Clock, Error, ExpirySource, Fetch, Result, SystemClock, Token,
};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Runs `argv` and takes what it prints as a token that lives `lifetime`.
#[derive(Debug)]
struct CommandFetcher {
    argv: Vec<String>,
    lifetime: Duration,
}

#[async_trait]
impl Fetch for CommandFetcher {
    /// The command names the token: two sources running the same command share a cached
    /// token through a store, and a different command never sees it.
    fn cache_key(&self) -> CacheKey {
        let mut hash = Sha256::new();
        for arg in &self.argv {
            hash.update((arg.len() as u64).to_be_bytes());
            hash.update(arg.as_bytes());
        }
        CacheKey::from_hex(&hex::encode(hash.finalize())).expect("a SHA-256 in hex is a key")
    }

    /// A command gets its own timeout rather than the HTTP retry deadline.
    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn fetch(&self, _previous: Option<&Token>, budget: Budget) -> Result<Token> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(Error::Config("no command to run".into()));
        };
        let run = tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(budget.left(), run)
            .await
            .map_err(|_| Error::timeout(format!("{program} did not finish in time")))?
            .map_err(|e| Error::transport(format!("cannot run {program}: {e}")).with_source(e))?;
        if !output.status.success() {
            // Its output may hold a secret: say only how it ended.
            return Err(Error::transport(format!(
                "{program} failed ({})",
                output.status
            )));
        }
        let token = String::from_utf8(output.stdout).map_err(|_| {
            Error::transport(format!("{program} printed something that is not text"))
        })?;
        let now = SystemClock.now();
        Ok(Token::new(
            SecretString::from(token.trim().to_owned()),
            now,
            now + self.lifetime,
            ExpirySource::ExpiresIn,
        ))
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let lifetime = args.next().and_then(|s| s.parse::<u64>().ok());
    let argv: Vec<String> = args.collect();
    let (Some(lifetime), false) = (lifetime, argv.is_empty()) else {
        eprintln!("usage: custom_fetch LIFETIME_SECS COMMAND [ARG…]");
        std::process::exit(2);
    };
    let fetcher = CommandFetcher {
        argv,
        lifetime: Duration::from_secs(lifetime),
    };
    let source = CachedSource::builder(fetcher).build();
    let first = source.token().await?;
    let again = source.token().await?;
    println!(
        "token {} valid {} s; asked twice, ran the command {} time(s)",
        first.fingerprint(),
        first.remaining(SystemClock.now()).as_secs(),
        source.fetch_count()
    );
    assert!(first.same_token(&again));
    Ok(())
}
