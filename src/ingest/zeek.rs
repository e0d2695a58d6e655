//! Zeek conn.log reading: the TSV format of Zeek's ASCII writer (`#separator`, `#fields`,
//! `-` for unset and `(empty)` for empty values, `\xNN` escapes) and its JSON format (one
//! object per line, flat `id.orig_h` keys or a nested `id` object, epoch or ISO 8601 times).
//!
//! Fields are found by name, so reordered or extra fields are fine; a log without one of the
//! fields a flow needs is refused with the list of what it has. Lines that cannot be read are
//! skipped, counted and reported with their line numbers. Reads only the log it is given.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use super::sink::{FlowColumns, FlowRow, TableWriter, FLOW_BATCH};
use super::{ImportReport, Progress};
use crate::error::{Error, Result};
use crate::files::LineRead;
use crate::store::Store;

/// Fields a flow cannot do without.
const REQUIRED: [&str; 6] = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"];

/// Decodes Zeek's `\xNN` escapes (and leaves anything else as it is).
pub fn unescape(s: &str) -> String {
    if !s.contains("\\x") {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a value for a Zeek TSV field: the separator, backslash and control characters
/// become `\xNN`; an empty string is `(empty)`; a lone `-` is escaped so it does not read as
/// unset.
pub fn escape(s: &str) -> String {
    if s.is_empty() {
        return "(empty)".to_string();
    }
    if s == "-" {
        return "\\x2d".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// 9999-12-31T23:59:59Z, the last time a Zeek timestamp may name.
const MAX_EPOCH_SECONDS: f64 = 253_402_300_799.0;
/// The longest duration a row may carry (about 31 years): `inf`, `NaN` or `1e300` stored
/// broke every later query of `connection_events`.
const MAX_DURATION_SECONDS: f64 = 1e9;

/// A parsed timestamp: epoch seconds (`1278875104.655731`) or ISO 8601, to microseconds.
fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        // Up to the end of year 9999: beyond it the microseconds overflowed (past 2262 in a
        // 64-bit count) into wrong times, silently in release builds.
        if secs.is_finite() && secs.abs() <= MAX_EPOCH_SECONDS {
            // Split to keep microsecond precision of large epoch values.
            let whole = secs.trunc();
            let frac = match s.split_once('.') {
                Some((_, f)) => {
                    let digits: String = f.chars().take(6).filter(char::is_ascii_digit).collect();
                    let n: i64 = format!("{digits:0<6}").parse().unwrap_or(0);
                    if secs < 0.0 {
                        -n
                    } else {
                        n
                    }
                }
                None => 0,
            };
            return Some(whole as i64 * 1_000_000 + frac);
        }
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn parse_port(s: Option<&str>) -> std::result::Result<Option<i32>, String> {
    match s {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u16>()
            .map(|p| Some(i32::from(p)))
            .map_err(|_| format!("'{v}' is not a port")),
    }
}

fn parse_count(name: &str, s: Option<&str>) -> std::result::Result<Option<i64>, String> {
    match s {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{name} '{v}' is not a count")),
    }
}

/// Builds a flow row from fields looked up by name.
fn row_from(get: &dyn Fn(&str) -> Option<String>, line: usize) -> std::result::Result<FlowRow, String> {
    let need = |name: &str| get(name).ok_or_else(|| format!("{name} is unset"));
    let ts_text = need("ts")?;
    let ts_us = parse_ts(&ts_text).ok_or_else(|| format!("ts '{ts_text}' is not a time"))?;
    let proto = need("proto")?.to_ascii_lowercase();
    let orig_h = need("id.orig_h")?;
    let resp_h = need("id.resp_h")?;
    for (name, v) in [("id.orig_h", &orig_h), ("id.resp_h", &resp_h)] {
        if v.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("{name} '{v}' is not an IP address"));
        }
    }
    let orig_p = parse_port(get("id.orig_p").as_deref())?;
    let resp_p = parse_port(get("id.resp_p").as_deref())?;
    let duration = match get("duration") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && (0.0..=MAX_DURATION_SECONDS).contains(d))
                .ok_or_else(|| {
                    format!("duration '{v}' is not a number of seconds between 0 and {MAX_DURATION_SECONDS}")
                })?,
        ),
    };
    let c = |name: &str| parse_count(name, get(name).as_deref());
    let uid = get("uid").unwrap_or_else(|| format!("line{line}"));
    let ip_proto = match c("ip_proto")? {
        Some(v) => i32::try_from(v).ok(),
        None => match proto.as_str() {
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => {
                if orig_h.contains(':') {
                    Some(58)
                } else {
                    Some(1)
                }
            }
            _ => None,
        },
    };
    let service = get("service").filter(|s| !s.is_empty());
    Ok(FlowRow {
        ts_us,
        uid,
        orig_h,
        orig_p,
        resp_h,
        resp_p,
        proto,
        service,
        duration,
        orig_bytes: c("orig_bytes")?,
        resp_bytes: c("resp_bytes")?,
        conn_state: get("conn_state"),
        missed_bytes: c("missed_bytes")?,
        history: get("history"),
        orig_pkts: c("orig_pkts")?,
        orig_ip_bytes: c("orig_ip_bytes")?,
        resp_pkts: c("resp_pkts")?,
        resp_ip_bytes: c("resp_ip_bytes")?,
        orig_frame_bytes: None,
        resp_frame_bytes: None,
        ip_proto,
        tunnel_parents: None,
    })
}

/// TSV header state.
struct Tsv {
    separator: String,
    unset: String,
    empty: String,
    fields: Option<Vec<String>>,
}

fn missing_fields(fields: &[String]) -> Option<String> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !fields.iter().any(|f| f == r))
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The longest line read: far above any conn.log line, and what a file without newlines (or an
/// endless one) can make the import hold before it is refused.
const MAX_LINE: usize = 1 << 20;

/// Reads one Zeek conn.log into `flows`. The caller holds the transaction.
pub fn import_log<R: Read>(
    store: &Store,
    input: R,
    path: &Path,
    import_id: i64,
    progress: &Progress,
) -> Result<ImportReport> {
    let started = Instant::now();
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.is_empty() {
        return Err(zeek_err(path, 0, "the file is empty".to_string()));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(zeek_err(
            path,
            0,
            "it is gzip-compressed; decompress it first (gunzip)".to_string(),
        ));
    }
    let json = head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let source = path.to_string_lossy().into_owned();
    let mut report = ImportReport {
        import_id,
        path: path.to_path_buf(),
        format: if json { "zeek-json" } else { "zeek-tsv" }.to_string(),
        complete: true,
        ..Default::default()
    };
    let mut tsv = Tsv {
        separator: "\t".to_string(),
        unset: "-".to_string(),
        empty: "(empty)".to_string(),
        fields: None,
    };
    let mut writer = TableWriter::new(store, "flows")?;
    let mut columns = FlowColumns::default();
    let mut bad_lines: Vec<(usize, String)> = Vec::new();
    let mut bytes = 0u64;
    let mut line_no = 0usize;
    let mut line = Vec::new();
    loop {
        let n = match crate::files::read_line_within(&mut input, &mut line, MAX_LINE).map_err(|e| Error::io(path, e))? {
            LineRead::End => break,
            LineRead::Line(n) => n,
            LineRead::TooLong => {
                return Err(zeek_err(
                    path,
                    line_no + 1,
                    format!(
                        "the line is longer than {} MiB (Zeek's lines are a few hundred bytes): not a Zeek log, or a damaged one",
                        MAX_LINE >> 20
                    ),
                ))
            }
        };
        bytes += n as u64;
        line_no += 1;
        // Ctrl-C: the caller's transaction rolls this file back.
        if line_no.is_multiple_of(1024) && crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let parsed = if json {
            json_row(text, line_no)
        } else if let Some(directive) = text.strip_prefix('#') {
            tsv_directive(&mut tsv, directive, path)?;
            continue;
        } else {
            let Some(fields) = &tsv.fields else {
                return Err(zeek_err(
                    path,
                    line_no,
                    "data before any #fields header: not a Zeek TSV log (Zeek JSON logs have one object per line)"
                        .to_string(),
                ));
            };
            tsv_row(&tsv, fields, text, line_no)
        };
        report.packets += 1;
        match parsed {
            Ok(row) => {
                report.first_ts_ns = Some(report.first_ts_ns.map_or(row.ts_us * 1000, |t| t.min(row.ts_us * 1000)));
                report.last_ts_ns = Some(report.last_ts_ns.map_or(row.ts_us * 1000, |t| t.max(row.ts_us * 1000)));
                columns.push_row(&row);
                if columns.len() >= FLOW_BATCH {
                    report.flows += columns.len() as u64;
                    writer.write(columns.finish("flows", import_id, &source)?)?;
                    progress.position(bytes);
                }
            }
            Err(Missing(fields)) => return Err(zeek_err(path, line_no, fields)),
            Err(Bad(reason)) => {
                report.skipped += 1;
                if bad_lines.len() < 5 {
                    bad_lines.push((line_no, reason));
                }
            }
        }
    }
    if !json && tsv.fields.is_none() {
        return Err(zeek_err(
            path,
            line_no,
            "no #fields header: not a Zeek TSV log".to_string(),
        ));
    }
    report.flows += columns.len() as u64;
    writer.write(columns.finish("flows", import_id, &source)?)?;
    writer.finish()?;
    if report.skipped > 0 {
        let shown: Vec<String> = bad_lines.iter().map(|(l, r)| format!("line {l}: {r}")).collect();
        report.warnings.push(format!(
            "{} lines could not be read and were skipped ({}{})",
            report.skipped,
            shown.join("; "),
            if report.skipped as usize > shown.len() {
                "; ..."
            } else {
                ""
            }
        ));
    }
    report.file_bytes = bytes;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn zeek_err(path: &Path, line: usize, reason: String) -> Error {
    Error::ZeekLog {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

/// A line that failed: the log lacks required fields (fatal) or this line is bad (skipped).
enum LineError {
    Missing(String),
    Bad(String),
}
use LineError::{Bad, Missing};

fn tsv_directive(tsv: &mut Tsv, directive: &str, path: &Path) -> Result<()> {
    // `#separator \x09` uses a space; the others use the separator itself.
    if let Some(sep) = directive.strip_prefix("separator") {
        tsv.separator = unescape(sep.trim_start_matches([' ', '\t']));
        if tsv.separator.is_empty() {
            tsv.separator = "\t".to_string();
        }
        return Ok(());
    }
    let (key, value) = match directive.split_once(tsv.separator.as_str()) {
        Some((k, v)) => (k, v),
        None => (directive, ""),
    };
    match key {
        "unset_field" => tsv.unset = unescape(value),
        "empty_field" => tsv.empty = unescape(value),
        "fields" => {
            let fields: Vec<String> = value.split(tsv.separator.as_str()).map(unescape).collect();
            if let Some(missing) = missing_fields(&fields) {
                return Err(zeek_err(
                    path,
                    0,
                    format!(
                        "the log has no {missing} field (its #fields: {}); a conn.log is needed",
                        fields.join(" ")
                    ),
                ));
            }
            tsv.fields = Some(fields);
        }
        _ => {}
    }
    Ok(())
}

fn tsv_row(tsv: &Tsv, fields: &[String], text: &str, line: usize) -> std::result::Result<FlowRow, LineError> {
    let values: Vec<&str> = text.split(tsv.separator.as_str()).collect();
    if values.len() != fields.len() {
        return Err(Bad(format!("{} values for {} fields", values.len(), fields.len())));
    }
    let get = |name: &str| -> Option<String> {
        let i = fields.iter().position(|f| f == name)?;
        let v = values[i];
        if v == tsv.unset {
            None
        } else if v == tsv.empty {
            Some(String::new())
        } else {
            Some(unescape(v))
        }
    };
    row_from(&get, line).map_err(Bad)
}

fn json_row(text: &str, line: usize) -> std::result::Result<FlowRow, LineError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Bad(format!("not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| Bad("not a JSON object".to_string()))?;
    let lookup = |name: &str| -> Option<&serde_json::Value> {
        obj.get(name).or_else(|| {
            // Nested `"id": {"orig_h": ...}` as some writers produce.
            let (outer, inner) = name.split_once('.')?;
            obj.get(outer)?.as_object()?.get(inner)
        })
    };
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|f| lookup(f).is_none()).collect();
    if !missing.is_empty() {
        let have: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(Missing(format!(
            "the record has no {} field (it has: {}); a conn.log is needed",
            missing.join(", "),
            have.join(" ")
        )));
    }
    let get = |name: &str| -> Option<String> {
        match lookup(name)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(if *b { "T" } else { "F" }.to_string()),
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            serde_json::Value::Object(_) => None,
        }
    };
    row_from(&get, line).map_err(Bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        for s in ["plain", "tab\there", "back\\slash", "-", "new\nline"] {
            assert_eq!(unescape(&escape(s)), s, "{s}");
        }
        assert_eq!(escape(""), "(empty)");
        assert_eq!(unescape("\\x09"), "\t");
        assert_eq!(unescape("\\xZZ"), "\\xZZ");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1278875104.655731"), Some(1_278_875_104_655_731));
        assert_eq!(parse_ts("1278875104.6"), Some(1_278_875_104_600_000));
        assert_eq!(parse_ts("1278875104"), Some(1_278_875_104_000_000));
        assert_eq!(parse_ts("2010-07-11T19:05:04.655731Z"), Some(1_278_875_104_655_731));
        assert_eq!(parse_ts("soon"), None);
        // Regression (issue 22): past 2262 the microseconds overflowed into wrong times.
        assert_eq!(parse_ts("253402300799"), Some(253_402_300_799_000_000));
        assert_eq!(parse_ts("9300000000000"), None);
        assert_eq!(parse_ts("inf"), None);
    }

    /// Regression (issue 22): a row with duration `inf`, `NaN` or `1e300` was stored, and then
    /// every query of `connection_events` failed. Such a row is refused, with its reason.
    #[test]
    fn durations_that_are_not_lengths_of_time_are_refused() {
        let row = |duration: &str| {
            let text = format!(
                r#"{{"ts":1.5,"uid":"Cx","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2","id.resp_p":80,"proto":"tcp","duration":"{duration}"}}"#
            );
            json_row(&text, 7)
        };
        for bad in ["inf", "NaN", "1e300", "-1"] {
            assert!(row(bad).is_err(), "{bad}");
        }
        assert!(row("2.5").is_ok());
    }

    /// Issue 22 (fuzzing): damaged TSV and JSON logs through the whole reader. None panics,
    /// what is stored is at most a row per line, and `connection_events` still answers after
    /// every stored row (a row it cannot read, such as an infinite duration, broke it).
    #[test]
    fn damaged_logs_never_panic_and_store_only_readable_rows() {
        let tsv = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n\
            #fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\thistory\n\
            #types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tstring\n\
            1300000000.5\tCa\t10.0.0.1\t40000\t192.0.2.9\t443\ttcp\tssl\t1.25\t100\t2000\tSF\tShADadFf\n\
            1300000001.000001\tCb\t2001:db8::1\t53\t2001:db8::2\t53\tudp\tdns\t-\t-\t-\tS0\tD\n\
            1300000002\tCc\t10.0.0.2\t8\t10.0.0.3\t0\ticmp\t(empty)\t0.000001\t0\t0\tOTH\t\\x1b[31m\n";
        let json = r#"{"ts":1300000000.5,"uid":"Ca","id.orig_h":"10.0.0.1","id.orig_p":40000,"id.resp_h":"192.0.2.9","id.resp_p":443,"proto":"tcp","duration":1.25,"orig_bytes":100}
{"ts":"2011-03-13T07:06:40.000001Z","uid":"Cb","id":{"orig_h":"::1","orig_p":1,"resp_h":"::2","resp_p":2},"proto":"udp","conn_state":"S0"}
{"ts":1300000002,"id.orig_h":"10.0.0.2","id.orig_p":8,"id.resp_h":"10.0.0.3","id.resp_p":0,"proto":"icmp","history":"\u001b"}
"#;
        let store = Store::open(&crate::store::Location::Memory, false).unwrap();
        let path = Path::new("conn.log");
        for seed in [tsv.as_bytes(), json.as_bytes()] {
            let report = import_log(&store, seed, path, 1, &Progress::silent()).unwrap();
            assert_eq!((report.flows, report.skipped), (3, 0), "the seeds read whole");
        }
        let mut stored = 6u64;
        for (s, case, damaged) in crate::mutate::cases(&[tsv.as_bytes(), json.as_bytes()], 400) {
            let lines = damaged.split(|b| *b == b'\n').count() as u64;
            if let Ok(report) = import_log(&store, &damaged[..], path, 1, &Progress::silent()) {
                assert!(report.flows + report.skipped <= lines, "seed {s}, case {case}");
                stored += report.flows;
            }
        }
        let counted: u64 = store
            .conn()
            .query_row("SELECT count(*) FROM flows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(counted, stored);
        let events: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM connection_events WHERE end_ts >= start_ts OR duration_s >= 0 OR duration_s IS NULL", [], |r| r.get(0))
            .unwrap();
        assert!(events > 0);
    }

    #[test]
    fn json_nested_and_flat() {
        let flat = r#"{"ts":1.5,"uid":"Cx","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2","id.resp_p":80,"proto":"tcp","orig_bytes":5,"service":null}"#;
        let Ok(r) = json_row(flat, 1) else { panic!() };
        assert_eq!(
            (r.ts_us, r.orig_bytes, r.service, r.ip_proto),
            (1_500_000, Some(5), None, Some(6))
        );
        let nested = r#"{"ts":"2010-07-11T19:05:04Z","id":{"orig_h":"::1","orig_p":1,"resp_h":"::2","resp_p":0},"proto":"icmp"}"#;
        let Ok(r) = json_row(nested, 2) else { panic!() };
        assert_eq!((r.uid.as_str(), r.ip_proto), ("line2", Some(58)));
        assert!(matches!(json_row(r#"{"ts":1}"#, 3), Err(Missing(_))));
        assert!(matches!(json_row("[1]", 3), Err(Bad(_))));
    }
}
