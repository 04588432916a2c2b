//! `boundary_proxy::sni::parse_client_hello_sni` on arbitrary bytes.
//!
//! Checks, beyond "never panics": a name it returns is a non-empty DNS-ish
//! name (letters, digits, `-._`); a successful parse is unchanged by bytes
//! appended after it; and every proper prefix of a successfully parsed input
//! is `Incomplete` (the sniffer then reads more instead of closing a client
//! whose ClientHello arrived in pieces).
#![no_main]

use boundary_proxy::sni::{parse_client_hello_sni, SniError};
use libfuzzer_sys::fuzz_target;

/// Inputs up to this size also get the quadratic prefix check.
const PREFIX_CHECK_MAX: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Ok(result) = parse_client_hello_sni(data) else {
        return;
    };
    if let Some(name) = &result {
        assert!(!name.is_empty());
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
            "{name:?}"
        );
    }
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[22, 3, 3, 0, 1, 0xff]);
    assert_eq!(
        parse_client_hello_sni(&longer),
        Ok(result.clone()),
        "trailing bytes changed the result"
    );
    if data.len() <= PREFIX_CHECK_MAX {
        // Until the prefix holds the whole ClientHello (and then parses to
        // the same result), the parser must ask for more bytes.
        for n in 0..data.len() {
            match parse_client_hello_sni(&data[..n]) {
                Ok(r) => {
                    assert_eq!(r, result, "prefix {n} parses to a different name");
                    break;
                }
                Err(e) => assert_eq!(e, SniError::Incomplete, "prefix {n} of {}", data.len()),
            }
        }
    }
});
