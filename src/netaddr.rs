//! Local classification of IP addresses (loopback, private, link-local, CGNAT, ...).
//!
//! Pure functions, no I/O. Capture uses them for socket direction; geolocation (later) uses
//! the same rules to decide which addresses must never leave the machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address a remote endpoint is, by the IANA special-purpose registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// 0.0.0.0 / `::`: no address.
    Unspecified,
    /// 127.0.0.0/8, `::1`, and IPv4-mapped loopback.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16) and IPv6 unique-local fc00::/7.
    Private,
    /// 169.254/16 and fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT shared space 100.64.0.0/10 (RFC 6598).
    Cgnat,
    /// 224.0.0.0/4, 255.255.255.255 and ff00::/8.
    Multicast,
    /// Documentation ranges: 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Other special-purpose space: 0/8, 192.0.0/24, 198.18/15 benchmarking, 240/4; in IPv6,
    /// everything outside 2000::/3 (NAT64 64:ff9b::/96 included) and 2001::/23 (Teredo,
    /// benchmarking 2001:2::/48, ORCHID, ...), and 6to4 addresses of a non-public IPv4 address.
    Reserved,
    /// Everything else: routable on the internet.
    Public,
}

impl Scope {
    /// Name stored in the `remote_scope` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Unspecified => "unspecified",
            Scope::Loopback => "loopback",
            Scope::Private => "private",
            Scope::LinkLocal => "link_local",
            Scope::Cgnat => "cgnat",
            Scope::Multicast => "multicast",
            Scope::Documentation => "documentation",
            Scope::Reserved => "reserved",
            Scope::Public => "public",
        }
    }

    /// True for addresses that stay inside a site: loopback, private and link-local.
    pub fn is_local_network(self) -> bool {
        matches!(self, Scope::Loopback | Scope::Private | Scope::LinkLocal)
    }
}

/// Classifies an address. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified as the
/// IPv4 address they carry, because that is what the kernel reports for dual-stack sockets;
/// 6to4 addresses (2002::/16) are public only when the IPv4 address they embed is
/// ([`scope_6to4`]).
pub fn scope(addr: IpAddr) -> Scope {
    match addr {
        IpAddr::V4(v4) => scope_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => scope_v4(v4),
            None => scope_v6(v6),
        },
    }
}

fn scope_v4(a: Ipv4Addr) -> Scope {
    let [o1, o2, o3, _] = a.octets();
    if a.is_unspecified() {
        Scope::Unspecified
    } else if a.is_loopback() {
        Scope::Loopback
    } else if a.is_private() {
        Scope::Private
    } else if a.is_link_local() {
        Scope::LinkLocal
    } else if o1 == 100 && (o2 & 0xC0) == 64 {
        Scope::Cgnat
    } else if a.is_multicast() || a.is_broadcast() {
        Scope::Multicast
    } else if a.is_documentation() {
        Scope::Documentation
    } else if o1 == 0 || o1 >= 240 || (o1 == 192 && o2 == 0 && o3 == 0) || (o1 == 198 && (o2 & 0xFE) == 18) {
        Scope::Reserved
    } else {
        Scope::Public
    }
}

fn scope_v6(a: Ipv6Addr) -> Scope {
    let seg = a.segments();
    if seg[0] == 0x2002 {
        return scope_6to4(Ipv4Addr::from((u32::from(seg[1]) << 16) | u32::from(seg[2])));
    }
    if a.is_unspecified() {
        Scope::Unspecified
    } else if a.is_loopback() {
        Scope::Loopback
    } else if (seg[0] & 0xFE00) == 0xFC00 {
        Scope::Private
    } else if (seg[0] & 0xFFC0) == 0xFE80 {
        Scope::LinkLocal
    } else if a.is_multicast() {
        Scope::Multicast
    } else if (seg[0] == 0x2001 && seg[1] == 0x0DB8) || (seg[0] & 0xFFF0) == 0x3FF0 {
        // 2001:db8::/32 and 3fff::/20 (RFC 9637).
        Scope::Documentation
    } else if seg[0] == 0x2001 && seg[1] < 0x0200 {
        // 2001::/23, the IETF protocol assignments: Teredo (2001::/32, which carries a
        // client's IPv4 address), benchmarking (2001:2::/48), ORCHID, AMT, AS112 and the rest.
        Scope::Reserved
    } else if (seg[0] & 0xE000) != 0x2000 {
        // Outside 2000::/3, the only globally allocated unicast space.
        Scope::Reserved
    } else {
        Scope::Public
    }
}

/// A 6to4 address (2002::/16, RFC 3056) carries an IPv4 address in its second and third
/// groups, and is a valid, routable address only when that address is public (RFC 3056 builds
/// a site's prefix from its global IPv4 address). One that embeds a private, loopback,
/// link-local, CGNAT, multicast, documentation or reserved address cannot be routed and tells
/// anyone who sees it that address of the site: reserved, so it is never sent to a geolocation
/// provider. Not local either, so the SQL rule `flow_addr_is_local` (which knows nothing of
/// 6to4) agrees.
fn scope_6to4(embedded: Ipv4Addr) -> Scope {
    match scope_v4(embedded) {
        Scope::Public => Scope::Public,
        _ => Scope::Reserved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scope {
        scope(text.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges() {
        assert_eq!(s("0.0.0.0"), Scope::Unspecified);
        assert_eq!(s("127.0.0.1"), Scope::Loopback);
        assert_eq!(s("127.255.1.2"), Scope::Loopback);
        assert_eq!(s("10.1.2.3"), Scope::Private);
        assert_eq!(s("172.16.0.1"), Scope::Private);
        assert_eq!(s("172.31.255.255"), Scope::Private);
        assert_eq!(s("172.32.0.1"), Scope::Public);
        assert_eq!(s("192.168.1.25"), Scope::Private);
        assert_eq!(s("169.254.1.1"), Scope::LinkLocal);
        assert_eq!(s("100.64.0.1"), Scope::Cgnat);
        assert_eq!(s("100.127.255.255"), Scope::Cgnat);
        assert_eq!(s("100.128.0.1"), Scope::Public);
        assert_eq!(s("224.0.0.251"), Scope::Multicast);
        assert_eq!(s("255.255.255.255"), Scope::Multicast);
        assert_eq!(s("192.0.2.7"), Scope::Documentation);
        assert_eq!(s("198.51.100.7"), Scope::Documentation);
        assert_eq!(s("203.0.113.7"), Scope::Documentation);
        assert_eq!(s("198.18.0.1"), Scope::Reserved);
        assert_eq!(s("240.0.0.1"), Scope::Reserved);
        assert_eq!(s("8.8.8.8"), Scope::Public);
        assert_eq!(s("81.2.69.160"), Scope::Public);
    }

    #[test]
    fn ipv6_ranges() {
        assert_eq!(s("::"), Scope::Unspecified);
        assert_eq!(s("::1"), Scope::Loopback);
        assert_eq!(s("fd00::1"), Scope::Private);
        assert_eq!(s("fe80::1"), Scope::LinkLocal);
        assert_eq!(s("ff02::fb"), Scope::Multicast);
        assert_eq!(s("2001:db8::1"), Scope::Documentation);
        assert_eq!(s("2001:218::1"), Scope::Public);
        assert_eq!(s("::ffff:127.0.0.1"), Scope::Loopback);
        assert_eq!(s("3fff::1"), Scope::Documentation);
        assert_eq!(s("3fff:fff::1"), Scope::Documentation);
        assert_eq!(s("4000::1"), Scope::Reserved);
        assert_eq!(s("64:ff9b::808:808"), Scope::Reserved, "NAT64 is never sent");
    }

    /// 6to4 addresses embed an IPv4 address, and are public only when it is; Teredo, benchmarking and the other
    /// IETF protocol assignments in 2001::/23 are reserved. None of these may be sent to a
    /// geolocation provider unless what it carries is public.
    #[test]
    fn transition_addresses_are_classified_by_what_they_carry() {
        for embeds_non_public in [
            "2002:a00:1::1",    // 10.0.0.1
            "2002:c0a8:101::1", // 192.168.1.1
            "2002:ac10::1",     // 172.16.0.0
            "2002:7f00:1::",    // 127.0.0.1
            "2002:a9fe:101::1", // 169.254.1.1
            "2002:6440::1",     // 100.64.0.0
            "2002:e000:fb::1",  // 224.0.0.251
            "2002:c000:207::1", // 192.0.2.7
        ] {
            assert_eq!(s(embeds_non_public), Scope::Reserved, "{embeds_non_public}");
        }
        assert_eq!(s("2002::1"), Scope::Reserved, "6to4 of 0.0.0.0");
        assert_eq!(s("2002:f000::1"), Scope::Reserved, "6to4 of 240.0.0.0");
        assert_eq!(s("2002:808:808::1"), Scope::Public, "6to4 of 8.8.8.8");
        assert_eq!(s("2001::1"), Scope::Reserved, "Teredo");
        assert_eq!(s("2001:0:4136:e378:8000:63bf:3fff:fdd2"), Scope::Reserved, "Teredo");
        assert_eq!(s("2001:2::1"), Scope::Reserved, "benchmarking");
        assert_eq!(s("2001:10::1"), Scope::Reserved, "ORCHID");
        assert_eq!(s("2001:1ff::1"), Scope::Reserved);
        assert_eq!(s("2001:200::1"), Scope::Public, "just past 2001::/23");
        assert_eq!(s("2003::1"), Scope::Public);
        assert_eq!(s("::ffff:192.168.0.1"), Scope::Private);
        assert_eq!(s("::ffff:8.8.8.8"), Scope::Public);
    }

    /// The SQL macro `flow_addr_is_local` (imported flows' direction) and this classifier are
    /// one rule: local network or multicast. Checked on the edges of every range and on a
    /// deterministic spread of addresses in both families, written as netlens stores them.
    #[test]
    fn the_sql_rule_agrees_with_the_classifier() {
        use crate::store::{Location, Store};
        let mut addrs: Vec<IpAddr> = [
            "10.0.0.1",
            "11.0.0.1",
            "172.15.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "172.32.0.0",
            "192.168.1.1",
            "192.169.0.1",
            "127.0.0.1",
            "128.0.0.1",
            "169.254.9.9",
            "169.255.0.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "223.255.255.255",
            "255.255.255.255",
            "100.64.0.1",
            "8.8.8.8",
            "0.0.0.0",
            "::",
            "::1",
            "::2",
            "fc00::1",
            "fdff::1",
            "fe00::1",
            "fc::1",
            "fd::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fe8::1",
            "ff02::1",
            "ff::1",
            "ff0::1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:10.1.2.3",
            "::ffff:8.8.8.8",
            "::ffff:224.0.0.251",
            "::ffff:255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:172.20.0.1",
            "2002:a00:1::1",
            "2002:a00::",
            "2002:c0a8:101::1",
            "2002:ac1f:ffff::1",
            "2002:ac20::1",
            "2002:7f00:1::",
            "2002:a9fe:101::1",
            "2002:e000:fb::1",
            "2002:ffff:ffff::1",
            "2002:6440::1",
            "2002::1",
            "2002::a00:1:0:0:0",
            "2002:808:808::1",
            "2001::1",
            "2001:2::1",
            "3fff::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..4000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            addrs.push(IpAddr::V4(Ipv4Addr::from(x as u32)));
            let hi = (x >> 16) as u128;
            addrs.push(IpAddr::V6(Ipv6Addr::from(hi << 64 | u128::from(x))));
            // First groups of every length, the ones a text pattern can misread.
            addrs.push(IpAddr::V6(Ipv6Addr::from((x as u128 & 0xffff) << 112 | 1)));
            // 6to4 addresses embedding any IPv4 address, with zero groups anywhere.
            let embedded = u128::from(x as u32 & [0xffff_ffff, 0xffff_0000, 0x0000_ffff][(x % 3) as usize]);
            let tail = u128::from(x >> 32) & [0, 0xffff, 0xffff_ffff_ffff_ffff][((x >> 8) % 3) as usize];
            addrs.push(IpAddr::V6(Ipv6Addr::from(0x2002u128 << 112 | embedded << 80 | tail)));
        }
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut statement = store.conn().prepare("SELECT flow_addr_is_local(?)").unwrap();
        let disagree: Vec<String> = addrs
            .iter()
            .filter(|a| {
                let sql: bool = statement.query_row([a.to_string()], |r| r.get(0)).unwrap();
                let rust = scope(**a).is_local_network() || scope(**a) == Scope::Multicast;
                sql != rust
            })
            .map(|a| a.to_string())
            .collect();
        assert!(
            disagree.is_empty(),
            "the SQL rule and netaddr::scope disagree on {disagree:?}"
        );
    }
}
