//! A client's request body, read through a bound: streamed frame by frame, cut off at a limit, and
//! abandoned when the client stops sending for `limits.body_idle_timeout` (slow POST). The proxy
//! forwards it upstream; the pages (`web::forms`) read their forms through it.
//!
//! The rule this module keeps: nothing is buffered; the verdict (too large, stalled) is recorded
//! where the proxy can read it after the upstream call fails, so the client gets 413 or 408, not 502.
//! A client's trailers are dropped: some servers (uvicorn with httptools) hand request trailers to
//! the application as headers, where a trailer `X-User-Id` would pass for the gateway's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Verdict values (0: the body was not cut).
const TOO_LARGE: u8 = 1;
const STALLED: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body over the limit")]
    TooLarge,
    #[error("request body stalled")]
    Stalled,
    #[error("client body error: {0}")]
    Client(#[from] hyper::Error),
}

/// Why a forwarded body was cut, if it was.
#[derive(Clone, Default)]
pub struct Verdict(Arc<AtomicU8>);

impl Verdict {
    pub fn too_large(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TOO_LARGE
    }
    pub fn stalled(&self) -> bool {
        self.0.load(Ordering::Relaxed) == STALLED
    }
}

pub struct ForwardBody {
    inner: Incoming,
    remaining: u64,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    verdict: Verdict,
}

impl ForwardBody {
    pub fn new(inner: Incoming, limit: u64, idle: Duration) -> (ForwardBody, Verdict) {
        let verdict = Verdict::default();
        // Bodiless requests (most GETs) never arm a timer.
        let timer = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(idle)));
        let body = ForwardBody {
            inner,
            remaining: limit,
            idle,
            timer,
            verdict: verdict.clone(),
        };
        (body, verdict)
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        while let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_trailers()
        {
            polled = Pin::new(&mut this.inner).poll_frame(cx);
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.verdict.0.store(TOO_LARGE, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                    this.remaining -= len;
                }
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let stalled = this.timer.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if stalled {
                    this.verdict.0.store(STALLED, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError::Stalled)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
