//! Processes from `/proc`, read lean: a capture takes a snapshot every second, and a general
//! process library re-reads and re-allocates far more than a snapshot stores (it was the largest
//! part of a snapshot's cost). Per snapshot this reads, for each process, `/proc/<pid>/stat`
//! (parent, state, CPU ticks, start, memory) and `/proc/<pid>/io` (disk bytes); what changes
//! only with an exec or a setuid (its command line, executable and real uid) is read when a
//! (pid, start time) pair is first seen and again when its name changes (an exec renames it). A
//! setuid that keeps the name is not seen until the process is seen anew. `stat` and `io` are
//! opened once per process and read again through the same files (`procfiles`), within the
//! budget of open files the capture was given.
//!
//! The parsers are pure and tested on fixed texts; [`ProcessReader`] is the only part that
//! touches the file system, and is used only by the live source (`system`). Linux only.

use std::collections::HashMap;
use std::fs::File;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};

use super::procfiles::read_from_start;
use super::ProcessRecord;

/// The fields of `/proc/<pid>/stat` a snapshot stores (proc(5) numbers them from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Field 2, without its parentheses; may contain spaces and parentheses itself.
    pub comm: String,
    /// Field 3.
    pub state: u8,
    /// Field 4; 0 for the roots of the tree.
    pub ppid: u32,
    /// Field 9 has `PF_KTHREAD`: a kernel thread, which has no command line.
    pub kernel_thread: bool,
    /// Fields 14 + 15, user and system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22, clock ticks after boot.
    pub start_ticks: u64,
    /// Field 23, bytes.
    pub vsize: u64,
    /// Field 24, pages.
    pub rss_pages: u64,
}

/// `PF_KTHREAD` of the kernel's process flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses one `/proc/<pid>/stat` text; `None` when it is not one.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    // The command name is the text between the first '(' and the last ')': it may hold both.
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // rest[0] is field 3 (state), rest[i] is field i + 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
    let number = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
    let state = *fields.first()?.as_bytes().first()?;
    Some(Stat {
        comm,
        state,
        ppid: u32::try_from(number(4)?).ok()?,
        kernel_thread: number(9)? & PF_KTHREAD != 0,
        cpu_ticks: number(14)?.checked_add(number(15)?)?,
        start_ticks: number(22)?,
        vsize: number(23)?,
        rss_pages: number(24)?,
    })
}

/// `read_bytes` and `write_bytes` of a `/proc/<pid>/io` text.
pub fn parse_io(text: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(text).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("read_bytes")?, field("write_bytes")?))
}

/// The real uid (first number of the `Uid:` line) of a `/proc/<pid>/status` text.
pub fn parse_status_uid(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Boot time in seconds since the epoch, from the `btime` line of `/proc/stat`.
pub fn parse_boot_time(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Seconds since boot, the first number of `/proc/uptime`.
pub fn parse_uptime(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text)
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
}

/// A `/proc/<pid>/cmdline` text (arguments ended by NULs) as one line, arguments joined by
/// spaces; `None` when empty (kernel threads, zombies).
pub fn parse_cmdline(text: &[u8]) -> Option<String> {
    let args: Vec<String> = text
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// The scheduler state letter of `stat` as the word netlens has always stored.
pub fn status_name(state: u8) -> &'static str {
    match state {
        b'R' => "Runnable",
        b'S' => "Sleeping",
        b'I' => "Idle",
        b'D' => "UninterruptibleDiskSleep",
        b'Z' => "Zombie",
        b'T' => "Stopped",
        b't' => "Tracing",
        b'X' | b'x' => "Dead",
        b'K' => "Wakekill",
        b'W' => "Waking",
        b'P' => "Parked",
        _ => "Unknown",
    }
}

/// The shortest life a newly seen process is rated over, in seconds (ten ticks at the usual 100 Hz).
const MIN_AGE_S: f64 = 0.1;

/// What is kept of a process between snapshots.
#[derive(Debug)]
struct Known {
    start_ticks: u64,
    cpu_ticks: u64,
    /// The name at the last read of the fields below; an exec changes it.
    comm: String,
    exe: Option<String>,
    cmdline: Option<String>,
    uid: Option<u32>,
}

/// Host constants the conversions need.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `sysconf(_SC_CLK_TCK)`.
    pub ticks_per_second: u64,
    /// `sysconf(_SC_PAGESIZE)`.
    pub page_size: u64,
    /// Seconds since the epoch at boot; `None` leaves start times unknown.
    pub boot_time: Option<i64>,
    /// CPUs online: a process's rate is capped at this many cores.
    pub cpus: u32,
}

impl Clock {
    /// When a process started, from its start ticks.
    pub fn start_time(&self, start_ticks: u64) -> Option<DateTime<Utc>> {
        let seconds = i64::try_from(start_ticks / self.ticks_per_second.max(1)).ok()?;
        Utc.timestamp_opt(self.boot_time?.checked_add(seconds)?, 0).single()
    }

    /// CPU use in percent of one core from ticks used over a wall interval.
    pub fn cpu_percent(&self, ticks: u64, seconds: f64) -> Option<f64> {
        if seconds <= 0.0 {
            return None;
        }
        let used = ticks as f64 / self.ticks_per_second.max(1) as f64;
        Some((used / seconds * 100.0).min(f64::from(self.cpus.max(1)) * 100.0))
    }
}

/// One snapshot's process rows, and how many processes' disk counters were unreadable.
#[derive(Debug, Default)]
pub struct ProcessSample {
    pub processes: Vec<ProcessRecord>,
    pub io_unreadable: usize,
}

/// Reads every process of `/proc`, keeping between snapshots what a rate or a once-read field
/// needs.
pub struct ProcessReader {
    clock: Clock,
    known: HashMap<u32, Known>,
    /// The `stat` and `io` files of processes seen, kept open for the next sample.
    kept: HashMap<u32, KeptFiles>,
    /// How many processes' files may be kept open.
    keep_limit: usize,
    last_sample: Option<Instant>,
    buf: Vec<u8>,
    path: String,
}

/// One process's `/proc/<pid>/stat` and `/proc/<pid>/io`, open.
struct KeptFiles {
    stat: File,
    /// `None` when `io` could not be opened (another user's process, without root).
    io: Option<File>,
}

impl ProcessReader {
    /// A reader for this host that keeps the files of up to `keep_limit` processes open
    /// between samples.
    pub fn new(keep_limit: usize) -> Self {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let (ticks, page, cpus) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            )
        };
        let boot_time = std::fs::read("/proc/stat").ok().and_then(|t| parse_boot_time(&t));
        ProcessReader {
            clock: Clock {
                ticks_per_second: u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100),
                page_size: u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096),
                boot_time,
                cpus: u32::try_from(cpus).ok().filter(|&c| c > 0).unwrap_or(1),
            },
            known: HashMap::new(),
            kept: HashMap::new(),
            keep_limit,
            last_sample: None,
            buf: Vec::with_capacity(1024),
            path: String::with_capacity(32),
        }
    }

    /// Reads `/proc/<pid>/<file>` (or `/proc/<file>` for pid 0, which no process has) into the
    /// shared buffer; false when it cannot be read.
    fn read(&mut self, pid: u32, file: &str) -> bool {
        self.read_through(pid, file, None).is_some()
    }

    /// The descriptors of the files kept open (none of them a socket).
    pub fn kept_fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        use std::os::fd::AsRawFd;
        self.kept
            .values()
            .flat_map(|k| std::iter::once(k.stat.as_raw_fd()).chain(k.io.as_ref().map(|f| f.as_raw_fd())))
    }

    /// Reads `/proc/<pid>/<file>` (`/proc/<file>` for pid 0) into the shared buffer through `kept` when it still reads (the
    /// process is the one it was opened for), else through a file opened by path now. Returns
    /// the file that read, to keep; `None` when the file cannot be read.
    fn read_through(&mut self, pid: u32, file: &str, kept: Option<File>) -> Option<File> {
        if let Some(kept) = kept {
            if read_from_start(&kept, &mut self.buf).is_ok() {
                return Some(kept);
            }
        }
        use std::fmt::Write as _;
        self.path.clear();
        let _ = if pid == 0 {
            write!(self.path, "/proc/{file}")
        } else {
            write!(self.path, "/proc/{pid}/{file}")
        };
        let opened = File::open(&self.path).ok()?;
        read_from_start(&opened, &mut self.buf).ok()?;
        Some(opened)
    }

    /// What a process is (executable, command line, real uid), read when it is first seen and
    /// again when its name changes.
    fn identify(&mut self, pid: u32, stat: &Stat) -> Known {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty());
        let cmdline = if self.read(pid, "cmdline") {
            parse_cmdline(&self.buf)
        } else {
            None
        };
        let uid = if self.read(pid, "status") {
            parse_status_uid(&self.buf)
        } else {
            None
        };
        Known {
            start_ticks: stat.start_ticks,
            cpu_ticks: stat.cpu_ticks,
            comm: stat.comm.clone(),
            exe,
            cmdline,
            uid,
        }
    }

    /// Every process now. `now` is the monotonic time of the sample (CPU rates are over the
    /// interval since the previous one); `user_name` names a uid.
    pub fn sample(
        &mut self,
        now: Instant,
        user_name: impl Fn(u32) -> Option<String>,
    ) -> std::io::Result<ProcessSample> {
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        // Only a sample that reads processes starts a new interval: after a failed listing the
        // kept ticks still belong to the last good one.
        let interval = self
            .last_sample
            .map(|last| now.saturating_duration_since(last).as_secs_f64());
        self.last_sample = Some(now);
        pids.sort_unstable();
        let mut sample = ProcessSample {
            processes: Vec::with_capacity(pids.len()),
            io_unreadable: 0,
        };
        let mut seen = HashMap::with_capacity(pids.len());
        // Files of processes not listed now are closed with the old map.
        let mut kept_before = std::mem::take(&mut self.kept);
        for pid in pids {
            let (kept_stat, kept_io) = match kept_before.remove(&pid) {
                Some(files) => (Some(files.stat), files.io),
                None => (None, None),
            };
            // A process that ends between the listing and the read is simply not in this snapshot.
            let Some(stat_file) = self.read_through(pid, "stat", kept_stat) else {
                continue;
            };
            let Some(stat) = parse_stat(&self.buf) else {
                continue;
            };
            let io_file = self.read_through(pid, "io", kept_io);
            let io = if io_file.is_some() { parse_io(&self.buf) } else { None };
            if self.kept.len() < self.keep_limit {
                self.kept.insert(
                    pid,
                    KeptFiles {
                        stat: stat_file,
                        io: io_file,
                    },
                );
            }
            if io.is_none() {
                sample.io_unreadable += 1;
            }
            let previous = self.known.remove(&pid).filter(|k| k.start_ticks == stat.start_ticks);
            let (cpu_percent, known) = match previous {
                Some(k) => {
                    let rate =
                        interval.and_then(|s| self.clock.cpu_percent(stat.cpu_ticks.saturating_sub(k.cpu_ticks), s));
                    // An exec keeps the pid and start time but changes the name (and the
                    // executable and command line; a setuid program, the uid): read them again.
                    // So does a process read in the middle of its exec, after its new name and
                    // before its new arguments (its command line then reads empty): a process
                    // that is not a kernel thread or a zombie has a command line.
                    let read_mid_exec = k.cmdline.is_none() && !stat.kernel_thread && stat.state != b'Z';
                    let known = if k.comm == stat.comm && !read_mid_exec {
                        Known {
                            cpu_ticks: stat.cpu_ticks,
                            ..k
                        }
                    } else {
                        self.identify(pid, &stat)
                    };
                    (rate, known)
                }
                None => {
                    // A process born since the previous snapshot is rated over its own life, which
                    // lies within the interval (only a run's first snapshot has no rates). Uptime is
                    // read after its stat, so its age is never negative; uptime and start ticks are
                    // both whole ticks, so the age is taken as at least MIN_AGE_S, where a tick of
                    // rounding no longer doubles the rate.
                    let uptime = if interval.is_some() && self.read(0, "uptime") {
                        parse_uptime(&self.buf)
                    } else {
                        None
                    };
                    let tick = 1.0 / self.clock.ticks_per_second.max(1) as f64;
                    let age = uptime.map(|up| (up - stat.start_ticks as f64 * tick).max(MIN_AGE_S));
                    let born_rate = age.and_then(|age| self.clock.cpu_percent(stat.cpu_ticks, age));
                    (born_rate, self.identify(pid, &stat))
                }
            };
            sample.processes.push(ProcessRecord {
                pid,
                ppid: (stat.ppid != 0).then_some(stat.ppid),
                name: stat.comm.clone(),
                exe: known.exe.clone(),
                cmdline: known.cmdline.clone(),
                user_name: known.uid.and_then(&user_name),
                uid: known.uid,
                status: Some(status_name(stat.state).to_string()),
                cpu_percent,
                memory_rss_bytes: Some(stat.rss_pages.saturating_mul(self.clock.page_size)),
                memory_virtual_bytes: Some(stat.vsize),
                start_time: self.clock.start_time(stat.start_ticks),
                disk_read_bytes: io.map(|(r, _)| r),
                disk_written_bytes: io.map(|(_, w)| w),
            });
            seen.insert(pid, known);
        }
        // Processes that ended are forgotten with the old map.
        self.known = seen;
        Ok(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"4242 (tricky) name (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 50 0 0 20 0 3 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_come_from_their_positions_after_the_last_parenthesis() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.comm, "tricky) name (x)");
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.cpu_ticks, 200);
        assert_eq!(stat.start_ticks, 98765);
        assert_eq!(stat.vsize, 123_456_789);
        assert_eq!(stat.rss_pages, 2048);
        assert!(!stat.kernel_thread);
        // kthreadd's flags (0x208040) carry PF_KTHREAD.
        let kthreadd = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 2 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0\n";
        assert!(parse_stat(kthreadd).unwrap().kernel_thread);
    }

    #[test]
    fn truncated_or_foreign_stat_texts_are_refused() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 (init) S 0 1"), None);
        assert_eq!(
            parse_stat(b"1 )init( S 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 6 7"),
            None
        );
        assert_eq!(parse_stat(&STAT[..STAT.len() / 2]), None);
    }

    #[test]
    fn io_status_boot_time_and_cmdline() {
        let io = b"rchar: 100\nwchar: 200\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(io), Some((4096, 8192)));
        assert_eq!(parse_io(b"rchar: 1\n"), None);
        let status = b"Name:\tbash\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_status_uid(status), Some(1000));
        assert_eq!(
            parse_boot_time(b"cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_cmdline(b"/usr/bin/python3\0-m\0http.server\0"),
            Some("/usr/bin/python3 -m http.server".into())
        );
        assert_eq!(parse_cmdline(b""), None);
        assert_eq!(parse_uptime(b"34127.52 67012.33\n"), Some(34127.52));
        assert_eq!(parse_uptime(b"-1 0\n"), None);
    }

    #[test]
    fn rates_are_percent_of_one_core_capped_at_the_host() {
        let clock = Clock {
            ticks_per_second: 100,
            page_size: 4096,
            boot_time: Some(1_700_000_000),
            cpus: 2,
        };
        assert_eq!(clock.cpu_percent(50, 1.0), Some(50.0));
        assert_eq!(clock.cpu_percent(500, 1.0), Some(200.0));
        assert_eq!(clock.cpu_percent(5, 0.0), None);
        assert_eq!(clock.start_time(98765).map(|t| t.timestamp()), Some(1_700_000_987));
        let unknown_boot = Clock {
            boot_time: None,
            ..clock
        };
        assert_eq!(unknown_boot.start_time(1), None);
    }

    #[test]
    fn reads_this_process_and_rates_it_on_the_second_sample() {
        let mut reader = ProcessReader::new(4096);
        let first = reader.sample(Instant::now(), |_| None).unwrap();
        let me = std::process::id();
        let row = first.processes.iter().find(|p| p.pid == me).unwrap();
        assert_eq!(row.cpu_percent, None, "one sample cannot give a rate");
        assert!(row.memory_rss_bytes.unwrap() > 0);
        assert!(row.cmdline.is_some() && row.exe.is_some());
        // SAFETY: getuid has no preconditions.
        assert_eq!(row.uid, Some(unsafe { libc::getuid() }));
        let spin = Instant::now();
        while spin.elapsed().as_millis() < 30 {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let second = reader.sample(Instant::now(), |_| None).unwrap();
        let row = second.processes.iter().find(|p| p.pid == me).unwrap();
        assert!(row.cpu_percent.is_some());
        // A process born between two samples is rated over its own life.
        let born = second
            .processes
            .iter()
            .find(|p| p.pid == child.id())
            .map(|p| p.cpu_percent);
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(born, Some(Some(_))), "{born:?}");
        assert!(first.processes.windows(2).all(|w| w[0].pid < w[1].pid));
    }

    #[test]
    fn kept_files_read_what_paths_read_and_are_closed_with_their_process() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        wait_for_cmdline(child.id(), "sleep 30");
        let mut kept = ProcessReader::new(4096);
        let mut by_path = ProcessReader::new(0);
        let row = |sample: &ProcessSample, pid: u32| {
            // Not the state: a running test thread may differ between two samples.
            sample
                .processes
                .iter()
                .find(|p| p.pid == pid)
                .map(|p| (p.name.clone(), p.cmdline.clone(), p.ppid, p.start_time, p.uid))
        };
        kept.sample(Instant::now(), |_| None).unwrap();
        assert!(kept.kept.contains_key(&child.id()));
        assert!(by_path.kept.is_empty(), "a limit of 0 keeps nothing");
        // The second sample reads the child through the files the first one opened.
        let (a, b) = (
            kept.sample(Instant::now(), |_| None).unwrap(),
            by_path.sample(Instant::now(), |_| None).unwrap(),
        );
        assert!(row(&a, child.id()).is_some());
        assert_eq!(row(&a, child.id()), row(&b, child.id()));
        let me = std::process::id();
        assert_eq!(row(&a, me), row(&b, me));
        let _ = child.kill();
        let _ = child.wait();
        let after = kept.sample(Instant::now(), |_| None).unwrap();
        assert_eq!(row(&after, child.id()), None);
        assert!(
            !kept.kept.contains_key(&child.id()),
            "an ended process's files are closed"
        );
        let mut small = ProcessReader::new(2);
        small.sample(Instant::now(), |_| None).unwrap();
        assert_eq!(small.kept.len(), 2, "no more than the limit is kept");
    }

    /// Waits (at most 5 s) until `pid`'s command line reads as `expected`: a process just
    /// spawned may still be in its exec.
    fn wait_for_cmdline(pid: u32, expected: &str) {
        let started = Instant::now();
        while std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|t| parse_cmdline(&t))
            .as_deref()
            != Some(expected)
        {
            assert!(started.elapsed().as_secs() < 5, "{pid} never ran '{expected}'");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn an_exec_is_seen_by_its_new_name_and_command_line() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.4; exec sleep 7"])
            .spawn()
            .unwrap();
        // Sampled before the shell's own exec is done, its command line would read empty (the
        // next test covers that case).
        wait_for_cmdline(child.id(), "sh -c sleep 0.4; exec sleep 7");
        let mut reader = ProcessReader::new(4096);
        let row = |sample: &ProcessSample| {
            let p = sample.processes.iter().find(|p| p.pid == child.id()).unwrap();
            (p.name.clone(), p.cmdline.clone().unwrap_or_default())
        };
        let before = row(&reader.sample(Instant::now(), |_| None).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(900));
        let after = row(&reader.sample(Instant::now(), |_| None).unwrap());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(before, ("sh".to_string(), "sh -c sleep 0.4; exec sleep 7".to_string()));
        assert_eq!(after, ("sleep".to_string(), "sleep 7".to_string()));
    }

    /// A process first read in the middle of its exec (its new name, its command line still
    /// empty) is read again at the next sample, though its name did not change since: it was
    /// kept without a command line for its whole life.
    #[test]
    fn a_process_read_in_the_middle_of_its_exec_gets_its_command_line_at_the_next_sample() {
        let mut child = std::process::Command::new("sleep").arg("7").spawn().unwrap();
        wait_for_cmdline(child.id(), "sleep 7");
        let mut reader = ProcessReader::new(4096);
        let cmdline = |sample: &ProcessSample| {
            sample
                .processes
                .iter()
                .find(|p| p.pid == child.id())
                .and_then(|p| p.cmdline.clone())
        };
        assert_eq!(
            cmdline(&reader.sample(Instant::now(), |_| None).unwrap()).as_deref(),
            Some("sleep 7")
        );
        // As the first read would have kept it, had it come mid-exec.
        reader.known.get_mut(&child.id()).unwrap().cmdline = None;
        let again = cmdline(&reader.sample(Instant::now(), |_| None).unwrap());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(again.as_deref(), Some("sleep 7"));
    }
}
