//! A small, panic-free TLS ClientHello parser that finds the SNI host name.
//!
//! It reads only the bytes the client has sent so far: when they end before
//! the ClientHello does it says [`SniError::Incomplete`] and the caller reads
//! more (up to [`MAX_CLIENT_HELLO`]). The ClientHello may span several TLS
//! records; their handshake fragments are joined.

/// Largest ClientHello (all records together) the parser accepts.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// Why no SNI could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("ClientHello incomplete; read more bytes")]
    Incomplete,
    #[error("not a TLS handshake record")]
    NotTls,
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

/// Whether `buf` starts like a TLS handshake record (needs 3 bytes).
pub fn looks_like_tls(buf: &[u8]) -> bool {
    buf.len() >= 3 && buf[0] == CONTENT_HANDSHAKE && buf[1] == 3 && buf[2] <= 4
}

/// The server name from the ClientHello at the start of `buf`, `None` when
/// the ClientHello carries no host name.
pub fn parse_client_hello_sni(buf: &[u8]) -> Result<Option<String>, SniError> {
    let hello = handshake_message(buf)?;
    parse_hello_body(&hello)
}

/// Joins the handshake fragments of consecutive records until the whole
/// ClientHello message (4-byte header + body) is present; returns the body.
fn handshake_message(buf: &[u8]) -> Result<Vec<u8>, SniError> {
    let mut msg: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        if let Some(total) = wanted_len(&msg)? {
            if msg.len() >= total {
                msg.truncate(total);
                return Ok(msg.split_off(4));
            }
        }
        if rest.len() < 5 {
            return Err(incomplete_or_bad(rest));
        }
        if rest[0] != CONTENT_HANDSHAKE || rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Err(SniError::Malformed("empty handshake record"));
        }
        if msg.len() + len > MAX_CLIENT_HELLO + 4 {
            return Err(SniError::TooLarge);
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return Err(SniError::Incomplete);
        };
        msg.extend_from_slice(fragment);
        rest = &rest[5 + len..];
    }
}

fn incomplete_or_bad(rest: &[u8]) -> SniError {
    match rest.first() {
        Some(&b) if b != CONTENT_HANDSHAKE => SniError::NotTls,
        Some(_) if rest.len() >= 2 && rest[1] != 3 => SniError::NotTls,
        _ => SniError::Incomplete,
    }
}

/// Total message length once the 4-byte handshake header is present.
fn wanted_len(msg: &[u8]) -> Result<Option<usize>, SniError> {
    if msg.len() < 4 {
        return Ok(None);
    }
    if msg[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(SniError::Malformed("first handshake message is not a ClientHello"));
    }
    let len = (usize::from(msg[1]) << 16) | (usize::from(msg[2]) << 8) | usize::from(msg[3]);
    if len > MAX_CLIENT_HELLO {
        return Err(SniError::TooLarge);
    }
    Ok(Some(len + 4))
}

/// A bounds-checked cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, SniError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, SniError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], SniError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], SniError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

fn parse_hello_body(body: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader(body);
    r.take(2, "client version")?;
    r.take(32, "random")?;
    r.vec8("session id")?;
    r.vec16("cipher suites")?;
    r.vec8("compression methods")?;
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Reader(r.vec16("extensions")?);
    while !exts.0.is_empty() {
        let ty = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        if ty == EXT_SERVER_NAME {
            return parse_server_name(data);
        }
    }
    Ok(None)
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("server name list")?);
    while !list.0.is_empty() {
        let ty = list.u8("server name type")?;
        let name = list.vec16("server name")?;
        if ty == NAME_TYPE_HOST {
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b)) {
                return Err(SniError::Malformed("server name is not a DNS name"));
            }
            // All bytes are ASCII, so this conversion cannot fail.
            return Ok(std::str::from_utf8(name).ok().map(str::to_owned));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rustls_hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let sn = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), sn).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn real_client_hello_yields_sni() {
        let hello = rustls_hello("api.example.com");
        assert!(looks_like_tls(&hello));
        assert_eq!(parse_client_hello_sni(&hello).unwrap().as_deref(), Some("api.example.com"));
    }

    #[test]
    fn ip_server_name_sends_no_sni() {
        let hello = rustls_hello("192.0.2.1");
        assert_eq!(parse_client_hello_sni(&hello).unwrap(), None);
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let hello = rustls_hello("origin.test");
        for n in 0..hello.len() {
            assert_eq!(parse_client_hello_sni(&hello[..n]), Err(SniError::Incomplete), "prefix {n}");
        }
    }

    #[test]
    fn split_across_records() {
        let hello = rustls_hello("split.example");
        let body = &hello[5..];
        let mut two = Vec::new();
        for part in [&body[..50], &body[50..]] {
            two.extend_from_slice(&[22, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(parse_client_hello_sni(&two).unwrap().as_deref(), Some("split.example"));
        assert_eq!(parse_client_hello_sni(&two[..60]), Err(SniError::Incomplete));
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert_eq!(parse_client_hello_sni(b"GET / HTTP/1.1\r\n"), Err(SniError::NotTls));
        assert_eq!(parse_client_hello_sni(&[22, 9, 9, 0, 1, 1]), Err(SniError::NotTls));
        assert!(matches!(parse_client_hello_sni(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Err(SniError::Malformed(_))));
        assert_eq!(parse_client_hello_sni(&[22, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff]), Err(SniError::TooLarge));
        let mut seed: u32 = 0x1234_5678;
        let hello = rustls_hello("fuzz.example");
        for _ in 0..20_000 {
            let mut b = hello.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (seed as usize >> 8) % b.len();
                b[i] = (seed >> 24) as u8;
            }
            let _ = parse_client_hello_sni(&b);
        }
    }
}
