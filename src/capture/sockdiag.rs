//! Linux sockets straight from the kernel: one NETLINK_SOCK_DIAG dump per (family, protocol),
//! asking for INET_DIAG_INFO so every TCP socket arrives with its `struct tcp_info`.
//!
//! Why not netstat2 on Linux: it issues the same dumps but without INET_DIAG_INFO (so the
//! byte counters would need a second dump of every socket), drops the peer of connected UDP
//! sockets, and reads with an 8 KiB buffer. One dump with the info attached is what `ss -tanpi`
//! does too, and it is what keeps a snapshot cheap at tens of thousands of sockets. netstat2
//! stays the socket source on the other platforms (see `system`).
//!
//! `tcp_info` is parsed by offset with explicit length checks, because its length depends on
//! the kernel version: a field the running kernel does not provide is `None`, never zero.

use std::net::IpAddr;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{nlas::Nla, ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::{Proto, SocketRecord, TcpCounterFields, TcpCounters};
use crate::error::{Error, Result};

/// Kernel TCP state numbers (include/net/tcp_states.h) to the names the store uses.
fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Reads every TCP and UDP socket, IPv4 and IPv6, with tcp_info for TCP.
pub fn dump_all() -> Result<Vec<SocketRecord>> {
    // Sized from the kernel's own counts: at tens of thousands of sockets, growing by doubling
    // would hold the old and the new buffer at once, tens of megabytes more at the peak.
    let mut out = Vec::with_capacity(expected_sockets(
        &std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default(),
        &std::fs::read_to_string("/proc/net/sockstat6").unwrap_or_default(),
    ));
    for (family, proto) in [
        (AF_INET, Proto::Tcp),
        (AF_INET6, Proto::Tcp),
        (AF_INET, Proto::Udp),
        (AF_INET6, Proto::Udp),
    ] {
        dump(family, proto, &mut out)?;
    }
    Ok(out)
}

/// How many sockets a dump will return, from /proc/net/sockstat and sockstat6 of this network
/// namespace: TCP and UDP sockets in use in both families and TIME_WAIT ones (not `alloc`,
/// which counts every namespace of the host), plus a small margin for sockets opened meanwhile.
/// An estimate only: 0 when the files are unreadable.
fn expected_sockets(sockstat: &str, sockstat6: &str) -> usize {
    let field = |text: &str, line: &str, name: &str| -> usize {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|rest| {
                let words: Vec<&str> = rest.split_whitespace().collect();
                words.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok())
            })
            .unwrap_or(0)
    };
    let tcp = field(sockstat, "TCP:", "inuse") + field(sockstat6, "TCP6:", "inuse") + field(sockstat, "TCP:", "tw");
    let udp = field(sockstat, "UDP:", "inuse") + field(sockstat6, "UDP6:", "inuse");
    if tcp + udp == 0 {
        0
    } else {
        tcp + udp + 64
    }
}

fn collect_err(e: impl std::fmt::Display) -> Error {
    Error::Collect {
        what: "sockets (netlink sock_diag)",
        reason: e.to_string(),
    }
}

fn dump(family: u8, proto: Proto, out: &mut Vec<SocketRecord>) -> Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(collect_err)?;
    socket.bind_auto().map_err(collect_err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(collect_err)?;
    // A larger receive buffer lets the kernel batch more sockets per recv; failure is harmless.
    let _ = socket.set_rx_buf_sz(4 << 20);

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let (protocol, extensions) = match proto {
        Proto::Tcp => (IPPROTO_TCP, ExtensionFlags::INFO),
        Proto::Udp => (IPPROTO_UDP, ExtensionFlags::empty()),
    };
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions,
            states: StateFlags::all(),
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0u8; request.buffer_len()];
    request.serialize(&mut buf[..]);
    socket.send(&buf[..], 0).map_err(collect_err)?;

    let mut recv_buf = vec![0u8; 256 * 1024];
    loop {
        let size = socket.recv(&mut &mut recv_buf[..], 0).map_err(collect_err)?;
        if size == 0 {
            return Err(collect_err("netlink socket closed before the dump ended"));
        }
        let mut offset = 0;
        while offset < size {
            let message: NetlinkMessage<SockDiagMessage> =
                NetlinkMessage::deserialize(&recv_buf[offset..size]).map_err(collect_err)?;
            let length = message.header.length as usize;
            if length == 0 {
                return Err(collect_err("netlink message of length 0"));
            }
            offset += length;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(collect_err(format!("kernel answered with error {:?}", e.code)));
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    out.push(to_record(proto, &response));
                }
                _ => {}
            }
        }
    }
}

fn peer(addr: IpAddr, port: u16) -> (Option<IpAddr>, Option<u16>) {
    if addr.is_unspecified() && port == 0 {
        (None, None)
    } else {
        (Some(addr), Some(port))
    }
}

fn to_record(proto: Proto, response: &netlink_packet_sock_diag::inet::InetResponse) -> SocketRecord {
    let h = &response.header;
    let (remote_addr, remote_port) = peer(h.socket_id.destination_address, h.socket_id.destination_port);
    let state = match proto {
        Proto::Tcp => tcp_state_name(h.state).into(),
        Proto::Udp if remote_addr.is_some() => "CONNECTED".into(),
        Proto::Udp => "UNCONN".into(),
    };
    let tcp = response.nlas.iter().find_map(|nla| match nla {
        Nla::TcpInfo(raw) => Some(parse_tcp_info(raw)),
        _ => None,
    });
    SocketRecord {
        proto,
        local_addr: h.socket_id.source_address,
        local_port: h.socket_id.source_port,
        remote_addr,
        remote_port,
        state,
        pids: Vec::new(),
        uid: Some(h.uid),
        // TIME_WAIT and request sockets have no inode.
        inode: (h.inode != 0).then_some(u64::from(h.inode)),
        recv_queue: Some(h.recv_queue),
        send_queue: Some(h.send_queue),
        tcp,
    }
}

fn field_u8(raw: &[u8], at: usize) -> Option<u8> {
    raw.get(at).copied()
}

fn field_u32(raw: &[u8], at: usize) -> Option<u32> {
    raw.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn field_u64(raw: &[u8], at: usize) -> Option<u64> {
    raw.get(at..at + 8)
        .map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

/// Parses `struct tcp_info` (include/uapi/linux/tcp.h) by field offset. The kernel sends as
/// many bytes as it knows; later fields are absent on older kernels.
pub(crate) fn parse_tcp_info(raw: &[u8]) -> TcpCounters {
    TcpCounterFields {
        retransmits: field_u8(raw, 2).map(u32::from),
        unacked: field_u32(raw, 24),
        lost: field_u32(raw, 32),
        last_data_sent_ms: field_u32(raw, 44),
        last_data_recv_ms: field_u32(raw, 52),
        rtt_us: field_u32(raw, 68),
        rttvar_us: field_u32(raw, 72),
        snd_cwnd: field_u32(raw, 80),
        total_retrans: field_u32(raw, 100),
        bytes_acked: field_u64(raw, 120),
        bytes_received: field_u64(raw, 128),
        segs_out: field_u32(raw, 136).map(u64::from),
        segs_in: field_u32(raw, 140).map(u64::from),
        min_rtt_us: field_u32(raw, 148),
        data_segs_in: field_u32(raw, 152).map(u64::from),
        data_segs_out: field_u32(raw, 156).map(u64::from),
        delivery_rate_bps: field_u64(raw, 160),
        bytes_sent: field_u64(raw, 200),
        bytes_retrans: field_u64(raw, 208),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tcp_info_gives_none_not_zero() {
        // A 4.9-era kernel sends 168 bytes: no bytes_sent (offset 200).
        let mut raw = vec![0u8; 168];
        raw[120..128].copy_from_slice(&1234u64.to_ne_bytes());
        raw[68..72].copy_from_slice(&250u32.to_ne_bytes());
        let c = parse_tcp_info(&raw);
        assert_eq!(c.bytes_acked(), Some(1234));
        assert_eq!(c.rtt_us(), Some(250));
        assert_eq!(c.delivery_rate_bps(), Some(0));
        assert_eq!(c.bytes_sent(), None);
        assert_eq!(c.bytes_retrans(), None);
        assert_eq!(parse_tcp_info(&[]).rtt_us(), None);
    }

    #[test]
    fn full_tcp_info_reads_every_field() {
        let mut raw = vec![0u8; 232];
        raw[200..208].copy_from_slice(&99u64.to_ne_bytes());
        raw[136..140].copy_from_slice(&7u32.to_ne_bytes());
        let c = parse_tcp_info(&raw);
        assert_eq!(c.bytes_sent(), Some(99));
        assert_eq!(c.segs_out(), Some(7));
    }

    #[test]
    fn expected_sockets_reads_both_families() {
        let v4 = "sockets: used 300\nTCP: inuse 120 orphan 0 tw 30 alloc 150 mem 4\nUDP: inuse 7 mem 1\n";
        let v6 = "TCP6: inuse 30\nUDP6: inuse 3\n";
        assert_eq!(expected_sockets(v4, v6), 120 + 30 + 30 + 7 + 3 + 64);
        assert_eq!(expected_sockets("", ""), 0);
        assert_eq!(expected_sockets("garbage", "TCP6: x"), 0);
    }

    #[test]
    fn live_dump_sees_a_loopback_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sockets = dump_all().unwrap();
        assert!(sockets
            .iter()
            .any(|s| s.proto == Proto::Tcp && s.local_port == port && s.state == "LISTEN" && s.remote_addr.is_none()));
    }
}
