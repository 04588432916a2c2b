//! Body wrappers: a response body that writes the request's audit record
//! when the exchange ends (with the bytes sent), and a request body that
//! remembers whether the client's body was malformed.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::audit::{AuditLog, Event};
use crate::response::{BoxError, ProxyBody};

/// Streams `inner` to the client, counting data bytes; records `event`
/// (with `bytes`) when the body ends, fails or is dropped.
pub struct AuditedBody {
    inner: ProxyBody,
    bytes: u64,
    pending: Option<(AuditLog, Event)>,
}

impl AuditedBody {
    pub fn new(inner: ProxyBody, audit: AuditLog, event: Event) -> AuditedBody {
        AuditedBody { inner, bytes: 0, pending: Some((audit, event)) }
    }

    fn finish(&mut self, failure: Option<&str>) {
        if let Some((audit, mut ev)) = self.pending.take() {
            ev.bytes = Some(self.bytes);
            if let Some(reason) = failure {
                ev.reason = Some(reason.to_owned());
            }
            audit.record(ev);
        }
    }
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(Some("upstream response body failed")),
            Poll::Ready(None) => this.finish(None),
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        let cut_short = !self.inner.is_end_stream();
        self.finish(cut_short.then_some("response not completed (client went away)"));
    }
}

/// The client's request body, flagging `failed` when it turns out malformed.
pub struct WatchedBody {
    inner: Incoming,
    failed: Arc<AtomicBool>,
}

impl WatchedBody {
    pub fn new(inner: Incoming, failed: Arc<AtomicBool>) -> WatchedBody {
        WatchedBody { inner, failed }
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            other => other.map_err(|e| Box::new(e) as BoxError),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
