//! `probe`: escape attempts run *inside* a jailed container (bind-mounted
//! there by the tests; busybox has no packet writer, raw IP or SCTP
//! client). Each subcommand tries one way out and prints one line saying
//! what the kernel let it do (`sent N`, `error: ...`, `reply: ...`); the
//! tests judge success only by what arrives outside, never by this output.
//!
//! ```text
//! probe packet IFACE DST_MAC SRC_IP DST_IP PORT   Ethernet+IPv4+UDP frame via AF_PACKET
//! probe raw-udp SRC_IP DST_IP PORT                IPv4+UDP built by hand (IPPROTO_RAW)
//! probe raw-proto DST_IP PROTO                    raw IP datagram of protocol PROTO (SCTP INIT for 132)
//! probe sctp DST_IP PORT                          kernel SCTP connect
//! probe udp ADDR PORT HEX                         one datagram (v4, v6 or ::ffff: mapped)
//! probe tcp ADDR PORT TEXT                        connect, send TEXT (\r \n \0 \xNN escapes), print the reply
//! probe hold ADDR PORT N TEXT                     N connections at once, TEXT sent on each (1 s to connect,
//!                                                 the first reply bytes awaited), then all closed and one
//!                                                 more made: `held K of N; after closing: ...`
//! probe ptrace PID                                PTRACE_ATTACH and process_vm_readv on PID
//! probe raw-dns SRC_IP DST_IP NAME                a DNS query for NAME (A) to DST_IP:53 from SRC_IP, by hand
//! probe dns-flood DST_IP N                        N queries (A, q<i>.flood.denied.example) over UDP to DST_IP:53,
//!                                                 16 in flight at a time: `answered K of N`
//! probe peer-macvlan IFACE [IFINDEX]              a macvlan on IFACE's veth peer (or on link IFINDEX of the
//!                                                 peer's namespace), made from here through IFLA_LINK_NETNSID
//!                                                 (it lands here; its frames leave by that link)
//! probe peer-veth IFACE NAME                      a veth pair NAME/NAME-p made in IFACE's peer namespace
//!                                                 through IFLA_TARGET_NETNSID
//! ```
#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

const PAYLOAD: &[u8] = b"boundary-probe";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match a.as_slice() {
        ["packet", iface, mac, src, dst, port] => packet(iface, mac, parse(src), parse(dst), parse(port)),
        ["raw-udp", src, dst, port] => raw_udp(parse(src), parse(dst), parse(port)),
        ["raw-proto", dst, proto] => raw_proto(parse(dst), parse(proto)),
        ["sctp", dst, port] => sctp(parse(dst), parse(port)),
        ["udp", addr, port, hex] => udp(parse(addr), parse(port), &unhex(hex)),
        ["tcp", addr, port, text] => tcp(parse(addr), parse(port), &unescape(text)),
        ["hold", addr, port, n, text] => hold(parse(addr), parse(port), parse(n), &unescape(text)),
        ["ptrace", pid] => ptrace(parse(pid)),
        ["raw-dns", src, dst, name] => raw_dns(parse(src), parse(dst), name),
        ["dns-flood", dst, n] => dns_flood(parse(dst), parse(n)),
        ["peer-macvlan", iface] => peer_link(iface, None, None),
        ["peer-macvlan", iface, lower] => peer_link(iface, Some(parse(lower)), None),
        ["peer-veth", iface, name] => peer_link(iface, None, Some(name)),
        _ => Err(format!("usage: see the module documentation; got {a:?}")),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Queries in flight at once, under the sidecar's bound (256), so none is
/// dropped for being one too many.
const FLOOD_WINDOW: u32 = 16;

fn dns_flood(dst: Ipv4Addr, n: u32) -> Result<String, String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    sock.connect((dst, 53)).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let (mut answered, mut sent) = (0u32, 0u32);
    let mut buf = [0u8; 1500];
    while sent < n {
        let batch = FLOOD_WINDOW.min(n - sent);
        for i in sent..sent + batch {
            let mut q = vec![(i >> 8) as u8, i as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in [format!("q{i}").as_str(), "flood", "denied", "example"] {
                q.push(label.len() as u8);
                q.extend_from_slice(label.as_bytes());
            }
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            sock.send(&q).map_err(|e| format!("send: {e}"))?;
        }
        sent += batch;
        for _ in 0..batch {
            match sock.recv(&mut buf) {
                Ok(_) => answered += 1,
                Err(_) => break,
            }
        }
    }
    Ok(format!("answered {answered} of {n}"))
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        println!("error: cannot parse {s:?}");
        std::process::exit(2)
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// `\r`, `\n`, `\0`, `\\` and `\xNN` escapes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b'0' => (0, 2),
                b'x' => (s.get(i + 2..i + 4).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(b'x'), 4),
                other => (other, 2),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header + `payload` of protocol `proto`.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// UDP header (checksum 0: none, allowed over IPv4) + payload.
fn udp_datagram(port: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&port.to_be_bytes());
    u.extend_from_slice(&((8 + PAYLOAD.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(PAYLOAD);
    u
}

/// An SCTP common header and an INIT chunk (checksum left zero: the
/// listeners on the other side count packets, they do not verify them).
fn sctp_init() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&7000u16.to_be_bytes());
    p.extend_from_slice(&[0; 4]); // verification tag
    p.extend_from_slice(&[0; 4]); // checksum
    p.extend_from_slice(&[1, 0, 0, 20]); // INIT, flags, length 20
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // initiate tag
    p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&[0, 1, 0, 1]); // streams
    p.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
    p
}

fn raw_socket(family: libc::c_int, kind: libc::c_int, proto: libc::c_int) -> Result<OwnedFd, String> {
    // SAFETY: socket(2) with constant arguments; the result is checked and
    // owned by exactly one OwnedFd.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(format!("socket({family}, {kind}, {proto}): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn sockaddr_in(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.octets()) },
        sin_zero: [0; 8],
    }
}

fn send_to_in(fd: &OwnedFd, data: &[u8], addr: Ipv4Addr) -> Result<usize, String> {
    let sa = sockaddr_in(addr, 0);
    // SAFETY: data and sa are valid for the lengths given for the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(format!("sendto {addr}: {}", std::io::Error::last_os_error()));
    }
    Ok(n as usize)
}

fn packet(iface: &str, mac: &str, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Result<String, String> {
    let dst_mac: Vec<u8> = mac.split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    if dst_mac.len() != 6 {
        return Err(format!("bad MAC {mac}"));
    }
    let src_mac_text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).map_err(|e| format!("{iface} MAC: {e}"))?;
    let src_mac: Vec<u8> = src_mac_text.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    let index = nix::net::if_::if_nametoindex(iface).map_err(|e| format!("{iface}: {e}"))?;
    let fd = raw_socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from((libc::ETH_P_ALL as u16).to_be()))?;
    let mut frame = dst_mac.clone();
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend(ipv4(src, dst, 17, &udp_datagram(port)));
    let mut sll: libc::sockaddr_ll = unsafe_zeroed_sll();
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = index as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst_mac);
    let mut sent = 0;
    for _ in 0..3 {
        // SAFETY: frame and sll are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(format!("sendto on {iface}: {}", std::io::Error::last_os_error()));
        }
        sent += 1;
    }
    Ok(format!("sent {sent} frames"))
}

fn unsafe_zeroed_sll() -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is a plain C struct for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn raw_udp(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Result<String, String> {
    let fd = raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let packet = ipv4(src, dst, 17, &udp_datagram(port));
    for _ in 0..3 {
        send_to_in(&fd, &packet, dst)?;
    }
    Ok("sent 3 datagrams".into())
}

fn raw_dns(src: Ipv4Addr, dst: Ipv4Addr, name: &str) -> Result<String, String> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut udp = Vec::new();
    udp.extend_from_slice(&40001u16.to_be_bytes());
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&((8 + query.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&query);
    let fd = raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let packet = ipv4(src, dst, 17, &udp);
    for _ in 0..3 {
        send_to_in(&fd, &packet, dst)?;
    }
    Ok("sent 3 queries".into())
}

fn raw_proto(dst: Ipv4Addr, proto: i32) -> Result<String, String> {
    let fd = raw_socket(libc::AF_INET, libc::SOCK_RAW, proto)?;
    let payload = if proto == libc::IPPROTO_SCTP { sctp_init() } else { PAYLOAD.to_vec() };
    for _ in 0..3 {
        send_to_in(&fd, &payload, dst)?;
    }
    Ok(format!("sent 3 protocol {proto} datagrams"))
}

fn sctp(dst: Ipv4Addr, port: u16) -> Result<String, String> {
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Sctp)
        .map_err(|e| format!("SCTP socket: {e}"))?;
    let addr = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(dst, port));
    // A blocking connect: SCTP retries INIT for a while; bound by alarm.
    // SAFETY: alarm(2) only schedules SIGALRM, whose default action ends
    // this single-purpose process.
    unsafe { libc::alarm(3) };
    match nix::sys::socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok("connected".into()),
        Err(e) => Err(format!("connect: {e}")),
    }
}

fn udp(addr: IpAddr, port: u16, payload: &[u8]) -> Result<String, String> {
    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    for _ in 0..3 {
        s.send_to(payload, SocketAddr::new(addr, port)).map_err(|e| format!("send: {e}"))?;
    }
    Ok("sent 3 datagrams".into())
}

fn tcp(addr: IpAddr, port: u16, bytes: &[u8]) -> Result<String, String> {
    let target = SocketAddr::new(addr, port);
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3)).map_err(|e| format!("connect {target}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(4))).map_err(|e| e.to_string())?;
    s.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    Ok(format!("reply: {}", String::from_utf8_lossy(&reply).replace('\r', "\\r")))
}

/// One connection with `bytes` sent and the first bytes of the reply read.
fn exchange(target: SocketAddr, bytes: &[u8]) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(1)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => Ok(s),
        Ok(_) => Err("closed without a reply".into()),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn hold(addr: IpAddr, port: u16, n: usize, bytes: &[u8]) -> Result<String, String> {
    let target = SocketAddr::new(addr, port);
    let held: Vec<TcpStream> = (0..n).filter_map(|_| exchange(target, bytes).ok()).collect();
    let k = held.len();
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let after = match exchange(target, bytes) {
        Ok(_) => "made".to_string(),
        Err(e) => e,
    };
    Ok(format!("held {k} of {n}; after closing: {after}"))
}

fn ptrace(pid: i32) -> Result<String, String> {
    let p = nix::unistd::Pid::from_raw(pid);
    // SAFETY: PTRACE_ATTACH takes no pointers; the result is checked.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, std::ptr::null_mut::<libc::c_void>(), std::ptr::null_mut::<libc::c_void>()) };
    let attach = if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    let mut buf = [0u8; 16];
    let local = [std::io::IoSliceMut::new(&mut buf)];
    let remote = [nix::sys::uio::RemoteIoVec { base: 0x400000, len: 16 }];
    let mut local = local;
    let read = nix::sys::uio::process_vm_readv(p, &mut local, &remote);
    match (attach, read) {
        (Err(a), Err(r)) => Err(format!("attach: {a}; process_vm_readv: {r}")),
        (a, r) => Ok(format!("attach: {a:?}; process_vm_readv: {r:?}")),
    }
}

/// rtnetlink attribute: length, type, payload, padding to 4 bytes.
fn nl_attr(kind: u16, data: &[u8]) -> Vec<u8> {
    let len = 4 + data.len();
    let mut out = Vec::with_capacity(len + 3);
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(len.div_ceil(4) * 4, 0);
    out
}

/// One rtnetlink request and its first answer.
fn nl_request(kind: u16, flags: u16, body: &[u8]) -> Result<Vec<u8>, String> {
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute).map_err(|e| format!("netlink socket: {e}"))?;
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    // SAFETY: plain send/recv on an owned socket with buffers of the given lengths.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; 65536];
    // SAFETY: as above.
    let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got < 0 {
        return Err(format!("netlink recv: {}", std::io::Error::last_os_error()));
    }
    buf.truncate(got as usize);
    Ok(buf)
}

fn ifinfomsg(index: i32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

/// IFACE's peer: (its ifindex there, the id of its namespace here).
fn peer_of(iface: &str) -> Result<(u32, i32), String> {
    let index = nix::net::if_::if_nametoindex(iface).map_err(|e| format!("{iface}: {e}"))? as i32;
    let answer = nl_request(libc::RTM_GETLINK, 0, &ifinfomsg(index))?;
    if answer.len() < 32 {
        return Err("short RTM_GETLINK answer".into());
    }
    let (mut link, mut nsid) = (None, None);
    let mut at = 32; // nlmsghdr + ifinfomsg
    while at + 4 <= answer.len() {
        let len = u16::from_ne_bytes([answer[at], answer[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([answer[at + 2], answer[at + 3]]) & 0x3fff;
        if len < 4 || at + len > answer.len() {
            break;
        }
        let data = &answer[at + 4..at + len];
        match kind {
            5 if data.len() >= 4 => link = Some(u32::from_ne_bytes(data[..4].try_into().unwrap())), // IFLA_LINK
            37 if data.len() >= 4 => nsid = Some(i32::from_ne_bytes(data[..4].try_into().unwrap())), // IFLA_LINK_NETNSID
            _ => {}
        }
        at += len.div_ceil(4) * 4;
    }
    match (link, nsid) {
        (Some(l), Some(n)) => Ok((l, n)),
        _ => Err(format!("{iface} shows no peer in another namespace (link {link:?}, netnsid {nsid:?})")),
    }
}

/// The two ways CAP_NET_ADMIN here could reach the peer's namespace.
fn peer_link(iface: &str, lower: Option<u32>, veth: Option<&str>) -> Result<String, String> {
    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINK: u16 = 5;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const IFLA_LINK_NETNSID: u16 = 37;
    const IFLA_TARGET_NETNSID: u16 = 46;
    const VETH_INFO_PEER: u16 = 1;
    let (peer_index, nsid) = peer_of(iface)?;
    let peer_index = lower.unwrap_or(peer_index);
    let mut body = ifinfomsg(0);
    match veth {
        None => {
            body.extend(nl_attr(IFLA_IFNAME, b"bprobe0\0"));
            body.extend(nl_attr(IFLA_LINK, &peer_index.to_ne_bytes()));
            body.extend(nl_attr(IFLA_LINK_NETNSID, &nsid.to_ne_bytes()));
            let mode = nl_attr(1, &4u32.to_ne_bytes()); // IFLA_MACVLAN_MODE bridge
            body.extend(nl_attr(IFLA_LINKINFO, &[nl_attr(IFLA_INFO_KIND, b"macvlan\0"), nl_attr(IFLA_INFO_DATA, &mode)].concat()));
        }
        Some(name) => {
            body.extend(nl_attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
            body.extend(nl_attr(IFLA_TARGET_NETNSID, &nsid.to_ne_bytes()));
            let peer = [ifinfomsg(0), nl_attr(IFLA_IFNAME, format!("{name}-p\0").as_bytes())].concat();
            let data = nl_attr(VETH_INFO_PEER, &peer);
            body.extend(nl_attr(IFLA_LINKINFO, &[nl_attr(IFLA_INFO_KIND, b"veth\0"), nl_attr(IFLA_INFO_DATA, &data)].concat()));
        }
    }
    let flags = (libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let answer = nl_request(libc::RTM_NEWLINK, flags, &body)?;
    let code = answer.get(16..20).map(|b| i32::from_ne_bytes(b.try_into().unwrap())).ok_or("short answer")?;
    match code {
        0 => Ok(format!("created (peer ifindex {peer_index}, netnsid {nsid})")),
        e => Err(format!("RTM_NEWLINK: {}", std::io::Error::from_raw_os_error(-e))),
    }
}
