//! Packet decoding: from a captured frame (by link type) down to the IP header and the TCP,
//! UDP or ICMP header. Lengths come from the headers (what was on the wire), not from the
//! captured bytes, so a snap-length-truncated packet still counts its full size.
//!
//! Link layers follow Zeek's packet analyzers too: Ethernet with Cisco FabricPath, VLAN tags,
//! PBB (802.1ah), VN-Tag, PPPoE and MPLS; IEEE 802.11 data frames, bare or behind radiotap.
//!
//! Tunnels are decapsulated as Zeek's packet analyzers do it (IP in IP, GRE with ERSPAN, PPTP
//! and Aruba's 802.11, and over UDP VXLAN, Geneve, Teredo, AYIYA and GTPv1-U): [`ip_tunnel`] and
//! [`udp_tunnel`] find the inner packet in an IP packet's payload, and the caller (which knows
//! the outer flow) decodes it like a frame of its own. See docs/import.md, "Tunnels".
//!
//! Pure functions over byte slices: every read is bounds-checked, nothing panics on bad input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Link types this decoder understands.
pub const SUPPORTED_LINKTYPES: &str =
    "Ethernet (1), BSD loopback/null (0), OpenBSD loop (108), raw IP (101, 12, 14, 228, 229), Linux cooked SLL (113) and SLL2 (276), IEEE 802.11 (105) and 802.11 radiotap (127)";

/// Human name of a link type, for messages.
pub fn linktype_name(linktype: u32) -> String {
    let name = match linktype {
        0 => "BSD loopback",
        1 => "Ethernet",
        12 | 14 | 101 => "raw IP",
        105 => "IEEE 802.11",
        108 => "OpenBSD loopback",
        113 => "Linux cooked (SLL)",
        127 => "802.11 radiotap",
        147..=162 => "user-defined",
        192 => "PPI",
        195 => "IEEE 802.15.4",
        201 => "Bluetooth HCI",
        220 => "USB",
        228 => "raw IPv4",
        229 => "raw IPv6",
        276 => "Linux cooked (SLL2)",
        _ => "unknown",
    };
    format!("{linktype} ({name})")
}

/// Whether packets of this link type can be decoded.
pub fn linktype_supported(linktype: u32) -> bool {
    matches!(
        linktype,
        0 | 1 | 12 | 14 | 101 | 105 | 108 | 113 | 127 | 228 | 229 | 276
    )
}

/// TCP flag bits.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// The transport header of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        /// Payload bytes on the wire (IP length minus IP and TCP headers).
        payload: u32,
        /// Whether the capture holds the whole payload (not cut by the snap length): Zeek
        /// hands only whole segments to its reassembler, so a cut one leaves a content gap.
        payload_captured: bool,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: u32,
    },
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: u8,
        /// Bytes after the 8-byte ICMP header.
        payload: u32,
    },
    /// Another IP protocol, or a non-first fragment (no transport header in it).
    Other,
}

/// An IP packet's addresses and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (for IPv6, the upper-layer header after extension headers).
    pub proto: u8,
    /// IP total length from the header (IPv6: 40 + payload length).
    pub ip_len: u32,
    /// A fragment other than the first: it carries no transport header.
    pub later_fragment: bool,
    /// Part of a fragmented datagram (the first fragment too): its transport segment is not
    /// whole, so its checksum cannot be checked.
    pub fragment: bool,
    pub transport: Transport,
    /// What a tunnel could carry: the captured UDP payload, or for other protocols without a
    /// transport header here (IP in IP, GRE, ...) the captured bytes after the IP headers; for
    /// TCP the captured segment, header included (what its checksum covers); up to the length
    /// the headers give (no Ethernet padding). Empty for ICMP.
    pub payload: &'a [u8],
    /// The capture holds the whole of `payload` (the snap length did not cut it). Zeek builds
    /// an inner packet from the captured bytes only, so a cut one is not decapsulated.
    pub payload_whole: bool,
    /// The captured transport segment, header included, up to the length the IP header gives
    /// (what a UDP or ICMP checksum covers); empty for later fragments.
    pub segment: &'a [u8],
    /// The capture holds the whole of `segment`.
    pub segment_whole: bool,
    /// The captured packet from its IP header on, up to the length the header gives: what
    /// fragment reassembly and the IPv4 header checksum read.
    pub raw: &'a [u8],
}

/// What a frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    Ip(IpPacket<'a>),
    /// Not IP (ARP, LLC, LLDP, ...): the EtherType or link-level protocol number.
    NotIp(u16),
    /// The link type is not supported.
    UnsupportedLink,
    /// Headers cut short by the snap length or malformed: which layer.
    Broken(&'static str),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Decodes one frame of the given link type.
pub fn decode(linktype: u32, frame: &[u8]) -> Decoded<'_> {
    match linktype {
        1 => ethernet(frame),
        0 | 108 => {
            // 4-byte address family: host byte order for DLT_NULL (writer's host), network
            // order for DLT_LOOP. Values are small, so the byte order shows itself.
            let Some(raw) = frame.get(..4) else {
                return Decoded::Broken("loopback header");
            };
            let le = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let be = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let family = if linktype == 108 || le > 0xffff { be } else { le };
            match family {
                2 => ip(&frame[4..], Some(4)),
                10 | 24 | 28 | 30 => ip(&frame[4..], Some(6)),
                other => Decoded::NotIp(other as u16),
            }
        }
        12 | 14 | 101 => ip(frame, None),
        228 => ip(frame, Some(4)),
        229 => ip(frame, Some(6)),
        113 => {
            let Some(proto) = be16(frame, 14) else {
                return Decoded::Broken("Linux cooked header");
            };
            ethertype(proto, frame.get(16..).unwrap_or(&[]), 0)
        }
        276 => {
            let Some(proto) = be16(frame, 0) else {
                return Decoded::Broken("Linux cooked v2 header");
            };
            if frame.len() < 20 {
                return Decoded::Broken("Linux cooked v2 header");
            }
            ethertype(proto, &frame[20..], 0)
        }
        105 => ieee802_11(frame),
        127 => radiotap(frame),
        _ => Decoded::UnsupportedLink,
    }
}

#[inline]
fn ethernet(frame: &[u8]) -> Decoded<'_> {
    ethernet_at(frame, 0)
}

/// Zeek's Ethernet analyzer; `depth` counts the layers already around it (PBB nests Ethernet
/// in Ethernet, so the bound must pass through). Inlined into [`decode`]: most frames are
/// Ethernet, and a call more per frame shows in the import's time.
#[inline]
fn ethernet_at(frame: &[u8], depth: u8) -> Decoded<'_> {
    let Some(mut t) = be16(frame, 12) else {
        return Decoded::Broken("Ethernet header");
    };
    let mut frame = frame;
    if t == 0x8903 {
        // Cisco FabricPath: Zeek's Ethernet analyzer skips the 16-byte outer header (outer
        // addresses, 0x8903, FTag and TTL) to the classic Ethernet frame inside, and wants
        // more than that frame's 14-byte header after it (`truncated_link_header_cfp`).
        if frame.len() <= 16 + 14 {
            return Decoded::Broken("FabricPath header");
        }
        frame = &frame[16..];
        t = u16::from_be_bytes([frame[12], frame[13]]);
    }
    let rest = &frame[14..];
    if t == 0x8926 {
        // VN-Tag: 4 bytes of tag, then the next EtherType (Zeek wants more than these 6
        // bytes, `truncated_vntag_header`). Only Zeek's Ethernet analyzer maps 0x8926 to its
        // VNTag analyzer, and that one forwards only to its VLAN analyzer
        // (scripts/base/packet-protocols/{ethernet,vntag}/main.zeek): a VN-Tag elsewhere, or
        // anything but a VLAN tag after it, is not followed there, nor here.
        if rest.len() <= 6 {
            return Decoded::Broken("VN-Tag header");
        }
        return match u16::from_be_bytes([rest[4], rest[5]]) {
            inner @ (0x8100 | 0x88a8 | 0x9100) => ethertype(inner, &rest[6..], depth + 1),
            other => Decoded::NotIp(other),
        };
    }
    ethertype(t, rest, depth)
}

/// Follows an EtherType through VLAN tags, PPPoE and MPLS to IP.
fn ethertype(t: u16, rest: &[u8], depth: u8) -> Decoded<'_> {
    if depth > 8 {
        return Decoded::Broken("too many nested tags");
    }
    match t {
        0x0800 => ip(rest, Some(4)),
        0x86dd => ip(rest, Some(6)),
        // 802.1Q, 802.1ad (QinQ) and the old QinQ types: 2 bytes TCI, 2 bytes inner type.
        0x8100 | 0x88a8 | 0x9100 | 0x9200 => match be16(rest, 2) {
            Some(inner) => ethertype(inner, &rest[4..], depth + 1),
            None => Decoded::Broken("VLAN tag"),
        },
        // PPPoE session: 6-byte header, then the PPP protocol.
        0x8864 => match be16(rest, 6) {
            Some(0x0021) => ip(&rest[8..], Some(4)),
            Some(0x0057) => ip(&rest[8..], Some(6)),
            Some(_) => Decoded::NotIp(t),
            None => Decoded::Broken("PPPoE header"),
        },
        // PBB (802.1ah): the 4-byte I-TAG, then the customer's Ethernet frame, which Zeek's
        // PBB analyzer hands to its Ethernet analyzer; it wants more than the I-TAG and the
        // inner Ethernet header (18 bytes, `truncated_PBB_header`).
        0x88e7 => {
            if rest.len() <= 18 {
                return Decoded::Broken("PBB header");
            }
            ethernet_at(&rest[4..], depth + 1)
        }
        // MPLS: pop labels to the bottom of the stack; the payload's version nibble says which IP.
        0x8847 | 0x8848 => {
            let mut at = 0;
            loop {
                let Some(label) = be32(rest, at) else {
                    return Decoded::Broken("MPLS label");
                };
                at += 4;
                if label & 0x100 != 0 {
                    break;
                }
                if at > 64 {
                    return Decoded::Broken("MPLS label stack");
                }
            }
            ip(&rest[at..], None)
        }
        other => Decoded::NotIp(other),
    }
}

/// A radiotap header (link type 127), then an 802.11 frame: Zeek's IEEE802_11_Radio analyzer
/// skips the header by its length field (little-endian, at byte 2) and reads nothing else of
/// it (not even the FCS flag: the IP length bounds the packet anyway).
fn radiotap(frame: &[u8]) -> Decoded<'_> {
    match radiotap_body(frame) {
        Some(b) => ieee802_11(b),
        None => Decoded::Broken("radiotap header"),
    }
}

/// The 802.11 frame after a radiotap header, when there is one.
fn radiotap_body(frame: &[u8]) -> Option<&[u8]> {
    let header = usize::from(u16::from_le_bytes([*frame.get(2)?, *frame.get(3)?]));
    frame.get(header..).filter(|b| !b.is_empty())
}

/// What an 802.11 frame holds when it holds no packet Zeek analyses: management and control
/// frames, data subtypes without data (null function, CF-Ack, QoS null), QoS data frames with
/// the protected bit (encrypted), and LLC frames other than SNAP with a zero organization code.
/// Zeek skips them without a weird; here they are "not IP", with this EtherType (0) in packet
/// rows.
const IEEE802_11_NO_PACKET: u16 = 0;

/// An IEEE 802.11 frame (link type 105, behind radiotap, or in Aruba's GRE), as Zeek's
/// IEEE802_11 analyzer reads it (packet_analysis/protocol/ieee802_11/IEEE802_11.cc): data
/// frames only; a 24-byte header, 30 when both To DS and From DS are set (a fourth address),
/// 2 more for QoS; then LLC/SNAP (AA AA 03 00 00 00) and the EtherType. Zeek checks the
/// protected bit only in QoS frames; a protected frame without QoS fails the LLC/SNAP test
/// (its bytes are encrypted), as it does there.
///
/// An A-MSDU (a QoS frame with the A-MSDU bit) carries several packets: this gives the first,
/// and [`later_packets`] (or [`later_packets_in_tunnel`] for Aruba's GRE) the others.
fn ieee802_11(b: &[u8]) -> Decoded<'_> {
    match ieee802_11_body(b) {
        Err(d) => d,
        Ok((body, false)) => llc_snap(body),
        Ok((body, true)) => amsdu_subframe(body).0,
    }
}

/// The bytes after an 802.11 data frame's header and whether they are an A-MSDU, or what the
/// frame decodes to when no packet follows.
fn ieee802_11_body(b: &[u8]) -> Result<(&[u8], bool), Decoded<'_>> {
    let mut header = 24usize;
    if b.len() <= header {
        return Err(Decoded::Broken("802.11 header"));
    }
    let fc = b[0];
    // The type's high bit: data (2) or extension (3), not management (0) or control (1).
    if (fc >> 2) & 0x02 == 0 {
        return Err(Decoded::NotIp(IEEE802_11_NO_PACKET));
    }
    // Subtypes with bit 2 set carry no data.
    if (fc >> 4) & 0x04 != 0 {
        return Err(Decoded::NotIp(IEEE802_11_NO_PACKET));
    }
    if b[1] & 0x03 == 0x03 {
        header += 6;
    }
    if b.len() <= header {
        return Err(Decoded::Broken("802.11 header"));
    }
    let mut amsdu = false;
    if (fc >> 4) & 0x08 != 0 {
        // QoS control: its first byte's top bit marks an A-MSDU.
        amsdu = b[header] & 0x80 != 0;
        if b[1] & 0x40 != 0 {
            return Err(Decoded::NotIp(IEEE802_11_NO_PACKET));
        }
        header += 2;
    }
    if b.len() <= header {
        return Err(Decoded::Broken("802.11 header"));
    }
    Ok((&b[header..], amsdu))
}

/// LLC/SNAP with a zero organization code, then what Zeek's IEEE802_11 analyzer forwards:
/// IPv4 and IPv6 (and ARP, not IP).
fn llc_snap(llc: &[u8]) -> Decoded<'_> {
    if llc.len() < 8 {
        return Decoded::Broken("802.11 LLC header");
    }
    if llc[..6] != [0xaa, 0xaa, 0x03, 0, 0, 0] {
        return Decoded::NotIp(IEEE802_11_NO_PACKET);
    }
    match u16::from_be_bytes([llc[6], llc[7]]) {
        0x0800 => ip(&llc[8..], Some(4)),
        0x86dd => ip(&llc[8..], Some(6)),
        other => Decoded::NotIp(other),
    }
}

/// The first A-MSDU subframe of `b` (not empty) and, when Zeek goes on to the next, the bytes
/// after it. Each subframe: destination, source, a length, then LLC/SNAP and the packet of that
/// length, as Zeek reads it: the padding after a subframe is taken as the length modulo 4
/// (Zeek's rule, which the standard's padding to a multiple of 4 of the whole subframe meets
/// for odd lengths only), skipped only when that many bytes are left. Zeek stops at a
/// subframe that is cut short, holds no SNAP or no IP packet it analyses, or whose IP packet
/// claims more than the subframe holds; the subframes before it are analysed.
fn amsdu_subframe(b: &[u8]) -> (Decoded<'_>, Option<&[u8]>) {
    let Some(n) = be16(b, 12) else {
        return (Decoded::Broken("802.11 A-MSDU subframe header"), None);
    };
    let n = usize::from(n);
    let Some(msdu) = b.get(14..14 + n) else {
        return (Decoded::Broken("802.11 A-MSDU subframe length"), None);
    };
    let decoded = whole_inner(llc_snap(msdu));
    // Zeek's IP and ARP analyzers accept the packet: the next subframe follows. (Zeek's ARP
    // analyzer refuses a malformed ARP message, which ends the frame there; netlens reads no
    // ARP, so it goes on after any.)
    let go_on = matches!(decoded, Decoded::Ip(_) | Decoded::NotIp(0x0806 | 0x8035));
    let mut rest = &b[14 + n..];
    let pad = n % 4;
    if rest.len() >= pad {
        rest = &rest[pad..];
    }
    (decoded, go_on.then_some(rest))
}

/// The packets of an 802.11 A-MSDU after its first (which [`decode`] gives), in order; none
/// for any other frame.
#[derive(Debug, Clone)]
pub struct LaterPackets<'a> {
    rest: &'a [u8],
}

impl<'a> LaterPackets<'a> {
    const NONE: LaterPackets<'static> = LaterPackets { rest: &[] };

    /// No packet follows (the frame is no A-MSDU, or its first subframe ended it).
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The subframes after the first of an 802.11 frame, when it is an A-MSDU.
    fn of_ieee802_11(b: &'a [u8]) -> Self {
        match ieee802_11_body(b) {
            Ok((body, true)) => LaterPackets {
                rest: amsdu_subframe(body).1.unwrap_or(&[]),
            },
            _ => LaterPackets::NONE,
        }
    }
}

impl<'a> Iterator for LaterPackets<'a> {
    type Item = Decoded<'a>;

    fn next(&mut self) -> Option<Decoded<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (decoded, rest) = amsdu_subframe(self.rest);
        self.rest = rest.unwrap_or(&[]);
        Some(decoded)
    }
}

/// The packets of a frame after the one [`decode`] gives: the later subframes of an 802.11
/// A-MSDU (link types 105 and 127). Each subframe takes at least 14 bytes, so there are at
/// most a frame's length / 14. Asked of every frame, so inlined into the flow engine.
#[inline]
pub fn later_packets(linktype: u32, frame: &[u8]) -> LaterPackets<'_> {
    match linktype {
        105 => LaterPackets::of_ieee802_11(frame),
        127 => radiotap_body(frame).map_or(LaterPackets::NONE, LaterPackets::of_ieee802_11),
        _ => LaterPackets::NONE,
    }
}

/// The packets after the first that an IP packet's tunnel carries: the later subframes of an
/// 802.11 A-MSDU in Aruba's GRE (when [`ip_tunnel`] gave its first). Each is held, as the
/// first, to the bytes its subframe carried.
pub fn later_packets_in_tunnel<'a>(ip: &IpPacket<'a>) -> LaterPackets<'a> {
    if ip.proto != 47 || ip.later_fragment || !ip.payload_whole {
        return LaterPackets::NONE;
    }
    let (Some(flags), Some(proto)) = (be16(ip.payload, 0), be16(ip.payload, 2)) else {
        return LaterPackets::NONE;
    };
    // What [`gre`] wants before it reads Aruba's 802.11 frame: version 0, no routing, no
    // reserved flags, a byte at least after the header.
    if flags & (0x0007 | 0x4000 | 0x0078) != 0 || !aruba_gre(proto) {
        return LaterPackets::NONE;
    }
    match ip.payload.get(gre_header_len(flags)..) {
        Some(frame) if !frame.is_empty() => LaterPackets::of_ieee802_11(frame),
        _ => LaterPackets::NONE,
    }
}

/// Decodes a packet that starts with its IP header (IPv4 or IPv6 by the version nibble), as a
/// reassembled datagram is.
pub fn ip_packet(b: &[u8]) -> Decoded<'_> {
    ip(b, None)
}

/// Decodes an IP packet; `version` when the link layer already says which.
fn ip(b: &[u8], version: Option<u8>) -> Decoded<'_> {
    let Some(&first) = b.first() else {
        return Decoded::Broken("IP header");
    };
    let v = first >> 4;
    match (version, v) {
        (Some(4) | None, 4) => ipv4(b),
        (Some(6) | None, 6) => ipv6(b),
        (None, _) => Decoded::Broken("IP version"),
        (Some(_), _) => Decoded::Broken("IP version"),
    }
}

fn ipv4(b: &[u8]) -> Decoded<'_> {
    if b.len() < 20 {
        return Decoded::Broken("IPv4 header");
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < 20 || b.len() < ihl {
        return Decoded::Broken("IPv4 header");
    }
    let mut total = u32::from(u16::from_be_bytes([b[2], b[3]]));
    if total == 0 {
        // Segmentation offload captures leave the length 0: take what was captured.
        total = b.len() as u32;
    }
    if (total as usize) < ihl {
        return Decoded::Broken("IPv4 total length");
    }
    let frag = u16::from_be_bytes([b[6], b[7]]);
    let offset = frag & 0x1fff;
    let proto = b[9];
    let src = IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19]));
    let payload_len = total - ihl as u32;
    let later_fragment = offset != 0;
    let fragment = later_fragment || frag & 0x2000 != 0;
    let (transport, payload, payload_whole) = if later_fragment {
        (Transport::Other, &[][..], false)
    } else {
        match transport(proto, &b[ihl..], payload_len, false) {
            Ok(t) => t,
            Err(layer) => return Decoded::Broken(layer),
        }
    };
    let (segment, segment_whole) = if later_fragment {
        (&[][..], false)
    } else {
        captured(&b[ihl..], payload_len)
    };
    Decoded::Ip(IpPacket {
        src,
        dst,
        proto,
        ip_len: total,
        later_fragment,
        fragment,
        transport,
        payload,
        payload_whole,
        segment,
        segment_whole,
        raw: captured(b, total).0,
    })
}

fn ipv6(b: &[u8]) -> Decoded<'_> {
    if b.len() < 40 {
        return Decoded::Broken("IPv6 header");
    }
    let mut payload_len = u32::from(u16::from_be_bytes([b[4], b[5]]));
    if payload_len == 0 {
        // Jumbogram or offload capture: take what was captured.
        payload_len = (b.len() - 40) as u32;
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[8..24]);
    let src = IpAddr::V6(Ipv6Addr::from(a));
    a.copy_from_slice(&b[24..40]);
    let dst = IpAddr::V6(Ipv6Addr::from(a));
    let mut next = b[6];
    let mut at = 40usize;
    let mut later_fragment = false;
    let mut fragment = false;
    // Walk the extension headers (bounded: at most 16).
    for _ in 0..16 {
        match next {
            0 | 43 | 60 | 135 | 139 | 140 => {
                let (Some(&nh), Some(&len)) = (b.get(at), b.get(at + 1)) else {
                    return Decoded::Broken("IPv6 extension header");
                };
                next = nh;
                at += (usize::from(len) + 1) * 8;
            }
            51 => {
                // Authentication header: length in 4-byte units, minus 2.
                let (Some(&nh), Some(&len)) = (b.get(at), b.get(at + 1)) else {
                    return Decoded::Broken("IPv6 authentication header");
                };
                next = nh;
                at += (usize::from(len) + 2) * 4;
            }
            44 => {
                let (Some(&nh), Some(off)) = (b.get(at), be16(b, at + 2)) else {
                    return Decoded::Broken("IPv6 fragment header");
                };
                next = nh;
                later_fragment = off >> 3 != 0;
                fragment = later_fragment || off & 1 != 0;
                at += 8;
                if later_fragment {
                    break;
                }
            }
            _ => break,
        }
    }
    let headers = (at - 40) as u32;
    let upper_len = payload_len.saturating_sub(headers);
    let (transport, payload, payload_whole) = if later_fragment {
        (Transport::Other, &[][..], false)
    } else {
        match transport(next, b.get(at..).unwrap_or(&[]), upper_len, true) {
            Ok(t) => t,
            Err(layer) => return Decoded::Broken(layer),
        }
    };
    let (segment, segment_whole) = if later_fragment {
        (&[][..], false)
    } else {
        captured(b.get(at..).unwrap_or(&[]), upper_len)
    };
    Decoded::Ip(IpPacket {
        src,
        dst,
        proto: next,
        ip_len: 40 + payload_len,
        later_fragment,
        fragment,
        transport,
        payload,
        payload_whole,
        segment,
        segment_whole,
        raw: captured(b, 40 + payload_len).0,
    })
}

/// The transport header, and what a tunnel could carry (see [`IpPacket::payload`]) with
/// whether the capture holds all of it.
type TransportParts<'a> = (Transport, &'a [u8], bool);

/// Decodes the transport header; `len` is the transport segment's length on the wire.
fn transport(proto: u8, b: &[u8], len: u32, v6: bool) -> Result<TransportParts<'_>, &'static str> {
    match proto {
        6 => {
            if b.len() < 20 {
                return Err("TCP header");
            }
            let off = u32::from(b[12] >> 4) * 4;
            if off < 20 {
                return Err("TCP header length");
            }
            let tcp = Transport::Tcp {
                sport: u16::from_be_bytes([b[0], b[1]]),
                dport: u16::from_be_bytes([b[2], b[3]]),
                seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                flags: b[13],
                window: u16::from_be_bytes([b[14], b[15]]),
                payload: len.saturating_sub(off),
                payload_captured: b.len() >= len as usize,
            };
            // The whole segment, header included: what its checksum covers.
            let (segment, whole) = captured(b, len);
            Ok((tcp, segment, whole))
        }
        17 => {
            if b.len() < 8 {
                return Err("UDP header");
            }
            let udp_len = u32::from(u16::from_be_bytes([b[4], b[5]]));
            // A zero or short UDP length (jumbograms, broken senders): fall back to IP's.
            let seg = if udp_len >= 8 { udp_len.min(len.max(8)) } else { len };
            let udp = Transport::Udp {
                sport: u16::from_be_bytes([b[0], b[1]]),
                dport: u16::from_be_bytes([b[2], b[3]]),
                payload: seg.saturating_sub(8),
            };
            let (payload, whole) = captured(&b[8..], seg.saturating_sub(8));
            Ok((udp, payload, whole))
        }
        1 | 58 if (proto == 58) == v6 => {
            if b.len() < 4 {
                return Err("ICMP header");
            }
            let icmp = Transport::Icmp {
                v6,
                icmp_type: b[0],
                code: b[1],
                payload: len.saturating_sub(8),
            };
            Ok((icmp, &[], false))
        }
        _ => {
            let (payload, whole) = captured(b, len);
            Ok((Transport::Other, payload, whole))
        }
    }
}

/// Whether a TCP segment's checksum is right, computed as Zeek's `TCP_Endpoint::ValidChecksum`
/// does: the one's-complement sum of the pseudo-header (addresses, protocol 6, segment length)
/// and the segment must be all ones. `None` when the capture does not hold the whole segment
/// (Zeek checks only whole ones), the packet is a fragment (Zeek checks the reassembled
/// datagram) or the packet is not TCP.
pub fn tcp_checksum_ok(ip: &IpPacket) -> Option<bool> {
    if !matches!(ip.transport, Transport::Tcp { .. }) || !ip.segment_whole || ip.fragment {
        return None;
    }
    Some(pseudo_header_sum_ok(ip, 6))
}

/// Whether an IPv4 header's checksum is right, as Zeek's `IPAnalyzer::AnalyzePacket` checks
/// it unless run with `-C` (packet_analysis/protocol/ip/IP.cc): a packet whose header sum is
/// not all ones is dropped there, before any connection sees it. `None` for IPv6 (no header
/// checksum).
pub fn ipv4_header_checksum_ok(ip: &IpPacket) -> Option<bool> {
    if !ip.src.is_ipv4() {
        return None;
    }
    let ihl = usize::from(ip.raw.first()? & 0x0f) * 4;
    Some(fold(ones_sum(ip.raw.get(..ihl)?)) == 0xffff)
}

/// Whether a UDP datagram's checksum is right, as Zeek's `UDPAnalyzer::DeliverPacket` checks
/// it (packet_analysis/protocol/udp/UDP.cc): over the pseudo-header and the IP payload, only
/// when the capture holds all of it. A zero checksum over IPv4 means "none" and is not
/// checked; over IPv6 it is bad, except on a VXLAN datagram (Zeek's exemption: responder port
/// 4789, more than a VXLAN and an Ethernet header of payload, the VXLAN I flag set). `None`
/// when not checked.
pub fn udp_checksum_ok(ip: &IpPacket) -> Option<bool> {
    let Transport::Udp { dport, .. } = ip.transport else {
        return None;
    };
    if !ip.segment_whole || ip.fragment || ip.segment.len() < 8 {
        return None;
    }
    let stored = u16::from_be_bytes([ip.segment[6], ip.segment[7]]);
    if stored == 0 {
        let v4 = ip.src.is_ipv4();
        let vxlan = dport == 4789 && ip.segment.len() > 8 + 8 + 14 && ip.segment[8] & 0x08 != 0;
        if v4 || vxlan {
            return None;
        }
    }
    Some(pseudo_header_sum_ok(ip, 17))
}

/// Whether an ICMP message's checksum is right, as Zeek's `ICMPAnalyzer::DeliverPacket`
/// checks it (packet_analysis/protocol/icmp/ICMP.cc): ICMPv4 over the message alone, ICMPv6
/// over its pseudo-header and the message; only when the capture holds all of it. `None` when
/// not checked.
pub fn icmp_checksum_ok(ip: &IpPacket) -> Option<bool> {
    let Transport::Icmp { v6, .. } = ip.transport else {
        return None;
    };
    if !ip.segment_whole || ip.fragment {
        return None;
    }
    Some(if v6 {
        pseudo_header_sum_ok(ip, 58)
    } else {
        fold(ones_sum(ip.segment)) == 0xffff
    })
}

/// The one's-complement sum of the pseudo-header (addresses, `proto`, the segment's length)
/// and the captured segment is all ones.
fn pseudo_header_sum_ok(ip: &IpPacket, proto: u64) -> bool {
    let address = |a: IpAddr| match a {
        IpAddr::V4(a) => ones_sum(&a.octets()),
        IpAddr::V6(a) => ones_sum(&a.octets()),
    };
    let len = ip.segment.len() as u64;
    let sum = proto + (len >> 16) + (len & 0xffff) + address(ip.src) + address(ip.dst) + ones_sum(ip.segment);
    fold(sum) == 0xffff
}

/// Folds a one's-complement sum to 16 bits.
fn fold(mut sum: u64) -> u64 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The sum of `bytes` as big-endian 16-bit words (an odd last byte padded with a zero),
/// before folding.
fn ones_sum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    let mut sum: u64 = (&mut words).map(|w| u64::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// The captured part of `len` bytes on the wire that start `b`, and whether it is all there.
fn captured(b: &[u8], len: u32) -> (&[u8], bool) {
    let len = len as usize;
    (&b[..len.min(b.len())], b.len() >= len)
}

/// The tunnel protocols Zeek decapsulates, named as its `Tunnel::Type` names them in
/// tunnel.log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// IP in IP (IPv4 or IPv6 in IP protocol 4 or 41).
    Ip,
    /// GRE (IP protocol 47), ERSPAN and PPTP's enhanced GRE included.
    Gre,
    Vxlan,
    Geneve,
    Teredo,
    Ayiya,
    Gtpv1,
}

impl Tunnel {
    pub const ALL: [Tunnel; 7] = [
        Tunnel::Ip,
        Tunnel::Gre,
        Tunnel::Vxlan,
        Tunnel::Geneve,
        Tunnel::Teredo,
        Tunnel::Ayiya,
        Tunnel::Gtpv1,
    ];

    /// Zeek's name (`Tunnel::IP`, `Tunnel::GRE`, ...), without the module.
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Ip => "IP",
            Tunnel::Gre => "GRE",
            Tunnel::Vxlan => "VXLAN",
            Tunnel::Geneve => "GENEVE",
            Tunnel::Teredo => "TEREDO",
            Tunnel::Ayiya => "AYIYA",
            Tunnel::Gtpv1 => "GTPv1",
        }
    }

    /// A bit of its own, for sets of tunnel kinds.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Zeek's `Tunnel::max_depth`: at most this many encapsulations around a packet are followed;
/// a packet inside more is not analysed (Zeek's `exceeded_tunnel_max_depth`).
pub const MAX_TUNNEL_DEPTH: usize = 2;

/// What an IP packet's payload held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decap<'a> {
    /// No tunnel.
    None,
    /// A tunnel of this kind, and its packet decoded as a frame of its own.
    Inner(Tunnel, Decoded<'a>),
    /// A tunnel header that is malformed (Zeek: an analyzer violation; the inner packet is
    /// not analysed, nor later ones of the same connection): which check failed.
    Malformed(Tunnel, &'static str),
    /// A tunnel header whose packet is not analysed, the tunnel's later packets still are
    /// (Zeek: a weird, as for an empty VXLAN or a malformed GRE header).
    Weird(Tunnel, &'static str),
    /// The capture cut the tunnel's payload short, so the inner packet is not followed.
    Cut(Tunnel),
}

/// IP in IP and GRE (IP protocols 4, 41 and 47), as Zeek's IPTunnel and GRE analyzers
/// decapsulate them. Later fragments carry no tunnel header and give `None`.
pub fn ip_tunnel<'a>(ip: &IpPacket<'a>) -> Decap<'a> {
    if ip.later_fragment {
        return Decap::None;
    }
    let tunnel = match ip.proto {
        4 | 41 => Tunnel::Ip,
        47 => Tunnel::Gre,
        _ => return Decap::None,
    };
    if !ip.payload_whole {
        return Decap::Cut(tunnel);
    }
    if tunnel == Tunnel::Ip {
        // Zeek hands the payload to its IP analyzer as raw IP: the version nibble decides.
        return Decap::Inner(tunnel, inner_ip(ip.payload, None));
    }
    gre(ip.payload)
}

/// An inner IP packet: Zeek's IP analyzer refuses one whose total length is more than the
/// bytes the tunnel carried (`truncated_IP`); fewer is padding.
fn inner_ip(b: &[u8], version: Option<u8>) -> Decoded<'_> {
    match ip(b, version) {
        Decoded::Ip(p) if p.ip_len as usize > b.len() => Decoded::Broken("inner IP length"),
        other => other,
    }
}

/// An inner Ethernet frame (VXLAN, Geneve, GRE bridging, ERSPAN): its IP packet may not
/// claim more bytes than the frame carried after its link-layer headers (Zeek's IP analyzer
/// compares the IP length with what is left of the inner packet: `truncated_IP`).
fn inner_ethernet(b: &[u8]) -> Decoded<'_> {
    whole_inner(ethernet(b))
}

/// An inner 802.11 frame (Aruba's GRE), held to the same rule.
fn inner_ieee802_11(b: &[u8]) -> Decoded<'_> {
    whole_inner(ieee802_11(b))
}

/// A tunnel's inner packet whose IP length is more than the tunnel carried is broken: `raw`
/// holds the captured bytes from the IP header on, up to that length, and an inner packet's
/// bytes are all captured (a tunnel cut by the snap length is not followed).
fn whole_inner(d: Decoded<'_>) -> Decoded<'_> {
    match d {
        Decoded::Ip(p) if p.raw.len() < p.ip_len as usize => Decoded::Broken("inner IP length"),
        other => other,
    }
}

/// A GRE header's length: 4 bytes, and 4 for each of the checksum, key, sequence number and
/// acknowledgement its flags say are present (Zeek's `gre_header_len`).
fn gre_header_len(flags: u16) -> usize {
    let mut at = 4usize;
    for bit in [0x8000u16, 0x2000, 0x1000, 0x0080] {
        if flags & bit != 0 {
            at += 4;
        }
    }
    at
}

/// The GRE protocol types Zeek's GRE analyzer takes for Aruba's access points, which tunnel
/// 802.11 frames to their controller: its exact test, bit masks rather than a range (so
/// 0x8200, 0x8210, ..., 0x82f0 and 0x8600, 0x8a00, ... too), and 0x9000.
fn aruba_gre(proto: u16) -> bool {
    (proto & 0x8200 == 0x8200 && proto & 0x0f == 0)
        || (proto & 0x8300 == 0x8300 && proto & 0x0f == 0 && proto <= 0x8370)
        || proto == 0x9000
}

/// GRE (RFC 2784/2890, and version 1, PPTP's enhanced GRE), as Zeek's GRE analyzer: the
/// header's optional fields by its flags, then IP, transparent Ethernet bridging (0x6558),
/// ERSPAN type I/II (0x88be) and III (0x22eb) around Ethernet, or Aruba's 802.11 frames;
/// version 1 carries PPP with IP.
fn gre(b: &[u8]) -> Decap<'_> {
    let bad = |why| Decap::Weird(Tunnel::Gre, why);
    let (Some(flags), Some(proto)) = (be16(b, 0), be16(b, 2)) else {
        return bad("truncated GRE header");
    };
    let version = flags & 0x0007;
    if version > 1 {
        return bad("unknown GRE version");
    }
    if flags & 0x4000 != 0 {
        return bad("GRE routing present");
    }
    if flags & 0x0078 != 0 {
        return bad("unknown GRE flags");
    }
    let at = gre_header_len(flags);
    let rest = b.get(at..).unwrap_or(&[]);
    if b.len() < at {
        return bad("truncated GRE header");
    }
    if version == 1 {
        if proto != 0x880b {
            return bad("enhanced GRE not carrying PPP");
        }
        // PPP in HDLC-like framing: address, control, then the protocol.
        let version = match be16(rest, 2) {
            Some(0x0021) => 4,
            Some(0x0057) => 6,
            Some(_) => return bad("PPP without IP in enhanced GRE"),
            None => return bad("truncated PPP header in GRE"),
        };
        // Zeek checks this inner packet before it follows the tunnel: its length must be
        // exactly what GRE carried.
        let packet = &rest[4..];
        return match ip(packet, Some(version)) {
            Decoded::Ip(p) if p.ip_len as usize != packet.len() => bad("inner IP length mismatch in GRE"),
            Decoded::Ip(p) => Decap::Inner(Tunnel::Gre, Decoded::Ip(p)),
            _ => bad("invalid inner IP in GRE"),
        };
    }
    if aruba_gre(proto) {
        // Zeek reads the rest as a frame of link type 802.11 (`gre_link_type`), and wants
        // at least a byte of it.
        if rest.is_empty() {
            return bad("truncated GRE header");
        }
        return Decap::Inner(Tunnel::Gre, inner_ieee802_11(rest));
    }
    let frame_at = match proto {
        0x0800 => return Decap::Inner(Tunnel::Gre, inner_ip(rest, Some(4))),
        0x86dd => return Decap::Inner(Tunnel::Gre, inner_ip(rest, Some(6))),
        0x6558 => 0,
        // ERSPAN type II has an 8-byte header and a GRE sequence number; type I has neither.
        0x88be => {
            if flags & 0x1000 != 0 {
                8
            } else {
                0
            }
        }
        // ERSPAN type III: 12 bytes, and 8 more when its last bit says a subheader follows.
        0x22eb => match rest.get(11) {
            Some(f) if f & 0x01 != 0 => 20,
            Some(_) => 12,
            None => return bad("truncated ERSPAN header"),
        },
        _ => return Decap::Inner(Tunnel::Gre, ethertype(proto, rest, 0)),
    };
    match rest.get(frame_at..) {
        Some(frame) if frame.len() > 14 => Decap::Inner(Tunnel::Gre, inner_ethernet(frame)),
        _ => bad("truncated Ethernet frame in GRE"),
    }
}

/// UDP tunnels, as Zeek's UDP analyzer forwards a datagram's payload: by the connection's
/// responder port (VXLAN 4789, Geneve 6081, GTPv1 2152 and 2123, Teredo 3544, AYIYA 5072), and
/// on other ports to the analyzers with protocol detection (Teredo, AYIYA) when their checks
/// accept the payload. `refused` holds the kinds this connection already failed (Zeek stops
/// an analyzer on a connection after its first violation).
pub fn udp_tunnel<'a>(ip: &IpPacket<'a>, resp_port: u16, refused: u8) -> Decap<'a> {
    if ip.later_fragment {
        return Decap::None;
    }
    let tunnel = match resp_port {
        4789 => Tunnel::Vxlan,
        6081 => Tunnel::Geneve,
        2152 | 2123 => Tunnel::Gtpv1,
        3544 => Tunnel::Teredo,
        5072 => Tunnel::Ayiya,
        _ if looks_like_teredo(ip.payload) => Tunnel::Teredo,
        _ if looks_like_ayiya(ip.payload) => Tunnel::Ayiya,
        _ => return Decap::None,
    };
    if refused & tunnel.bit() != 0 {
        return Decap::None;
    }
    if !ip.payload_whole {
        return Decap::Cut(tunnel);
    }
    let b = ip.payload;
    match tunnel {
        Tunnel::Vxlan => vxlan(b),
        Tunnel::Geneve => geneve(b),
        Tunnel::Gtpv1 => gtpv1(b),
        Tunnel::Teredo => teredo(b),
        Tunnel::Ayiya => ayiya(b),
        Tunnel::Ip | Tunnel::Gre => Decap::None,
    }
}

/// VXLAN (RFC 7348): 8 bytes with the I flag set, then Ethernet.
fn vxlan(b: &[u8]) -> Decap<'_> {
    let bad = |why| Decap::Malformed(Tunnel::Vxlan, why);
    if b.len() < 8 {
        return bad("truncated VXLAN header");
    }
    if b[0] & 0x08 == 0 {
        return bad("VXLAN I flag not set");
    }
    if b.len() == 8 {
        return Decap::Weird(Tunnel::Vxlan, "VXLAN header without a packet");
    }
    Decap::Inner(Tunnel::Vxlan, inner_ethernet(&b[8..]))
}

/// Geneve (RFC 8926): version 0, 8 bytes plus options, then what its protocol type says
/// (Ethernet 0x6558, or IP).
fn geneve(b: &[u8]) -> Decap<'_> {
    let bad = |why| Decap::Malformed(Tunnel::Geneve, why);
    if b.len() < 8 {
        return bad("truncated Geneve header");
    }
    if b[0] >> 6 != 0 {
        return Decap::Weird(Tunnel::Geneve, "Geneve version not 0");
    }
    let at = 8 + usize::from(b[0] & 0x3f) * 4;
    let Some(rest) = b.get(at..) else {
        return bad("truncated Geneve options");
    };
    if rest.is_empty() {
        return Decap::Weird(Tunnel::Geneve, "Geneve header without a packet");
    }
    let inner = match u16::from_be_bytes([b[2], b[3]]) {
        0x6558 => inner_ethernet(rest),
        0x0800 => inner_ip(rest, Some(4)),
        0x86dd => inner_ip(rest, Some(6)),
        other => Decoded::NotIp(other),
    };
    Decap::Inner(Tunnel::Geneve, inner)
}

/// GTPv1-U (3GPP TS 29.281): version 1, protocol type GTP; a G-PDU (message type 255) carries
/// an IP packet after the 8-byte header, the 4 optional bytes (when E, S or PN is set) and
/// the extension headers. Other messages carry no packet. As Zeek, the inner packet's length
/// must be exactly what the message carries.
fn gtpv1(b: &[u8]) -> Decap<'_> {
    let bad = |why| Decap::Malformed(Tunnel::Gtpv1, why);
    if b.len() < 8 {
        return bad("truncated GTPv1 header");
    }
    let flags = b[0];
    if flags >> 5 != 1 {
        return bad("GTPv1 bad version");
    }
    if flags & 0x10 == 0 {
        return bad("GTP' not supported");
    }
    if b[1] != 0xff {
        return Decap::None;
    }
    let end = 8 + usize::from(u16::from_be_bytes([b[2], b[3]]));
    let Some(message) = b.get(..end) else {
        return bad("truncated GTPv1 message");
    };
    // The headers are read within the message; the inner packet is the rest of the datagram,
    // so bytes after the message are a length mismatch (as in Zeek).
    let mut at = 8usize;
    if flags & 0x07 != 0 {
        let Some(&next) = message.get(11) else {
            return bad("truncated GTPv1 optional header");
        };
        at = 12;
        let mut next_type = next;
        // Each extension header: its length in 4-byte units (counting itself), its contents,
        // and the next one's type in its last byte. Bounded by the message's length.
        while flags & 0x04 != 0 && next_type != 0 {
            let Some(&units) = message.get(at) else {
                return bad("truncated GTPv1 extension header");
            };
            if units == 0 {
                return bad("GTPv1 extension header of length 0");
            }
            at += usize::from(units) * 4;
            let Some(&n) = message.get(at - 1) else {
                return bad("truncated GTPv1 extension header");
            };
            next_type = n;
        }
    }
    // `at` is within the message: every header read above was.
    let inner = b.get(at..).unwrap_or(&[]);
    match inner.first().map(|v| v >> 4) {
        Some(4) | Some(6) => {}
        Some(_) => return bad("non-IP packet in GTPv1"),
        None => return bad("truncated GTPv1"),
    }
    match ip(inner, None) {
        Decoded::Ip(p) if p.ip_len as usize != inner.len() => bad("GTPv1 payload length"),
        Decoded::Broken(_) => bad("truncated GTPv1"),
        decoded => Decap::Inner(Tunnel::Gtpv1, decoded),
    }
}

/// Zeek's Teredo protocol detection (the old DPD signature, on a UDP payload of any port): a
/// 40-byte IPv6 packet (a bubble) with a Teredo address (2001:0000::/32) as source or
/// destination, or the authentication and origin indication headers in front of IPv6.
fn looks_like_teredo(b: &[u8]) -> bool {
    if b.len() < 40 || (b[0] >> 4 != 6 && (b[0] != 0 || (b[1] != 0 && b[1] != 1))) {
        return false;
    }
    let teredo_prefix = |at: usize| b[at..at + 4] == [0x20, 0x01, 0, 0];
    if b.len() == 40 && b[0] >> 4 == 6 && (teredo_prefix(8) || teredo_prefix(24)) {
        return true;
    }
    // As Zeek reads it: the second byte, or after an authentication header the next two.
    let mut val = u16::from(b[1]);
    let mut rest = b;
    if val == 1 {
        let skip = 13 + usize::from(b[2]) + usize::from(b[3]);
        match b.get(skip..) {
            Some(r) if r.len() >= 40 => rest = r,
            _ => return false,
        }
        val = u16::from_be_bytes([rest[0], rest[1]]);
    }
    val == 0 && rest.len() >= 48 && rest[8] >> 4 == 6
}

/// Zeek's AYIYA protocol detection: signature length and hash method 0x52, authentication
/// method and opcode 0x11.
fn looks_like_ayiya(b: &[u8]) -> bool {
    b.len() >= 3 && b[1] == 0x52 && b[2] == 0x11
}

/// Teredo (RFC 4380): optional authentication and origin indication headers, then IPv6 whose
/// length must be the datagram's (a bubble, no next header and no payload, may be followed by
/// more).
fn teredo(mut b: &[u8]) -> Decap<'_> {
    let bad = |why| Decap::Malformed(Tunnel::Teredo, why);
    let (mut origin, mut auth) = (false, false);
    loop {
        let Some(tag) = be16(b, 0) else {
            return bad("truncated Teredo");
        };
        match tag {
            0 => {
                if origin || b.len() < 8 {
                    return bad("bad Teredo origin indication");
                }
                origin = true;
                b = &b[8..];
            }
            1 => {
                if origin || auth || b.len() < 4 {
                    return bad("bad Teredo authentication header");
                }
                let total = 13 + usize::from(b[2]) + usize::from(b[3]);
                if b.len() < total {
                    return bad("truncated Teredo authentication header");
                }
                auth = true;
                b = &b[total..];
            }
            _ if tag >> 12 == 6 => break,
            _ => return bad("bad Teredo encapsulation"),
        }
    }
    if b.len() < 40 {
        return bad("truncated IPv6 in Teredo");
    }
    match ip(b, Some(6)) {
        Decoded::Ip(p) if (p.ip_len as usize) < b.len() && !(p.proto == 59 && p.ip_len == 40) => {
            bad("Teredo payload length")
        }
        Decoded::Ip(p) if p.ip_len as usize > b.len() => bad("truncated Teredo"),
        Decoded::Ip(p) => Decap::Inner(Tunnel::Teredo, Decoded::Ip(p)),
        _ => bad("truncated Teredo or invalid inner IP version"),
    }
}

/// AYIYA: 8 bytes, an identity of 2^n bytes and a signature of 4*m bytes; only the forward
/// opcode (1) carries a packet, of IP version 4 or 6 by its next-header field.
fn ayiya(b: &[u8]) -> Decap<'_> {
    let bad = |why| Decap::Malformed(Tunnel::Ayiya, why);
    if b.len() < 8 {
        return bad("truncated AYIYA");
    }
    let at = 8 + (1usize << (b[0] >> 4)) + usize::from(b[1] >> 4) * 4;
    if b.len() < at {
        return bad("truncated AYIYA");
    }
    if b[2] & 0x0f != 1 {
        return Decap::None;
    }
    if b.len() == at {
        return Decap::Weird(Tunnel::Ayiya, "AYIYA header without a packet");
    }
    let inner = match b[3] {
        4 => inner_ip(&b[at..], Some(4)),
        41 => inner_ip(&b[at..], Some(6)),
        _ => return Decap::None,
    };
    Decap::Inner(Tunnel::Ayiya, inner)
}

/// tcpdump-style flag letters (`S`, `SA`, `FA`, `R`, `PA`, ...), for the packets table.
pub fn flag_letters(f: u8) -> String {
    let mut s = String::with_capacity(8);
    for (bit, c) in [
        (flags::SYN, 'S'),
        (flags::FIN, 'F'),
        (flags::RST, 'R'),
        (flags::PSH, 'P'),
        (flags::ACK, 'A'),
        (flags::URG, 'U'),
        (flags::ECE, 'E'),
        (flags::CWR, 'C'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// Builds frames for tests, benchmarks and fuzz seeds.
pub mod build {
    use std::net::Ipv4Addr;

    /// An Ethernet + IPv4 + TCP frame with `payload` zero bytes and a right checksum.
    #[allow(clippy::too_many_arguments)]
    pub fn tcp4(
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: usize,
    ) -> Vec<u8> {
        let mut f = ether(0x0800);
        let total = 20 + 20 + payload;
        f.extend_from_slice(&ipv4_header(src, dst, 6, total as u16));
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.resize(f.len() + payload, 0);
        // The one's-complement sum of the pseudo-header and the segment (checksum field 0).
        let mut sum: u32 = 6 + (20 + payload) as u32;
        let mut words = f[26..34].chunks_exact(2).chain(f[34..].chunks_exact(2));
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if payload % 2 == 1 {
            sum += u32::from(f[f.len() - 1]) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[50..52].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f
    }

    /// An Ethernet + IPv4 + UDP frame with `payload` zero bytes and no checksum (zero).
    pub fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: usize) -> Vec<u8> {
        let mut f = ether(0x0800);
        f.extend_from_slice(&ipv4_header(src, dst, 17, (28 + payload) as u16));
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.resize(f.len() + payload, 0);
        f
    }

    /// An Ethernet + IPv4 + ICMP frame with a right checksum.
    pub fn icmp4(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, code: u8, payload: usize) -> Vec<u8> {
        let mut f = ether(0x0800);
        f.extend_from_slice(&ipv4_header(src, dst, 1, (28 + payload) as u16));
        f.extend_from_slice(&[icmp_type, code, 0, 0, 0, 1, 0, 1]);
        f.resize(f.len() + payload, 0);
        let sum = !(super::fold(super::ones_sum(&f[34..])) as u16);
        f[36..38].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// An Ethernet frame of EtherType `t` around `payload`.
    pub fn ethernet(t: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = ether(t);
        f.extend_from_slice(payload);
        f
    }

    /// An IPv4 packet (no link layer) of protocol `proto` around `payload`.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = ipv4_header(src, dst, proto, (20 + payload.len()) as u16).to_vec();
        p.extend_from_slice(payload);
        p
    }

    /// An IPv6 packet (no link layer) with next header `next` around `payload`.
    pub fn ipv6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    /// An IEEE 802.11 data frame (link type 105) from a station to its access point (To DS)
    /// carrying `packet` (IPv4 or IPv6, by its version nibble) behind LLC/SNAP; with `qos`, a
    /// QoS data frame (2 more header bytes); with `four_addr`, To DS and From DS both set (a
    /// fourth address, as between access points).
    pub fn ieee802_11(packet: &[u8], qos: bool, four_addr: bool) -> Vec<u8> {
        let fc = if qos { 0x88 } else { 0x08 };
        let ds = if four_addr { 0x03 } else { 0x01 };
        let mut f = vec![fc, ds, 0, 0];
        // Receiver, transmitter, destination (and source): four made-up addresses.
        for n in 1..=if four_addr { 4 } else { 3 } {
            f.extend_from_slice(&[0x02, 0, 0, 0, 0x11, n]);
            if n == 3 {
                f.extend_from_slice(&[0x10, 0]); // sequence control
            }
        }
        if qos {
            f.extend_from_slice(&[0, 0]);
        }
        let t: u16 = if packet.first().is_some_and(|v| v >> 4 == 6) {
            0x86dd
        } else {
            0x0800
        };
        f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
        f.extend_from_slice(&t.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    /// An 802.11 QoS data frame with the A-MSDU bit, carrying each of `packets` in a subframe
    /// (destination, source, length, LLC/SNAP, the packet) followed by the padding Zeek skips
    /// (the subframe's length modulo 4), none after the last. The standard pads each subframe
    /// to a multiple of 4 bytes: the two agree when the lengths (packet + 8) are odd.
    pub fn ieee802_11_amsdu(packets: &[&[u8]]) -> Vec<u8> {
        let mut f = ieee802_11(&[], true, false);
        f.truncate(26);
        f[24] |= 0x80;
        for (i, packet) in packets.iter().enumerate() {
            let t: u16 = if packet.first().is_some_and(|v| v >> 4 == 6) {
                0x86dd
            } else {
                0x0800
            };
            let n = 8 + packet.len();
            f.extend_from_slice(&[0x02, 0, 0, 0, 0x22, i as u8, 0x02, 0, 0, 0, 0x33, i as u8]);
            f.extend_from_slice(&(n as u16).to_be_bytes());
            f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(packet);
            if i + 1 < packets.len() {
                f.resize(f.len() + n % 4, 0);
            }
        }
        f
    }

    /// A radiotap header (link type 127) with no fields present, in front of an 802.11 frame.
    pub fn radiotap(frame: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, 8, 0, 0, 0, 0, 0];
        f.extend_from_slice(frame);
        f
    }

    /// A GRE header (version 0, no optional fields) of protocol type `proto` around `payload`.
    pub fn gre(proto: u16, payload: &[u8]) -> Vec<u8> {
        let mut g = vec![0, 0];
        g.extend_from_slice(&proto.to_be_bytes());
        g.extend_from_slice(payload);
        g
    }

    /// A UDP header (checksum 0) around `payload`.
    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut d = sport.to_be_bytes().to_vec();
        d.extend_from_slice(&dport.to_be_bytes());
        d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(payload);
        d
    }

    fn ether(t: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&t.to_be_bytes());
        f
    }

    fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, total: u16) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&src.octets());
        h[16..20].copy_from_slice(&dst.octets());
        let sum = super::fold(super::ones_sum(&h));
        h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        h
    }

    /// Splits an IPv4 packet (no link layer, as [`ipv4`] builds it) into Ethernet frames of
    /// fragments whose data starts at each of `cuts` (multiples of 8, after 0), all with
    /// identification `id` and right header checksums.
    pub fn fragments4(packet: &[u8], id: u16, cuts: &[usize]) -> Vec<Vec<u8>> {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let data = &packet[ihl..];
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        bounds
            .windows(2)
            .map(|w| {
                let mut h = packet[..ihl].to_vec();
                h[2..4].copy_from_slice(&((ihl + w[1] - w[0]) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                let more = if w[1] < data.len() { 0x2000 } else { 0 };
                h[6..8].copy_from_slice(&(more | (w[0] / 8) as u16).to_be_bytes());
                h[10..12].copy_from_slice(&[0, 0]);
                let sum = !(super::fold(super::ones_sum(&h)) as u16);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                h.extend_from_slice(&data[w[0]..w[1]]);
                ethernet(0x0800, &h)
            })
            .collect()
    }

    /// Splits an IPv6 packet (no link layer, no extension headers, as [`ipv6`] builds it) into
    /// Ethernet frames of fragments whose data starts at each of `cuts` (multiples of 8).
    pub fn fragments6(packet: &[u8], id: u32, cuts: &[usize]) -> Vec<Vec<u8>> {
        let data = &packet[40..];
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        bounds
            .windows(2)
            .map(|w| {
                let mut p = packet[..40].to_vec();
                p[4..6].copy_from_slice(&((8 + w[1] - w[0]) as u16).to_be_bytes());
                p[6] = 44;
                let more = u16::from(w[1] < data.len());
                p.extend_from_slice(&[packet[6], 0]);
                p.extend_from_slice(&((w[0] as u16) | more).to_be_bytes());
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&data[w[0]..w[1]]);
                ethernet(0x86dd, &p)
            })
            .collect()
    }

    /// Fills in the checksum of the UDP datagram in an Ethernet + IPv4 frame (from
    /// [`udp4`]), so that it is right.
    pub fn set_udp4_checksum(f: &mut [u8]) {
        f[40..42].copy_from_slice(&[0, 0]);
        let len = (f.len() - 34) as u64;
        let sum = 17 + len + super::ones_sum(&f[26..34]) + super::ones_sum(&f[34..]);
        let sum = !(super::fold(sum) as u16);
        // A computed zero is sent as all ones (zero means "no checksum").
        f[40..42].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The checksum as Zeek checks it: right for a built segment (odd and even lengths), wrong
    /// after any flipped bit of header or payload, unknown when the capture cut the segment,
    /// and not asked of UDP.
    #[test]
    fn tcp_checksums() {
        let (x, y) = ("10.0.0.1".parse().unwrap(), "192.168.7.9".parse().unwrap());
        for len in [0, 1, 2, 37, 1200] {
            let f = build::tcp4(x, 40000, y, 443, 7, 9, 0x18, len);
            let Decoded::Ip(ip) = decode(1, &f) else { panic!() };
            assert_eq!(tcp_checksum_ok(&ip), Some(true), "{len} bytes");
            for at in [34, 47, f.len() - 1] {
                let mut g = f.clone();
                g[at] ^= 0x01;
                let Decoded::Ip(ip) = decode(1, &g) else { panic!() };
                assert_eq!(tcp_checksum_ok(&ip), Some(false), "{len} bytes, bit flipped at {at}");
            }
            if len > 0 {
                let Decoded::Ip(ip) = decode(1, &f[..f.len() - 1]) else {
                    panic!()
                };
                assert_eq!(tcp_checksum_ok(&ip), None, "{len} bytes, cut");
            }
        }
        let u = build::udp4(x, 53, y, 53, 10);
        let Decoded::Ip(ip) = decode(1, &u) else { panic!() };
        assert_eq!(tcp_checksum_ok(&ip), None);
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = build::tcp4(
            "10.0.0.1".parse().unwrap(),
            1234,
            "10.0.0.2".parse().unwrap(),
            80,
            7,
            0,
            flags::SYN,
            10,
        );
        let Decoded::Ip(p) = decode(1, &f) else { panic!() };
        assert_eq!((p.src, p.dst, p.proto, p.ip_len), (a("10.0.0.1"), a("10.0.0.2"), 6, 50));
        assert_eq!(
            p.transport,
            Transport::Tcp {
                sport: 1234,
                dport: 80,
                seq: 7,
                ack: 0,
                flags: flags::SYN,
                window: 0xffff,
                payload: 10,
                payload_captured: true,
            }
        );
        // Truncated by the snap length after the TCP header: lengths still come from headers,
        // and the payload is marked as not captured.
        let Decoded::Ip(t) = decode(1, &f[..54]) else { panic!() };
        let Transport::Tcp {
            payload,
            payload_captured,
            ..
        } = t.transport
        else {
            panic!()
        };
        assert_eq!((t.ip_len, payload, payload_captured), (p.ip_len, 10, false));
        assert_eq!(decode(1, &f[..40]), Decoded::Broken("TCP header"));
    }

    #[test]
    fn vlan_qinq_sll_sll2_null_raw() {
        let f = build::udp4("192.0.2.1".parse().unwrap(), 53, "192.0.2.2".parse().unwrap(), 5353, 4);
        let ip_part = &f[14..];
        let want = decode(1, &f);
        assert!(matches!(want, Decoded::Ip(_)));
        // QinQ: 88a8 + 8100 tags.
        let mut q = f[..12].to_vec();
        q.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        q.extend_from_slice(ip_part);
        assert_eq!(decode(1, &q), want);
        // MPLS: two labels, the second at the bottom of the stack (S bit), then IP.
        let mut mpls = f[..12].to_vec();
        mpls.extend_from_slice(&[0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64]);
        mpls.extend_from_slice(ip_part);
        assert_eq!(decode(1, &mpls), want);
        // PPPoE session (0x8864): version/type, code, session id, length, then PPP's IPv4
        // protocol (0x0021).
        let mut pppoe = f[..12].to_vec();
        pppoe.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 7, 0, 0, 0x00, 0x21]);
        pppoe.extend_from_slice(ip_part);
        assert_eq!(decode(1, &pppoe), want);
        // SLL
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(ip_part);
        assert_eq!(decode(113, &sll), want);
        // SLL2
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(ip_part);
        assert_eq!(decode(276, &sll2), want);
        // BSD null, little endian AF_INET; OpenBSD loop, big endian.
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(ip_part);
        assert_eq!(decode(0, &null), want);
        let mut lo = vec![0, 0, 0, 2];
        lo.extend_from_slice(ip_part);
        assert_eq!(decode(108, &lo), want);
        assert_eq!(decode(101, ip_part), want);
        assert_eq!(decode(228, ip_part), want);
        assert_eq!(decode(192, ip_part), Decoded::UnsupportedLink);
    }

    #[test]
    fn ipv6_with_extension_header_and_icmpv6() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0 /* hop-by-hop */, 64];
        p.extend_from_slice(&a("2001:db8::1").to_string().parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop: next = ICMPv6, 8 bytes
        p.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]); // echo request
        let Decoded::Ip(d) = decode(229, &p) else { panic!() };
        assert_eq!(d.proto, 58);
        assert_eq!(d.ip_len, 56);
        assert_eq!(
            d.transport,
            Transport::Icmp {
                v6: true,
                icmp_type: 128,
                code: 0,
                payload: 0
            }
        );
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// The inner TCP SYN (an IPv4 packet, no link layer) the tunnel tests carry.
    fn inner_syn() -> Vec<u8> {
        build::tcp4(v4("10.9.0.1"), 40000, v4("10.9.0.2"), 443, 1, 0, flags::SYN, 0)[14..].to_vec()
    }

    /// The outer Ethernet + IPv4 + UDP frame to `dport` around `payload`.
    fn udp_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
        let udp = build::udp(50000, dport, payload);
        build::ethernet(0x0800, &build::ipv4(v4("192.0.2.1"), v4("192.0.2.2"), 17, &udp))
    }

    /// What the frame's UDP payload holds when its flow's responder port is `resp_port`.
    fn udp_decap(frame: &[u8], resp_port: u16, refused: u8) -> Decap<'_> {
        let Decoded::Ip(outer) = decode(1, frame) else {
            panic!("outer not IP")
        };
        udp_tunnel(&outer, resp_port, refused)
    }

    fn ip_decap(frame: &[u8]) -> Decap<'_> {
        let Decoded::Ip(outer) = decode(1, frame) else {
            panic!("outer not IP")
        };
        ip_tunnel(&outer)
    }

    /// The inner packet's addresses and ports, or what the tunnel said instead.
    fn inner_of(d: Decap<'_>) -> Result<(Tunnel, String, String), String> {
        match d {
            Decap::Inner(t, Decoded::Ip(p)) => match p.transport {
                Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport, .. } => {
                    Ok((t, format!("{}:{sport}", p.src), format!("{}:{dport}", p.dst)))
                }
                other => Err(format!("inner transport {other:?}")),
            },
            other => Err(format!("{other:?}")),
        }
    }

    fn syn_ok(t: Tunnel) -> Result<(Tunnel, String, String), String> {
        Ok((t, "10.9.0.1:40000".to_string(), "10.9.0.2:443".to_string()))
    }

    /// Each UDP tunnel Zeek decapsulates, by its port: the inner SYN comes out whole.
    #[test]
    fn udp_tunnels_by_responder_port() {
        let inner = inner_syn();
        let eth = build::ethernet(0x0800, &inner);
        // VXLAN: flags with I, VNI 42, then Ethernet.
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vxlan.extend_from_slice(&eth);
        assert_eq!(
            inner_of(udp_decap(&udp_frame(4789, &vxlan), 4789, 0)),
            syn_ok(Tunnel::Vxlan)
        );
        // The responder port decides, not the destination: the same datagram on a flow whose
        // responder is another port is no tunnel.
        assert_eq!(udp_decap(&udp_frame(4789, &vxlan), 50000, 0), Decap::None);
        // Geneve: one 4-byte option word, protocol 0x6558 (Ethernet); and IPv4 directly.
        let mut geneve = vec![0x01, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4];
        geneve.extend_from_slice(&eth);
        assert_eq!(
            inner_of(udp_decap(&udp_frame(6081, &geneve), 6081, 0)),
            syn_ok(Tunnel::Geneve)
        );
        let mut geneve_ip = vec![0, 0, 0x08, 0x00, 0, 0, 7, 0];
        geneve_ip.extend_from_slice(&inner);
        assert_eq!(
            inner_of(udp_decap(&udp_frame(6081, &geneve_ip), 6081, 0)),
            syn_ok(Tunnel::Geneve)
        );
        // GTPv1-U G-PDU with the optional fields and one extension header (PDU session, 4 bytes).
        let mut gtp = vec![0x34, 0xff];
        let body_len = 4 + 4 + inner.len();
        gtp.extend_from_slice(&(body_len as u16).to_be_bytes());
        gtp.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 0x85, 1, 0x10, 0x05, 0]);
        gtp.extend_from_slice(&inner);
        assert_eq!(
            inner_of(udp_decap(&udp_frame(2152, &gtp), 2152, 0)),
            syn_ok(Tunnel::Gtpv1)
        );
        // AYIYA: identity 2^0 = 1 byte, signature 0, opcode forward, next header IPv4.
        let mut ayiya = vec![0x00, 0x00, 0x01, 4, 0, 0, 0, 0, 0xaa];
        ayiya.extend_from_slice(&inner);
        assert_eq!(
            inner_of(udp_decap(&udp_frame(5072, &ayiya), 5072, 0)),
            syn_ok(Tunnel::Ayiya)
        );
    }

    /// Teredo carries IPv6: plain, behind an origin indication, behind an authentication
    /// header; on port 3544, and on any port when it passes Zeek's protocol detection.
    #[test]
    fn teredo_by_port_and_by_detection() {
        let (c, s): (Ipv6Addr, Ipv6Addr) = ("2001:0:4136:e378::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let udp6 = build::udp(3000, 53, &[1, 2, 3, 4]);
        let v6 = build::ipv6(c, s, 17, &udp6);
        let want = Ok((Tunnel::Teredo, format!("{c}:3000"), format!("{s}:53")));
        assert_eq!(inner_of(udp_decap(&udp_frame(3544, &v6), 3544, 0)), want);
        let mut origin = vec![0, 0, 0xf2, 0x3d, 0x3f, 0xff, 0xfd, 0xfe];
        origin.extend_from_slice(&v6);
        assert_eq!(inner_of(udp_decap(&udp_frame(3544, &origin), 3544, 0)), want);
        let mut auth = vec![0, 1, 2, 1, b'i', b'd', b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0];
        auth.extend_from_slice(&origin);
        assert_eq!(inner_of(udp_decap(&udp_frame(3544, &auth), 3544, 0)), want);
        // On another port: the origin indication followed by IPv6 is detected as Teredo, a
        // plain IPv6 packet of more than 40 bytes is not (Zeek's signature wants a bubble).
        assert_eq!(inner_of(udp_decap(&udp_frame(40001, &origin), 40001, 0)), want);
        assert_eq!(udp_decap(&udp_frame(40001, &v6), 40001, 0), Decap::None);
        let bubble = build::ipv6(c, s, 59, &[]);
        assert!(matches!(
            udp_decap(&udp_frame(40001, &bubble), 40001, 0),
            Decap::Inner(Tunnel::Teredo, _)
        ));
        // A payload length that does not match the datagram is a violation.
        let mut long = v6.clone();
        long.extend_from_slice(&[0; 4]);
        assert!(matches!(
            udp_decap(&udp_frame(3544, &long), 3544, 0),
            Decap::Malformed(Tunnel::Teredo, _)
        ));
    }

    /// IP in IP (IPv4 in IPv4, IPv6 in IPv4) and GRE: plain IP, transparent Ethernet,
    /// ERSPAN I/II/III and PPTP's enhanced GRE.
    #[test]
    fn ip_tunnels_and_gre() {
        let inner = inner_syn();
        let outer = |proto: u8, payload: &[u8]| {
            build::ethernet(
                0x0800,
                &build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), proto, payload),
            )
        };
        assert_eq!(inner_of(ip_decap(&outer(4, &inner))), syn_ok(Tunnel::Ip));
        let udp6 = build::udp(3000, 53, &[1, 2]);
        let v6 = build::ipv6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            17,
            &udp6,
        );
        assert!(matches!(ip_decap(&outer(41, &v6)), Decap::Inner(Tunnel::Ip, Decoded::Ip(p)) if p.proto == 17));
        let gre = |flags: u16, proto: u16, extra: &[u8], payload: &[u8]| {
            let mut g = flags.to_be_bytes().to_vec();
            g.extend_from_slice(&proto.to_be_bytes());
            g.extend_from_slice(extra);
            g.extend_from_slice(payload);
            outer(47, &g)
        };
        let eth = build::ethernet(0x0800, &inner);
        assert_eq!(inner_of(ip_decap(&gre(0, 0x0800, &[], &inner))), syn_ok(Tunnel::Gre));
        // Key and sequence number present.
        assert_eq!(
            inner_of(ip_decap(&gre(0x3000, 0x0800, &[0; 8], &inner))),
            syn_ok(Tunnel::Gre)
        );
        assert_eq!(inner_of(ip_decap(&gre(0, 0x6558, &[], &eth))), syn_ok(Tunnel::Gre));
        // ERSPAN type I (no sequence number, no header) and II (sequence number, 8 bytes).
        assert_eq!(inner_of(ip_decap(&gre(0, 0x88be, &[], &eth))), syn_ok(Tunnel::Gre));
        assert_eq!(
            inner_of(ip_decap(&gre(0x1000, 0x88be, &[0; 12], &eth))),
            syn_ok(Tunnel::Gre)
        );
        // ERSPAN type III, without and with its 8-byte subheader.
        assert_eq!(
            inner_of(ip_decap(&gre(0x1000, 0x22eb, &[0; 16], &eth))),
            syn_ok(Tunnel::Gre)
        );
        let mut with_sub = [0u8; 24];
        with_sub[4 + 11] = 1;
        assert_eq!(
            inner_of(ip_decap(&gre(0x1000, 0x22eb, &with_sub, &eth))),
            syn_ok(Tunnel::Gre)
        );
        // PPTP: version 1, key present, PPP (ff 03) carrying IPv4.
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&inner);
        assert_eq!(
            inner_of(ip_decap(&gre(0x2001, 0x880b, &[0; 4], &ppp))),
            syn_ok(Tunnel::Gre)
        );
        // Routing present, an unknown version, reserved flags: Zeek's weirds.
        assert!(matches!(
            ip_decap(&gre(0x4000, 0x0800, &[], &inner)),
            Decap::Weird(Tunnel::Gre, _)
        ));
        assert!(matches!(
            ip_decap(&gre(0x0002, 0x0800, &[], &inner)),
            Decap::Weird(Tunnel::Gre, _)
        ));
        assert!(matches!(
            ip_decap(&gre(0x0008, 0x0800, &[], &inner)),
            Decap::Weird(Tunnel::Gre, _)
        ));
        // Other IP protocols are no tunnel; a tunnel cut by the snap length is not followed.
        assert_eq!(ip_decap(&outer(50, &inner)), Decap::None);
        let whole = outer(4, &inner);
        assert_eq!(ip_decap(&whole[..whole.len() - 1]), Decap::Cut(Tunnel::Ip));
        // An inner packet claiming more than the tunnel carried is broken, not read past.
        let mut short = inner.clone();
        short[3] += 10;
        assert!(matches!(
            ip_decap(&outer(4, &short)),
            Decap::Inner(Tunnel::Ip, Decoded::Broken(_))
        ));
        // Regression: inside Ethernet the IP length is held to the bytes after the Ethernet
        // header (an IP packet claiming up to 14 bytes more than it has was taken whole).
        assert_eq!(
            ip_decap(&gre(0, 0x6558, &[], &build::ethernet(0x0800, &short))),
            Decap::Inner(Tunnel::Gre, Decoded::Broken("inner IP length"))
        );
    }

    /// Malformed UDP tunnel headers are violations (the connection stops being decapsulated),
    /// Zeek's weirds are not; refused kinds are not looked at.
    #[test]
    fn malformed_udp_tunnels() {
        let inner = inner_syn();
        let eth = build::ethernet(0x0800, &inner);
        let mut no_i = vec![0x00, 0, 0, 0, 0, 0, 42, 0];
        no_i.extend_from_slice(&eth);
        assert!(matches!(
            udp_decap(&udp_frame(4789, &no_i), 4789, 0),
            Decap::Malformed(Tunnel::Vxlan, _)
        ));
        let empty = [0x08, 0, 0, 0, 0, 0, 42, 0];
        assert!(matches!(
            udp_decap(&udp_frame(4789, &empty), 4789, 0),
            Decap::Weird(Tunnel::Vxlan, _)
        ));
        let mut ok = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        ok.extend_from_slice(&eth);
        assert_eq!(udp_decap(&udp_frame(4789, &ok), 4789, Tunnel::Vxlan.bit()), Decap::None);
        // Geneve options longer than the datagram; GTPv1 with a length beyond the datagram,
        // with bytes after its message, and with version 2.
        assert!(matches!(
            udp_decap(&udp_frame(6081, &[0x3f, 0, 0x65, 0x58, 0, 0, 0, 0]), 6081, 0),
            Decap::Malformed(Tunnel::Geneve, _)
        ));
        let mut gtp = vec![0x30, 0xff];
        gtp.extend_from_slice(&((inner.len() + 1) as u16).to_be_bytes());
        gtp.extend_from_slice(&[0, 0, 0, 9]);
        gtp.extend_from_slice(&inner);
        assert!(matches!(
            udp_decap(&udp_frame(2152, &gtp), 2152, 0),
            Decap::Malformed(Tunnel::Gtpv1, _)
        ));
        gtp[3] -= 1;
        gtp.push(0);
        assert!(matches!(
            udp_decap(&udp_frame(2152, &gtp), 2152, 0),
            Decap::Malformed(Tunnel::Gtpv1, _)
        ));
        gtp.pop();
        assert_eq!(
            inner_of(udp_decap(&udp_frame(2152, &gtp), 2152, 0)),
            syn_ok(Tunnel::Gtpv1)
        );
        gtp[0] = 0x50;
        assert!(matches!(
            udp_decap(&udp_frame(2123, &gtp), 2123, 0),
            Decap::Malformed(Tunnel::Gtpv1, _)
        ));
        // A GTP message other than a G-PDU carries no packet; so does an AYIYA one other than
        // a forward.
        let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(udp_decap(&udp_frame(2123, &echo), 2123, 0), Decap::None);
        let mut ayiya = vec![0x00, 0x00, 0x02, 4, 0, 0, 0, 0, 0xaa];
        ayiya.extend_from_slice(&inner);
        assert_eq!(udp_decap(&udp_frame(5072, &ayiya), 5072, 0), Decap::None);
        // Every prefix of every tunnel frame decodes without a panic.
        for frame in [udp_frame(4789, &ok), udp_frame(2152, &gtp), udp_frame(6081, &no_i)] {
            for n in 0..frame.len() {
                if let Decoded::Ip(p) = decode(1, &frame[..n]) {
                    for port in [4789, 6081, 2152, 3544, 5072] {
                        let _ = udp_tunnel(&p, port, 0);
                    }
                }
            }
        }
    }

    /// PBB, VN-Tag and Cisco FabricPath, each built byte by byte around the same inner SYN,
    /// decode to it as Zeek's Ethernet, PBB and VNTag analyzers read them; their truncated
    /// headers are broken (counted), and what Zeek does not follow is not IP.
    #[test]
    fn pbb_vntag_fabricpath() {
        let inner = inner_syn();
        let want = decode(101, &inner);
        assert!(matches!(want, Decoded::Ip(_)));
        // PBB: I-TAG (priority, flags, 24-bit I-SID 0x0abcde), then the customer's frame.
        let mut pbb = vec![0x60, 0x0a, 0xbc, 0xde];
        pbb.extend_from_slice(&build::ethernet(0x0800, &inner));
        assert_eq!(decode(1, &build::ethernet(0x88e7, &pbb)), want);
        // Behind an S-tag (Zeek's VLAN analyzer forwards 0x88e7 to PBB), with a C-tag inside.
        let mut tagged = vec![0x60, 0x0a, 0xbc, 0xde];
        tagged.extend_from_slice(&build::ethernet(0x8100, &[&[0, 7, 0x08, 0x00][..], &inner].concat()));
        let s_tag = [&[0, 5, 0x88, 0xe7][..], &tagged].concat();
        assert_eq!(decode(1, &build::ethernet(0x88a8, &s_tag)), want);
        // Zeek wants more than 18 bytes after the EtherType.
        assert_eq!(
            decode(1, &build::ethernet(0x88e7, &pbb[..18])),
            Decoded::Broken("PBB header")
        );
        assert!(matches!(
            decode(1, &build::ethernet(0x88e7, &pbb[..19])),
            Decoded::Broken(_)
        ));
        // VN-Tag: direction/pointer/VIFs (4 bytes), then 802.1Q, then IPv4.
        let mut vntag = vec![0x80, 0x01, 0x00, 0x02, 0x81, 0x00, 0x00, 0x09, 0x08, 0x00];
        vntag.extend_from_slice(&inner);
        assert_eq!(decode(1, &build::ethernet(0x8926, &vntag)), want);
        // Zeek's VNTag analyzer forwards to VLAN only: IPv4 right after the tag is not followed.
        let mut bare = vec![0x80, 0x01, 0x00, 0x02, 0x08, 0x00];
        bare.extend_from_slice(&inner);
        assert_eq!(decode(1, &build::ethernet(0x8926, &bare)), Decoded::NotIp(0x0800));
        assert_eq!(
            decode(1, &build::ethernet(0x8926, &vntag[..6])),
            Decoded::Broken("VN-Tag header")
        );
        // Only the Ethernet analyzer maps 0x8926 to VN-Tag: behind a VLAN tag it is not read.
        let behind_vlan = [&[0, 3, 0x89, 0x26][..], &vntag].concat();
        assert_eq!(
            decode(1, &build::ethernet(0x8100, &behind_vlan)),
            Decoded::NotIp(0x8926)
        );
        // FabricPath: outer addresses, 0x8903, FTag and TTL, then the classic Ethernet frame.
        let mut fp = vec![0x00, 0x3f];
        fp.extend_from_slice(&build::ethernet(0x0800, &inner));
        let fp_frame = build::ethernet(0x8903, &fp);
        assert_eq!(decode(1, &fp_frame), want);
        // Zeek wants more than the 16-byte outer and the 14-byte inner header.
        assert_eq!(decode(1, &fp_frame[..30]), Decoded::Broken("FabricPath header"));
        assert_eq!(decode(1, &fp_frame[..31]), Decoded::Broken("IPv4 header"));
        // FabricPath around PBB around VLAN: the layers nest.
        let deep = build::ethernet(0x8903, &[&[0, 0x3f][..], &build::ethernet(0x88a8, &s_tag)].concat());
        assert_eq!(decode(1, &deep), want);
        // PBB nested in PBB without end is bounded, not a stack overflow.
        let mut nested = build::ethernet(0x0800, &inner);
        for _ in 0..5000 {
            nested = build::ethernet(0x88e7, &[&[0x60, 0, 0, 1][..], &nested].concat());
        }
        assert_eq!(decode(1, &nested), Decoded::Broken("too many nested tags"));
    }

    /// 802.11 data frames (link type 105 and behind radiotap, 127), as Zeek's IEEE802_11
    /// analyzer reads them: plain, QoS and four-address headers give the inner packet;
    /// management, null-data, protected QoS and non-SNAP frames carry none; A-MSDUs and cut
    /// headers are broken.
    #[test]
    fn ieee802_11_and_radiotap() {
        let inner = inner_syn();
        let want = decode(101, &inner);
        for (qos, four) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = build::ieee802_11(&inner, qos, four);
            assert_eq!(decode(105, &f), want, "qos {qos}, four addresses {four}");
            assert_eq!(
                decode(127, &build::radiotap(&f)),
                want,
                "radiotap, qos {qos}, four {four}"
            );
        }
        // The frame layout, byte by byte: 24-byte header, LLC/SNAP, EtherType, the packet.
        let f = build::ieee802_11(&inner, false, false);
        assert_eq!(f.len(), 24 + 8 + inner.len());
        assert_eq!(f[..2], [0x08, 0x01]);
        assert_eq!(f[24..32], [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
        // IPv6 inside.
        let udp6 = build::udp(3000, 53, &[1, 2]);
        let v6 = build::ipv6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            17,
            &udp6,
        );
        assert!(matches!(decode(105, &build::ieee802_11(&v6, true, false)), Decoded::Ip(p) if p.proto == 17));
        // A longer radiotap header (its length field says 12) is skipped whole.
        let mut rt = vec![0, 0, 12, 0, 0x02, 0, 0, 0, 0x10, 0, 0, 0];
        rt.extend_from_slice(&f);
        assert_eq!(decode(127, &rt), want);
        let no_packet = Decoded::NotIp(IEEE802_11_NO_PACKET);
        // A beacon (management), an RTS (control), a null-data and a QoS null frame.
        for fc in [0x80, 0xb4, 0x48, 0xc8] {
            let mut g = f.clone();
            g[0] = fc;
            assert_eq!(decode(105, &g), no_packet, "frame control {fc:#04x}");
        }
        // Protected QoS data: encrypted, skipped. Protected non-QoS data is read as Zeek reads
        // it: its (here unencrypted) LLC/SNAP header decides.
        let mut protected = build::ieee802_11(&inner, true, false);
        protected[1] |= 0x40;
        assert_eq!(decode(105, &protected), no_packet);
        let mut plain_protected = f.clone();
        plain_protected[1] |= 0x40;
        assert_eq!(decode(105, &plain_protected), want);
        plain_protected[24] = 0x12; // a CCMP header instead of LLC
        assert_eq!(decode(105, &plain_protected), no_packet);
        // LLC without SNAP's zero organization code; SNAP with ARP.
        let mut oui = f.clone();
        oui[29] = 0x0c;
        assert_eq!(decode(105, &oui), no_packet);
        let mut arp = f.clone();
        arp[30..32].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(decode(105, &arp), Decoded::NotIp(0x0806));
        // An A-MSDU of one subframe is its packet; the QoS frame with the A-MSDU bit set but
        // a plain LLC header after it is read as subframes, as Zeek reads it (broken here).
        let amsdu = build::ieee802_11_amsdu(&[&inner]);
        assert_eq!(decode(105, &amsdu), want);
        assert_eq!(later_packets(105, &amsdu).count(), 0);
        let mut not_amsdu = build::ieee802_11(&inner, true, false);
        not_amsdu[24] = 0x80;
        assert!(matches!(decode(105, &not_amsdu), Decoded::Broken(_)));
        // Cut headers: 802.11 (Zeek wants more than 24, 30 and 26/32 bytes), LLC, radiotap.
        assert_eq!(decode(105, &f[..24]), Decoded::Broken("802.11 header"));
        let four = build::ieee802_11(&inner, true, true);
        assert_eq!(decode(105, &four[..30]), Decoded::Broken("802.11 header"));
        assert_eq!(decode(105, &four[..32]), Decoded::Broken("802.11 header"));
        assert_eq!(decode(105, &f[..31]), Decoded::Broken("802.11 LLC header"));
        assert_eq!(decode(127, &[0, 0, 8]), Decoded::Broken("radiotap header"));
        assert_eq!(decode(127, &build::radiotap(&[])), Decoded::Broken("radiotap header"));
        assert_eq!(
            decode(127, &[0, 0, 0xff, 0xff, 0, 0]),
            Decoded::Broken("radiotap header")
        );
        // Every prefix of every frame decodes without a panic.
        for frame in [build::radiotap(&four), build::radiotap(&not_amsdu), build::radiotap(&f)] {
            for n in 0..frame.len() {
                let _ = decode(127, &frame[..n]);
                let _ = decode(105, &frame[..n]);
            }
        }
    }

    /// The packets of an A-MSDU, in order: the first from `decode`, the others from
    /// `later_packets`, each held to its subframe; Zeek's padding rule (length modulo 4) and
    /// its stops (a cut subframe, one without SNAP or IP: the later ones are not read).
    #[test]
    fn ieee802_11_amsdu_subframes() {
        let p =
            |sport: u16, n: usize| build::ipv4(v4("10.7.0.1"), v4("10.7.0.2"), 17, &build::udp(sport, 53, &vec![0; n]));
        let ports = |first: Decoded<'_>, later: LaterPackets<'_>| -> Vec<Option<u16>> {
            std::iter::once(first)
                .chain(later)
                .map(|d| match d {
                    Decoded::Ip(ip) => match ip.transport {
                        Transport::Udp { sport, .. } => Some(sport),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        };
        // Lengths 8 + 28 + n: n = 1, 2, 3, 4 give each padding (1, 2, 3, 0).
        let (a, b, c, d) = (p(1, 1), p(2, 2), p(3, 3), p(4, 4));
        let f = build::ieee802_11_amsdu(&[&a, &b, &c, &d]);
        assert_eq!(
            ports(decode(105, &f), later_packets(105, &f)),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        let rt = build::radiotap(&f);
        assert_eq!(
            ports(decode(127, &rt), later_packets(127, &rt)),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        // Subframe layout: destination, source, length (8 + 29 = 37), LLC/SNAP; then 1 byte
        // of padding (37 % 4) before the second subframe.
        assert_eq!(f[26 + 12..26 + 14], [0, 37]);
        assert_eq!(f[26 + 14 + 37 + 1 + 12..26 + 14 + 37 + 1 + 14], [0, 38]);
        // Cut in the third subframe: the first two are read, the third is broken, no fourth.
        let cut = &f[..26 + (14 + 37 + 1) + (14 + 38 + 2) + 20];
        let got: Vec<_> = std::iter::once(decode(105, cut))
            .chain(later_packets(105, cut))
            .collect();
        assert_eq!(got.len(), 3);
        assert!(matches!(got[2], Decoded::Broken("802.11 A-MSDU subframe length")));
        // A subframe without SNAP stops the reading: the ones after it are not analysed.
        let mut no_snap = f.clone();
        no_snap[26 + 14 + 37 + 1 + 14] = 0x42;
        assert_eq!(
            ports(decode(105, &no_snap), later_packets(105, &no_snap)),
            [Some(1), None]
        );
        // An IP packet claiming more than its subframe holds is broken, and stops it too.
        let mut long = f.clone();
        long[26 + 14 + 8 + 3] += 1;
        assert_eq!(
            std::iter::once(decode(105, &long))
                .chain(later_packets(105, &long))
                .collect::<Vec<_>>(),
            [Decoded::Broken("inner IP length")]
        );
        // Other link types and plain frames have no later packets; nor does a cut header.
        assert_eq!(later_packets(1, &f).count(), 0);
        assert_eq!(later_packets(105, &build::ieee802_11(&a, true, false)).count(), 0);
        assert_eq!(later_packets(127, &[0, 0, 8]).count(), 0);
        // Every prefix reads without a panic, and at most a subframe per 14 bytes.
        for n in 0..f.len() {
            assert!(later_packets(105, &f[..n]).count() <= n / 14);
        }
        // In Aruba's GRE: the first packet from the tunnel, the others after it.
        let outer = build::ethernet(
            0x0800,
            &build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 47, &build::gre(0x8200, &f)),
        );
        let Decoded::Ip(gre_ip) = decode(1, &outer) else {
            panic!()
        };
        let Decap::Inner(Tunnel::Gre, first) = ip_tunnel(&gre_ip) else {
            panic!()
        };
        assert_eq!(
            ports(first, later_packets_in_tunnel(&gre_ip)),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        let plain = build::ethernet(
            0x0800,
            &build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 47, &build::gre(0x0800, &a)),
        );
        let Decoded::Ip(plain_ip) = decode(1, &plain) else {
            panic!()
        };
        assert_eq!(later_packets_in_tunnel(&plain_ip).count(), 0);
    }

    /// Aruba's GRE: the protocol types Zeek maps to 802.11 carry 802.11 frames to the inner
    /// packet; the other types and cut frames are not followed.
    #[test]
    fn aruba_gre_carries_802_11() {
        let inner = inner_syn();
        let outer = |payload: &[u8]| {
            build::ethernet(
                0x0800,
                &build::ipv4(v4("198.51.100.1"), v4("198.51.100.2"), 47, payload),
            )
        };
        let dot11 = build::ieee802_11(&inner, true, false);
        for proto in [0x8200, 0x8210, 0x82f0, 0x8300, 0x8370, 0x9000] {
            assert_eq!(
                inner_of(ip_decap(&outer(&build::gre(proto, &dot11)))),
                syn_ok(Tunnel::Gre),
                "GRE protocol {proto:#06x}"
            );
        }
        assert!(aruba_gre(0x8600) && aruba_gre(0x8380));
        // Not Aruba's: a low nibble set, or neither mask.
        for proto in [0x8201, 0x8100, 0x9001] {
            assert!(!aruba_gre(proto), "{proto:#06x}");
            assert!(!matches!(
                ip_decap(&outer(&build::gre(proto, &dot11))),
                Decap::Inner(_, Decoded::Ip(_))
            ));
        }
        // A management frame inside: the tunnel is followed, no packet comes out.
        let mut beacon = dot11.clone();
        beacon[0] = 0x80;
        assert_eq!(
            ip_decap(&outer(&build::gre(0x8200, &beacon))),
            Decap::Inner(Tunnel::Gre, Decoded::NotIp(IEEE802_11_NO_PACKET))
        );
        // Nothing after the GRE header; an inner packet claiming more than the frame holds.
        assert!(matches!(
            ip_decap(&outer(&build::gre(0x8200, &[]))),
            Decap::Weird(Tunnel::Gre, _)
        ));
        let mut long = dot11.clone();
        long[26 + 8 + 3] += 10;
        assert_eq!(
            ip_decap(&outer(&build::gre(0x8200, &long))),
            Decap::Inner(Tunnel::Gre, Decoded::Broken("inner IP length"))
        );
        for n in 0..dot11.len() {
            let _ = ip_decap(&outer(&build::gre(0x9000, &dot11[..n])));
        }
    }

    #[test]
    fn non_ip_and_garbage() {
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(decode(1, &arp), Decoded::NotIp(0x0806));
        assert_eq!(decode(1, &[]), Decoded::Broken("Ethernet header"));
        assert_eq!(decode(101, &[0x45, 0, 0]), Decoded::Broken("IPv4 header"));
        assert_eq!(decode(101, &[0x75; 40]), Decoded::Broken("IP version"));
        assert_eq!(flag_letters(flags::SYN | flags::ACK), "SA");
    }
}
