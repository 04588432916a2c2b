//! Accepting the container's connections and deciding what each speaks:
//! TLS (terminated with a leaf for its SNI), plain HTTP/1, or anything else
//! (closed at once). The same inspection runs inside CONNECT tunnels.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::audit::Event;
use crate::body::Holding;
use crate::context::ProxyContext;
use crate::guard::{GuardIo, MAX_HEAD};
use crate::service::{handle, normal_host, Scope};
use crate::sni::SniError;
use crate::readahead::{ReadAhead, TLS_READ_AHEAD};
use crate::sniff::{sniff, Sniffed};

/// Largest HTTP/2 header list accepted from a client.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
const H2_MAX_STREAMS: u32 = 256;

/// A connection's place among `limits.max_connections`. Whatever serves the
/// connection holds it: its own task, and after an upgrade (a CONNECT
/// tunnel, a WebSocket) the task that carries the connection on, so that
/// tunnels count against the limit as long as they are open.
pub type Slot = Arc<OwnedSemaphorePermit>;

/// Serves the container's connections until the listener fails fatally;
/// one task per connection, at most `limits.max_connections` at once
/// (tunnels and WebSockets included).
pub async fn serve_proxy(listener: TcpListener, ctx: Arc<ProxyContext>) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) if is_transient(&e) => {
                log::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if ctx.upstream_enabled {
            ctx.upstream.warm_in_background();
        }
        let ctx = ctx.clone();
        tokio::spawn(serve_connection(ctx, stream, Arc::new(permit)));
    }
}

fn is_transient(e: &io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED | libc::ECONNRESET | libc::EPERM | libc::EPROTO | libc::EINTR)
    ) || matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

/// One connection from the container.
async fn serve_connection(ctx: Arc<ProxyContext>, mut stream: TcpStream, slot: Slot) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let dst = (ctx.original_dst)(&stream).filter(|d| Some(*d) != local);
    let mut buf = BytesMut::with_capacity(4096);
    let Some(sniffed) = sniff_timed(&ctx, &mut stream, &mut buf).await else {
        return;
    };
    match sniffed {
        Sniffed::Closed => {}
        Sniffed::Other => {
            let mut ev = Event::deny("tcp", "non-HTTP bytes");
            ev.url = dst.map(|d| format!("tcp://{d}"));
            ctx.audit.record(ev);
        }
        Sniffed::Http => {
            let port = dst.map_or(80, |d| d.port());
            let scope = Scope { tls: false, bound_host: None, bound_reason: "", port, outer: true, http1: true, slot };
            serve_h1(ctx, GuardIo::new(stream, buf), scope).await;
        }
        Sniffed::Tls(sni) => {
            let port = dst.map_or(443, |d| d.port());
            serve_tls(ctx, stream, buf, sni, None, port, slot).await;
        }
    }
}

/// Inspects an established CONNECT tunnel to `host:port`, holding the
/// slot of the connection that made it. (Boxed: the tunnel's requests are
/// served by the same code that made the tunnel.)
pub fn serve_tunnel<I>(ctx: Arc<ProxyContext>, io: I, host: String, port: u16, slot: Slot) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(serve_tunnel_inner(ctx, io, host, port, slot))
}

async fn serve_tunnel_inner<I>(ctx: Arc<ProxyContext>, mut io: I, host: String, port: u16, slot: Slot)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(4096);
    let Some(sniffed) = sniff_timed(&ctx, &mut io, &mut buf).await else {
        return;
    };
    match sniffed {
        Sniffed::Closed => {}
        Sniffed::Other => {
            let mut ev = Event::deny("tcp", "non-HTTP bytes in CONNECT tunnel");
            ev.url = Some(format!("{host}:{port}"));
            ev.host = Some(host);
            ctx.audit.record(ev);
        }
        Sniffed::Http => {
            let scope = Scope {
                tls: false,
                bound_host: Some(host),
                bound_reason: "host does not match CONNECT target",
                port,
                outer: false,
                http1: true,
                slot,
            };
            serve_h1(ctx, GuardIo::new(io, buf), scope).await;
        }
        Sniffed::Tls(sni) => serve_tls(ctx, io, buf, sni, Some(host), port, slot).await,
    }
}

async fn sniff_timed<I: AsyncRead + Unpin>(ctx: &ProxyContext, io: &mut I, buf: &mut BytesMut) -> Option<Sniffed> {
    match tokio::time::timeout(ctx.limits.sniff_timeout, sniff(io, buf)).await {
        Ok(Ok(sniffed)) => Some(sniffed),
        Ok(Err(e)) => {
            log::debug!("reading the first bytes: {e}");
            None
        }
        Err(_) if buf.is_empty() => None,
        Err(_) => Some(Sniffed::Other),
    }
}

/// Terminates TLS for a ClientHello with a usable SNI, then serves HTTP.
async fn serve_tls<I>(
    ctx: Arc<ProxyContext>,
    io: I,
    buf: BytesMut,
    sni: Result<Option<String>, SniError>,
    required: Option<String>,
    port: u16,
    slot: Slot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refuse = |reason: String, host: Option<String>| {
        let mut ev = Event::deny("tls", reason);
        ev.host = host;
        ctx.audit.record(ev);
    };
    let name = match sni {
        Ok(Some(name)) => normal_host(&name),
        Ok(None) => return refuse("TLS without a server name (SNI)".into(), required),
        Err(e) => return refuse(format!("malformed TLS ClientHello: {e}"), required),
    };
    if name.parse::<IpAddr>().is_ok() {
        return refuse("TLS server name is an IP address".into(), Some(name));
    }
    if required.as_ref().is_some_and(|r| *r != name) {
        return refuse("TLS server name does not match CONNECT target".into(), Some(name));
    }
    let acceptor = TlsAcceptor::from(ctx.tls_server.clone());
    let tls = match tokio::time::timeout(ctx.limits.handshake_timeout, acceptor.accept(ReadAhead::with_prefix(buf, io, TLS_READ_AHEAD))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log::debug!("TLS handshake for {name}: {e}");
            return refuse(format!("TLS handshake with the client failed: {e}"), Some(name));
        }
        Err(_) => return refuse("TLS handshake timed out".into(), Some(name)),
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let scope = Scope {
        tls: true,
        bound_host: Some(name),
        bound_reason: "host does not match TLS server name",
        port,
        outer: false,
        http1: !h2,
        slot,
    };
    if h2 {
        serve_h2(ctx, tls, scope).await;
    } else {
        serve_h1(ctx, GuardIo::new(tls, BytesMut::new()), scope).await;
    }
}

async fn serve_h1<I>(ctx: Arc<ProxyContext>, io: GuardIo<I>, scope: Scope)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let partial_head = io.partial_head();
    let kind = scope.kind();
    let scope = Arc::new(scope);
    let timeout = ctx.limits.header_read_timeout;
    let audit = ctx.audit.clone();
    let svc = service_fn(move |req| handle(ctx.clone(), scope.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD + 32 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let ended = conn.await;
    if let Err(e) = &ended {
        log::debug!("HTTP/1 connection ended: {e}");
    }
    match ended {
        // A head the guard passed but hyper could not read: hyper answered
        // it on its own (or, for an HTTP/2 preface, closed), and nothing
        // else has recorded it. (The guard refuses what it knows hyper
        // refuses; this is for whatever it does not know.)
        Err(e) if e.is_parse() => {
            let status = if e.is_parse_version_h2() {
                None
            } else if e.is_parse_too_large() {
                Some(431) // (or 414 for a URI over 64 KiB, which the guard's head limit rules out)
            } else {
                Some(400)
            };
            audit.record(Event { status, ..Event::deny(kind, format!("malformed request: {e}")) });
        }
        // hyper gave up while part of a head was still arriving (the guard
        // holds it, and clears the flag when the client itself closes): the
        // head timed out (slowloris). An idle keep-alive close is no refusal.
        _ if partial_head.load(Ordering::Relaxed) => {
            audit.record(Event::deny(kind, format!("request head not received within {}s", timeout.as_secs())));
        }
        _ => {}
    }
}

/// Serves HTTP/2. hyper's HTTP/2 server has no timer of its own for a
/// client that says nothing (`header_read_timeout` is HTTP/1's), so the
/// streams being answered are counted here: a connection that has had
/// none for the HTTP/1 idle cut-off (`header_read_timeout`), including one
/// that never sent its preface or a first stream, is shut down gracefully
/// (GOAWAY), and closed if it is still there, with no stream, after
/// [`H2_GOAWAY_GRACE`] more.
async fn serve_h2<I>(ctx: Arc<ProxyContext>, io: I, scope: Scope)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let scope = Arc::new(scope);
    let idle = ctx.limits.header_read_timeout;
    let streams = Arc::new(OpenStreams::new());
    let counted = streams.clone();
    let svc = service_fn(move |req| {
        let open = counted.open();
        let answer = handle(ctx.clone(), scope.clone(), req);
        async move {
            let resp = answer.await?;
            Ok::<_, Infallible>(resp.map(|body| Holding::new(body, open)))
        }
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20))
        .serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = streams.idle_for(idle, streams.start) => {
            log::debug!("HTTP/2 connection without a stream for {idle:?}: going away");
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                ended = conn.as_mut() => ended,
                () = streams.idle_for(H2_GOAWAY_GRACE, Instant::now()) => {
                    log::debug!("HTTP/2 connection still open {H2_GOAWAY_GRACE:?} after GOAWAY: closed");
                    Ok(())
                }
            }
        }
    };
    if let Err(e) = ended {
        log::debug!("HTTP/2 connection ended: {e}");
    }
}

/// How long an HTTP/2 connection told to go away (GOAWAY) may stay open
/// with no stream: a well-behaved client answers the shutdown PING and
/// closes within a round trip.
const H2_GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// The streams of one HTTP/2 connection being answered: each counted from
/// the service call until its response body is done with. A stream's end
/// costs a clock read and a store; nothing wakes the connection's task.
struct OpenStreams {
    count: AtomicUsize,
    /// When a stream last ended, in milliseconds after `start`.
    last_end: AtomicU64,
    start: Instant,
}

impl OpenStreams {
    fn new() -> OpenStreams {
        OpenStreams { count: AtomicUsize::new(0), last_end: AtomicU64::new(0), start: Instant::now() }
    }

    fn open(self: &Arc<Self>) -> OpenStream {
        self.count.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.clone())
    }

    /// Returns once the connection has had no open stream for `period`,
    /// counted from `from` at the earliest.
    async fn idle_for(&self, period: Duration, from: Instant) {
        loop {
            if self.count.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(period).await;
                continue;
            }
            let last_end = self.start + Duration::from_millis(self.last_end.load(Ordering::Relaxed));
            let deadline = last_end.max(from) + period;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One open stream of [`OpenStreams`].
struct OpenStream(Arc<OpenStreams>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        // The time first: once the count reads zero, it is the idle start.
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end.fetch_max(ms, Ordering::Relaxed);
        self.0.count.fetch_sub(1, Ordering::Release);
    }
}
