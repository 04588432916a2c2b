//! Reading what a probe run inside a container printed (busybox and curl
//! output formats).

/// Interface names from `ip -o link` (`2: eth0@if7: <...> ...` → `eth0`).
pub fn link_names(ip_o_link: &str) -> Vec<String> {
    ip_o_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The `CapEff` mask from `/proc/self/status`.
pub fn cap_eff(status: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff line in:\n{status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap_or_else(|e| panic!("bad CapEff {hex:?}: {e}"))
}

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_ADMIN: u32 = 21;

/// The addresses busybox `nslookup` printed as answers (the `Address:`
/// lines after a `Name:` line; the server's own address comes before).
pub fn nslookup_answers(out: &str) -> Vec<String> {
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in out.lines() {
        let line = line.trim();
        if line.starts_with("Name:") {
            in_answer = true;
        } else if in_answer && line.starts_with("Address") {
            // `Address: 1.2.3.4`, or `Address 1: 1.2.3.4 name` (older busybox)
            let rest = line.split_once(':').map(|(_, r)| r.trim()).unwrap_or_default();
            answers.extend(rest.split_whitespace().next().map(str::to_string));
        }
    }
    answers
}

/// Output of `curl -sS -D - -o - URL`: the last response's status, headers
/// (names lowercased) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn parse(out: &str) -> Option<HttpReply> {
        let (head, body) = out.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(HttpReply { status, headers, body: body.to_string() })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The `N packets transmitted, M packets received` counts of busybox ping.
pub fn ping_counts(out: &str) -> Option<(u32, u32)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().ok());
    Some((nums.next()??, nums.next()??))
}

/// A directory holding the `probe` binary (`src/bin/probe.rs`) and
/// `libgcc_s.so.1` (the shared rootfs has only what curl needs), to bind
/// into a container at `/tmp` (run it as [`PROBE`]).
pub fn probe_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("boundary-e2e-probe.").tempdir().expect("probe dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod probe dir");
    let bin = crate::binaries().runtime.parent().expect("target dir").join("probe");
    assert!(bin.is_file(), "{} missing: run `cargo build --workspace --bins` first", bin.display());
    std::fs::copy(&bin, dir.path().join("probe")).expect("copy probe");
    let ldd = std::process::Command::new(crate::require_tool("ldd")).arg(&bin).output().expect("ldd probe");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(path) = line.split("=>").nth(1).and_then(|r| r.split_whitespace().next()) {
            if path.contains("libgcc_s") {
                std::fs::copy(path, dir.path().join("libgcc_s.so.1")).expect("copy libgcc_s");
            }
        }
    }
    dir
}

/// Where [`probe_dir`]'s probe is inside a container that binds it at `/tmp`.
pub const PROBE: &str = "LD_LIBRARY_PATH=/tmp /tmp/probe";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_busybox_output() {
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n2: eth0@if12: <BROADCAST> mtu 1500\n";
        assert_eq!(link_names(links), ["lo", "eth0"]);
        assert_eq!(cap_eff("Name:\tsh\nCapEff:\t00000000a80435fb\n"), 0xa80435fb);
        let ns = "Server:\t\t10.213.1.1\nAddress:\t10.213.1.1:53\n\nName:\tx.example\nAddress: 10.213.1.1\n\n";
        assert_eq!(nslookup_answers(ns), ["10.213.1.1"]);
        let ping = "PING 1.2.3.4 (1.2.3.4): 56 data bytes\n\n--- 1.2.3.4 ping statistics ---\n1 packets transmitted, 0 packets received, 100% packet loss\n";
        assert_eq!(ping_counts(ping), Some((1, 0)));
        let r = HttpReply::parse("HTTP/1.1 403 Forbidden\r\nX-Boundary-Decision: deny\r\n\r\nno\n").unwrap();
        assert_eq!((r.status, r.header("x-boundary-decision"), r.body.as_str()), (403, Some("deny"), "no\n"));
    }
}
