//! Body wrappers: a response body that writes the request's audit record
//! when the exchange ends (with the bytes sent), a response body that holds
//! something as long as it lives, a request body that
//! remembers whether the client's body was malformed, and a body that joins
//! data frames already waiting into one (fewer, larger TLS records and
//! writes; never waits for data).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
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

/// A response body that holds `T` until it is done with (sent whole, or
/// dropped): an HTTP/2 stream is open that long.
pub struct Holding<T> {
    inner: ProxyBody,
    _held: T,
}

impl<T> Holding<T> {
    pub fn new(inner: ProxyBody, held: T) -> Holding<T> {
        Holding { inner, _held: held }
    }
}

impl<T: Unpin> Body for Holding<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

/// Data frames already waiting are joined up to this size.
pub const COALESCE_MAX: usize = 64 * 1024;

/// Passes `inner` on, joining the data frames it has ready into one chunk
/// of up to about [`COALESCE_MAX`] bytes. It never waits for more: when
/// `inner` is pending, what was taken goes on at once, so streams (server-
/// sent events) keep their timing. Without it every upstream frame (8 KiB
/// from nginx's HTTP/2) became its own TLS record and write to the client;
/// a lone frame passes on without a copy.
pub struct Coalesced<B: Body> {
    inner: B,
    /// The first data frame taken, uncopied until a second one comes.
    first: Option<Bytes>,
    /// Two or more frames, joined.
    joined: BytesMut,
    /// What came after the waiting data (trailers, an error or the end),
    /// returned on the next poll.
    held: Option<Option<Result<Frame<Bytes>, B::Error>>>,
}

impl<B: Body<Data = Bytes>> Coalesced<B> {
    pub fn new(inner: B) -> Coalesced<B> {
        Coalesced {
            inner,
            first: None,
            joined: BytesMut::new(),
            held: None,
        }
    }

    fn waiting(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.joined.len()
    }

    fn push(&mut self, data: Bytes) {
        if let Some(first) = self.first.take() {
            self.joined
                .reserve(COALESCE_MAX.max(first.len() + data.len()));
            self.joined.extend_from_slice(&first);
            self.joined.extend_from_slice(&data);
        } else if self.joined.is_empty() {
            self.first = Some(data);
        } else {
            self.joined.extend_from_slice(&data);
        }
    }

    fn take(&mut self) -> Frame<Bytes> {
        Frame::data(match self.first.take() {
            Some(first) => first,
            None => std::mem::take(&mut self.joined).freeze(),
        })
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Coalesced<B>
where
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(held) = this.held.take() {
            return Poll::Ready(held);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.push(data);
                        if this.waiting() >= COALESCE_MAX {
                            return Poll::Ready(Some(Ok(this.take())));
                        }
                    }
                    Err(other) if this.waiting() > 0 => {
                        this.held = Some(Some(Ok(other)));
                        return Poll::Ready(Some(Ok(this.take())));
                    }
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                Poll::Ready(end_or_error) if this.waiting() > 0 => {
                    this.held = Some(end_or_error);
                    return Poll::Ready(Some(Ok(this.take())));
                }
                Poll::Ready(end_or_error) => return Poll::Ready(end_or_error),
                Poll::Pending if this.waiting() > 0 => return Poll::Ready(Some(Ok(this.take()))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.held {
            Some(None) => true,
            Some(Some(_)) => false,
            None => self.waiting() == 0 && self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let waiting = self.waiting() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + waiting);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + waiting);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::Waker;

    use super::*;

    type Step = Poll<Option<Result<Frame<Bytes>, &'static str>>>;

    /// A body that plays `steps` in order (then ends).
    struct Script(VecDeque<Step>);

    impl Body for Script {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Step {
            self.0.pop_front().unwrap_or(Poll::Ready(None))
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn data(n: usize, byte: u8) -> Step {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte; n])))))
    }

    /// What the coalesced body yields, as (data length or -1 for trailers, "pending", "end", "error").
    fn play(steps: Vec<Step>) -> Vec<String> {
        let mut body = Coalesced::new(Script(steps.into()));
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        for _ in 0..100 {
            let seen = match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Pending => "pending".to_owned(),
                Poll::Ready(None) => "end".to_owned(),
                Poll::Ready(Some(Err(e))) => e.to_owned(),
                Poll::Ready(Some(Ok(f))) if f.is_trailers() => "trailers".to_owned(),
                Poll::Ready(Some(Ok(f))) => f.into_data().unwrap().len().to_string(),
            };
            let done = seen == "end" || seen == "broken";
            out.push(seen);
            if done {
                break;
            }
        }
        out
    }

    #[test]
    fn frames_waiting_together_are_joined_and_a_pause_sends_what_was_taken() {
        let steps = vec![
            data(8192, 1),
            data(8192, 2),
            data(100, 3),
            Poll::Pending,
            data(10, 4),
            Poll::Pending,
            data(5, 5),
        ];
        // (The inner body's pause is where each chunk ends; the data taken is
        // returned instead of the pause.)
        assert_eq!(play(steps), ["16484", "10", "5", "end"]);
    }

    #[test]
    fn joining_stops_at_the_limit() {
        let steps = (0..20).map(|i| data(8192, i)).collect();
        assert_eq!(play(steps), ["65536", "65536", "32768", "end"]);
    }

    #[test]
    fn bytes_and_their_order_survive() {
        let mut body = Coalesced::new(Script(
            vec![data(3, b'a'), data(2, b'b'), Poll::Pending, data(1, b'c')].into(),
        ));
        let mut cx = Context::from_waker(Waker::noop());
        let mut all = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => all.extend_from_slice(&f.into_data().unwrap()),
                Poll::Pending => panic!("pending with data taken"),
                _ => break,
            }
        }
        assert_eq!(all, b"aaabbc");
    }

    #[test]
    fn a_lone_frame_is_passed_on_uncopied() {
        let chunk = Bytes::from(vec![7u8; 1024]);
        let ptr = chunk.as_ptr();
        let mut body = Coalesced::new(Script(
            vec![Poll::Ready(Some(Ok(Frame::data(chunk))))].into(),
        ));
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("no frame")
        };
        assert_eq!(f.into_data().unwrap().as_ptr(), ptr);
        assert!(body.is_end_stream());
    }

    #[test]
    fn trailers_end_and_errors_come_after_the_data_before_them() {
        let trailers: Step = Poll::Ready(Some(Ok(Frame::trailers(Default::default()))));
        assert_eq!(
            play(vec![data(10, 1), data(10, 2), trailers]),
            ["20", "trailers", "end"]
        );
        assert_eq!(
            play(vec![
                data(10, 1),
                data(10, 2),
                Poll::Ready(Some(Err("broken")))
            ]),
            ["20", "broken"]
        );
        assert_eq!(play(vec![Poll::Ready(Some(Err("broken")))]), ["broken"]);
        assert_eq!(play(vec![data(10, 1)]), ["10", "end"]);
    }

    #[test]
    fn size_hint_counts_what_is_waiting() {
        let body = Coalesced::new(http_body_util::Full::new(Bytes::from_static(b"12345")));
        assert_eq!(body.size_hint().exact(), Some(5));
    }
}
