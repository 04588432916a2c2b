//! The veth pair between a jail and its host side, through rtnetlink.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::netns;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: cannot {op} {object}")]
    Netlink { op: &'static str, object: String, source: rtnetlink::Error },
    #[error("netlink: cannot open a connection")]
    Connect(#[source] std::io::Error),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("cannot open network namespace {path}")]
    Open { path: PathBuf, #[source] source: std::io::Error },
    #[error("cannot set {name} in {path}")]
    Sysctl { path: PathBuf, name: &'static str, #[source] source: std::io::Error },
    #[error("link {0} not found")]
    Missing(String),
    #[error("the thread building the veth panicked")]
    Panicked,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    /// Host-side namespace (`None`: ours).
    pub host_netns: Option<PathBuf>,
    pub jail_netns: PathBuf,
    pub host_if: String,
    pub jail_if: String,
    pub host_addr: Ipv4Addr,
    pub jail_addr: Ipv4Addr,
    pub prefix_len: u8,
    /// Add the jail's default route via the host end now (false: the engine
    /// configures the jail before `start` and adds its own default route;
    /// the hand-over adds ours afterwards, [`set_jail_default_route`]).
    pub default_route: bool,
    /// Let the host end carry packets with a loopback source
    /// (`route_localnet`): port-forward's connections to 127.0.0.1, sent on
    /// to the jail (`firewall::FirewallPlan::loopback_in`).
    pub loopback_in: bool,
}

pub(crate) fn nl(op: &'static str, object: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let object = object.into();
    move |source| LinkError::Netlink { op, object, source }
}

/// Runs an rtnetlink session on a thread inside `ns`.
pub(crate) fn with_handle<R, F, Fut>(ns: Option<&Path>, f: F) -> Result<R, LinkError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, LinkError>>,
    R: Send + 'static,
{
    netns::run_in(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(LinkError::Connect)?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(LinkError::Connect)?;
            tokio::spawn(conn);
            f(handle).await
        })
    })?
}

pub(crate) async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc_enodev() => Ok(None),
        Err(e) => Err(nl("look up", name)(e)),
    }
}

const fn libc_enodev() -> i32 {
    19 // ENODEV
}

/// Creates the pair with its jail end already in the jail under its final
/// name (one netlink request: moving a link between namespaces
/// afterwards waits for an RCU grace period), then configures both ends.
pub fn setup(plan: &LinkPlan) -> Result<(), LinkError> {
    let jail_ns = std::fs::File::open(&plan.jail_netns)
        .map_err(|source| LinkError::Open { path: plan.jail_netns.clone(), source })?;
    let p = plan.clone();
    with_handle(plan.host_netns.as_deref(), move |h| async move {
        // A leftover of a crashed container with the same index is ours by
        // name (the index was leased to us), so it is removed first.
        if let Some(old) = index_of(&h, &p.host_if).await? {
            h.link().del(old).execute().await.map_err(nl("remove stale link", &p.host_if))?;
        }
        // Not `up` yet: a veth end cannot open before its peer is linked
        // to it (ENOTCONN), which happens after the peer is configured.
        let peer = LinkMessageBuilder::<LinkUnspec>::new().name(p.jail_if.clone()).setns_by_fd(jail_ns.as_raw_fd()).build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(p.host_if.clone())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .up()
            .build();
        h.link().add(veth).execute().await.map_err(nl("create veth", &p.host_if))?;
        let host = index_of(&h, &p.host_if).await?.ok_or_else(|| LinkError::Missing(p.host_if.clone()))?;
        h.address().add(host, IpAddr::V4(p.host_addr), p.prefix_len).execute().await.map_err(nl("address", &p.host_if))?;
        if p.loopback_in {
            // This thread is in the host side's namespace: its /proc/sys/net.
            let sysctl = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", p.host_if);
            let path = p.host_netns.clone().unwrap_or_default();
            std::fs::write(&sysctl, "1").map_err(|source| LinkError::Sysctl { path, name: "route_localnet", source })?;
        }
        Ok(())
    })?;
    let p = plan.clone();
    with_handle(Some(&plan.jail_netns), move |h| async move {
        let lo = index_of(&h, "lo").await?.ok_or_else(|| LinkError::Missing("lo".into()))?;
        h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await.map_err(nl("bring up", "lo"))?;
        let jail = index_of(&h, &p.jail_if).await?.ok_or_else(|| LinkError::Missing(p.jail_if.clone()))?;
        h.address().add(jail, IpAddr::V4(p.jail_addr), p.prefix_len).execute().await.map_err(nl("address", &p.jail_if))?;
        h.link().set(LinkUnspec::new_with_index(jail).up().build()).execute().await.map_err(nl("bring up", &p.jail_if))?;
        if p.default_route {
            let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(p.host_addr).output_interface(jail).build();
            h.route().add(route).execute().await.map_err(nl("add default route via", p.host_addr.to_string()))?;
        }
        Ok(())
    })
}

/// Makes the jail's default route the one via the host end of its link,
/// replacing any other default route (the hand-over, once the engine's
/// links have left the jail).
pub fn set_jail_default_route(jail_netns: &Path, jail_if: &str, host_addr: Ipv4Addr) -> Result<(), LinkError> {
    let name = jail_if.to_string();
    with_handle(Some(jail_netns), move |h| async move {
        let jail = index_of(&h, &name).await?.ok_or_else(|| LinkError::Missing(name.clone()))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(host_addr).output_interface(jail).build();
        h.route().add(route).replace().execute().await.map_err(nl("set default route via", host_addr.to_string()))
    })
}

/// Readies a dedicated host-side namespace (Docker's shape): loopback up
/// (the sidecar asks Docker's resolver on 127.0.0.11 there) and IPv4
/// forwarding on (connections dockerd sends to the container's address are
/// forwarded to the jail; the firewall decides what passes).
pub fn prepare_host_side(ns: &Path) -> Result<(), LinkError> {
    with_handle(Some(ns), |h| async move {
        let lo = index_of(&h, "lo").await?.ok_or_else(|| LinkError::Missing("lo".into()))?;
        h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await.map_err(nl("bring up", "lo"))?;
        Ok(())
    })?;
    enable_forwarding(ns).map(drop)
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// IPv4 forwarding on in a host side whose inbound flows go on to the jail
/// (the firewall decides what passes). Returns whether it was off.
pub fn enable_forwarding(ns: &Path) -> Result<bool, LinkError> {
    let path = ns.to_path_buf();
    netns::run_in(Some(ns), move || {
        let err = |source| LinkError::Sysctl { path: path.clone(), name: IP_FORWARD, source };
        if std::fs::read_to_string(IP_FORWARD).map_err(err)?.trim() == "1" {
            return Ok(false);
        }
        std::fs::write(IP_FORWARD, "1").map_err(err)?;
        Ok(true)
    })?
}

/// IPv4 forwarding off again in `ns`.
pub fn disable_forwarding(ns: &Path) -> Result<(), LinkError> {
    let path = ns.to_path_buf();
    netns::run_in(Some(ns), move || {
        std::fs::write(IP_FORWARD, "0").map_err(|source| LinkError::Sysctl { path: path.clone(), name: IP_FORWARD, source })
    })?
}

/// Deletes the host end (which deletes the pair). Missing is fine; a
/// host-side namespace that no longer exists took the link with it.
pub fn remove(host_netns: Option<&Path>, host_if: &str) -> Result<(), LinkError> {
    if let Some(ns) = host_netns {
        if !ns.exists() {
            return Ok(());
        }
    }
    let name = host_if.to_string();
    with_handle(host_netns, move |h| async move {
        if let Some(idx) = index_of(&h, &name).await? {
            match h.link().del(idx).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc_enodev() => {}
                Err(e) => return Err(nl("remove", &name)(e)),
            }
        }
        Ok(())
    })
}

/// Whether a link with this name exists in `ns`.
pub fn exists(ns: Option<&Path>, name: &str) -> Result<bool, LinkError> {
    let name = name.to_string();
    with_handle(ns, move |h| async move { Ok(index_of(&h, &name).await?.is_some()) })
}
