//! A counting sink in the host's own namespace: a TCP listener and a UDP
//! socket on `[::]:port` (every host address, IPv4 and IPv6, including the
//! jail-side end of every veth). Nothing a jailed container sends may reach
//! it. Counting drains what queued up, so no thread is needed.

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};

#[derive(Debug)]
pub struct HostSink {
    pub port: u16,
    tcp: TcpListener,
    udp: UdpSocket,
    tcp_seen: u64,
    udp_seen: u64,
}

impl HostSink {
    /// Binds both sockets on `[::]:port` (dual stack).
    pub fn bind(port: u16) -> HostSink {
        let tcp = TcpListener::bind(("::", port)).unwrap_or_else(|e| panic!("bind host tcp sink [::]:{port}: {e}"));
        let udp = UdpSocket::bind(("::", port)).unwrap_or_else(|e| panic!("bind host udp sink [::]:{port}: {e}"));
        tcp.set_nonblocking(true).expect("nonblocking tcp sink");
        udp.set_nonblocking(true).expect("nonblocking udp sink");
        HostSink { port, tcp, udp, tcp_seen: 0, udp_seen: 0 }
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
