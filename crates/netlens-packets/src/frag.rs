//! IP fragment reassembly as Zeek's `FragReassembler` does it (src/Frag.cc), so that a
//! fragmented datagram is one packet of its flow, as in Zeek's conn.log:
//! - fragments are grouped by source, destination and identification (IPv4's 16-bit ID,
//!   IPv6's 32-bit fragment header ID);
//! - where fragments overlap, the bytes that came first stay (Zeek's reassembler inserts only
//!   what is not yet covered; it raises `fragment_overlap` or `fragment_inconsistency`);
//! - the datagram's size is the end of its last fragment (no "more fragments" flag), raised
//!   when any fragment ends beyond it (Zeek's `fragment_size_inconsistency`); when the bytes
//!   from offset 0 are contiguous up to that size the datagram is whole, and what lies past a
//!   hole above it is not part of it (Zeek analyses "the contiguous portion");
//! - the whole datagram gets the header of the first fragment seen, its length set to the
//!   reassembled size (IPv6: the headers before the fragment header, the fragment header
//!   taken out); it is delivered at the time of the fragment that completed it.
//!
//! Zeek's `frag_timeout` is 0 by default: fragments are held for good. Here they are too, up
//! to a bound that keeps hostile input from filling memory: at most [`MAX_PENDING`] datagrams
//! and [`MAX_HELD_BYTES`] bytes held (headers included), the older half dropped at once; a fragment that would end past
//! 65 535 bytes of datagram is dropped (the length cannot be written in an IP header).
//! Fragments the capture holds only part of are not reassembled (Zeek's
//! `incompletely_captured_fragment`): the caller goes on with the first alone.
//!
//! Pure data structure over byte slices: no I/O, no panics on bad input.

use crate::decode::IpPacket;
use std::collections::HashMap;
use std::net::IpAddr;

/// Datagrams held at most; past it the oldest is dropped.
pub const MAX_PENDING: usize = 16_384;
/// Fragment bytes held at most; past it the older half of the datagrams is dropped.
pub const MAX_HELD_BYTES: usize = 64 << 20;
/// The largest reassembled datagram, header included (IPv4's 16-bit total length).
const MAX_DATAGRAM: u64 = 65_535;

/// What became of one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Held until its datagram is whole.
    Held,
    /// It completed its datagram: the whole IP packet, header first.
    Whole(Vec<u8>),
    /// Not reassembled: the capture cut it, or its headers are malformed or too large. The
    /// caller treats the packet as it would without reassembly (a first fragment alone, a
    /// later one nowhere).
    NotReassembled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
}

/// One datagram being put together.
#[derive(Debug)]
struct Datagram {
    /// The headers of the first fragment seen, fragment fields to be rewritten.
    header: Vec<u8>,
    /// IPv6: where in `header` the next-header byte that named the fragment header lies.
    next_at: Option<usize>,
    /// IPv6: the upper-layer protocol, from the first fragment (offset 0) once seen.
    next_proto: u8,
    data: Vec<u8>,
    /// Byte ranges of `data` filled, sorted and merged.
    covered: Vec<(u64, u64)>,
    /// The datagram's payload size once a last fragment came (0: not known yet).
    size: u64,
    first_ns: i64,
}

/// A fragment's parts, read from its raw bytes.
struct Parts<'a> {
    key: Key,
    header: &'a [u8],
    next_at: Option<usize>,
    next_proto: u8,
    offset: u64,
    more: bool,
    data: &'a [u8],
}

/// The fragments of the datagrams not yet whole.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<Key, Datagram>,
    held_bytes: usize,
}

impl Reassembler {
    /// Datagrams held now (not yet whole).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a fragment (`ip.fragment` is true) seen at `ts_ns`.
    pub fn add(&mut self, ts_ns: i64, ip: &IpPacket) -> Fragment {
        let Some(p) = parts(ip) else {
            return Fragment::NotReassembled;
        };
        let upper = p.offset + p.data.len() as u64;
        // The datagram is built with the header of the fragment that started it: its length,
        // not this fragment's, bounds the whole (a longer one would wrap the length field).
        let header_len = self.pending.get(&p.key).map_or(p.header.len(), |d| d.header.len());
        if upper + header_len as u64 > MAX_DATAGRAM {
            return Fragment::NotReassembled;
        }
        let fresh = !self.pending.contains_key(&p.key);
        let d = self.pending.entry(p.key).or_insert_with(|| Datagram {
            header: p.header.to_vec(),
            next_at: p.next_at,
            next_proto: p.next_proto,
            data: Vec::new(),
            covered: Vec::new(),
            size: 0,
            first_ns: ts_ns,
        });
        if p.offset == 0 {
            d.next_proto = p.next_proto;
        }
        if !p.more && d.size == 0 {
            d.size = upper;
        }
        if d.size != 0 && upper > d.size {
            d.size = upper;
        }
        // The saved header is held too (an IPv6 one can be tens of KiB).
        let before = if fresh { 0 } else { d.held() };
        if d.data.len() < upper as usize {
            d.data.resize(upper as usize, 0);
        }
        // Only what no earlier fragment covered is written: the first bytes stay.
        let mut at = p.offset;
        for &(lo, hi) in &d.covered {
            if hi <= at {
                continue;
            }
            if lo >= upper {
                break;
            }
            if lo > at {
                copy(&mut d.data, p.data, p.offset, at, lo);
            }
            at = at.max(hi);
        }
        if at < upper {
            copy(&mut d.data, p.data, p.offset, at, upper);
        }
        insert_range(&mut d.covered, p.offset, upper);
        self.held_bytes += d.held() - before;

        let whole = match d.covered.first() {
            Some(&(0, hi)) if d.size != 0 && hi >= d.size => Some(hi),
            _ => None,
        };
        if let Some(size) = whole {
            let d = self.pending.remove(&p.key).inspect(|d| self.held_bytes -= d.held());
            return match d {
                Some(d) => Fragment::Whole(d.build(size as usize)),
                None => Fragment::NotReassembled,
            };
        }
        self.limit();
        Fragment::Held
    }

    /// Drops the older half of the datagrams (by first fragment) while more than the bounds are
    /// held: one pass over the table makes room for as many new datagrams as it dropped, so a
    /// flood of fragments of distinct datagrams costs a constant amount per fragment, where
    /// looking for the single oldest each time would cost a pass per fragment.
    fn limit(&mut self) {
        while !self.pending.is_empty() && (self.pending.len() > MAX_PENDING || self.held_bytes > MAX_HELD_BYTES) {
            let mut firsts: Vec<i64> = self.pending.values().map(|d| d.first_ns).collect();
            let middle = firsts.len() / 2;
            let (_, &mut cut, _) = firsts.select_nth_unstable(middle);
            let held = &mut self.held_bytes;
            self.pending.retain(|_, d| {
                let keep = d.first_ns > cut;
                if !keep {
                    *held -= d.held();
                }
                keep
            });
        }
    }
}

impl Datagram {
    /// Bytes this datagram holds: its data so far and the saved header.
    fn held(&self) -> usize {
        self.data.len() + self.header.len()
    }

    /// The whole IP packet: the first fragment's header with the datagram's length and no
    /// fragment fields, and the first `size` bytes of data.
    fn build(mut self, size: usize) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.header);
        let total = out.len() + size;
        match self.next_at {
            None => {
                out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                out[6] = 0;
                out[7] = 0;
                out[10] = 0;
                out[11] = 0;
                let sum = !(fold(ones_sum(&out)) as u16);
                out[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            Some(at) => {
                out[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
                out[at] = self.next_proto;
            }
        }
        out.extend_from_slice(&self.data[..size.min(self.data.len())]);
        out
    }
}

/// Copies the fragment bytes of datagram range `lo..hi` into `data` (the fragment starts at
/// `offset`).
fn copy(data: &mut [u8], frag: &[u8], offset: u64, lo: u64, hi: u64) {
    let (a, b) = ((lo - offset) as usize, (hi - offset) as usize);
    data[lo as usize..hi as usize].copy_from_slice(&frag[a..b]);
}

/// Adds `lo..hi` to sorted, merged ranges.
fn insert_range(ranges: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    if lo >= hi {
        return;
    }
    ranges.push((lo, hi));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(l, h) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if l <= last.1 => last.1 = last.1.max(h),
            _ => merged.push((l, h)),
        }
    }
    *ranges = merged;
}

fn ones_sum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    let mut sum: u64 = (&mut words).map(|w| u64::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u64 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The parts of a wholly captured fragment, or `None` when it is cut or malformed.
fn parts<'a>(ip: &IpPacket<'a>) -> Option<Parts<'a>> {
    let raw = ip.raw;
    match raw.first()? >> 4 {
        4 => {
            let ihl = usize::from(raw[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]));
            if ihl < 20 || total < ihl || raw.len() < total {
                return None;
            }
            let flags = u16::from_be_bytes([raw[6], raw[7]]);
            Some(Parts {
                key: Key {
                    src: ip.src,
                    dst: ip.dst,
                    id: u32::from(u16::from_be_bytes([raw[4], raw[5]])),
                },
                header: &raw[..ihl],
                next_at: None,
                next_proto: raw[9],
                offset: u64::from(flags & 0x1fff) * 8,
                more: flags & 0x2000 != 0,
                data: &raw[ihl..total],
            })
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*raw.get(4)?, *raw.get(5)?]));
            let total = 40 + plen;
            if plen == 0 || raw.len() < total {
                return None;
            }
            // Find the fragment header, remembering which byte named it.
            let (mut next, mut next_at, mut at) = (raw[6], 6usize, 40usize);
            for _ in 0..16 {
                match next {
                    0 | 43 | 60 | 135 | 139 | 140 => {
                        let len = (usize::from(*raw.get(at + 1)?) + 1) * 8;
                        next = raw[at];
                        next_at = at;
                        at += len;
                    }
                    51 => {
                        let len = (usize::from(*raw.get(at + 1)?) + 2) * 4;
                        next = raw[at];
                        next_at = at;
                        at += len;
                    }
                    44 => {
                        let frag = raw.get(at..at + 8)?;
                        if at + 8 > total {
                            return None;
                        }
                        let off = u16::from_be_bytes([frag[2], frag[3]]);
                        return Some(Parts {
                            key: Key {
                                src: ip.src,
                                dst: ip.dst,
                                id: u32::from_be_bytes([frag[4], frag[5], frag[6], frag[7]]),
                            },
                            header: &raw[..at],
                            next_at: Some(next_at),
                            next_proto: frag[0],
                            offset: u64::from(off >> 3) * 8,
                            more: off & 1 != 0,
                            data: &raw[at + 8..total],
                        });
                    }
                    _ => return None,
                }
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{build, decode, Decoded};
    use std::net::Ipv4Addr;

    fn add(r: &mut Reassembler, ts: i64, frame: &[u8]) -> Fragment {
        let Decoded::Ip(ip) = decode(1, frame) else { panic!() };
        assert!(ip.fragment);
        r.add(ts, &ip)
    }

    /// Held fragments are bounded: past `MAX_PENDING` datagrams the older half goes (its later
    /// fragment then starts a datagram of its own), and the newest still completes; a fragment
    /// that would end past 65 535 bytes of datagram is not reassembled.
    #[test]
    fn held_fragments_are_bounded_and_the_oldest_dropped() {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let datagram = build::ipv4(a, b, 17, &build::udp(1, 2, &[7u8; 40]));
        let mut r = Reassembler::default();
        let n = MAX_PENDING as u16 + 10;
        for id in 0..n {
            let frags = build::fragments4(&datagram, id, &[24]);
            assert_eq!(add(&mut r, i64::from(id), &frags[0]), Fragment::Held);
        }
        assert!(r.pending() <= MAX_PENDING, "{} held", r.pending());
        let oldest = build::fragments4(&datagram, 0, &[24]);
        assert_eq!(add(&mut r, i64::from(n), &oldest[1]), Fragment::Held);
        let newest = build::fragments4(&datagram, n - 1, &[24]);
        match add(&mut r, i64::from(n) + 1, &newest[1]) {
            // The datagram as sent, but for the fragments' ID (and so the header checksum).
            Fragment::Whole(p) => {
                assert_eq!(
                    (&p[..4], &p[6..10], &p[12..]),
                    (&datagram[..4], &datagram[6..10], &datagram[12..])
                );
                assert_eq!(u16::from_be_bytes([p[4], p[5]]), n - 1);
                assert_eq!(fold(ones_sum(&p[..20])), 0xffff, "a right header checksum");
            }
            other => panic!("{other:?}"),
        }

        let mut far = build::fragments4(&datagram, 9, &[24]).remove(1);
        // Offset 65 528 (in 8-byte units, 8191): its 24 bytes end past 65 535.
        far[14 + 6..14 + 8].copy_from_slice(&0x1fffu16.to_be_bytes());
        far[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let sum = !(fold(ones_sum(&far[14..34])) as u16);
        far[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(add(&mut r, 0, &far), Fragment::NotReassembled);
    }
}
