//! The engine's network, handed to the jail's host side at `start`.
//!
//! Docker 26.0.0 and 28 onward have no setkey hook: after `create` returns
//! and before `start`, dockerd bind-mounts `/proc/<init pid>/ns/net` (the
//! jail J) as its sandbox key and moves its veth (renamed `eth0`), addresses
//! and routes into it. Left there, they would give the container a way out
//! around the sidecar. So for such a jail (`JailState::engine_handover`)
//! `start` first runs [`run`]:
//!
//! 1. record every link in J other than `lo` and the jail's own link, with
//!    its addresses and routes (a link loses both when it changes
//!    namespace), and every bind mount of J's nsfs the engine made (its
//!    sandbox key), in `<state_dir>/handover.json`;
//! 2. move those links to the dedicated host side H and re-create there, by
//!    name, the addresses, the `up` state and the routes (default included);
//! 3. give the jail its default route via the host end of its link;
//! 4. re-point each recorded mount at H (unmount, bind H on the same path),
//!    so the engine's later bookkeeping (disconnect, stop) acts on H.
//!
//! Every step is idempotent and the record is merged, not replaced, so a
//! `start` retried after a failure finishes the job.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use boundary_contract::JailState;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

use crate::jail;
use crate::link::{self, index_of, nl, with_handle, LinkError};

/// The record of a hand-over, in the container's state directory.
pub const PLAN_FILE: &str = "handover.json";
const LOOPBACK: &str = "lo";
const EEXIST: i32 = 17;

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("jail {0} awaits the engine's network but has no dedicated host side")]
    NoHostSide(String),
    #[error("cannot {op} the hand-over record {path}")]
    Record {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the hand-over record {path} is malformed")]
    RecordFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot {op} in {ns}")]
    Netlink {
        op: &'static str,
        ns: PathBuf,
        #[source]
        source: Box<LinkError>,
    },
    #[error("cannot read the mount table {path}")]
    Mountinfo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the engine left {} socket(s) in the jail's network namespace ({}) before start; on a user-defined network, \
         Docker 26.0.0/28+ runs its embedded DNS resolver there, which would answer any name around the sidecar's \
         DNS filter, so the container is not started (use the default bridge network, or Docker <= 27)",
        .0.len(), .0.join(", ")
    )]
    EngineSockets(Vec<String>),
    #[error("cannot list the sockets in {ns}")]
    Sockets {
        ns: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {op} the engine's namespace mount {path}")]
    Mount {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// An address as `ip addr add` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrSpec {
    pub ip: IpAddr,
    pub prefix_len: u8,
}

/// A route through one link, as far as it can be re-created by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// `None`: the default route.
    pub dst: Option<AddrSpec>,
    pub gateway: Option<IpAddr>,
    pub pref_source: Option<IpAddr>,
    pub metric: Option<u32>,
    pub scope: u8,
    pub protocol: u8,
    /// The address family (needed for a default route without gateway).
    pub ipv6: bool,
}

/// One engine link and its configuration in the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConfig {
    pub name: String,
    pub up: bool,
    pub addrs: Vec<AddrSpec>,
    pub routes: Vec<RouteSpec>,
}

/// What a hand-over moves: links and the engine's mounts of the jail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub links: Vec<LinkConfig>,
    pub mounts: Vec<PathBuf>,
}


/// Runs the hand-over for a jail whose state says it awaits it.
pub fn run(root: &Path, state: &JailState) -> Result<(), HandoverError> {
    let id = &state.container_id;
    let host = state.dedicated_host_netns.clone().ok_or_else(|| HandoverError::NoHostSide(id.clone()))?;
    let jail_if = state
        .engine_handover
        .as_ref()
        .map(|e| e.jail_if.clone())
        .ok_or_else(|| HandoverError::NoHostSide(id.clone()))?;
    let jail = state.netns_path.clone();
    let sockets = sockets_in(&jail)?;
    if !sockets.is_empty() {
        return Err(HandoverError::EngineSockets(sockets));
    }
    let plan_path = jail::state_dir(root, id).join(PLAN_FILE);
    let observed = record_links(&jail, &jail_if)?;
    let mounts = engine_mounts_of(&jail, root)?;
    let plan = merge(read_plan(&plan_path)?, observed.clone(), mounts);
    write_plan(&plan_path, &plan)?;
    let names: Vec<String> = observed.iter().map(|l| l.name.clone()).collect();
    move_links(&jail, &host, names)?;
    configure(&host, plan.links.clone())?;
    link::set_jail_default_route(&jail, &jail_if, state.host_addr).map_err(netlink("set the jail's default route", &jail))?;
    for path in &plan.mounts {
        repoint(path, &jail, &host)?;
    }
    log::info!("{id}: handed {} engine link(s) and {} mount(s) to the host side {}", plan.links.len(), plan.mounts.len(), host.display());
    Ok(())
}

/// The protocol tables of `/proc/<pid>/net` that list sockets by address.
const SOCKET_TABLES: [(&str, bool); 6] =
    [("tcp", false), ("tcp6", true), ("udp", false), ("udp6", true), ("raw", false), ("raw6", true)];

/// Every inet socket of the jail's namespace, as `proto addr:port`. Before
/// `start` the container has run nothing (runc's init waits on its exec
/// fifo and holds no inet socket), so any socket there is the engine's.
fn sockets_in(jail: &Path) -> Result<Vec<String>, HandoverError> {
    let err = |source| HandoverError::Sockets { ns: jail.to_path_buf(), source };
    let tables = crate::netns::run_in(Some(jail), || {
        SOCKET_TABLES
            .iter()
            .map(|(name, v6)| std::fs::read_to_string(format!("/proc/thread-self/net/{name}")).map(|t| (*name, *v6, t)))
            .collect::<std::io::Result<Vec<_>>>()
    })
    .map_err(|e| err(std::io::Error::other(e.to_string())))?
    .map_err(err)?;
    Ok(tables.iter().flat_map(|(name, v6, text)| parse_socket_table(text, *v6).into_iter().map(move |a| format!("{name} {a}"))).collect())
}

/// The local addresses of a `/proc/net/{tcp,udp,raw}[6]` table (hex,
/// 32-bit words in host byte order), as `addr:port`.
pub fn parse_socket_table(text: &str, v6: bool) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|local| {
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = match (v6, addr.len()) {
                (false, 8) => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.to_le_bytes())),
                (true, 32) => {
                    let mut bytes = [0u8; 16];
                    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                        let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                        chunk.copy_from_slice(&word.to_le_bytes());
                    }
                    IpAddr::V6(Ipv6Addr::from(bytes))
                }
                _ => return None,
            };
            Some(std::net::SocketAddr::new(ip, port).to_string())
        })
        .collect()
}

fn read_plan(path: &Path) -> Result<Plan, HandoverError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| HandoverError::RecordFormat { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Plan::default()),
        Err(source) => Err(HandoverError::Record { op: "read", path: path.to_path_buf(), source }),
    }
}

fn write_plan(path: &Path, plan: &Plan) -> Result<(), HandoverError> {
    let json = serde_json::to_vec_pretty(plan).map_err(|source| HandoverError::RecordFormat { path: path.to_path_buf(), source })?;
    crate::atomic::write(path, &json, 0o644).map_err(|source| HandoverError::Record { op: "write", path: path.to_path_buf(), source })
}

/// The record after this attempt: links seen in the jail now replace
/// recorded ones of the same name; recorded links no longer in the jail
/// (moved by an earlier attempt) are kept; mounts are the union.
pub fn merge(saved: Plan, observed: Vec<LinkConfig>, mounts: Vec<PathBuf>) -> Plan {
    let mut links: Vec<LinkConfig> = saved.links.into_iter().filter(|s| !observed.iter().any(|o| o.name == s.name)).collect();
    links.extend(observed);
    let mut all = saved.mounts;
    all.extend(mounts.into_iter().filter(|m| !all.contains(m)).collect::<Vec<_>>());
    Plan { links, mounts: all }
}

/// The links the engine put in the jail: all but loopback and ours.
pub fn links_to_move<'a>(links: &'a [(u32, String)], jail_if: &str) -> Vec<&'a (u32, String)> {
    links.iter().filter(|(_, name)| name != LOOPBACK && name != jail_if).collect()
}

/// An address worth re-creating: IPv6 link-local ones come back by
/// themselves when the link goes up.
pub fn addr_spec(msg: &AddressMessage) -> Option<AddrSpec> {
    let pick = |want_local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let ip = match msg.header.family {
        AddressFamily::Inet => pick(true).or_else(|| pick(false)),
        AddressFamily::Inet6 => pick(false),
        _ => None,
    }?;
    if let IpAddr::V6(v6) = ip {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
    }
    Some(AddrSpec { ip, prefix_len: msg.header.prefix_len })
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A route of the main table through link `oif` that must be re-created:
/// unicast, one next hop, not one the kernel derives from an address.
pub fn route_spec(msg: &RouteMessage, oif: u32) -> Option<RouteSpec> {
    let h = &msg.header;
    let table = msg
        .attributes
        .iter()
        .find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None })
        .unwrap_or(h.table.into());
    let through = msg.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == oif));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || h.kind != RouteType::Unicast || h.protocol == RouteProtocol::Kernel || !through {
        return None;
    }
    let ipv6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let find = |f: fn(&RouteAttribute) -> Option<&RouteAddress>| msg.attributes.iter().find_map(f).and_then(route_ip);
    let dst = find(|a| if let RouteAttribute::Destination(d) = a { Some(d) } else { None });
    let dst = match dst {
        Some(ip) => Some(AddrSpec { ip, prefix_len: h.destination_prefix_length }),
        None if h.destination_prefix_length == 0 => None,
        None => return None,
    };
    Some(RouteSpec {
        dst,
        gateway: find(|a| if let RouteAttribute::Gateway(g) = a { Some(g) } else { None }),
        pref_source: find(|a| if let RouteAttribute::PrefSource(p) = a { Some(p) } else { None }),
        metric: msg
            .attributes
            .iter()
            .find_map(|a| if let RouteAttribute::Priority(p) = a { Some(*p) } else { None }),
        scope: h.scope.into(),
        protocol: h.protocol.into(),
        ipv6,
    })
}

/// The netlink message that re-creates `spec` through link `oif`.
pub fn route_message(spec: &RouteSpec, oif: u32) -> RouteMessage {
    let mut msg = if spec.ipv6 { RouteMessageBuilder::<Ipv6Addr>::new().build() } else { RouteMessageBuilder::<Ipv4Addr>::new().build() };
    msg.header.scope = RouteScope::from(spec.scope);
    msg.header.protocol = RouteProtocol::from(spec.protocol);
    if let Some(d) = spec.dst {
        msg.header.destination_prefix_length = d.prefix_len;
        msg.attributes.push(RouteAttribute::Destination(d.ip.into()));
    }
    if let Some(g) = spec.gateway {
        msg.attributes.push(RouteAttribute::Gateway(g.into()));
    }
    if let Some(p) = spec.pref_source {
        msg.attributes.push(RouteAttribute::PrefSource(p.into()));
    }
    if let Some(m) = spec.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    msg.attributes.push(RouteAttribute::Oif(oif));
    msg
}

/// Routes in the order they can be added: direct ones before the ones
/// whose gateway they make reachable.
pub fn ordered(routes: &[RouteSpec]) -> Vec<&RouteSpec> {
    let mut v: Vec<&RouteSpec> = routes.iter().collect();
    v.sort_by_key(|r| r.gateway.is_some());
    v
}

fn link_name(msg: &LinkMessage) -> Option<String> {
    msg.attributes
        .iter()
        .find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
}

fn netlink(op: &'static str, ns: &Path) -> impl FnOnce(LinkError) -> HandoverError {
    let ns = ns.to_path_buf();
    move |source| HandoverError::Netlink { op, ns, source: Box::new(source) }
}

/// The engine's links in the jail, with their addresses and routes.
fn record_links(jail: &Path, jail_if: &str) -> Result<Vec<LinkConfig>, HandoverError> {
    let jail_if = jail_if.to_string();
    with_handle(Some(jail), move |h| async move {
        let msgs: Vec<LinkMessage> = h.link().get().execute().try_collect().await.map_err(nl("list links", "in the jail"))?;
        let all: Vec<(u32, String)> = msgs.iter().filter_map(|m| Some((m.header.index, link_name(m)?))).collect();
        let mut routes = dump_routes(&h).await?;
        routes.retain(|r| r.header.protocol != RouteProtocol::Kernel);
        let mut out = Vec::new();
        for (index, name) in links_to_move(&all, &jail_if) {
            let up = msgs.iter().any(|m| m.header.index == *index && m.header.flags.contains(LinkFlags::Up));
            let addrs: Vec<AddressMessage> = h
                .address()
                .get()
                .set_link_index_filter(*index)
                .execute()
                .try_collect()
                .await
                .map_err(nl("list addresses of", name.as_str()))?;
            let addrs = addrs.iter().filter(|a| a.header.index == *index).filter_map(addr_spec).collect();
            let routes = routes.iter().filter_map(|r| route_spec(r, *index)).collect();
            out.push(LinkConfig { name: name.clone(), up, addrs, routes });
        }
        Ok(out)
    })
    .map_err(netlink("record the engine's links", jail))
}

async fn dump_routes(h: &Handle) -> Result<Vec<RouteMessage>, LinkError> {
    let mut v4: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes", "IPv4"))?;
    let v6: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes", "IPv6"))?;
    v4.extend(v6);
    Ok(v4)
}

/// Moves the named links from the jail to the host side.
fn move_links(jail: &Path, host: &Path, names: Vec<String>) -> Result<(), HandoverError> {
    if names.is_empty() {
        return Ok(());
    }
    let target = std::fs::File::open(host).map_err(|source| HandoverError::Record { op: "open", path: host.to_path_buf(), source })?;
    with_handle(Some(jail), move |h| async move {
        for name in names {
            let Some(index) = index_of(&h, &name).await? else {
                continue;
            };
            let msg = LinkUnspec::new_with_index(index).setns_by_fd(target.as_raw_fd()).build();
            h.link().set(msg).execute().await.map_err(nl("move to the host side", name.as_str()))?;
        }
        Ok(())
    })
    .map_err(netlink("move the engine's links", jail))
}

fn exists_ok(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == EEXIST => Ok(()),
        other => other,
    }
}

/// Re-creates each link's addresses, state and routes on the host side.
fn configure(host: &Path, links: Vec<LinkConfig>) -> Result<(), HandoverError> {
    with_handle(Some(host), move |h| async move {
        for l in links {
            let Some(index) = index_of(&h, &l.name).await? else {
                log::warn!("the engine's link {} is in neither the jail nor the host side; nothing to configure", l.name);
                continue;
            };
            for a in &l.addrs {
                exists_ok(h.address().add(index, a.ip, a.prefix_len).execute().await).map_err(nl("add an address to", l.name.as_str()))?;
            }
            if l.up {
                h.link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(nl("bring up", l.name.as_str()))?;
            }
            for r in ordered(&l.routes) {
                exists_ok(h.route().add(route_message(r, index)).execute().await).map_err(nl("add a route through", l.name.as_str()))?;
            }
        }
        Ok(())
    })
    .map_err(netlink("configure the engine's links", host))
}

/// Mount points of `jail`'s nsfs outside our own state root.
fn engine_mounts_of(jail: &Path, root: &Path) -> Result<Vec<PathBuf>, HandoverError> {
    let ino = std::fs::metadata(jail)
        .map_err(|source| HandoverError::Record { op: "stat", path: jail.to_path_buf(), source })?
        .ino();
    let path = PathBuf::from("/proc/self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| HandoverError::Mountinfo { path, source })?;
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    Ok(engine_mounts(&text, ino, &root))
}

/// From `/proc/self/mountinfo` text: mount points of the network namespace
/// with inode `ino` (`net:[ino]` on nsfs) that are not under `exclude`.
pub fn engine_mounts(mountinfo: &str, ino: u64, exclude: &Path) -> Vec<PathBuf> {
    let root = format!("net:[{ino}]");
    let mut out: Vec<PathBuf> = Vec::new();
    for line in mountinfo.lines() {
        let Some((fields, fs)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = fields.split(' ').collect();
        let nsfs = fs.split(' ').next() == Some("nsfs");
        if let (true, Some(r), Some(mp)) = (nsfs, f.get(3), f.get(4)) {
            let mp = PathBuf::from(unescape(mp));
            if *r == root && !mp.starts_with(exclude) && !out.contains(&mp) {
                out.push(mp);
            }
        }
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match (b[i], oct) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Makes `path` a bind mount of `host` where it was one of `jail`.
fn repoint(path: &Path, jail: &Path, host: &Path) -> Result<(), HandoverError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let (jail_id, host_id) = (ns_id(jail), ns_id(host));
    let err = |op| move |source| HandoverError::Mount { op, path: path.to_path_buf(), source };
    // Stacked mounts of the jail (several binds on one path) all go.
    for _ in 0..16 {
        if ns_id(path) != jail_id || jail_id.is_none() {
            break;
        }
        umount2(path, MntFlags::MNT_DETACH).map_err(err("unmount"))?;
    }
    if ns_id(path) == host_id {
        return Ok(());
    }
    if !path.exists() {
        log::warn!("the engine removed its namespace mount {} meanwhile; nothing to re-point", path.display());
        return Ok(());
    }
    mount(Some(host), path, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err("bind the host side on"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::address::AddressHeader;

    #[test]
    fn socket_tables_are_read_as_addresses() {
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                   \x20 12: 0B00007F:A3C1 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4711 2 0000000000000000 0\n";
        assert_eq!(parse_socket_table(udp, false), ["127.0.0.11:41921"]);
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
                    \x20  0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 0A\n\
                    \x20  1: 0000000000000000FFFF00000B00007F:0050 00000000000000000000000000000000:0000 0A\n";
        assert_eq!(parse_socket_table(tcp6, true), ["[::1]:53", "[::ffff:127.0.0.11]:80"]);
        assert!(parse_socket_table("header only\n", false).is_empty());
        assert!(parse_socket_table("h\n 0: zz:0035 x\n 1: 0100007F\n", false).is_empty(), "malformed lines are skipped");
    }

    #[test]
    fn only_the_engines_links_move() {
        let links = [(1, "lo".to_string()), (2, "bnd0".to_string()), (7, "eth0".to_string()), (9, "eth1".to_string())];
        let moved: Vec<&str> = links_to_move(&links, "bnd0").into_iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(moved, ["eth0", "eth1"]);
        assert!(links_to_move(&links[..2], "bnd0").is_empty());
    }

    fn addr(family: AddressFamily, prefix_len: u8, attrs: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header = AddressHeader { family, prefix_len, index: 7, ..AddressHeader::default() };
        m.attributes = attrs;
        m
    }

    #[test]
    fn addresses_keep_local_and_prefix_and_skip_link_local() {
        let v4: IpAddr = "172.17.0.2".parse().unwrap();
        let peer: IpAddr = "172.17.0.9".parse().unwrap();
        let m = addr(AddressFamily::Inet, 16, vec![AddressAttribute::Address(peer), AddressAttribute::Local(v4)]);
        assert_eq!(addr_spec(&m), Some(AddrSpec { ip: v4, prefix_len: 16 }));
        let g6: IpAddr = "fd00:17::2".parse().unwrap();
        assert_eq!(addr_spec(&addr(AddressFamily::Inet6, 64, vec![AddressAttribute::Address(g6)])), Some(AddrSpec { ip: g6, prefix_len: 64 }));
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(addr_spec(&addr(AddressFamily::Inet6, 64, vec![AddressAttribute::Address(ll)])), None);
    }

    fn default_via(gw: Ipv4Addr, oif: u32) -> RouteMessage {
        let mut m = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(oif).build();
        m.header.protocol = RouteProtocol::Boot;
        m
    }

    #[test]
    fn routes_translate_both_ways() {
        let gw = Ipv4Addr::new(172, 17, 0, 1);
        let spec = route_spec(&default_via(gw, 7), 7).unwrap();
        assert_eq!(spec.dst, None);
        assert_eq!(spec.gateway, Some(IpAddr::V4(gw)));
        assert_eq!(spec.protocol, u8::from(RouteProtocol::Boot));
        assert!(!spec.ipv6);
        assert_eq!(route_spec(&default_via(gw, 7), 8), None, "another link's route");
        // Moved to index 12 on the host side: same route, new link.
        let back = route_message(&spec, 12);
        assert_eq!(route_spec(&back, 12), Some(spec.clone()));
        assert!(back.attributes.contains(&RouteAttribute::Oif(12)));

        let mut kernel = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(172, 17, 0, 0), 16)
            .output_interface(7)
            .build();
        kernel.header.protocol = RouteProtocol::Kernel;
        kernel.header.scope = RouteScope::Link;
        assert_eq!(route_spec(&kernel, 7), None, "the kernel re-creates prefix routes with the address");
        kernel.header.protocol = RouteProtocol::Static;
        let direct = route_spec(&kernel, 7).unwrap();
        assert_eq!(direct.dst, Some(AddrSpec { ip: "172.17.0.0".parse().unwrap(), prefix_len: 16 }));
        assert_eq!(direct.scope, u8::from(RouteScope::Link));
        assert_eq!(route_spec(&route_message(&direct, 3), 3), Some(direct.clone()));
        let mut local = default_via(gw, 7);
        local.header.table = 255;
        assert_eq!(route_spec(&local, 7), None, "only the main table");

        let routes = [spec.clone(), direct.clone()];
        assert_eq!(ordered(&routes), [&direct, &spec], "a gateway's own route first");

        let v6 = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway("fd00:17::1".parse().unwrap())
            .output_interface(7)
            .build();
        let s6 = route_spec(&v6, 7).unwrap();
        assert!(s6.ipv6 && s6.dst.is_none());
        assert_eq!(route_spec(&route_message(&s6, 4), 4), Some(s6));
    }

    #[test]
    fn a_retry_keeps_what_an_earlier_attempt_moved() {
        let l = |name: &str, up| LinkConfig { name: name.into(), up, addrs: vec![], routes: vec![] };
        let saved = Plan { links: vec![l("eth0", true), l("eth1", true)], mounts: vec!["/k/a".into()] };
        let merged = merge(saved, vec![l("eth1", false)], vec!["/k/a".into(), "/k/b".into()]);
        assert_eq!(merged.links, [l("eth0", true), l("eth1", false)]);
        assert_eq!(merged.mounts, [PathBuf::from("/k/a"), PathBuf::from("/k/b")]);
        assert_eq!(merge(Plan::default(), vec![], vec![]), Plan::default());
    }

    #[test]
    fn engine_mounts_are_found_by_nsfs_inode_outside_the_state_root() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/root rw
500 25 0:4 net:[4026532400] /run/docker/netns/abc rw shared:5 - nsfs nsfs rw
501 25 0:4 net:[4026532400] /run/boundary-runc/netns/c1 rw shared:6 - nsfs nsfs rw
502 25 0:4 net:[4026532401] /run/boundary-runc/c1/hostns rw - nsfs nsfs rw
503 25 0:4 net:[4026532400] /tmp/a\\040b/key rw - nsfs nsfs rw
504 25 0:44 net:[4026532400] /odd rw - tmpfs tmpfs rw
";
        let found = engine_mounts(info, 4026532400, Path::new("/run/boundary-runc"));
        assert_eq!(found, [PathBuf::from("/run/docker/netns/abc"), PathBuf::from("/tmp/a b/key")]);
        assert!(engine_mounts(info, 1, Path::new("/run/boundary-runc")).is_empty());
    }
}
