//! Zeek conn.log import: reads a log (bounded lines) and stores its flows. The lines are
//! parsed by `netlens_parsers::zeek` (TSV and JSON, fields by name); lines that cannot be read
//! are skipped, counted and reported with their line numbers. Reads only the log it is given.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use netlens_parsers::zeek::{is_json, LogParser, Parsed, Refused, MAX_LINE};

use super::sink::{FlowColumns, TableWriter, FLOW_BATCH};
use super::{ImportReport, Progress};
use crate::error::{Error, Result};
use crate::files::LineRead;
use crate::store::Store;

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
    let json = is_json(head).map_err(|r| refused(path, r))?;
    let source = path.to_string_lossy().into_owned();
    let mut report = ImportReport {
        import_id,
        path: path.to_path_buf(),
        format: if json { "zeek-json" } else { "zeek-tsv" }.to_string(),
        complete: true,
        ..Default::default()
    };
    let mut parser = LogParser::new(json);
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
        match parser.line(text, line_no).map_err(|r| refused(path, r))? {
            Parsed::Nothing => {}
            Parsed::Row(row) => {
                report.packets += 1;
                report.first_ts_ns = Some(report.first_ts_ns.map_or(row.ts_us * 1000, |t| t.min(row.ts_us * 1000)));
                report.last_ts_ns = Some(report.last_ts_ns.map_or(row.ts_us * 1000, |t| t.max(row.ts_us * 1000)));
                columns.push_row(&row);
                if columns.len() >= FLOW_BATCH {
                    report.flows += columns.len() as u64;
                    writer.write(columns.finish("flows", import_id, &source)?)?;
                    progress.position(bytes);
                }
            }
            Parsed::Bad(reason) => {
                report.packets += 1;
                report.skipped += 1;
                if bad_lines.len() < 5 {
                    bad_lines.push((line_no, reason));
                }
            }
        }
    }
    parser.finish(line_no).map_err(|r| refused(path, r))?;
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

fn refused(path: &Path, r: Refused) -> Error {
    zeek_err(path, r.line, r.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
