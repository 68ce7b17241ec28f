//! The bodies the proxy sends, as one enum rather than a boxed trait object: a request costs
//! no allocation for its body's type, in either direction.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Errors inside streamed bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body on its way through the proxy.
#[derive(Debug)]
pub(crate) enum ProxyBody {
    /// Bytes held whole: a request kept for a replay, or the proxy's own answer.
    Full(Option<Bytes>),
    /// A request body over the replay limit: what was read before the limit was crossed,
    /// then the rest as it arrives.
    Prefixed(Option<Bytes>, Incoming),
    /// An upstream answer, passed on as it arrives.
    Incoming(Incoming),
}

impl ProxyBody {
    /// A body of exactly these bytes.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

fn data(bytes: &mut Option<Bytes>) -> Option<Result<Frame<Bytes>, BoxError>> {
    bytes
        .take()
        .filter(|b| !b.is_empty())
        .map(|b| Ok(Frame::data(b)))
}

fn incoming(
    body: &mut Incoming,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Pin::new(body)
        .poll_frame(cx)
        .map_err(|e| Box::new(e) as BoxError)
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(data(bytes)),
            Self::Prefixed(prefix, rest) => match data(prefix) {
                Some(frame) => Poll::Ready(Some(frame)),
                None => incoming(rest, cx),
            },
            Self::Incoming(body) => incoming(body, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Self::Prefixed(prefix, rest) => {
                prefix.as_ref().is_none_or(Bytes::is_empty) && rest.is_end_stream()
            }
            Self::Incoming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let held = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
        match self {
            Self::Full(bytes) => SizeHint::with_exact(held(bytes)),
            Self::Prefixed(prefix, rest) => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + held(prefix));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + held(prefix));
                }
                hint
            }
            Self::Incoming(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_full_body_is_its_bytes_once() -> Result<(), BoxError> {
        let body = ProxyBody::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await?.to_bytes(), "hello");
        let empty = ProxyBody::full(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
        assert!(empty.collect().await?.to_bytes().is_empty());
        Ok(())
    }
}
