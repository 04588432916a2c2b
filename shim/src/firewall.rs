//! The host-side nftables table of one jail.
//!
//! Enforcement lives on the host side of the veth, where the container —
//! even holding CAP_NET_ADMIN in its own namespace — cannot reach. One table
//! per jail, `inet boundary_<host address in hex>`:
//!
//! ```text
//! chain raw_pre  { type filter hook prerouting priority raw - 10
//!     iifname H meta nfproto != ipv4 drop;  iifname H ip saddr != JAIL drop }
//! chain flows    { type filter hook prerouting priority mangle
//!     iifname H ct state new ct count over max_flows drop    }
//! chain nat_pre  { type nat hook prerouting priority dstnat - 10
//!     iifname H ip: udp dport 53 redirect to :dns_port      (all DNS, any resolver)
//!     iifname H ip: tcp dport 53 redirect to :dns_port
//!     iifname H ip: tcp          redirect to :proxy_port    (all TCP)   }
//! chain input    { type filter hook input priority filter - 10
//!     iifname H ip daddr HOST tcp dport proxy_port accept
//!     iifname H ip daddr HOST udp/tcp dport dns_port accept
//!     iifname H drop                                          }
//! chain forward  { type filter hook forward priority filter - 10
//!     iifname H drop;  oifname H drop                         }
//! ```
//! In Docker's shape and any engine's namespace given by path (a
//! Kubernetes pod's, podman's; `publish_to`: a host side that holds the
//! container's own address) the table also
//! has, in `nat_pre`, `iifname != H, != lo, ip daddr != HOST, fib daddr type
//! local` and the start of a flow (a TCP SYN, UDP not from port 53, another
//! protocol): `dnat to JAIL` (published ports and other containers reach
//! the container's server), in `input` a drop of packets for HOST from any
//! other interface, and in `forward`, before the drops, `iifname H ct
//! status dnat ct direction reply accept` and `oifname H ct status dnat ct
//! direction original accept`.
//!
//! In a host side given by path (`loopback_in`) it also has `chain nat_out
//! { type nat hook output }`: a TCP SYN to 127.0.0.1 from any uid but the
//! sidecar worker's, `dnat to JAIL` (port-forward dials localhost in the
//! pod's namespace); `chain nat_post { type nat hook postrouting }`:
//! `oifname H ip saddr 127.0.0.0/8 ct status dnat snat to HOST`; and in
//! `input`, before the drop, `iifname H ct status dnat ct direction reply
//! accept` (the jail's answers in those flows).
//!
//! A `drop` in any base chain is final whatever other tables accept, so the
//! host's own rules cannot open a path around the sidecar. IPv6, UDP other
//! than DNS, ICMP, SCTP and anything routed elsewhere are dropped. Without a
//! sidecar (`redirect = false`) every packet from the jail is dropped.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nftables::batch::Batch;
use std::collections::HashSet;

use nftables::expr::{BinaryOperation, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, CT};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{CTCount, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::netns;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("nftables: cannot {op} table {table}: {message}")]
    Nft { op: &'static str, table: String, message: String },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("the thread installing the nft table panicked")]
    Panicked,
}

#[derive(Debug, Clone)]
pub struct FirewallPlan {
    pub host_netns: Option<PathBuf>,
    pub table: String,
    pub host_if: String,
    pub host_addr: Ipv4Addr,
    /// The jail's own address: the only source a packet from the jail may
    /// carry.
    pub jail_addr: Ipv4Addr,
    /// Turn TCP and DNS towards the sidecar (false: drop everything).
    pub redirect: bool,
    pub proxy_port: u16,
    pub dns_port: u16,
    /// The most flows from the jail tracked at once (`ct count`).
    pub max_flows: u32,
    /// Docker's shape (a dedicated host side that dockerd configures) and a
    /// pod's (the pod namespace CNI made): connections to the container's
    /// address (published ports, other containers, kubelet's probes,
    /// Services) are passed on to this jail address.
    pub publish_to: Option<Ipv4Addr>,
    /// A pod's namespace: TCP connections that root opens to 127.0.0.1 in
    /// it go to the jail's address, same port, with the host end's address
    /// as their source: containerd's and CRI-O's port-forward (`kubectl
    /// port-forward`) dial `localhost` in the pod's namespace as root. The
    /// sidecar's worker (never uid 0) is not sent in. Needs `publish_to`
    /// and `route_localnet` on the host end (`link::LinkPlan::loopback_in`).
    pub loopback_in: bool,
    /// The namespace may hold a stale table of this name (a crashed
    /// container's): replace it. False for a namespace made by this
    /// `create`, which cannot hold one; see [`FirewallPlan::batch`].
    pub replace_stale: bool,
}

fn s(v: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(v.to_string()))
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op: Operator::EQ })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, f: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: Cow::Borrowed(protocol),
        field: Cow::Borrowed(f),
    })))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT { key: Cow::Borrowed(key), family: None, dir: None }))
}

fn redirect(port: u16) -> Statement<'static> {
    Statement::Redirect(Some(NAT { addr: None, family: None, port: Some(Expression::Number(port.into())), flags: None }))
}

impl FirewallPlan {
    fn chain(&self, name: &'static str, ty: NfChainType, hook: NfHook, prio: i32) -> NfListObject<'static> {
        NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: Cow::Owned(self.table.clone()),
            name: Cow::Borrowed(name),
            _type: Some(ty),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        })
    }

    fn rule(&self, chain: &'static str, expr: Vec<Statement<'static>>) -> NfListObject<'static> {
        NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: Cow::Owned(self.table.clone()),
            chain: Cow::Borrowed(chain),
            expr: Cow::Owned(expr),
            ..Rule::default()
        })
    }

    fn table_obj(&self) -> NfListObject<'static> {
        NfListObject::Table(Table { family: NfFamily::INet, name: Cow::Owned(self.table.clone()), handle: None })
    }

    /// The whole table as one nft batch, applied atomically. With
    /// `replace_stale` it starts with `add table; delete table`, the nft
    /// idiom that replaces a stale table of the same name in the same
    /// transaction. The idiom is not free: a transaction that deletes
    /// anything leaves work that waits for an RCU grace period, and the
    /// kernel makes the closing of nft's netlink socket wait for it
    /// (~15 ms of `nft`'s ~20 ms, measured). A fresh namespace skips it.
    pub fn batch(&self) -> Batch<'static> {
        let iif = || eq(meta(MetaKey::Iifname), s(&self.host_if));
        let ipv4 = || eq(meta(MetaKey::Nfproto), s("ipv4"));
        let mut b = Batch::new();
        if self.replace_stale {
            b.add(self.table_obj());
            b.delete(self.table_obj());
        }
        b.add(self.table_obj());
        // Before conntrack and NAT: from the jail only IPv4 from its own
        // address. A spoofed source would have the host side's answers (the
        // DNS filter's, the proxy's SYN-ACK, an ICMP error from forwarding)
        // routed to that address, out of an engine's namespace.
        b.add(self.chain("raw_pre", NfChainType::Filter, NfHook::Prerouting, -310));
        b.add(self.rule("raw_pre", vec![iif(), Statement::Match(Match { left: meta(MetaKey::Nfproto), right: s("ipv4"), op: Operator::NEQ }), Statement::Drop(None)]));
        b.add(self.rule("raw_pre", vec![iif(), Statement::Match(Match { left: field("ip", "saddr"), right: s(&self.jail_addr.to_string()), op: Operator::NEQ }), Statement::Drop(None)]));
        // After conntrack, before NAT: a cap on the jail's tracked flows.
        // Without it a jail could fill the host side's connection table
        // (half-open connections to the proxy port, DNS from fresh source
        // ports): everything else there, the sidecar's own flows included,
        // would then be refused or evicted. Closed connections do not count.
        b.add(self.chain("flows", NfChainType::Filter, NfHook::Prerouting, -150));
        b.add(self.rule("flows", vec![
            iif(),
            Statement::Match(Match { left: ct("state"), right: s("new"), op: Operator::IN }),
            Statement::CTCount(CTCount { val: Expression::Number(self.max_flows), inv: Some(true) }),
            Statement::Drop(None),
        ]));
        b.add(self.chain("nat_pre", NfChainType::NAT, NfHook::Prerouting, -110));
        b.add(self.chain("input", NfChainType::Filter, NfHook::Input, -10));
        b.add(self.chain("forward", NfChainType::Filter, NfHook::Forward, -10));
        if self.redirect {
            for proto in ["udp", "tcp"] {
                b.add(self.rule("nat_pre", vec![iif(), ipv4(), eq(field(proto, "dport"), Expression::Number(53)), redirect(self.dns_port)]));
            }
            b.add(self.rule("nat_pre", vec![iif(), ipv4(), eq(meta(MetaKey::L4proto), s("tcp")), redirect(self.proxy_port)]));
            let to_host = || eq(field("ip", "daddr"), s(&self.host_addr.to_string()));
            for (proto, port) in [("tcp", self.proxy_port), ("udp", self.dns_port), ("tcp", self.dns_port)] {
                b.add(self.rule("input", vec![iif(), to_host(), eq(field(proto, "dport"), Expression::Number(port.into())), Statement::Accept(None)]));
            }
        }
        if let (Some(jail), true) = (self.publish_to, self.loopback_in) {
            self.loopback(&mut b, jail);
        }
        b.add(self.rule("input", vec![iif(), Statement::Drop(None)]));
        // The sidecar's address is for the jail only, in every shape: in a
        // host side an engine owns (a pod's, podman's), another machine or
        // container on that network could route to it through this
        // namespace, be served under this jail's rules and pins, and be
        // written into its audit log as the container.
        let not = |left, right| Statement::Match(Match { left, right, op: Operator::NEQ });
        b.add(self.rule("input", vec![
            not(meta(MetaKey::Iifname), s(&self.host_if)),
            not(meta(MetaKey::Iifname), s("lo")),
            eq(field("ip", "daddr"), s(&self.host_addr.to_string())),
            Statement::Drop(None),
        ]));
        if let Some(jail) = self.publish_to {
            self.publish(&mut b, jail);
        }
        b.add(self.rule("forward", vec![iif(), Statement::Drop(None)]));
        b.add(self.rule("forward", vec![eq(meta(MetaKey::Oifname), s(&self.host_if)), Statement::Drop(None)]));
        b
    }
}

impl FirewallPlan {
    /// Docker's shape: new connections that arrive on any other interface
    /// for one of the host side's own addresses (dockerd's `eth0`: published
    /// ports, other containers) are sent on to the jail, same port; the
    /// forward chain lets those flows through, and nothing else, before its
    /// drops. The container's own connections never take the forward path
    /// (its TCP and DNS are redirected to the sidecar in `nat_pre`, the rest
    /// is new and dropped).
    ///
    /// Only the start of a flow is sent on: a TCP SYN, UDP not from port 53,
    /// other protocols. The sidecar and dockerd's resolver run in this
    /// namespace too, and a reply to one of their own flows whose tracking
    /// entry was lost (evicted from a full table, timed out) arrives as new:
    /// sent to the jail, the container could answer it and, as the reply
    /// direction of that flow, talk to the upstream resolver. And the
    /// forward accepts hold only for flows that were sent to the jail, in
    /// their own direction: an ICMP error from the jail that names one of
    /// the sidecar's connections is related to that connection, not to a
    /// published one, and is dropped.
    fn publish(&self, b: &mut Batch<'static>, jail: Ipv4Addr) {
        let not = |left, right| Statement::Match(Match { left, right, op: Operator::NEQ });
        let local = || Expression::Named(NamedExpression::Fib(Fib { result: FibResult::Type, flags: HashSet::from([FibFlag::Daddr]) }));
        let dnat = || Statement::DNAT(Some(NAT { addr: Some(s(&jail.to_string())), family: Some(NATFamily::IP), port: None, flags: None }));
        // Not from any jail's link (the wildcard covers this one's): where
        // several jails share a host side, another jail's packets for a
        // local address (its own sidecar's) must meet its own table's
        // redirect, not this table's DNAT.
        let arriving = || vec![
            not(meta(MetaKey::Iifname), s(&format!("{HOST_LINK_PREFIX}*"))),
            not(meta(MetaKey::Iifname), s("lo")),
            eq(meta(MetaKey::Nfproto), s("ipv4")),
            not(field("ip", "daddr"), s(&self.host_addr.to_string())),
            eq(local(), s("local")),
        ];
        let syn = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            field("tcp", "flags"),
            Expression::List(vec![s("syn"), s("ack")]),
        )));
        for starts in [
            vec![eq(syn, s("syn"))],
            vec![not(field("udp", "sport"), Expression::Number(53))],
            vec![not(meta(MetaKey::L4proto), s("tcp")), not(meta(MetaKey::L4proto), s("udp"))],
        ] {
            let mut rule = arriving();
            rule.extend(starts);
            rule.push(dnat());
            b.add(self.rule("nat_pre", rule));
        }
        let dnat_status = || Statement::Match(Match { left: ct("status"), right: s("dnat"), op: Operator::IN });
        b.add(self.rule("forward", vec![
            eq(meta(MetaKey::Iifname), s(&self.host_if)),
            dnat_status(),
            eq(ct("direction"), s("reply")),
            Statement::Accept(None),
        ]));
        b.add(self.rule("forward", vec![
            eq(meta(MetaKey::Oifname), s(&self.host_if)),
            dnat_status(),
            eq(ct("direction"), s("original")),
            Statement::Accept(None),
        ]));
    }
}

impl FirewallPlan {
    /// [`FirewallPlan::loopback_in`]: in `nat_out`, a TCP SYN that a
    /// socket of uid 0 sends to 127.0.0.1 is sent to the jail (a uid the
    /// namespace's user namespace does not map reads as 65534, never 0); in `nat_post`, such a flow leaving by the host end gets
    /// the host end's address as its source (the jail would answer
    /// 127.0.0.1 itself); in `input`, before its drop, the jail's replies in
    /// those flows are let in. Nothing the jail starts matches (its flows
    /// start on the host end, not in `output`), and the jail's replies are
    /// accepted only for flows that were sent to it.
    fn loopback(&self, b: &mut Batch<'static>, jail: Ipv4Addr) {
        b.add(self.chain("nat_out", NfChainType::NAT, NfHook::Output, -100));
        b.add(self.chain("nat_post", NfChainType::NAT, NfHook::Postrouting, 100));
        let syn = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            field("tcp", "flags"),
            Expression::List(vec![s("syn"), s("ack")]),
        )));
        b.add(self.rule("nat_out", vec![
            eq(meta(MetaKey::Nfproto), s("ipv4")),
            eq(field("ip", "daddr"), s("127.0.0.1")),
            eq(syn, s("syn")),
            eq(meta(MetaKey::Skuid), Expression::Number(0)),
            Statement::DNAT(Some(NAT { addr: Some(s(&jail.to_string())), family: Some(NATFamily::IP), port: None, flags: None })),
        ]));
        let loopback = Expression::Named(NamedExpression::Prefix(Prefix { addr: Box::new(s("127.0.0.0")), len: 8 }));
        let dnat_status = || Statement::Match(Match { left: ct("status"), right: s("dnat"), op: Operator::IN });
        b.add(self.rule("nat_post", vec![
            eq(meta(MetaKey::Oifname), s(&self.host_if)),
            eq(meta(MetaKey::Nfproto), s("ipv4")),
            eq(field("ip", "saddr"), loopback),
            dnat_status(),
            Statement::SNAT(Some(NAT { addr: Some(s(&self.host_addr.to_string())), family: Some(NATFamily::IP), port: None, flags: None })),
        ]));
        b.add(self.rule("input", vec![
            eq(meta(MetaKey::Iifname), s(&self.host_if)),
            dnat_status(),
            eq(ct("direction"), s("reply")),
            Statement::Accept(None),
        ]));
    }
}

/// Every jail's host end is named this and a tag of its address.
pub const HOST_LINK_PREFIX: &str = "bnd";

/// Name of the table inside a Docker jail that sends Docker's resolver
/// address to the host side.
pub const JAIL_RESOLVER_TABLE: &str = "boundary_resolver";
/// Docker's embedded resolver on user-defined networks.
pub const DOCKER_RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The table installed *inside* a Docker jail: DNS to 127.0.0.11 (what
/// Docker writes into resolv.conf on user networks) goes to the host end
/// of the veth, where the host side's table hands it to the sidecar. It is
/// a convenience, not enforcement: a container that deletes it only breaks
/// its own name resolution. The jail namespace is always made by the same
/// `create`, so there is no stale table to replace (and no deletion to
/// wait for, see [`FirewallPlan::batch`]).
fn resolver_batch(jail_if: &str, host_addr: Ipv4Addr) -> Batch<'static> {
    let table = || NfListObject::Table(Table { family: NfFamily::IP, name: Cow::Borrowed(JAIL_RESOLVER_TABLE), handle: None });
    let chain = |name: &'static str, hook| {
        NfListObject::Chain(Chain {
            family: NfFamily::IP,
            table: Cow::Borrowed(JAIL_RESOLVER_TABLE),
            name: Cow::Borrowed(name),
            _type: Some(NfChainType::NAT),
            hook: Some(hook),
            prio: Some(if name == "out" { -100 } else { 100 }),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        })
    };
    let rule = |chain: &'static str, expr: Vec<Statement<'static>>| {
        NfListObject::Rule(Rule { family: NfFamily::IP, table: Cow::Borrowed(JAIL_RESOLVER_TABLE), chain: Cow::Borrowed(chain), expr: Cow::Owned(expr), ..Rule::default() })
    };
    let mut b = Batch::new();
    b.add(table());
    b.add(chain("out", NfHook::Output));
    b.add(chain("post", NfHook::Postrouting));
    for proto in ["udp", "tcp"] {
        b.add(rule("out", vec![
            eq(field("ip", "daddr"), s(&DOCKER_RESOLVER.to_string())),
            eq(field(proto, "dport"), Expression::Number(53)),
            Statement::DNAT(Some(NAT { addr: Some(s(&host_addr.to_string())), family: None, port: None, flags: None })),
        ]));
    }
    let loopback = Expression::Named(NamedExpression::Prefix(Prefix { addr: Box::new(s("127.0.0.0")), len: 8 }));
    b.add(rule("post", vec![eq(meta(MetaKey::Oifname), s(jail_if)), eq(field("ip", "saddr"), loopback), Statement::Masquerade(None)]));
    b
}

/// Installs [`resolver_batch`] in the jail namespace and lets its
/// loopback-sourced packets leave through `jail_if` (`route_localnet`, set
/// for `all`, which the kernel ORs with each link's own: `jail_if` need not
/// exist yet, and the jail's only other link is loopback).
pub fn apply_jail_resolver(jail_netns: &Path, jail_if: &str, host_addr: Ipv4Addr) -> Result<(), FirewallError> {
    let batch = resolver_batch(jail_if, host_addr);
    let sysctl = "/proc/sys/net/ipv4/conf/all/route_localnet".to_string();
    netns::run_in(Some(jail_netns), move || {
        let fail = |message: String| FirewallError::Nft { op: "install", table: JAIL_RESOLVER_TABLE.into(), message };
        std::fs::write(&sysctl, "1").map_err(|e| fail(format!("cannot set {sysctl}: {e}")))?;
        run_nft(batch).map_err(fail)
    })?
}

/// The nft binary. Hooks may run with an empty or minimal PATH (runc gives
/// a hook only the environment its spec names), so the usual Debian
/// locations are tried first.
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].into_iter().find(|p| Path::new(p).is_file()).unwrap_or("nft")
}

/// Runs `nft -j -f -` with the batch on stdin, in the calling thread's
/// network namespace. (The nftables crate's own helper lets nft's stderr
/// through to ours — during `create` that is the container's stdio — and
/// drops it from the error, so the schema comes from the crate and the
/// process is run here.)
fn run_nft(batch: Batch<'static>) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let payload = serde_json::to_vec(&batch.to_nftables()).map_err(|e| e.to_string())?;
    let mut child = Command::new(nft_binary())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (apt-get install nftables): {e}"))?;
    // A failed write (nft gone before it read the table) is reported with
    // what nft said and how it ended, which name the problem; the pipe's
    // error does not.
    let written = child.stdin.take().map_or(Ok(()), |mut stdin| stdin.write_all(&payload));
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    nft_outcome(written, out.status, &out.stderr)
}

fn nft_outcome(written: std::io::Result<()>, status: std::process::ExitStatus, stderr: &[u8]) -> Result<(), String> {
    let said = String::from_utf8_lossy(stderr).trim().replace("internal:0:0-0: ", "");
    match (written, status.success()) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) if !said.is_empty() => Err(said),
        (Ok(()), false) => Err(format!("{} {status} and said nothing", nft_binary())),
        (Err(e), _) => {
            let said = if said.is_empty() { "nothing".to_string() } else { format!("{said:?}") };
            Err(format!("{} {status} before it read the whole table (writing to it: {e}); it said {said}", nft_binary()))
        }
    }
}

/// Installs the table in the host-side namespace, replacing a stale one.
pub fn apply(plan: &FirewallPlan) -> Result<(), FirewallError> {
    let batch = plan.batch();
    let table = plan.table.clone();
    netns::run_in(plan.host_netns.as_deref(), move || {
        run_nft(batch).map_err(|message| FirewallError::Nft { op: "install", table, message })
    })?
}

/// Deletes the table; a missing table (or host-side namespace) is fine.
pub fn remove(host_netns: Option<&Path>, table: &str) -> Result<(), FirewallError> {
    if host_netns.is_some_and(|ns| !ns.exists()) {
        return Ok(());
    }
    let mut b = Batch::new();
    b.delete(NfListObject::Table(Table { family: NfFamily::INet, name: Cow::Owned(table.to_string()), handle: None }));
    let table = table.to_string();
    netns::run_in(host_netns, move || match run_nft(b) {
        Ok(()) => Ok(()),
        Err(message) if message.contains("No such file or directory") => Ok(()),
        Err(message) => Err(FirewallError::Nft { op: "remove", table, message }),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nft_that_stops_early_is_named_with_how_it_ended() {
        use std::os::unix::process::ExitStatusExt;
        let pipe = || Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let ok = std::process::ExitStatus::from_raw(0);
        let failed = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(nft_outcome(Ok(()), ok, b""), Ok(()));
        assert_eq!(nft_outcome(Ok(()), failed, b"internal:0:0-0: Error: Could not process rule: No such file\n").unwrap_err(), "Error: Could not process rule: No such file");
        let silent = nft_outcome(Ok(()), failed, b"").unwrap_err();
        assert!(silent.contains("exit status: 1") && silent.contains("said nothing"), "{silent}");
        // An nft that exits 0 without reading the table did not install it.
        let early = nft_outcome(pipe(), ok, b"").unwrap_err();
        assert!(early.contains("exit status: 0 before it read the whole table") && early.contains("said nothing"), "{early}");
        let killed = nft_outcome(pipe(), std::process::ExitStatus::from_raw(9), b"nft: unknown option\n").unwrap_err();
        assert!(killed.contains("signal: 9") && killed.contains("\"nft: unknown option\""), "{killed}");
    }

    #[test]
    fn batch_redirects_tcp_and_dns_and_drops_the_rest() {
        let plan = FirewallPlan {
            host_netns: None,
            table: "boundary_7".into(),
            host_if: "bndh7".into(),
            host_addr: Ipv4Addr::new(10, 213, 0, 29),
            jail_addr: Ipv4Addr::new(10, 213, 0, 30),
            redirect: true,
            proxy_port: 15001,
            dns_port: 15053,
            max_flows: 16384,
            publish_to: None,
            loopback_in: false,
            replace_stale: false,
        };
        let json = serde_json::to_string(&plan.batch().to_nftables()).unwrap();
        assert!(!json.contains(r#""delete""#), "a fresh namespace has nothing to replace: {json}");
        let replacing = serde_json::to_string(&FirewallPlan { replace_stale: true, ..plan.clone() }.batch().to_nftables()).unwrap();
        let table = r#"{"table":{"family":"inet","name":"boundary_7"}}"#;
        assert!(replacing.starts_with(&format!(r#"{{"nftables":[{{"add":{table}}},{{"delete":{table}}},{{"add":{table}}}"#)), "{replacing}");
        assert!(json.contains(r#""redirect":{"port":15053}"#), "{json}");
        assert!(json.contains(r#""redirect":{"port":15001}"#), "{json}");
        assert!(json.contains(r#""right":"bndh7""#));
        assert!(json.contains(r#""right":"10.213.0.29""#));
        let drops = json.matches(r#""drop":null"#).count();
        assert_eq!(drops, 7, "{json}");
        // The sidecar's address answers on the veth and on lo only, in
        // every shape.
        assert!(json.contains(r#"{"match":{"left":{"meta":{"key":"iifname"}},"right":"lo","op":"!="}},{"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.213.0.29","op":"=="}},{"drop":null}"#), "{json}");
        assert!(json.contains(r#"{"ct count":{"val":16384,"inv":true}},{"drop":null}"#) && json.contains(r#""prio":-150"#), "the jail's flows are capped after conntrack: {json}");
        assert!(json.contains(r#""prio":-310"#) && json.contains(r#"{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.213.0.30","op":"!="}"#), "only the jail's own address may be a source: {json}");
        let docker = FirewallPlan { publish_to: Some(Ipv4Addr::new(10, 213, 0, 30)), ..plan.clone() };
        let dj = serde_json::to_string(&docker.batch().to_nftables()).unwrap();
        assert_eq!(dj.matches(r#""dnat":{"addr":"10.213.0.30","family":"ip"}"#).count(), 3, "{dj}");
        assert!(dj.contains(r#""fib":{"result":"type","flags":["daddr"]}"#), "{dj}");
        // Only the start of a flow is sent to the jail: a SYN, UDP not from
        // a DNS server, other protocols.
        assert!(dj.contains(r#"{"match":{"left":{"&":[{"payload":{"protocol":"tcp","field":"flags"}},["syn","ack"]]},"right":"syn","op":"=="}}"#), "{dj}");
        assert!(dj.contains(r#"{"match":{"left":{"payload":{"protocol":"udp","field":"sport"}},"right":53,"op":"!="}}"#), "{dj}");
        // Forwarded: flows sent to the jail, each in its own direction;
        // nothing merely established or related.
        assert!(!dj.contains(r#""established""#) && !dj.contains(r#""related""#), "{dj}");
        assert_eq!(dj.matches(r#""right":"dnat""#).count(), 2, "{dj}");
        assert!(dj.contains(r#"{"match":{"left":{"ct":{"key":"direction"}},"right":"reply","op":"=="}}"#), "{dj}");
        assert!(dj.contains(r#"{"match":{"left":{"ct":{"key":"direction"}},"right":"original","op":"=="}}"#), "{dj}");
        assert_eq!(dj.matches(r#""drop":null"#).count(), 7, "{dj}");
        if let Ok(out) = std::env::var("BOUNDARY_DUMP_NFT") {
            std::fs::write(out, &dj).unwrap();
        }
        let resolver = serde_json::to_string(&resolver_batch("eth0", Ipv4Addr::new(10, 213, 0, 29)).to_nftables()).unwrap();
        assert!(resolver.contains(r#""right":"127.0.0.11""#) && resolver.contains(r#""dnat":{"addr":"10.213.0.29"}"#), "{resolver}");
        assert!(resolver.contains(r#""masquerade":null"#), "{resolver}");
        // A pod's or podman's namespace: root's connections to 127.0.0.1
        // (port-forward) go to the jail, never the worker's.
        let pod = FirewallPlan { loopback_in: true, ..docker.clone() };
        let pj = serde_json::to_string(&pod.batch().to_nftables()).unwrap();
        assert!(!dj.contains("127.0.0.1") && !dj.contains(r#""skuid""#), "{dj}");
        assert!(pj.contains(r#"{"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"127.0.0.1","op":"=="}}"#), "{pj}");
        assert!(pj.contains(r#"{"match":{"left":{"meta":{"key":"skuid"}},"right":0,"op":"=="}}"#), "{pj}");
        assert!(dj.contains(r#"{"match":{"left":{"meta":{"key":"iifname"}},"right":"bnd*","op":"!="}}"#), "no jail's link is published from: {dj}");
        assert!(pj.contains(r#""snat":{"addr":"10.213.0.29","family":"ip"}"#), "{pj}");
        assert_eq!(pj.matches(r#""dnat":{"addr":"10.213.0.30","family":"ip"}"#).count(), 4, "{pj}");
        let (accept_reply, drop_all) = (pj.find(r#""chain":"input","expr":[{"match":{"left":{"meta":{"key":"iifname"}},"right":"bndh7","op":"=="}},{"match":{"left":{"ct":{"key":"status"}}"#), pj.find(r#""chain":"input","expr":[{"match":{"left":{"meta":{"key":"iifname"}},"right":"bndh7","op":"=="}},{"drop":null}"#));
        assert!(accept_reply.unwrap() < drop_all.unwrap(), "the jail's replies are let in before the drop: {pj}");
        assert_eq!(pj.matches(r#""drop":null"#).count(), 7, "{pj}");
        let closed = FirewallPlan { redirect: false, ..plan };
        let json = serde_json::to_string(&closed.batch().to_nftables()).unwrap();
        assert!(!json.contains("redirect") && !json.contains(r#""accept":null"#), "{json}");
    }
}
