//! A seeded, deterministic mutation test of the reader, decoder and flow engine: the stable-Rust
//! counterpart of the cargo-fuzz target (fuzz/fuzz_targets/capture.rs), run by `cargo test` in a
//! few seconds. Valid pcap and pcapng files (TCP, UDP, ICMP, IPv6, VLAN, PBB, VN-Tag, FabricPath,
//! IP-in-IP and Aruba GRE tunnels, 802.11 and A-MSDU behind radiotap, and the first 64 KiB of each shared
//! capture when ../shared/data is there) are damaged the way
//! fuzzers damage input (bits flipped, bytes and lengths set to edge values, ranges cut,
//! repeated or inserted, the file cut short), and every damaged file goes through the same path
//! as `import pcap`. None may panic, and what comes out is bounded by what went in.

use std::net::{Ipv4Addr, Ipv6Addr};

use netlens_packets::decode::{build, MAX_TUNNEL_DEPTH};
use netlens_packets::flow::{FlowRecord, FlowTable, Timeouts};
use netlens_packets::reader::{write, CaptureReader};

/// Damaged inputs tried per seed file.
const CASES: usize = 1500;

/// xorshift64*: a fixed stream, so every run tries the same inputs (a failure names its case).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four of a fuzzer's usual changes.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            2 if len >= 4 => {
                // A length or count field set to an edge value, in either byte order.
                let at = rng.below(len - 3);
                let value: u32 = [0, 1, 0xffff, 0x7fff_ffff, 0xffff_ffff, len as u32, 0x0100_0000][rng.below(7)];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                data[at..at + 4].copy_from_slice(&bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(256)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(len);
                data.splice(to..to, copy);
            }
            5 => {
                let at = rng.below(len + 1);
                let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, junk);
            }
            6 => data.truncate(rng.below(len + 1)),
            _ if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next() as u8;
            }
            _ => {}
        }
    }
    data
}

/// What `import pcap` does with a file, with the fuzz target's checks; returns (packets read,
/// flows finished).
fn run(data: &[u8], verify_checksums: bool) -> (usize, usize) {
    let Ok(mut reader) = CaptureReader::open(data) else {
        return (0, 0);
    };
    let mut table = FlowTable::new(Timeouts::default(), 0);
    table.verify_checksums(verify_checksums);
    let (mut packets, mut flows) = (0usize, 0usize);
    while let Ok(Ok(Some(p))) = reader.next_packet() {
        packets += 1;
        // A record takes at least its 8-byte header beside the file's 24: no more packets than
        // that, and none larger than the file.
        assert!(packets <= data.len() / 8, "{packets} packets from {} bytes", data.len());
        assert!(p.data.len() <= data.len());
        let walked = table.frame(p.number, p.ts_ns, p.orig_len, p.linktype, p.data);
        assert!(walked.depth <= MAX_TUNNEL_DEPTH);
        for f in table.take_finished() {
            assert!(holds_a_packet(&f, verify_checksums), "{f:?}");
            flows += 1;
        }
    }
    table.finish_all();
    let finished = table.take_finished();
    for f in &finished {
        assert!(holds_a_packet(f, verify_checksums), "{f:?}");
    }
    flows += finished.len();
    // Every flow holds a packet (or a packet refused for its checksum), and a packet starts at
    // most one flow per layer it carries. A frame may hold more than one packet (an 802.11
    // A-MSDU), each after a subframe header and LLC/SNAP, with at least IP and UDP headers:
    // 50 bytes of the file.
    assert!(
        flows <= (packets + data.len() / 50) * (MAX_TUNNEL_DEPTH + 1),
        "{flows} flows from {packets} packets"
    );
    (packets, flows)
}

fn frames() -> Vec<Vec<u8>> {
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 9));
    let (syn, synack, ack, fin) = (0x02, 0x12, 0x10, 0x11);
    let mut frames = vec![
        build::tcp4(a, 40000, b, 443, 1, 0, syn, 0),
        build::tcp4(b, 443, a, 40000, 7, 2, synack, 0),
        build::tcp4(a, 40000, b, 443, 2, 8, ack, 100),
        build::tcp4(b, 443, a, 40000, 8, 102, ack, 1400),
        build::tcp4(a, 40000, b, 443, 102, 1408, fin, 0),
        build::udp4(a, 5353, b, 53, 40),
        build::icmp4(a, b, 8, 0, 16),
        build::ethernet(
            0x86dd,
            &build::ipv6(
                Ipv6Addr::LOCALHOST,
                "2001:db8::1".parse().unwrap(),
                17,
                &build::udp(1000, 53, &[1; 12]),
            ),
        ),
        // IPv4 inside IPv4, and a VLAN tag.
        build::ethernet(
            0x0800,
            &build::ipv4(a, b, 4, &build::ipv4(b, a, 17, &build::udp(9, 9, &[0; 4]))),
        ),
    ];
    let mut vlan = vec![0x00, 0x05, 0x08, 0x00];
    vlan.extend_from_slice(&build::ipv4(a, b, 17, &build::udp(7, 7, &[2; 8])));
    frames.push(build::ethernet(0x8100, &vlan));
    // PBB, VN-Tag (with its VLAN tag), FabricPath, and Aruba's GRE with an 802.11 frame.
    let packet = build::ipv4(a, b, 17, &build::udp(8, 8, &[3; 8]));
    let mut pbb = vec![0x60, 0, 0, 1];
    pbb.extend_from_slice(&build::ethernet(0x0800, &packet));
    frames.push(build::ethernet(0x88e7, &pbb));
    let mut vntag = vec![0x80, 1, 0, 2, 0x81, 0x00, 0, 9, 0x08, 0x00];
    vntag.extend_from_slice(&packet);
    frames.push(build::ethernet(0x8926, &vntag));
    let mut fabricpath = vec![0, 0x3f];
    fabricpath.extend_from_slice(&build::ethernet(0x0800, &packet));
    frames.push(build::ethernet(0x8903, &fabricpath));
    let aruba = build::gre(0x8200, &build::ieee802_11(&packet, true, false));
    frames.push(build::ethernet(0x0800, &build::ipv4(a, b, 47, &aruba)));
    frames
}

/// 802.11 frames behind radiotap (link type 127): plain, QoS, four-address data.
fn radiotap_frames() -> Vec<Vec<u8>> {
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 9));
    let packet = build::ipv4(a, b, 17, &build::udp(9, 9, &[4; 8]));
    let tcp = build::tcp4(a, 40000, b, 443, 1, 0, 0x02, 0)[14..].to_vec();
    let other = build::ipv4(b, a, 17, &build::udp(10, 10, &[5; 3]));
    vec![
        build::radiotap(&build::ieee802_11(&packet, false, false)),
        build::radiotap(&build::ieee802_11(&tcp, true, false)),
        build::radiotap(&build::ieee802_11(&packet, true, true)),
        build::radiotap(&build::ieee802_11_amsdu(&[&packet, &other, &tcp])),
    ]
}

/// A pcap file of `frames` on `linktype`, a millisecond apart.
fn pcap_of(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    write::pcap_header(&mut out, linktype, 65535).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        write::pcap_record(
            &mut out,
            1_700_000_000_000_000 + i as i64 * 1000,
            frame.len() as u32,
            frame,
        )
        .unwrap();
    }
    out
}

fn radiotap_seed() -> Vec<u8> {
    pcap_of(127, &radiotap_frames())
}

fn pcap_seed() -> Vec<u8> {
    pcap_of(1, &frames())
}

fn pcapng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

fn pcapng_seed() -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut out = pcapng_block(0x0a0d_0d0a, &shb);
    // An Ethernet interface with nanosecond timestamps (if_tsresol 9).
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&0u32.to_le_bytes());
    idb.extend_from_slice(&9u16.to_le_bytes());
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]);
    out.extend(pcapng_block(1, &idb));
    for (i, frame) in frames().iter().enumerate() {
        let ts = 1_700_000_000_000_000_000u64 + i as u64 * 1_000_000;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        while !epb.len().is_multiple_of(4) {
            epb.push(0);
        }
        out.extend(pcapng_block(6, &epb));
    }
    out
}

/// The start of each shared capture, when the shared data is there (never copied into the
/// repository).
fn shared_seeds() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/pcaps");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let mut bytes = std::fs::read(e.path()).ok()?;
            bytes.truncate(64 * 1024);
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn damaged_captures_never_panic_and_give_bounded_output() {
    let mut seeds = vec![("pcap".to_string(), pcap_seed()), ("pcapng".to_string(), pcapng_seed())];
    // The seeds themselves read whole: the mutations start from files the reader understands.
    for (name, seed) in &seeds {
        assert_eq!(run(seed, true).0, frames().len(), "{name}");
    }
    let radiotap = radiotap_seed();
    // Four frames, three flows: the first, third and fourth frames carry the same datagram,
    // the fourth (an A-MSDU) the second's TCP segment and another datagram too.
    assert_eq!(run(&radiotap, true), (4, 3), "radiotap");
    seeds.push(("radiotap".to_string(), radiotap));
    seeds.extend(shared_seeds());
    let started = std::time::Instant::now();
    let mut read = 0usize;
    for (s, (name, seed)) in seeds.iter().enumerate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (s as u64 + 1));
        for case in 0..CASES {
            let damaged = mutate(seed, &mut rng);
            let outcome = std::panic::catch_unwind(|| run(&damaged, case % 2 == 1));
            match outcome {
                Ok((packets, _)) => read += packets,
                Err(_) => panic!("{name}, case {case}: panicked on {} bytes", damaged.len()),
            }
        }
    }
    // The damage leaves most packets readable: the cases reach the decoder and the flow engine.
    assert!(read > seeds.len() * CASES, "only {read} packets read in all the cases");
    eprintln!("{} damaged captures in {:?}", seeds.len() * CASES, started.elapsed());
}

/// A flow holds a packet, or was made by one its checksum refused: a TCP segment or UDP datagram
/// leaves `C`/`c` in the history, an ICMP message nothing (as Zeek: only a weird).
fn holds_a_packet(f: &FlowRecord, verify_checksums: bool) -> bool {
    f.orig_pkts + f.resp_pkts > 0 || (verify_checksums && (f.history.contains(['C', 'c']) || f.proto == "icmp"))
}
