//! Calls an API with a bearer token that a `CachedSource` keeps fresh.
//!
//! ```text
//! CLIENT_SECRET=… cargo run -p freshtoken --example reqwest_call -- TOKEN_URL CLIENT_ID API_URL
//! ```
//!
//! Try it against the dev-server (`freshtoken dev-server` prints its URLs and credentials).
//! The first call fetches a token; the next ones are served from memory.

use freshtoken::{CachedSource, HttpFetcher, HttpOptions, TokenRequest, http_client};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(token_url), Some(client_id), Some(api_url)) = (args.next(), args.next(), args.next())
    else {
        eprintln!("usage: CLIENT_SECRET=… reqwest_call TOKEN_URL CLIENT_ID API_URL");
        std::process::exit(2);
    };
    let secret = std::env::var("CLIENT_SECRET").map_err(|_| "CLIENT_SECRET is not set")?;

    let request = TokenRequest::client_credentials(token_url.parse()?, client_id)
        .secret(secret)
        .build()?;
    let options = HttpOptions::default();
    // One client for the token endpoint and the API: one connection pool, one set of roots.
    let client = http_client(&options)?;
    let fetcher = HttpFetcher::new(request, options)?.with_client(client.clone());
    let source = CachedSource::builder(fetcher).build();

    for _ in 0..3 {
        let token = source.token().await?;
        let response = client
            .get(&api_url)
            .bearer_auth(token.expose_secret())
            .send()
            .await?;
        println!(
            "{} with token {} ({} fetched)",
            response.status(),
            token.fingerprint(),
            source.fetch_count()
        );
    }
    Ok(())
}
