//! The upstream connector's host names, resolved by the library's resolver (see
//! `freshtoken::internal::dns`) rather than hyper-util's `getaddrinfo` thread pool, so that
//! the proxy reaches its upstream by the same rules as the fetcher reaches the token
//! endpoint.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use freshtoken::internal::dns::Resolver;
use hyper_util::client::legacy::connect::dns::Name;
use tower_service::Service;

/// A `tower` service over [`Resolver`], what `HttpConnector::new_with_resolver` takes.
#[derive(Clone, Default)]
pub(crate) struct NameResolver(Resolver);

impl Service<Name> for NameResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.0.clone();
        Box::pin(async move {
            let ips = resolver.lookup(name.as_str()).await?;
            // Port 0: the connector puts the URL's port in.
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}
