//! Packet decoding: from a captured frame (by link type) down to the IP header and the TCP,
//! UDP or ICMP header. Lengths come from the headers (what was on the wire), not from the
//! captured bytes, so a snap-length-truncated packet still counts its full size.
//!
//! Pure functions over byte slices: every read is bounds-checked, nothing panics on bad input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Link types this decoder understands.
pub const SUPPORTED_LINKTYPES: &str =
    "Ethernet (1), BSD loopback/null (0), OpenBSD loop (108), raw IP (101, 12, 14, 228, 229), Linux cooked SLL (113) and SLL2 (276)";

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
    matches!(linktype, 0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276)
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
pub struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (for IPv6, the upper-layer header after extension headers).
    pub proto: u8,
    /// IP total length from the header (IPv6: 40 + payload length).
    pub ip_len: u32,
    /// A fragment other than the first: it carries no transport header.
    pub later_fragment: bool,
    pub transport: Transport,
}

/// What a frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Ip(IpPacket),
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
pub fn decode(linktype: u32, frame: &[u8]) -> Decoded {
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
        _ => Decoded::UnsupportedLink,
    }
}

fn ethernet(frame: &[u8]) -> Decoded {
    let Some(t) = be16(frame, 12) else {
        return Decoded::Broken("Ethernet header");
    };
    ethertype(t, &frame[14..], 0)
}

/// Follows an EtherType through VLAN tags, PPPoE and MPLS to IP.
fn ethertype(t: u16, rest: &[u8], depth: u8) -> Decoded {
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

/// Decodes an IP packet; `version` when the link layer already says which.
fn ip(b: &[u8], version: Option<u8>) -> Decoded {
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

fn ipv4(b: &[u8]) -> Decoded {
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
    let transport = if later_fragment {
        Transport::Other
    } else {
        match transport(proto, &b[ihl..], payload_len, false) {
            Ok(t) => t,
            Err(layer) => return Decoded::Broken(layer),
        }
    };
    Decoded::Ip(IpPacket {
        src,
        dst,
        proto,
        ip_len: total,
        later_fragment,
        transport,
    })
}

fn ipv6(b: &[u8]) -> Decoded {
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
    let transport = if later_fragment {
        Transport::Other
    } else {
        match transport(next, b.get(at..).unwrap_or(&[]), upper_len, true) {
            Ok(t) => t,
            Err(layer) => return Decoded::Broken(layer),
        }
    };
    Decoded::Ip(IpPacket {
        src,
        dst,
        proto: next,
        ip_len: 40 + payload_len,
        later_fragment,
        transport,
    })
}

/// Decodes the transport header; `len` is the transport segment's length on the wire.
fn transport(proto: u8, b: &[u8], len: u32, v6: bool) -> Result<Transport, &'static str> {
    match proto {
        6 => {
            if b.len() < 20 {
                return Err("TCP header");
            }
            let off = u32::from(b[12] >> 4) * 4;
            if off < 20 {
                return Err("TCP header length");
            }
            Ok(Transport::Tcp {
                sport: u16::from_be_bytes([b[0], b[1]]),
                dport: u16::from_be_bytes([b[2], b[3]]),
                seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                flags: b[13],
                window: u16::from_be_bytes([b[14], b[15]]),
                payload: len.saturating_sub(off),
                payload_captured: b.len() >= len as usize,
            })
        }
        17 => {
            if b.len() < 8 {
                return Err("UDP header");
            }
            let udp_len = u32::from(u16::from_be_bytes([b[4], b[5]]));
            // A zero or short UDP length (jumbograms, broken senders): fall back to IP's.
            let seg = if udp_len >= 8 { udp_len.min(len.max(8)) } else { len };
            Ok(Transport::Udp {
                sport: u16::from_be_bytes([b[0], b[1]]),
                dport: u16::from_be_bytes([b[2], b[3]]),
                payload: seg.saturating_sub(8),
            })
        }
        1 | 58 if (proto == 58) == v6 => {
            if b.len() < 4 {
                return Err("ICMP header");
            }
            Ok(Transport::Icmp {
                v6,
                icmp_type: b[0],
                code: b[1],
                payload: len.saturating_sub(8),
            })
        }
        _ => Ok(Transport::Other),
    }
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

    /// An Ethernet + IPv4 + TCP frame with `payload` zero bytes.
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
        f
    }

    /// An Ethernet + IPv4 + UDP frame with `payload` zero bytes.
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

    /// An Ethernet + IPv4 + ICMP frame.
    pub fn icmp4(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, code: u8, payload: usize) -> Vec<u8> {
        let mut f = ether(0x0800);
        f.extend_from_slice(&ipv4_header(src, dst, 1, (28 + payload) as u16));
        f.extend_from_slice(&[icmp_type, code, 0, 0, 0, 1, 0, 1]);
        f.resize(f.len() + payload, 0);
        f
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
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
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
        assert_eq!(decode(105, ip_part), Decoded::UnsupportedLink);
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
