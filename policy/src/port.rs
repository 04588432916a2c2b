//! `port=` values, boundary-runc's own extension to the rule language.

use std::fmt;

/// A parsed `port=` value: a sorted, deduplicated set of ports, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Ports {
    Any,
    List(Vec<u16>),
}

impl Ports {
    /// Build from list items already split on `,`; `Err` carries the index
    /// of the bad item. Ports are decimal 1-65535 without sign or leading
    /// zeros.
    pub(crate) fn from_items(items: &[&str]) -> Result<Ports, usize> {
        let mut list = Vec::with_capacity(items.len());
        let mut any = false;
        for (i, item) in items.iter().enumerate() {
            if *item == "*" {
                any = true;
                continue;
            }
            let canonical = item.bytes().all(|b| b.is_ascii_digit()) && !item.starts_with('0');
            match item.parse::<u16>() {
                Ok(port) if canonical => list.push(port),
                _ => return Err(i),
            }
        }
        if any {
            return Ok(Ports::Any);
        }
        list.sort_unstable();
        list.dedup();
        Ok(Ports::List(list))
    }

    /// A request whose port is unknown matches only `*`.
    pub(crate) fn matches(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (Ports::Any, _) => true,
            (Ports::List(list), Some(port)) => list.binary_search(&port).is_ok(),
            (Ports::List(_), None) => false,
        }
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ports::Any => f.write_str("*"),
            Ports::List(list) => {
                for (i, port) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{port}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = Ports::from_items(&["8443", "443", "443"]).unwrap();
        assert_eq!(p.to_string(), "443,8443");
        assert!(p.matches(Some(443)) && p.matches(Some(8443)));
        assert!(!p.matches(Some(80)) && !p.matches(None));
        assert!(Ports::from_items(&["*"]).unwrap().matches(None));
        for bad in ["0", "65536", "0443", "+443", "-1", "44a", ""] {
            assert_eq!(Ports::from_items(&[bad]), Err(0), "{bad}");
        }
    }
}
