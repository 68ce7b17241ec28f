//! The fleet's use of each profile's `token_rate` window, as `/metrics` and `/v1/status`
//! show it: asked of the stores at once, bounded in time, left out when a store is down.

use std::time::Duration;

use freshtoken::CachedSource;

/// The fleet's budget use for each of `sources`, in order, asked of their stores at once
/// for at most [`BUDGET_ASK`] in all: a scrape or a status request does not wait on a Redis
/// that is down, it leaves the budget out.
pub(crate) async fn budget_uses<'a>(
    sources: impl Iterator<Item = &'a CachedSource>,
) -> Vec<Option<freshtoken::BudgetUse>> {
    let asks: Vec<_> = sources
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { budget_use(&s).await })
        })
        .collect();
    let mut uses = Vec::with_capacity(asks.len());
    for ask in asks {
        uses.push(ask.await.ok().flatten());
    }
    uses
}

async fn budget_use(source: &CachedSource) -> Option<freshtoken::BudgetUse> {
    match tokio::time::timeout(BUDGET_ASK, source.budget_use()).await {
        Ok(Ok(used)) => used,
        Ok(Err(e)) => {
            tracing::debug!("no budget use for /metrics or status: {e}");
            None
        }
        Err(_) => None,
    }
}

/// How long a scrape waits for the store's budget count.
const BUDGET_ASK: Duration = Duration::from_secs(1);
