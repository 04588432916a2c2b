//! What a new stream speaks, decided from its first bytes, and a stream
//! that replays those bytes.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::sni::{self, SniError};

/// Longest request line waited for before giving up on HTTP.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// What the first bytes of a stream are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS ClientHello, with its SNI (or why it has none).
    Tls(Result<Option<String>, SniError>),
    /// An HTTP/1.x request line.
    Http,
    /// Anything else.
    Other,
    /// The peer closed before sending anything.
    Closed,
}

/// Reads from `io` into `buf` until the first bytes are classified.
pub async fn sniff<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> io::Result<Sniffed> {
    loop {
        if let Some(decided) = classify(buf) {
            return Ok(decided);
        }
        buf.reserve(4096);
        if io.read_buf(buf).await? == 0 {
            return Ok(if buf.is_empty() { Sniffed::Closed } else { Sniffed::Other });
        }
    }
}

/// `None` while more bytes are needed.
pub fn classify(buf: &[u8]) -> Option<Sniffed> {
    let first = *buf.first()?;
    if first == 0x16 {
        if buf.len() < 3 {
            return None;
        }
        if !sni::looks_like_tls(buf) {
            return Some(Sniffed::Other);
        }
        return match sni::parse_client_hello_sni(buf) {
            Err(SniError::Incomplete) => None,
            res => Some(Sniffed::Tls(res)),
        };
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        let plausible = buf.len() < MAX_REQUEST_LINE && buf.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\r');
        return if plausible && method_prefix_ok(buf) { None } else { Some(Sniffed::Other) };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some(if is_request_line(line) { Sniffed::Http } else { Sniffed::Other })
}

/// Whether the bytes so far could begin `METHOD SP`.
fn method_prefix_ok(buf: &[u8]) -> bool {
    let token_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    token_len <= 20 && (token_len == buf.len() || (token_len > 0 && buf[token_len] == b' '))
}

/// `METHOD SP request-target SP HTTP/1.x`, all printable ASCII.
fn is_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    (1..=20).contains(&method.len())
        && method.iter().all(u8::is_ascii_uppercase)
        && !target.is_empty()
        && target.iter().all(|b| (0x21..0x7f).contains(b))
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /x HT"), None);
        assert_eq!(classify(b"GET /x HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(Sniffed::Other));
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.2\r\n"), Some(Sniffed::Other));
        assert_eq!(classify(b"get / HTTP/1.1\r\n"), Some(Sniffed::Other));
        assert_eq!(classify(b"\x00\x01binary"), Some(Sniffed::Other));
        assert_eq!(classify(&[0x16, 3]), None);
        assert_eq!(classify(&[0x16, 9, 9]), Some(Sniffed::Other));
        assert_eq!(classify(&[0x16, 3, 1, 0, 10, 1]), None);
    }
}
