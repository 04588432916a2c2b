//! A counting sink in the host's own namespace (or another one, such as a
//! jail's host side): a TCP listener and a UDP socket on `[::]:port` (every
//! address of that namespace, IPv4 and IPv6). Nothing a jailed container
//! sends may reach it. Counting drains what queued up, so no thread is
//! needed.

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use crate::hostside::run_in;

#[derive(Debug)]
pub struct HostSink {
    pub port: u16,
    tcp: TcpListener,
    udp: UdpSocket,
    tcp_seen: u64,
    udp_seen: u64,
    /// Namespace the sockets live in (`None`: the host's).
    netns: Option<PathBuf>,
}

impl HostSink {
    /// Binds both sockets on `[::]:port` (dual stack).
    pub fn bind(port: u16) -> HostSink {
        HostSink::bind_in(None, port)
    }

    /// Binds both sockets on `[::]:port` inside `netns` (its loopback must
    /// be up: the barrier's controls go over it).
    pub fn bind_in(netns: Option<&Path>, port: u16) -> HostSink {
        let (tcp, udp) = run_in(netns, move || {
            let tcp = TcpListener::bind(("::", port)).unwrap_or_else(|e| panic!("bind tcp sink [::]:{port}: {e}"));
            let udp = UdpSocket::bind(("::", port)).unwrap_or_else(|e| panic!("bind udp sink [::]:{port}: {e}"));
            (tcp, udp)
        });
        tcp.set_nonblocking(true).expect("nonblocking tcp sink");
        udp.set_nonblocking(true).expect("nonblocking udp sink");
        HostSink { port, tcp, udp, tcp_seen: 0, udp_seen: 0, netns: netns.map(Path::to_path_buf) }
    }

    /// (TCP connections, UDP datagrams) once everything sent before has had
    /// its chance: one control of each is sent over loopback, waited for
    /// and not counted.
    pub fn counts_after_barrier(&mut self) -> (u64, u64) {
        let (t0, u0) = self.counts();
        let port = self.port;
        let (_udp, tcp) = run_in(self.netns.as_deref(), move || {
            let udp = UdpSocket::bind("[::1]:0").expect("control socket");
            udp.send_to(b"control", ("::1", port)).expect("control datagram");
            let tcp = std::net::TcpStream::connect(("::1", port)).expect("control connection");
            (udp, tcp)
        });
        let (t, u) = crate::deadline::poll_until(std::time::Duration::from_secs(5), "the host sink to count the controls", || {
            let (t, u) = self.counts();
            (t > t0 && u > u0).then_some((t, u))
        });
        drop(tcp);
        (t - 1, u - 1)
    }

    /// (TCP connections, UDP datagrams) received so far.
    pub fn counts(&mut self) -> (u64, u64) {
        loop {
            match self.tcp.accept() {
                Ok(_) => self.tcp_seen += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("host tcp sink: {e}"),
            }
        }
        let mut buf = [0u8; 2048];
        loop {
            match self.udp.recv_from(&mut buf) {
                Ok(_) => self.udp_seen += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("host udp sink: {e}"),
            }
        }
        (self.tcp_seen, self.udp_seen)
    }
}
