//! `boundary_proxy::dns::DnsFilter::answer` / `answer_udp` on arbitrary bytes.
//!
//! The filter's resolver has pins only and an empty name-server list, so
//! nothing is ever sent on the network; the audit log goes to /dev/null.
//! Checks, beyond "never panics":
//! - every answer parses back as a DNS response with the query's id;
//! - a UDP answer fits the UDP limit (512 bytes, 1232 with EDNS);
//! - an `A` record carries the sinkhole unless the question's name is one
//!   the policy could allow (then it is that name's pin): a name outside the
//!   rules never gets a real address (DNS tunnelling, rebinding);
//! - nothing but `A` records is ever answered (no `AAAA`: no IPv6).
#![no_main]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use boundary_policy::Policy;
use boundary_proxy::audit::AuditLog;
use boundary_proxy::dns::DnsFilter;
use boundary_proxy::resolve::Resolver;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

const SINKHOLE: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const RULES: &str = "\
domain=pinned.test
domain=*.pinned.test
method=GET domain=api.*.example path=/v1/*
domain=169.254.169.254
domain=own.test";
const PINS: &[(&str, Ipv4Addr)] = &[
    ("pinned.test", Ipv4Addr::new(192, 0, 2, 10)),
    ("a.pinned.test", Ipv4Addr::new(192, 0, 2, 11)),
    ("api.eu.example", Ipv4Addr::new(192, 0, 2, 12)),
    ("own.test", SINKHOLE),
];

struct Fixture {
    runtime: Runtime,
    policy: Arc<Policy>,
    filter: DnsFilter,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let pins: BTreeMap<String, IpAddr> = PINS
            .iter()
            .map(|(n, ip)| ((*n).to_owned(), IpAddr::V4(*ip)))
            .collect();
        let resolver = {
            let _guard = runtime.enter();
            // No name servers: an allowed name without a pin fails to
            // resolve (SERVFAIL) without any packet being sent.
            Resolver::new(pins, Some(Vec::new()), false, vec![IpAddr::V4(SINKHOLE)])
                .expect("a resolver")
        };
        let devnull = OpenOptions::new()
            .read(true)
            .append(true)
            .open("/dev/null")
            .expect("/dev/null");
        let audit = AuditLog::open(devnull, "fuzz").expect("an audit log");
        let policy = Arc::new(Policy::from_texts([RULES]).expect("fixed rules parse"));
        let filter = DnsFilter::new(
            policy.clone(),
            None,
            Arc::new(resolver),
            audit,
            SINKHOLE,
            true,
        );
        Fixture {
            runtime,
            policy,
            filter,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let (tcp, udp) = fx.runtime.block_on(async {
        (
            fx.filter.answer(data).await,
            fx.filter.answer_udp(data).await,
        )
    });
    for (answer, limit) in [(tcp, usize::MAX), (udp, 0)] {
        let Some(bytes) = answer else { continue };
        let response =
            Message::from_vec(&bytes).unwrap_or_else(|e| panic!("answer does not parse: {e}"));
        check(fx, data, &bytes, &response, limit);
    }
});

fn check(fx: &Fixture, query: &[u8], bytes: &[u8], response: &Message, limit: usize) {
    assert_eq!(response.metadata.message_type, MessageType::Response);
    assert_eq!(
        &bytes[..2],
        &query[..2],
        "response id differs from the query's"
    );
    if limit == 0 {
        let udp_max = if response.edns.is_some() { 1232 } else { 512 };
        assert!(
            bytes.len() <= udp_max,
            "UDP answer of {} bytes",
            bytes.len()
        );
    }
    for record in response.all_sections() {
        match &record.data {
            RData::A(a) if a.0 == SINKHOLE => {}
            RData::A(a) => {
                let name = record.name.to_ascii();
                assert!(
                    fx.policy.could_allow_host(&name),
                    "{name} is not allowed but got {}",
                    a.0
                );
                let pinned = PINS.iter().any(|(_, ip)| *ip == a.0);
                assert!(
                    pinned,
                    "{name} got {} which is no pin: a lookup left the sidecar",
                    a.0
                );
            }
            RData::OPT(_) => {}
            other => panic!("unexpected record {other:?} in an answer"),
        }
    }
}
