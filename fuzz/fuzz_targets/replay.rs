//! Fuzzes the reading of replay files (`capture --replay`: one snapshot as JSON per line) with
//! arbitrary file bytes, line by line within the replay's bound: no input may panic, and every
//! snapshot read can be recorded again.
//!
//! It links the `netlens-parsers` crate only (no DuckDB in the fuzz build).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlens_parsers::lines::{read_line_within, LineRead};
use netlens_parsers::snapshot::{parse_line, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let mut input = std::io::BufReader::new(data);
    let mut line = Vec::new();
    loop {
        match read_line_within(&mut input, &mut line, MAX_LINE) {
            Ok(LineRead::Line(_)) => {}
            Ok(LineRead::End) | Ok(LineRead::TooLong) | Err(_) => return,
        }
        match parse_line(&line) {
            Ok(Some(snapshot)) => {
                assert_eq!(snapshot.collect_ms, None);
                for socket in &snapshot.sockets {
                    let _ = (socket.pid(), socket.family());
                }
                // What was read can be recorded again (`capture --record`).
                assert!(serde_json::to_string(&snapshot).is_ok());
            }
            Ok(None) => {}
            // The replay ends at its first bad line.
            Err(_) => return,
        }
    }
});
