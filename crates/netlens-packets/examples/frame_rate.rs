//! Frames per second through the flow engine alone (`FlowTable::frame`: decoding, tunnels,
//! flows), without the reader's I/O or the store: the captures given are read into memory
//! first, then passed through a new flow table PASSES times. For comparing two versions of
//! the crate on the same machine (bench/RESULTS.md, issue 20), e.g.
//!
//!     cargo run --release -p netlens-packets --example frame_rate -- 400 ../shared/data/pcaps/*
use netlens_packets::{flow, reader};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: frame_rate PASSES CAPTURE...";
    let passes: usize = args.next().and_then(|p| p.parse().ok()).expect(usage);
    let mut frames = Vec::new();
    for file in args {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut r = reader::CaptureReader::open(&data[..]).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        while let Ok(Ok(Some(p))) = r.next_packet() {
            frames.push((p.linktype, p.orig_len, p.ts_ns, p.data.to_vec()));
        }
    }
    let start = std::time::Instant::now();
    let mut flows = 0usize;
    for pass in 0..passes {
        let mut table = flow::FlowTable::new(flow::Timeouts::default(), pass as u64);
        for (i, (linktype, len, ts, data)) in frames.iter().enumerate() {
            std::hint::black_box(table.frame(i as u64, *ts, *len, *linktype, data));
        }
        table.finish_all();
        flows += table.take_finished().len();
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{} frames x {passes} passes, {flows} flows, {s:.3} s, {:.0} frames/s",
        frames.len(),
        (frames.len() * passes) as f64 / s
    );
}
