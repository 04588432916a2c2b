//! The DNS filter end to end: policy decisions, the sinkhole, the proof that
//! denied names never reach an upstream server, truncation, TCP framing,
//! garbage input and audit records.
//!
//! The upstream server is a counting fake bound on a loopback address at
//! port 53 (the resolver only talks to port 53), so these tests need root
//! and FAIL, not skip, without it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boundary_contract::AuditRecord;
use boundary_policy::Policy;
use boundary_proxy::audit::AuditLog;
use boundary_proxy::dns::{serve_dns, DnsFilter, DENY_REASON, NO_UPSTREAM_REASON};
use boundary_proxy::resolve::Resolver;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const SINKHOLE: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PINNED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// A fake upstream name server on `<addr>:53` that counts every UDP query
/// and TCP connection and answers A queries from a table.
struct Upstream {
    addr: Ipv4Addr,
    queries: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(table: &[(&str, Vec<Ipv4Addr>)]) -> Upstream {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let pid = std::process::id();
        let addr = Ipv4Addr::new(127, 100 + (n % 100) as u8, (pid >> 8) as u8, (pid % 250) as u8 + 1);
        let udp = UdpSocket::bind((addr, 53)).await.unwrap_or_else(|e| {
            panic!("binding the fake upstream DNS server on {addr}:53 failed ({e}); these tests need root")
        });
        let tcp = TcpListener::bind((addr, 53)).await.expect("binding TCP port 53 for the fake upstream");
        let queries = Arc::new(AtomicUsize::new(0));
        let table: BTreeMap<String, Vec<Ipv4Addr>> = table.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let (count, count_tcp) = (queries.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(answer) = upstream_answer(&buf[..n], &table) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok((_conn, _)) = tcp.accept().await {
                count_tcp.fetch_add(1, Ordering::SeqCst);
            }
        });
        Upstream { addr, queries }
    }

    fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn upstream_answer(query: &[u8], table: &BTreeMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?;
    let mut resp = Message::response(req.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = true;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    match table.get(&name) {
        Some(addrs) if q.query_type() == RecordType::A => {
            for ip in addrs {
                resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(rdata::A(*ip))));
            }
        }
        Some(_) => {}
        None => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    resp.to_vec().ok()
}

struct Setup {
    filter: Arc<DnsFilter>,
    upstream: Upstream,
    audit: AuditLog,
    audit_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new(rules: &[&str], narrowing: &[&str], upstream_enabled: bool, table: &[(&str, Vec<Ipv4Addr>)]) -> Setup {
        Setup::with(rules, narrowing, upstream_enabled, table, false).await
    }

    /// `refuse_private`: `refuse_private_destinations` in the sidecar's config.
    async fn with(rules: &[&str], narrowing: &[&str], upstream_enabled: bool, table: &[(&str, Vec<Ipv4Addr>)], refuse_private: bool) -> Setup {
        let upstream = Upstream::start(table).await;
        let pins = BTreeMap::from([("api.example.com".to_string(), IpAddr::V4(PINNED))]);
        let resolver = Resolver::new(pins, Some(vec![IpAddr::V4(upstream.addr)]), false, vec![IpAddr::V4(SINKHOLE)])
            .expect("building the resolver")
            .refusing_private(refuse_private);
        let dir = tempfile::tempdir().unwrap();
        let audit_path = dir.path().join("audit.jsonl");
        let file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&audit_path).unwrap();
        let audit = AuditLog::open(file, "c1").unwrap();
        let policy = Arc::new(Policy::from_texts(rules.iter().copied()).unwrap());
        let narrowing = (!narrowing.is_empty()).then(|| Arc::new(Policy::from_texts(narrowing.iter().copied()).unwrap()));
        let filter = DnsFilter::new(policy, narrowing, Arc::new(resolver), audit.clone(), SINKHOLE, upstream_enabled);
        Setup { filter: Arc::new(filter), upstream, audit, audit_path, _dir: dir }
    }

    async fn ask(&self, name: &str, qtype: RecordType) -> Message {
        let bytes = self.filter.answer_udp(&query(0x4242, name, qtype, false)).await.expect("an answer");
        Message::from_vec(&bytes).expect("a parseable answer")
    }

    /// The same filter with a shorter DNS-over-TCP timeout.
    fn tcp_timeout(mut self, timeout: Duration) -> Setup {
        self.filter = Arc::new(Arc::try_unwrap(self.filter).unwrap().with_tcp_timeout(timeout));
        self
    }

    fn records(&self) -> Vec<AuditRecord> {
        self.audit.flush();
        std::fs::read_to_string(&self.audit_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn query(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn a_answers(m: &Message) -> Vec<(Ipv4Addr, u32)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((a.0, r.ttl)),
            _ => None,
        })
        .collect()
}

/// Gives any stray resolver traffic time to arrive before counting.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn allowed_name_gets_the_pinned_address() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[]).await;
    let m = s.ask("api.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(a_answers(&m), vec![(PINNED, 30)]);
    // Case and the trailing dot do not matter; the answer echoes the case asked.
    let m = s.ask("API.Example.COM", RecordType::A).await;
    assert_eq!(a_answers(&m), vec![(PINNED, 30)]);
    assert_eq!(m.answers[0].name.to_ascii().trim_end_matches('.'), "API.Example.COM");
    settle().await;
    assert_eq!(s.upstream.count(), 0, "pinned names never go upstream");
}

#[tokio::test]
async fn denied_name_gets_the_sinkhole_and_is_never_resolved() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[("evil.example.org", vec![Ipv4Addr::new(198, 51, 100, 66)])])
        .await;
    for name in ["evil.example.org", "example.com", "www.api.example.com", "EVIL.example.org."] {
        let m = s.ask(name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(a_answers(&m), vec![(SINKHOLE, 5)], "{name}");
        for qtype in [RecordType::AAAA, RecordType::TXT, RecordType::MX, RecordType::ANY] {
            let m = s.ask(name, qtype).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name} {qtype}");
            assert!(m.answers.is_empty(), "{name} {qtype}");
        }
    }
    settle().await;
    assert_eq!(s.upstream.count(), 0, "a denied name reached the upstream server");
}

#[tokio::test]
async fn the_counting_upstream_does_see_allowed_unpinned_names() {
    // Positive control for the zero counts elsewhere: an allowed name that
    // is not pinned is looked up, and the upstream's address comes back.
    let real = Ipv4Addr::new(198, 51, 100, 9);
    let s = Setup::new(&["domain=up.example.com"], &[], true, &[("up.example.com", vec![real])]).await;
    let m = s.ask("up.example.com", RecordType::A).await;
    assert_eq!(a_answers(&m), vec![(real, 30)]);
    assert!(s.upstream.count() >= 1);
}

#[tokio::test]
async fn tunnelling_through_a_subdomain_of_an_exact_rule_is_sinkholed() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[]).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20 {
        let mut labels = Vec::new();
        for _ in 0..3 {
            let label: String = (0..60)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(seed % 36) as usize])
                })
                .collect();
            labels.push(label);
        }
        let name = format!("{}.api.example.com", labels.join("."));
        let m = s.ask(&name, RecordType::A).await;
        assert_eq!(a_answers(&m), vec![(SINKHOLE, 5)]);
        let m = s.ask(&name, RecordType::TXT).await;
        assert!(m.answers.is_empty());
    }
    settle().await;
    assert_eq!(s.upstream.count(), 0, "an encoded subdomain reached the upstream server");
}

#[tokio::test]
async fn aaaa_and_other_types_of_allowed_names_are_empty_and_not_resolved() {
    let s = Setup::new(&["domain=up.example.com"], &[], true, &[("up.example.com", vec![Ipv4Addr::new(198, 51, 100, 9)])])
        .await;
    for qtype in [RecordType::AAAA, RecordType::TXT, RecordType::MX, RecordType::SRV, RecordType::HTTPS] {
        let m = s.ask("up.example.com", qtype).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.answers.is_empty(), "{qtype}");
    }
    settle().await;
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn rebinding_to_loopback_is_servfail() {
    let s = Setup::new(&["domain=rebind.example.com"], &[], true, &[("rebind.example.com", vec![Ipv4Addr::LOCALHOST])])
        .await;
    let m = s.ask("rebind.example.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.answers.is_empty());
    let rec = s.records().pop().unwrap();
    assert_eq!(rec.host.as_deref(), Some("rebind.example.com"));
    assert!(rec.reason.unwrap().contains("loopback"));
}

#[tokio::test]
async fn rebinding_to_a_private_address_is_servfail_once_private_destinations_are_refused() {
    let private = Ipv4Addr::new(10, 0, 0, 5);
    let table = [("rebind.example.com", vec![private])];
    let open = Setup::new(&["domain=rebind.example.com"], &[], true, &table).await;
    let m = open.ask("rebind.example.com", RecordType::A).await;
    assert_eq!(a_answers(&m).into_iter().map(|(ip, _)| ip).collect::<Vec<_>>(), vec![private], "reachable by default");

    let strict = Setup::with(&["domain=rebind.example.com"], &[], true, &table, true).await;
    let m = strict.ask("rebind.example.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.answers.is_empty());
    let rec = strict.records().pop().unwrap();
    assert_eq!(rec.host.as_deref(), Some("rebind.example.com"));
    let reason = rec.reason.unwrap();
    assert!(reason.contains("10.0.0.5") && reason.contains("refuse_private_destinations"), "{reason}");
    // A pinned name is the operator's own word and still resolves.
    let strict = Setup::with(&["domain=api.example.com"], &[], true, &[], true).await;
    assert_eq!(a_answers(&strict.ask("api.example.com", RecordType::A).await), vec![(PINNED, 30)]);
}

#[tokio::test]
async fn unknown_upstream_name_is_servfail() {
    let s = Setup::new(&["domain=*.example.com"], &[], true, &[]).await;
    let m = s.ask("missing.example.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn no_upstream_means_sinkhole_even_for_allowed_names() {
    let s = Setup::new(&["domain=up.example.com"], &[], false, &[("up.example.com", vec![Ipv4Addr::new(198, 51, 100, 9)])])
        .await;
    let m = s.ask("up.example.com", RecordType::A).await;
    assert_eq!(a_answers(&m), vec![(SINKHOLE, 5)]);
    settle().await;
    assert_eq!(s.upstream.count(), 0);
    let rec = s.records().pop().unwrap();
    assert_eq!(rec.decision, "deny");
    assert_eq!(rec.reason.as_deref(), Some(NO_UPSTREAM_REASON));
}

#[tokio::test]
async fn narrowing_rules_narrow() {
    let s = Setup::new(&["domain=*.example.com"], &["domain=api.example.com"], true, &[]).await;
    assert_eq!(a_answers(&s.ask("api.example.com", RecordType::A).await), vec![(PINNED, 30)]);
    assert_eq!(a_answers(&s.ask("other.example.com", RecordType::A).await), vec![(SINKHOLE, 5)]);
    settle().await;
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn every_lookup_is_audited() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[]).await;
    s.ask("api.example.com", RecordType::A).await;
    s.ask("Denied.Example.ORG.", RecordType::AAAA).await;
    let recs = s.records();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].seq, recs[1].seq), (1, 2));
    let (allow, deny) = (&recs[0], &recs[1]);
    assert_eq!(allow.kind, "dns");
    assert_eq!(allow.decision, "allow");
    assert_eq!(allow.host.as_deref(), Some("api.example.com"));
    assert_eq!(allow.method.as_deref(), Some("A"));
    assert_eq!(allow.reason, None);
    assert_eq!(deny.kind, "dns");
    assert_eq!(deny.decision, "deny");
    assert_eq!(deny.host.as_deref(), Some("denied.example.org"));
    assert_eq!(deny.method.as_deref(), Some("AAAA"));
    assert_eq!(deny.reason.as_deref(), Some(DENY_REASON));
    assert!(recs.iter().all(|r| r.container_id == "c1"));
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let many: Vec<Ipv4Addr> = (1..=60).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
    let s = Setup::new(&["domain=big.example.com"], &[], true, &[("big.example.com", many.clone())]).await;
    let q = query(7, "big.example.com", RecordType::A, false);
    let udp = Message::from_vec(&s.filter.answer_udp(&q).await.unwrap()).unwrap();
    assert!(udp.metadata.truncation);
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries.len(), 1);
    let tcp = Message::from_vec(&s.filter.answer(&q).await.unwrap()).unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(a_answers(&tcp).len(), 60);
    // With EDNS the client takes up to 1232 bytes: 60 records fit.
    let q = query(8, "big.example.com", RecordType::A, true);
    let bytes = s.filter.answer_udp(&q).await.unwrap();
    assert!(bytes.len() > 512 && bytes.len() <= 1232);
    let edns = Message::from_vec(&bytes).unwrap();
    assert!(!edns.metadata.truncation);
    assert_eq!(a_answers(&edns).len(), 60);
    assert!(edns.edns.is_some());
}

#[tokio::test]
async fn malformed_queries_get_formerr_or_silence_and_never_panic() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[]).await;
    let f = &s.filter;
    // Shorter than a header: dropped.
    for len in 0..12 {
        assert!(f.answer(&vec![0xab; len]).await.is_none());
    }
    // A header promising a question that is not there: FORMERR, id echoed.
    let header_only = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let m = Message::from_vec(&f.answer(&header_only).await.unwrap()).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (0x1234, ResponseCode::FormErr));
    // Two questions: FORMERR, and nothing resolved.
    let mut two = Message::new(9, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(Name::from_ascii("api.example.com").unwrap(), RecordType::A));
    two.add_query(Query::query(Name::from_ascii("evil.example.org").unwrap(), RecordType::A));
    let m = Message::from_vec(&f.answer(&two.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.answers.is_empty());
    // Zero questions: FORMERR.
    let none = Message::new(10, MessageType::Query, OpCode::Query).to_vec().unwrap();
    assert_eq!(Message::from_vec(&f.answer(&none).await.unwrap()).unwrap().metadata.response_code, ResponseCode::FormErr);
    // A response is never answered (no reflection loops).
    let mut resp = query(11, "api.example.com", RecordType::A, false);
    resp[2] |= 0x80;
    assert!(f.answer(&resp).await.is_none());
    // Another opcode: NOTIMP.
    let mut status = query(12, "api.example.com", RecordType::A, false);
    status[2] |= 2 << 3;
    assert_eq!(Message::from_vec(&f.answer(&status).await.unwrap()).unwrap().metadata.response_code, ResponseCode::NotImp);
    // Every truncation of a valid query, and pseudo-random garbage.
    let good = query(13, "api.example.com", RecordType::A, true);
    for cut in 12..good.len() {
        if let Some(bytes) = f.answer(&good[..cut]).await {
            assert_eq!(Message::from_vec(&bytes).unwrap().metadata.response_code, ResponseCode::FormErr, "cut at {cut}");
        }
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in [12usize, 13, 17, 30, 64, 200, 512, 1500, 4096] {
        for _ in 0..50 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = f.answer(&bytes).await;
            let _ = f.answer_udp(&bytes).await;
        }
    }
    settle().await;
    // Garbage may decode as a query for some name, but none is allowed.
    assert_eq!(s.upstream.count(), 0);
}

/// A message with another opcode than QUERY (STATUS, NOTIFY, UPDATE, an
/// unassigned one) is answered NOTIMP, never resolved, and audited as a
/// refusal naming the opcode.
#[tokio::test]
async fn other_opcodes_get_notimp_and_are_audited() {
    let s = Setup::new(&["domain=api.example.com", "domain=zone.example.com"], &[], true, &[]).await;
    let ops = [
        (OpCode::Status, "DNS opcode STATUS (2) is not implemented"),
        (OpCode::Notify, "DNS opcode NOTIFY (4) is not implemented"),
        (OpCode::Update, "DNS opcode UPDATE (5) is not implemented"),
        (OpCode::Unknown(3), "DNS opcode 3 is not implemented"),
    ];
    for (i, (op, _)) in ops.iter().enumerate() {
        let id = 50 + i as u16;
        let mut m = Message::new(id, MessageType::Query, *op);
        m.add_query(Query::query(Name::from_ascii("zone.example.com.").unwrap(), RecordType::SOA));
        let bytes = m.to_vec().unwrap();
        for answer in [s.filter.answer(&bytes).await, s.filter.answer_udp(&bytes).await] {
            let a = Message::from_vec(&answer.expect("an answer")).unwrap();
            assert_eq!((a.metadata.id, a.metadata.op_code, a.metadata.response_code), (id, *op, ResponseCode::NotImp));
            assert!(a.answers.is_empty());
        }
    }
    let recs = s.records();
    assert_eq!(recs.len(), 2 * ops.len(), "{recs:#?}");
    for (rec, (_, reason)) in recs.iter().zip(ops.iter().flat_map(|o| [o, o])) {
        assert_eq!((rec.kind.as_str(), rec.decision.as_str(), rec.reason.as_deref()), ("dns", "deny", Some(*reason)), "{rec:?}");
        assert_eq!((rec.host.as_deref(), rec.method.as_deref()), (Some("zone.example.com"), Some("SOA")), "{rec:?}");
    }
    settle().await;
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn a_label_holding_a_dot_cannot_pose_as_an_allowed_name() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[]).await;
    // Wire name with labels "api.example" and "com": printed, it reads
    // "api\.example.com"; joined naively it would read "api.example.com".
    let mut q = query(14, "x.com", RecordType::A, false);
    let name_at = 12;
    let end = q.len() - 4;
    let mut wire = vec![11u8];
    wire.extend_from_slice(b"api.example");
    wire.push(3);
    wire.extend_from_slice(b"com");
    wire.push(0);
    q.splice(name_at..end, wire);
    let m = Message::from_vec(&s.filter.answer(&q).await.unwrap()).unwrap();
    assert_eq!(a_answers(&m), vec![(SINKHOLE, 5)]);
}

#[tokio::test]
async fn serve_dns_answers_over_udp_and_framed_tcp() {
    let s = Setup::new(&["domain=api.example.com"], &[], true, &[]).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr): (SocketAddr, SocketAddr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let server = tokio::spawn(serve_dns(udp, tcp, s.filter.clone()));

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&query(21, "evil.example.org", RecordType::A, false), udp_addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf)).await.unwrap().unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!((m.metadata.id, a_answers(&m)), (21, vec![(SINKHOLE, 5)]));

    // Two pipelined queries on one connection, written in odd pieces.
    let mut conn = TcpStream::connect(tcp_addr).await.unwrap();
    let mut out = Vec::new();
    for (id, name) in [(31u16, "api.example.com"), (32, "evil.example.org")] {
        let q = query(id, name, RecordType::A, false);
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(&q);
    }
    for chunk in out.chunks(7) {
        conn.write_all(chunk).await.unwrap();
        conn.flush().await.unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut len)).await.unwrap().unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).await.unwrap();
        answers.push(Message::from_vec(&body).unwrap());
    }
    assert_eq!((answers[0].metadata.id, a_answers(&answers[0])), (31, vec![(PINNED, 30)]));
    assert_eq!((answers[1].metadata.id, a_answers(&answers[1])), (32, vec![(SINKHOLE, 5)]));
    // A zero length ends the conversation.
    conn.write_all(&[0, 0]).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(n, 0);
    assert!(!server.is_finished());
    server.abort();
}

/// A client that pipelines queries over TCP and never reads the answers
/// is disconnected once it has taken no answer for the TCP timeout (its
/// answers would otherwise fill buffers and hold one of the 64 DNS-over-
/// TCP connections for ever), and the filter serves a client that reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_that_never_reads_its_answers_is_disconnected() {
    // About 1 KiB per answer: the socket buffers fill after a few thousand.
    let many: Vec<Ipv4Addr> = (1..=60).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
    let rules = ["domain=big.example.com", "domain=api.example.com"];
    let s = Setup::new(&rules, &[], true, &[("big.example.com", many)]).await.tcp_timeout(Duration::from_secs(1));
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let server = tokio::spawn(serve_dns(udp, tcp, s.filter.clone()));

    let q = query(41, "big.example.com", RecordType::A, false);
    let batch: Vec<u8> = (0..100).flat_map(|_| (q.len() as u16).to_be_bytes().into_iter().chain(q.iter().copied())).collect();
    let mut hog = TcpStream::connect(tcp_addr).await.unwrap();
    let flood = tokio::spawn(async move {
        let mut sent = 0;
        while hog.write_all(&batch).await.is_ok() {
            sent += 100;
        }
        sent
    });
    let sent = tokio::time::timeout(Duration::from_secs(30), flood).await.expect("a client that never reads is disconnected").unwrap();
    let answered = s.records().len();
    assert!(answered > 0 && answered < sent, "{answered} of {sent} queries answered");

    let mut conn = TcpStream::connect(tcp_addr).await.unwrap();
    let q = query(42, "api.example.com", RecordType::A, false);
    conn.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    conn.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut len)).await.expect("served after the hog").unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).await.unwrap();
    let m = Message::from_vec(&body).unwrap();
    assert_eq!((m.metadata.id, a_answers(&m)), (42, vec![(PINNED, 30)]));
    server.abort();
}
