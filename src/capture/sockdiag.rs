//! Linux sockets straight from the kernel through NETLINK_SOCK_DIAG, asking for INET_DIAG_INFO
//! so every TCP socket arrives with its `struct tcp_info`.
//!
//! Why not netstat2 on Linux: it issues the same dumps but without INET_DIAG_INFO (so the
//! byte counters would need a second dump of every socket), drops the peer of connected UDP
//! sockets, and reads with an 8 KiB buffer. One dump with the info attached is what `ss -tanpi`
//! does too, and it is what keeps a snapshot cheap at tens of thousands of sockets. netstat2
//! stays the socket source on the other platforms (see `system`).
//!
//! Why TCP is asked for with the older `TCPDIAG_GETSOCK` request: a `SOCK_DIAG_BY_FAMILY`
//! request names one address family, and the kernel answers each by walking the whole TCP
//! established hash table (sized from memory, 262 144 buckets on a 24 GiB host) and skipping the
//! other family's sockets. The older request dumps both families in one walk (the kernel's
//! `inet_diag_dump_compat` asks for `AF_UNSPEC`), which halves the cost that dominates a dump on
//! an ordinary host. A kernel that refuses it gets the two per-family requests instead, from then
//! on. UDP's table is small and is asked per family.
//!
//! The messages are built and read here by offset (include/uapi/linux/inet_diag.h), with
//! explicit length checks: one reader holds one netlink socket and one receive buffer for the
//! whole run, so a snapshot allocates nothing but its records. `tcp_info` is parsed by offset
//! too, because its length depends on the kernel version: a field the running kernel does not
//! provide is `None`, never zero.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::{Proto, SocketRecord, TcpCounterFields, TcpCounters};
use crate::error::{Error, Result};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// netlink message types and flags (include/uapi/linux/netlink.h, sock_diag.h, inet_diag.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCPDIAG_GETSOCK: u16 = 18;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HEADER_LEN: usize = 16;
/// `struct inet_diag_msg`: the fixed part of every answer, before its attributes.
const INET_DIAG_MSG_LEN: usize = 72;
/// The INET_DIAG_INFO attribute (`struct tcp_info`) and its request bit.
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_INFO_BIT: u8 = 1 << (INET_DIAG_INFO - 1);
/// Every TCP state, TIME_WAIT and request sockets included.
const ALL_STATES: u32 = 0xffff_ffff;

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

/// One dump request: which message, for which family and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// `TCPDIAG_GETSOCK` with `struct inet_diag_req`: TCP of both families in one walk.
    TcpBothFamilies,
    /// `SOCK_DIAG_BY_FAMILY` with `struct inet_diag_req_v2`.
    ByFamily { family: u8, proto: Proto },
}

impl Request {
    fn proto(self) -> Proto {
        match self {
            Request::TcpBothFamilies => Proto::Tcp,
            Request::ByFamily { proto, .. } => proto,
        }
    }

    /// The whole netlink message (header and request), with sequence number `seq`.
    fn encode(self, seq: u32) -> Vec<u8> {
        let (kind, body) = match self {
            Request::TcpBothFamilies => {
                // struct inet_diag_req: family, src_len, dst_len, ext, id (48 bytes), states, dbs.
                // The family is ignored by the kernel (it asks for AF_UNSPEC); AF_INET is what
                // `ss` sent with this request.
                let mut body = vec![0u8; 60];
                body[0] = AF_INET;
                body[3] = INET_DIAG_INFO_BIT;
                body[52..56].copy_from_slice(&ALL_STATES.to_ne_bytes());
                (TCPDIAG_GETSOCK, body)
            }
            Request::ByFamily { family, proto } => {
                // struct inet_diag_req_v2: family, protocol, ext, pad, states, id (48 bytes).
                let mut body = vec![0u8; 56];
                body[0] = family;
                (body[1], body[2]) = match proto {
                    Proto::Tcp => (IPPROTO_TCP, INET_DIAG_INFO_BIT),
                    Proto::Udp => (IPPROTO_UDP, 0),
                };
                body[4..8].copy_from_slice(&ALL_STATES.to_ne_bytes());
                (SOCK_DIAG_BY_FAMILY, body)
            }
        };
        let len = NLMSG_HEADER_LEN + body.len();
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&(len as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        message.extend_from_slice(&seq.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&body);
        message
    }
}

/// What one netlink message of a dump's answer says. Handed over one at a time and consumed at
/// once, never collected, so the size of the socket variant costs nothing a box would save.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Answer {
    Socket(SocketRecord),
    Done,
    /// The kernel refused the request: its (positive) errno.
    Refused(i32),
    /// A message of another request (an earlier, abandoned dump) or of no interest.
    Other,
}

/// Reads one received buffer: each message's answer, and the length it took. Stops with an error
/// at a message shorter than its header says, which only a kernel bug or a foreign socket makes.
fn read_answers(buf: &[u8], seq: u32, proto: Proto, mut each: impl FnMut(Answer)) -> Result<()> {
    let mut at = 0;
    while at + NLMSG_HEADER_LEN <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < NLMSG_HEADER_LEN || at + len > buf.len() {
            return Err(collect_err(format!(
                "netlink message of length {len} at offset {at} of a {}-byte read",
                buf.len()
            )));
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let message_seq = u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
        let payload = &buf[at + NLMSG_HEADER_LEN..at + len];
        each(if message_seq != seq {
            Answer::Other
        } else {
            match kind {
                NLMSG_DONE => Answer::Done,
                // A refusal carries a negative errno; an acknowledgement (0) or a cut message in
                // the middle of a dump is no refusal, and must not turn the one-walk request off.
                NLMSG_ERROR => match payload
                    .get(..4)
                    .map(|b| -i64::from(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
                {
                    Some(errno) if errno > 0 && errno <= i64::from(i32::MAX) => Answer::Refused(errno as i32),
                    other => {
                        return Err(collect_err(format!(
                            "the dump's answer holds an error message without an error number ({other:?})"
                        )))
                    }
                },
                TCPDIAG_GETSOCK | SOCK_DIAG_BY_FAMILY => match parse_socket(proto, payload) {
                    Some(record) => Answer::Socket(record),
                    None => {
                        return Err(collect_err(format!(
                            "a socket message of {} bytes, shorter than struct inet_diag_msg",
                            payload.len()
                        )))
                    }
                },
                _ => Answer::Other,
            }
        });
        // Messages are aligned to 4 bytes (NLMSG_ALIGN).
        at += (len + 3) & !3;
    }
    Ok(())
}

/// `struct inet_diag_msg` and its attributes to a record; `None` when it is too short.
fn parse_socket(proto: Proto, msg: &[u8]) -> Option<SocketRecord> {
    if msg.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let family = msg[0];
    let state = msg[1];
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let address = |at: usize| -> IpAddr {
        if family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(msg[at], msg[at + 1], msg[at + 2], msg[at + 3]))
        } else {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&msg[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    let word = |at: usize| u32::from_ne_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    let (local_port, remote_port) = (port(4), port(6));
    let (local_addr, remote) = (address(8), address(24));
    let (remote_addr, remote_port) = peer(remote, remote_port);
    let state = match proto {
        Proto::Tcp => tcp_state_name(state).into(),
        Proto::Udp if remote_addr.is_some() => "CONNECTED".into(),
        Proto::Udp => "UNCONN".into(),
    };
    let mut tcp = None;
    let mut at = INET_DIAG_MSG_LEN;
    while at + 4 <= msg.len() {
        let len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        // The type without the nested and byte-order flags (NLA_TYPE_MASK).
        let kind = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
        if len < 4 || at + len > msg.len() {
            break;
        }
        if kind == INET_DIAG_INFO && proto == Proto::Tcp {
            tcp = Some(parse_tcp_info(&msg[at + 4..at + len]));
        }
        at += (len + 3) & !3;
    }
    let inode = word(68);
    Some(SocketRecord {
        proto,
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        state,
        pids: Vec::new(),
        uid: Some(word(64)),
        // TIME_WAIT and request sockets have no inode.
        inode: (inode != 0).then_some(u64::from(inode)),
        recv_queue: Some(word(56)),
        send_queue: Some(word(60)),
        tcp,
    })
}

/// Reads the socket table; kept for a whole run, so its socket and buffer are made once.
pub struct SockDiag {
    socket: Option<Socket>,
    buffer: Vec<u8>,
    seq: u32,
    /// Whether the kernel answers `TCPDIAG_GETSOCK`; false after its first refusal.
    tcp_both_families: bool,
}

impl Default for SockDiag {
    fn default() -> Self {
        Self::new()
    }
}

impl SockDiag {
    pub fn new() -> Self {
        SockDiag {
            socket: None,
            buffer: Vec::new(),
            seq: 0,
            tcp_both_families: true,
        }
    }

    /// Reads every TCP and UDP socket, IPv4 and IPv6, with tcp_info for TCP.
    pub fn dump_all(&mut self) -> Result<Vec<SocketRecord>> {
        // Sized from the kernel's own counts: at tens of thousands of sockets, growing by
        // doubling would hold the old and the new buffer at once, tens of megabytes more.
        let mut out = Vec::with_capacity(expected_sockets(
            &std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default(),
            &std::fs::read_to_string("/proc/net/sockstat6").unwrap_or_default(),
        ));
        let by_family = |family, proto| Request::ByFamily { family, proto };
        if self.tcp_both_families {
            match self.dump(Request::TcpBothFamilies, &mut out)? {
                None => {}
                Some(_) => {
                    self.tcp_both_families = false;
                    out.clear();
                }
            }
        }
        if !self.tcp_both_families {
            for family in [AF_INET, AF_INET6] {
                self.dump_or_fail(by_family(family, Proto::Tcp), &mut out)?;
            }
        }
        for family in [AF_INET, AF_INET6] {
            self.dump_or_fail(by_family(family, Proto::Udp), &mut out)?;
        }
        Ok(out)
    }

    fn dump_or_fail(&mut self, request: Request, out: &mut Vec<SocketRecord>) -> Result<()> {
        match self.dump(request, out)? {
            None => Ok(()),
            Some(errno) => Err(collect_err(format!(
                "the kernel refused the {request:?} dump: {}",
                std::io::Error::from_raw_os_error(errno)
            ))),
        }
    }

    /// One dump into `out`; `Some(errno)` when the kernel refused the request outright.
    fn dump(&mut self, request: Request, out: &mut Vec<SocketRecord>) -> Result<Option<i32>> {
        let result = self.dump_on_socket(request, out);
        if result.is_err() {
            // Part of an answer may still wait on the socket: the next dump starts afresh.
            self.socket = None;
        }
        result
    }

    fn dump_on_socket(&mut self, request: Request, out: &mut Vec<SocketRecord>) -> Result<Option<i32>> {
        if self.socket.is_none() {
            let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(collect_err)?;
            socket.bind_auto().map_err(collect_err)?;
            socket.connect(&SocketAddr::new(0, 0)).map_err(collect_err)?;
            // A larger receive buffer lets the kernel batch more sockets per recv; failure is
            // harmless.
            let _ = socket.set_rx_buf_sz(4 << 20);
            self.socket = Some(socket);
        }
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; 256 * 1024];
        }
        let Some(socket) = self.socket.as_mut() else {
            return Err(collect_err("no netlink socket"));
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        socket.send(&request.encode(seq), 0).map_err(collect_err)?;
        let proto = request.proto();
        loop {
            let size = socket.recv(&mut &mut self.buffer[..], 0).map_err(collect_err)?;
            if size == 0 {
                return Err(collect_err("netlink socket closed before the dump ended"));
            }
            let (mut done, mut refused) = (false, None);
            read_answers(&self.buffer[..size], seq, proto, |answer| match answer {
                Answer::Socket(record) => out.push(record),
                Answer::Done => done = true,
                Answer::Refused(errno) => refused = Some(errno),
                Answer::Other => {}
            })?;
            if let Some(errno) = refused {
                return Ok(Some(errno));
            }
            if done {
                return Ok(None);
            }
        }
    }
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

fn peer(addr: IpAddr, port: u16) -> (Option<IpAddr>, Option<u16>) {
    if addr.is_unspecified() && port == 0 {
        (None, None)
    } else {
        (Some(addr), Some(port))
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

    /// A `struct inet_diag_msg` answer with the given fields and optional tcp_info attribute.
    fn answer(
        seq: u32,
        family: u8,
        state: u8,
        local: (&[u8], u16),
        remote: (&[u8], u16),
        info: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut msg = vec![0u8; INET_DIAG_MSG_LEN];
        msg[0] = family;
        msg[1] = state;
        msg[4..6].copy_from_slice(&local.1.to_be_bytes());
        msg[6..8].copy_from_slice(&remote.1.to_be_bytes());
        msg[8..8 + local.0.len()].copy_from_slice(local.0);
        msg[24..24 + remote.0.len()].copy_from_slice(remote.0);
        msg[56..60].copy_from_slice(&3u32.to_ne_bytes());
        msg[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        msg[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        if let Some(info) = info {
            msg.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
            msg.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
            msg.extend_from_slice(info);
            msg.resize((msg.len() + 3) & !3, 0);
        }
        framed(TCPDIAG_GETSOCK, seq, &msg)
    }

    fn framed(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HEADER_LEN + payload.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize((out.len() + 3) & !3, 0);
        out
    }

    #[test]
    fn requests_have_the_kernels_layout() {
        let both = Request::TcpBothFamilies.encode(7);
        assert_eq!(both.len(), 16 + 60);
        assert_eq!(u32::from_ne_bytes(both[0..4].try_into().unwrap()), 76);
        assert_eq!(u16::from_ne_bytes(both[4..6].try_into().unwrap()), TCPDIAG_GETSOCK);
        assert_eq!(u16::from_ne_bytes(both[6..8].try_into().unwrap()), 0x301);
        assert_eq!(u32::from_ne_bytes(both[8..12].try_into().unwrap()), 7);
        assert_eq!(both[16 + 3], INET_DIAG_INFO_BIT);
        assert_eq!(
            u32::from_ne_bytes(both[16 + 52..16 + 56].try_into().unwrap()),
            ALL_STATES
        );
        let udp6 = Request::ByFamily {
            family: AF_INET6,
            proto: Proto::Udp,
        }
        .encode(8);
        assert_eq!(udp6.len(), 16 + 56);
        assert_eq!(u16::from_ne_bytes(udp6[4..6].try_into().unwrap()), SOCK_DIAG_BY_FAMILY);
        assert_eq!(&udp6[16..19], &[AF_INET6, IPPROTO_UDP, 0]);
        let tcp4 = Request::ByFamily {
            family: AF_INET,
            proto: Proto::Tcp,
        }
        .encode(9);
        assert_eq!(&tcp4[16..19], &[AF_INET, IPPROTO_TCP, INET_DIAG_INFO_BIT]);
        assert_eq!(u32::from_ne_bytes(tcp4[20..24].try_into().unwrap()), ALL_STATES);
    }

    #[test]
    fn answers_are_read_by_offset_in_both_families() {
        let mut info = vec![0u8; 232];
        info[200..208].copy_from_slice(&99u64.to_ne_bytes());
        let v6_local = "::1".parse::<Ipv6Addr>().unwrap().octets();
        let mut buf = answer(
            5,
            AF_INET,
            1,
            (&[127, 0, 0, 1], 443),
            (&[10, 0, 0, 9], 5555),
            Some(&info),
        );
        buf.extend(answer(5, AF_INET6, 10, (&v6_local, 8080), (&[0; 16], 0), None));
        buf.extend(answer(4, AF_INET, 1, (&[1, 1, 1, 1], 1), (&[2, 2, 2, 2], 2), None));
        buf.extend(framed(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        let mut answers = Vec::new();
        read_answers(&buf, 5, Proto::Tcp, |a| answers.push(a)).unwrap();
        assert_eq!(answers.len(), 4);
        let Answer::Socket(v4) = &answers[0] else {
            panic!("{:?}", answers[0])
        };
        assert_eq!((v4.local_addr, v4.local_port), ("127.0.0.1".parse().unwrap(), 443));
        assert_eq!(
            (v4.remote_addr, v4.remote_port),
            (Some("10.0.0.9".parse().unwrap()), Some(5555))
        );
        assert_eq!(
            (&*v4.state, v4.uid, v4.inode, v4.recv_queue),
            ("ESTABLISHED", Some(1000), Some(4242), Some(3))
        );
        assert_eq!(v4.tcp.as_ref().and_then(|t| t.bytes_sent()), Some(99));
        let Answer::Socket(v6) = &answers[1] else {
            panic!("{:?}", answers[1])
        };
        assert_eq!(
            (v6.local_addr, v6.local_port, &*v6.state),
            ("::1".parse().unwrap(), 8080, "LISTEN")
        );
        assert_eq!((v6.remote_addr, v6.tcp.is_none()), (None, true));
        // An answer of another (abandoned) request is not this dump's.
        assert_eq!(answers[2], Answer::Other);
        assert_eq!(answers[3], Answer::Done);
    }

    #[test]
    fn refusals_and_broken_messages_are_told_apart() {
        let mut answers = Vec::new();
        let refusal = framed(NLMSG_ERROR, 3, &(-22i32).to_ne_bytes());
        read_answers(&refusal, 3, Proto::Tcp, |a| answers.push(a)).unwrap();
        assert_eq!(answers, vec![Answer::Refused(22)]);
        // An acknowledgement (error 0) or a cut error message is no refusal: the dump failed.
        for payload in [&0i32.to_ne_bytes()[..], &[1u8, 2][..]] {
            let error = read_answers(&framed(NLMSG_ERROR, 3, payload), 3, Proto::Tcp, |_| {})
                .unwrap_err()
                .to_string();
            assert!(error.contains("without an error number"), "{error}");
        }
        // A message claiming more bytes than were read, and one too short for inet_diag_msg.
        let mut long = framed(TCPDIAG_GETSOCK, 3, &[0u8; 72]);
        long[0..4].copy_from_slice(&500u32.to_ne_bytes());
        let error = read_answers(&long, 3, Proto::Tcp, |_| {}).unwrap_err().to_string();
        assert!(error.contains("length 500"), "{error}");
        let short = framed(SOCK_DIAG_BY_FAMILY, 3, &[0u8; 40]);
        let error = read_answers(&short, 3, Proto::Udp, |_| {}).unwrap_err().to_string();
        assert!(error.contains("shorter than struct inet_diag_msg"), "{error}");
        // An attribute whose length overruns the message is ignored, not read past the end.
        let mut bad_attr = vec![0u8; INET_DIAG_MSG_LEN];
        bad_attr[0] = AF_INET;
        bad_attr.extend_from_slice(&200u16.to_ne_bytes());
        bad_attr.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        let mut answers = Vec::new();
        read_answers(&framed(TCPDIAG_GETSOCK, 3, &bad_attr), 3, Proto::Tcp, |a| {
            answers.push(a)
        })
        .unwrap();
        assert!(matches!(&answers[0], Answer::Socket(s) if s.tcp.is_none()));
    }

    /// The test's own sockets, as (proto, local, remote, state), from one reader's dump.
    fn own_sockets(diag: &mut SockDiag, ports: &[u16]) -> Vec<(Proto, String, String, String)> {
        let mut mine: Vec<_> = diag
            .dump_all()
            .unwrap()
            .into_iter()
            .filter(|s| ports.contains(&s.local_port) || s.remote_port.is_some_and(|p| ports.contains(&p)))
            .map(|s| {
                assert!(s.proto == Proto::Udp || s.tcp.is_some(), "TCP without tcp_info: {s:?}");
                (
                    s.proto,
                    format!("{}:{}", s.local_addr, s.local_port),
                    format!("{:?}:{:?}", s.remote_addr, s.remote_port),
                    s.state.to_string(),
                )
            })
            .collect();
        mine.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        mine
    }

    #[test]
    fn one_tcp_walk_sees_what_the_per_family_dumps_see() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let (_server, _) = v4.accept().unwrap();
        let ports = [
            v4.local_addr().unwrap().port(),
            v6.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port(),
        ];

        let mut both = SockDiag::new();
        let seen = own_sockets(&mut both, &ports);
        assert!(both.tcp_both_families, "this kernel refused TCPDIAG_GETSOCK");
        let mut per_family = SockDiag::new();
        per_family.tcp_both_families = false;
        assert_eq!(seen, own_sockets(&mut per_family, &ports));
        let listen = |addr: std::net::SocketAddr| {
            (
                Proto::Tcp,
                addr.to_string().replace(['[', ']'], ""),
                "None:None".to_string(),
                "LISTEN".to_string(),
            )
        };
        assert!(seen.contains(&listen(v4.local_addr().unwrap())), "{seen:?}");
        assert!(seen.contains(&listen(v6.local_addr().unwrap())), "{seen:?}");
        assert_eq!(seen.iter().filter(|s| s.3 == "ESTABLISHED").count(), 2, "{seen:?}");
        assert!(seen.iter().any(|s| s.0 == Proto::Udp && s.3 == "UNCONN"), "{seen:?}");
        // The same reader answers again, on its kept socket and buffer.
        assert_eq!(seen, own_sockets(&mut both, &ports));
        drop(client);
    }
}
