//! Fuzzes the Zeek conn.log parser (TSV headers and rows, JSON objects) with arbitrary file
//! bytes, read line by line within the import's bound as `import zeek` reads them: no input may
//! panic, and every row it accepts is one the store can hold.
//!
//! It links the `netlens-parsers` crate only: the netlens crate would compile the bundled
//! DuckDB (C++) for the fuzz build too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlens_parsers::lines::{read_line_within, LineRead};
use netlens_parsers::zeek::{is_json, LogParser, Parsed, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = is_json(data) else {
        return;
    };
    let mut parser = LogParser::new(json);
    let mut input = std::io::BufReader::new(data);
    let mut line = Vec::new();
    let mut line_no = 0;
    loop {
        match read_line_within(&mut input, &mut line, MAX_LINE) {
            Ok(LineRead::Line(_)) => {}
            Ok(LineRead::End) => break,
            Ok(LineRead::TooLong) | Err(_) => return,
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&line);
        let Ok(parsed) = parser.line(text.trim_end_matches(['\n', '\r']), line_no) else {
            return;
        };
        if let Parsed::Row(row) = parsed {
            // Up to 2262-04-11 in microseconds, so x1000 (nanoseconds) stays in an i64.
            assert!(row.ts_us.checked_mul(1000).is_some(), "{row:?}");
            assert!(row.duration.is_none_or(|d| d.is_finite() && d >= 0.0), "{row:?}");
            assert!(row.orig_h.parse::<std::net::IpAddr>().is_ok(), "{row:?}");
            assert!(row.resp_h.parse::<std::net::IpAddr>().is_ok(), "{row:?}");
            assert!(row.orig_p.is_none_or(|p| (0..=65535).contains(&p)), "{row:?}");
            assert!(row.resp_p.is_none_or(|p| (0..=65535).contains(&p)), "{row:?}");
        }
    }
    let _ = parser.finish(line_no);
});
