//! The /proc files a live capture keeps open from one snapshot to the next.
//!
//! Every second a snapshot reads each process's `stat` and `io` and checks the size of its
//! `fd` directory. Opening `/proc/<pid>/stat` by its path costs more than reading it: the
//! kernel looks up `/proc/<pid>` (and checks it again) and sets the file up, then tears it
//! down at close. A file kept open answers a read at offset 0 with the text as it is now, so
//! `procstat` and `procfd` open each file once and read it again through the same
//! descriptor.
//!
//! A kept file belongs to the process, not to its number: the kernel ties it to the process
//! itself. Once the process is gone, reads fail (ESRCH), and so does an `fstat` of a kept `fd`
//! directory on Linux 6.2 and later (earlier kernels give that directory no size, and `procfd`
//! keeps none there). The callers then forget the file and open the path again. A pid reused by
//! a new process is therefore read from the new process's own files, never through an old one.
//!
//! Files are kept only while the process's limit on open files leaves room for everything else
//! (the database's files, a server's clients). [`open_file_budget`] raises the soft limit to the
//! hard one first, as systemd advises for programs that do not use `select`. Past the budget,
//! a process's files are opened by path each snapshot, as before.
//!
//! This module touches only the process's own limit and the files it is given. Linux only.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Descriptors left for everything but kept /proc files: the database and its WAL, a server's
/// clients and listeners, netlink, pipes.
const RESERVED_DESCRIPTORS: u64 = 1024;

/// At most this many processes' files are kept, however high the limit. A kept `stat` or `io`
/// holds the kernel's buffer for its text (a page) as long as it is open, so this bounds the
/// kernel memory they take (bench/RESULTS.md). Processes past it are read by path.
const MAX_KEPT_PROCESSES: u64 = 2_048;

/// Files kept per process: `stat` and `io` (procstat) and the `fd` directory (procfd).
const FILES_PER_PROCESS: u64 = 3;

/// Raises this process's soft limit on open files to its hard limit and returns how many
/// processes' files a capture may keep open under it (0 when the limit leaves no room; the
/// capture then opens every file by path).
pub fn open_file_budget() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one valid `rlimit`; raising the soft limit up to the hard
        // one needs no privilege. On failure the old limit stands.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    kept_processes(limit.rlim_cur)
}

/// How many processes' files fit under a soft limit of `soft` open files.
fn kept_processes(soft: libc::rlim_t) -> usize {
    let budget = (soft.saturating_sub(RESERVED_DESCRIPTORS) / FILES_PER_PROCESS).min(MAX_KEPT_PROCESSES);
    usize::try_from(budget).unwrap_or(0)
}

/// Reads all of `file` from its start into `buf` (cleared first). /proc generates the text
/// afresh for a read at offset 0, so this is the file's content now.
pub fn read_from_start(file: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().max(1024));
        }
        let start = buf.len();
        let spare = buf.capacity() - start;
        buf.resize(start + spare, 0);
        match file.read_at(&mut buf[start..], start as u64) {
            Ok(0) => {
                buf.truncate(start);
                return Ok(());
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn the_budget_leaves_the_reserve_and_has_a_ceiling() {
        assert_eq!(kept_processes(1024), 0);
        assert_eq!(kept_processes(100), 0);
        assert_eq!(kept_processes(1024 + 3 * 300), 300);
        assert_eq!(kept_processes(4_000), (4_000 - 1024) / 3);
        assert_eq!(kept_processes(20_000), 2_048);
        assert_eq!(kept_processes(libc::rlim_t::MAX), 2_048);
    }

    #[test]
    fn a_kept_file_reads_the_current_text_each_time() {
        // /proc/self/stat's CPU ticks and /proc/self/io's bytes move between two reads; what
        // must hold is that each read is a whole, fresh text of the same shape as a path read.
        let stat = File::open("/proc/self/stat").unwrap();
        let mut first = Vec::new();
        read_from_start(&stat, &mut first).unwrap();
        let by_path = std::fs::read("/proc/self/stat").unwrap();
        let fields = |t: &[u8]| String::from_utf8_lossy(t).split_whitespace().count();
        assert_eq!(fields(&first), fields(&by_path));
        let io = File::open("/proc/self/io").unwrap();
        let mut before = Vec::new();
        read_from_start(&io, &mut before).unwrap();
        let written = |t: &[u8]| -> u64 {
            String::from_utf8_lossy(t)
                .lines()
                .find_map(|l| l.strip_prefix("wchar: ")?.trim().parse().ok())
                .unwrap()
        };
        // A write to a real file moves wchar by its length.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![0u8; 4096]).unwrap();
        let mut after = Vec::new();
        read_from_start(&io, &mut after).unwrap();
        assert!(written(&after) >= written(&before) + 4096, "{before:?} -> {after:?}");
    }

    #[test]
    fn a_long_text_is_read_whole() {
        // /proc/self/maps of a test binary is far longer than one buffer.
        let maps = File::open("/proc/self/maps").unwrap();
        let mut kept = Vec::with_capacity(8);
        read_from_start(&maps, &mut kept).unwrap();
        assert!(kept.len() > 4096, "{}", kept.len());
        assert!(kept.ends_with(b"\n"));
        let lines = String::from_utf8_lossy(&kept).lines().count();
        let by_path = std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
        // Threads of the test harness may map or unmap between the two reads.
        assert!(lines.abs_diff(by_path) < 20, "{lines} vs {by_path}");
    }

    #[test]
    fn a_kept_file_of_a_process_that_ended_fails_and_is_never_another_processes() {
        let mut child = Command::new("sleep").arg("30").stdout(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        let stat = File::open(format!("/proc/{pid}/stat")).unwrap();
        let fd_dir = File::open(format!("/proc/{pid}/fd")).unwrap();
        let mut buf = Vec::new();
        read_from_start(&stat, &mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf).contains("(sleep)"));
        // Before Linux 6.2 the directory has no size, and its fstat does not look at the process.
        let counts_fds = fd_dir.metadata().unwrap().len() > 0;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            read_from_start(&stat, &mut buf).is_err(),
            "read {:?}",
            String::from_utf8_lossy(&buf)
        );
        if counts_fds {
            assert!(fd_dir.metadata().is_err());
        }
    }
}
