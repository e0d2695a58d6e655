//! Offline sources: traffic recorded elsewhere, brought into the same store so every query
//! and stage works on it. `import pcap` turns capture files into `flows` (Zeek conn.log
//! semantics) and optionally `packets`; `import zeek` reads Zeek conn.log files into `flows`;
//! `import csv` loads a dataset into a table of its own ([`csv`]). Only files come in here:
//! sources of snapshots (the live host, recordings, the demo's synthetic history) are
//! `capture`'s.
//!
//! Each file is one import: streamed from disk with bounded memory (only active flows are
//! held), written in batches through the appender inside one transaction, and recorded in
//! `imports`. This module reads the files it is given and writes only `flows` (or the table
//! named with `--table`), `packets` and `imports`; datasets go to their own table and
//! `datasets`.

pub mod csv;
pub mod sink;
pub mod zeek;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SendError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::interrupt;
use crate::store::Store;
use decode::{linktype_name, Decoded, Tunnel};
use flow::{FlowTable, Timeouts, TunnelRecord, TunnelStop, Walked};
use netlens_packets::{decode, flow, reader};
use reader::{CaptureReader, OpenError, Stop};
use sink::{FlowArrays, FlowColumns, PacketProto, PacketRow, TableWriter, FLOW_BATCH, PACKET_BATCH, TUNNEL_BATCH};

/// An import: which reader, and its files and options. The command line fills it from `import`'s
/// options; a server receives it as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportRequest {
    Pcap(PcapImport),
    Zeek(ZeekImport),
    Csv(csv::CsvImport),
}

/// `import pcap`: capture files and how flows are built from them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PcapImport {
    pub files: Vec<PathBuf>,
    /// Table receiving the flows.
    pub table: String,
    /// Also write one row per packet into `packets`.
    pub packets: bool,
    /// End flows idle this long, for every protocol [default: Zeek's].
    pub idle_timeout: Option<Duration>,
    pub tcp_timeout: Option<Duration>,
    pub udp_timeout: Option<Duration>,
    pub icmp_timeout: Option<Duration>,
    /// Check checksums as Zeek does without `-C` (IPv4 header, TCP, UDP, ICMP; see
    /// `FlowTable::verify_checksums`): a TCP segment or UDP datagram with a bad one is only
    /// logged in its flow's history (`C`/`c`).
    #[serde(default)]
    pub verify_checksums: bool,
}

/// `import zeek`: conn.log files, TSV or JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ZeekImport {
    pub files: Vec<PathBuf>,
}

/// Options of a capture import.
#[derive(Debug, Clone)]
pub struct PcapOptions {
    /// Table receiving the flows (`flows` unless `--table`).
    pub table: String,
    /// Also write one `packets` row per packet.
    pub packets: bool,
    pub timeouts: Timeouts,
}

impl Default for PcapOptions {
    fn default() -> Self {
        PcapOptions {
            table: "flows".to_string(),
            packets: false,
            timeouts: Timeouts::default(),
        }
    }
}

/// What importing one file did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub import_id: i64,
    pub path: PathBuf,
    pub format: String,
    pub file_bytes: u64,
    /// Packets read (captures) or lines read (Zeek).
    pub packets: u64,
    pub flows: u64,
    pub skipped: u64,
    pub first_ts_ns: Option<i64>,
    pub last_ts_ns: Option<i64>,
    /// False when reading stopped at damage; `stopped` says where.
    pub complete: bool,
    pub stopped: Option<Stop>,
    /// Ordinary things worth recording (non-IP frames, ...).
    pub notes: Vec<String>,
    /// Things the user should see (undecodable packets, unsupported link types, bad lines).
    pub warnings: Vec<String>,
    /// From the start of reading the file to its rows stored. The first capture of a
    /// command-line import is read while the database opens, and its time includes that wait.
    pub elapsed: Duration,
    /// Most flows held in memory at once.
    pub peak_active_flows: usize,
}

impl ImportReport {
    fn notes_text(&self) -> Option<String> {
        let mut notes = self.notes.clone();
        notes.extend(self.warnings.iter().cloned());
        if let Some(stop) = &self.stopped {
            notes.push(format!(
                "reading stopped at byte offset {}: {}",
                stop.offset, stop.reason
            ));
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// Where an import's progress goes while it runs. The command layer provides it (the shell
/// draws a bar and writes the lines on stderr); an import never prints itself.
pub trait ImportDisplay {
    /// A file called `name` of `total` bytes starts.
    fn start(&mut self, name: &str, total: u64);
    /// `at` bytes of the current file are read.
    fn position(&self, at: u64);
    /// The current file is done.
    fn done(&mut self);
    /// A warning (`warning: ...`) or a file's summary line.
    fn line(&mut self, line: &str);
}

/// An import's progress: shown on the command layer's [`ImportDisplay`], kept for a reply, or
/// dropped.
pub struct Progress {
    display: Option<Box<dyn ImportDisplay>>,
    /// Warnings and summary lines kept here instead of shown (an import run for a client).
    collected: Option<Vec<String>>,
    /// Pass warnings on.
    report: bool,
    /// Pass a summary line per file on.
    summarize: bool,
}

impl Progress {
    /// Shows the import on `display`: warnings always, and a summary line per file unless
    /// `quiet`.
    pub fn showing(display: Box<dyn ImportDisplay>, quiet: bool) -> Self {
        Progress {
            display: Some(display),
            collected: None,
            report: true,
            summarize: !quiet,
        }
    }

    /// No display; warnings and (unless `quiet`) summary lines are kept for [`Progress::take_lines`].
    pub fn collecting(quiet: bool) -> Self {
        Progress {
            display: None,
            collected: Some(Vec::new()),
            report: true,
            summarize: !quiet,
        }
    }

    /// The lines a collecting progress kept, in order (`warning: ...` and summaries).
    pub fn take_lines(&mut self) -> Vec<String> {
        self.collected.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn emit(&mut self, line: String) {
        match (&mut self.collected, &mut self.display) {
            (Some(lines), _) => lines.push(line),
            (None, Some(display)) => display.line(&line),
            (None, None) => {}
        }
    }

    /// No output at all (tests, library use).
    pub fn silent() -> Self {
        Progress {
            display: None,
            collected: None,
            report: false,
            summarize: false,
        }
    }

    fn start(&mut self, path: &Path, total: u64) {
        if let Some(display) = &mut self.display {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            display.start(&name, total);
        }
    }

    fn position(&self, at: u64) {
        if let Some(display) = &self.display {
            display.position(at);
        }
    }

    fn done(&mut self) {
        if let Some(display) = &mut self.display {
            display.done();
        }
    }

    /// Warnings come after the file is done, so they follow its progress.
    fn warn(&mut self, line: &str) {
        if self.report {
            self.emit(format!("warning: {line}"));
        }
    }

    /// One line per imported file.
    fn summary(&mut self, r: &ImportReport) {
        if !self.summarize {
            return;
        }
        let span = match (r.first_ts_ns, r.last_ts_ns) {
            (Some(a), Some(b)) => format!(", {} .. {}", fmt_ts(a), fmt_ts(b)),
            _ => String::new(),
        };
        let rate = r.packets as f64 / r.elapsed.as_secs_f64().max(1e-9);
        let unit = if r.format.starts_with("zeek") {
            "lines"
        } else {
            "packets"
        };
        let line = format!(
            "imported {} ({}): {} {unit}, {} flows, {} skipped{span} in {:.2} s ({:.0} {unit}/s), import id {}",
            r.path.display(),
            r.format,
            r.packets,
            r.flows,
            r.skipped,
            r.elapsed.as_secs_f64(),
            rate,
            r.import_id
        );
        self.emit(line);
    }
}

/// Runs an import. `progress` shows or keeps one summary line per file and the warnings;
/// `ahead` is the first capture, already being read (see [`ReadAhead`]).
pub fn run(store: &Store, request: ImportRequest, progress: &mut Progress, ahead: Option<ReadAhead>) -> Result<()> {
    // A capture read ahead was started under the same Ctrl-C as the import: one pressed while
    // the database opened stops it, whenever the reader sees it.
    if ahead.is_none() {
        interrupt::clear();
    }
    match request {
        ImportRequest::Pcap(a) => {
            let opts = pcap_options(&a)?;
            import_pcaps(store, &a.files, &opts, a.verify_checksums, progress, ahead.map(|a| a.0))?;
        }
        ImportRequest::Zeek(a) => {
            import_zeek_logs(store, &a.files, progress)?;
        }
        ImportRequest::Csv(a) => {
            let report = csv::import_csv(store, &a)?;
            if progress.summarize {
                progress.emit(csv::summary(&report, &a.file));
            }
        }
    }
    Ok(())
}

fn fmt_ts(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string())
        .unwrap_or_else(|| ns.to_string())
}

fn pcap_options(a: &PcapImport) -> Result<PcapOptions> {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let mut t = Timeouts::default();
    if let Some(all) = a.idle_timeout {
        t.tcp_ns = ns(all);
        t.udp_ns = ns(all);
        t.icmp_ns = ns(all);
    }
    if let Some(v) = a.tcp_timeout {
        t.tcp_ns = ns(v);
    }
    if let Some(v) = a.udp_timeout {
        t.udp_ns = ns(v);
    }
    if let Some(v) = a.icmp_timeout {
        t.icmp_ns = ns(v);
    }
    if a.table.trim().is_empty() {
        return Err(Error::Usage("--table needs a name".to_string()));
    }
    Ok(PcapOptions {
        table: a.table.clone(),
        packets: a.packets,
        timeouts: t,
    })
}

fn check_writable(store: &Store) -> Result<()> {
    if store.is_read_only() {
        return Err(Error::Usage(format!(
            "{} is open read-only; import needs to write\n  hint: drop --read-only",
            store.location().display()
        )));
    }
    Ok(())
}

fn next_import_id(store: &Store) -> Result<i64> {
    store
        .conn()
        .query_row("SELECT coalesce(max(import_id), 0) + 1 FROM imports", [], |r| r.get(0))
        .map_err(Error::sql)
}

/// The newest earlier import of a capture with the same format, size, packet count and first and
/// last packet times as `r` whose flows are still in `table`: almost surely the same file (under
/// this name or another) imported again, which doubles its flows. Said, not refused: importing it
/// again can be meant. A capture without packets doubles nothing.
fn same_capture_imported_before(store: &Store, r: &ImportReport, table: &str) -> Result<Option<i64>> {
    if r.packets == 0 || r.flows == 0 {
        return Ok(None);
    }
    let micros = |ns: Option<i64>| ns.map(|n| n.div_euclid(1000));
    store
        .conn()
        .query_row(
            &format!(
                "SELECT max(i.import_id) FROM imports i WHERE i.format = ? AND i.file_bytes = ? AND i.packets = ? \
                   AND epoch_us(i.first_ts) IS NOT DISTINCT FROM ? AND epoch_us(i.last_ts) IS NOT DISTINCT FROM ? \
                   AND EXISTS (SELECT 1 FROM {} f WHERE f.import_id = i.import_id)",
                crate::store::quote_ident(table)
            ),
            duckdb::params![
                r.format,
                i64::try_from(r.file_bytes).unwrap_or(i64::MAX),
                i64::try_from(r.packets).unwrap_or(i64::MAX),
                micros(r.first_ts_ns),
                micros(r.last_ts_ns),
            ],
            |row| row.get(0),
        )
        .map_err(Error::sql)
}

fn record_import(store: &Store, r: &ImportReport) -> Result<()> {
    let ts = |ns: Option<i64>| {
        ns.and_then(|n| {
            DateTime::<Utc>::from_timestamp(n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000) as u32)
        })
    };
    let is_zeek = r.format.starts_with("zeek");
    store
        .conn()
        .execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                r.import_id,
                r.path.to_string_lossy().into_owned(),
                r.format,
                Utc::now(),
                i64::try_from(r.file_bytes).unwrap_or(i64::MAX),
                if is_zeek {
                    None
                } else {
                    Some(i64::try_from(r.packets).unwrap_or(i64::MAX))
                },
                i64::try_from(r.flows).unwrap_or(i64::MAX),
                i64::try_from(r.skipped).unwrap_or(i64::MAX),
                ts(r.first_ts_ns),
                ts(r.last_ts_ns),
                r.elapsed.as_secs_f64(),
                r.complete,
                r.notes_text()
            ],
        )
        .map_err(Error::sql)?;
    Ok(())
}

/// Opens the import of a live capture: its `imports` row is written at once (complete = false
/// until [`end_live_import`]), so the flows stored while it runs point at a row that says what
/// they came from. `source` names the capture (`live:IFACE`).
pub fn start_live_import(store: &Store, source: &str, opts: &PcapOptions) -> Result<i64> {
    check_writable(store)?;
    sink::ensure_flow_table(store, &opts.table)?;
    store.in_transaction(|_| {
        let import_id = next_import_id(store)?;
        let report = ImportReport {
            import_id,
            path: PathBuf::from(source),
            format: "live".to_string(),
            complete: false,
            notes: vec!["capturing".to_string()],
            ..Default::default()
        };
        record_import(store, &report)?;
        Ok(import_id)
    })
}

/// Stores one batch of a live capture in a transaction of its own, so its rows are visible
/// (to a server's clients) as soon as it is stored. Returns the flows it held.
pub fn store_live_batch(store: &Store, opts: &PcapOptions, import_id: i64, source: &str, batch: Batch) -> Result<u64> {
    store.in_transaction(|_| match batch {
        Batch::Flows(arrays) => {
            let n = arrays.len() as u64;
            let mut writer = TableWriter::new(store, &opts.table)?;
            writer.write(arrays.into_batch(&opts.table, import_id, source)?)?;
            writer.finish()?;
            Ok(n)
        }
        Batch::Packets(rows) => {
            if opts.packets {
                let mut writer = TableWriter::new(store, "packets")?;
                writer.write(sink::packet_batch(import_id, &rows)?)?;
                writer.finish()?;
            }
            Ok(0)
        }
        Batch::Tunnels(lines) => {
            let mut writer = TableWriter::new(store, "tunnels")?;
            writer.write(sink::tunnel_batch(import_id, &lines)?)?;
            writer.finish()?;
            Ok(0)
        }
    })
}

/// Completes the `imports` row [`start_live_import`] wrote, with what the capture did.
pub fn end_live_import(store: &Store, r: &ImportReport) -> Result<()> {
    let ts = |ns: Option<i64>| {
        ns.and_then(|n| {
            DateTime::<Utc>::from_timestamp(n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000) as u32)
        })
    };
    store
        .conn()
        .execute(
            "UPDATE imports SET imported_at = ?, file_bytes = ?, packets = ?, flows = ?, skipped = ?, first_ts = ?, \
             last_ts = ?, elapsed_s = ?, complete = ?, notes = ? WHERE import_id = ?",
            duckdb::params![
                Utc::now(),
                i64::try_from(r.file_bytes).unwrap_or(i64::MAX),
                i64::try_from(r.packets).unwrap_or(i64::MAX),
                i64::try_from(r.flows).unwrap_or(i64::MAX),
                i64::try_from(r.skipped).unwrap_or(i64::MAX),
                ts(r.first_ts_ns),
                ts(r.last_ts_ns),
                r.elapsed.as_secs_f64(),
                r.complete,
                r.notes_text(),
                r.import_id
            ],
        )
        .map_err(Error::sql)?;
    Ok(())
}

/// Imports capture files, each as its own import. Stops at the first file that cannot be
/// imported (files before it stay imported). `ahead`: the first file, already being read.
/// `verify_checksums`: see [`PcapImport::verify_checksums`].
fn import_pcaps(
    store: &Store,
    files: &[PathBuf],
    opts: &PcapOptions,
    verify_checksums: bool,
    progress: &mut Progress,
    mut ahead: Option<Reading>,
) -> Result<Vec<ImportReport>> {
    check_writable(store)?;
    sink::ensure_flow_table(store, &opts.table)?;
    let mut reports = Vec::new();
    for path in files {
        let reading = match ahead.take().filter(|r| r.path == *path) {
            Some(reading) => reading,
            None => Reading::start(path, opts, verify_checksums)?,
        };
        progress.start(path, reading.file_bytes);
        let result = store.in_transaction(|_| {
            let import_id = next_import_id(store)?;
            let mut report = store_capture(store, reading, import_id, opts, progress)?;
            if let Some(earlier) = same_capture_imported_before(store, &report, &opts.table)? {
                report.warnings.push(format!(
                    "the same capture as import {earlier} (same format, size, packets and times): its flows \
                     are now in {} twice; `DELETE FROM {} WHERE import_id = {import_id}` takes this copy out",
                    opts.table, opts.table
                ));
            }
            record_import(store, &report)?;
            Ok(report)
        });
        progress.done();
        let report = result?;
        if let Some(stop) = &report.stopped {
            progress.warn(&format!(
                "{}: reading stopped at byte offset {}: {}; the {} complete packets before it were imported",
                path.display(),
                stop.offset,
                stop.reason,
                report.packets
            ));
        }
        for warning in &report.warnings {
            progress.warn(&format!("{}: {warning}", path.display()));
        }
        progress.summary(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// Counts of packets that joined no flow, by reason.
#[derive(Debug, Default)]
struct Skips {
    not_ip: u64,
    other_ip: u64,
    fragments: u64,
    broken: u64,
    zero_length: u64,
    unsupported: Vec<(u32, u64)>,
    /// Frames whose packets came out of tunnels, by the outermost tunnel's kind.
    tunneled: Vec<(Tunnel, u64)>,
    /// Tunnels whose packets were not followed: (why, example detail, frames).
    tunnel_stops: Vec<(&'static str, String, u64)>,
}

impl Skips {
    /// Counts what became of a frame: a skip reason when none of its packets joined a flow,
    /// and what its tunnels did.
    fn count(&mut self, walked: &Walked, linktype: u32, empty: bool) {
        if walked.depth > 0 {
            // The outermost tunnel names the frame; it is rarely more than one kind per capture.
            let kind = walked.outermost_tunnel.unwrap_or(Tunnel::Ip);
            match self.tunneled.iter_mut().find(|(t, _)| *t == kind) {
                Some((_, n)) => *n += 1,
                None => self.tunneled.push((kind, 1)),
            }
        }
        if let Some(stop) = walked.stopped {
            let (why, detail) = match stop {
                TunnelStop::Malformed(t, why) => ("malformed tunnel headers", format!("{}: {why}", t.name())),
                TunnelStop::Cut(t) => ("tunnel payloads cut by the snap length", t.name().to_string()),
                TunnelStop::TooDeep(t) => (
                    "packets inside more tunnels than Zeek's Tunnel::max_depth (2)",
                    t.name().to_string(),
                ),
                TunnelStop::BrokenInner(t, why) => ("malformed packets inside tunnels", format!("{}: {why}", t.name())),
            };
            match self.tunnel_stops.iter_mut().find(|(w, _, _)| *w == why) {
                Some((_, _, n)) => *n += 1,
                None => self.tunnel_stops.push((why, detail, 1)),
            }
        }
        if walked.flow.is_some() {
            return;
        }
        if walked.held_fragment {
            self.fragments += 1;
            return;
        }
        match walked.innermost {
            Decoded::Ip(ip) if ip.later_fragment => self.fragments += 1,
            Decoded::Ip(_) => self.other_ip += 1,
            Decoded::NotIp(_) => self.not_ip += 1,
            Decoded::UnsupportedLink => match self.unsupported.iter_mut().find(|(lt, _)| *lt == linktype) {
                Some((_, n)) => *n += 1,
                None => self.unsupported.push((linktype, 1)),
            },
            Decoded::Broken(_) => {
                self.broken += 1;
                if empty {
                    self.zero_length += 1;
                }
            }
        }
    }

    fn total(&self) -> u64 {
        self.not_ip
            + self.other_ip
            + self.fragments
            + self.broken
            + self.unsupported.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Notes for `imports.notes`: ordinary traffic that forms no flow (ARP, other IP
    /// protocols, later fragments) first, then what deserves a warning.
    fn notes(&self) -> (Vec<String>, Vec<String>) {
        let mut notes = Vec::new();
        if self.not_ip > 0 {
            notes.push(format!(
                "{} frames were not IP (ARP, LLC, ...) and joined no flow",
                self.not_ip
            ));
        }
        if self.other_ip > 0 {
            notes.push(format!(
                "{} IP packets of protocols other than TCP/UDP/ICMP joined no flow",
                self.other_ip
            ));
        }
        if self.fragments > 0 {
            notes.push(format!(
                "{} IP fragments joined no flow themselves: a reassembled datagram counts once, with the fragment that completed it; fragments of datagrams never completed, or cut by the snap length, count nowhere",
                self.fragments
            ));
        }
        for (tunnel, n) in &self.tunneled {
            notes.push(format!(
                "{n} frames carried packets in {} tunnels: the inner packets are flows of their own, with tunnel_parents",
                tunnel.name()
            ));
        }
        let mut warnings = Vec::new();
        for (why, example, n) in &self.tunnel_stops {
            warnings.push(format!(
                "{n} frames had {why} and their inner packets were not followed (first: {example})"
            ));
        }
        if self.broken > 0 {
            let zero = if self.zero_length > 0 {
                format!(" ({} of them zero-length)", self.zero_length)
            } else {
                String::new()
            };
            warnings.push(format!(
                "{} packets were too short or malformed to decode{zero}",
                self.broken
            ));
        }
        for (lt, n) in &self.unsupported {
            warnings.push(format!(
                "{n} packets on unsupported link type {} were skipped (supported: {})",
                linktype_name(*lt),
                decode::SUPPORTED_LINKTYPES
            ));
        }
        (notes, warnings)
    }
}

/// What the parsing thread hands to the storing one. The reading thread puts the flows into
/// columns, which takes that work off the storing thread: it opens the database, turns the
/// columns into DuckDB's vectors and flushes them, and the end of an import waits on it.
///
/// Only rows take places in the channel. How far the reader is goes through
/// [`Reading::position`]: when it was a message every 8 192 packets, those messages filled the
/// four places, and the reader could get only 32 768 packets ahead of a store that was busy
/// opening the database or flushing (measured in bench/RESULTS.md, "pcap import").
pub enum Batch {
    /// Finished flows, each batch in order of their first packet.
    Flows(Box<FlowArrays>),
    Packets(Vec<PacketRow>),
    /// Lines of Zeek's tunnel.log, for `tunnels`.
    Tunnels(Vec<TunnelRecord>),
}

/// What the reader thread shares with its [`Reading`] besides the channel.
struct ReaderWatch {
    position: Arc<AtomicU64>,
    abandoned: Arc<AtomicBool>,
}

/// How often the storing thread looks at the reader's position when no rows come, for the
/// progress bar.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Bytes a capture is read in. The kernel copies each read from the page cache into this
/// buffer and the reading thread then reads it back; between two reads that thread also walks
/// its flow table. A buffer of 64 KiB is still in the core's cache when the next read writes
/// it; one of 128 KiB or more was written out to memory and read back, and the copy took
/// several times as long (bench/RESULTS.md, stop 42).
const READ_BUFFER: usize = 64 << 10;

/// One capture being read on a thread of its own, which decodes the packets and assembles the
/// flows; the finished flows and packet rows come out of a bounded channel, so a slow store
/// makes the reader wait and memory stays flat. Dropping it stops the reader within 8 192
/// packets.
struct Reading {
    path: PathBuf,
    file_bytes: u64,
    started: Instant,
    batches: Option<std::sync::mpsc::Receiver<Batch>>,
    /// Bytes of the file the reader has read, updated every 8 192 packets.
    position: Arc<AtomicU64>,
    /// Set when the rows will not be read: a reader whose flows seldom finish would not find the
    /// channel closed for a long time (one long connection sends nothing until the end).
    abandoned: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<Result<ImportReport>>>,
}

impl Reading {
    /// Opens the capture and starts reading it (`verify_checksums`: see
    /// [`PcapImport::verify_checksums`]). Fails when the file cannot be opened or is not a
    /// capture.
    fn start(path: &Path, opts: &PcapOptions, verify_checksums: bool) -> Result<Reading> {
        let started = Instant::now();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
        if metadata.is_dir() {
            return Err(Error::Import {
                path: path.to_path_buf(),
                reason: "it is a directory, not a capture file".to_string(),
            });
        }
        let reader = CaptureReader::open(BufReader::with_capacity(READ_BUFFER, file)).map_err(|e| match e {
            OpenError::Io(e) => Error::io(path, e),
            OpenError::Empty => Error::NotACapture {
                path: path.to_path_buf(),
                hint: "the file is empty".to_string(),
            },
            OpenError::NotACapture { hint } => Error::NotACapture {
                path: path.to_path_buf(),
                hint,
            },
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        let position = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicBool::new(false));
        let (owned_path, opts) = (path.to_path_buf(), opts.clone());
        let watch = ReaderWatch {
            position: Arc::clone(&position),
            abandoned: Arc::clone(&abandoned),
        };
        // A server's client cancelling stops the reader as Ctrl-C does.
        let call = interrupt::carry();
        let reader = std::thread::Builder::new()
            .name("netlens-reader".to_string())
            .spawn(move || {
                let _call = call.enter();
                parse_capture(reader, &owned_path, &opts, verify_checksums, tx, &watch)
            })
            .map_err(|e| Error::io(path, e))?;
        Ok(Reading {
            path: path.to_path_buf(),
            file_bytes: metadata.len(),
            started,
            batches: Some(rx),
            position,
            abandoned,
            reader: Some(reader),
        })
    }

    /// Waits for the reader to end, and takes what it found.
    fn finish(&mut self) -> Result<ImportReport> {
        self.batches = None;
        let reader = self.reader.take().ok_or_else(|| Error::Import {
            path: self.path.clone(),
            reason: "the capture was read already".to_string(),
        })?;
        reader.join().map_err(|_| Error::Import {
            path: self.path.clone(),
            reason: "the packet reader stopped unexpectedly (a bug: please report it with the file)".to_string(),
        })?
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        // Telling the reader and closing the channel before joining it: a reader waiting to hand
        // over a batch stops at once, one still reading within 8 192 packets.
        self.abandoned.store(true, Ordering::Relaxed);
        self.batches = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// `netlens import pcap` starts reading its first capture before the database is open: the
/// reading needs nothing from the database, and opening it (DuckDB's start, the file's
/// catalog) is the longest thing a short import waits for.
pub struct ReadAhead(Reading);

impl ReadAhead {
    /// Starts reading the first capture of an `import pcap` command; `None` for any other
    /// command, or when the capture cannot be read (the import reports why when it runs). Only
    /// a regular file is read ahead: a pipe or FIFO could keep the reader waiting after the
    /// database failed to open, and what it gave would be lost.
    pub fn start(request: &ImportRequest) -> Option<ReadAhead> {
        let ImportRequest::Pcap(args) = request else {
            return None;
        };
        let first = args.files.first()?;
        if !std::fs::metadata(first).is_ok_and(|m| m.is_file()) {
            return None;
        }
        let opts = pcap_options(args).ok()?;
        Reading::start(first, &opts, args.verify_checksums).ok().map(ReadAhead)
    }
}

/// Stores what a [`Reading`] finds: the caller's thread appends the columns the reader built
/// while the reader goes on. The caller holds the transaction.
fn store_capture(
    store: &Store,
    mut reading: Reading,
    import_id: i64,
    opts: &PcapOptions,
    progress: &Progress,
) -> Result<ImportReport> {
    let source = reading.path.to_string_lossy().into_owned();
    let mut flow_writer = TableWriter::new(store, &opts.table)?;
    let mut packet_writer = opts.packets.then(|| TableWriter::new(store, "packets")).transpose()?;
    let mut tunnel_writer = TableWriter::new(store, "tunnels")?;
    let mut flows = 0u64;
    let batches = reading.batches.take().ok_or_else(|| Error::Import {
        path: reading.path.clone(),
        reason: "the capture was read already".to_string(),
    })?;
    loop {
        let batch = match batches.recv_timeout(PROGRESS_EVERY) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => {
                progress.position(reading.position.load(Ordering::Relaxed));
                continue;
            }
            // The reader has ended, with the rows all sent or with an error `finish` returns.
            Err(RecvTimeoutError::Disconnected) => break,
        };
        progress.position(reading.position.load(Ordering::Relaxed));
        match batch {
            Batch::Flows(arrays) => {
                flows += arrays.len() as u64;
                flow_writer.write(arrays.into_batch(&opts.table, import_id, &source)?)?;
            }
            Batch::Packets(rows) => {
                if let Some(w) = packet_writer.as_mut() {
                    w.write(sink::packet_batch(import_id, &rows)?)?;
                }
            }
            Batch::Tunnels(lines) => tunnel_writer.write(sink::tunnel_batch(import_id, &lines)?)?,
        }
    }
    let mut report = reading.finish()?;
    flow_writer.finish()?;
    tunnel_writer.finish()?;
    if let Some(w) = packet_writer {
        w.finish()?;
    }
    report.import_id = import_id;
    report.flows = flows;
    report.elapsed = reading.started.elapsed();
    Ok(report)
}

/// The reading side of [`Reading`]: every packet through the [`FlowAssembly`], finished flows
/// and packet rows out in batches. Stops early when the store side is gone.
fn parse_capture<R: BufRead>(
    mut reader: CaptureReader<R>,
    path: &Path,
    opts: &PcapOptions,
    verify_checksums: bool,
    tx: std::sync::mpsc::SyncSender<Batch>,
    watch: &ReaderWatch,
) -> Result<ImportReport> {
    // The store side only drops its end after an error, which it reports itself.
    let gone = || Error::Import {
        path: path.to_path_buf(),
        reason: "storing stopped".to_string(),
    };
    let mut report = ImportReport {
        path: path.to_path_buf(),
        format: reader.format().as_str().to_string(),
        complete: true,
        ..Default::default()
    };
    let mut assembly = FlowAssembly::new(opts);
    assembly.verify_checksums(verify_checksums);
    assembly.columns_on_thread(&tx).map_err(|e| Error::io(path, e))?;
    loop {
        let next = reader.next_packet().map_err(|e| Error::io(path, e))?;
        let p = match next {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(stop) => {
                report.complete = false;
                report.stopped = Some(stop);
                break;
            }
        };
        report.packets += 1;
        assembly.packet(p.number, p.ts_ns, p.orig_len, p.linktype, p.data);
        assembly.send_full(&tx).map_err(|_| gone())?;
        if report.packets.is_multiple_of(8192) {
            watch.position.store(reader.offset(), Ordering::Relaxed);
            if interrupt::requested() {
                return Err(Error::Interrupted);
            }
            if watch.abandoned.load(Ordering::Relaxed) {
                return Err(gone());
            }
        }
    }
    assembly.finish_all();
    assembly.send_all(&tx).map_err(|_| gone())?;
    assembly.finish_columns();
    report.file_bytes = reader.offset();
    assembly.fill_report(&mut report);
    Ok(report)
}

/// The flow engine shared by `import pcap` and live capture (`capture --packets`): each packet
/// decoded and put into the flow table, finished flows turned into columns, and (when asked)
/// one packet row each, gathered into [`Batch`]es for the storing side.
pub struct FlowAssembly {
    table: FlowTable,
    columns: FlowColumns,
    /// Orders finished flows and puts them into columns instead of `columns`, when started.
    columns_thread: Option<ColumnsThread>,
    skips: Skips,
    packet_rows: bool,
    packets: Vec<PacketRow>,
    first_ts_ns: Option<i64>,
    last_ts_ns: Option<i64>,
    peak_active_flows: usize,
}

impl FlowAssembly {
    pub fn new(opts: &PcapOptions) -> Self {
        FlowAssembly {
            table: FlowTable::new(opts.timeouts, 0),
            columns: FlowColumns::default(),
            columns_thread: None,
            skips: Skips::default(),
            packet_rows: opts.packets,
            packets: Vec::new(),
            first_ts_ns: None,
            last_ts_ns: None,
            peak_active_flows: 0,
        }
    }

    /// One captured frame: `number` counts from 1 in its capture, `orig_len` is the frame's
    /// length on the wire, `data` what was captured of it.
    #[inline]
    pub fn packet(&mut self, number: u64, ts_ns: i64, orig_len: u32, linktype: u32, data: &[u8]) {
        self.first_ts_ns = Some(self.first_ts_ns.map_or(ts_ns, |t| t.min(ts_ns)));
        self.last_ts_ns = Some(self.last_ts_ns.map_or(ts_ns, |t| t.max(ts_ns)));
        let table = &mut self.table;
        let skips = &mut self.skips;
        #[allow(clippy::unnecessary_lazy_evaluations)]
        let mut row = self.packet_rows.then(|| PacketRow {
            packet_no: number,
            ts_ns,
            src: None,
            src_p: None,
            dst: None,
            dst_p: None,
            proto: PacketProto::Broken,
            ip_proto: None,
            frame_len: orig_len,
            cap_len: data.len() as u32,
            ip_len: None,
            payload_len: None,
            tcp_flags: None,
            flow_uid: None,
            from_orig: None,
        });
        // The packets of an A-MSDU after its first, each a row of its own (no allocation for
        // any other frame).
        let mut later = Vec::new();
        let walked = if row.is_some() {
            table.frame_each(number, ts_ns, orig_len, linktype, data, &mut later)
        } else {
            table.frame(number, ts_ns, orig_len, linktype, data)
        };
        skips.count(&walked, linktype, data.is_empty());
        // The later packets' rows start from the frame's columns alone.
        let pristine = row.as_ref().filter(|_| !later.is_empty()).cloned();
        if let Some(row) = row.as_mut() {
            match (walked.flow, walked.innermost) {
                (Some((ip, uid, from_orig)), _) => {
                    row.fill_ip(&ip);
                    row.flow_uid = Some(uid);
                    row.from_orig = Some(from_orig);
                }
                (None, Decoded::Ip(ip)) => row.fill_ip(&ip),
                (None, Decoded::NotIp(t)) => row.proto = PacketProto::EtherType(t),
                (None, Decoded::UnsupportedLink) => row.proto = PacketProto::UnsupportedLink,
                (None, Decoded::Broken(_)) => {}
            }
        }
        if let Some(row) = row {
            self.packets.push(row);
        }
        if let Some(pristine) = pristine {
            for (ip, uid, from_orig) in &later {
                let mut next = pristine.clone();
                next.fill_ip(ip);
                next.flow_uid = Some(*uid);
                next.from_orig = Some(*from_orig);
                self.packets.push(next);
            }
        }
        self.peak_active_flows = self.peak_active_flows.max(self.table.active());
    }

    /// Orders the finished flows and puts them into columns on a thread of its own, which
    /// sends them on `tx` itself: the reading thread bounds an import's time, and this was about
    /// a fifth of its work. Batches of flows keep their order (one thread takes them in turn).
    pub fn columns_on_thread(&mut self, tx: &SyncSender<Batch>) -> std::io::Result<()> {
        self.columns_thread = Some(ColumnsThread::start(tx)?);
        Ok(())
    }

    /// Sends the finished flows and the packet rows once a whole batch of either is gathered.
    #[inline]
    pub fn send_full(&mut self, tx: &SyncSender<Batch>) -> std::result::Result<(), StoreGone> {
        if self.packets.len() >= PACKET_BATCH {
            tx.send(Batch::Packets(std::mem::take(&mut self.packets)))?;
        }
        if self.table.finished_len() >= FLOW_BATCH {
            self.send_flows(tx)?;
        }
        if self.table.tunnel_log_len() >= TUNNEL_BATCH {
            tx.send(Batch::Tunnels(self.table.take_tunnel_log()))?;
        }
        Ok(())
    }

    /// Sends every finished flow and packet row gathered so far (nothing when there is none).
    pub fn send_all(&mut self, tx: &SyncSender<Batch>) -> std::result::Result<(), StoreGone> {
        if self.table.finished_len() > 0 {
            self.send_flows(tx)?;
        }
        if !self.packets.is_empty() {
            tx.send(Batch::Packets(std::mem::take(&mut self.packets)))?;
        }
        if self.table.tunnel_log_len() > 0 {
            tx.send(Batch::Tunnels(self.table.take_tunnel_log()))?;
        }
        Ok(())
    }

    /// The finished flows, in columns here or through the columns thread.
    fn send_flows(&mut self, tx: &SyncSender<Batch>) -> std::result::Result<(), StoreGone> {
        match &self.columns_thread {
            Some(thread) => thread.send(self.table.take_finished_unordered()),
            None => Ok(tx.send(Batch::Flows(columns_of(&mut self.columns, self.table.take_finished())))?),
        }
    }

    /// Waits for the columns thread (if started) to have sent every batch it was given: dropping
    /// it closes its input and joins it.
    pub fn finish_columns(&mut self) {
        self.columns_thread = None;
    }

    /// Ends the flows idle past their timeouts at capture time `now_ns` (live capture: no
    /// packet may come that is older than `now_ns`).
    pub fn expire_idle(&mut self, now_ns: i64) {
        self.table.expire_idle(now_ns);
    }

    /// Checks checksums as Zeek does without `-C` (see `FlowTable::verify_checksums`).
    pub fn verify_checksums(&mut self, on: bool) {
        self.table.verify_checksums(on);
    }

    /// Ends every active flow (end of the capture).
    pub fn finish_all(&mut self) {
        self.table.finish_all();
    }

    /// Flows held in memory now.
    pub fn active_flows(&self) -> usize {
        self.table.active()
    }

    /// The capture's time span, peak of active flows, skips, notes and warnings.
    pub fn fill_report(&self, report: &mut ImportReport) {
        report.first_ts_ns = self.first_ts_ns;
        report.last_ts_ns = self.last_ts_ns;
        report.peak_active_flows = self.peak_active_flows;
        report.skipped = self.skips.total();
        let (notes, mut warnings) = self.skips.notes();
        if self.table.shed() > 0 {
            warnings.push(format!(
                "{} flows ended early: more than {} flows were active at once, so the ones seen longest ago were closed as if timed out (a later packet of one starts a new flow)",
                self.table.shed(),
                netlens_packets::flow::MAX_ACTIVE_FLOWS
            ));
        }
        report.warnings = warnings;
        report.notes = notes;
    }
}

/// The storing side is gone (it stopped after an error, which it reports itself).
#[derive(Debug)]
pub struct StoreGone;

impl<T> From<SendError<T>> for StoreGone {
    fn from(_: SendError<T>) -> Self {
        StoreGone
    }
}

/// The thread of [`FlowAssembly::columns_on_thread`]: finished flows come in as the flow table
/// gave them up, go out ordered and in columns.
struct ColumnsThread {
    flows: Option<SyncSender<Vec<flow::FlowRecord>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ColumnsThread {
    fn start(out: &SyncSender<Batch>) -> std::io::Result<ColumnsThread> {
        // Two batches may wait: the reader goes on while one is being put into columns.
        let (flows, batches) = std::sync::mpsc::sync_channel::<Vec<flow::FlowRecord>>(2);
        let out = out.clone();
        let thread = std::thread::Builder::new()
            .name("netlens-columns".to_string())
            .spawn(move || {
                let mut columns = FlowColumns::default();
                for mut batch in batches {
                    flow::order_finished(&mut batch);
                    if out.send(Batch::Flows(columns_of(&mut columns, batch))).is_err() {
                        // The store is gone; the reader finds out at its next send.
                        return;
                    }
                }
            })?;
        Ok(ColumnsThread {
            flows: Some(flows),
            thread: Some(thread),
        })
    }

    fn send(&self, batch: Vec<flow::FlowRecord>) -> std::result::Result<(), StoreGone> {
        match &self.flows {
            Some(flows) => Ok(flows.send(batch)?),
            None => Err(StoreGone),
        }
    }
}

impl Drop for ColumnsThread {
    /// Closes its input and waits until it has sent what it was given (or found the store
    /// gone).
    fn drop(&mut self) {
        self.flows = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Imports Zeek conn.log files (TSV or JSON) into `flows`, each file its own import.
pub fn import_zeek_logs(store: &Store, files: &[PathBuf], progress: &mut Progress) -> Result<Vec<ImportReport>> {
    check_writable(store)?;
    let mut reports = Vec::new();
    for path in files {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        progress.start(path, size);
        let result = store.in_transaction(|_| {
            let import_id = next_import_id(store)?;
            let report = zeek::import_log(
                store,
                BufReader::with_capacity(1 << 20, file),
                path,
                import_id,
                progress,
            )?;
            record_import(store, &report)?;
            Ok(report)
        });
        progress.done();
        let report = result?;
        for warning in &report.warnings {
            progress.warn(&format!("{}: {warning}", path.display()));
        }
        progress.summary(&report);
        reports.push(report);
    }
    Ok(reports)
}

fn columns_of(columns: &mut FlowColumns, flows: Vec<flow::FlowRecord>) -> Box<FlowArrays> {
    for flow in &flows {
        columns.push_record(flow);
    }
    Box::new(columns.finish_arrays())
}

/// Runs reader, decoder and flow assembly over arbitrary bytes without a store: the fuzz
/// target's entry point. Returns (packets, flows); must never panic.
pub fn fuzz_capture(bytes: &[u8]) -> (u64, u64) {
    let Ok(mut reader) = CaptureReader::open(bytes) else {
        return (0, 0);
    };
    let mut table = FlowTable::new(Timeouts::default(), 0);
    let (mut packets, mut flows) = (0u64, 0u64);
    while let Ok(Ok(Some(p))) = reader.next_packet() {
        packets += 1;
        let _ = table.frame(p.number, p.ts_ns, p.orig_len, p.linktype, p.data);
        flows += table.take_finished().len() as u64;
    }
    table.finish_all();
    // The last flows also go through the columns the store would get.
    let mut columns = FlowColumns::default();
    for flow in table.take_finished() {
        columns.push_record(&flow);
        flows += 1;
    }
    let _ = columns.finish("flows", 1, "fuzz");
    (packets, flows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    /// The `i`-th SYN of [`syn_capture`]: from 10.0.x.y:1000 to 10.1.0.1:80, a flow of its own.
    fn syn_frame(i: u32) -> Vec<u8> {
        decode::build::tcp4(
            [10, 0, (i >> 8) as u8, i as u8].into(),
            1000,
            [10, 1, 0, 1].into(),
            80,
            i,
            0,
            0x02,
            0,
        )
    }

    /// A capture of `n` one-packet TCP flows, 1 ms apart.
    fn syn_capture(path: &Path, n: u32) {
        let mut bytes = Vec::new();
        reader::write::pcap_header(&mut bytes, 1, 65535).unwrap();
        for i in 0..n {
            let f = syn_frame(i);
            reader::write::pcap_record(&mut bytes, i64::from(i) * 1_000_000, f.len() as u32, &f).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// The columns thread gives the batches of flows the reading thread made itself: the same
    /// rows, in the same order. The flows are SYNs left unanswered, so most end in sweeps of
    /// the flow table (in its hash order) and must be put in order on that thread.
    #[test]
    fn flows_put_into_columns_on_a_thread_are_those_put_into_columns_inline() {
        let ImportRequest::Pcap(args) = pcap_args(&[]) else {
            unreachable!("pcap_args makes a pcap import")
        };
        let opts = pcap_options(&args).unwrap();
        let run = |threaded: bool| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(64);
            let mut assembly = FlowAssembly::new(&opts);
            if threaded {
                assembly.columns_on_thread(&tx).unwrap();
            }
            for i in 0..20_000u32 {
                let f = syn_frame(i);
                assembly.packet(u64::from(i) + 1, i64::from(i) * 1_000_000, f.len() as u32, 1, &f);
                assembly.send_full(&tx).unwrap();
            }
            assembly.finish_all();
            assembly.send_all(&tx).unwrap();
            assembly.finish_columns();
            drop(tx);
            rx.into_iter()
                .filter_map(|b| match b {
                    Batch::Flows(arrays) => Some(arrays.into_batch("flows", 1, "f.pcap").unwrap()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let (inline, threaded) = (run(false), run(true));
        assert!(
            inline.len() >= 2,
            "{} batches: too few to show their order",
            inline.len()
        );
        assert_eq!(inline.iter().map(|b| b.num_rows()).sum::<usize>(), 20_000);
        assert_eq!(inline, threaded);
    }

    fn pcap_args(files: &[&Path]) -> ImportRequest {
        ImportRequest::Pcap(PcapImport {
            files: files.iter().map(|f| f.to_path_buf()).collect(),
            table: "flows".to_string(),
            packets: false,
            idle_timeout: None,
            tcp_timeout: None,
            udp_timeout: None,
            icmp_timeout: None,
            verify_checksums: false,
        })
    }

    /// Writes `frames` (link type `link`, one a second) to a classic pcap at `path` and imports it
    /// with `packets` rows into an in-memory store.
    fn import_with_packet_rows(path: &std::path::Path, link: u32, frames: &[&[u8]]) -> Store {
        let mut bytes = Vec::new();
        reader::write::pcap_header(&mut bytes, link, 65535).unwrap();
        for (i, f) in frames.iter().enumerate() {
            reader::write::pcap_record(&mut bytes, i as i64 * 1_000_000, f.len() as u32, f).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
        let store = Store::open(&Location::Memory, false).unwrap();
        let ImportRequest::Pcap(mut args) = pcap_args(&[path]) else {
            unreachable!()
        };
        args.packets = true;
        run(&store, ImportRequest::Pcap(args), &mut Progress::silent(), None).unwrap();
        store
    }

    /// Each packet of an 802.11 A-MSDU gets a `packets` row of its own, with the frame's number
    /// and lengths and its own flow (a regression: only the first had one).
    #[test]
    fn every_packet_of_an_a_msdu_gets_a_packet_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("amsdu.pcap");
        let udp =
            |sport: u16| decode::build::udp4([10, 9, 0, 1].into(), sport, [10, 9, 0, 2].into(), 53, 10)[14..].to_vec();
        let (a, b, c) = (udp(1000), udp(2000), udp(3000));
        let amsdu = decode::build::ieee802_11_amsdu(&[&a, &b, &c]);
        let single = decode::build::ieee802_11_amsdu(&[&udp(4000)]);
        let store = import_with_packet_rows(&path, 105, &[&amsdu, &single]);
        let rows: String = store
            .conn()
            .query_row(
                "SELECT string_agg(p.packet_no || ':' || p.src_p || ':' || p.frame_len || ':' || p.proto || ':' \
                 || (p.flow_uid = f.uid), ' ' ORDER BY p.packet_no, p.src_p) \
                 FROM packets p LEFT JOIN flows f ON f.uid = p.flow_uid",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let len = amsdu.len();
        assert_eq!(
            rows,
            format!(
                "1:1000:{len}:udp:true 1:2000:{len}:udp:true 1:3000:{len}:udp:true 2:4000:{}:udp:true",
                single.len()
            )
        );
    }

    /// The packets of an A-MSDU inside a reassembled IP datagram (Aruba's GRE, fragmented)
    /// each get a `packets` row too, with their own flow, described by the completing
    /// fragment (a regression: only the first had one).
    #[test]
    fn every_packet_of_an_a_msdu_in_fragments_gets_a_packet_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("amsdu_frag.pcap");
        let udp =
            |sport: u16| decode::build::udp4([10, 9, 0, 1].into(), sport, [10, 9, 0, 2].into(), 53, 40)[14..].to_vec();
        let (a, b, c) = (udp(1000), udp(2000), udp(3000));
        let amsdu = decode::build::ieee802_11_amsdu(&[&a, &b, &c]);
        let gre = decode::build::ipv4(
            [198, 51, 100, 1].into(),
            [198, 51, 100, 2].into(),
            47,
            &decode::build::gre(0x8200, &amsdu),
        );
        let frags = decode::build::fragments4(&gre, 9, &[64]);
        let frames: Vec<&[u8]> = frags.iter().map(|f| f.as_slice()).collect();
        let store = import_with_packet_rows(&path, 1, &frames);
        let rows: String = store
            .conn()
            .query_row(
                "SELECT string_agg(p.packet_no || ':' || p.ip_proto || ':' || p.frame_len || ':' || coalesce(f.orig_p, 0), \
                 ' ' ORDER BY p.packet_no, f.orig_p) FROM packets p LEFT JOIN flows f ON f.uid = p.flow_uid",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let len = frags[1].len();
        assert_eq!(
            rows,
            format!(
                "1:47:{}:0 2:47:{len}:1000 2:47:{len}:2000 2:47:{len}:3000",
                frags[0].len()
            )
        );
    }

    /// The capture read ahead is the one imported, once, and its rows are the same as without
    /// reading ahead.
    #[test]
    fn a_capture_read_ahead_is_imported_as_without() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
        syn_capture(&a, 3000);
        syn_capture(&b, 10);
        let plain = Store::open(&Location::Memory, false).unwrap();
        run(&plain, pcap_args(&[&a, &b]), &mut Progress::silent(), None).unwrap();
        let args = pcap_args(&[&a, &b]);
        let ahead = ReadAhead::start(&args).expect("reading ahead");
        // The reader has the file open: the import can only have read it through the read-ahead.
        std::fs::remove_file(&a).unwrap();
        let store = Store::open(&Location::Memory, false).unwrap();
        run(&store, args, &mut Progress::silent(), Some(ahead)).unwrap();
        let summary = |s: &Store| -> String {
            s.conn()
                .query_row(
                    "SELECT string_agg(source_file || ':' || n || ':' || bytes, ' ' ORDER BY source_file) FROM \
                     (SELECT source_file, count(*) AS n, sum(orig_ip_bytes) AS bytes FROM flows GROUP BY ALL)",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(summary(&store), summary(&plain));
        assert!(summary(&store).contains("a.pcap:3000:"), "{}", summary(&store));
        let imports: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM imports", [], |r| r.get(0))
            .unwrap();
        assert_eq!(imports, 2);
    }

    /// Nothing to read ahead for other commands or a file that is not a capture: the import
    /// then reports the error as before.
    #[test]
    fn nothing_is_read_ahead_that_the_import_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pcap");
        std::fs::write(&junk, b"not a capture at all, just some words").unwrap();
        assert!(ReadAhead::start(&pcap_args(&[&junk])).is_none());
        assert!(ReadAhead::start(&pcap_args(&[&dir.path().join("absent.pcap")])).is_none());
        // Nor anything but a regular file (a FIFO could keep the reader waiting).
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path and creates one FIFO.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(ReadAhead::start(&pcap_args(&[&fifo])).is_none());
        let store = Store::open(&Location::Memory, false).unwrap();
        let err = run(&store, pcap_args(&[&junk]), &mut Progress::silent(), None).unwrap_err();
        assert!(matches!(err, Error::NotACapture { .. }), "{err}");
    }

    /// A reading dropped unread (the database failed to open, or is read-only) stops its thread
    /// at its next batch (here the channel is full) instead of reading the whole file.
    #[test]
    fn a_reading_dropped_unread_stops() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pcap");
        syn_capture(&big, 200_000);
        let reading = Reading::start(&big, &PcapOptions::default(), false).unwrap();
        // Give the reader time to fill the channel and wait on it: joining it before closing
        // the channel would then wait for ever.
        std::thread::sleep(Duration::from_millis(200));
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(reading);
            let _ = done.send(());
        });
        assert!(
            dropped.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the reader did not stop"
        );
    }

    /// A reading dropped while its flows do not finish (one long connection, so the reader has
    /// nothing to send and never finds the channel closed) stops within 8 192 packets instead of
    /// reading the whole file.
    #[test]
    fn a_reading_dropped_during_one_long_flow_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("long.pcap");
        // Big enough that the test thread, however late it gets to the drop, does not let the
        // reader through half of it first (about 0.2 s of reading).
        let packets = 600_000u32;
        let mut bytes = Vec::new();
        reader::write::pcap_header(&mut bytes, 1, 65535).unwrap();
        for i in 0..packets {
            let f = decode::build::tcp4([10, 0, 0, 1].into(), 1000, [10, 0, 0, 2].into(), 80, i, 0, 0x10, 0);
            reader::write::pcap_record(&mut bytes, i64::from(i) * 1_000, f.len() as u32, &f).unwrap();
        }
        std::fs::write(&long, &bytes).unwrap();
        let reading = Reading::start(&long, &PcapOptions::default(), false).unwrap();
        let reached = Arc::clone(&reading.position);
        drop(reading);
        let read = reached.load(Ordering::Relaxed);
        assert!(
            read < bytes.len() as u64 / 2,
            "the reader went on to byte {read} of {}",
            bytes.len()
        );
    }

    /// A small deterministic mutation fuzzer, so every `cargo test` run also throws damaged
    /// captures at the parser (cargo-fuzz in fuzz/ does the long runs).
    #[test]
    fn damaged_captures_never_panic() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pcaps");
        let mut seeds: Vec<Vec<u8>> = ["nmap_tcp_syn_scan.pcap", "normal_http_espn.pcapng"]
            .iter()
            .filter_map(|n| std::fs::read(shared.join(n)).ok())
            .collect();
        let mut synthetic = Vec::new();
        reader::write::pcap_header(&mut synthetic, 1, 65535).unwrap();
        for i in 0..50u32 {
            let f = decode::build::tcp4(
                [10, 0, 0, 1].into(),
                1000,
                [10, 0, 0, 2].into(),
                80,
                i,
                0,
                0x02,
                i as usize,
            );
            reader::write::pcap_record(&mut synthetic, i64::from(i), f.len() as u32, &f).unwrap();
        }
        seeds.push(synthetic);
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            let (packets, _) = fuzz_capture(seed);
            assert!(packets > 0);
            for _ in 0..150 {
                let mut m = seed.clone();
                for _ in 0..1 + rand() % 8 {
                    let at = (rand() as usize) % m.len();
                    m[at] = rand() as u8;
                }
                if rand() % 3 == 0 {
                    let cut = (rand() as usize) % m.len();
                    m.truncate(cut);
                }
                let _ = fuzz_capture(&m);
            }
        }
    }
}
