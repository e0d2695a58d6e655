//! Fuzzes the capture reader, packet decoder and flow assembly with arbitrary file bytes:
//! none of them may panic, loop forever or allocate without bound, whatever the input.
//!
//! It links the `netlens-packets` crate only: the netlens crate would compile the bundled
//! DuckDB (C++) for the fuzz build too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlens_packets::{decode, flow, reader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = reader::CaptureReader::open(data) else {
        return;
    };
    let mut table = flow::FlowTable::new(flow::Timeouts::default(), 0);
    // Half the inputs with checksums verified (`import pcap --verify-checksums`).
    let verify = data.len() % 2 == 1;
    table.verify_checksums(verify);
    while let Ok(Ok(Some(p))) = r.next_packet() {
        assert!(p.data.len() <= 16 * 1024 * 1024);
        // Decodes the frame and the tunnels it carries, every layer into the flow table.
        let walked = table.frame(p.number, p.ts_ns, p.orig_len, p.linktype, p.data);
        assert!(walked.depth <= decode::MAX_TUNNEL_DEPTH);
        for f in table.take_finished() {
            // Only packets with bad checksums (which count nowhere) leave a flow empty: a TCP
            // segment or UDP datagram leaves `C`/`c` in its history, an ICMP message nothing
            // (as Zeek: only a weird). The mutation test (crates/netlens-packets/tests/
            // mutation.rs, `holds_a_packet`) asserts the same.
            assert!(f.orig_pkts + f.resp_pkts > 0 || (verify && (f.history.contains(['C', 'c']) || f.proto == "icmp")));
        }
    }
    table.finish_all();
    let _ = table.take_finished();
});
