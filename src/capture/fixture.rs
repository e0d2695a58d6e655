//! Recorded snapshots: one JSON object per line (`capture --record FILE` writes them,
//! `capture --replay FILE` reads them back). Replays keep the recorded times and host, so a
//! recording from one machine can be analysed on another and tests run without a live OS.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use netlens_parsers::snapshot::{parse_line, MAX_LINE};

use super::{Snapshot, Source};
use crate::error::{Error, Result};
use crate::files::LineRead;

/// Replays snapshots from a JSON-lines file.
pub struct FixtureSource {
    path: PathBuf,
    input: BufReader<File>,
    line: Vec<u8>,
    line_no: usize,
}

impl FixtureSource {
    /// Opens a recording.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(FixtureSource {
            path: path.to_path_buf(),
            input: BufReader::new(file),
            line: Vec::new(),
            line_no: 0,
        })
    }
}

impl Source for FixtureSource {
    fn name(&self) -> &'static str {
        "fixture"
    }

    fn snapshot(&mut self, _now: DateTime<Utc>) -> Result<Option<Snapshot>> {
        loop {
            let read = crate::files::read_line_within(&mut self.input, &mut self.line, MAX_LINE)
                .map_err(|e| Error::io(&self.path, e))?;
            self.line_no += 1;
            match read {
                LineRead::End => return Ok(None),
                LineRead::Line(_) => {}
                LineRead::TooLong => {
                    return Err(Error::Fixture {
                        path: self.path.clone(),
                        line: self.line_no,
                        reason: format!(
                            "the line is longer than {} MiB: not a recording of snapshots (capture --record writes one per line)",
                            MAX_LINE >> 20
                        ),
                    })
                }
            }
            let parsed = parse_line(&self.line).map_err(|reason| Error::Fixture {
                path: self.path.clone(),
                line: self.line_no,
                reason,
            })?;
            if let Some(snapshot) = parsed {
                return Ok(Some(snapshot));
            }
        }
    }
}

/// Appends snapshots to a recording as they are taken.
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Recorder {
    /// Creates (or appends to) a recording.
    pub fn create(path: &Path) -> Result<Self> {
        // Never through a symlink someone planted at the path (crate::files).
        let file = crate::files::open_for_writing(path, crate::files::Existing::Append)?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one snapshot as a line and flushes, so a killed capture keeps what it recorded.
    pub fn record(&mut self, snapshot: &Snapshot) -> Result<()> {
        let io = |e: std::io::Error| Error::io(&self.path, e);
        serde_json::to_writer(&mut self.out, snapshot).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Proto, SocketRecord};

    #[test]
    fn record_then_replay_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let snapshot = Snapshot {
            ts: "2026-11-21T10:00:00Z".parse().unwrap(),
            host: "h1".into(),
            collect_ms: Some(3.0),
            sockets: vec![SocketRecord {
                proto: Proto::Udp,
                local_addr: "::".parse().unwrap(),
                local_port: 5353,
                remote_addr: None,
                remote_port: None,
                state: "UNCONN".into(),
                pids: vec![42],
                uid: Some(0),
                inode: Some(9),
                recv_queue: Some(0),
                send_queue: Some(0),
                tcp: None,
            }],
            processes: vec![],
            interfaces: vec![],
            gaps: vec![],
        };
        let mut rec = Recorder::create(&path).unwrap();
        rec.record(&snapshot).unwrap();
        rec.record(&snapshot).unwrap();
        let mut replay = FixtureSource::open(&path).unwrap();
        let now = Utc::now();
        let first = replay.snapshot(now).unwrap().unwrap();
        assert_eq!(first.sockets, snapshot.sockets);
        assert_eq!(first.collect_ms, None);
        assert!(replay.snapshot(now).unwrap().is_some());
        assert!(replay.snapshot(now).unwrap().is_none());
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "\n{\"ts\": 1}\n").unwrap();
        let mut replay = FixtureSource::open(&path).unwrap();
        let err = replay.snapshot(Utc::now()).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl, line 2"), "{err}");
    }

    /// Issue 22 (fuzzing): damaged recordings. Reading one never panics: each line is a
    /// snapshot or an error naming the line, and the replay stops at the first error.
    #[test]
    fn damaged_recordings_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/host_a.jsonl")).unwrap();
        // The first two snapshots: enough structure, small enough for many cases.
        let seed: Vec<u8> = good
            .split_inclusive(|b| *b == b'\n')
            .take(2)
            .flatten()
            .copied()
            .collect();
        let path = dir.path().join("damaged.jsonl");
        for (_, case, damaged) in crate::mutate::cases(&[&seed], 400) {
            std::fs::write(&path, &damaged).unwrap();
            let mut source = FixtureSource::open(&path).unwrap();
            let lines = damaged.split(|b| *b == b'\n').count();
            let mut read = 0;
            while let Ok(Some(_)) = source.snapshot(Utc::now()) {
                read += 1;
                assert!(read <= lines, "case {case}");
            }
        }
    }
}
