//! Flow assembly: decoded packets become bidirectional flows with Zeek conn.log semantics.
//!
//! A flow is keyed by its 5-tuple in either direction; the originator is the sender of its
//! first packet, or its receiver when Zeek's likely-server-port heuristic says the first
//! packet came from the server (a TCP first packet other than a plain SYN, or any UDP one,
//! from a likely server port): the flow is then flipped and its history starts with `^`.
//! TCP endpoints run the state machine of Zeek's TCP analyzer (INACTIVE, SYN_SENT,
//! SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET), from which `conn_state`, `history` and
//! the sequence-number byte counts follow exactly as Zeek derives them. A SYN answering the
//! originator's SYN-ACK (the handshake captured out of order) flips the roles, as Zeek does.
//! Each side's stream is followed as Zeek's TCP reassembler follows it, without keeping
//! payload: data acknowledged but never captured is a content gap (history `G`/`g`,
//! `missed_bytes`).
//!
//! Only active flows are held in memory. A flow ends when it has been idle longer than its
//! protocol's timeout, or 5 s after TCP closed it (both FINs, or a RST — Zeek's
//! `tcp_close_delay` / `tcp_reset_delay`), or 5 s after an originator's SYN that got no
//! answer (Zeek's `tcp_attempt_delay`: an S0 row, and later packets are a new flow), or when a
//! SYN reuses its ports as Zeek's `IsReuse` decides (after a FIN or RST any SYN does).
//! Finished flows are handed out in batches; the module knows nothing of the store.
//!
//! A packet found inside a tunnel is a packet of its own flow, keyed by its own 5-tuple (as
//! Zeek keys connections); the flow's `tunnel_parents` holds the uid of the connection that
//! carried it (a UDP tunnel's flow) or of the IP tunnel (IP in IP, GRE), as Zeek's
//! `conn.log` does. IP tunnels are identified by their address pair, as Zeek's IPTunnel
//! analyzer does, for as long as they are active.

use std::collections::hash_map::Entry;
use std::net::IpAddr;

use crate::decode::{
    decode, flags as tf, icmp_checksum_ok, ip_packet, ip_tunnel, ipv4_header_checksum_ok, later_packets,
    later_packets_in_tunnel, tcp_checksum_ok, udp_checksum_ok, udp_tunnel, Decap, Decoded, IpPacket, LaterPackets,
    Transport, Tunnel, MAX_TUNNEL_DEPTH,
};
use crate::frag::{Fragment, Reassembler};

const NS: i64 = 1_000_000_000;
/// Zeek's TOO_LARGE_SEQ_DELTA: SYN/RST sequence jumps beyond this are not trusted.
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;

/// Finished flows the reading thread gathers before it hands them to the storing one (a Zeek
/// import: rows per batch).
pub const FLOW_BATCH: usize = 8192;

/// Timeouts that end flows, in nanoseconds of capture time.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub tcp_ns: i64,
    pub udp_ns: i64,
    pub icmp_ns: i64,
    /// How long a closed or reset TCP flow still takes stragglers (final ACKs, repeated RSTs).
    pub close_linger_ns: i64,
    /// Zeek's `tcp_attempt_delay`: a connection whose originator sent a SYN and whose responder
    /// sent nothing this long after it is ended (an S0 row); later packets start a new flow.
    pub attempt_ns: i64,
}

impl Default for Timeouts {
    /// Zeek's defaults: tcp_inactivity_timeout 5 min, udp and icmp 1 min, close/reset delay 5 s,
    /// tcp_attempt_delay 5 s.
    fn default() -> Self {
        Timeouts {
            tcp_ns: 300 * NS,
            udp_ns: 60 * NS,
            icmp_ns: 60 * NS,
            close_linger_ns: 5 * NS,
            attempt_ns: 5 * NS,
        }
    }
}

/// A finished flow: one row of `flows`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub uid: String,
    pub ts_ns: i64,
    pub duration_ns: i64,
    pub orig_h: IpAddr,
    pub orig_p: u16,
    pub resp_h: IpAddr,
    pub resp_p: u16,
    /// `tcp`, `udp` or `icmp` (ICMPv6 included, as in Zeek).
    pub proto: &'static str,
    pub ip_proto: u8,
    pub service: Option<&'static str>,
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    pub conn_state: &'static str,
    pub history: String,
    pub orig_pkts: u64,
    pub orig_ip_bytes: u64,
    pub resp_pkts: u64,
    pub resp_ip_bytes: u64,
    pub orig_frame_bytes: u64,
    pub resp_frame_bytes: u64,
    /// Payload bytes actually seen in packets (TCP: may differ from the sequence span).
    pub orig_payload_seen: u64,
    pub resp_payload_seen: u64,
    /// Position in the file of the flow's first packet (orders flows that start together).
    pub first_packet: u64,
    /// Bytes in content gaps (TCP data acknowledged but never seen), as Zeek's `missed_bytes`;
    /// 0 for UDP and ICMP.
    pub missed_bytes: u64,
    /// Zeek's `tunnel_parents`: the uids of the tunnels whose packets carried this flow's (the
    /// innermost encapsulation of each packet), in the order first seen; empty for a flow
    /// outside any tunnel.
    pub tunnel_parents: Vec<String>,
    /// Its packets carried a tunnel (VXLAN, Geneve, ...): its end closes the tunnel in the
    /// tunnel log.
    pub carried_tunnel: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: IpAddr,
    ap: u16,
    b: IpAddr,
    bp: u16,
    proto: u8,
}

impl Key {
    /// The canonical key and whether (src, sport) is its `a` side.
    fn of(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> (Key, bool) {
        if (src, sport) <= (dst, dport) {
            (
                Key {
                    a: src,
                    ap: sport,
                    b: dst,
                    bp: dport,
                    proto,
                },
                true,
            )
        } else {
            (
                Key {
                    a: dst,
                    ap: dport,
                    b: src,
                    bp: sport,
                    proto,
                },
                false,
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum TcpState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// One side's TCP bookkeeping, after Zeek's TCP_Endpoint. Sequence numbers are kept both
/// raw and unwrapped relative to the endpoint's start, so long connections count right.
#[derive(Debug, Clone, Copy, Default)]
struct TcpEnd {
    state: TcpState,
    prev_state: TcpState,
    /// Sequence numbering set up (by this side's first packet or the peer's first ACK).
    seq_init: bool,
    start_raw: u32,
    last_raw: u32,
    last_rel: i64,
    ack_raw: u32,
    ack_rel: i64,
    fin_cnt: u32,
    did_close: bool,
    hist_last_syn: Option<i64>,
    hist_last_fin: Option<i64>,
    hist_last_rst: Option<i64>,
    rxmit: u64,
    rxmit_threshold: u64,
    zero_win: u64,
    zero_win_threshold: u64,
    /// Zeek's FIN_seq: relative sequence number one past this side's last FIN.
    fin_seq: i64,
    gaps: u64,
    gap_threshold: u64,
    /// Segments with a bad checksum, and the count at which the next `C` is logged.
    bad_checksums: u64,
    bad_checksum_threshold: u64,
}

impl TcpEnd {
    fn set_state(&mut self, s: TcpState) {
        self.prev_state = self.state;
        self.state = s;
    }

    fn init_seq(&mut self, start: u32, last: u32) {
        self.seq_init = true;
        self.start_raw = start;
        self.ack_raw = start;
        self.ack_rel = 0;
        self.last_raw = last;
        self.last_rel = i64::from(last.wrapping_sub(start) as i32);
    }

    fn rel(&self, seq: u32) -> i64 {
        self.last_rel + i64::from(seq.wrapping_sub(self.last_raw) as i32)
    }

    /// Zeek's TCP_Endpoint::Size(): payload bytes from the sequence-number span.
    fn size(&self, peer: &TcpEnd) -> u64 {
        if !self.seq_init {
            return 0;
        }
        if self.prev_state == TcpState::SynSent && self.state == TcpState::Reset && peer.state == TcpState::Inactive {
            // A half-open connection found and aborted: its sequence numbers mean nothing.
            return 0;
        }
        let mut size = self.last_rel.max(self.ack_rel);
        if size > 0 {
            size -= 1; // the SYN octet
        }
        if self.fin_cnt > 0 && size > 0 {
            size -= 1; // the FIN octet
        }
        size.max(0) as u64
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct End {
    pkts: u64,
    ip_bytes: u64,
    frame_bytes: u64,
    payload: u64,
    tcp: TcpEnd,
}

#[derive(Debug, Clone)]
struct Flow {
    uid: String,
    first_packet: u64,
    first_ns: i64,
    /// Zeek's last_time: stops advancing once both sides closed.
    last_ns: i64,
    /// Any packet, for the idle timeout.
    seen_ns: i64,
    /// True when the originator is the key's `a` side.
    orig_is_a: bool,
    orig_h: IpAddr,
    orig_p: u16,
    resp_h: IpAddr,
    resp_p: u16,
    ip_proto: u8,
    kind: Kind,
    ends: [End; 2],
    history: String,
    /// History letters already recorded, per side (bit per letter).
    hist_seen: [u32; 2],
    closed_at: Option<i64>,
    /// When the originator's first SYN came (Zeek's attempt timer starts then).
    attempt_at: Option<i64>,
    /// Each side's stream as Zeek's reassembler sees it (TCP only).
    streams: [Stream; 2],
    /// Zeek's is_partial: an endpoint was first seen mid-connection.
    partial: bool,
    /// Bytes of the streams' content gaps (Zeek's missed_bytes).
    missed_bytes: u64,
    /// Uids of the tunnels that carried its packets (Zeek's tunnel_parents).
    tunnel_parents: Vec<String>,
    /// Tunnel kinds (`Tunnel::bit`) whose decapsulation failed on this flow: Zeek stops an
    /// analyzer on a connection after its first violation.
    tunnel_refused: u8,
    /// Inner packets were taken out of its packets (a UDP tunnel's flow).
    carried_tunnel: bool,
}

/// One side's byte stream as Zeek's TCP_Reassembler tracks it, reduced to what decides content
/// gaps: how far the stream is complete (`last_reassem_seq`), how far the peer's ACKs trimmed it
/// (`trim_seq`), and the segments received above a hole. Delivered data is not kept: Zeek keeps
/// it only until it is acknowledged, and it never changes what counts as missing. Sequence
/// numbers are relative to the side's start (its first data byte is 1).
#[derive(Debug, Clone, Default)]
struct Stream {
    /// First byte not yet received in order (Zeek starts it at 1).
    reassembled: u64,
    /// Bytes below this were acknowledged; later copies of them are ignored.
    trimmed: u64,
    /// Segments above a hole, `[seq, upper)`, sorted and disjoint, all above `reassembled`.
    /// Empty (no allocation) while the stream arrives in order.
    above_hole: Vec<(u64, u64)>,
    /// Zeek's skip_deliveries: data stopped being followed (too much above a hole with nothing
    /// acknowledged), and no further gaps are reported.
    skipping: bool,
}

/// Zeek's tcp_max_above_hole_without_any_acks: data above a hole, with none of the side's data
/// acknowledged yet, past which the reassembler gives up on the stream.
const MAX_ABOVE_HOLE_WITHOUT_ACKS: u64 = 16_384;

/// Separate runs of data above holes a side may have before netlens stops following it. Zeek
/// bounds its buffer by bytes only (tcp_excessive_data_without_further_acks, 10 MiB); this bound
/// keeps a crafted capture of many tiny disjoint segments from making each segment cost a long
/// list walk. Real losses leave a few holes at a time, far below it.
const MAX_HOLES: usize = 4096;

impl Stream {
    fn new() -> Self {
        Stream {
            reassembled: 1,
            trimmed: 1,
            ..Stream::default()
        }
    }

    /// Bytes received above the first hole (Zeek's NumUndeliveredBytes).
    fn undelivered(&self) -> u64 {
        self.above_hole
            .last()
            .map_or(0, |&(_, upper)| upper.saturating_sub(self.reassembled))
    }

    /// A segment `[seq, seq + len)` arrived (Zeek's DataSent and NewBlock): bytes the peer
    /// acknowledged (`acked`) or trimmed are dropped, in-order bytes advance the stream, and bytes
    /// above a hole wait in `above_hole`. `nothing_acked` is Zeek's NoDataAcked.
    fn data(&mut self, seq: u64, len: u64, acked: u64, nothing_acked: bool) {
        if self.skipping || len == 0 {
            return;
        }
        let upper = seq + len;
        let start = seq.max(acked).max(self.trimmed);
        if upper <= start {
            return;
        }
        if start <= self.reassembled {
            self.reassembled = self.reassembled.max(upper);
            self.catch_up();
        } else {
            insert_range(&mut self.above_hole, start, upper);
        }
        if (nothing_acked && self.undelivered() > MAX_ABOVE_HOLE_WITHOUT_ACKS) || self.above_hole.len() > MAX_HOLES {
            // Zeek: weird above_hole_data_without_any_acks, and deliveries stop.
            self.above_hole = Vec::new();
            self.skipping = true;
        }
    }

    /// Moves `reassembled` over the waiting segments it now reaches.
    fn catch_up(&mut self) {
        let reached = self
            .above_hole
            .iter()
            .take_while(|&&(s, _)| s <= self.reassembled)
            .count();
        for &(_, upper) in &self.above_hole[..reached] {
            self.reassembled = self.reassembled.max(upper);
        }
        self.above_hole.drain(..reached);
    }

    /// The peer acknowledged up to `ack` (Zeek's AckReceived, TrimToSeq and Undelivered): every
    /// hole below it is a content gap. Returns the gaps' lengths in order; `partial` is Zeek's
    /// IsPartial (an ACK of the first byte or two of a partial connection reveals nothing).
    fn acked(&mut self, ack: u64, partial: bool, gaps: &mut Vec<u64>) {
        if ack <= self.trimmed {
            return;
        }
        self.trimmed = ack;
        if ack <= self.reassembled || (ack <= 2 && partial) {
            return;
        }
        if !self.skipping {
            while let Some(&(seq, upper)) = self.above_hole.first() {
                if seq >= ack {
                    break;
                }
                gaps.push(seq - self.reassembled);
                self.reassembled = upper;
                self.above_hole.remove(0);
                self.catch_up();
            }
            if ack > self.reassembled {
                gaps.push(ack - self.reassembled);
            }
        }
        self.reassembled = self.reassembled.max(ack);
    }
}

/// Adds `[seq, upper)` to sorted disjoint ranges, merging what it overlaps or touches.
fn insert_range(ranges: &mut Vec<(u64, u64)>, seq: u64, upper: u64) {
    let at = ranges.partition_point(|&(_, u)| u < seq);
    let mut end = at;
    let (mut lo, mut hi) = (seq, upper);
    while end < ranges.len() && ranges[end].0 <= hi {
        lo = lo.min(ranges[end].0);
        hi = hi.max(ranges[end].1);
        end += 1;
    }
    ranges.splice(at..end, [(lo, hi)]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Icmp,
}

// History mask bits (one per letter, per side).
const H_SYN: u32 = 1;
const H_SYNACK: u32 = 1 << 1;
const H_ACK: u32 = 1 << 2;
const H_DATA: u32 = 1 << 3;
const H_FIN: u32 = 1 << 4;
const H_RST: u32 = 1 << 5;
const H_MULTI: u32 = 1 << 6;
const H_FINRST: u32 = 1 << 7;

impl Flow {
    /// Records a history letter once per side; true when it was already there.
    fn check_history(&mut self, side: usize, mask: u32, code: char) -> bool {
        if self.hist_seen[side] & mask == 0 {
            self.hist_seen[side] |= mask;
            self.add_history(side, code);
            false
        } else {
            true
        }
    }

    /// Zeek's Connection::FlipRoles: the responder becomes the originator. Each side's state and
    /// counts go with it; the history keeps its letters as written and gains a `^`, and the
    /// letters already recorded stay recorded for the role, not the host (as Zeek's mask does).
    fn flip(&mut self) {
        self.ends.swap(0, 1);
        self.streams.swap(0, 1);
        self.orig_is_a = !self.orig_is_a;
        std::mem::swap(&mut self.orig_h, &mut self.resp_h);
        std::mem::swap(&mut self.orig_p, &mut self.resp_p);
        self.history.push('^');
    }

    /// Zeek's TCP_Endpoint::ChecksumError and UDPSessionAdapter::HandleBadChecksum: `C` (`c`
    /// for the responder) at the 1st, 10th, 100th ... bad checksum of a side.
    fn checksum_error(&mut self, side: usize) {
        let e = &mut self.ends[side].tcp;
        e.bad_checksums += 1;
        if e.bad_checksum_threshold == 0 {
            e.bad_checksum_threshold = 1;
        }
        if e.bad_checksums == e.bad_checksum_threshold {
            e.bad_checksum_threshold = e.bad_checksum_threshold.saturating_mul(10);
            self.add_history(side, 'C');
        }
    }

    fn add_history(&mut self, side: usize, code: char) {
        self.history
            .push(if side == 0 { code } else { code.to_ascii_lowercase() });
    }

    /// Zeek's AttemptTimer condition: the originator sent a SYN (or SYN-ACK) and the responder
    /// nothing. Both states only move on from there, so checking it after the timer's time is
    /// checking it at that time.
    fn unanswered_attempt(&self) -> bool {
        matches!(self.ends[0].tcp.state, TcpState::SynSent | TcpState::SynAckSent)
            && self.ends[1].tcp.state == TcpState::Inactive
    }

    fn is_closed(&self) -> bool {
        let (o, r) = (self.ends[0].tcp.state, self.ends[1].tcp.state);
        self.kind == Kind::Tcp
            && ((o == TcpState::Closed && r == TcpState::Closed) || o == TcpState::Reset || r == TcpState::Reset)
    }

    fn conn_state(&self) -> &'static str {
        match self.kind {
            Kind::Tcp => tcp_conn_state(
                self.ends[0].tcp.state,
                self.ends[1].tcp.state,
                self.ends[0].tcp.size(&self.ends[1].tcp),
                self.ends[1].tcp.size(&self.ends[0].tcp),
                &self.history,
            ),
            Kind::Udp => match (self.ends[0].pkts > 0, self.ends[1].pkts > 0) {
                (true, true) => "SF",
                (true, false) => "S0",
                (false, true) => "SHR",
                (false, false) => "OTH",
            },
            Kind::Icmp => "OTH",
        }
    }

    fn record(self: Box<Self>) -> FlowRecord {
        let this = *self;
        this.into_record()
    }

    fn into_record(self) -> FlowRecord {
        let conn_state = self.conn_state();
        let (orig_bytes, resp_bytes) = match self.kind {
            Kind::Tcp => (
                self.ends[0].tcp.size(&self.ends[1].tcp),
                self.ends[1].tcp.size(&self.ends[0].tcp),
            ),
            _ => (self.ends[0].payload, self.ends[1].payload),
        };
        let proto = match self.kind {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Icmp => "icmp",
        };
        let [o, r] = self.ends;
        FlowRecord {
            service: service(self.kind, self.resp_p),
            uid: self.uid,
            ts_ns: self.first_ns,
            duration_ns: (self.last_ns - self.first_ns).max(0),
            orig_h: self.orig_h,
            orig_p: self.orig_p,
            resp_h: self.resp_h,
            resp_p: self.resp_p,
            proto,
            ip_proto: self.ip_proto,
            orig_bytes,
            resp_bytes,
            conn_state,
            history: self.history,
            orig_pkts: o.pkts,
            orig_ip_bytes: o.ip_bytes,
            resp_pkts: r.pkts,
            resp_ip_bytes: r.ip_bytes,
            orig_frame_bytes: o.frame_bytes,
            resp_frame_bytes: r.frame_bytes,
            orig_payload_seen: o.payload,
            resp_payload_seen: r.payload,
            first_packet: self.first_packet,
            missed_bytes: self.missed_bytes,
            tunnel_parents: self.tunnel_parents,
            carried_tunnel: self.carried_tunnel,
        }
    }
}

/// Zeek's `conn_state()` for TCP (base/protocols/conn/main.zeek).
fn tcp_conn_state(os: TcpState, rs: TcpState, orig_size: u64, resp_size: u64, history: &str) -> &'static str {
    use TcpState::*;
    let o_inactive = matches!(os, Inactive | Partial);
    let r_inactive = matches!(rs, Inactive | Partial);
    if rs == Reset {
        if matches!(os, SynSent | SynAckSent) || (os == Reset && orig_size == 0 && resp_size == 0) {
            "REJ"
        } else if o_inactive {
            "RSTRH"
        } else {
            "RSTR"
        }
    } else if os == Reset {
        if r_inactive {
            if rstos0_history(history) {
                "RSTOS0"
            } else {
                "OTH"
            }
        } else {
            "RSTO"
        }
    } else if rs == Closed && os == Closed {
        "SF"
    } else if os == Closed {
        if r_inactive {
            "SH"
        } else {
            "S2"
        }
    } else if rs == Closed {
        if o_inactive {
            "SHR"
        } else {
            "S3"
        }
    } else if os == SynSent && rs == Inactive {
        "S0"
    } else if os == Established && rs == Established {
        "S1"
    } else {
        "OTH"
    }
}

/// Zeek's `/^\^?S[^HAFGIQ]*R.*/`: a SYN, then nothing from the originator that shows a
/// handshake, then the originator's RST.
fn rstos0_history(h: &str) -> bool {
    let h = h.strip_prefix('^').unwrap_or(h);
    let Some(rest) = h.strip_prefix('S') else { return false };
    for c in rest.chars() {
        if c == 'R' {
            return true;
        }
        if "HAFGIQ".contains(c) {
            return false;
        }
    }
    false
}

/// Zeek's `TCPAnalyzer::WantConnection` role guess for a connection's first packet. A plain
/// SYN is never flipped. Any other first packet (SYN-ACK, ACK, data, FIN, RST) is flipped when
/// its source port is a likely server port and its destination port is not; when both are,
/// only a packet without SYN from the lower port is flipped (a SYN-ACK could be a stealth
/// scan's answer, and the higher port is the less plausible server).
fn flips_tcp(sport: u16, dport: u16, flags: u8) -> bool {
    let syn = flags & tf::SYN != 0;
    if syn && flags & tf::ACK == 0 {
        return false;
    }
    if !likely_server_port(Kind::Tcp, sport) {
        return false;
    }
    if likely_server_port(Kind::Tcp, dport) {
        !syn && sport < dport
    } else {
        true
    }
}

/// Zeek's default `likely_server_ports`: the union of the `redef likely_server_ports += ...`
/// of the protocol scripts a default Zeek loads (base/protocols/{dce-rpc, dhcp, dnp3, dns,
/// ftp, http, imap, irc, krb, ldap, modbus, mqtt, ntp, postgresql, radius, rdp, redis, sip,
/// smb, smtp, snmp, socks, ssh, ssl, syslog, xmpp} and base/packet-protocols/{ayiya, gtpv1, vxlan,
/// geneve}). Not in it: MySQL's ports (base/protocols/mysql/main.zeek registers its analyzer
/// for 1434 and 3306 but never adds them), and Teredo's 3544 (base/packet-protocols/teredo
/// added it until Zeek's scripts moved to connection removal hooks; it no longer does); nor
/// the ports of the analyzers registered by port only: finger (79), QUIC (443, 784, 853; 443
/// is DTLS's anyway), DHCPv6 (546, 547) and the ones with no ports (RFB, WebSocket). Only
/// the flip of a connection's first packet uses it.
fn likely_server_port(kind: Kind, port: u16) -> bool {
    match kind {
        Kind::Tcp => matches!(
            port,
            21 | 2811 // ftp
                | 22 // ssh
                | 25 | 587 // smtp
                | 53 // dns
                | 80 | 81 | 631 | 1080 | 3128 | 8000 | 8080 | 8888 // http (1080 also socks)
                | 88 // krb
                | 135 // dce-rpc
                | 139 | 445 // smb
                | 143 // imap
                | 389 | 3268 // ldap
                | 443 | 563 | 585 | 614 | 636 | 989 | 990 | 992 | 993 | 995 | 5223 // ssl
                | 502 // modbus
                | 1883 // mqtt
                | 3389 // rdp
                | 5222 | 5269 // xmpp
                | 5432 // postgresql
                | 6379 // redis
                | 6666
                ..=6669 // irc
                | 20000 // dnp3
        ),
        Kind::Udp => matches!(
            port,
            53 | 137 | 5353 | 5355 // dns
                | 67 // dhcp (the server's port only)
                | 88 // krb
                | 123 // ntp
                | 161 | 162 // snmp
                | 389 // ldap
                | 443 // dtls
                | 514 // syslog
                | 1812 // radius
                | 3389 // rdpeudp
                | 5060 // sip
                | 20000 // dnp3
                | 2123 | 2152 // gtpv1
                | 4789 // vxlan
                | 5072 // ayiya
                | 6081 // geneve
        ),
        Kind::Icmp => false,
    }
}

/// Service guessed from the responder's well-known port (Zeek detects protocols from
/// content instead; this is a port-based approximation, documented as such).
pub fn service_for(proto: &str, port: u16) -> Option<&'static str> {
    match proto {
        "tcp" => service(Kind::Tcp, port),
        "udp" => service(Kind::Udp, port),
        _ => None,
    }
}

fn service(kind: Kind, port: u16) -> Option<&'static str> {
    match kind {
        Kind::Tcp => Some(match port {
            21 => "ftp",
            22 => "ssh",
            23 => "telnet",
            25 | 587 => "smtp",
            53 => "dns",
            80 | 8000 | 8080 | 8888 => "http",
            88 => "krb_tcp",
            110 => "pop3",
            135 => "dce_rpc",
            139 | 445 => "smb",
            143 => "imap",
            389 => "ldap",
            443 | 465 | 636 | 853 | 993 | 995 | 8443 => "ssl",
            1080 => "socks",
            1883 => "mqtt",
            3306 => "mysql",
            3389 => "rdp",
            5222 | 5269 => "xmpp",
            5432 => "postgresql",
            5900 => "rfb",
            6379 => "redis",
            6667 => "irc",
            _ => return None,
        }),
        Kind::Udp => Some(match port {
            53 | 5353 | 5355 => "dns",
            67 | 68 => "dhcp",
            69 => "tftp",
            88 => "krb",
            123 => "ntp",
            137 => "netbios-ns",
            161 | 162 => "snmp",
            443 => "quic",
            500 | 4500 => "ike",
            514 => "syslog",
            1812 | 1813 => "radius",
            1900 => "ssdp",
            3544 => "teredo",
            4789 => "vxlan",
            5060 => "sip",
            6081 => "geneve",
            _ => return None,
        }),
        Kind::Icmp => None,
    }
}

/// ICMP message types answered by a counterpart (echo request/reply, ...), so that both
/// directions fall in one flow, as Zeek pairs them.
fn icmp_counterpart(v6: bool, t: u8) -> Option<u8> {
    let pairs: &[(u8, u8)] = if v6 {
        &[(128, 129), (133, 134), (135, 136), (130, 131), (139, 140), (144, 145)]
    } else {
        &[(8, 0), (13, 14), (15, 16), (17, 18), (10, 9)]
    };
    pairs.iter().find_map(|&(a, b)| {
        if a == t {
            Some(b)
        } else if b == t {
            Some(a)
        } else {
            None
        }
    })
}

/// A deterministic 128-bit hash (splitmix64 lanes): same input, same uid, on every run and
/// every machine.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn addr_words(a: IpAddr) -> [u64; 2] {
    match a {
        IpAddr::V4(v) => [u64::from(u32::from(v)), 4],
        IpAddr::V6(v) => {
            let n = u128::from(v);
            [(n >> 64) as u64, n as u64]
        }
    }
}

/// Zeek-style uid: `C` and 17 base-62 characters, derived from the flow's first packet
/// (5-tuple, time and position in the file), so re-importing a file gives the same uids.
fn make_uid(seed: u64, key: &[u64]) -> String {
    let (mut h1, mut h2) = (mix(seed ^ 0x6e65_746c_656e_7331), mix(seed ^ 0x7569_6473_2121_2121));
    for &w in key {
        h1 = mix(h1 ^ w);
        h2 = mix(h2.rotate_left(17) ^ w);
    }
    // 96 bits, like Zeek's: h1 and the top half of h2, least significant base-62 digit first.
    base62_digits([(h1 >> 32) as u32, h1 as u32, (h2 >> 32) as u32])
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `C` and the 17 lowest base-62 digits of the 96-bit number `limbs` (three 32-bit limbs, most
/// significant first), least significant digit first. Divides by 62^5 (which fits a limb)
/// limb by limb, then splits each remainder into its five digits in 32-bit arithmetic: a
/// quarter of the 64-bit divisions of taking one digit at a time (and a u128 division is a
/// library call).
fn base62_digits(mut limbs: [u32; 3]) -> String {
    const CHUNK: u64 = 62 * 62 * 62 * 62 * 62;
    let mut s = String::with_capacity(18);
    s.push('C');
    let mut left = 17;
    while left > 0 {
        let mut rem = 0u64;
        for limb in &mut limbs {
            let cur = rem << 32 | u64::from(*limb);
            *limb = (cur / CHUNK) as u32;
            rem = cur % CHUNK;
        }
        let mut chunk = rem as u32;
        for _ in 0..left.min(5) {
            s.push(BASE62[(chunk % 62) as usize] as char);
            chunk /= 62;
        }
        left -= left.min(5);
    }
    s
}

/// True when `f`, last seen before `now`, has been idle past its timeout, or closed for longer
/// than the linger.
/// The middle of `times` (the upper one of an even count; `i64::MIN` for none): everything at
/// or before it is at least half, so dropping that much frees at least half a table at once.
fn median(mut times: Vec<i64>) -> i64 {
    if times.is_empty() {
        return i64::MIN;
    }
    let middle = times.len() / 2;
    *times.select_nth_unstable(middle).1
}

fn expired(t: &Timeouts, f: &Flow, now: i64) -> bool {
    let timeout = match f.kind {
        Kind::Tcp => t.tcp_ns,
        Kind::Udp => t.udp_ns,
        Kind::Icmp => t.icmp_ns,
    };
    now.saturating_sub(f.seen_ns) > timeout
        || f.closed_at.is_some_and(|c| now.saturating_sub(c) > t.close_linger_ns)
        || f.attempt_at
            .is_some_and(|a| now.saturating_sub(a) >= t.attempt_ns && f.unanswered_attempt())
}

/// Zeek's `TCPSessionAdapter::IsReuse`: whether a packet of an existing TCP flow starts a new
/// connection instead. Only a SYN can (a SYN-ACK only while the originator has sent nothing);
/// once either side closed (FIN or RST), any such SYN does, even with the same sequence number
/// (a retried attempt after a RST is its own connection); before that, only one whose sequence
/// number differs from the start of the originator's (for a SYN-ACK, the responder's)
/// numbering, unless it is the SYN of a SYN-ACK seen before it.
fn is_reuse(f: &Flow, flags: u8, seq: u32) -> bool {
    use TcpState::*;
    if f.kind != Kind::Tcp || flags & tf::SYN == 0 {
        return false;
    }
    let (o, r) = (&f.ends[0].tcp, &f.ends[1].tcp);
    let ack = flags & tf::ACK != 0;
    let conn_orig = if ack {
        if o.state != Inactive {
            return false;
        }
        r
    } else {
        o
    };
    if !(o.did_close || r.did_close) {
        if seq == conn_orig.start_raw {
            return false;
        }
        if !ack && conn_orig.state == SynAckSent && r.state == Inactive && seq == r.start_raw {
            return false;
        }
    }
    true
}

/// The most flows held in memory at once (each takes several hundred bytes, more while TCP
/// data waits for a hole to fill): a capture made of unique 5-tuples inside one timeout would
/// otherwise grow without limit. At the bound the half of the flows seen longest ago end at once, as if they
/// had timed out (a later packet of one starts a new flow), and [`FlowTable::shed`] counts them.
pub const MAX_ACTIVE_FLOWS: usize = 1 << 21;

/// Puts flows taken with [`FlowTable::take_finished_unordered`] in order of their first packet
/// (time, then position in the file; flows of the same packet, such as a tunnel's and the
/// connection inside it, keep the order they ended in).
pub fn order_finished(flows: &mut [FlowRecord]) {
    // Sorts the keys and moves each record once: records are large (about 250 bytes), and a
    // comparison sort moves them many times.
    flows.sort_by_cached_key(|f| (f.ts_ns, f.first_packet));
}

/// The set of active flows of one capture file.
pub struct FlowTable {
    timeouts: Timeouts,
    seed: u64,
    /// foldhash: one lookup per packet, and SipHash was a tenth of the parsing thread's time.
    /// Flows are boxed: a flow is several hundred bytes, and held inline each one was copied
    /// into the table, again at every growth of the table, and out of it at its end.
    active: foldhash::HashMap<Key, Box<Flow>>,
    now_ns: i64,
    last_sweep_ns: i64,
    /// Packets observed since the last sweep.
    since_sweep: usize,
    /// Active flows the last sweep left: as many packets must come before the next one.
    sweep_after: usize,
    finished: Vec<FlowRecord>,
    /// IP tunnels by their address pair (lower address first), as Zeek's IPTunnel analyzer
    /// keeps them.
    ip_tunnels: foldhash::HashMap<(IpAddr, IpAddr), IpTunnel>,
    /// Fragments of datagrams not yet whole.
    fragments: Reassembler,
    /// Zeek's tunnel.log: the active tunnels and the lines not yet taken.
    tunnel_log: TunnelLog,
    /// Check IPv4 header, TCP, UDP and ICMP checksums as Zeek does by default (`zeek -C` turns
    /// it off, as this does).
    verify_checksums: bool,
    /// The most active flows held ([`MAX_ACTIVE_FLOWS`] unless a test lowers it).
    max_active: usize,
    /// Flows ended early because the table was full.
    shed: u64,
}

/// Where a packet went: its flow's uid and whether the originator sent it.
pub struct Assigned<'a> {
    pub uid: &'a str,
    pub from_orig: bool,
    /// The flow's responder port: Zeek picks a UDP tunnel's decoder by it.
    pub resp_p: u16,
    /// Tunnel kinds (`Tunnel::bit`) no longer decapsulated on this flow; the caller adds the
    /// kind whose header turned out malformed.
    pub tunnel_refused: &'a mut u8,
    /// The caller sets it when it takes an inner packet out of this packet.
    pub carried_tunnel: &'a mut bool,
    /// The flow's endpoints, as a tunnel log names a UDP tunnel.
    pub endpoints: Endpoints,
    /// This packet started the flow, or brought it through a tunnel it had not come through
    /// before (Zeek's `new_connection` and `tunnel_changed`: the tunnels around it are logged).
    pub new: bool,
}

/// A connection's endpoints: (originator, its port, responder, its port); ports 0 for an IP
/// tunnel.
pub type Endpoints = (IpAddr, u16, IpAddr, u16);

/// What a line of Zeek's tunnel.log says happened to a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelAction {
    /// An inner connection was seen in a tunnel not active before.
    Discover,
    /// The tunnel's own UDP connection ended.
    Close,
    /// No new inner connection for Zeek's `Tunnel::expiration_interval` (1 h).
    Expire,
}

impl TunnelAction {
    /// As Zeek's tunnel.log writes it.
    pub fn name(self) -> &'static str {
        match self {
            TunnelAction::Discover => "Tunnel::DISCOVER",
            TunnelAction::Close => "Tunnel::CLOSE",
            TunnelAction::Expire => "Tunnel::EXPIRE",
        }
    }
}

/// One line of Zeek's tunnel.log (base/frameworks/tunnels/main.zeek).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRecord {
    pub ts_ns: i64,
    /// The tunnel's uid: its UDP flow's, or the IP tunnel's.
    pub uid: String,
    /// Originator, port, responder, port; ports 0 for IP tunnels.
    pub endpoints: Endpoints,
    pub tunnel: Tunnel,
    pub action: TunnelAction,
}

/// A tunnel that enclosed the packet being followed.
#[derive(Debug, Clone)]
struct Enclosing {
    uid: String,
    endpoints: Endpoints,
    /// A UDP tunnel (its flow exists), not an IP tunnel.
    udp: bool,
    tunnel: Tunnel,
}

/// Zeek's `Tunnel::expiration_interval`: an active tunnel in which no new connection was seen
/// this long is logged as expired and forgotten.
const TUNNEL_EXPIRATION_NS: i64 = 3600 * NS;

/// Zeek's `Tunnel::active`: the tunnels logged as discovered and not yet closed or expired, by
/// their endpoints, with when they were last looked up.
#[derive(Default)]
struct TunnelLog {
    active: foldhash::HashMap<(Endpoints, bool), (TunnelRecord, i64)>,
    lines: Vec<TunnelRecord>,
}

impl TunnelLog {
    /// Zeek's `Tunnel::register_all` on a new connection inside `chain` (outermost first).
    fn register(&mut self, chain: &[Enclosing], ts_ns: i64) {
        for e in chain {
            let key = (e.endpoints, e.udp);
            // An entry past its expiration is expired first, whenever the sweep would have.
            if let Some((line, read)) = self.active.get(&key) {
                if ts_ns.saturating_sub(*read) >= TUNNEL_EXPIRATION_NS {
                    let mut line = line.clone();
                    line.ts_ns = ts_ns;
                    line.action = TunnelAction::Expire;
                    self.lines.push(line);
                    self.active.remove(&key);
                }
            }
            // Bounded as the flow table is: past the bound the half read longest ago expire
            // early, each with its EXPIRE line.
            if self.active.len() >= MAX_ACTIVE_FLOWS && !self.active.contains_key(&key) {
                let cut = median(self.active.values().map(|(_, read)| *read).collect());
                for (_, (mut line, _)) in self.active.extract_if(|_, (_, read)| *read <= cut) {
                    line.ts_ns = ts_ns;
                    line.action = TunnelAction::Expire;
                    self.lines.push(line);
                }
            }
            match self.active.entry(key) {
                Entry::Occupied(mut o) => o.get_mut().1 = ts_ns,
                Entry::Vacant(v) => {
                    let line = TunnelRecord {
                        ts_ns,
                        uid: e.uid.clone(),
                        endpoints: e.endpoints,
                        tunnel: e.tunnel,
                        action: TunnelAction::Discover,
                    };
                    self.lines.push(line.clone());
                    v.insert((line, ts_ns));
                }
            }
        }
    }

    /// Zeek's `finalize_tunnel`: a UDP tunnel's flow ended at `at_ns`.
    fn flow_ended(&mut self, f: &FlowRecord, at_ns: i64) {
        if !f.carried_tunnel {
            return;
        }
        let key = ((f.orig_h, f.orig_p, f.resp_h, f.resp_p), true);
        if let Some((mut line, _)) = self.active.remove(&key) {
            line.ts_ns = at_ns;
            line.action = TunnelAction::Close;
            self.lines.push(line);
        }
    }

    /// Zeek's `Tunnel::expire`: tunnels not looked up for the expiration interval at `now_ns`.
    fn expire(&mut self, now_ns: i64) {
        if self.active.is_empty() {
            return;
        }
        let lines = &mut self.lines;
        for (_, (mut line, _)) in self
            .active
            .extract_if(|_, (_, read)| now_ns.saturating_sub(*read) >= TUNNEL_EXPIRATION_NS)
        {
            line.ts_ns = now_ns;
            line.action = TunnelAction::Expire;
            lines.push(line);
        }
    }
}

/// Why a tunnel's packet was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelStop {
    /// The tunnel header is malformed (for UDP tunnels Zeek's analyzer violation: the
    /// connection's later packets are not decapsulated either).
    Malformed(Tunnel, &'static str),
    /// The capture cut the tunnel's payload short.
    Cut(Tunnel),
    /// Inside more than [`MAX_TUNNEL_DEPTH`] tunnels (Zeek's `exceeded_tunnel_max_depth`).
    TooDeep(Tunnel),
    /// The tunnel's packet itself is too short or malformed.
    BrokenInner(Tunnel, &'static str),
}

/// A packet that joined a flow: the packet, the flow's uid, and whether its originator sent it.
pub type Joined<'a> = (IpPacket<'a>, [u8; 18], bool);

/// What became of one captured frame in [`FlowTable::frame`].
#[derive(Debug, Clone, Copy)]
pub struct Walked<'a> {
    /// The innermost layer decoded.
    pub innermost: Decoded<'a>,
    /// The innermost packet that joined a flow, with the flow's uid and whether its originator
    /// sent it: what a packet row describes.
    pub flow: Option<Joined<'a>>,
    /// Tunnels the frame's packets were taken out of.
    pub depth: usize,
    /// The outermost of them.
    pub outermost_tunnel: Option<Tunnel>,
    /// The tunnel whose packet was not followed, and why.
    pub stopped: Option<TunnelStop>,
    /// The innermost packet is an IP fragment held until its datagram is whole (the datagram
    /// counts once, with the fragment that completes it).
    pub held_fragment: bool,
}

impl<'a> Walked<'a> {
    /// A frame's packet before it is walked: no flow, no tunnel yet.
    fn of(innermost: Decoded<'a>) -> Self {
        Walked {
            innermost,
            flow: None,
            depth: 0,
            outermost_tunnel: None,
            stopped: None,
            held_fragment: false,
        }
    }
}

/// A flow uid as the fixed-size bytes a packet row keeps (uids are 18 ASCII characters).
fn uid_bytes(uid: &str) -> [u8; 18] {
    // A copy of a known length is a few moves; of a variable one, a call to memcpy per packet.
    if let Ok(whole) = <[u8; 18]>::try_from(uid.as_bytes()) {
        return whole;
    }
    let mut out = [b' '; 18];
    let n = uid.len().min(18);
    out[..n].copy_from_slice(&uid.as_bytes()[..n]);
    out
}

/// Zeek's `Tunnel::ip_tunnel_timeout`: an IP tunnel (IP in IP, GRE) idle this long gets a new
/// uid when it is seen again.
const IP_TUNNEL_TIMEOUT_NS: i64 = 24 * 3600 * NS;

/// An active IP tunnel: its uid, the addresses of the packet that opened it (as Zeek's
/// tunnel.log names it), and when it was last seen.
struct IpTunnel {
    uid: String,
    src: IpAddr,
    dst: IpAddr,
    seen_ns: i64,
}

impl FlowTable {
    /// An empty table; `seed` enters every uid (the file's identity is not part of it, so the
    /// same packets give the same uids wherever the file lies).
    pub fn new(timeouts: Timeouts, seed: u64) -> Self {
        FlowTable {
            timeouts,
            seed,
            active: foldhash::HashMap::default(),
            now_ns: i64::MIN,
            last_sweep_ns: i64::MIN,
            since_sweep: 0,
            sweep_after: 0,
            finished: Vec::new(),
            ip_tunnels: foldhash::HashMap::default(),
            verify_checksums: false,
            fragments: Reassembler::default(),
            tunnel_log: TunnelLog::default(),
            max_active: MAX_ACTIVE_FLOWS,
            shed: 0,
        }
    }

    /// Checks checksums as Zeek does unless run with `-C`, each where Zeek checks it:
    /// - an IPv4 header with a bad checksum drops its packet before anything sees it (Zeek's
    ///   `IPAnalyzer::AnalyzePacket`: no flow, no tunnel);
    /// - a wholly captured TCP segment or UDP datagram with a bad checksum is logged in its
    ///   flow's history (`C`/`c`, at the 1st, 10th, 100th ... such packet of a side; Zeek's
    ///   `TCPAnalyzer::ValidateChecksum` and `UDPSessionAdapter::HandleBadChecksum`) and
    ///   otherwise ignored: no packet or byte counted, no state changed (the flow exists: Zeek
    ///   made the connection before its analyzer saw the packet);
    /// - an ICMP message with a bad checksum is ignored the same way, with no letter (Zeek's
    ///   `ICMPAnalyzer::DeliverPacket` only raises a weird).
    ///
    /// Off by default: captures taken on a sending host hold that host's packets before the
    /// network card filled in their checksums.
    pub fn verify_checksums(&mut self, on: bool) {
        self.verify_checksums = on;
    }

    /// Holds at most `max` active flows instead of [`MAX_ACTIVE_FLOWS`] (at least 2).
    pub fn limit_active(&mut self, max: usize) {
        self.max_active = max.max(2);
    }

    /// Flows ended early because more than the bound were active at once (see
    /// [`MAX_ACTIVE_FLOWS`]).
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Ends the half of the active flows seen longest ago (all those seen no later than the
    /// median), as a timeout would: each call frees at least half the table, so the cost per
    /// packet stays constant.
    fn shed_oldest(&mut self) {
        let cut = median(self.active.values().map(|f| f.seen_ns).collect());
        let (before, from) = (self.active.len(), self.finished.len());
        let ended = self.active.extract_if(|_, f| f.seen_ns <= cut);
        self.finished.extend(ended.map(|(_, f)| f.record()));
        // A shed flow that carried a tunnel closes it, as any flow's end does.
        self.close_tunnels_of(from, self.now_ns);
        self.shed += (before - self.active.len()) as u64;
        self.sweep_after = self.active.len();
    }

    /// The uid of the IP tunnel (IP in IP or GRE) between `src` and `dst` that carried packet
    /// `number`: the same for every packet between the two addresses, in either direction,
    /// until the tunnel has been idle for Zeek's `ip_tunnel_timeout` (24 h).
    pub fn ip_tunnel_uid(&mut self, number: u64, ts_ns: i64, src: IpAddr, dst: IpAddr) -> &str {
        &self.ip_tunnel(number, ts_ns, src, dst).uid
    }

    fn ip_tunnel(&mut self, number: u64, ts_ns: i64, src: IpAddr, dst: IpAddr) -> &IpTunnel {
        let pair = if src <= dst { (src, dst) } else { (dst, src) };
        let seed = self.seed;
        let fresh = || {
            let ([a1, a2], [b1, b2]) = (addr_words(pair.0), addr_words(pair.1));
            // A marker word keeps tunnel uids apart from flow uids of the same packet.
            let words = [0x7475_6e6e_656c, ts_ns as u64, number, a1, a2, b1, b2];
            IpTunnel {
                uid: make_uid(seed, &words),
                src,
                dst,
                seen_ns: ts_ns,
            }
        };
        // Bounded as the flow table is: past the bound the half seen longest ago are forgotten
        // (a later packet of theirs starts a tunnel with a new uid, as after a timeout).
        if self.ip_tunnels.len() >= self.max_active && !self.ip_tunnels.contains_key(&pair) {
            let cut = median(self.ip_tunnels.values().map(|t| t.seen_ns).collect());
            self.ip_tunnels.retain(|_, t| t.seen_ns > cut);
        }
        let tunnel = match self.ip_tunnels.entry(pair) {
            Entry::Occupied(e) => {
                let t = e.into_mut();
                if ts_ns.saturating_sub(t.seen_ns) >= IP_TUNNEL_TIMEOUT_NS {
                    *t = fresh();
                }
                t
            }
            Entry::Vacant(e) => e.insert(fresh()),
        };
        tunnel.seen_ns = tunnel.seen_ns.max(ts_ns);
        tunnel
    }

    /// Flows held in memory now.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Flows finished and not yet taken.
    pub fn finished_len(&self) -> usize {
        self.finished.len()
    }

    /// Takes the finished flows, in order of their first packet.
    pub fn take_finished(&mut self) -> Vec<FlowRecord> {
        let mut out = self.take_finished_unordered();
        order_finished(&mut out);
        out
    }

    /// Takes the finished flows in the order they ended: [`order_finished`] puts them in the
    /// order [`FlowTable::take_finished`] gives, so that another thread can do it.
    pub fn take_finished_unordered(&mut self) -> Vec<FlowRecord> {
        // The next batch gets room for as many (up to a batch): growing a vector of records one
        // doubling at a time copied each batch about twice over.
        let room = Vec::with_capacity(self.finished.len().min(FLOW_BATCH));
        std::mem::replace(&mut self.finished, room)
    }

    /// Ends every active flow (end of file).
    pub fn finish_all(&mut self) {
        let from = self.finished.len();
        let flows: Vec<Box<Flow>> = self.active.drain().map(|(_, f)| f).collect();
        self.finished.extend(flows.into_iter().map(|f| f.record()));
        // Zeek removes every connection at the end, at the time of the last packet; IP tunnels
        // stay active (nothing closes them).
        self.close_tunnels_of(from, self.now_ns);
    }

    /// Takes the tunnel log's lines written so far, in the order Zeek writes them.
    pub fn take_tunnel_log(&mut self) -> Vec<TunnelRecord> {
        std::mem::take(&mut self.tunnel_log.lines)
    }

    /// Tunnel log lines written and not yet taken.
    pub fn tunnel_log_len(&self) -> usize {
        self.tunnel_log.lines.len()
    }

    /// Closes the tunnels of the flows finished from position `from` on, which ended at `at_ns`.
    fn close_tunnels_of(&mut self, from: usize, at_ns: i64) {
        let mut ended: Vec<&FlowRecord> = self.finished[from..].iter().filter(|f| f.carried_tunnel).collect();
        // Flows leave the table in hash order: closed in order of their first packet instead.
        ended.sort_by_key(|f| (f.ts_ns, f.first_packet));
        for f in ended {
            self.tunnel_log.flow_ended(f, at_ns);
        }
    }

    /// Ends the flows idle past their timeouts at `now_ns`, without moving the table's clock:
    /// a live capture calls it as time passes without packets. The flows it ends are the ones
    /// a later packet would end, provided no packet older than `now_ns` comes after it.
    pub fn expire_idle(&mut self, now_ns: i64) {
        let from = self.finished.len();
        let (timeouts, finished) = (self.timeouts, &mut self.finished);
        let ended = self.active.extract_if(|_, f| expired(&timeouts, f, now_ns));
        finished.extend(ended.map(|(_, f)| f.record()));
        self.close_tunnels_of(from, now_ns);
        self.tunnel_log.expire(now_ns);
    }

    /// Ends flows idle past their timeout. Runs at most once per second of capture time, and
    /// only once as many packets came since the last run as there were flows left by it: a sweep
    /// looks at every active flow, and sweeping the 13-hour benchmark capture once per second,
    /// with about a thousand flows open, made 46 000 sweeps. The outcome does not depend on
    /// when a sweep runs (a packet of an expired flow ends it first, in `observe`); only how
    /// long an expired flow stays in memory does, and the packet rule keeps that to about
    /// twice the flows exact sweeping would hold (fewer packets than flows come between two
    /// sweeps, so fewer new flows).
    fn sweep(&mut self) {
        if self.now_ns.saturating_sub(self.last_sweep_ns) < NS || self.since_sweep < self.sweep_after {
            return;
        }
        self.last_sweep_ns = self.now_ns;
        self.since_sweep = 0;
        let now = self.now_ns;
        let from = self.finished.len();
        let (timeouts, finished) = (self.timeouts, &mut self.finished);
        let ended = self.active.extract_if(|_, f| expired(&timeouts, f, now));
        finished.extend(ended.map(|(_, f)| f.record()));
        self.close_tunnels_of(from, now);
        self.tunnel_log.expire(now);
        self.sweep_after = self.active.len();
        if !self.ip_tunnels.is_empty() {
            // IP tunnels idle past Zeek's timeout are forgotten (a later packet would give
            // them a new uid anyway); there are rarely more than a few.
            self.ip_tunnels
                .retain(|_, t| now.saturating_sub(t.seen_ns) < IP_TUNNEL_TIMEOUT_NS);
        }
    }

    /// Decodes one captured frame and adds its IP packet, and the packets of the tunnels it
    /// carries (up to Zeek's `Tunnel::max_depth`), each to its own flow. A UDP tunnel's packet
    /// counts in the UDP flow and its inner packet in another, whose `tunnel_parents` names the
    /// UDP flow; an IP tunnel's packet (IP in IP, GRE) forms no flow, and its inner packet's
    /// flow names the IP tunnel.
    ///
    /// A frame holding several packets (an 802.11 A-MSDU) adds each, in order, every one
    /// counting the whole frame in its frame bytes (as tshark's conversations count it);
    /// what is returned describes the first that joined a flow (see [`FlowTable::frame_each`]
    /// for the others).
    #[inline]
    pub fn frame<'a>(&mut self, number: u64, ts_ns: i64, frame_len: u32, linktype: u32, data: &'a [u8]) -> Walked<'a> {
        // Empty, so no allocation: only an A-MSDU's later packets would be put there.
        self.frame_each(number, ts_ns, frame_len, linktype, data, &mut Vec::new())
    }

    /// [`FlowTable::frame`], and the packets of the frame after the first that joined a flow
    /// (the later subframes of an 802.11 A-MSDU), each with its flow, appended to
    /// `later_joined` in order: what a packet row describes, one per packet. Those of an A-MSDU
    /// inside a reassembled IP datagram (in Aruba's GRE) are not the frame's bytes: each is
    /// described, as the datagram's first packet is, by the fragment that completed it.
    #[inline]
    pub fn frame_each<'a>(
        &mut self,
        number: u64,
        ts_ns: i64,
        frame_len: u32,
        linktype: u32,
        data: &'a [u8],
        later_joined: &mut Vec<Joined<'a>>,
    ) -> Walked<'a> {
        // Walked in place: it is a few hundred bytes, and moving it in and out of every call
        // was a tenth of the reading thread's time.
        let mut walked = Walked::of(decode(linktype, data));
        let later = later_packets(linktype, data);
        self.walk(number, ts_ns, frame_len, &mut walked, Vec::new(), later_joined);
        if !later.is_empty() {
            self.walk_later(number, ts_ns, frame_len, &mut walked, later, &[], 0, None, later_joined);
        }
        walked
    }

    /// Walks the packets of `later` after the one `merged` describes, all carried by the
    /// tunnels of `chain` (`depth` of them, the outermost `outermost`), and merges what became
    /// of them into `merged`; each packet that joined a flow after the one `merged` describes
    /// goes to `later_joined`.
    #[allow(clippy::too_many_arguments)]
    fn walk_later<'a>(
        &mut self,
        number: u64,
        ts_ns: i64,
        frame_len: u32,
        merged: &mut Walked<'a>,
        later: LaterPackets<'a>,
        chain: &[Enclosing],
        depth: usize,
        outermost: Option<Tunnel>,
        later_joined: &mut Vec<Joined<'a>>,
    ) {
        for packet in later {
            let mut next = Walked {
                depth,
                outermost_tunnel: outermost,
                ..Walked::of(packet)
            };
            // A packet's own later packets (an A-MSDU in Aruba's GRE) come after it.
            let at = later_joined.len();
            self.walk(number, ts_ns, frame_len, &mut next, chain.to_vec(), later_joined);
            match (merged.flow, next.flow) {
                (None, Some(_)) => {
                    merged.innermost = next.innermost;
                    merged.flow = next.flow;
                }
                (Some(_), Some(joined)) => later_joined.insert(at, joined),
                _ => {}
            }
            merged.depth = merged.depth.max(next.depth);
            merged.outermost_tunnel = merged.outermost_tunnel.or(next.outermost_tunnel);
            merged.stopped = merged.stopped.or(next.stopped);
            merged.held_fragment |= next.held_fragment;
        }
    }

    /// Follows a packet from `walked.innermost` inwards, updating `walked` in place; `chain`
    /// holds the tunnels it came out of, outermost first.
    fn walk<'a>(
        &mut self,
        number: u64,
        ts_ns: i64,
        frame_len: u32,
        walked: &mut Walked<'a>,
        mut chain: Vec<Enclosing>,
        later_joined: &mut Vec<Joined<'a>>,
    ) {
        loop {
            let last_tunnel = chain.last().map(|e| e.tunnel);
            let Decoded::Ip(ip) = walked.innermost else {
                if let (Decoded::Broken(why), Some(t)) = (walked.innermost, last_tunnel) {
                    walked.stopped = Some(TunnelStop::BrokenInner(t, why));
                }
                return;
            };
            if self.verify_checksums && ipv4_header_checksum_ok(&ip) == Some(false) {
                // Zeek drops the packet at its IP layer: no flow, no tunnel.
                return;
            }
            if ip.fragment {
                match self.fragments.add(ts_ns, &ip) {
                    Fragment::Held => {
                        walked.held_fragment = true;
                        return;
                    }
                    // A datagram whose reassembly is itself a fragment (nested IPv6 fragment
                    // headers) is not reassembled again: each level takes only a few bytes
                    // off, and a crafted capture could nest it thousands of calls deep. It
                    // forms no flow.
                    Fragment::Whole(datagram) if matches!(ip_packet(&datagram), Decoded::Ip(inner) if inner.fragment) =>
                    {
                        return;
                    }
                    Fragment::Whole(datagram) => {
                        // The datagram goes on as one packet of its full length, at the time
                        // of the fragment that completed it; the frame is described by that
                        // fragment.
                        let whole_len = frame_len.saturating_sub(ip.ip_len) + datagram.len() as u32;
                        let mut inner = Walked {
                            innermost: ip_packet(&datagram),
                            flow: None,
                            depth: walked.depth,
                            outermost_tunnel: walked.outermost_tunnel,
                            stopped: None,
                            held_fragment: false,
                        };
                        // Its own later packets (an A-MSDU in Aruba's GRE inside the datagram) live in
                        // the reassembled bytes, not the frame's: each is handed out as the first
                        // is, described by this fragment with its own flow.
                        let mut inner_later = Vec::new();
                        self.walk(number, ts_ns, whole_len, &mut inner, chain, &mut inner_later);
                        later_joined.extend(inner_later.into_iter().map(|(_, uid, from_orig)| (ip, uid, from_orig)));
                        walked.flow = inner.flow.map(|(_, uid, from_orig)| (ip, uid, from_orig));
                        walked.depth = inner.depth;
                        walked.outermost_tunnel = inner.outermost_tunnel;
                        walked.stopped = inner.stopped;
                        walked.held_fragment = false;
                        return;
                    }
                    // Cut by the snap length or malformed: as Zeek, the first fragment goes on
                    // alone and a later one forms no flow.
                    Fragment::NotReassembled => {}
                }
            }
            let too_deep = walked.depth >= MAX_TUNNEL_DEPTH;
            let parent = chain.last().map(|e| e.uid.as_str());
            // The tunnel this packet carries, if it carries one to follow.
            let mut enclosing = None;
            let mut new_inside = false;
            let decap = match self.observe_in(number, ts_ns, frame_len, &ip, parent) {
                Some(a) => {
                    walked.flow = Some((ip, uid_bytes(a.uid), a.from_orig));
                    new_inside = a.new && !chain.is_empty();
                    let decap = match ip.transport {
                        Transport::Udp { .. } => udp_tunnel(&ip, a.resp_p, *a.tunnel_refused),
                        _ => Decap::None,
                    };
                    if let (Decap::Malformed(t, _), false) = (decap, too_deep) {
                        *a.tunnel_refused |= t.bit();
                    }
                    if let (Decap::Inner(t, _), false) = (decap, too_deep) {
                        *a.carried_tunnel = true;
                        enclosing = Some(Enclosing {
                            uid: a.uid.to_string(),
                            endpoints: a.endpoints,
                            udp: true,
                            tunnel: t,
                        });
                    }
                    decap
                }
                None => {
                    let decap = ip_tunnel(&ip);
                    if let (Decap::Inner(t, _), false) = (decap, too_deep) {
                        let it = self.ip_tunnel(number, ts_ns, ip.src, ip.dst);
                        enclosing = Some(Enclosing {
                            uid: it.uid.clone(),
                            endpoints: (it.src, 0, it.dst, 0),
                            udp: false,
                            tunnel: t,
                        });
                    }
                    decap
                }
            };
            if new_inside {
                // Zeek's new_connection: every tunnel around a new connection is logged as
                // discovered unless it is active.
                self.tunnel_log.register(&chain, ts_ns);
            }
            if let Some(e) = enclosing {
                chain.push(e);
            }
            let tunnel = match decap {
                Decap::None => return,
                Decap::Inner(t, _) | Decap::Malformed(t, _) | Decap::Weird(t, _) | Decap::Cut(t) => t,
            };
            if too_deep {
                walked.stopped = Some(TunnelStop::TooDeep(tunnel));
                return;
            }
            match decap {
                Decap::Inner(_, inner) => {
                    walked.depth += 1;
                    walked.outermost_tunnel.get_or_insert(tunnel);
                    walked.innermost = inner;
                    // Aruba's GRE may carry an A-MSDU: its packets each go their own way
                    // inside the same tunnels.
                    let later = later_packets_in_tunnel(&ip);
                    if !later.is_empty() {
                        let (depth, outermost) = (walked.depth, walked.outermost_tunnel);
                        self.walk(number, ts_ns, frame_len, walked, chain.clone(), later_joined);
                        self.walk_later(
                            number,
                            ts_ns,
                            frame_len,
                            walked,
                            later,
                            &chain,
                            depth,
                            outermost,
                            later_joined,
                        );
                        return;
                    }
                }
                Decap::Malformed(t, why) | Decap::Weird(t, why) => {
                    walked.stopped = Some(TunnelStop::Malformed(t, why));
                    return;
                }
                Decap::Cut(t) => {
                    walked.stopped = Some(TunnelStop::Cut(t));
                    return;
                }
                Decap::None => return,
            }
        }
    }

    /// Adds one IP packet. Returns its flow, or `None` for packets that form no flow
    /// (other IP protocols, non-first fragments).
    pub fn observe(&mut self, number: u64, ts_ns: i64, frame_len: u32, ip: &IpPacket) -> Option<Assigned<'_>> {
        self.observe_in(number, ts_ns, frame_len, ip, None)
    }

    /// Adds one IP packet that `tunnel` (the uid of the tunnel's flow or IP tunnel) carried,
    /// or none when it came outside any tunnel; see [`FlowTable::observe`].
    pub fn observe_in(
        &mut self,
        number: u64,
        ts_ns: i64,
        frame_len: u32,
        ip: &IpPacket,
        tunnel: Option<&str>,
    ) -> Option<Assigned<'_>> {
        if self.verify_checksums && ipv4_header_checksum_ok(ip) == Some(false) {
            return None;
        }
        self.since_sweep += 1;
        if ts_ns > self.now_ns {
            self.now_ns = ts_ns;
            self.sweep();
        }
        let (kind, sport, dport, key_dport) = match ip.transport {
            Transport::Tcp { sport, dport, .. } => (Kind::Tcp, sport, dport, dport),
            Transport::Udp { sport, dport, .. } => (Kind::Udp, sport, dport, dport),
            Transport::Icmp {
                v6, icmp_type, code, ..
            } => (
                Kind::Icmp,
                u16::from(icmp_type),
                u16::from(code),
                u16::from(icmp_counterpart(v6, icmp_type).unwrap_or(code)),
            ),
            Transport::Other => return None,
        };
        let (key, src_is_a) = Key::of(ip.src, sport, ip.dst, key_dport, ip.proto);
        let now = self.now_ns.max(ts_ns);

        let seed = self.seed;
        let new_flow = || {
            // The originator sends the first packet, unless Zeek's port heuristic says the
            // sender is the server (its first packets were missed): then the flow is flipped
            // and its history starts with `^`.
            let flip = match ip.transport {
                Transport::Tcp { flags, .. } => flips_tcp(sport, dport, flags),
                Transport::Udp { .. } => likely_server_port(Kind::Udp, sport) && !likely_server_port(Kind::Udp, dport),
                _ => false,
            };
            let (oh, op, rh, rp) = if flip {
                (ip.dst, dport, ip.src, sport)
            } else {
                (ip.src, sport, ip.dst, dport)
            };
            let ([o1, o2], [r1, r2]) = (addr_words(oh), addr_words(rh));
            let words = [
                u64::from(ip.proto),
                u64::from(op),
                u64::from(rp),
                ts_ns as u64,
                number,
                o1,
                o2,
                r1,
                r2,
            ];
            Flow {
                uid: make_uid(seed, &words),
                first_packet: number,
                first_ns: ts_ns,
                last_ns: ts_ns,
                seen_ns: ts_ns,
                orig_is_a: src_is_a != flip,
                orig_h: oh,
                orig_p: op,
                resp_h: rh,
                resp_p: rp,
                ip_proto: ip.proto,
                kind,
                ends: [End::default(); 2],
                history: if flip { "^".to_string() } else { String::new() },
                hist_seen: [0; 2],
                closed_at: None,
                attempt_at: None,
                streams: [Stream::new(), Stream::new()],
                partial: false,
                missed_bytes: 0,
                tunnel_parents: Vec::new(),
                tunnel_refused: 0,
                carried_tunnel: false,
            }
        };
        // A full table makes room before a new flow is added.
        if self.active.len() >= self.max_active && !self.active.contains_key(&key) {
            self.shed_oldest();
        }
        // One lookup per packet. An existing flow ends first when it timed out, or when a
        // fresh SYN (new sequence number) reuses its ports; the new flow takes its place.
        let mut new = true;
        let flow = match self.active.entry(key) {
            Entry::Occupied(entry) => {
                let f = entry.into_mut();
                let end_existing = expired(&self.timeouts, f, now)
                    || matches!(ip.transport, Transport::Tcp { flags, seq, .. } if is_reuse(f, flags, seq));
                if end_existing {
                    let ended = std::mem::replace(f, Box::new(new_flow())).record();
                    self.tunnel_log.flow_ended(&ended, now);
                    self.finished.push(ended);
                } else {
                    new = false;
                }
                f
            }
            Entry::Vacant(entry) => entry.insert(Box::new(new_flow())),
        };
        let mut side = usize::from(src_is_a != flow.orig_is_a);
        flow.seen_ns = flow.seen_ns.max(ts_ns);
        if let Some(parent) = tunnel {
            if !flow.tunnel_parents.iter().any(|p| p == parent) {
                flow.tunnel_parents.push(parent.to_string());
                new = true;
            }
        }
        let bad_checksum = self.verify_checksums
            && match kind {
                Kind::Tcp => tcp_checksum_ok(ip) == Some(false),
                Kind::Udp => udp_checksum_ok(ip) == Some(false),
                Kind::Icmp => icmp_checksum_ok(ip) == Some(false),
            };
        if bad_checksum {
            // The connection exists (Zeek made it before the transport analyzer saw the
            // packet), and nothing else of the packet counts; ICMP gets no letter.
            if kind != Kind::Icmp {
                flow.checksum_error(side);
            }
            return Some(Assigned {
                uid: &flow.uid,
                from_orig: side == 0,
                resp_p: flow.resp_p,
                tunnel_refused: &mut flow.tunnel_refused,
                carried_tunnel: &mut flow.carried_tunnel,
                endpoints: (flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p),
                new,
            });
        }
        let end = &mut flow.ends[side];
        end.pkts += 1;
        end.ip_bytes += u64::from(ip.ip_len);
        end.frame_bytes += u64::from(frame_len);
        match ip.transport {
            Transport::Tcp {
                seq,
                ack,
                flags,
                window,
                payload,
                payload_captured,
                ..
            } => {
                end.payload += u64::from(payload);
                let segment = Segment {
                    seq,
                    ack,
                    flags,
                    window,
                    len: payload,
                    captured: payload_captured,
                };
                side = tcp_packet(flow, side, ts_ns, segment);
                if flow.closed_at.is_none() && flow.is_closed() {
                    flow.closed_at = Some(ts_ns);
                }
            }
            Transport::Udp { payload, .. } | Transport::Icmp { payload, .. } => {
                end.payload += u64::from(payload);
                flow.last_ns = flow.last_ns.max(ts_ns);
                // Every datagram, empty ones too (Zeek's UDPAnalyzer::DeliverPacket).
                if kind == Kind::Udp {
                    flow.check_history(side, H_DATA, 'D');
                }
            }
            Transport::Other => {}
        }
        Some(Assigned {
            uid: &flow.uid,
            from_orig: side == 0,
            resp_p: flow.resp_p,
            tunnel_refused: &mut flow.tunnel_refused,
            carried_tunnel: &mut flow.carried_tunnel,
            endpoints: (flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p),
            new,
        })
    }
}

/// The TCP header fields the flow engine uses, and the payload's length on the wire.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    len: u32,
    /// The whole payload is in the capture.
    captured: bool,
}

/// A segment as every phase of [`tcp_packet`] reads it: its fields, its flags, and its extent
/// in sequence space.
#[derive(Debug, Clone, Copy)]
struct SegmentView {
    seq: u32,
    ack: u32,
    window: u16,
    len: u32,
    captured: bool,
    syn: bool,
    fin: bool,
    rst: bool,
    ackf: bool,
    /// Length in sequence space: the payload, one for a SYN and one for a FIN (a RST's payload
    /// does not count).
    seg_len: u32,
    /// The sequence number one past the segment.
    one_past: u32,
}

impl SegmentView {
    fn of(segment: Segment) -> SegmentView {
        let Segment {
            seq,
            ack,
            flags,
            window,
            len,
            captured,
        } = segment;
        let (syn, fin, rst, ackf) = (
            flags & tf::SYN != 0,
            flags & tf::FIN != 0,
            flags & tf::RST != 0,
            flags & tf::ACK != 0,
        );
        let mut seg_len = len;
        if syn {
            seg_len += 1;
        }
        if fin {
            seg_len += 1;
        }
        if rst {
            seg_len -= len;
        }
        SegmentView {
            seq,
            ack,
            window,
            len,
            captured,
            syn,
            fin,
            rst,
            ackf,
            seg_len,
            one_past: seq.wrapping_add(seg_len),
        }
    }
}

/// One TCP segment through Zeek's TCP analyzer logic (TCP.cc: DeliverPacket and the
/// Update*State functions), reduced to what conn.log needs, phase by phase in Zeek's order.
/// Returns the sender's side, which changes when the segment reverses the flow's roles.
fn tcp_packet(flow: &mut Flow, side: usize, ts_ns: i64, segment: Segment) -> usize {
    let s = SegmentView::of(segment);
    init_endpoint(&mut flow.ends[side].tcp, &s);
    let rel_seq = flow.ends[side].tcp.rel(s.seq);
    update_history(flow, side, &s, rel_seq);
    update_window(flow, side, &s);
    if !flow.ends[0].tcp.did_close || !flow.ends[1].tcp.did_close {
        flow.last_ns = flow.last_ns.max(ts_ns);
    }
    if s.fin {
        let e = &mut flow.ends[side].tcp;
        e.fin_cnt += 1;
        e.fin_seq = rel_seq + i64::from(s.seg_len);
    }
    let rel_ack = ack_peer(flow, 1 - side, &s);
    update_last_seq(flow, side, &s);
    let side = update_state_machine(flow, side, ts_ns, &s);
    deliver_content(flow, side, &s, rel_seq, rel_ack);
    side
}

/// Zeek's init_endpoint: the sender's sequence numbering starts at its SYN (or, for a
/// partial connection, as though a SYN came just before this segment).
fn init_endpoint(e: &mut TcpEnd, s: &SegmentView) {
    use TcpState::*;
    match e.state {
        Inactive => {
            if s.syn {
                e.init_seq(s.seq, s.one_past);
            } else {
                e.init_seq(s.seq.wrapping_sub(1), s.seq);
            }
        }
        SynSent | SynAckSent => {
            if s.syn && s.seq != e.start_raw {
                e.init_seq(s.seq, s.one_past);
            }
        }
        Established | Partial => {
            if s.syn {
                e.init_seq(s.seq, s.one_past);
            }
        }
        Reset => {
            if s.syn && e.prev_state == Inactive {
                e.init_seq(s.seq, s.one_past);
            }
        }
        Closed => {}
    }
}

/// Zeek's update_history: the segment's letter (a SYN, FIN or RST repeated at the same
/// sequence number is not a new one).
fn update_history(flow: &mut Flow, side: usize, s: &SegmentView, rel_seq: i64) {
    let bits = u8::from(s.syn) + u8::from(s.fin) + u8::from(s.rst);
    if bits > 1 {
        if s.fin && s.rst {
            flow.check_history(side, H_FINRST, 'I');
        } else {
            flow.check_history(side, H_MULTI, 'Q');
        }
    } else if bits == 1 {
        if s.syn {
            let code = if s.ackf { 'H' } else { 'S' };
            let mask = if s.ackf { H_SYNACK } else { H_SYN };
            let last = flow.ends[side].tcp.hist_last_syn;
            if flow.check_history(side, mask, code) && last != Some(rel_seq) {
                flow.add_history(side, code);
            }
            flow.ends[side].tcp.hist_last_syn = Some(rel_seq);
        }
        if s.fin {
            let fin_at = rel_seq + i64::from(s.len);
            let last = flow.ends[side].tcp.hist_last_fin;
            if flow.check_history(side, H_FIN, 'F') && last != Some(fin_at) {
                flow.add_history(side, 'F');
            }
            flow.ends[side].tcp.hist_last_fin = Some(fin_at);
        }
        if s.rst {
            let last = flow.ends[side].tcp.hist_last_rst;
            if flow.check_history(side, H_RST, 'R') && last != Some(rel_seq) {
                flow.add_history(side, 'R');
            }
            flow.ends[side].tcp.hist_last_rst = Some(rel_seq);
        }
    } else if s.len > 0 {
        flow.check_history(side, H_DATA, 'D');
    } else if s.ackf {
        flow.check_history(side, H_ACK, 'A');
    }
}

/// Zeek's update_window: zero windows, logged at 1, 10, 100, ... occurrences.
fn update_window(flow: &mut Flow, side: usize, s: &SegmentView) {
    let peer_state = flow.ends[1 - side].tcp.state;
    let e = &mut flow.ends[side].tcp;
    if s.window == 0 && !s.rst && peer_state != TcpState::Closed && e.state != TcpState::Reset {
        e.zero_win += 1;
        if e.zero_win_threshold == 0 {
            e.zero_win_threshold = 1;
        }
        if e.zero_win == e.zero_win_threshold {
            e.zero_win_threshold = e.zero_win_threshold.saturating_mul(10);
            flow.add_history(side, 'W');
        }
    }
}

/// The segment's ACK on the peer's numbering: sets it up from the ACK, or advances what the
/// peer had acknowledged. Returns the ACK relative to the peer's start as it was before (Zeek's
/// rel_ack: 1 when it starts the numbering, 0 when it lies before the start).
fn ack_peer(flow: &mut Flow, peer_side: usize, s: &SegmentView) -> i64 {
    let peer = &mut flow.ends[peer_side].tcp;
    let rel_ack = if peer.state == TcpState::Inactive {
        1
    } else {
        (peer.ack_rel + i64::from(s.ack.wrapping_sub(peer.ack_raw) as i32)).max(0)
    };
    if s.ackf {
        if peer.state == TcpState::Inactive {
            peer.init_seq(s.ack.wrapping_sub(1), s.ack.wrapping_sub(1));
        } else if !s.rst {
            let delta = s.ack.wrapping_sub(peer.ack_raw) as i32;
            if s.ack == 0 && delta > TOO_LARGE_SEQ_DELTA {
                // A broken ACK, not a wrap that lands on 0.
            } else if delta > 0 {
                peer.ack_raw = s.ack;
                peer.ack_rel += i64::from(delta);
            }
        }
    }
    rel_ack
}

/// Zeek's update_last_seq: how far the sender's sequence numbers reached; data below that
/// again is a retransmission (history `T` at its 1st, 10th, 100th ... occurrence).
fn update_last_seq(flow: &mut Flow, side: usize, s: &SegmentView) {
    let e = &mut flow.ends[side].tcp;
    let delta = s.one_past.wrapping_sub(e.last_raw) as i32;
    let mut rxmit = false;
    if (s.syn || s.rst) && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta) {
        // Untrusted jump.
    } else if s.fin && e.last_rel == 1 {
        e.last_rel += i64::from(delta);
        e.last_raw = s.one_past;
    } else if e.state == TcpState::Reset {
        // Nothing after a RST is trusted.
    } else if delta > 0 {
        e.last_rel += i64::from(delta);
        e.last_raw = s.one_past;
    } else if s.len > 0 {
        rxmit = true;
    }
    if rxmit {
        e.rxmit += 1;
        if e.rxmit_threshold == 0 {
            e.rxmit_threshold = 1;
        }
        if e.rxmit == e.rxmit_threshold {
            e.rxmit_threshold = e.rxmit_threshold.saturating_mul(10);
            flow.add_history(side, 'T');
        }
    }
}

/// Zeek's UpdateStateMachine: the sender's TCP state after the segment. Returns the sender's
/// side, which changes when the segment reverses the flow's roles.
fn update_state_machine(flow: &mut Flow, mut side: usize, ts_ns: i64, s: &SegmentView) -> usize {
    use TcpState::*;
    let mut peer_side = 1 - side;
    let mut is_orig = side == 0;
    let state = flow.ends[side].tcp.state;
    let peer_state = flow.ends[peer_side].tcp.state;
    let mut do_close = false;
    match state {
        Inactive => {
            if s.syn {
                if is_orig {
                    flow.ends[side].tcp.set_state(if s.ackf { SynAckSent } else { SynSent });
                    flow.attempt_at = Some(ts_ns);
                } else {
                    if !s.ackf && peer_state == SynAckSent && s.seq == flow.ends[side].tcp.start_raw {
                        // A SYN answering the originator's SYN-ACK: the capture saw the
                        // handshake's first two packets reversed. Zeek flips the roles (history
                        // `^`, the letters so far kept as they are) and establishes both sides.
                        flow.flip();
                        (side, peer_side, is_orig) = (0, 1, true);
                        flow.partial = false;
                        flow.ends[peer_side].tcp.set_state(Established);
                    } else if peer_state == SynSent {
                        flow.ends[peer_side].tcp.set_state(Established);
                    }
                    flow.ends[side].tcp.set_state(Established);
                }
            }
            if s.fin {
                flow.ends[side].tcp.set_state(Closed);
                do_close = true;
            }
            if s.rst {
                flow.ends[side].tcp.set_state(Reset);
                do_close = true;
            }
            if flow.ends[side].tcp.state == Inactive {
                let orig_state = flow.ends[0].tcp.state;
                if !is_orig && s.len == 0 && orig_state == SynSent {
                    // An ACK before the SYN-ACK: not a partial connection.
                } else if s.ackf && flow.ends[peer_side].tcp.state == Established {
                    flow.ends[side].tcp.set_state(Established);
                } else {
                    flow.ends[side].tcp.set_state(Partial);
                }
            }
        }
        SynSent | SynAckSent => {
            if s.fin {
                flow.ends[side].tcp.set_state(Closed);
                do_close = true;
            }
            if s.rst {
                flow.ends[side].tcp.set_state(Reset);
                do_close = true;
            }
        }
        Established | Partial => {
            if s.syn && state == Partial && peer_state == Inactive && !s.ackf {
                flow.ends[side].tcp.set_state(SynSent);
            }
            if s.fin && !s.rst {
                flow.ends[side].tcp.set_state(Closed);
                let peer = &mut flow.ends[peer_side].tcp;
                if peer.state == Reset && peer.prev_state == Closed {
                    // FIN then RST from the peer was a normal close after all.
                    peer.set_state(Closed);
                }
                do_close = true;
            }
            if s.rst {
                flow.ends[side].tcp.set_state(Reset);
                do_close = true;
            }
        }
        Closed => {
            if s.rst && peer_state != Closed {
                flow.ends[side].tcp.set_state(Reset);
                do_close = true;
            }
        }
        Reset => {}
    }
    if do_close {
        flow.ends[side].tcp.did_close = true;
    }
    if flow.ends[side].tcp.state == Partial {
        flow.partial = true;
    }
    side
}

/// Content gaps, after the state machine as in Zeek (an ACK that ends a connection, in a FIN or
/// RST, leaves it unclean, and its gaps are not reported): the ACK moves the peer's stream, and
/// the segment's captured payload fills the sender's.
fn deliver_content(flow: &mut Flow, side: usize, s: &SegmentView, rel_seq: i64, rel_ack: i64) {
    if s.ackf {
        ack_received(flow, 1 - side, rel_ack);
    }
    if s.len > 0 && s.captured && !s.rst && rel_seq >= 0 {
        let e = &flow.ends[side].tcp;
        let data_seq = rel_seq as u64 + u64::from(s.syn);
        let acked = e.ack_rel.max(0) as u64;
        flow.streams[side].data(data_seq, u64::from(s.len), acked, acked <= 1);
    }
}

/// Zeek's TCP_Endpoint::AckReceived for `side`'s stream: the peer acknowledged up to `rel_ack`
/// (a FIN's own octet aside). Each hole below it is a content gap, reported (history `G`/`g`
/// at its 1st, 10th, 100th ... occurrence, and its bytes in `missed_bytes`) only while both
/// sides are established or cleanly closing, as Zeek's `report_gap` decides.
fn ack_received(flow: &mut Flow, side: usize, rel_ack: i64) {
    let e = flow.ends[side].tcp;
    let mut ack = rel_ack.max(0) as u64;
    if e.fin_cnt > 0 && rel_ack >= e.fin_seq {
        ack = (e.fin_seq - 1).max(0) as u64;
    }
    let mut gaps = Vec::new();
    flow.streams[side].acked(ack, flow.partial, &mut gaps);
    let clean = |t: &TcpEnd| {
        t.state == TcpState::Established || (t.state == TcpState::Closed && t.prev_state == TcpState::Established)
    };
    if gaps.is_empty() || !clean(&flow.ends[0].tcp) || !clean(&flow.ends[1].tcp) {
        return;
    }
    for len in gaps {
        flow.missed_bytes += len;
        let e = &mut flow.ends[side].tcp;
        e.gaps += 1;
        if e.gap_threshold == 0 {
            e.gap_threshold = 1;
        }
        if e.gaps == e.gap_threshold {
            e.gap_threshold = e.gap_threshold.saturating_mul(10);
            flow.add_history(side, 'G');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{build, decode, Decoded};
    use std::net::Ipv4Addr;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// (time in ms, from A?, flags, seq, ack, payload)
    fn run_tcp(packets: &[(i64, bool, u8, u32, u32, usize)]) -> Vec<FlowRecord> {
        let mut t = FlowTable::new(Timeouts::default(), 1);
        for (i, &(ms, from_a, flags, seq, ack, len)) in packets.iter().enumerate() {
            let frame = if from_a {
                build::tcp4(A, 40000, B, 80, seq, ack, flags, len)
            } else {
                build::tcp4(B, 80, A, 40000, seq, ack, flags, len)
            };
            let Decoded::Ip(ip) = decode(1, &frame) else { panic!() };
            t.observe(i as u64 + 1, ms * 1_000_000, frame.len() as u32, &ip);
        }
        t.finish_all();
        t.take_finished()
    }

    /// `run_tcp` with TCP checksums verified; the packets at the positions in `bad` (from 0)
    /// have their checksum broken.
    fn run_tcp_checked(packets: &[(i64, bool, u8, u32, u32, usize)], bad: &[usize]) -> Vec<FlowRecord> {
        let mut t = FlowTable::new(Timeouts::default(), 1);
        t.verify_checksums(true);
        for (i, &(ms, from_a, flags, seq, ack, len)) in packets.iter().enumerate() {
            let mut frame = if from_a {
                build::tcp4(A, 40000, B, 80, seq, ack, flags, len)
            } else {
                build::tcp4(B, 80, A, 40000, seq, ack, flags, len)
            };
            if bad.contains(&i) {
                frame[50] ^= 0x5a;
            }
            let Decoded::Ip(ip) = decode(1, &frame) else { panic!() };
            t.observe(i as u64 + 1, ms * 1_000_000, frame.len() as u32, &ip);
        }
        t.finish_all();
        t.take_finished()
    }

    /// Zeek's expected rows (TCP.cc `ValidateChecksum` returns before the endpoint, the
    /// history letters of the segment and the packet counts; `ChecksumError` logs `C`/`c` at
    /// the 1st, 10th, 100th ... bad segment of a side):
    /// - a data segment with a bad checksum, sent again with a good one: `ShACDaFf`, the bad
    ///   one not among the originator's 5 packets, and no retransmission (`T`), since the
    ///   first copy never reached the stream; unchecked, the same packets give `ShADTaFf`;
    /// - 10 bad ACKs from the responder in an established connection: `c` twice;
    /// - a connection whose only segment is bad: no packets, history `C`, state OTH.
    #[test]
    fn bad_checksums_are_logged_and_the_segments_ignored_as_zeek_does() {
        let conn = [
            (0, true, S, 100, 0, 0),
            (1, false, SA, 500, 101, 0),
            (2, true, AK, 101, 501, 0),
            (3, true, PA, 101, 501, 100),
            (4, true, PA, 101, 501, 100),
            (5, false, AK, 501, 201, 0),
            (6, true, FA, 201, 501, 0),
            (7, false, FA, 501, 202, 0),
            (8, true, AK, 202, 502, 0),
        ];
        let checked = run_tcp_checked(&conn, &[3]);
        assert_eq!(checked.len(), 1);
        let f = &checked[0];
        assert_eq!(
            (
                f.history.as_str(),
                f.conn_state,
                f.orig_pkts,
                f.resp_pkts,
                f.orig_bytes,
                f.orig_ip_bytes
            ),
            ("ShACDaFf", "SF", 5, 3, 100, 5 * 40 + 100)
        );
        let plain = run_tcp(&conn);
        assert_eq!(
            (plain[0].history.as_str(), plain[0].orig_pkts, plain[0].orig_ip_bytes),
            ("ShADTaFf", 6, 6 * 40 + 200)
        );
        // Verified but all good: the same as unchecked.
        let good = run_tcp_checked(&conn, &[]);
        assert_eq!((good[0].history.as_str(), good[0].orig_pkts), ("ShADTaFf", 6));

        let mut acks = vec![
            (0, true, S, 100, 0, 0),
            (1, false, SA, 500, 101, 0),
            (2, true, AK, 101, 501, 0),
        ];
        acks.extend((0..10).map(|i| (3 + i, false, AK, 501, 101, 0)));
        let f = &run_tcp_checked(&acks, &(3..13).collect::<Vec<_>>())[0];
        assert_eq!((f.history.as_str(), f.resp_pkts), ("ShAcc", 1));

        let f = &run_tcp_checked(&[(0, true, S, 100, 0, 0)], &[0])[0];
        assert_eq!(
            (
                f.history.as_str(),
                f.conn_state,
                f.orig_pkts,
                f.resp_pkts,
                f.orig_ip_bytes
            ),
            ("C", "OTH", 0, 0, 0)
        );
    }

    /// `run_frames` through [`FlowTable::frame`], with checksums verified or not.
    fn walk_checked(frames: &[(i64, Vec<u8>)], verify: bool) -> Vec<FlowRecord> {
        let mut t = FlowTable::new(Timeouts::default(), 1);
        t.verify_checksums(verify);
        for (i, (ms, frame)) in frames.iter().enumerate() {
            t.frame(i as u64 + 1, ms * 1_000_000, frame.len() as u32, 1, frame);
        }
        t.finish_all();
        t.take_finished()
    }

    /// (history, conn_state, orig_pkts, resp_pkts, orig_bytes, resp_bytes) of a flow.
    fn counts(f: &FlowRecord) -> (&str, &str, u64, u64, u64, u64) {
        (
            f.history.as_str(),
            f.conn_state,
            f.orig_pkts,
            f.resp_pkts,
            f.orig_bytes,
            f.resp_bytes,
        )
    }

    /// Zeek's rows for UDP, ICMP and IP checksums (without `-C`):
    /// - UDP (packet_analysis/protocol/udp/UDP.cc `DeliverPacket`): a datagram with a bad
    ///   checksum goes to `UDPSessionAdapter::HandleBadChecksum` (`C`/`c` at a side's 1st,
    ///   10th, 100th ... one) and returns before `CheckHistory`, `UpdateLength` and the
    ///   forward to ConnSize: a query, a bad answer and a good answer are `Dcd` with one packet
    ///   each way; ten bad queries alone are `CC`, no packets, OTH. A zero checksum over IPv4 is
    ///   "none" and never bad. Every good datagram, an empty one too, is `D`.
    /// - ICMP (packet_analysis/protocol/icmp/ICMP.cc `DeliverPacket`): a bad checksum is a
    ///   weird only; the message counts nowhere and leaves no letter.
    /// - IPv4 header (packet_analysis/protocol/ip/IP.cc `AnalyzePacket`): a bad header
    ///   checksum drops the packet before any connection: no row at all.
    #[test]
    fn bad_udp_icmp_and_ip_checksums_are_handled_as_zeek_does() {
        let good = |src, sport, dst, dport, len| {
            let mut f = build::udp4(src, sport, dst, dport, len);
            build::set_udp4_checksum(&mut f);
            f
        };
        let bad = |src, sport, dst, dport, len| {
            let mut f = good(src, sport, dst, dport, len);
            f[41] ^= 0x5a;
            f
        };
        let dns = [
            (0, good(A, 5000, B, 53, 30)),
            (1, bad(B, 53, A, 5000, 60)),
            (2, good(B, 53, A, 5000, 60)),
        ];
        assert_eq!(counts(&walk_checked(&dns, true)[0]), ("Dcd", "SF", 1, 1, 30, 60));
        // Unchecked, the bad answer counts as any other.
        assert_eq!(counts(&walk_checked(&dns, false)[0]), ("Dd", "SF", 1, 2, 30, 120));
        let ten_bad: Vec<_> = (0..10).map(|i| (i, bad(A, 5000, B, 53, 30))).collect();
        assert_eq!(counts(&walk_checked(&ten_bad, true)[0]), ("CC", "OTH", 0, 0, 0, 0));
        // A zero checksum over IPv4 is no checksum.
        let unsummed = [(0, build::udp4(A, 5000, B, 53, 30))];
        assert_eq!(counts(&walk_checked(&unsummed, true)[0]), ("D", "S0", 1, 0, 30, 0));
        // An empty datagram is still `D`.
        let empty = [(0, good(A, 5000, B, 9999, 0)), (1, good(B, 9999, A, 5000, 0))];
        assert_eq!(counts(&walk_checked(&empty, true)[0]), ("Dd", "SF", 1, 1, 0, 0));

        let mut bad_reply = build::icmp4(B, A, 0, 0, 56);
        bad_reply[36] ^= 0x5a;
        let ping = [(0, build::icmp4(A, B, 8, 0, 56)), (1, bad_reply.clone())];
        assert_eq!(counts(&walk_checked(&ping, true)[0]), ("", "OTH", 1, 0, 56, 0));
        assert_eq!(counts(&walk_checked(&ping, false)[0]), ("", "OTH", 1, 1, 56, 56));
        // A bad message alone still makes its connection, with nothing counted.
        let alone = walk_checked(&[(0, bad_reply)], true);
        assert_eq!(counts(&alone[0]), ("", "OTH", 0, 0, 0, 0));

        let mut bad_header = good(A, 5000, B, 53, 30);
        bad_header[24] ^= 0x5a;
        assert!(walk_checked(&[(0, bad_header.clone())], true).is_empty());
        assert_eq!(walk_checked(&[(0, bad_header)], false).len(), 1);
    }

    /// IP fragments as Zeek treats them (src/Frag.cc `FragReassembler`, IP.cc
    /// `IPAnalyzer::AnalyzePacket`): nothing is delivered until the datagram is whole, then it
    /// is one packet of its full length at the time of the fragment that completed it; a
    /// datagram that never completes leaves no row; overlapping bytes keep what came first; a
    /// fragment the capture cut is not reassembled and a first one goes on alone.
    #[test]
    fn fragments_are_reassembled_into_one_packet_as_zeek_does() {
        let mut udp = build::udp4(A, 5000, B, 7000, 100);
        build::set_udp4_checksum(&mut udp);
        // 128 bytes of IP: 108 of data in fragments at 0, 40 and 80.
        let frags = build::fragments4(&udp[14..], 7, &[40, 80]);
        let out_of_order = [(0, frags[1].clone()), (1, frags[2].clone()), (2, frags[0].clone())];
        for verify in [false, true] {
            let f = walk_checked(&out_of_order, verify);
            assert_eq!(f.len(), 1);
            assert_eq!(counts(&f[0]), ("D", "S0", 1, 0, 100, 0), "verify {verify}");
            assert_eq!((f[0].orig_ip_bytes, f[0].ts_ns, f[0].duration_ns), (128, 2_000_000, 0));
        }
        // The last fragment never comes: no row.
        assert!(walk_checked(&[(0, frags[0].clone()), (1, frags[1].clone())], false).is_empty());

        // A forged copy of the middle fragment: the bytes seen first stay, so the datagram's
        // checksum tells which copy was kept.
        let mut forged = frags[1].clone();
        forged[40] ^= 0x5a;
        let real_first = [
            (0, frags[0].clone()),
            (1, frags[1].clone()),
            (2, forged.clone()),
            (3, frags[2].clone()),
        ];
        assert_eq!(counts(&walk_checked(&real_first, true)[0]), ("D", "S0", 1, 0, 100, 0));
        let forged_first = [
            (0, frags[0].clone()),
            (1, forged),
            (2, frags[1].clone()),
            (3, frags[2].clone()),
        ];
        assert_eq!(counts(&walk_checked(&forged_first, true)[0]), ("C", "OTH", 0, 0, 0, 0));

        // The capture cut the first fragment (its header says 60 bytes of IP): it goes on
        // alone, and the later ones form nothing.
        let mut cut = frags[0].clone();
        cut.truncate(14 + 20 + 20);
        let f = walk_checked(&[(0, cut), (1, frags[1].clone()), (2, frags[2].clone())], false);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].orig_pkts, f[0].orig_ip_bytes), (1, 60));

        // IPv6: the fragment header goes, the datagram is 40 + 108 bytes.
        let (a6, b6) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let udp6 = build::ipv6(a6, b6, 17, &build::udp(5000, 7000, &[0u8; 100]));
        let frags6 = build::fragments6(&udp6, 99, &[48]);
        let f = walk_checked(&[(0, frags6[1].clone()), (5, frags6[0].clone())], false);
        assert_eq!(f.len(), 1);
        assert_eq!(counts(&f[0]), ("D", "S0", 1, 0, 100, 0));
        assert_eq!((f[0].orig_ip_bytes, f[0].ts_ns), (148, 5_000_000));

        // A fragment sent in fragments: its reassembly is itself a fragment, which is not
        // reassembled again (nesting could go thousands deep), so it never meets its second half
        // and no flow forms.
        let nested = build::fragments6(&frags6[0][14..], 7, &[16]);
        let frames = [(0, nested[0].clone()), (1, nested[1].clone()), (2, frags6[1].clone())];
        assert!(walk_checked(&frames, false).is_empty());
    }

    const S: u8 = tf::SYN;
    const SA: u8 = tf::SYN | tf::ACK;
    const AK: u8 = tf::ACK;
    const PA: u8 = tf::PSH | tf::ACK;
    const FA: u8 = tf::FIN | tf::ACK;
    const R: u8 = tf::RST;
    const RA: u8 = tf::RST | tf::ACK;

    /// Every packet a new flow, one a second, each idle past the UDP timeout a minute later:
    /// sweeps must keep up (comparing the packets since a sweep with the flows open now, which
    /// grow with every packet, stopped them for good).
    /// Issue 22: a capture of unique 5-tuples within one timeout grew the table without limit.
    /// At the bound the half seen longest ago end early; every packet still lands in a flow.
    #[test]
    fn the_active_flows_stay_within_their_bound() {
        let mut t = FlowTable::new(Timeouts::default(), 0);
        t.limit_active(100);
        let mut flows = 0;
        let mut packets = 0;
        for i in 0..1000u32 {
            let src = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let frame = build::udp4(src, 1024, [10, 0, 0, 2].into(), 53, 10);
            let Decoded::Ip(ip) = decode(1, &frame) else {
                panic!("not IP")
            };
            // One packet a millisecond: nothing times out on its own.
            assert!(t.observe(u64::from(i) + 1, i64::from(i) * 1_000_000, 52, &ip).is_some());
            assert!(t.active() <= 100, "{} active", t.active());
            for f in t.take_finished() {
                packets += f.orig_pkts + f.resp_pkts;
                flows += 1;
            }
        }
        assert!(t.shed() >= 900, "{} shed", t.shed());
        // The oldest went first: the newest packet's flow is still active.
        t.finish_all();
        let last = t.take_finished();
        let newest = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 999u32));
        assert!(last.iter().any(|f| f.orig_h == newest));
        for f in last {
            packets += f.orig_pkts + f.resp_pkts;
            flows += 1;
        }
        assert_eq!((flows, packets), (1000, 1000));
    }

    #[test]
    fn sweeps_keep_up_when_every_packet_opens_a_flow() {
        let mut t = FlowTable::new(Timeouts::default(), 0);
        let mut most = 0;
        for i in 0..2000u16 {
            let frame = build::udp4([10, 0, 0, 1].into(), 1024 + i, [10, 0, 0, 2].into(), 53, 10);
            let Decoded::Ip(ip) = decode(1, &frame) else {
                panic!("not IP")
            };
            t.observe(u64::from(i) + 1, i64::from(i) * NS, frame.len() as u32, &ip);
            most = most.max(t.active());
        }
        // Exact sweeping holds 61 flows (one a second, a 60 s timeout); about twice that here.
        assert!(most <= 2 * 62, "{most} flows held at once");
        assert!(t.finished_len() > 1800, "only {} finished", t.finished_len());
    }

    /// A live capture ends idle flows as time passes without packets; what it ends, and the
    /// records, are what the next packet would have ended, and nothing younger goes.
    #[test]
    fn idle_flows_end_without_packets_as_a_later_packet_would_end_them() {
        let frame = |sport: u16| build::udp4([10, 0, 0, 1].into(), sport, [10, 0, 0, 2].into(), 53, 10);
        let run = |expire: bool| {
            let mut t = FlowTable::new(Timeouts::default(), 0);
            for (n, (sport, at)) in [(1000u16, 0i64), (1001, 30)].into_iter().enumerate() {
                let f = frame(sport);
                let Decoded::Ip(ip) = decode(1, &f) else {
                    panic!("not IP")
                };
                t.observe(n as u64 + 1, at * NS, f.len() as u32, &ip);
            }
            if expire {
                t.expire_idle(61 * NS);
            } else {
                // A later packet of the first flow's ports, 61 s on: the first flow ended first.
                let f = frame(1000);
                let Decoded::Ip(ip) = decode(1, &f) else {
                    panic!("not IP")
                };
                t.observe(3, 61 * NS, f.len() as u32, &ip);
            }
            t.take_finished()
        };
        let (expired, by_packet) = (run(true), run(false));
        assert_eq!(expired.len(), 1, "only the flow idle past 60 s ends");
        assert_eq!(expired, by_packet);
    }

    /// The uid of a flow must not change between netlens versions: the limb-by-limb division
    /// gives what the straightforward u128 one gave.
    #[test]
    fn uids_are_those_of_the_u128_division() {
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let reference = |seed: u64, key: &[u64]| {
            let (mut h1, mut h2) = (mix(seed ^ 0x6e65_746c_656e_7331), mix(seed ^ 0x7569_6473_2121_2121));
            for &w in key {
                h1 = mix(h1 ^ w);
                h2 = mix(h2.rotate_left(17) ^ w);
            }
            let mut n = (u128::from(h1) << 64 | u128::from(h2)) >> 32;
            let mut s = String::from("C");
            for _ in 0..17 {
                s.push(DIGITS[(n % 62) as usize] as char);
                n /= 62;
            }
            s
        };
        for i in 0..2000u64 {
            let key = [i, mix(i), u64::MAX - i, 6, 443];
            assert_eq!(make_uid(i % 3, &key), reference(i % 3, &key));
        }
        assert_eq!(make_uid(0, &[]), reference(0, &[]));
        // And a value written down, should both ever change together.
        assert_eq!(
            make_uid(0, &[6, 1234, 80, 1_600_000_000_000_000_000, 1]),
            "C2tsdBNDHgilQLbQR0"
        );
    }

    /// Five digits per division give the digits of taking one at a time, at the edges of the
    /// 96-bit range and of each five-digit chunk too.
    #[test]
    fn base62_digits_match_one_digit_at_a_time() {
        let reference = |n: u128| {
            let mut n = n;
            let mut s = String::from("C");
            for _ in 0..17 {
                s.push(BASE62[(n % 62) as usize] as char);
                n /= 62;
            }
            s
        };
        let limbs = |n: u128| [(n >> 64) as u32, (n >> 32) as u32, n as u32];
        let chunk = 62u128.pow(5);
        let mut values = vec![0, 1, 61, 62, (1u128 << 96) - 1, 1u128 << 95];
        // 62^15 is the largest power of the chunk below 2^96.
        for k in 1..=3 {
            values.extend([chunk.pow(k) - 1, chunk.pow(k), chunk.pow(k) + 1]);
        }
        values.extend((0..1000u64).map(|i| u128::from(mix(i)) << 32 | u128::from(mix(!i) as u32)));
        for n in values {
            assert_eq!(base62_digits(limbs(n)), reference(n), "{n}");
        }
    }

    #[test]
    fn full_connection_is_sf_with_zeek_history_and_seq_bytes() {
        let f = run_tcp(&[
            (0, true, S, 100, 0, 0),
            (1, false, SA, 500, 101, 0),
            (2, true, AK, 101, 501, 0),
            (3, true, PA, 101, 501, 20),
            (4, false, PA, 501, 121, 300),
            (5, true, FA, 121, 801, 0),
            (6, false, FA, 801, 122, 0),
            (7, true, AK, 122, 802, 0),
        ]);
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!((f.conn_state, f.history.as_str()), ("SF", "ShADdFf"));
        assert_eq!((f.orig_bytes, f.resp_bytes), (20, 300));
        assert_eq!((f.orig_pkts, f.resp_pkts), (5, 3));
        assert_eq!(f.orig_ip_bytes, 5 * 40 + 20);
        assert_eq!(f.service, Some("http"));
        // The final ACK after both FINs does not extend the duration (Zeek's rule).
        assert_eq!(f.duration_ns, 6_000_000);
        assert!(f.uid.starts_with('C') && f.uid.len() == 18);
    }

    #[test]
    fn scan_outcomes() {
        let rej = run_tcp(&[(0, true, S, 1, 0, 0), (1, false, RA, 0, 2, 0)]);
        assert_eq!((rej[0].conn_state, rej[0].history.as_str()), ("REJ", "Sr"));
        let s0 = run_tcp(&[(0, true, S, 1, 0, 0)]);
        assert_eq!((s0[0].conn_state, s0[0].history.as_str()), ("S0", "S"));
        // SYN, SYN-ACK, then the scanner's RST (a half-open scan of an open port).
        let rsto = run_tcp(&[(0, true, S, 1, 0, 0), (1, false, SA, 9, 2, 0), (2, true, R, 2, 0, 0)]);
        assert_eq!((rsto[0].conn_state, rsto[0].history.as_str()), ("RSTO", "ShR"));
        let rstos0 = run_tcp(&[(0, true, S, 1, 0, 0), (1, true, R, 2, 0, 0)]);
        assert_eq!(rstos0[0].conn_state, "RSTOS0");
        let sh = run_tcp(&[(0, true, S, 1, 0, 0), (1, true, tf::FIN, 2, 0, 0)]);
        assert_eq!(sh[0].conn_state, "SH");
        let s1 = run_tcp(&[(0, true, S, 1, 0, 0), (1, false, SA, 9, 2, 0), (2, true, AK, 2, 10, 0)]);
        assert_eq!((s1[0].conn_state, s1[0].history.as_str()), ("S1", "ShA"));
        let oth = run_tcp(&[(0, true, PA, 1000, 5, 10), (1, false, AK, 5, 1010, 0)]);
        assert_eq!(
            (oth[0].conn_state, oth[0].history.as_str(), oth[0].orig_bytes),
            ("OTH", "Da", 10)
        );
        let flipped = run_tcp(&[(0, false, SA, 9, 2, 0), (1, true, AK, 2, 10, 0)]);
        assert_eq!(flipped[0].history.as_str(), "^hA");
        assert_eq!(flipped[0].orig_h, IpAddr::V4(A));
    }

    /// Frames (time in ms, frame) through a fresh table.
    fn run_frames(frames: &[(i64, Vec<u8>)]) -> Vec<FlowRecord> {
        let mut t = FlowTable::new(Timeouts::default(), 1);
        for (i, (ms, frame)) in frames.iter().enumerate() {
            let Decoded::Ip(ip) = decode(1, frame) else { panic!() };
            t.observe(i as u64 + 1, ms * 1_000_000, frame.len() as u32, &ip);
        }
        t.finish_all();
        t.take_finished()
    }

    fn row(f: &FlowRecord) -> (String, u16, String, u16, &'static str, &str) {
        (
            f.orig_h.to_string(),
            f.orig_p,
            f.resp_h.to_string(),
            f.resp_p,
            f.conn_state,
            f.history.as_str(),
        )
    }

    /// Zeek's TCPAnalyzer::WantConnection: a first packet other than a plain SYN is flipped
    /// (history `^`) only when its source port is a likely server port and its destination's is
    /// not, or both are, it carries no SYN and its source port is the lower one.
    #[test]
    fn tcp_orientation_follows_likely_server_ports() {
        let one = |sp: u16, dp: u16, flags: u8| run_frames(&[(0, build::tcp4(B, sp, A, dp, 9, 2, flags, 0))]);
        // SYN-ACK from 80 to an ephemeral port: flipped, A:40000 is the originator.
        // Zeek: 10.0.0.1 40000 -> 10.0.0.2 80, OTH, "^h".
        let f = one(80, 40000, SA);
        assert_eq!(
            row(&f[0]),
            ("10.0.0.1".into(), 40000, "10.0.0.2".into(), 80, "OTH", "^h")
        );
        // SYN-ACK from a port that is not a likely server port: kept as seen (Zeek: B:9999 is
        // the originator, its state SYN_ACK_SENT, "H", OTH).
        let f = one(9999, 40000, SA);
        assert_eq!(
            row(&f[0]),
            ("10.0.0.2".into(), 9999, "10.0.0.1".into(), 40000, "OTH", "H")
        );
        // A plain SYN is never flipped, whatever its ports: 80 -> 40000, S0, "S".
        let f = one(80, 40000, S);
        assert_eq!(row(&f[0]), ("10.0.0.2".into(), 80, "10.0.0.1".into(), 40000, "S0", "S"));
        // Both likely server ports: an ACK from the lower port is flipped (443 -> 80 is the
        // guess, "^a"); one from the higher port is not; a SYN-ACK never is (stealth scans).
        let f = one(80, 443, AK);
        assert_eq!(row(&f[0]), ("10.0.0.1".into(), 443, "10.0.0.2".into(), 80, "OTH", "^a"));
        let f = one(443, 80, AK);
        assert_eq!(row(&f[0]), ("10.0.0.2".into(), 443, "10.0.0.1".into(), 80, "OTH", "A"));
        let f = one(80, 443, SA);
        assert_eq!(row(&f[0]), ("10.0.0.2".into(), 80, "10.0.0.1".into(), 443, "OTH", "H"));
        // Data from a server port seen first (the capture started mid-connection): flipped.
        let f = run_frames(&[
            (0, build::tcp4(B, 22, A, 50000, 9, 2, PA, 100)),
            (1, build::tcp4(A, 50000, B, 22, 2, 109, PA, 50)),
        ]);
        assert_eq!(
            row(&f[0]),
            ("10.0.0.1".into(), 50000, "10.0.0.2".into(), 22, "OTH", "^dD")
        );
    }

    /// Zeek's UDPAnalyzer::WantConnection: flipped when the source port is a likely server
    /// port and the destination port is not.
    #[test]
    fn udp_orientation_follows_likely_server_ports() {
        // A DHCP answer 67 -> 68 seen first: flipped, the client is the originator, and with
        // nothing from it the state is SHR ("^d").
        let f = run_frames(&[(0, build::udp4(B, 67, A, 68, 300))]);
        assert_eq!(row(&f[0]), ("10.0.0.1".into(), 68, "10.0.0.2".into(), 67, "SHR", "^d"));
        // The request first (68 -> 67): not flipped (68 is not a likely server port), SF "Dd".
        let f = run_frames(&[(0, build::udp4(A, 68, B, 67, 300)), (1, build::udp4(B, 67, A, 68, 300))]);
        assert_eq!(row(&f[0]), ("10.0.0.1".into(), 68, "10.0.0.2".into(), 67, "SF", "Dd"));
        // NTP 123 <-> 123: both ports likely, never flipped; the first sender originates.
        let f = run_frames(&[
            (0, build::udp4(B, 123, A, 123, 48)),
            (1, build::udp4(A, 123, B, 123, 48)),
        ]);
        assert_eq!(row(&f[0]), ("10.0.0.2".into(), 123, "10.0.0.1".into(), 123, "SF", "Dd"));
        // A DNS answer before its query: flipped, "^dD".
        let f = run_frames(&[
            (0, build::udp4(B, 53, A, 5000, 80)),
            (1, build::udp4(A, 5000, B, 53, 40)),
        ]);
        assert_eq!(
            row(&f[0]),
            ("10.0.0.1".into(), 5000, "10.0.0.2".into(), 53, "SF", "^dD")
        );
        assert_eq!((f[0].orig_bytes, f[0].resp_bytes), (40, 80));
        // Between two ephemeral ports nothing is flipped.
        let f = run_frames(&[(0, build::udp4(B, 40001, A, 40002, 10))]);
        assert_eq!(
            row(&f[0]),
            ("10.0.0.2".into(), 40001, "10.0.0.1".into(), 40002, "S0", "D")
        );
    }

    /// Zeek's IsReuse: after a RST closed an attempt, the next SYN on the same ports is a new
    /// connection even with the same sequence number (a retried connect). Zeek logs three rows,
    /// each 10.0.0.1:40000 -> 10.0.0.2:80, REJ, `Sr`, one packet each way.
    #[test]
    fn each_refused_attempt_is_its_own_rej_row() {
        let f = run_tcp(&[
            (0, true, S, 1, 0, 0),
            (1, false, RA, 0, 2, 0),
            (1000, true, S, 1, 0, 0), // the same ISN again
            (1001, false, RA, 0, 2, 0),
            (2000, true, S, 5000, 0, 0),
            (2001, false, RA, 0, 5001, 0),
        ]);
        let rows: Vec<_> = f
            .iter()
            .map(|x| (x.conn_state, x.history.as_str(), x.orig_pkts, x.resp_pkts))
            .collect();
        assert_eq!(rows, vec![("REJ", "Sr", 1, 1); 3]);
        assert_eq!(
            f.iter().map(|x| x.ts_ns).collect::<Vec<_>>(),
            [0, 1_000_000_000, 2_000_000_000]
        );
    }

    /// Zeek's AttemptTimer (tcp_attempt_delay, 5 s): a SYN unanswered for 5 s ends its
    /// connection (S0, retransmissions of the same SYN inside it); the next packet of the same
    /// ports starts a new one. Zeek's rows: S0 `S` (3 packets), then S0 `S` (1 packet).
    #[test]
    fn unanswered_syns_end_after_the_attempt_delay() {
        let f = run_tcp(&[
            (0, true, S, 1, 0, 0),
            (1000, true, S, 1, 0, 0),
            (3000, true, S, 1, 0, 0),
            (7000, true, S, 1, 0, 0),
        ]);
        let rows: Vec<_> = f
            .iter()
            .map(|x| (x.conn_state, x.history.as_str(), x.orig_pkts, x.duration_ns))
            .collect();
        assert_eq!(rows, [("S0", "S", 3, 3_000_000_000), ("S0", "S", 1, 0)]);
        // Answered in time, the same retransmissions stay one connection.
        let f = run_tcp(&[
            (0, true, S, 1, 0, 0),
            (4000, false, SA, 9, 2, 0),
            (6000, true, AK, 2, 10, 0),
        ]);
        assert_eq!((f.len(), f[0].conn_state, f[0].history.as_str()), (1, "S1", "ShA"));
    }

    /// The later packets of an ended S0 attempt are a connection without a SYN: a FIN from the
    /// originator alone is Zeek's SH (originator closed, responder inactive), history `F`.
    #[test]
    fn packets_after_an_ended_attempt_form_a_half_open_row() {
        let f = run_tcp(&[(0, true, S, 1, 0, 0), (6000, true, FA, 2, 10, 0)]);
        let rows: Vec<_> = f
            .iter()
            .map(|x| (x.conn_state, x.history.as_str(), x.orig_pkts, x.resp_pkts))
            .collect();
        assert_eq!(rows, [("S0", "S", 1, 0), ("SH", "F", 1, 0)]);
        // Data from the server after it: a new connection, flipped to the client (80 is a
        // likely server port), neither side with a SYN: OTH, `^d`.
        let f = run_tcp(&[(0, true, S, 1, 0, 0), (6000, false, PA, 9, 2, 10)]);
        assert_eq!(
            (f[1].conn_state, f[1].history.as_str(), f[1].orig_h),
            ("OTH", "^d", IpAddr::V4(A))
        );
    }

    /// Zeek's ScaledHistoryEntry: retransmissions (`T`) and zero windows (`W`) are logged at
    /// their 1st, 10th, 100th, ... occurrence, upper case from the originator. Zeek's rows:
    /// eleven retransmissions of one data segment give `ShDTT`; ten zero-window ACKs `ShAWW`.
    #[test]
    fn repeated_letters_are_logged_at_powers_of_ten() {
        let mut packets = vec![(0, true, S, 1, 0, 0), (1, false, SA, 9, 2, 0)];
        packets.extend((0..12).map(|i| (2 + i, true, PA, 2, 10, 10)));
        assert_eq!(run_tcp(&packets)[0].history, "ShDTT");

        let mut t = FlowTable::new(Timeouts::default(), 1);
        let mut frames = vec![
            build::tcp4(A, 40000, B, 80, 1, 0, S, 0),
            build::tcp4(B, 80, A, 40000, 9, 2, SA, 0),
        ];
        for _ in 0..10 {
            let mut ack = build::tcp4(A, 40000, B, 80, 2, 10, AK, 0);
            ack[14 + 20 + 14..14 + 20 + 16].copy_from_slice(&[0, 0]); // TCP window: 0
            frames.push(ack);
        }
        for (i, frame) in frames.iter().enumerate() {
            let Decoded::Ip(ip) = decode(1, frame) else { panic!() };
            t.observe(i as u64 + 1, i as i64, frame.len() as u32, &ip);
        }
        t.finish_all();
        assert_eq!(t.take_finished()[0].history, "ShAWW");
    }

    #[test]
    fn retransmissions_and_port_reuse() {
        let f = run_tcp(&[
            (0, true, S, 1, 0, 0),
            (1, false, SA, 9, 2, 0),
            (2, true, PA, 2, 10, 10),
            (3, true, PA, 2, 10, 10),
            (4, true, S, 777, 0, 0), // new ISN: a new connection on the same ports
        ]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].history, "ShDT");
        assert_eq!((f[0].orig_pkts, f[0].orig_bytes, f[0].orig_payload_seen), (3, 10, 20));
        assert_eq!((f[1].history.as_str(), f[1].conn_state), ("S", "S0"));
        assert_ne!(f[0].uid, f[1].uid);
    }

    #[test]
    fn idle_timeout_splits_udp_and_uids_are_stable() {
        let run = || {
            let mut t = FlowTable::new(Timeouts::default(), 1);
            for (i, (s, from_a)) in [(0i64, true), (1, false), (200, true)].into_iter().enumerate() {
                let frame = if from_a {
                    build::udp4(A, 5000, B, 53, 30)
                } else {
                    build::udp4(B, 53, A, 5000, 60)
                };
                let Decoded::Ip(ip) = decode(1, &frame) else { panic!() };
                t.observe(i as u64 + 1, s * NS, frame.len() as u32, &ip);
            }
            t.finish_all();
            t.take_finished()
        };
        let f = run();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].conn_state, f[0].history.as_str(), f[0].orig_bytes, f[0].resp_bytes),
            ("SF", "Dd", 30, 60)
        );
        assert_eq!((f[1].conn_state, f[1].orig_pkts, f[1].service), ("S0", 1, Some("dns")));
        assert_eq!(
            f.iter().map(|x| &x.uid).collect::<Vec<_>>(),
            run().iter().map(|x| &x.uid).collect::<Vec<_>>()
        );
    }

    #[test]
    fn icmp_echo_pairs_into_one_flow() {
        let mut t = FlowTable::new(Timeouts::default(), 1);
        for (i, frame) in [
            build::icmp4(A, B, 8, 0, 56),
            build::icmp4(B, A, 0, 0, 56),
            build::icmp4(B, A, 3, 3, 28),
        ]
        .iter()
        .enumerate()
        {
            let Decoded::Ip(ip) = decode(1, frame) else { panic!() };
            t.observe(i as u64 + 1, i as i64, frame.len() as u32, &ip);
        }
        t.finish_all();
        let f = t.take_finished();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].proto, f[0].orig_p, f[0].resp_p, f[0].orig_pkts, f[0].resp_pkts),
            ("icmp", 8, 0, 1, 1)
        );
        assert_eq!((f[1].orig_h, f[1].orig_p, f[1].resp_p), (IpAddr::V4(B), 3, 3));
    }

    #[test]
    fn rstos0_pattern() {
        assert!(rstos0_history("SR"));
        assert!(rstos0_history("^SdR"));
        assert!(!rstos0_history("SAR"));
        assert!(!rstos0_history("R") && !rstos0_history("SFR"));
    }

    /// The handshake of A (ISN 100) with B (ISN 500): A's data starts at sequence 101.
    const HANDSHAKE: [(i64, bool, u8, u32, u32, usize); 3] = [
        (0, true, S, 100, 0, 0),
        (1, false, SA, 500, 101, 0),
        (2, true, AK, 101, 501, 0),
    ];

    fn with_handshake(rest: &[(i64, bool, u8, u32, u32, usize)]) -> Vec<FlowRecord> {
        run_tcp(&[&HANDSHAKE[..], rest].concat())
    }

    /// A segment the capture missed and the peer acknowledged is a content gap: history `G`
    /// (the side whose data is missing) and its bytes in missed_bytes; the sequence-number
    /// byte count still includes it (Zeek's conn.log for such a trace: SF, ShADaGFf,
    /// orig_bytes 300, missed_bytes 100).
    #[test]
    fn an_acknowledged_hole_is_a_content_gap() {
        let f = with_handshake(&[
            (3, true, PA, 101, 501, 100),
            // 201..301 never seen.
            (4, true, PA, 301, 501, 100),
            (5, false, AK, 501, 401, 0),
            (6, true, FA, 401, 501, 0),
            (7, false, FA, 501, 402, 0),
            (8, true, AK, 402, 502, 0),
        ]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].conn_state, f[0].history.as_str()), ("SF", "ShADaGFf"));
        assert_eq!((f[0].orig_bytes, f[0].missed_bytes), (300, 100));
    }

    /// The responder's missing data is `g`; a hole acknowledged by the ACK of a FIN counts (both
    /// sides are cleanly closing), the FIN's own octet does not.
    #[test]
    fn a_hole_before_a_fin_is_a_gap_of_the_sender() {
        let f = with_handshake(&[
            (3, false, PA, 501, 101, 100),
            // 601..701 never seen.
            (4, false, FA, 701, 101, 0),
            (5, true, FA, 101, 702, 0),
            (6, false, AK, 702, 102, 0),
        ]);
        assert_eq!((f[0].conn_state, f[0].history.as_str()), ("SF", "ShAdfFga"));
        assert_eq!((f[0].resp_bytes, f[0].missed_bytes), (200, 100));
    }

    /// Segments that arrive out of order fill their hole before any ACK: no gap (the late one is
    /// below the highest sequence seen, so Zeek counts it as a retransmission, `T`).
    #[test]
    fn reordered_segments_are_no_gap() {
        let f = with_handshake(&[
            (3, true, PA, 201, 501, 100),
            (4, true, PA, 101, 501, 100),
            (5, false, AK, 501, 301, 0),
        ]);
        assert_eq!((f[0].history.as_str(), f[0].missed_bytes), ("ShADTa", 0));
    }

    /// A hole revealed by the ACK in a RST, or in a partial connection (no handshake seen), is
    /// not reported: Zeek reports gaps only while both sides are established or cleanly closing.
    #[test]
    fn gaps_in_resets_and_partial_connections_are_not_reported() {
        let reset = with_handshake(&[(3, true, PA, 101, 501, 100), (4, false, RA, 501, 301, 0)]);
        assert_eq!((reset[0].conn_state, reset[0].history.as_str()), ("RSTR", "ShADr"));
        assert_eq!(reset[0].missed_bytes, 0);
        let partial = run_tcp(&[
            (0, true, PA, 1000, 5000, 100),
            (1, true, PA, 1200, 5000, 100),
            (2, false, AK, 5000, 1300, 0),
        ]);
        assert_eq!((partial[0].history.as_str(), partial[0].missed_bytes), ("Da", 0));
    }

    /// Gaps are logged at their 1st, 10th, 100th ... occurrence; every one counts its bytes.
    #[test]
    fn repeated_gaps_are_logged_at_powers_of_ten() {
        let mut packets = Vec::new();
        for i in 0..10u32 {
            let ms = 3 + 2 * i64::from(i);
            packets.push((ms, true, PA, 101 + 200 * i, 501, 100));
            packets.push((ms + 1, false, AK, 501, 301 + 200 * i, 0));
        }
        let f = with_handshake(&packets);
        assert_eq!((f[0].history.as_str(), f[0].missed_bytes), ("ShADaGG", 1000));
    }

    /// A payload cut by the snap length never reaches Zeek's reassembler: acknowledged, it is a
    /// gap.
    #[test]
    fn a_payload_cut_by_the_snap_length_is_a_gap() {
        let mut frames: Vec<(i64, Vec<u8>)> = HANDSHAKE
            .iter()
            .map(|&(ms, from_a, flags, seq, ack, len)| {
                let frame = if from_a {
                    build::tcp4(A, 40000, B, 80, seq, ack, flags, len)
                } else {
                    build::tcp4(B, 80, A, 40000, seq, ack, flags, len)
                };
                (ms, frame)
            })
            .collect();
        let mut cut = build::tcp4(A, 40000, B, 80, 101, 501, PA, 1000);
        cut.truncate(14 + 20 + 20 + 64);
        frames.push((3, cut));
        frames.push((4, build::tcp4(B, 80, A, 40000, 501, 1101, AK, 0)));
        let f = run_frames(&frames);
        assert_eq!(
            (f[0].history.as_str(), f[0].orig_bytes, f[0].missed_bytes),
            ("ShADaG", 1000, 1000)
        );
    }

    /// More than 16 KiB above a hole while none of the side's data was acknowledged: Zeek's
    /// reassembler stops following the stream (above_hole_data_without_any_acks), and the
    /// holes acknowledged afterwards are not gaps.
    #[test]
    fn a_stream_with_too_much_above_a_hole_is_no_longer_followed() {
        let mut packets = vec![(3, true, PA, 101, 501, 1460)];
        // 1561..3021 never seen; then 12 segments above the hole (17 520 bytes).
        for i in 0..12u32 {
            packets.push((4, true, PA, 3021 + 1460 * i, 501, 1460));
        }
        packets.push((5, false, AK, 501, 3021 + 1460 * 12, 0));
        let f = with_handshake(&packets);
        assert_eq!((f[0].history.as_str(), f[0].missed_bytes), ("ShADa", 0));
        // The same with fewer bytes above the hole is reported.
        packets.drain(4..13);
        let last = packets.len() - 1;
        packets[last] = (5, false, AK, 501, 3021 + 1460 * 3, 0);
        let f = with_handshake(&packets);
        assert_eq!((f[0].history.as_str(), f[0].missed_bytes), ("ShADaG", 1460));
    }

    /// A side with more separate runs above holes than MAX_HOLES is no longer followed (and
    /// what was waiting is dropped), so a crafted capture cannot make every segment slow.
    #[test]
    fn too_many_holes_stop_the_side_being_followed() {
        let mut s = Stream::new();
        s.data(1, 10, 1, false);
        for i in 0..MAX_HOLES as u64 {
            s.data(100 + 10 * i, 5, 1, false);
        }
        assert_eq!((s.above_hole.len(), s.skipping), (MAX_HOLES, false));
        s.data(100 + 10 * MAX_HOLES as u64, 5, 1, false);
        assert!(s.skipping && s.above_hole.is_empty());
        let mut gaps = Vec::new();
        s.acked(1_000_000, false, &mut gaps);
        assert!(gaps.is_empty());
        assert_eq!(s.reassembled, 1_000_000);
    }

    #[test]
    fn ranges_merge_what_they_overlap_or_touch() {
        let mut r = Vec::new();
        insert_range(&mut r, 10, 20);
        insert_range(&mut r, 30, 40);
        insert_range(&mut r, 50, 60);
        insert_range(&mut r, 20, 30);
        assert_eq!(r, [(10, 40), (50, 60)]);
        insert_range(&mut r, 5, 55);
        assert_eq!(r, [(5, 60)]);
        insert_range(&mut r, 1, 2);
        assert_eq!(r, [(1, 2), (5, 60)]);
    }

    /// The handshake's first two packets captured reversed (SYN-ACK, then its SYN), between
    /// ports neither of which is a likely server port: the SYN-ACK's sender starts as the
    /// originator, and the SYN flips the roles (Zeek's SYN/SYN-ACK reversal in
    /// UpdateInactiveState): history `Hs^` then the rest from the true originator's view, SF.
    /// Ports whose analyzers Zeek registers without adding them to `likely_server_ports`
    /// (base/protocols/mysql/main.zeek: 1434/tcp, 3306/tcp; base/packet-protocols/teredo/main.zeek
    /// since its removal-hook version: 3544/udp), and ones its scripts do add
    /// (base/packet-protocols/{vxlan,geneve,gtpv1,ayiya}/main.zeek, base/protocols/mqtt).
    #[test]
    fn likely_server_ports_are_zeeks_redefs_only() {
        for port in [1434, 3306] {
            assert!(!likely_server_port(Kind::Tcp, port), "tcp {port}");
        }
        assert!(!likely_server_port(Kind::Udp, 3544));
        for port in [4789, 6081, 2152, 2123, 5072] {
            assert!(likely_server_port(Kind::Udp, port), "udp {port}");
        }
        assert!(likely_server_port(Kind::Tcp, 1883));
        // base/protocols/redis/main.zeek adds its port; finger, QUIC and DHCPv6 only register
        // their analyzers for theirs.
        assert!(likely_server_port(Kind::Tcp, 6379));
        assert!(!likely_server_port(Kind::Tcp, 79));
        for port in [546, 547, 784, 853] {
            assert!(!likely_server_port(Kind::Udp, port), "udp {port}");
        }
        // A MySQL server's answer seen first is not flipped (Zeek keeps the sender as originator).
        let f = run_frames(&[(
            0,
            build::tcp4(v4("10.0.0.2"), 3306, v4("10.0.0.1"), 50000, 7, 1, tf::ACK, 10),
        )]);
        assert_eq!(
            (f[0].orig_p, f[0].history.starts_with('^')),
            (3306, false),
            "{}",
            f[0].history
        );
    }

    /// Runs Ethernet frames through `FlowTable::frame` (tunnels followed), 1 ms apart.
    fn walk_frames(frames: &[Vec<u8>]) -> (Vec<FlowRecord>, Vec<Option<TunnelStop>>) {
        let mut t = FlowTable::new(Timeouts::default(), 1);
        let mut stops = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let w = t.frame(i as u64 + 1, i as i64 * 1_000_000, frame.len() as u32, 1, frame);
            stops.push(w.stopped);
        }
        t.finish_all();
        (t.take_finished(), stops)
    }

    fn v4(s: &str) -> std::net::Ipv4Addr {
        s.parse().unwrap()
    }

    /// An inner IPv4 TCP segment (no link layer) of the handshake 10.9.0.1:40000 -> 10.9.0.2:80.
    fn inner_tcp(from_client: bool, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
        let (c, s) = (v4("10.9.0.1"), v4("10.9.0.2"));
        let f = if from_client {
            build::tcp4(c, 40000, s, 80, seq, ack, flags, 0)
        } else {
            build::tcp4(s, 80, c, 40000, seq, ack, flags, 0)
        };
        f[14..].to_vec()
    }

    /// A VXLAN frame between the two VTEPs (the client side's VTEP sends when `from_client`).
    fn vxlan_frame(from_client: bool, inner_ip: &[u8]) -> Vec<u8> {
        let mut v = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        v.extend_from_slice(&build::ethernet(0x0800, inner_ip));
        let (a, b) = (v4("192.0.2.1"), v4("192.0.2.2"));
        let (src, dst, sport, dport) = if from_client {
            (a, b, 51000, 4789)
        } else {
            (b, a, 52000, 4789)
        };
        build::ethernet(0x0800, &build::ipv4(src, dst, 17, &build::udp(sport, dport, &v)))
    }

    /// A TCP handshake and close inside VXLAN: the inner connection is a flow of its own with
    /// Zeek's conn.log values and the VXLAN UDP flow's uid in tunnel_parents; the VXLAN packets
    /// are UDP flows of their own, one per direction here (each VTEP sends from its own port
    /// to 4789), as Zeek logs them.
    #[test]
    fn a_connection_inside_vxlan_names_its_udp_flow_as_parent() {
        let frames = vec![
            vxlan_frame(true, &inner_tcp(true, 100, 0, tf::SYN)),
            vxlan_frame(false, &inner_tcp(false, 500, 101, tf::SYN | tf::ACK)),
            vxlan_frame(true, &inner_tcp(true, 101, 501, tf::ACK)),
            vxlan_frame(true, &inner_tcp(true, 101, 501, tf::FIN | tf::ACK)),
            vxlan_frame(false, &inner_tcp(false, 501, 102, tf::FIN | tf::ACK)),
            vxlan_frame(true, &inner_tcp(true, 102, 502, tf::ACK)),
        ];
        let (flows, stops) = walk_frames(&frames);
        assert!(stops.iter().all(Option::is_none));
        let tcp: Vec<_> = flows.iter().filter(|f| f.proto == "tcp").collect();
        let udp: Vec<_> = flows.iter().filter(|f| f.proto == "udp").collect();
        assert_eq!((tcp.len(), udp.len()), (1, 2));
        let inner = tcp[0];
        assert_eq!(
            row(inner),
            ("10.9.0.1".into(), 40000, "10.9.0.2".into(), 80, "SF", "ShAFf")
        );
        assert_eq!((inner.orig_pkts, inner.resp_pkts, inner.orig_ip_bytes), (4, 2, 160));
        // Each inner packet's parent is the UDP flow that carried it: the two directions' VTEP
        // flows.
        let mut want: Vec<String> = udp.iter().map(|f| f.uid.clone()).collect();
        let mut got = inner.tunnel_parents.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        let to_server = udp.iter().find(|f| f.orig_p == 51000).unwrap();
        assert_eq!(
            (to_server.resp_p, to_server.orig_pkts, to_server.conn_state),
            (4789, 4, "S0")
        );
        assert!(to_server.tunnel_parents.is_empty());
    }

    /// IP in IP and GRE: the outer packets form no flow; every inner flow between the same two
    /// tunnel endpoints names the same tunnel uid, in either direction; a tunnel idle for 24 h
    /// gets a new uid.
    #[test]
    fn ip_tunnels_are_named_by_their_address_pair() {
        let (a, b) = (v4("198.51.100.1"), v4("198.51.100.2"));
        let ipip = |src, dst, inner: &[u8]| build::ethernet(0x0800, &build::ipv4(src, dst, 4, inner));
        let udp_in = |sport: u16| build::udp4(v4("10.9.0.1"), sport, v4("10.9.0.2"), 53, 10)[14..].to_vec();
        let mut t = FlowTable::new(Timeouts::default(), 1);
        let day = 24 * 3600 * NS;
        for (i, (ts, frame)) in [
            (0, ipip(a, b, &udp_in(1000))),
            (NS, ipip(b, a, &udp_in(1001))),
            (2 * NS + day, ipip(a, b, &udp_in(1002))),
        ]
        .iter()
        .enumerate()
        {
            let w = t.frame(i as u64 + 1, *ts, frame.len() as u32, 1, frame);
            assert_eq!((w.depth, w.outermost_tunnel), (1, Some(Tunnel::Ip)));
        }
        t.finish_all();
        let flows = t.take_finished();
        assert_eq!(flows.len(), 3, "{flows:?}");
        assert!(flows.iter().all(|f| f.proto == "udp" && f.tunnel_parents.len() == 1));
        assert_eq!(flows[0].tunnel_parents, flows[1].tunnel_parents);
        assert_ne!(flows[0].tunnel_parents, flows[2].tunnel_parents);
        assert!(flows[0].tunnel_parents[0].starts_with('C') && flows[0].tunnel_parents[0].len() == 18);
    }

    /// An 802.11 A-MSDU's packets each join their flow (each counting the whole frame in its
    /// frame bytes), bare and inside Aruba's GRE, where each names the GRE tunnel; the frame
    /// is described by its first packet.
    #[test]
    fn each_packet_of_an_amsdu_joins_its_flow() {
        let udp_in = |sport: u16, n: usize| build::udp4(v4("10.9.0.1"), sport, v4("10.9.0.2"), 53, n)[14..].to_vec();
        let (a, b) = (udp_in(1000, 3), udp_in(1001, 5));
        let amsdu = build::ieee802_11_amsdu(&[&a, &b, &a]);
        let mut t = FlowTable::new(Timeouts::default(), 1);
        let w = t.frame(1, 0, amsdu.len() as u32, 105, &amsdu);
        assert!(
            matches!(w.flow, Some((p, _, true)) if p.transport == Transport::Udp { sport: 1000, dport: 53, payload: 3 })
        );
        let aruba = build::ethernet(
            0x0800,
            &build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 47, &build::gre(0x8200, &amsdu)),
        );
        let w = t.frame(2, NS, aruba.len() as u32, 1, &aruba);
        assert_eq!((w.depth, w.outermost_tunnel, w.stopped), (1, Some(Tunnel::Gre), None));
        t.finish_all();
        let mut flows = t.take_finished();
        flows.sort_by_key(|f| f.orig_p);
        let got: Vec<_> = flows
            .iter()
            .map(|f| (f.orig_p, f.orig_pkts, f.orig_frame_bytes, f.tunnel_parents.len()))
            .collect();
        let frames = (amsdu.len() + aruba.len()) as u64;
        assert_eq!(got, [(1000, 4, 2 * frames, 1), (1001, 2, frames, 1)]);
    }

    /// `frame_each` hands out an A-MSDU's packets after the first that joined a flow, in
    /// order, bare and inside Aruba's GRE; a plain frame hands out none.
    #[test]
    fn frame_each_hands_out_the_later_packets_of_an_amsdu() {
        let udp_in = |sport: u16| build::udp4(v4("10.9.0.1"), sport, v4("10.9.0.2"), 53, 4)[14..].to_vec();
        let (a, b, c) = (udp_in(1000), udp_in(1001), udp_in(1002));
        let amsdu = build::ieee802_11_amsdu(&[&a, &b, &c]);
        let aruba = build::ethernet(
            0x0800,
            &build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 47, &build::gre(0x8200, &amsdu)),
        );
        let plain = build::udp4(v4("10.9.0.1"), 1003, v4("10.9.0.2"), 53, 4);
        let mut t = FlowTable::new(Timeouts::default(), 1);
        let sport = |p: &IpPacket| match p.transport {
            Transport::Udp { sport, .. } => sport,
            _ => 0,
        };
        for (n, (linktype, frame)) in [(105, &amsdu), (1, &aruba)].into_iter().enumerate() {
            let mut later = Vec::new();
            let w = t.frame_each(
                n as u64 + 1,
                n as i64 * NS,
                frame.len() as u32,
                linktype,
                frame,
                &mut later,
            );
            assert_eq!(w.flow.map(|(p, _, _)| sport(&p)), Some(1000));
            let got: Vec<_> = later
                .iter()
                .map(|(p, uid, from_orig)| (sport(p), uid[0], *from_orig))
                .collect();
            assert_eq!(got, [(1001, b'C', true), (1002, b'C', true)]);
            assert_ne!(later[0].1, later[1].1, "each its own flow");
        }
        let mut later = Vec::new();
        t.frame_each(3, 2 * NS, plain.len() as u32, 1, &plain, &mut later);
        assert!(later.is_empty());
    }

    /// An A-MSDU in Aruba's GRE inside a reassembled IP datagram hands out its later packets
    /// too, each with its own flow, described (as the first) by the fragment that completed the
    /// datagram.
    #[test]
    fn frame_each_hands_out_the_later_packets_of_an_amsdu_in_a_reassembled_datagram() {
        let udp_in = |sport: u16| build::udp4(v4("10.9.0.1"), sport, v4("10.9.0.2"), 53, 40)[14..].to_vec();
        let (a, b, c) = (udp_in(1000), udp_in(1001), udp_in(1002));
        let amsdu = build::ieee802_11_amsdu(&[&a, &b, &c]);
        let gre = build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 47, &build::gre(0x8200, &amsdu));
        let frags = build::fragments4(&gre, 9, &[64]);
        let mut t = FlowTable::new(Timeouts::default(), 1);
        let mut later = Vec::new();
        let w = t.frame_each(1, 0, frags[0].len() as u32, 1, &frags[0], &mut later);
        assert!(w.held_fragment && later.is_empty());
        let w = t.frame_each(2, NS, frags[1].len() as u32, 1, &frags[1], &mut later);
        let (first, first_uid, _) = w.flow.expect("the datagram's first packet joined a flow");
        assert_eq!(first.proto, 47, "the completing fragment describes the frame");
        let got: Vec<_> = later.iter().map(|(p, uid, o)| (p.proto, uid[0], *o)).collect();
        assert_eq!(got, [(47, b'C', true), (47, b'C', true)]);
        let mut uids = vec![first_uid, later[0].1, later[1].1];
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 3, "each packet its own flow");
    }

    /// Issue 22: IP tunnels of distinct address pairs are held within the flow table's bound;
    /// past it the half seen longest ago are forgotten.
    #[test]
    fn ip_tunnels_stay_within_the_bound() {
        let inner = build::udp4(v4("10.9.0.1"), 1000, v4("10.9.0.2"), 53, 10)[14..].to_vec();
        let mut t = FlowTable::new(Timeouts::default(), 1);
        t.limit_active(4);
        for i in 0..50u32 {
            let outer = std::net::Ipv4Addr::from(0xc633_6400 + i);
            let frame = build::ethernet(0x0800, &build::ipv4(outer, v4("198.51.100.200"), 4, &inner));
            t.frame(u64::from(i) + 1, i64::from(i) * NS, frame.len() as u32, 1, &frame);
            assert!(t.ip_tunnels.len() <= 4, "{} tunnels held", t.ip_tunnels.len());
        }
    }

    /// Zeek follows at most two encapsulations (Tunnel::max_depth): a packet in IP in IP in
    /// VXLAN is followed; one more layer is not, and the layer around it still counts.
    #[test]
    fn tunnels_nested_past_the_limit_are_not_followed() {
        let inner = inner_tcp(true, 100, 0, tf::SYN);
        let ipip = |inner: &[u8]| build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 4, inner);
        let (flows, stops) = walk_frames(&[vxlan_frame(true, &ipip(&inner))]);
        assert_eq!(stops, vec![None]);
        assert_eq!(flows.iter().filter(|f| f.proto == "tcp").count(), 1);
        let (flows, stops) = walk_frames(&[vxlan_frame(true, &ipip(&ipip(&inner)))]);
        assert_eq!(stops, vec![Some(TunnelStop::TooDeep(Tunnel::Ip))]);
        assert_eq!(flows.iter().map(|f| f.proto).collect::<Vec<_>>(), vec!["udp"]);
    }

    /// A malformed VXLAN header is an analyzer violation: Zeek stops decapsulating that UDP
    /// connection, so a later well-formed packet of it is not followed either; another
    /// connection's is.
    #[test]
    fn a_tunnel_violation_stops_decapsulation_on_its_flow() {
        let good = vxlan_frame(true, &inner_tcp(true, 100, 0, tf::SYN));
        let mut bad = good.clone();
        bad[14 + 20 + 8] = 0; // the VXLAN I flag
        let mut elsewhere = good.clone();
        elsewhere[14 + 20 + 1] = 0x99; // another source port: another UDP flow
        let (flows, stops) = walk_frames(&[bad, good, elsewhere]);
        assert!(matches!(stops[0], Some(TunnelStop::Malformed(Tunnel::Vxlan, _))));
        assert_eq!(&stops[1..], &[None, None]);
        let tcp: Vec<_> = flows.iter().filter(|f| f.proto == "tcp").collect();
        assert_eq!(tcp.len(), 1);
        assert_eq!(tcp[0].orig_pkts, 1, "only the other flow's packet was followed");
    }

    /// Zeek's tunnel.log (base/frameworks/tunnels/main.zeek): a tunnel is DISCOVERed when a
    /// connection inside it is new (`new_connection`) or first comes through it
    /// (`tunnel_changed`), CLOSEd when its own UDP connection is removed (at the end of the
    /// capture: at its last packet's time), and EXPIREd when no new connection came through it
    /// for `Tunnel::expiration_interval` (1 h); an IP tunnel has no connection to close, and
    /// its ports are 0.
    #[test]
    fn the_tunnel_log_is_written_as_zeek_writes_it() {
        let frames = [
            vxlan_frame(true, &inner_tcp(true, 100, 0, tf::SYN)),
            vxlan_frame(false, &inner_tcp(false, 500, 101, tf::SYN | tf::ACK)),
            vxlan_frame(true, &inner_tcp(true, 101, 501, tf::ACK)),
        ];
        let mut t = FlowTable::new(Timeouts::default(), 1);
        for (i, frame) in frames.iter().enumerate() {
            t.frame(i as u64 + 1, i as i64 * 1_000_000, frame.len() as u32, 1, frame);
        }
        t.finish_all();
        let flows = t.take_finished();
        let uid_of = |port: u16| flows.iter().find(|f| f.orig_p == port).unwrap().uid.clone();
        let (a, b) = (IpAddr::V4(v4("192.0.2.1")), IpAddr::V4(v4("192.0.2.2")));
        let line = |ts_ns, uid: String, endpoints, action| TunnelRecord {
            ts_ns,
            uid,
            endpoints,
            tunnel: Tunnel::Vxlan,
            action,
        };
        assert_eq!(
            t.take_tunnel_log(),
            vec![
                line(0, uid_of(51000), (a, 51000, b, 4789), TunnelAction::Discover),
                line(1_000_000, uid_of(52000), (b, 52000, a, 4789), TunnelAction::Discover),
                line(2_000_000, uid_of(51000), (a, 51000, b, 4789), TunnelAction::Close),
                line(2_000_000, uid_of(52000), (b, 52000, a, 4789), TunnelAction::Close),
            ]
        );

        // IP in IP: discovered with its first inner connection, looked up again by the next
        // one; two hours later a new connection finds it expired (1 h after the last lookup)
        // and discovers it anew. Nothing closes it at the end.
        let (a, b) = (v4("198.51.100.1"), v4("198.51.100.2"));
        let ipip = |src, dst, inner: &[u8]| build::ethernet(0x0800, &build::ipv4(src, dst, 4, inner));
        let udp_in = |sport: u16| build::udp4(v4("10.9.0.1"), sport, v4("10.9.0.2"), 53, 10)[14..].to_vec();
        let mut t = FlowTable::new(Timeouts::default(), 1);
        let hour = 3600 * NS;
        for (i, (ts, frame)) in [
            (0, ipip(a, b, &udp_in(1000))),
            (hour / 2, ipip(b, a, &udp_in(1001))),
            (hour / 2 + 2 * hour, ipip(a, b, &udp_in(1002))),
        ]
        .iter()
        .enumerate()
        {
            t.frame(i as u64 + 1, *ts, frame.len() as u32, 1, frame);
        }
        t.finish_all();
        let uid = t.take_finished()[0].tunnel_parents[0].clone();
        let ends = (IpAddr::V4(a), 0, IpAddr::V4(b), 0);
        let ip_line = |ts_ns, action| TunnelRecord {
            ts_ns,
            uid: uid.clone(),
            endpoints: ends,
            tunnel: Tunnel::Ip,
            action,
        };
        let later = hour / 2 + 2 * hour;
        assert_eq!(
            t.take_tunnel_log(),
            vec![
                ip_line(0, TunnelAction::Discover),
                ip_line(later, TunnelAction::Expire),
                ip_line(later, TunnelAction::Discover),
            ]
        );
    }

    #[test]
    fn a_syn_after_its_syn_ack_flips_the_roles() {
        let (x, y) = ((B, 46000), (A, 45000));
        let seg = |ms: i64, from_x: bool, flags: u8, seq: u32, ack: u32, len: usize| {
            let ((sh, sp), (dh, dp)) = if from_x { (x, y) } else { (y, x) };
            (ms, build::tcp4(sh, sp, dh, dp, seq, ack, flags, len))
        };
        let f = run_frames(&[
            seg(0, true, SA, 900, 101, 0),
            seg(1, false, S, 100, 0, 0),
            seg(2, false, AK, 101, 901, 0),
            seg(3, false, PA, 101, 901, 10),
            seg(4, true, PA, 901, 111, 20),
            seg(5, false, FA, 111, 921, 0),
            seg(6, true, FA, 921, 112, 0),
            seg(7, false, AK, 112, 922, 0),
        ]);
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(
            (f.orig_h, f.orig_p, f.resp_h, f.resp_p),
            (IpAddr::V4(A), 45000, IpAddr::V4(B), 46000)
        );
        assert_eq!((f.conn_state, f.history.as_str()), ("SF", "Hs^ADdFf"));
        assert_eq!((f.orig_bytes, f.resp_bytes, f.orig_pkts, f.resp_pkts), (10, 20, 5, 3));
        assert_eq!(f.ts_ns, 0);
    }
}
