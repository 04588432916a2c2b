//! Writes the binary seeds of the fuzz corpus: ClientHellos as rustls sends
//! them (one record, split over two records, without SNI) and DNS queries
//! as a stub resolver sends them. Text seeds (rules, requests, config.json)
//! are committed as they are.
//!
//! Usage: `boundary-fuzz-seedgen <corpus dir>`; it writes into
//! `<dir>/client_hello_sni/` and `<dir>/dns_filter/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::{env, fs, io};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

fn main() -> io::Result<()> {
    let dir = PathBuf::from(env::args_os().nth(1).unwrap_or_else(|| "corpus".into()));
    let tls = dir.join("client_hello_sni");
    fs::create_dir_all(&tls)?;
    let hello = rustls_hello("api.example.com", false);
    write(&tls, "rustls-tls13-api.example.com", &hello)?;
    write(
        &tls,
        "rustls-tls12-only-origin.test",
        &rustls_hello("origin.test", true),
    )?;
    write(
        &tls,
        "rustls-ip-literal-no-sni",
        &rustls_hello("192.0.2.1", false),
    )?;
    write(
        &tls,
        "rustls-split-over-two-records",
        &split_in_two(&hello, 50),
    )?;

    let dns = dir.join("dns_filter");
    fs::create_dir_all(&dns)?;
    let cases: &[(&str, &str, RecordType, bool)] = &[
        ("a-pinned", "pinned.test.", RecordType::A, false),
        (
            "a-wildcard-pinned-edns",
            "a.pinned.test.",
            RecordType::A,
            true,
        ),
        (
            "a-wildcard-unpinned",
            "x.y.pinned.test.",
            RecordType::A,
            false,
        ),
        (
            "a-inner-wildcard-pinned",
            "api.eu.example.",
            RecordType::A,
            false,
        ),
        ("a-denied", "exfil.attacker.example.", RecordType::A, false),
        ("aaaa-pinned", "pinned.test.", RecordType::AAAA, false),
        ("txt-tunnel", "aGVsbG8.pinned.test.", RecordType::TXT, true),
        (
            "a-metadata-literal",
            "169.254.169.254.",
            RecordType::A,
            false,
        ),
        ("a-own-address", "own.test.", RecordType::A, false),
    ];
    for (i, (file, name, qtype, edns)) in cases.iter().enumerate() {
        write(
            &dns,
            file,
            &dns_query(0x1000 + i as u16, name, *qtype, *edns),
        )?;
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::write(dir.join(name), bytes)
}

/// The first flight of a rustls client for `name` (no SNI for an IP).
fn rustls_hello(name: &str, tls12_only: bool) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .expect("protocol versions");
    let cfg = builder
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let sn = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), sn).expect("a client connection");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("writing to a Vec");
    out
}

/// The same handshake message carried in two TLS records.
fn split_in_two(hello: &[u8], at: usize) -> Vec<u8> {
    let body = &hello[5..];
    let mut out = Vec::new();
    for part in [&body[..at], &body[at..]] {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn dns_query(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("a DNS name"),
        qtype,
    ));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().expect("encoding a query")
}
