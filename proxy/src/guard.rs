//! A strict HTTP/1 request framing guard between the client and hyper.
//!
//! hyper quietly repairs some ambiguous requests (it drops a Content-Length
//! that comes with Transfer-Encoding, keeps one of two equal
//! Content-Lengths, accepts a bare LF as a line end), so the proxy reads
//! the raw bytes first. [`GuardIo`] follows the message framing itself
//! (head, then Content-Length or chunked body, then the next head) and
//! checks every request head before hyper sees it. A head that breaks a rule
//! is never passed on: hyper gets instead a synthetic request carrying
//! [`GUARD_HEADER`] with the reason, which the service answers with 400 and
//! `connection: close`; nothing more is read from the client afterwards.
//! A malformed chunked body turns into a read error (the connection dies).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

/// Header the guard puts on its synthetic request; the value is the reason.
pub const GUARD_HEADER: &str = "x-boundary-guard";
/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a request head: hyper's own limit (its default;
/// raising it with `max_headers` would put hyper's header array on the
/// heap for every request). A head with more is refused here, audited,
/// rather than by hyper with a 431 that nothing records.
pub const MAX_HEADERS: usize = 100;
const MAX_CHUNK_LINE: usize = 4096;
const READ_CHUNK: usize = 16 * 1024;

/// How the body after a valid head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// CONNECT or an Upgrade request: the guard stops following the stream.
    Upgrade,
}

/// Checks one complete request head (ending in CRLF CRLF).
pub fn check_head(head: &[u8]) -> Result<Framing, &'static str> {
    check_line_ends(head)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header fields"),
        Err(_) => return Err("malformed request head"),
    }
    if !target_parses(req.path.unwrap_or_default()) {
        return Err("request target is not a URI");
    }
    let (mut cl, mut cl_count, mut te_count, mut te_chunked, mut upgrade) = (0u64, 0, 0, true, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl_count += 1;
            cl = parse_length(h.value).ok_or("invalid Content-Length")?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_count += 1;
            te_chunked &= trim(h.value).eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case(GUARD_HEADER) {
            return Err("reserved header field x-boundary-guard");
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if cl_count > 1 {
        return Err("duplicate Content-Length");
    }
    if cl_count == 1 && te_count > 0 {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if te_count > 0 && (te_count > 1 || !te_chunked) {
        return Err("Transfer-Encoding other than chunked");
    }
    if te_count > 0 && req.version != Some(1) {
        return Err("Transfer-Encoding in an HTTP/1.0 request");
    }
    if req.method == Some("CONNECT") || (upgrade && req.version == Some(1)) {
        return Ok(Framing::Upgrade);
    }
    Ok(if te_count > 0 { Framing::Chunked } else { Framing::Length(cl) })
}

/// Whether hyper can read `target` (which httparse has accepted) as a URI
/// (`http::Uri`); hyper answers one it cannot with a 400 of its own, which
/// nothing would record. The origin form (`/path?query`), nearly every
/// request, is checked byte by byte against `http`'s classes, without a
/// copy; the others (absolute form, authority form, `*`) are parsed.
fn target_parses(target: &str) -> bool {
    if target.starts_with('/') {
        return target.len() <= MAX_URI && origin_form_parses(target.as_bytes());
    }
    hyper::Uri::try_from(target).is_ok()
}

/// `http`'s length limit for a URI.
const MAX_URI: usize = u16::MAX as usize - 1;

/// The bytes `http` accepts in a path and in a query (`uri/path.rs`);
/// bytes above 0x7F are fine once httparse has found the target UTF-8,
/// and anything goes after `#` (`http` drops the fragment).
fn origin_form_parses(target: &[u8]) -> bool {
    let mut query = false;
    for &b in target {
        let ok = match b {
            b'#' => return true,
            b'?' => {
                query = true;
                true
            }
            0x80.. => true,
            _ if query => matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E),
            _ => matches!(b, 0x21 | b'"' | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7E),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Every CR is followed by LF, every LF preceded by CR, and no line after
/// the request line starts with whitespace (obs-fold).
fn check_line_ends(head: &[u8]) -> Result<(), &'static str> {
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\r' if head.get(i + 1) != Some(&b'\n') => return Err("bare CR in request head"),
            b'\n' if i == 0 || head[i - 1] != b'\r' => return Err("bare LF in request head"),
            b'\n' if matches!(head.get(i + 1), Some(b' ' | b'\t')) => {
                return Err("obsolete line folding in request head")
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Where the end of the head is: the index just past CRLF CRLF.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { digits: u8, val: u64 },
    SizeWs { val: u64 },
    Ext { val: u64, len: usize },
    SizeLf { val: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer { len: usize },
    TrailerLf,
    FinalLf,
    Done,
}

impl Chunk {
    const START: Chunk = Chunk::Size { digits: 0, val: 0 };

    /// Advances over one non-data byte.
    fn step(self, b: u8) -> Result<Chunk, &'static str> {
        const BAD: &str = "malformed chunked body";
        Ok(match (self, b) {
            (Chunk::Size { digits, val }, _) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err("chunk size too large");
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                Chunk::Size { digits: digits + 1, val: val * 16 + d }
            }
            (Chunk::Size { digits: 0, .. }, _) => return Err(BAD),
            (Chunk::Size { val, .. } | Chunk::SizeWs { val }, b' ' | b'\t') => Chunk::SizeWs { val },
            (Chunk::Size { val, .. } | Chunk::SizeWs { val }, b';') => Chunk::Ext { val, len: 0 },
            (Chunk::Size { val, .. } | Chunk::SizeWs { val } | Chunk::Ext { val, .. }, b'\r') => {
                Chunk::SizeLf { val }
            }
            (Chunk::Ext { val, len }, _) if b != b'\n' && len < MAX_CHUNK_LINE => Chunk::Ext { val, len: len + 1 },
            (Chunk::SizeLf { val: 0 }, b'\n') => Chunk::TrailerStart,
            (Chunk::SizeLf { val }, b'\n') => Chunk::Data(val),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::START,
            (Chunk::TrailerStart, b'\r') => Chunk::FinalLf,
            (Chunk::TrailerStart, b'\n' | b' ' | b'\t') => return Err(BAD),
            (Chunk::TrailerStart, _) => Chunk::Trailer { len: 1 },
            (Chunk::Trailer { .. }, b'\r') => Chunk::TrailerLf,
            (Chunk::Trailer { len }, _) if b != b'\n' && len < MAX_HEAD => Chunk::Trailer { len: len + 1 },
            (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
            (Chunk::FinalLf, b'\n') => Chunk::Done,
            _ => return Err(BAD),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    Passthrough,
    /// A bad head was replaced; nothing more is read from the client.
    Poisoned,
    /// A bad chunked body: the next read fails.
    Failed(&'static str),
}

/// The guard around a client stream; `initial` holds bytes already read.
pub struct GuardIo<T> {
    inner: T,
    inbuf: BytesMut,
    out: BytesMut,
    state: State,
    /// Set while part of a request head has arrived but not all of it.
    partial_head: Arc<AtomicBool>,
}

impl<T> GuardIo<T> {
    pub fn new(inner: T, initial: BytesMut) -> GuardIo<T> {
        let partial_head = Arc::new(AtomicBool::new(!initial.is_empty()));
        GuardIo { inner, inbuf: initial, out: BytesMut::new(), state: State::Head, partial_head }
    }

    /// A flag that stays readable after the guard moves into hyper: whether
    /// the client has sent part of a request head and not yet the rest
    /// (so a head timeout is a refusal of a slow client, not an idle close).
    pub fn partial_head(&self) -> Arc<AtomicBool> {
        self.partial_head.clone()
    }

    /// Moves validated bytes from `inbuf` to `out` as far as framing allows.
    fn process(&mut self) {
        while !self.inbuf.is_empty() {
            match self.state {
                State::Head => {
                    // Empty lines before a request line are allowed (RFC 9112 2.2).
                    if self.inbuf.starts_with(b"\r\n") {
                        self.inbuf.advance(2);
                        continue;
                    }
                    let end = match head_end(&self.inbuf) {
                        // Complete but too large: a read can bring more
                        // than MAX_HEAD at once, the end included.
                        Some(end) if end > MAX_HEAD => return self.poison("request head too large"),
                        Some(end) => end,
                        None if self.inbuf.len() > MAX_HEAD => return self.poison("request head too large"),
                        // A trailing CR may still get its LF; anything before it is final.
                        None => match check_line_ends(self.inbuf.strip_suffix(b"\r").unwrap_or(&self.inbuf)) {
                            Err(reason) => return self.poison(reason),
                            Ok(()) => return,
                        },
                    };
                    match check_head(&self.inbuf[..end]) {
                        Ok(framing) => {
                            let head = self.inbuf.split_to(end);
                            self.out.extend_from_slice(&head);
                            self.state = match framing {
                                Framing::Length(0) => State::Head,
                                Framing::Length(n) => State::Body(n),
                                Framing::Chunked => State::Chunked(Chunk::START),
                                Framing::Upgrade => State::Passthrough,
                            };
                        }
                        Err(reason) => return self.poison(reason),
                    }
                }
                State::Body(n) | State::Chunked(Chunk::Data(n)) => {
                    let take = n.min(self.inbuf.len() as u64);
                    let data = self.inbuf.split_to(take as usize);
                    self.out.extend_from_slice(&data);
                    self.consumed_body(take);
                }
                State::Chunked(c) => {
                    let b = self.inbuf[0];
                    match c.step(b) {
                        Ok(next) => {
                            self.inbuf.advance(1);
                            self.out.extend_from_slice(&[b]);
                            self.state = if next == Chunk::Done { State::Head } else { State::Chunked(next) };
                        }
                        Err(reason) => {
                            self.inbuf.clear();
                            self.state = State::Failed(reason);
                        }
                    }
                }
                State::Passthrough => {
                    let rest = self.inbuf.split();
                    self.out.extend_from_slice(&rest);
                }
                State::Poisoned | State::Failed(_) => {
                    self.inbuf.clear();
                }
            }
        }
    }

    /// Accounts for `n` body bytes handed on in state Body or chunk Data.
    fn consumed_body(&mut self, n: u64) {
        self.state = match self.state {
            State::Body(left) if left <= n => State::Head,
            State::Body(left) => State::Body(left - n),
            State::Chunked(Chunk::Data(left)) if left <= n => State::Chunked(Chunk::DataCr),
            State::Chunked(Chunk::Data(left)) => State::Chunked(Chunk::Data(left - n)),
            other => other,
        };
    }

    fn poison(&mut self, reason: &'static str) {
        log::debug!("refusing a request head: {reason}");
        self.inbuf.clear();
        self.out.extend_from_slice(b"GET / HTTP/1.1\r\nhost: guard.invalid\r\n");
        self.out.extend_from_slice(GUARD_HEADER.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(reason.as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.state = State::Poisoned;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.state {
                State::Poisoned => return Poll::Pending,
                State::Failed(reason) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, reason))),
                State::Passthrough if this.inbuf.is_empty() => return Pin::new(&mut this.inner).poll_read(cx, buf),
                _ => {}
            }
            if this.inbuf.is_empty() {
                // Body bytes go straight into the caller's buffer when all
                // of it belongs to the current body (no copy, no scan).
                if let State::Body(n) | State::Chunked(Chunk::Data(n)) = this.state {
                    if buf.remaining() as u64 <= n {
                        let before = buf.filled().len();
                        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                        this.consumed_body((buf.filled().len() - before) as u64);
                        return Poll::Ready(Ok(()));
                    }
                }
            } else {
                this.process();
                let partial = this.state == State::Head && !this.inbuf.is_empty();
                this.partial_head.store(partial, Ordering::Relaxed);
                if !this.out.is_empty() || matches!(this.state, State::Poisoned | State::Failed(_)) {
                    continue;
                }
            }
            // Need more bytes from the client.
            // Into spare capacity, not zeroed first: zeroing 16 KiB on
            // every attempt (most return Pending) was the largest single
            // cost of a keep-alive request (bench/sidecar.sh --callgrind).
            this.inbuf.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.inbuf))?;
            if n == 0 {
                // EOF: hand over whatever is left unvalidated-but-incomplete
                // (hyper will see a truncated message and fail), then EOF.
                if this.inbuf.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let rest = this.inbuf.split();
                if matches!(this.state, State::Head) {
                    this.partial_head.store(false, Ordering::Relaxed);
                    return Poll::Ready(Ok(())); // a partial head is dropped
                }
                this.out.extend_from_slice(&rest);
            }
        }
    }
}

forward_async_write_to_inner!(GuardIo);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn heads() {
        let ok = |h: &str| check_head(h.as_bytes());
        assert_eq!(ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Framing::Length(0)));
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"), Ok(Framing::Length(5)));
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n"), Ok(Framing::Chunked));
        assert_eq!(ok("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), Ok(Framing::Upgrade));
        assert_eq!(ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"), Ok(Framing::Upgrade));
        for (head, why) in [
            ("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
            ("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "duplicate"),
            ("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", "invalid"),
            ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", "invalid"),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "other than"),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "other than"),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"),
            ("GET / HTTP/1.1\r\nHost: a\r\n X: folded\r\n\r\n", "folding"),
            ("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", "bare LF"),
            ("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", "bare CR"),
            ("GET / HTTP/1.1\r\nX-Boundary-Guard: ok\r\n\r\n", "reserved"),
            ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "malformed"),
        ] {
            let err = ok(head).unwrap_err();
            assert!(err.contains(why), "{head:?}: {err}");
        }
    }

    /// The guard refuses exactly the request targets hyper could not read:
    /// every byte httparse lets through, in a path, a query and a
    /// fragment, and targets in the other forms.
    #[test]
    fn request_targets_are_judged_as_hyper_reads_them() {
        let hyper_reads = |t: &str| hyper::Uri::try_from(t).is_ok();
        for b in 0x21u8..=0x7e {
            let c = char::from(b);
            for t in [format!("/a{c}b"), format!("/a?b{c}c"), format!("/a#{c}"), format!("/a?b#{c}")] {
                assert_eq!(target_parses(&t), hyper_reads(&t), "{t:?}");
            }
        }
        for t in [
            "/", "/é?ü=1", "*", "http://a.example/x?y", "a.example:443", "http://a.example", "other.test/x", "http:other.test/x",
            "//a.example/x", "http://a b/", "http://[::1/", "/a<b>", "/a`b", "/a?b\"c", "/a?b<c",
        ] {
            assert_eq!(target_parses(t), hyper_reads(t), "{t:?}");
        }
        assert!(!target_parses("other.test/x") && !target_parses("/a<b>") && target_parses("/a{b}\"c|d"));
        let head = |t: &str| check_head(format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!(head("other.test/x"), Err("request target is not a URI"));
        assert_eq!(head("/a?b=<c>"), Err("request target is not a URI"));
        assert_eq!(head("/a?b=c"), Ok(Framing::Length(0)));
    }

    #[test]
    fn chunk_machine() {
        let run = |s: &[u8]| -> Result<Chunk, &'static str> {
            let mut c = Chunk::START;
            let mut i = 0;
            while i < s.len() {
                if let Chunk::Data(n) = c {
                    i += n as usize;
                    c = Chunk::DataCr;
                    continue;
                }
                c = c.step(s[i])?;
                i += 1;
            }
            Ok(c)
        };
        assert_eq!(run(b"5\r\nhello\r\n0\r\n\r\n"), Ok(Chunk::Done));
        assert_eq!(run(b"5;x=y\r\nhello\r\n0\r\nTrailer: v\r\n\r\n"), Ok(Chunk::Done));
        assert!(run(b"5\nhello\r\n0\r\n\r\n").is_err());
        assert!(run(b"zz\r\n").is_err());
        assert!(run(b"5\r\nhelloXX").is_err());
        assert!(run(b"ffffffffffffffffff\r\n").is_err());
    }

    async fn through(input: &[u8]) -> (Vec<u8>, io::Result<()>) {
        let mut g = GuardIo::new(input, BytesMut::new());
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let r = tokio::time::timeout(std::time::Duration::from_millis(50), g.read(&mut buf)).await;
            match r {
                Ok(Ok(0)) => return (out, Ok(())),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return (out, Err(e)),
                Err(_) => return (out, Ok(())), // poisoned: pending forever
            }
        }
    }

    #[tokio::test]
    async fn passes_good_pipelines_unchanged() {
        let input = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: a\r\n\r\n\
POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nx\ny\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: a\r\n\r\n";
        let (out, res) = through(input).await;
        res.unwrap();
        assert_eq!(out, input.to_vec());
    }

    /// A head arriving a line (or a byte) at a time, each piece ending
    /// right after CR LF, is not mistaken for a bare CR.
    #[tokio::test]
    async fn a_head_split_after_cr_lf_passes() {
        let head = b"GET /a HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n";
        for piece in [1, 2, head.len() / 2] {
            let (client, mut server) = tokio::io::duplex(64);
            let mut g = GuardIo::new(client, BytesMut::new());
            let writer = tokio::spawn(async move {
                for c in head.chunks(piece) {
                    tokio::io::AsyncWriteExt::write_all(&mut server, c).await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                server
            });
            let mut out = vec![0u8; head.len()];
            tokio::time::timeout(std::time::Duration::from_secs(2), g.read_exact(&mut out)).await.unwrap().unwrap();
            assert_eq!(out, head.to_vec(), "pieces of {piece}");
            drop(writer.await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_complete_head_over_the_limit_in_one_read_is_refused() {
        let head = format!("GET /a HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        for (initial, rest) in [(head.as_bytes(), &b""[..]), (&b""[..], head.as_bytes())] {
            let mut g = GuardIo::new(rest, BytesMut::from(initial));
            let mut out = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), g.read_to_end(&mut out)).await;
            let text = String::from_utf8_lossy(&out);
            assert!(text.contains("x-boundary-guard: request head too large") && !text.contains("X-Big"), "{}", &text[..text.len().min(200)]);
        }
    }

    #[tokio::test]
    async fn replaces_a_bad_head_after_good_ones() {
        let input = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /never HTTP/1.1\r\n\r\n";
        let (out, _) = through(input).await;
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nhost: guard.invalid\r\n"));
        assert!(text.contains("x-boundary-guard: both Content-Length and Transfer-Encoding\r\n\r\n"));
        assert!(!text.contains("never"));
    }

    #[tokio::test]
    async fn bad_chunk_is_a_read_error() {
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n";
        let (out, res) = through(input).await;
        assert!(res.is_err());
        assert!(out.ends_with(b"abc"));
    }
}
