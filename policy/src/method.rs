//! `method=` values: a set of HTTP method tokens, or `*`.

use std::fmt;

/// A parsed `method=` value. Tokens are stored uppercase, sorted and
/// deduplicated, so equal sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Methods {
    Any,
    List(Vec<String>),
}

/// RFC 9110 `tchar`, except `*`, which only stands alone as the wildcard.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b)
}

/// Whether `method` is a valid HTTP method token (no `*`).
pub(crate) fn is_method_token(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(is_tchar)
}

impl Methods {
    /// Build from list items already split on `,`; `Err` carries the index
    /// of the bad item.
    pub(crate) fn from_items(items: &[&str]) -> Result<Methods, usize> {
        let mut list = Vec::with_capacity(items.len());
        let mut any = false;
        for (i, item) in items.iter().enumerate() {
            if *item == "*" {
                any = true;
            } else if is_method_token(item) {
                list.push(item.to_ascii_uppercase());
            } else {
                return Err(i);
            }
        }
        if any {
            return Ok(Methods::Any);
        }
        list.sort();
        list.dedup();
        Ok(Methods::List(list))
    }

    /// HTTP methods are case-sensitive, but a server that takes `get` for
    /// anything is taking it for `GET`; the request method is therefore
    /// compared after uppercasing, like the rule's tokens.
    pub(crate) fn matches(&self, method: &str) -> bool {
        match self {
            Methods::Any => true,
            Methods::List(list) => list.iter().any(|m| m.eq_ignore_ascii_case(method)),
        }
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Methods::Any => f.write_str("*"),
            Methods::List(list) => f.write_str(&list.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let m = Methods::from_items(&["get", "HEAD", "GET"]).unwrap();
        assert_eq!(m.to_string(), "GET,HEAD");
        assert!(m.matches("GET") && m.matches("get") && m.matches("HEAD"));
        assert!(!m.matches("POST") && !m.matches("GETX") && !m.matches(""));
        assert_eq!(Methods::from_items(&["GET", "*"]), Ok(Methods::Any));
        assert_eq!(Methods::from_items(&["GET", "G*T"]), Err(1));
        assert_eq!(Methods::from_items(&["GE T"]), Err(0));
        assert_eq!(Methods::from_items(&["GET/1"]), Err(0));
    }
}
