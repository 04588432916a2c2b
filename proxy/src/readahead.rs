//! A stream that reads ahead: rustls asks its transport for 4 KiB at a time
//! (its deframer's read size), so a 16 KiB TLS record took four `recvfrom`
//! calls. [`ReadAhead`] serves those small reads from one larger read of
//! the socket, at the cost of one copy within the worker's cache: a
//! download through the sidecar made a quarter of the `recvfrom` calls and
//! took a tenth less of the worker's CPU (docs/benchmarks.md, session 10).
//!
//! It reads ahead only while data streams in (a read filled the caller's
//! buffer), so small requests and replies are read straight into the
//! caller's buffer as before: no copy, no buffer (reading ahead for every
//! 1 KiB request cost 2.8 % more instructions per HTTPS request). Its
//! buffer exists only while it holds bytes or a read is being tried: it is
//! given back as soon as the socket has nothing more to read, so an idle
//! pooled or keep-alive connection holds no read-ahead memory (a container
//! holding thousands of idle connections must not make the sidecar, which
//! lives outside its memory limit, grow by 64 KiB each).
//!
//! It also replays a prefix first: the bytes the sniffer read to tell TLS
//! from HTTP.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::poll_read_buf;

/// What the TLS legs read ahead (measured against 32 and 128 KiB:
/// 32 KiB cost more CPU per byte, 128 KiB no less than 64).
pub const TLS_READ_AHEAD: usize = 64 * 1024;

/// A stream whose reads first return a prefix, then read ahead of the
/// caller by up to `cap` bytes at a time (none with `cap` 0) while data
/// streams in: from a read that filled the caller's buffer until the
/// stream has nothing more to give.
pub struct ReadAhead<T> {
    inner: T,
    buf: BytesMut,
    cap: usize,
    /// The last read filled the caller's buffer: data is streaming in.
    streaming: bool,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T, cap: usize) -> ReadAhead<T> {
        ReadAhead { inner, buf: BytesMut::new(), cap, streaming: false }
    }

    /// Reads return `prefix` first.
    pub fn with_prefix(prefix: BytesMut, inner: T, cap: usize) -> ReadAhead<T> {
        ReadAhead { inner, buf: prefix, cap, streaming: false }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Bytes of buffer held now (for tests and memory checks).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            let asked = out.remaining();
            if !this.streaming || asked >= this.cap {
                // Read straight into the caller's buffer: a request or a
                // reply that fits costs no copy and no buffer. A read that
                // fills it shows more is coming: read ahead from then on.
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                let got = out.filled().len() - before;
                this.streaming = this.cap > asked && got > 0 && got == asked;
                return Poll::Ready(Ok(()));
            }
            this.buf.reserve(this.cap);
            match poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(_)) => {}
                other => {
                    // Waiting (or failed): the stream has caught up, and the
                    // connection may now stay idle for long.
                    this.buf = BytesMut::new();
                    this.streaming = false;
                    ready!(other)?;
                    return Poll::Ready(Ok(()));
                }
            }
            if this.buf.is_empty() {
                // End of stream.
                this.buf = BytesMut::new();
                this.streaming = false;
                return Poll::Ready(Ok(()));
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() && !this.streaming {
            // The prefix is all read: its buffer is not needed again.
            this.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

forward_async_write_to_inner!(ReadAhead);

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A reader that hands out the given chunks, one per read (as far as
    /// the caller's buffer takes it), `Pending` (woken at once) where a
    /// chunk is empty, then the end of stream; it counts its reads.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
        reads: usize,
        largest_ask: usize,
    }

    impl Chunks {
        fn new(chunks: &[&[u8]]) -> Chunks {
            Chunks { chunks: chunks.iter().map(|c| c.to_vec()).collect(), reads: 0, largest_ask: 0 }
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            this.largest_ask = this.largest_ask.max(out.remaining());
            let Some(mut chunk) = this.chunks.pop_front() else { return Poll::Ready(Ok(())) };
            if chunk.is_empty() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = chunk.len().min(out.remaining());
            out.put_slice(&chunk[..n]);
            if n < chunk.len() {
                this.chunks.push_front(chunk.split_off(n));
            }
            Poll::Ready(Ok(()))
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Reads everything in pieces of at most `piece` bytes.
    async fn read_all<T: AsyncRead + Unpin>(r: &mut ReadAhead<T>, piece: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; piece];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read() {
        let data = pattern(64 * 1024);
        let mut r = ReadAhead::new(Chunks::new(&[&data]), 64 * 1024);
        let got = read_all(&mut r, 4096).await;
        assert_eq!(got, data);
        // The first read fills the caller's 4 KiB; one read takes the rest,
        // one sees the end.
        assert_eq!(r.get_ref().reads, 3);
        assert_eq!(r.get_ref().largest_ask, 64 * 1024);
    }

    #[tokio::test]
    async fn a_small_message_is_read_straight_into_the_callers_buffer() {
        let request = pattern(700);
        let mut r = ReadAhead::new(Chunks::new(&[&request, &[], &request]), 64 * 1024);
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            assert_eq!(r.read(&mut buf).await.unwrap(), 700);
            assert_eq!(&buf[..700], &request[..]);
            assert_eq!(r.buffer_capacity(), 0, "no buffer for what fits the caller's");
        }
        assert_eq!(r.get_ref().largest_ask, 4096);
    }

    #[tokio::test]
    async fn without_read_ahead_each_small_read_reaches_the_stream() {
        let data = pattern(64 * 1024);
        let mut r = ReadAhead::new(Chunks::new(&[&data]), 0);
        assert_eq!(read_all(&mut r, 4096).await, data);
        assert_eq!(r.get_ref().reads, 17);
        assert_eq!(r.get_ref().largest_ask, 4096);
    }

    #[tokio::test]
    async fn bytes_keep_their_order_across_chunks_pauses_and_the_prefix() {
        let data = pattern(300_000);
        let (a, rest) = data.split_at(10);
        let (b, rest) = rest.split_at(100_000);
        let (c, d) = rest.split_at(3);
        let chunks: Vec<&[u8]> = vec![b, &[], c, &[], &[], d];
        let mut r = ReadAhead::with_prefix(BytesMut::from(a), Chunks::new(&chunks), 16 * 1024);
        assert_eq!(read_all(&mut r, 5000).await, data);
    }

    #[tokio::test]
    async fn the_prefix_buffer_is_dropped_once_read() {
        let mut prefix = BytesMut::with_capacity(8192);
        prefix.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut r = ReadAhead::with_prefix(prefix, Chunks::new(&[b"Host: a\r\n\r\n", &[]]), 64 * 1024);
        let mut buf = vec![0u8; 4096];
        assert_eq!(r.read(&mut buf).await.unwrap(), 16);
        assert_eq!(r.buffer_capacity(), 0, "a keep-alive connection does not keep the sniffed bytes' buffer");
        assert_eq!(r.read(&mut buf).await.unwrap(), 11);
    }

    #[tokio::test]
    async fn a_read_as_large_as_the_read_ahead_goes_straight_to_the_stream() {
        let data = pattern(100_000);
        let mut r = ReadAhead::new(Chunks::new(&[&data]), 16 * 1024);
        let got = read_all(&mut r, 16 * 1024).await;
        assert_eq!(got, data);
        assert_eq!(r.buffer_capacity(), 0, "no buffer was needed");
    }

    #[tokio::test]
    async fn the_buffer_is_given_back_when_the_stream_has_nothing_more() {
        let data = pattern(10_000);
        let mut r = ReadAhead::new(Chunks::new(&[&data, &[]]), 64 * 1024);
        let mut buf = vec![0u8; 4096];
        assert_eq!(r.read(&mut buf).await.unwrap(), 4096);
        assert_eq!(r.buffer_capacity(), 0, "the first read went straight to the caller");
        assert_eq!(r.read(&mut buf).await.unwrap(), 4096);
        assert!(r.buffer_capacity() >= 60 * 1024, "the rest of one large read is held");
        assert_eq!(r.read(&mut buf).await.unwrap(), 10_000 - 8192);
        // The next read finds the stream waiting (then at its end): nothing is held meanwhile.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut rb).is_pending());
        assert_eq!(r.buffer_capacity(), 0, "an idle connection holds no read-ahead buffer");
        assert_eq!(r.read(&mut buf).await.unwrap(), 0);
        assert_eq!(r.buffer_capacity(), 0);
    }
}
