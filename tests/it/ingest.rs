//! Offline traffic: pcap/pcapng import into flows (checked against tshark when it is
//! installed), the packets table, Zeek conn.log import and export, and bad input.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use netlens_packets::decode::{build, flags};
use netlens_packets::reader::write;
use predicates::prelude::*;

use crate::Scratch;

/// The shared captures, when this checkout has them beside it.
fn shared_pcaps() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pcaps");
    crate::prerequisite(
        dir.join("nmap_tcp_syn_scan.pcap").exists(),
        "../shared/data/pcaps beside this checkout",
    )
    .then_some(dir)
}

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

/// A small capture: one full TCP connection (A:40000 -> B:80), a DNS exchange, a ping.
fn conversation() -> Vec<(i64, Vec<u8>)> {
    let t0 = 1_700_000_000_000_000i64;
    let (s, sa, ack, pa, fa) = (
        flags::SYN,
        flags::SYN | flags::ACK,
        flags::ACK,
        flags::PSH | flags::ACK,
        flags::FIN | flags::ACK,
    );
    vec![
        (t0, build::tcp4(A, 40000, B, 80, 100, 0, s, 0)),
        (t0 + 1000, build::tcp4(B, 80, A, 40000, 500, 101, sa, 0)),
        (t0 + 2000, build::tcp4(A, 40000, B, 80, 101, 501, ack, 0)),
        (t0 + 3000, build::tcp4(A, 40000, B, 80, 101, 501, pa, 100)),
        (t0 + 4000, build::tcp4(B, 80, A, 40000, 501, 201, pa, 1000)),
        (t0 + 5000, build::tcp4(A, 40000, B, 80, 201, 1501, fa, 0)),
        (t0 + 6000, build::tcp4(B, 80, A, 40000, 1501, 202, fa, 0)),
        (t0 + 7000, build::tcp4(A, 40000, B, 80, 202, 1502, ack, 0)),
        (t0 + 10_000, build::udp4(A, 5353, B, 53, 40)),
        (t0 + 11_000, build::udp4(B, 53, A, 5353, 80)),
        (t0 + 20_000, build::icmp4(A, B, 8, 0, 56)),
        (t0 + 21_000, build::icmp4(B, A, 0, 0, 56)),
    ]
}

fn write_pcap(path: &Path, linktype: u32, packets: &[(i64, Vec<u8>)]) {
    let mut v = Vec::new();
    write::pcap_header(&mut v, linktype, 65535).unwrap();
    for (ts, data) in packets {
        write::pcap_record(&mut v, *ts, data.len() as u32, data).unwrap();
    }
    std::fs::write(path, v).unwrap();
}

fn import(s: &Scratch, args: &[&str]) -> assert_cmd::assert::Assert {
    s.cmd().args(["import"]).args(args).assert()
}

#[test]
fn synthetic_capture_becomes_zeek_flows() {
    let s = Scratch::new();
    let cap = s.path("conv.pcap");
    write_pcap(&cap, 1, &conversation());
    import(&s, &["pcap", cap.to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains("12 packets, 3 flows, 0 skipped"));
    assert_eq!(
        s.query(
            "SELECT proto, orig_h, orig_p, resp_h, resp_p, service, conn_state, history, orig_bytes, resp_bytes, \
             orig_pkts, resp_pkts, orig_ip_bytes, resp_ip_bytes FROM flows ORDER BY ts"
        ),
        "tcp,10.1.0.1,40000,10.1.0.2,80,http,SF,ShADdFf,100,1000,5,3,300,1120\n\
         udp,10.1.0.1,5353,10.1.0.2,53,dns,SF,Dd,40,80,1,1,68,108\n\
         icmp,10.1.0.1,8,10.1.0.2,0,,OTH,,56,56,1,1,84,84"
    );
    assert_eq!(
        s.query("SELECT format, packets, flows, skipped, complete, notes IS NULL FROM imports"),
        "pcap,12,3,0,true,true"
    );
    // Re-importing the same file gives the same uids.
    let first = s.query("SELECT string_agg(uid, ' ' ORDER BY uid) FROM flows");
    import(&s, &["pcap", "--quiet", cap.to_str().unwrap()]).success();
    assert_eq!(
        s.query("SELECT count(DISTINCT uid) || ':' || count(*) || ':' || max(import_id) FROM flows"),
        "3:6:2"
    );
    assert_eq!(
        s.query("SELECT string_agg(uid, ' ' ORDER BY uid) FROM flows WHERE import_id = 2"),
        first
    );
}

/// Orientation as Zeek's WantConnection decides it, through the real import: a trace whose
/// flows start mid-way. Expected rows (Zeek conn.log, from TCP.cc/UDP.cc `WantConnection` and
/// `likely_server_ports`; timestamps, uids and service aside):
/// - SYN-ACK B:443 -> A:40000 seen first: flipped, A:40000 -> B:443, OTH, `^h`;
/// - SYN-ACK B:9999 -> A:40001 (not a likely server port): kept, B:9999 -> A:40001, OTH, `H`;
/// - DHCP answer B:67 -> A:68 alone: flipped, A:68 -> B:67, SHR, `^d`;
/// - NTP B:123 -> A:123 then back: both likely, kept, B:123 -> A:123, SF, `Dd`.
#[test]
fn orientation_follows_zeeks_likely_server_ports() {
    let t0 = 1_700_000_000_000_000i64;
    let sa = flags::SYN | flags::ACK;
    let packets = vec![
        (t0, build::tcp4(B, 443, A, 40000, 500, 101, sa, 0)),
        (t0 + 1000, build::tcp4(B, 9999, A, 40001, 700, 301, sa, 0)),
        (t0 + 2000, build::udp4(B, 67, A, 68, 300)),
        (t0 + 3000, build::udp4(B, 123, A, 123, 48)),
        (t0 + 4000, build::udp4(A, 123, B, 123, 48)),
    ];
    let s = Scratch::new();
    let cap = s.path("flip.pcap");
    write_pcap(&cap, 1, &packets);
    import(&s, &["pcap", "--quiet", cap.to_str().unwrap()]).success();
    assert_eq!(
        s.query("SELECT proto, orig_h, orig_p, resp_h, resp_p, conn_state, history, orig_pkts, resp_pkts FROM flows ORDER BY ts"),
        "tcp,10.1.0.1,40000,10.1.0.2,443,OTH,^h,0,1\n\
         tcp,10.1.0.2,9999,10.1.0.1,40001,OTH,H,1,0\n\
         udp,10.1.0.1,68,10.1.0.2,67,SHR,^d,0,1\n\
         udp,10.1.0.2,123,10.1.0.1,123,SF,Dd,1,1"
    );
}

/// Repeated and unanswered attempts on one 5-tuple, through the real import. Expected rows
/// (Zeek conn.log, from TCPSessionAdapter::IsReuse and AttemptTimer with tcp_attempt_delay 5 s;
/// timestamps, uids and service aside), all A:40000 -> B:80:
/// - SYN, RST-ACK; the same SYN again 1 s later, RST-ACK: two rows REJ `Sr`;
/// - 10 s later a SYN with no answer, and 6 s after it a FIN: S0 `S`, then SH `F`.
#[test]
fn repeated_and_unanswered_attempts_are_zeeks_rows() {
    let t0 = 1_700_000_000_000_000i64;
    let (s_, ra, fa) = (flags::SYN, flags::RST | flags::ACK, flags::FIN | flags::ACK);
    let packets = vec![
        (t0, build::tcp4(A, 40000, B, 80, 100, 0, s_, 0)),
        (t0 + 1000, build::tcp4(B, 80, A, 40000, 0, 101, ra, 0)),
        (t0 + 1_000_000, build::tcp4(A, 40000, B, 80, 100, 0, s_, 0)),
        (t0 + 1_001_000, build::tcp4(B, 80, A, 40000, 0, 101, ra, 0)),
        (t0 + 11_000_000, build::tcp4(A, 40000, B, 80, 9000, 0, s_, 0)),
        (t0 + 17_000_000, build::tcp4(A, 40000, B, 80, 9001, 1, fa, 0)),
    ];
    let s = Scratch::new();
    let cap = s.path("attempts.pcap");
    write_pcap(&cap, 1, &packets);
    import(&s, &["pcap", "--quiet", cap.to_str().unwrap()]).success();
    assert_eq!(
        s.query("SELECT orig_p, resp_p, conn_state, history, orig_pkts, resp_pkts FROM flows ORDER BY ts"),
        "40000,80,REJ,Sr,1,1\n40000,80,REJ,Sr,1,1\n40000,80,S0,S,1,0\n40000,80,SH,F,1,0"
    );
}

#[test]
fn packets_table_and_other_table_name() {
    let s = Scratch::new();
    let cap = s.path("conv.pcap");
    write_pcap(&cap, 1, &conversation());
    import(
        &s,
        &["pcap", "--packets", "--table", "lab_flows", cap.to_str().unwrap()],
    )
    .success();
    assert_eq!(s.query("SELECT count(*) FROM flows"), "0");
    assert_eq!(s.query("SELECT count(*) FROM lab_flows"), "3");
    assert_eq!(
        s.query(
            "SELECT count(*), count(DISTINCT flow_uid), sum(frame_len), \
             count(*) FILTER (WHERE tcp_flags = 'SA') FROM packets"
        ),
        "12,3,1932,1"
    );
    // Every packet joins its flow, and the per-direction sums agree with the flow rows.
    assert_eq!(
        s.query(
            "SELECT bool_and(f.orig_pkts = p.o AND f.resp_pkts = p.r AND f.orig_frame_bytes = p.ob) FROM lab_flows f JOIN \
             (SELECT flow_uid, count(*) FILTER (WHERE from_orig) o, count(*) FILTER (WHERE NOT from_orig) r, \
              sum(frame_len) FILTER (WHERE from_orig) ob FROM packets GROUP BY 1) p ON p.flow_uid = f.uid"
        ),
        "true"
    );
    assert!(s
        .query("SELECT comment FROM duckdb_columns() WHERE table_name = 'lab_flows' AND column_name = 'service'")
        .contains("PORT-BASED"));
}

#[test]
fn idle_timeout_option_splits_flows() {
    let s = Scratch::new();
    let cap = s.path("dns.pcap");
    let t0 = 1_700_000_000_000_000i64;
    write_pcap(
        &cap,
        1,
        &[
            (t0, build::udp4(A, 5000, B, 53, 10)),
            (t0 + 30_000_000, build::udp4(A, 5000, B, 53, 10)),
        ],
    );
    import(&s, &["pcap", cap.to_str().unwrap()]).success();
    assert_eq!(s.query("SELECT count(*) FROM flows"), "1");
    import(&s, &["pcap", "--idle-timeout", "10s", cap.to_str().unwrap()]).success();
    assert_eq!(s.query("SELECT count(*) FROM flows WHERE import_id = 2"), "2");
    s.cmd()
        .args(["import", "pcap", "--idle-timeout", "0s", "x.pcap"])
        .assert()
        .code(2);
}

#[test]
fn other_link_types_give_the_same_flows() {
    let s = Scratch::new();
    let frames = conversation();
    let strip = |n: usize, prefix: &[u8]| -> Vec<(i64, Vec<u8>)> {
        frames
            .iter()
            .map(|(t, f)| {
                let mut v = prefix.to_vec();
                v.extend_from_slice(&f[n..]);
                (*t, v)
            })
            .collect()
    };
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x08, 0x00]);
    let mut sll2 = vec![0x08, 0x00];
    sll2.extend_from_slice(&[0u8; 18]);
    let mut vlan = frames[0].1[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0, 7, 0x08, 0x00]);
    for (name, linktype, packets) in [
        ("raw.pcap", 101, strip(14, &[])),
        ("null.pcap", 0, strip(14, &[2, 0, 0, 0])),
        ("sll.pcap", 113, strip(14, &sll)),
        ("sll2.pcap", 276, strip(14, &sll2)),
        ("vlan.pcap", 1, strip(14, &vlan)),
    ] {
        write_pcap(&s.path(name), linktype, &packets);
        import(&s, &["pcap", s.path(name).to_str().unwrap()]).success();
    }
    // Five imports, identical flows apart from frame sizes.
    assert_eq!(
        s.query(
            "SELECT count(DISTINCT (proto, orig_h, orig_p, resp_h, resp_p, conn_state, history, orig_bytes, resp_bytes, \
             orig_ip_bytes, resp_ip_bytes, uid)), count(*) FROM flows"
        ),
        "3,15"
    );
}

#[test]
fn bad_capture_input_is_refused_or_kept_up_to_the_damage() {
    let s = Scratch::new();
    // Empty file, and a file that is not a capture: refused, nothing stored.
    std::fs::write(s.path("empty.pcap"), b"").unwrap();
    import(&s, &["pcap", s.path("empty.pcap").to_str().unwrap()])
        .code(1)
        .stderr(predicate::str::contains("is not a capture file: the file is empty"));
    std::fs::write(s.path("notes.txt"), b"shopping list: eggs, milk\n").unwrap();
    import(&s, &["pcap", s.path("notes.txt").to_str().unwrap()])
        .code(1)
        .stderr(predicate::str::contains("not a capture file: it looks like text"));
    assert_eq!(s.query("SELECT count(*) FROM imports"), "0");

    // Garbage after a valid header: reported with its offset, import recorded as incomplete.
    let mut garbage = Vec::new();
    write::pcap_header(&mut garbage, 1, 65535).unwrap();
    garbage.extend_from_slice(&[0xee; 100]);
    std::fs::write(s.path("garbage.pcap"), &garbage).unwrap();
    import(&s, &["pcap", s.path("garbage.pcap").to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains("byte offset 24"));

    // Truncated last packet: every complete packet before it is kept.
    let cap = s.path("cut.pcap");
    write_pcap(&cap, 1, &conversation());
    let bytes = std::fs::read(&cap).unwrap();
    std::fs::write(&cap, &bytes[..bytes.len() - 30]).unwrap();
    import(&s, &["pcap", cap.to_str().unwrap()]).success().stderr(
        predicate::str::contains("the last packet (number 12) is cut short")
            .and(predicate::str::contains("11 complete packets")),
    );
    assert_eq!(
        s.query("SELECT path LIKE '%cut.pcap', packets, flows, complete, notes LIKE '%byte offset%' FROM imports WHERE import_id = 2"),
        "true,11,3,false,true"
    );

    // Zero-length packets and an unsupported link type are counted and explained.
    let mut frames = conversation();
    frames.insert(3, (frames[2].0, Vec::new()));
    write_pcap(&s.path("zero.pcap"), 1, &frames);
    import(&s, &["pcap", s.path("zero.pcap").to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains(
            "1 packets were too short or malformed to decode (1 of them zero-length)",
        ));
    write_pcap(&s.path("ppi.pcap"), 192, &conversation());
    import(&s, &["pcap", s.path("ppi.pcap").to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains(
            "12 packets on unsupported link type 192 (PPI) were skipped",
        ));
    assert_eq!(
        s.query("SELECT flows, skipped FROM imports WHERE import_id IN (3, 4) ORDER BY import_id"),
        "3,1\n0,12"
    );
}

#[test]
fn snap_length_truncated_packets_count_their_wire_size() {
    let s = Scratch::new();
    let full = conversation();
    write_pcap(&s.path("full.pcap"), 1, &full);
    // The same packets cut to 54 bytes (headers only), with their original lengths.
    let mut v = Vec::new();
    write::pcap_header(&mut v, 1, 54).unwrap();
    for (ts, data) in &full {
        write::pcap_record(&mut v, *ts, data.len() as u32, &data[..data.len().min(54)]).unwrap();
    }
    std::fs::write(s.path("snap.pcap"), v).unwrap();
    import(
        &s,
        &[
            "pcap",
            s.path("full.pcap").to_str().unwrap(),
            s.path("snap.pcap").to_str().unwrap(),
        ],
    )
    .success();
    let cols = "uid, orig_bytes, resp_bytes, orig_ip_bytes, resp_ip_bytes, orig_frame_bytes, resp_frame_bytes";
    assert_eq!(
        s.query(&format!(
            "SELECT count(*) FROM (SELECT {cols} FROM flows WHERE import_id = 1 EXCEPT SELECT {cols} FROM flows WHERE import_id = 2)"
        )),
        "0"
    );
    // As in Zeek, payloads cut by the snap length never reach the reassembler: each side's
    // data, once acknowledged, is a content gap (G, g) and counts in missed_bytes.
    assert_eq!(
        s.query("SELECT import_id, history, missed_bytes FROM flows WHERE proto = 'tcp' ORDER BY import_id"),
        "1,ShADdFf,0\n2,ShADdGFgf,1100"
    );
}

/// Importing a capture again doubled its flows without a word.
#[test]
fn the_same_capture_imported_again_is_said() {
    let s = Scratch::new();
    let first = s.path("a.pcap");
    write_pcap(&first, 1, &conversation());
    let copy = s.path("copy of a.pcap");
    std::fs::copy(&first, &copy).unwrap();
    let import_pcap = |path: &Path| import(&s, &["pcap", path.to_str().unwrap()]).success();
    let not_said = || predicate::str::contains("the same capture").not();
    import_pcap(&first).stderr(not_said());
    import_pcap(&copy).stderr(predicate::str::contains(
        "the same capture as import 1 (same format, size, packets and times): its flows are now in flows twice; \
         `DELETE FROM flows WHERE import_id = 2` takes this copy out",
    ));
    assert_eq!(s.query("SELECT count(DISTINCT import_id) FROM flows"), "2");
    // Once its flows are deleted, an earlier import doubles nothing.
    s.query("DELETE FROM flows");
    import_pcap(&first).stderr(not_said());
    // Another capture is not taken for it.
    let other = s.path("b.pcap");
    write_pcap(&other, 1, &conversation()[..8]);
    import_pcap(&other).stderr(not_said());
}

#[test]
fn pcapng_corrupt_block_keeps_packets_before_it() {
    let Some(dir) = shared_pcaps() else {
        return;
    };
    let s = Scratch::new();
    let bytes = std::fs::read(dir.join("malware_ratinfected.pcapng")).unwrap();
    // Walk the (little-endian) blocks to the middle of the file, counting packet blocks, and
    // break the length word of the block found there.
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (mut at, mut packets) = (0usize, 0u64);
    while at < bytes.len() / 2 {
        if word(at) == 6 {
            packets += 1;
        }
        at += word(at + 4);
    }
    let mut bad = bytes.clone();
    bad[at + 4..at + 8].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    std::fs::write(s.path("bad.pcapng"), &bad).unwrap();
    import(&s, &["pcap", s.path("bad.pcapng").to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains(format!(
            "reading stopped at byte offset {at}: block of type 0x00000006 has an impossible length"
        )));
    assert_eq!(
        s.query("SELECT packets, complete FROM imports"),
        format!("{packets},false")
    );
    assert!(packets > 100 && packets < 779, "{packets}");
}

#[test]
fn shell_dot_import() {
    let s = Scratch::new();
    let cap = s.path("conv.pcap");
    write_pcap(&cap, 1, &conversation());
    s.cmd()
        .write_stdin(format!(
            ".import pcap --quiet {}\nSELECT count(*) FROM flows;\n",
            cap.display()
        ))
        .assert()
        .success()
        .stdout(predicate::str::contains("3"));
}

#[test]
fn zeek_tsv_and_json_import_and_export_round_trip() {
    let s = Scratch::new();
    let cap = s.path("conv.pcap");
    write_pcap(&cap, 1, &conversation());
    import(&s, &["pcap", cap.to_str().unwrap()]).success();
    let log = s.path("conn.log");
    s.cmd()
        .args(["export", "--table", "flows", "--out"])
        .arg(&log)
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("#separator \\x09\n#set_separator\t,\n"), "{text}");
    assert!(text.contains("#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration"));
    assert!(text.lines().any(|l| l.starts_with("1700000000.000000\tC")), "{text}");
    import(&s, &["zeek", log.to_str().unwrap()]).success();
    let cols = "ts, uid, orig_h, orig_p, resp_h, resp_p, proto, service, round(duration, 6), orig_bytes, resp_bytes, conn_state, history, \
                orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, ip_proto";
    assert_eq!(
        s.query(&format!(
            "SELECT (SELECT count(*) FROM (SELECT {cols} FROM flows WHERE import_id = 1 EXCEPT SELECT {cols} FROM flows WHERE import_id = 2)) \
             || ':' || (SELECT count(*) FROM flows WHERE import_id = 2)"
        )),
        "0:3"
    );

    // Reordered fields, unset and empty values, an unreadable line, and JSON.
    let tsv =
        "#separator \\x09\n#fields\tproto\tid.resp_p\tid.resp_h\tid.orig_p\tid.orig_h\tts\tuid\tservice\thistory\n\
               tcp\t443\t192.0.2.9\t5000\t192.0.2.1\t1300000000.5\tCabc\t-\t(empty)\n\
               tcp\tnot-a-port\t192.0.2.9\t5000\t192.0.2.1\t1300000000.5\tCdef\t-\t-\n";
    std::fs::write(s.path("odd.log"), tsv).unwrap();
    import(&s, &["zeek", s.path("odd.log").to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains("line 4: 'not-a-port' is not a port"));
    assert_eq!(
        s.query("SELECT uid, resp_p, service IS NULL, history = '', epoch_us(ts) FROM flows WHERE import_id = 3"),
        "Cabc,443,true,true,1300000000500000"
    );
    std::fs::write(
        s.path("conn.json"),
        r#"{"ts":1300000000.25,"uid":"Cj","id.orig_h":"2001:db8::1","id.orig_p":1,"id.resp_h":"2001:db8::2","id.resp_p":128,"proto":"icmp","orig_pkts":2}
"#,
    )
    .unwrap();
    import(&s, &["zeek", s.path("conn.json").to_str().unwrap()]).success();
    assert_eq!(
        s.query("SELECT format, flows FROM imports WHERE import_id = 4"),
        "zeek-json,1"
    );
    assert_eq!(
        s.query("SELECT ip_proto, orig_pkts FROM flows WHERE uid = 'Cj'"),
        "58,2"
    );

    // A log without the fields a flow needs is refused by name.
    std::fs::write(
        s.path("dns.log"),
        "#separator \\x09\n#fields\tts\tuid\tquery\n1.0\tCx\texample.com\n",
    )
    .unwrap();
    import(&s, &["zeek", s.path("dns.log").to_str().unwrap()])
        .code(1)
        .stderr(predicate::str::contains(
            "has no id.orig_h, id.orig_p, id.resp_h, id.resp_p, proto field",
        ));
    import(&s, &["zeek", cap.to_str().unwrap()])
        .code(1)
        .stderr(predicate::str::contains("#fields"));
}

#[test]
fn golden_facts_of_the_shared_captures() {
    let Some(dir) = shared_pcaps() else {
        return;
    };
    let s = Scratch::new();
    import(
        &s,
        &[
            "pcap",
            dir.join("nmap_tcp_syn_scan.pcap").to_str().unwrap(),
            dir.join("malware_ratinfected.pcapng").to_str().unwrap(),
        ],
    )
    .success();
    // ~1000 SYN probes from the scanner, nearly all rejected or unanswered.
    let row = s.query(
        "SELECT count(*), count(DISTINCT resp_p), count(*) FILTER (WHERE conn_state IN ('REJ', 'S0', 'RSTO')) FROM flows \
         WHERE orig_h = '192.168.1.10' AND resp_h = '192.168.1.25' AND proto = 'tcp'",
    );
    let n: Vec<u64> = row.split(',').map(|x| x.parse().unwrap()).collect();
    assert!(n[0] >= 990 && n[0] <= 1010 && n[1] >= 990 && n[2] == n[0], "{row}");
    // The RAT's sessions: 172.16.0.114 -> 172.16.0.111:4433.
    assert_eq!(
        s.query(
            "SELECT count(*), min(orig_h), min(resp_h), min(resp_p) FROM flows f JOIN imports i USING (import_id) \
             WHERE i.path LIKE '%malware%'"
        ),
        "8,172.16.0.114,172.16.0.111,4433"
    );
}

/// Wireshark's format_size with SI units, as tshark prints conversation bytes.
fn tshark_size(n: u64) -> String {
    if n / 1000 / 1000 / 1000 >= 10 {
        format!("{} GB", n / 1_000_000_000)
    } else if n / 1000 / 1000 >= 10 {
        format!("{} MB", n / 1_000_000)
    } else if n / 1000 >= 10 {
        format!("{} kB", n / 1000)
    } else {
        format!("{n} bytes")
    }
}

type Endpoint = (String, u16);
/// Frames and bytes from the lower endpoint, from the higher, and how many flows were summed.
type Sums = (u64, u64, u64, u64, usize);
/// Per unordered endpoint pair: per direction (from the lower endpoint, from the higher),
/// frames and bytes (tshark: its printed byte text).
type Conversations = BTreeMap<(Endpoint, Endpoint), (u64, String, u64, String, usize)>;

fn split_endpoint(s: &str) -> Endpoint {
    let (h, p) = s.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

fn tshark_conversations(file: &Path, proto: &str) -> Conversations {
    let out = Process::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-q", "-z", &format!("conv,{proto}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut convs = Conversations::new();
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("<->"))
    {
        let t: Vec<&str> = line.split_whitespace().collect();
        let (a, b) = (split_endpoint(t[0]), split_endpoint(t[2]));
        // Columns: <- frames, bytes, unit (B to A); -> frames, bytes, unit (A to B).
        let (ba_frames, ba_bytes) = (t[3].parse::<u64>().unwrap(), format!("{} {}", t[4], t[5]));
        let (ab_frames, ab_bytes) = (t[6].parse::<u64>().unwrap(), format!("{} {}", t[7], t[8]));
        let entry = if a <= b {
            (a, b, ab_frames, ab_bytes, ba_frames, ba_bytes)
        } else {
            (b, a, ba_frames, ba_bytes, ab_frames, ab_bytes)
        };
        let slot = convs
            .entry((entry.0, entry.1))
            .or_insert((0, String::new(), 0, String::new(), 0));
        *slot = (slot.0 + entry.2, entry.3, slot.2 + entry.4, entry.5, slot.4 + 1);
    }
    convs
}

#[test]
fn flows_agree_with_tshark_conversations() {
    let Some(dir) = shared_pcaps() else {
        return;
    };
    let tshark = Process::new("tshark").arg("--version").output().is_ok();
    if !crate::prerequisite(tshark, "tshark (Debian: apt-get install tshark; .ci/run installs it)") {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for file in files {
        let s = Scratch::new();
        import(&s, &["pcap", "--quiet", file.to_str().unwrap()]).success();
        for proto in ["tcp", "udp"] {
            let want = tshark_conversations(&file, proto);
            let rows = s.query(&format!(
                "SELECT orig_h, orig_p, resp_h, resp_p, orig_pkts, orig_frame_bytes, resp_pkts, resp_frame_bytes FROM flows WHERE proto = '{proto}'"
            ));
            // Sum flows of one endpoint pair (a pair split by an idle timeout or port reuse
            // is one tshark conversation per stream; the sums must agree either way).
            let mut got: BTreeMap<(Endpoint, Endpoint), Sums> = BTreeMap::new();
            for line in rows.lines().filter(|l| !l.is_empty()) {
                let f: Vec<&str> = line.split(',').collect();
                let o = (f[0].to_string(), f[1].parse::<u16>().unwrap());
                let r = (f[2].to_string(), f[3].parse::<u16>().unwrap());
                let n: Vec<u64> = f[4..8].iter().map(|x| x.parse().unwrap()).collect();
                let (key, v) = if o <= r {
                    ((o, r), (n[0], n[1], n[2], n[3]))
                } else {
                    ((r, o), (n[2], n[3], n[0], n[1]))
                };
                let slot = got.entry(key).or_insert((0, 0, 0, 0, 0));
                *slot = (slot.0 + v.0, slot.1 + v.1, slot.2 + v.2, slot.3 + v.3, slot.4 + 1);
            }
            let want_keys: Vec<_> = want.keys().collect();
            let got_keys: Vec<_> = got.keys().collect();
            assert_eq!(want_keys, got_keys, "{}: {proto} conversations differ", file.display());
            for (key, (af, ab, bf, bb, n)) in &want {
                let g = &got[key];
                assert_eq!((g.0, g.2), (*af, *bf), "{}: {proto} {key:?} frames", file.display());
                if *n == 1 {
                    // tshark prints one conversation's bytes rounded to kB above 10 000: compare as printed.
                    assert_eq!(
                        (tshark_size(g.1), tshark_size(g.3)),
                        (ab.clone(), bb.clone()),
                        "{}: {proto} {key:?} bytes",
                        file.display()
                    );
                }
                if g.4 != *n {
                    eprintln!(
                        "{}: {proto} {key:?}: {} flows for {n} tshark conversations",
                        file.display(),
                        g.4
                    );
                }
            }
        }
    }
}

/// One TCP handshake (SYN, SYN-ACK, ACK) 10.9.0.1:`port` <-> 10.9.0.2:80 inside each tunnel
/// Zeek decapsulates, with the tunnel's own headers around each packet: (tunnel name, frames).
fn tunneled_handshakes() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let (c, srv) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
    let (e1, e2) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let handshake = |port: u16| -> Vec<(bool, Vec<u8>)> {
        vec![
            (
                true,
                build::tcp4(c, port, srv, 80, 100, 0, flags::SYN, 0)[14..].to_vec(),
            ),
            (
                false,
                build::tcp4(srv, 80, c, port, 500, 101, flags::SYN | flags::ACK, 0)[14..].to_vec(),
            ),
            (
                true,
                build::tcp4(c, port, srv, 80, 101, 501, flags::ACK, 0)[14..].to_vec(),
            ),
        ]
    };
    // Each tunnel endpoint sends from its own port to the tunnel's port.
    let over_udp = |port: u16, header: &dyn Fn(&[u8]) -> Vec<u8>, inner_port: u16| -> Vec<Vec<u8>> {
        handshake(inner_port)
            .into_iter()
            .map(|(up, ip)| {
                let (src, dst, sport) = if up { (e1, e2, 50000) } else { (e2, e1, 50001) };
                let udp = build::udp(sport, port, &header(&ip));
                build::ethernet(0x0800, &build::ipv4(src, dst, 17, &udp))
            })
            .collect()
    };
    let over_ip = |proto: u16, header: &dyn Fn(&[u8]) -> Vec<u8>, inner_port: u16| -> Vec<Vec<u8>> {
        handshake(inner_port)
            .into_iter()
            .map(|(up, ip)| {
                let (src, dst) = if up { (e1, e2) } else { (e2, e1) };
                build::ethernet(0x0800, &build::ipv4(src, dst, proto as u8, &header(&ip)))
            })
            .collect()
    };
    let with = |head: &[u8], ip: &[u8]| [head, ip].concat();
    let eth = |ip: &[u8]| build::ethernet(0x0800, ip);
    vec![
        (
            "VXLAN",
            over_udp(4789, &|ip| with(&[8, 0, 0, 0, 0, 0, 1, 0], &eth(ip)), 41001),
        ),
        (
            "GENEVE",
            over_udp(6081, &|ip| with(&[0, 0, 0x65, 0x58, 0, 0, 1, 0], &eth(ip)), 41002),
        ),
        (
            "GTPv1",
            over_udp(
                2152,
                &|ip| {
                    with(
                        &[[0x30, 0xff], (ip.len() as u16).to_be_bytes(), [0, 0], [0, 1]].concat(),
                        ip,
                    )
                },
                41003,
            ),
        ),
        (
            "AYIYA",
            over_udp(5072, &|ip| with(&[0x00, 0x00, 0x01, 4, 0, 0, 0, 0, 0xaa], ip), 41004),
        ),
        ("GRE", over_ip(47, &|ip| with(&[0, 0, 0x08, 0x00], ip), 41005)),
        ("IP", over_ip(4, &|ip| ip.to_vec(), 41006)),
    ]
}

/// Tunnels as Zeek decapsulates them, through the real import: each inner handshake is a flow
/// of its own (Zeek's conn.log row: S1 `ShA`), whose tunnel_parents names the UDP flow that
/// carried it (the UDP tunnels, whose flows stay rows) or the IP tunnel (IP in IP, GRE); the
/// Zeek export writes the set. tshark, which decodes the same tunnels, sees the same inner
/// conversations with the same frames and bytes.
#[test]
fn tunneled_connections_are_flows_with_tunnel_parents() {
    let s = Scratch::new();
    let cap = s.path("tunnels.pcap");
    let t0 = 1_700_000_000_000_000i64;
    let mut packets = Vec::new();
    for (_, frames) in tunneled_handshakes() {
        for f in frames {
            packets.push((t0 + packets.len() as i64 * 1000, f));
        }
    }
    write_pcap(&cap, 1, &packets);
    import(&s, &["pcap", cap.to_str().unwrap()])
        .success()
        .stderr(predicate::str::contains("18 packets, 14 flows, 0 skipped"));
    // Inner rows, and their parent: a UDP flow (to the tunnel's port) or none (an IP tunnel).
    assert_eq!(
        s.query(
            "SELECT i.orig_p, i.conn_state, i.history, i.orig_pkts, i.resp_pkts, len(i.tunnel_parents), \
             (SELECT coalesce(string_agg(DISTINCT o.proto || '/' || o.resp_p, ' '), 'ip tunnel') \
              FROM flows o WHERE list_contains(i.tunnel_parents, o.uid)) \
             FROM flows i WHERE i.proto = 'tcp' ORDER BY i.orig_p"
        ),
        "41001,S1,ShA,2,1,2,udp/4789\n\
         41002,S1,ShA,2,1,2,udp/6081\n\
         41003,S1,ShA,2,1,2,udp/2152\n\
         41004,S1,ShA,2,1,2,udp/5072\n\
         41005,S1,ShA,2,1,1,ip tunnel\n\
         41006,S1,ShA,2,1,1,ip tunnel"
    );
    assert_eq!(
        s.query("SELECT count(*) FILTER (tunnel_parents IS NULL), count(*) FROM flows WHERE proto = 'udp'"),
        "8,8"
    );
    // Zeek's tunnel.log (base/frameworks/tunnels/main.zeek): each UDP tunnel flow is
    // DISCOVERed when the inner connection starts or first comes through it, and CLOSEd when it
    // ends (at the end of the capture: the last packet's time, 17 ms); GRE and IP in IP share
    // the address pair's tunnel, discovered once (as GRE, the first) and never closed.
    assert_eq!(
        s.query(&format!(
            "SELECT (epoch_us(ts) - {t0}) // 1000, orig_p, resp_p, tunnel_type, action FROM tunnels \
             ORDER BY ts, resp_p, orig_p"
        )),
        "0,50000,4789,Tunnel::VXLAN,Tunnel::DISCOVER\n\
         1,50001,4789,Tunnel::VXLAN,Tunnel::DISCOVER\n\
         3,50000,6081,Tunnel::GENEVE,Tunnel::DISCOVER\n\
         4,50001,6081,Tunnel::GENEVE,Tunnel::DISCOVER\n\
         6,50000,2152,Tunnel::GTPv1,Tunnel::DISCOVER\n\
         7,50001,2152,Tunnel::GTPv1,Tunnel::DISCOVER\n\
         9,50000,5072,Tunnel::AYIYA,Tunnel::DISCOVER\n\
         10,50001,5072,Tunnel::AYIYA,Tunnel::DISCOVER\n\
         12,0,0,Tunnel::GRE,Tunnel::DISCOVER\n\
         17,50000,2152,Tunnel::GTPv1,Tunnel::CLOSE\n\
         17,50001,2152,Tunnel::GTPv1,Tunnel::CLOSE\n\
         17,50000,4789,Tunnel::VXLAN,Tunnel::CLOSE\n\
         17,50001,4789,Tunnel::VXLAN,Tunnel::CLOSE\n\
         17,50000,5072,Tunnel::AYIYA,Tunnel::CLOSE\n\
         17,50001,5072,Tunnel::AYIYA,Tunnel::CLOSE\n\
         17,50000,6081,Tunnel::GENEVE,Tunnel::CLOSE\n\
         17,50001,6081,Tunnel::GENEVE,Tunnel::CLOSE"
    );
    // Each line names its tunnel as the inner flows' tunnel_parents do: the UDP flow's uid, or
    // the IP tunnel's.
    assert_eq!(
        s.query(
            "SELECT count(*) FROM tunnels t WHERE EXISTS (SELECT 1 FROM flows i WHERE list_contains(i.tunnel_parents, t.uid)) \
             AND (t.orig_p = 0 OR EXISTS (SELECT 1 FROM flows o WHERE o.uid = t.uid AND o.orig_p = t.orig_p AND o.resp_h = t.resp_h))"
        ),
        "17"
    );
    assert!(s
        .query("SELECT notes FROM imports")
        .contains("frames carried packets in VXLAN tunnels"));
    // The Zeek export writes the set with Zeek's set separator.
    let log = s.path("conn.log");
    s.cmd()
        .args(["export", "--table", "flows", "--out"])
        .arg(&log)
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    let vxlan_parents =
        s.query("SELECT array_to_string(list_sort(tunnel_parents), ' ') FROM flows WHERE orig_p = 41001");
    let logged: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\t41001\t"))
        .map(|l| l.rsplit('\t').next().unwrap())
        .collect();
    let mut sorted: Vec<String> = logged[0].split(',').map(str::to_string).collect();
    sorted.sort();
    assert_eq!(sorted.join(" "), vxlan_parents, "{text}");
    assert!(
        text.lines()
            .filter(|l| l.contains("\tudp\t"))
            .all(|l| l.ends_with("\t-")),
        "{text}"
    );

    let tshark = Process::new("tshark").arg("--version").output().is_ok();
    if !crate::prerequisite(tshark, "tshark (Debian: apt-get install tshark; .ci/run installs it)") {
        return;
    }
    let want = tshark_conversations(&cap, "tcp");
    let rows = s.query(
        "SELECT orig_p, sum(orig_pkts), sum(orig_frame_bytes), sum(resp_pkts), sum(resp_frame_bytes) \
         FROM flows WHERE proto = 'tcp' GROUP BY ALL ORDER BY orig_p",
    );
    let got: Vec<String> = rows
        .lines()
        .map(|l| {
            let n: Vec<u64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            format!("{},{},{},{},{}", n[0], n[1], tshark_size(n[2]), n[3], tshark_size(n[4]))
        })
        .collect();
    // The key's first endpoint is the lower one: the client, 10.9.0.1.
    let from_tshark: Vec<String> = want
        .iter()
        .map(|(((_, port), _), (af, ab, bf, bb, _))| format!("{port},{af},{ab},{bf},{bb}"))
        .collect();
    assert_eq!(got, from_tshark, "inner TCP conversations: netlens vs tshark");
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is NUL-terminated and `st` is a properly sized out-parameter.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return 0;
        }
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

#[test]
fn a_2_gib_capture_imports_in_a_fraction_of_its_size() {
    // Issue 4's "2 GB file on a small-memory budget": the import streams, so a capture four
    // times larger than the memory it may use imports completely. The file goes to cargo's
    // on-disk scratch directory (not /tmp, which may be RAM).
    const FILE_BYTES: u64 = (2 << 30) + (1 << 20);
    const BUDGET_KIB: i64 = 512 << 10;
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if free_bytes(scratch.path()) < FILE_BYTES + (1 << 30) {
        eprintln!(
            "skipped: less than 3 GiB free in {} for a 2 GiB capture",
            scratch.path().display()
        );
        return;
    }
    let s = Scratch::new();
    // UDP flows of 5 000 packets each, one after another (so they time out and are written
    // while the file streams), 1 ms apart.
    let cap = scratch.path().join("big.pcap");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&cap).unwrap());
    write::pcap_header(&mut out, 1, 65535).unwrap();
    let (mut written, mut packets, mut frame) = (24u64, 0u64, Vec::new());
    while written < FILE_BYTES {
        let flow = packets / 5000;
        if packets % 5000 == 0 {
            frame = build::udp4(A, 10_000 + (flow % 50_000) as u16, B, 53, 1400);
        }
        let ts = 1_700_000_000_000_000 + packets as i64 * 1000;
        write::pcap_record(&mut out, ts, frame.len() as u32, &frame).unwrap();
        written += 16 + frame.len() as u64;
        packets += 1;
    }
    std::io::Write::flush(&mut out).unwrap();
    drop(out);

    // DuckDB's own cache is capped; what is measured is the process's peak resident memory.
    // The child is reaped by wait4 below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Process::new(assert_cmd::cargo::cargo_bin("netlens"))
        .env("NETLENS_DB", s.db())
        .env("XDG_DATA_HOME", s.path("xdg"))
        .args(["-c", "SET memory_limit = '256MB'", "-c"])
        .arg(format!(".import pcap --quiet {}", cap.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(s.path("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child; `status` and `usage` are valid out-parameters.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    std::fs::remove_file(&cap).unwrap();
    assert_eq!(waited, child.id() as libc::pid_t);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "import of a 2 GiB capture failed (status {status}): {}",
        std::fs::read_to_string(s.path("stderr.txt")).unwrap_or_default()
    );
    assert!(
        usage.ru_maxrss < BUDGET_KIB,
        "peak RSS {} KiB for a 2 GiB capture, more than {BUDGET_KIB} KiB",
        usage.ru_maxrss
    );
    assert_eq!(
        s.query("SELECT count(*), sum(orig_pkts), count(DISTINCT orig_p) FROM flows"),
        format!("{},{packets},{}", packets.div_ceil(5000), packets.div_ceil(5000)),
    );
    assert_eq!(s.query("SELECT packets FROM imports"), packets.to_string());
}

/// The command line starts reading the first capture while the database opens; a database it
/// may not write to still refuses the import, stores nothing, and the run ends at once.
#[test]
fn a_read_only_database_refuses_an_import_read_ahead() {
    let s = Scratch::new();
    let cap = s.path("c.pcap");
    write_pcap(&cap, 1, &conversation());
    assert_eq!(s.query("SELECT count(*) FROM flows"), "0");
    s.cmd()
        .args(["--read-only", "import", "pcap"])
        .arg(&cap)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("read-only"));
    assert_eq!(s.query("SELECT count(*) FROM flows"), "0");
    import(&s, &["pcap", "--quiet", cap.to_str().unwrap()]).success();
    assert_eq!(s.query("SELECT count(*) FROM flows"), "3");
}

/// Sequence-space holes in each TCP direction's data as tshark's dissector reports the
/// segments (tcp.stream, sender, relative seq, length): bytes between the highest byte seen so far
/// and a later segment's start. Keyed by (sender address, sender port).
fn tshark_holes(file: &Path) -> BTreeMap<(String, u16), u64> {
    let out = Process::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-Y", "tcp.len > 0", "-T", "fields"])
        .args([
            "-e",
            "tcp.stream",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
        ])
        .args(["-e", "tcp.seq", "-e", "tcp.len"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark failed on {}", file.display());
    let mut segments: BTreeMap<(u64, String, u16), Vec<(u64, u64)>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let src = if f[1].is_empty() { f[2] } else { f[1] };
        segments
            .entry((f[0].parse().unwrap(), src.to_string(), f[3].parse().unwrap()))
            .or_default()
            .push((f[4].parse().unwrap(), f[5].parse().unwrap()));
    }
    let mut holes = BTreeMap::new();
    for ((_, src, port), mut segs) in segments {
        segs.sort();
        let mut end = segs[0].0;
        let mut missing = 0;
        for (seq, len) in segs {
            missing += seq.saturating_sub(end);
            end = end.max(seq + len);
        }
        if missing > 0 {
            *holes.entry((src, port)).or_insert(0) += missing;
        }
    }
    holes
}

/// Content gaps on the real captures: every flow with missed_bytes is a direction in which
/// tshark's segments leave a hole of exactly those bytes, and no other flow has any (one
/// flow of the espn capture, whose server lost 3038 bytes; its history has Zeek's `g`).
#[test]
fn missed_bytes_are_the_holes_tshark_sees() {
    let Some(dir) = shared_pcaps() else {
        return;
    };
    let tshark = Process::new("tshark").arg("--version").output().is_ok();
    if !crate::prerequisite(tshark, "tshark (Debian: apt-get install tshark; .ci/run installs it)") {
        return;
    }
    let mut total = 0;
    for name in [
        "normal_http_espn.pcapng",
        "normal_alexa-app.pcapng",
        "malware_ratinfected.pcapng",
    ] {
        let file = dir.join(name);
        let s = Scratch::new();
        import(&s, &["pcap", "--quiet", file.to_str().unwrap()]).success();
        let rows = s.query(
            "SELECT orig_h, orig_p, resp_h, resp_p, history, missed_bytes FROM flows WHERE missed_bytes > 0 ORDER BY ts",
        );
        let mut got = BTreeMap::new();
        for line in rows.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            // The side whose data is missing: G for the originator, g for the responder.
            let (h, p) = match (f[4].contains('G'), f[4].contains('g')) {
                (true, false) => (f[0], f[1]),
                (false, true) => (f[2], f[3]),
                _ => panic!("{name}: a gap on both sides or none: {line}"),
            };
            got.insert((h.to_string(), p.parse::<u16>().unwrap()), f[5].parse::<u64>().unwrap());
        }
        assert_eq!(got, tshark_holes(&file), "{name}: missed bytes per sender");
        total += got.values().sum::<u64>();
    }
    assert_eq!(total, 3038);
}

#[test]
fn ctrl_c_stops_a_zeek_import_and_stores_nothing() {
    // Regression (issue 22): the Zeek reader never looked at Ctrl-C, so a long (here endless)
    // log was read on to its end. A named pipe fed by a thread stands in for a log that is
    // still being read when Ctrl-C comes.
    let s = Scratch::new();
    s.query("SELECT 1");
    let fifo = s.path("conn.log");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let feed = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(feed).unwrap();
        let header = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n";
        pipe.write_all(header.as_bytes()).unwrap();
        let started = std::time::Instant::now();
        let mut n = 0u64;
        // Until netlens closes its end (or a minute passes: the test has failed by then).
        while started.elapsed() < std::time::Duration::from_secs(60) {
            let rows: String = (0..200)
                .map(|i| format!("1300000000.{i}\tC{n}x{i}\t192.0.2.1\t5000\t192.0.2.9\t443\ttcp\n"))
                .collect();
            if pipe.write_all(rows.as_bytes()).is_err() {
                break;
            }
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        n
    });
    let child = s.spawn(&["import", "zeek", fifo.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    crate::ctrl_c_ends_it_with_130(child);
    assert!(writer.join().unwrap() > 0, "nothing was fed to the import");
    assert_eq!(s.query("SELECT count(*) FROM flows"), "0");
    assert_eq!(s.query("SELECT count(*) FROM imports"), "0");
}

/// `--verify-checksums` (issue 20): a TCP segment with a bad checksum counts nowhere but its
/// flow's history, as in Zeek run without `-C`. Zeek's row for the synthetic conversation with
/// the originator's handshake ACK corrupted (TCP.cc `ValidateChecksum` returns before the
/// segment's history letter, the ConnSize counts and the state machine; `ChecksumError` logs
/// `C`): `ShCDdFfA`, 4 originator packets of 260 IP bytes. Without the flag, nothing changes.
#[test]
fn bad_tcp_checksums_are_history_letters_with_verify_checksums() {
    let s = Scratch::new();
    let cap = s.path("bad.pcap");
    let mut packets = conversation();
    packets[2].1[50] ^= 0xff;
    write_pcap(&cap, 1, &packets);
    let row = "SELECT conn_state, history, orig_bytes, resp_bytes, orig_pkts, resp_pkts, orig_ip_bytes, \
               resp_ip_bytes FROM flows WHERE proto = 'tcp' AND import_id = (SELECT max(import_id) FROM imports)";
    import(&s, &["pcap", "--quiet", cap.to_str().unwrap()]).success();
    assert_eq!(s.query(row), "SF,ShADdFf,100,1000,5,3,300,1120");
    import(&s, &["pcap", "--quiet", "--verify-checksums", cap.to_str().unwrap()]).success();
    assert_eq!(s.query(row), "SF,ShCDdFfA,100,1000,4,3,260,1120");
}

/// tshark is the oracle of which packets have a bad checksum: on each shared capture,
/// `--verify-checksums` leaves out of the TCP and of the UDP flows' packet counts exactly the
/// packets tshark finds a bad TCP or UDP checksum in (`tcp.checksum.status == 0`, `udp...`).
/// The flows have `C`/`c` letters exactly when some of those packets have a right IPv4
/// header: Zeek drops a packet whose IP header checksum is bad before any connection sees it
/// (IP.cc `AnalyzePacket`), as happens to all 558 bad segments of malware_ratinfected (sent by
/// the capturing host, both checksums left to the card); normal_http_espn has 63 bad TCP
/// segments and 14 bad UDP datagrams with right IP headers.
#[test]
fn verified_checksums_leave_out_the_packets_tshark_finds_bad() {
    let Some(dir) = shared_pcaps() else {
        return;
    };
    let tshark = Process::new("tshark").arg("--version").output().is_ok();
    if !crate::prerequisite(tshark, "tshark (Debian: apt-get install tshark; .ci/run installs it)") {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    let tshark_count = |file: &Path, filter: &str| -> usize {
        let out = Process::new("tshark")
            .arg("-r")
            .arg(file)
            .args([
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                "frame.number",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let mut lettered_somewhere = [false; 2];
    for file in files {
        let s = Scratch::new();
        let counts = |verify: bool, proto: &str| {
            let mut args = vec!["pcap", "--quiet"];
            if verify {
                args.push("--verify-checksums");
            }
            args.push(file.to_str().unwrap());
            import(&s, &args).success();
            s.query(&format!(
                "SELECT coalesce(sum(orig_pkts + resp_pkts), 0) || ' ' || count(*) FILTER (WHERE regexp_matches(history, '[Cc]')) \
                 FROM flows WHERE proto = '{proto}' AND import_id = (SELECT max(import_id) FROM imports)"
            ))
        };
        let parse = |t: String| -> (usize, usize) {
            let (p, c) = t.split_once(' ').unwrap();
            (p.parse().unwrap(), c.parse().unwrap())
        };
        for (i, proto) in ["tcp", "udp"].into_iter().enumerate() {
            let bad = tshark_count(&file, &format!("{proto}.checksum.status == 0"));
            let bad_ip_ok = tshark_count(
                &file,
                &format!("{proto}.checksum.status == 0 && !(ip.checksum.status == 0)"),
            );
            let (all, marked_unchecked) = parse(counts(false, proto));
            let (kept, marked) = parse(counts(true, proto));
            assert_eq!(marked_unchecked, 0, "{}", file.display());
            assert_eq!(
                all - kept,
                bad,
                "{}: {proto} packets left out, against tshark's bad checksums",
                file.display()
            );
            assert_eq!(
                marked > 0,
                bad_ip_ok > 0,
                "{}: {marked} {proto} flows with C/c for {bad_ip_ok} bad checksums under right IP headers",
                file.display()
            );
            lettered_somewhere[i] |= marked > 0;
        }
    }
    assert_eq!(
        lettered_somewhere,
        [true, true],
        "no shared capture has a bad TCP and a bad UDP checksum under a right IP header: the test checks less than it says"
    );
}
