//! The HTTP client of the S3 backend: object_store's reqwest client, run on the backend's I/O
//! runtime, that reads at most [`MAX_ERROR_BODY`] bytes of an answer that is not a success,
//! and at most [`MAX_ANSWER`] of any other answer than an object's bytes.
//!
//! object_store reads the whole body of an error to quote it, and of a listing's page to parse
//! it, however long the server makes them. A store is untrusted input: the client cuts an
//! error short (the quote keeps its start, with the `<Code>` the error is known by), fails an
//! answer longer than any an honest server gives, and hangs up.
//!
//! It also reads a listing's page whole, and drops from it the names object_store would refuse
//! (see [`list_page`](super::list_page)): one such object would fail every listing.

use std::pin::Pin;
use std::task::{Context, Poll};

use cachette_core::plugin::{Bytes, async_trait};
use http_body::{Body, Frame};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector, SpawnService,
};
use tokio::runtime::Handle;

use super::list_page::without_refused_names;

/// The most bytes read of an answer that is not a success (2xx) or "not modified" (304).
const MAX_ERROR_BODY: u64 = 64 << 10;

/// The longest answer other than an object's bytes: a page of a listing (1,000 keys of at most
/// 1,024 bytes, escaped, with their sizes, times and tags) is a few MiB at most.
const MAX_ANSWER: u64 = 16 << 20;

/// Connects object_store's reqwest client, run on `runtime`, with bounded answers.
#[derive(Debug)]
pub(super) struct Connector {
    pub(super) runtime: Handle,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(SpawnService::new(
            BoundedAnswers(client),
            self.runtime.clone(),
        )))
    }
}

/// A client whose answers' bodies are bounded: an error's ends after [`MAX_ERROR_BODY`] bytes,
/// and any other answer than an object's bytes fails past [`MAX_ANSWER`]. It runs on the I/O
/// runtime, under [`SpawnService`], which reads a body as fast as it comes: the bound stops the
/// reading there, and not only the copy.
#[derive(Debug, Clone)]
struct BoundedAnswers(HttpClient);

#[async_trait]
impl HttpService for BoundedAnswers {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let get = request.method().as_str() == "GET";
        let listing = get
            && request
                .uri()
                .query()
                .is_some_and(|query| query.contains("list-type="));
        let object_read = get && !listing;
        let response = self.0.execute(request).await?;
        let status = response.status();
        let success = status.is_success() || status.as_u16() == 304;
        let (left, past) = match (success, object_read) {
            (false, _) => (MAX_ERROR_BODY, Past::End),
            (true, false) => (MAX_ANSWER, Past::Fail),
            (true, true) => return Ok(response),
        };
        let (mut parts, body) = response.into_parts();
        let body = HttpResponseBody::new(Capped::new(body, left, past));
        if !(listing && status.is_success()) {
            return Ok(HttpResponse::from_parts(parts, body));
        }
        // A page of a listing, at most `MAX_ANSWER` bytes.
        let page = body.bytes().await?;
        let len = page.len();
        let kept = without_refused_names(page);
        if kept.len() != len {
            parts.headers.insert("content-length", kept.len().into());
        }
        Ok(HttpResponse::from_parts(parts, kept.into()))
    }
}

/// What a [`Capped`] body does with bytes past its bound.
#[derive(Clone, Copy)]
enum Past {
    /// Ends there (an error's body, quoted from its start).
    End,
    /// Fails (an answer that is parsed whole).
    Fail,
}

/// A body that gives at most `left` more bytes, whatever the server sends or announces.
struct Capped {
    inner: HttpResponseBody,
    left: u64,
    past: Past,
    /// Ended, or failed: nothing more is read.
    done: bool,
}

impl Capped {
    fn new(inner: HttpResponseBody, left: u64, past: Past) -> Capped {
        Capped {
            inner,
            left,
            past,
            done: false,
        }
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let Ok(mut data) = frame.into_data() else {
            // Trailers end the body.
            self.done = true;
            return Poll::Ready(None);
        };
        let room = usize::try_from(self.left).unwrap_or(usize::MAX);
        match self.past {
            Past::Fail if data.len() > room => {
                self.done = true;
                let longer = format!("the store's answer is longer than {MAX_ANSWER} bytes");
                return Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Decode,
                    std::io::Error::other(longer),
                ))));
            }
            // The quote is read as text, so it ends where a character does, not inside one:
            // at the bound, or before a character this piece starts and the bound would cut.
            Past::End if data.len() >= room => {
                self.done = true;
                data.truncate(utf8_end(&data, room).0);
            }
            Past::End => {
                let (end, missing) = utf8_end(&data, data.len());
                if missing > room - data.len() {
                    self.done = true;
                    data.truncate(end);
                }
            }
            Past::Fail => {}
        }
        self.left -= data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

/// Where the last whole UTF-8 character of `bytes[..at]` ends, and how many bytes the one
/// that starts there lacks (judged by its first byte, when that is among the last four; a
/// character begun in an earlier piece was whole, or ended that piece: see `poll_frame`).
fn utf8_end(bytes: &[u8], at: usize) -> (usize, usize) {
    let Some(first) = (at.saturating_sub(4)..at)
        .rev()
        .find(|&i| bytes[i] & 0xc0 != 0x80)
    else {
        return (at, 0);
    };
    let len = match bytes[first] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    if first + len <= at {
        (at, 0)
    } else {
        (first, first + len - at)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A body of the given pieces.
    struct Pieces(VecDeque<Bytes>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = HttpError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
            Poll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(piece))))
        }
    }

    /// What a capped body of `pieces` gives: its bytes, or its error.
    fn read(pieces: &[&[u8]], left: u64, past: Past) -> Result<Vec<u8>, HttpError> {
        let pieces = pieces.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        let mut body = Capped::new(HttpResponseBody::new(Pieces(pieces)), left, past);
        let mut out = Vec::new();
        futures::executor::block_on(async {
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                out.extend_from_slice(&frame?.into_data().unwrap_or_default());
            }
            Ok(out)
        })
    }

    #[test]
    fn an_error_is_cut_where_a_character_starts() {
        // "é" is two bytes, "€" three: a cut inside either keeps the text before it, wherever
        // the pieces split the text.
        let text = "ab\u{e9}cd\u{20ac}x\u{20ac}".as_bytes();
        let ends: Vec<usize> = (0..=text.len())
            .filter(|&i| i == text.len() || text[i] & 0xc0 != 0x80)
            .collect();
        for split in 1..text.len() {
            for left in 0..=text.len() as u64 + 1 {
                let got = read(&[&text[..split], &text[split..]], left, Past::End).unwrap();
                let expected = ends.iter().rev().find(|&&e| e as u64 <= left).unwrap();
                assert_eq!(got, &text[..*expected], "split {split}, bound {left}");
            }
        }
    }

    #[test]
    fn an_answer_may_fill_its_bound_and_not_pass_it() {
        assert_eq!(read(&[b"abc", b"de"], 5, Past::Fail).unwrap(), b"abcde");
        // Exactly the bound, then more: refused, whichever piece passes it.
        assert!(read(&[b"abc", b"de", b"f"], 5, Past::Fail).is_err());
        assert!(read(&[b"abc", b"def"], 5, Past::Fail).is_err());
        // An error's body ends at its bound.
        assert_eq!(read(&[b"abc", b"def"], 5, Past::End).unwrap(), b"abcde");
    }
}
