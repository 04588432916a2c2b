//! The DNS filter: the only resolver a jailed container can reach.
//!
//! nftables on the host side redirect every DNS packet of the container (UDP
//! and TCP port 53, to any address, including 127.0.0.11 and IPv6 servers)
//! to this server. It answers from the policy and never forwards a query:
//!
//! - A name some allow rule could allow (and the container has upstream
//!   access): `A` is answered with the addresses the sidecar's own
//!   [`Resolver`] finds (pins first, special addresses refused), TTL
//!   [`ALLOWED_TTL`]. The resolver looks up exactly that name, so nothing
//!   the container encodes in a name reaches an upstream server unless a
//!   rule allows the whole name.
//! - Any other name is never looked up: `A` is answered with the sinkhole
//!   address (the sidecar's own listen address, TTL [`SINKHOLE_TTL`]). The
//!   container's connection then arrives at the sidecar like any other and
//!   gets a 403 that names the rule that would allow it, instead of an
//!   opaque resolution failure. DNS tunnelling through a subdomain of an
//!   allowed name (`<data>.api.example.com` under `domain=api.example.com`)
//!   is sinkholed in the same way, because the rule does not allow that
//!   name.
//! - `AAAA` is always an empty NOERROR answer: the boundary carries no IPv6,
//!   and an empty answer (rather than an error) makes clients fall straight
//!   back to IPv4 without waiting. Every other type is an empty NOERROR
//!   answer too.
//!
//! Every query is audited (kind `dns`, the query type in `method`), and
//! so is every refusal. Malformed queries get FORMERR when their header
//! can be read and are dropped otherwise; more than one question is
//! FORMERR; opcodes other than QUERY are NOTIMP (audited with the opcode);
//! a failed lookup of an allowed name is SERVFAIL.

use std::borrow::Cow;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use boundary_policy::{normalize_host, Policy};
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{rdata, DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::audit::{AuditLog, Event};
use crate::narrowing::{NarrowSet, Narrowing, CONFIG_OWNER};
use crate::resolve::Resolver;
use crate::upstream::Upstream;
use crate::supervisor::error_chain;
use crate::ProxyContext;

/// TTL of real answers for allowed names.
pub const ALLOWED_TTL: u32 = 30;
/// TTL of sinkhole answers: short, so adding a rule takes effect quickly.
pub const SINKHOLE_TTL: u32 = 5;
/// UDP payload size without EDNS (RFC 1035).
const PLAIN_UDP_LIMIT: usize = 512;
/// The largest UDP payload we send, whatever the client advertises
/// (the DNS flag day 2020 value, safe from fragmentation).
const EDNS_UDP_LIMIT: u16 = 1232;
/// Upper bound on one upstream lookup (the resolver's own retries included).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(8);
/// Queries answered concurrently over UDP; more are dropped (the client
/// retries), so a flood cannot grow memory without bound.
const MAX_UDP_IN_FLIGHT: usize = 256;
/// Concurrent DNS-over-TCP connections.
const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection idle this long is closed, and so is one whose client
/// has not taken an answer for this long (it may pipeline queries without
/// ever reading: its answers would fill buffers and hold one of the
/// [`MAX_TCP_CONNECTIONS`] for ever).
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Reason recorded for names no rule could allow.
pub const DENY_REASON: &str = "no rule allows this name";
/// Reason recorded for allowed names when the container has no upstream.
pub const NO_UPSTREAM_REASON: &str = "the container has no upstream network";

/// Answers the container's DNS queries from the policy.
#[derive(Debug)]
pub struct DnsFilter {
    policy: Arc<Policy>,
    narrowing: Arc<Narrowing>,
    resolver: Arc<Resolver>,
    audit: AuditLog,
    sinkhole: Ipv4Addr,
    upstream_enabled: bool,
    /// Warmed when an allowed name is resolved (a connection is likely next).
    upstream: Option<Upstream>,
    /// [`TCP_TIMEOUT`], unless a test shortens it.
    tcp_timeout: Duration,
}

/// How one question is answered.
enum Verdict {
    /// An allowed name: `A` queries are resolved.
    Resolve(String),
    /// Everything else: `A` queries get the sinkhole.
    Sinkhole { reason: Cow<'static, str> },
}

impl DnsFilter {
    pub fn new(
        policy: Arc<Policy>,
        narrowing: Option<Arc<Policy>>,
        resolver: Arc<Resolver>,
        audit: AuditLog,
        sinkhole: Ipv4Addr,
        upstream_enabled: bool,
    ) -> Self {
        let sets = narrowing.map(|policy| NarrowSet { owner: CONFIG_OWNER.to_owned(), policy: (*policy).clone() });
        let narrowing = Arc::new(Narrowing::fixed(sets.into_iter().collect()));
        DnsFilter { policy, narrowing, resolver, audit, sinkhole, upstream_enabled, upstream: None, tcp_timeout: TCP_TIMEOUT }
    }

    /// The same filter with another idle and write timeout for DNS over
    /// TCP than [`TCP_TIMEOUT`].
    pub fn with_tcp_timeout(mut self, timeout: Duration) -> Self {
        self.tcp_timeout = timeout;
        self
    }

    /// The filter for the container a proxy context serves; the sinkhole is
    /// the sidecar's listen address.
    pub fn from_proxy(ctx: &ProxyContext) -> Self {
        DnsFilter {
            policy: ctx.policy.clone(),
            narrowing: ctx.narrowing.clone(),
            resolver: ctx.resolver.clone(),
            audit: ctx.audit.clone(),
            sinkhole: ctx.listen_addr,
            upstream_enabled: ctx.upstream_enabled,
            upstream: Some(ctx.upstream.clone()),
            tcp_timeout: TCP_TIMEOUT,
        }
    }

    /// Answers one query received over TCP (no size limit). `None` means
    /// the packet is dropped without an answer.
    pub async fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.answer_limited(query, false).await
    }

    /// Answers one query received over UDP: an answer larger than the
    /// client can take (512 bytes without EDNS) is replaced by a truncated
    /// one (TC set, no records) so that the client retries over TCP.
    pub async fn answer_udp(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.answer_limited(query, true).await
    }

    async fn answer_limited(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
            self.refuse(format!("malformed DNS message: {} bytes, shorter than a header", query.len()));
            return None;
        };
        if header.message_type != MessageType::Query {
            self.refuse("DNS message that is not a query".into());
            return None; // never answer an answer: no reflection loops
        }
        if header.counts.queries != 1 {
            self.refuse(format!("malformed DNS query: {} questions", header.counts.queries));
            return encode(&error_response(&header, None, ResponseCode::FormErr));
        }
        let Ok(request) = Message::from_vec(query) else {
            self.refuse("malformed DNS query: does not parse".into());
            return encode(&error_response(&header, None, ResponseCode::FormErr));
        };
        let Some(question) = request.queries.first().cloned() else {
            self.refuse("malformed DNS query: no question".into());
            return None;
        };
        if header.op_code != OpCode::Query {
            let mut event = Event::deny("dns", opcode_refusal(header.op_code));
            event.method = Some(question.query_type().to_string());
            event.host = Some(host_of(question.name()).unwrap_or_else(|| question.name().to_ascii()));
            self.audit.record(event);
            return encode(&error_response(&header, Some(&request), ResponseCode::NotImp));
        }
        let response = self.respond(&request, &question).await;
        let bytes = encode(&response)?;
        if udp && bytes.len() > udp_limit(&request) {
            return encode(&truncated(&response));
        }
        Some(bytes)
    }

    /// Audits a DNS message refused before any question was decided.
    fn refuse(&self, reason: String) {
        self.audit.record(Event::deny("dns", reason));
    }

    /// Decides the question, answers it and writes the audit record.
    async fn respond(&self, request: &Message, q: &Query) -> Message {
        let qtype = q.query_type();
        let (verdict, display) = self.decide(q.name());
        let mut event = Event { kind: "dns", method: Some(qtype.to_string()), host: Some(display), ..Event::default() };
        let mut response = base_response(request);
        let wants_a = qtype == RecordType::A && q.query_class() == DNSClass::IN;
        match verdict {
            Verdict::Sinkhole { reason } => {
                event.reason = Some(reason.into_owned());
                if wants_a {
                    response.add_answer(a_record(q.name(), SINKHOLE_TTL, self.sinkhole));
                }
            }
            Verdict::Resolve(host) => {
                event.allowed = true;
                if let Some(u) = &self.upstream {
                    u.warm_in_background();
                }
                if wants_a {
                    match self.lookup(&host).await {
                        Ok(addrs) => {
                            for ip in addrs {
                                response.add_answer(a_record(q.name(), ALLOWED_TTL, ip));
                            }
                        }
                        Err(reason) => {
                            log::info!("DNS lookup of allowed name {host} failed: {reason}");
                            event.reason = Some(reason);
                            response.metadata.response_code = ResponseCode::ServFail;
                        }
                    }
                }
            }
        }
        self.audit.record(event);
        response
    }

    /// The verdict for a queried name, and the name as it is audited.
    fn decide(&self, name: &Name) -> (Verdict, String) {
        let Some(host) = host_of(name) else {
            return (Verdict::Sinkhole { reason: DENY_REASON.into() }, name.to_ascii());
        };
        let sets = self.narrowing.current();
        let verdict = match (sets.could_allow_host(&self.policy, &host), self.upstream_enabled) {
            (false, _) => match sets.host_narrowed_by(&self.policy, &host) {
                Some(owner) => Verdict::Sinkhole { reason: crate::narrowing::narrowed_reason(DENY_REASON, owner).into() },
                None => Verdict::Sinkhole { reason: DENY_REASON.into() },
            },
            (true, false) => Verdict::Sinkhole { reason: NO_UPSTREAM_REASON.into() },
            (true, true) => Verdict::Resolve(host.clone()),
        };
        (verdict, host)
    }

    async fn lookup(&self, host: &str) -> Result<Vec<Ipv4Addr>, String> {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.resolve_v4(host)).await {
            Ok(Ok(addrs)) => Ok(addrs),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!("lookup timed out after {LOOKUP_TIMEOUT:?}")),
        }
    }
}

/// Why a message with another opcode than QUERY (STATUS, NOTIFY, UPDATE,
/// ...) is refused, naming the opcode.
fn opcode_refusal(op: OpCode) -> String {
    let code = u8::from(op);
    match op {
        OpCode::Unknown(_) => format!("DNS opcode {code} is not implemented"),
        named => format!("DNS opcode {named} ({code}) is not implemented"),
    }
}

/// The queried name as a normalised host (lowercase, no trailing dot), or
/// `None` when it is not a valid hostname. A label holding a `.` or a byte
/// outside printable ASCII is refused here: joined naively it could pose as
/// a different, allowed name.
fn host_of(name: &Name) -> Option<String> {
    let mut joined = String::with_capacity(name.len());
    for label in name.iter() {
        if label.iter().any(|b| *b == b'.' || !b.is_ascii_graphic()) {
            return None;
        }
        if !joined.is_empty() {
            joined.push('.');
        }
        joined.push_str(std::str::from_utf8(label).ok()?);
    }
    normalize_host(&joined).ok()
}

fn a_record(name: &Name, ttl: u32, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::A(rdata::A(ip)))
}

/// A NOERROR response echoing the request's id, flags and question, with an
/// OPT record when the request had one.
fn base_response(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_LIMIT);
        response.set_edns(edns);
    }
    response
}

/// An error response for a request whose header could be read; the
/// question is echoed only when the whole message parsed.
fn error_response(header: &Header, request: Option<&Message>, code: ResponseCode) -> Message {
    let mut response = match request {
        Some(req) => base_response(req),
        None => {
            let mut m = Message::response(header.id, header.op_code);
            m.metadata.recursion_desired = header.recursion_desired;
            m.metadata.recursion_available = true;
            m
        }
    };
    response.metadata.response_code = code;
    response
}

/// The same response without records and with TC set.
fn truncated(response: &Message) -> Message {
    let mut t = Message::response(response.metadata.id, response.metadata.op_code);
    t.metadata = response.metadata;
    t.metadata.truncation = true;
    t.add_queries(response.queries.iter().cloned());
    if let Some(edns) = &response.edns {
        t.set_edns(edns.clone());
    }
    t
}

fn udp_limit(request: &Message) -> usize {
    match &request.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(PLAIN_UDP_LIMIT as u16, EDNS_UDP_LIMIT)),
        None => PLAIN_UDP_LIMIT,
    }
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            log::warn!("encoding a DNS response: {e}");
            None
        }
    }
}

/// Serves DNS on the UDP socket and the TCP listener until one of them
/// fails for good.
pub async fn serve_dns(udp: UdpSocket, tcp: TcpListener, filter: Arc<DnsFilter>) -> io::Result<()> {
    tokio::try_join!(serve_udp(Arc::new(udp), filter.clone()), serve_tcp(tcp, filter))?;
    Ok(())
}

async fn serve_udp(socket: Arc<UdpSocket>, filter: Arc<DnsFilter>) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                log::warn!("receiving a DNS datagram: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Debug only: the container controls this rate.
            log::debug!("too many DNS queries in flight; dropping one from {peer}");
            continue;
        };
        let query = buf[..n].to_vec();
        let (socket, filter) = (socket.clone(), filter.clone());
        tokio::spawn(async move {
            if let Some(answer) = filter.answer_udp(&query).await {
                if let Err(e) = socket.send_to(&answer, peer).await {
                    log::debug!("sending a DNS answer to {peer}: {e}");
                }
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, filter: Arc<DnsFilter>) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                log::warn!("accepting a DNS TCP connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            log::debug!("too many DNS TCP connections; closing one from {peer}");
            continue;
        };
        let filter = filter.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_tcp_connection(stream, &filter).await {
                log::debug!("DNS TCP connection from {peer}: {e}");
            }
            drop(permit);
        });
    }
}

/// Answers length-prefixed queries (RFC 1035 4.2.2) in order until the
/// client closes, goes idle, takes no answer or sends a zero length.
async fn serve_tcp_connection(mut stream: TcpStream, filter: &DnsFilter) -> io::Result<()> {
    let peer: Option<SocketAddr> = stream.peer_addr().ok();
    let timeout = filter.tcp_timeout;
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(timeout, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 {
            return Ok(());
        }
        let mut query = vec![0u8; len];
        match tokio::time::timeout(timeout, stream.read_exact(&mut query)).await {
            Ok(read) => read.map(|_| ())?,
            Err(_) => return Ok(()),
        }
        let Some(answer) = filter.answer(&query).await else {
            log::debug!("dropping an unreadable DNS query over TCP from {peer:?}");
            continue;
        };
        let Ok(answer_len) = u16::try_from(answer.len()) else { continue };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&answer_len.to_be_bytes());
        framed.extend_from_slice(&answer);
        match tokio::time::timeout(timeout, stream.write_all(&framed)).await {
            Ok(written) => written?,
            Err(_) => {
                log::debug!("DNS client over TCP {peer:?} took no answer for {timeout:?}; closing");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_from_labels(labels: &[&[u8]]) -> Name {
        Name::from_labels(labels.iter().copied()).unwrap()
    }

    #[test]
    fn hosts_are_lowercased_without_the_root_and_odd_labels_are_refused() {
        assert_eq!(host_of(&Name::from_ascii("API.Example.COM.").unwrap()).as_deref(), Some("api.example.com"));
        assert_eq!(host_of(&Name::from_ascii("api.example.com").unwrap()).as_deref(), Some("api.example.com"));
        assert_eq!(host_of(&Name::root()), None);
        assert_eq!(host_of(&name_from_labels(&[b"api.example", b"com"])), None);
        assert_eq!(host_of(&name_from_labels(&[b"a b", b"com"])), None);
        assert_eq!(host_of(&name_from_labels(&[b"a\0", b"com"])), None);
        assert_eq!(host_of(&name_from_labels(&[b"_dmarc", b"example", b"com"])), None);
        assert_eq!(host_of(&name_from_labels(&[b"127", b"1"])), None, "legacy IPv4 forms are not names");
    }

    #[test]
    fn udp_limit_follows_edns_within_bounds() {
        let mut m = Message::query();
        assert_eq!(udp_limit(&m), 512);
        let mut e = Edns::new();
        e.set_max_payload(100);
        m.set_edns(e.clone());
        assert_eq!(udp_limit(&m), 512);
        e.set_max_payload(65_000);
        m.set_edns(e);
        assert_eq!(udp_limit(&m), usize::from(EDNS_UDP_LIMIT));
    }

    #[test]
    fn truncation_keeps_id_question_and_sets_tc() {
        let mut req = Message::new(77, MessageType::Query, OpCode::Query);
        req.add_query(Query::query(Name::from_ascii("a.example.com").unwrap(), RecordType::A));
        let mut full = base_response(&req);
        full.add_answer(a_record(&req.queries[0].name, 30, Ipv4Addr::new(192, 0, 2, 1)));
        let t = truncated(&full);
        assert!(t.metadata.truncation);
        assert_eq!(t.metadata.id, 77);
        assert_eq!(t.metadata.message_type, MessageType::Response);
        assert_eq!(t.queries, req.queries);
        assert!(t.answers.is_empty());
    }

    #[test]
    fn error_response_without_a_parsed_request_echoes_the_header() {
        let header = Header::read(&mut BinDecoder::new(&[0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])).unwrap();
        let m = error_response(&header, None, ResponseCode::FormErr);
        assert_eq!((m.metadata.id, m.metadata.response_code), (0xbeef, ResponseCode::FormErr));
        assert!(m.metadata.recursion_desired);
        assert!(m.queries.is_empty());
    }
}
