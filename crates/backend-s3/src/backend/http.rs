//! The HTTP client of the S3 backend: object_store's reqwest client, run on the backend's I/O
//! runtime, that reads at most [`MAX_ERROR_BODY`] bytes of an answer that is not a success.
//!
//! object_store reads the whole body of an error to quote it, however long the server makes
//! it; a store is untrusted input, so the client cuts it short (the quote keeps its start, with
//! the `<Code>` the error is known by) and hangs up.

use std::pin::Pin;
use std::task::{Context, Poll};

use cachette_core::plugin::{Bytes, async_trait};
use http_body::{Body, Frame, SizeHint};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    ReqwestConnector, SpawnService,
};
use tokio::runtime::Handle;

/// The most bytes read of an answer that is not a success (2xx) or "not modified" (304).
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Connects object_store's reqwest client, run on `runtime`, with error bodies capped.
#[derive(Debug)]
pub(super) struct Connector {
    pub(super) runtime: Handle,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(SpawnService::new(
            CappedErrors(client),
            self.runtime.clone(),
        )))
    }
}

/// A client whose error bodies end after [`MAX_ERROR_BODY`] bytes. It runs on the I/O
/// runtime, under [`SpawnService`], which reads a body as fast as it comes: the cap stops the
/// reading there, and not only the copy.
#[derive(Debug, Clone)]
struct CappedErrors(HttpClient);

#[async_trait]
impl HttpService for CappedErrors {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.0.execute(request).await?;
        let status = response.status();
        if status.is_success() || status.as_u16() == 304 {
            return Ok(response);
        }
        let (parts, body) = response.into_parts();
        let body = HttpResponseBody::new(Capped {
            inner: body,
            left: MAX_ERROR_BODY,
        });
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// A body that ends after `left` more bytes, whatever the server sends or announces.
struct Capped {
    inner: HttpResponseBody,
    left: u64,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let Ok(mut data) = frame.into_data() else {
            // Trailers end the body.
            return Poll::Ready(None);
        };
        let room = usize::try_from(self.left).unwrap_or(usize::MAX);
        if data.len() > room {
            data.truncate(room);
        }
        self.left -= data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The server's announced length, no more than the cap: what a reader may reserve.
        let mut hint = SizeHint::new();
        hint.set_lower(self.inner.size_hint().lower().min(self.left));
        hint
    }
}
