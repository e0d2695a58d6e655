//! Direction of a socket within one snapshot. Pure: it looks only at the snapshot's sockets.
//!
//! Rules, applied in this order (documented on `sockets.direction`):
//! 1. `listen`: a TCP socket in LISTEN, or a UDP socket without a peer.
//! 2. `internal`: both ends loopback, or both ends in local networks (private or link-local).
//! 3. `inbound`: the local port is one this host listens on for the same protocol (on the same
//!    local address or a wildcard one), so the peer came to us.
//! 4. `outbound`: everything else; we opened it from an ephemeral port.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Proto, SocketRecord};
use crate::netaddr::{scope, Scope};

/// Direction of a socket relative to this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Listen,
    Internal,
    Inbound,
    Outbound,
}

impl Direction {
    /// Name stored in the `direction` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Listen => "listen",
            Direction::Internal => "internal",
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// True when the socket has no peer: a listener or an unconnected UDP socket.
pub fn is_listener(s: &SocketRecord) -> bool {
    match s.proto {
        Proto::Tcp => s.state == "LISTEN",
        Proto::Udp => s.remote_addr.is_none_or(|a| a.is_unspecified()),
    }
}

/// The listening endpoints of a snapshot, to tell inbound from outbound.
pub struct Listeners {
    endpoints: HashSet<(Proto, IpAddr, u16)>,
    wildcard: HashSet<(Proto, u16)>,
}

impl Listeners {
    /// Collects the listeners among `sockets`.
    pub fn of(sockets: &[SocketRecord]) -> Self {
        let mut endpoints = HashSet::new();
        let mut wildcard = HashSet::new();
        for s in sockets.iter().filter(|s| is_listener(s)) {
            if s.local_addr.is_unspecified() {
                wildcard.insert((s.proto, s.local_port));
            } else {
                endpoints.insert((s.proto, s.local_addr, s.local_port));
            }
        }
        Listeners { endpoints, wildcard }
    }

    fn serves(&self, proto: Proto, addr: IpAddr, port: u16) -> bool {
        self.wildcard.contains(&(proto, port)) || self.endpoints.contains(&(proto, addr, port))
    }

    /// Direction of one socket of the snapshot these listeners came from.
    pub fn direction(&self, s: &SocketRecord) -> Direction {
        if is_listener(s) {
            return Direction::Listen;
        }
        if let Some(remote) = s.remote_addr {
            let (l, r) = (scope(s.local_addr), scope(remote));
            let both_loopback = l == Scope::Loopback && r == Scope::Loopback;
            let both_local = l.is_local_network() && r.is_local_network();
            if both_loopback || both_local {
                return Direction::Internal;
            }
        }
        if self.serves(s.proto, s.local_addr, s.local_port) {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(proto: Proto, local: &str, lport: u16, remote: Option<(&str, u16)>, state: &'static str) -> SocketRecord {
        SocketRecord {
            proto,
            local_addr: local.parse().unwrap(),
            local_port: lport,
            remote_addr: remote.map(|(a, _)| a.parse().unwrap()),
            remote_port: remote.map(|(_, p)| p),
            state: state.into(),
            pids: vec![],
            uid: None,
            inode: None,
            recv_queue: None,
            send_queue: None,
            tcp: None,
        }
    }

    #[test]
    fn rules_in_order() {
        let sockets = vec![
            sock(Proto::Tcp, "0.0.0.0", 22, None, "LISTEN"),
            sock(Proto::Tcp, "203.0.113.5", 443, None, "LISTEN"),
            sock(Proto::Tcp, "10.0.0.5", 22, Some(("8.8.4.4", 50000)), "ESTABLISHED"),
            sock(
                Proto::Tcp,
                "10.0.0.5",
                51000,
                Some(("93.184.216.34", 443)),
                "ESTABLISHED",
            ),
            sock(Proto::Tcp, "127.0.0.1", 22, Some(("127.0.0.1", 40000)), "ESTABLISHED"),
            sock(Proto::Tcp, "10.0.0.5", 51001, Some(("192.168.1.1", 80)), "SYN_SENT"),
            sock(Proto::Tcp, "fe80::1", 51002, Some(("fd00::2", 80)), "ESTABLISHED"),
            sock(Proto::Udp, "0.0.0.0", 53, None, "UNCONN"),
            sock(Proto::Udp, "10.0.0.5", 53, Some(("8.8.8.8", 33000)), "CONNECTED"),
            sock(Proto::Udp, "10.0.0.5", 44000, Some(("8.8.8.8", 53)), "CONNECTED"),
            // Port 443 is only served on 203.0.113.5: the same port on another address is ours.
            sock(Proto::Tcp, "198.51.100.9", 443, Some(("8.8.8.8", 443)), "ESTABLISHED"),
            sock(Proto::Tcp, "203.0.113.5", 443, Some(("8.8.8.8", 50123)), "ESTABLISHED"),
        ];
        let listeners = Listeners::of(&sockets);
        let got: Vec<&str> = sockets.iter().map(|s| listeners.direction(s).as_str()).collect();
        assert_eq!(
            got,
            vec![
                "listen", "listen", "inbound", "outbound", "internal", "internal", "internal", "listen", "inbound",
                "outbound", "outbound", "inbound"
            ]
        );
    }

    #[test]
    fn tcp_port_does_not_make_udp_inbound() {
        let sockets = vec![
            sock(Proto::Tcp, "0.0.0.0", 53, None, "LISTEN"),
            sock(Proto::Udp, "10.0.0.5", 53, Some(("8.8.8.8", 53)), "CONNECTED"),
        ];
        let listeners = Listeners::of(&sockets);
        assert_eq!(listeners.direction(&sockets[1]), Direction::Outbound);
    }
}
