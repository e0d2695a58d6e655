//! Zeek conn.log lines: the TSV format of Zeek's ASCII writer (`#separator`, `#fields`, `-` for
//! unset and `(empty)` for empty values, `\xNN` escapes) and its JSON format (one object per
//! line, flat `id.orig_h` keys or a nested `id` object, epoch or ISO 8601 times), into flow rows.
//!
//! Fields are found by name, so reordered or extra fields are fine; a log without one of the
//! fields a flow needs is refused with the list of what it has. A line that cannot be read is
//! [`Parsed::Bad`] with its reason, for the caller to skip and count. [`LogParser`] holds what
//! the TSV header said; the netlens crate's `ingest::zeek` reads the file and stores the rows.

/// One row of `flows`, from a capture or a Zeek log (Zeek's unset values are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowRow {
    pub ts_us: i64,
    pub uid: String,
    pub orig_h: String,
    pub orig_p: Option<i32>,
    pub resp_h: String,
    pub resp_p: Option<i32>,
    pub proto: String,
    pub service: Option<String>,
    pub duration: Option<f64>,
    pub orig_bytes: Option<i64>,
    pub resp_bytes: Option<i64>,
    pub conn_state: Option<String>,
    pub missed_bytes: Option<i64>,
    pub history: Option<String>,
    pub orig_pkts: Option<i64>,
    pub orig_ip_bytes: Option<i64>,
    pub resp_pkts: Option<i64>,
    pub resp_ip_bytes: Option<i64>,
    pub orig_frame_bytes: Option<i64>,
    pub resp_frame_bytes: Option<i64>,
    pub ip_proto: Option<i32>,
    /// Zeek's tunnel_parents; `None` when unset (no tunnel).
    pub tunnel_parents: Option<Vec<String>>,
}

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

/// The longest duration a row may carry (about 31 years): `inf`, `NaN` or `1e300` stored
/// broke every later query of `connection_events`.
const MAX_DURATION_SECONDS: f64 = 1e9;

/// The last time a Zeek timestamp may name, in microseconds: what nanoseconds in 64 bits hold
/// (2262-04-11T23:47:16.854775Z), as the import's first and last times are counted. Later
/// times (year 9999 was allowed once) wrapped around into wrong times in `imports`, silently.
const MAX_TS_US: i64 = i64::MAX / 1000;

/// A parsed timestamp: epoch seconds (`1278875104.655731`) or ISO 8601, to microseconds;
/// `None` for anything else and for times beyond [`MAX_TS_US`] either way of 1970.
fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    let us = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > (MAX_TS_US / 1_000_000 + 1) as f64 {
            return None;
        }
        match s.split_once('.') {
            // Plain decimals are split at the point to keep the microseconds of large epoch
            // values exact; an exponent (`1.5e3`) is not a fraction's digits.
            Some((_, f)) if !f.contains(['e', 'E']) => {
                let digits: String = f.chars().take(6).filter(char::is_ascii_digit).collect();
                let n: i64 = format!("{digits:0<6}").parse().unwrap_or(0);
                secs.trunc() as i64 * 1_000_000 + if secs < 0.0 || s.starts_with('-') { -n } else { n }
            }
            _ => (secs * 1e6).round() as i64,
        }
    } else {
        chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_micros()
    };
    (-MAX_TS_US..=MAX_TS_US).contains(&us).then_some(us)
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
/// endless one) can make an import hold before it is refused.
pub const MAX_LINE: usize = 1 << 20;

/// Why a log cannot be read at all (not one bad line): the caller names the file and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The line (from 1), or 0 for the header as a whole.
    pub line: usize,
    pub reason: String,
}

/// What one line held.
// Returned once per line and consumed at once, never held in numbers: boxing the row would only
// add an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A flow.
    Row(FlowRow),
    /// A blank line or a TSV header line: nothing to store.
    Nothing,
    /// A line that cannot be read, with why: skipped and counted.
    Bad(String),
}

/// The start of a log says how to read it: refused for an empty or gzip-compressed file, else
/// whether it is JSON (its first non-blank byte is `{`).
pub fn is_json(head: &[u8]) -> Result<bool, Refused> {
    let refused = |reason: &str| Refused {
        line: 0,
        reason: reason.to_string(),
    };
    if head.is_empty() {
        return Err(refused("the file is empty"));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(refused("it is gzip-compressed; decompress it first (gunzip)"));
    }
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

/// Reads a log's lines in order, holding what its TSV header said.
pub struct LogParser {
    json: bool,
    tsv: Tsv,
}

impl LogParser {
    /// A parser for a JSON log (`json`, see [`is_json`]) or a TSV one.
    pub fn new(json: bool) -> Self {
        LogParser {
            json,
            tsv: Tsv {
                separator: "\t".to_string(),
                unset: "-".to_string(),
                empty: "(empty)".to_string(),
                fields: None,
            },
        }
    }

    /// One line (`line` counts from 1), without its line ending.
    pub fn line(&mut self, text: &str, line: usize) -> Result<Parsed, Refused> {
        if text.trim().is_empty() {
            return Ok(Parsed::Nothing);
        }
        let parsed = if self.json {
            json_row(text, line)
        } else if let Some(directive) = text.strip_prefix('#') {
            self.directive(directive)?;
            return Ok(Parsed::Nothing);
        } else {
            let Some(fields) = &self.tsv.fields else {
                return Err(Refused {
                    line,
                    reason:
                        "data before any #fields header: not a Zeek TSV log (Zeek JSON logs have one object per line)"
                            .to_string(),
                });
            };
            tsv_row(&self.tsv, fields, text, line)
        };
        match parsed {
            Ok(row) => Ok(Parsed::Row(row)),
            Err(Missing(reason)) => Err(Refused { line, reason }),
            Err(Bad(reason)) => Ok(Parsed::Bad(reason)),
        }
    }

    /// After the last line (`lines` of them): a TSV log without a `#fields` header is refused.
    pub fn finish(&self, lines: usize) -> Result<(), Refused> {
        if !self.json && self.tsv.fields.is_none() {
            return Err(Refused {
                line: lines,
                reason: "no #fields header: not a Zeek TSV log".to_string(),
            });
        }
        Ok(())
    }

    fn directive(&mut self, directive: &str) -> Result<(), Refused> {
        let tsv = &mut self.tsv;
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
                    return Err(Refused {
                        line: 0,
                        reason: format!(
                            "the log has no {missing} field (its #fields: {}); a conn.log is needed",
                            fields.join(" ")
                        ),
                    });
                }
                tsv.fields = Some(fields);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A line that failed: the log lacks required fields (fatal) or this line is bad (skipped).
enum LineError {
    Missing(String),
    Bad(String),
}
use LineError::{Bad, Missing};

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
        assert_eq!(parse_ts("9300000000000"), None);
        assert_eq!(parse_ts("inf"), None);
        // Regression (issue 22, found by the zeek fuzz target): a time between 2262 and 9999
        // (`10300000002`, in 2296) was read, and its nanoseconds, the import's first and last
        // times, overflowed into wrong times. Both spellings end at 2262-04-11T23:47:16.854775Z.
        assert_eq!(parse_ts("10300000002"), None);
        assert_eq!(parse_ts("253402300799"), None);
        assert_eq!(parse_ts("9999-12-31T23:59:59Z"), None);
        assert_eq!(parse_ts("9223372036.854775"), Some(MAX_TS_US));
        assert_eq!(parse_ts("9223372036.854776"), None);
        assert_eq!(parse_ts("2262-04-11T23:47:16.854775Z"), Some(MAX_TS_US));
        assert_eq!(parse_ts("2262-04-11T23:47:16.854776Z"), None);
        assert_eq!(parse_ts("-9223372036.854775"), Some(-MAX_TS_US));
        for s in ["1300000000.5", "-1.25", "9223372036.854775", "2262-04-11T23:47:16Z"] {
            assert!(parse_ts(s).is_some_and(|us| us.checked_mul(1000).is_some()), "{s}");
        }
        // An exponent is no fraction: 1.5e3 s is 1500 s (it was 1500.53 s).
        assert_eq!(parse_ts("1.5e3"), Some(1_500_000_000));
        assert_eq!(parse_ts("-0.5"), Some(-500_000));
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
