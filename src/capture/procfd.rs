//! Which processes hold which socket: every `/proc/<pid>/fd/*` link of the form
//! `socket:[inode]`, gathered into sorted (inode, pid) pairs (the same walk `ss -p` does).
//!
//! A capture takes a snapshot every second or so, and at tens of thousands of sockets the walk
//! (one `readlinkat` per fd) is the most expensive part of a snapshot, while between two
//! snapshots most fd tables do not change. So [`OwnerCache`] keeps each process's socket
//! inodes and walks again only the processes that are new or whose fd table changed as one
//! `stat` of `/proc/<pid>/fd` shows it: its size is the number of open fds (Linux 6.2 and
//! later), and its inode number is new for a new process that reuses a pid.
//! A change that keeps the count (one fd closed, another opened) is caught by its result: a
//! dumped socket that no cached table holds, and that this process could read the owner of,
//! makes a second pass after the dump walk every process again except those the first pass
//! read and whose table has not changed since. A socket that pass still finds no owner for
//! is looked for again at the next snapshot, whose second pass also reads the tables this
//! one's first pass read (one of them may have swapped an fd for it while the dump ran); only
//! then is it remembered as unowned (kernel sockets, sockets of processes in other pid
//! namespaces) and no longer forces a pass. The first snapshot of a run reads every table after
//! the dump instead of during it, so it knows the unowned sockets at once. A table whose count
//! changed while it was read is read again at the next pass.
//! What this cannot see is a process exchanging, within one interval and with no change in its
//! fd count, a socket that another process also holds (fork, fd passing) for another fd that is
//! not a new socket: that socket's pid list stays as it was until the next complete walk or a
//! change in the count. On kernels that do not report the count every snapshot walks everything.
//!
//! The `stat` of each `/proc/<pid>/fd` is an `fstat` of the directory kept open since its last
//! walk (`procfiles`), within the budget of open files the capture was given.
//!
//! Reading another user's fd table needs root (or CAP_SYS_PTRACE); processes whose table is
//! unreadable are counted so the caller can say once that their sockets have no pid.

use std::collections::{HashMap, HashSet};

use foldhash::HashSet as FastSet;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};

/// Inode → pids, plus how many processes could not be inspected.
#[derive(Debug, Default)]
pub struct SocketOwners {
    /// (inode, pid), sorted: a twelfth of the memory of a map of vectors at 50 000 sockets.
    pairs: Vec<(u64, u32)>,
    pub unreadable_processes: usize,
}

impl SocketOwners {
    /// The pids holding `inode`, ascending.
    pub fn pids_of(&self, inode: u64) -> impl Iterator<Item = u32> + '_ {
        let start = self.pairs.partition_point(|&(i, _)| i < inode);
        self.pairs[start..]
            .iter()
            .take_while(move |&&(i, _)| i == inode)
            .map(|&(_, pid)| pid)
    }

    /// Whether some process holds `inode`.
    pub fn contains(&self, inode: u64) -> bool {
        self.pids_of(inode).next().is_some()
    }
}

/// What one process's fd table held at its last walk.
#[derive(Debug)]
struct ProcessFds {
    /// Open fds at the last walk, from the size of `/proc/<pid>/fd`.
    fd_count: u64,
    /// Inode number of `/proc/<pid>/fd` then: another process with the same pid has another.
    dir_ino: u64,
    /// Socket inodes, sorted and without repeats.
    inodes: Vec<u64>,
    /// False when the table could not be read (permission).
    readable: bool,
    /// `/proc/<pid>/fd`, open since the walk, while the budget allows.
    dir: Option<fs::File>,
}

/// How much a refresh had to read, for tests and the curious.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    /// Processes whose fd table was read.
    pub walked: usize,
    /// Processes taken from the cache.
    pub reused: usize,
    /// Whether a socket no cached table held forced a second pass after the dump.
    pub second_pass: bool,
}

/// Socket owners kept between snapshots of one capture run.
#[derive(Debug)]
pub struct OwnerCache {
    processes: HashMap<u32, ProcessFds>,
    /// Socket inodes two second passes in a row found no owner for.
    unowned: FastSet<u64>,
    /// Socket inodes the last second pass found no owner for.
    suspect: FastSet<u64>,
    /// Whether this kernel reports the number of open fds as the size of `/proc/<pid>/fd`.
    counts_fds: bool,
    /// Pids the first pass of the current snapshot read.
    read_now: HashSet<u32>,
    stats: WalkStats,
    /// How many processes' `fd` directories may be kept open, and how many are.
    keep_limit: usize,
    kept_dirs: usize,
    /// This process, and the descriptors of /proc files it keeps elsewhere (`procstat`'s): a
    /// walk of its own table skips those and the kept directories, none of them a socket,
    /// instead of reading a link for each of hundreds.
    own_pid: u32,
    kept_elsewhere: Vec<RawFd>,
}

fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?;
    let digits = rest.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads the target of `name` inside the directory `dir`: `readlinkat` resolves one name
/// instead of walking `/proc/<pid>/fd/<n>` from the root for each of tens of thousands of fds.
fn read_link_at(dir: &fs::File, name: &CStr, buf: &mut [u8]) -> Option<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `dir` is an open directory, `name` is NUL-terminated, and the kernel writes at
    // most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok()
}

/// Size of `/proc/<pid>/fd` (the number of open fds on Linux ≥ 6.2, 0 before) and its inode.
fn fd_table_stat(path: &str) -> std::io::Result<(u64, u64)> {
    fs::metadata(path).map(|m| size_and_inode(&m))
}

fn size_and_inode(m: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.size(), m.ino())
}

/// Reads one process's socket inodes, with the directory opened to read them, leaving out the
/// fds in `skip`. `Ok(None)`: the process is gone.
fn walk_process(path: &str, skip: &FastSet<RawFd>) -> std::io::Result<Option<(Vec<u64>, fs::File)>> {
    use std::os::unix::ffi::OsStrExt;
    let (fds, dir) = match fs::read_dir(path).and_then(|fds| Ok((fds, fs::File::open(path)?))) {
        Ok(pair) => pair,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return Err(e),
        Err(_) => return Ok(None),
    };
    let mut target = [0u8; 64];
    let mut name = Vec::with_capacity(16);
    let mut inodes = Vec::new();
    for fd in fds {
        let Ok(fd) = fd else { continue };
        if !skip.is_empty()
            && std::str::from_utf8(fd.file_name().as_bytes())
                .ok()
                .and_then(|n| n.parse::<RawFd>().ok())
                .is_some_and(|n| skip.contains(&n))
        {
            continue;
        }
        name.clear();
        name.extend_from_slice(fd.file_name().as_bytes());
        name.push(0);
        let Ok(cname) = CStr::from_bytes_with_nul(&name) else {
            continue;
        };
        // Socket links are "socket:[<inode>]", well under 64 bytes; longer targets are paths.
        let Some(len) = read_link_at(&dir, cname, &mut target) else {
            continue;
        };
        if let Some(inode) = socket_inode(&target[..len.min(target.len())]) {
            inodes.push(inode);
        }
    }
    inodes.sort_unstable();
    inodes.dedup();
    Ok(Some((inodes, dir)))
}

impl OwnerCache {
    /// Whether no table has been read yet (the first snapshot of a run).
    pub fn is_cold(&self) -> bool {
        self.processes.is_empty()
    }

    /// An empty cache that keeps up to `keep_limit` processes' `fd` directories open; the
    /// first refresh walks every process.
    pub fn new(keep_limit: usize) -> Self {
        let counts_fds = fd_table_stat("/proc/self/fd").is_ok_and(|(n, _)| n > 0);
        OwnerCache {
            processes: HashMap::new(),
            unowned: FastSet::default(),
            suspect: FastSet::default(),
            counts_fds,
            read_now: HashSet::new(),
            stats: WalkStats::default(),
            keep_limit,
            kept_dirs: 0,
            own_pid: std::process::id(),
            kept_elsewhere: Vec::new(),
        }
    }

    /// The descriptors of the /proc files this process keeps open outside this cache, which a
    /// walk of its own table skips. They must stay open until the snapshot's `resolve`.
    /// Only a walk of this process's own table makes a set of them.
    pub fn set_kept_elsewhere(&mut self, fds: impl IntoIterator<Item = RawFd>) {
        self.kept_elsewhere.clear();
        self.kept_elsewhere.extend(fds);
    }

    /// First half of a snapshot, run while the socket dump is in flight: forgets processes
    /// that exited and walks the ones that are new or whose fd table changed.
    pub fn refresh(&mut self) -> std::io::Result<()> {
        self.stats = WalkStats::default();
        self.read_now.clear();
        self.pass(false)
    }

    /// One pass over /proc, walking the processes that are new or whose table changed; the
    /// second pass (`second`) also walks those the first pass took from the cache.
    fn pass(&mut self, second: bool) -> std::io::Result<()> {
        let mut alive = HashSet::with_capacity(self.processes.len() + 16);
        let mut path = String::with_capacity(32);
        for entry in fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            path.clear();
            let _ = write!(path, "/proc/{pid}/fd");
            // The kept directory fails once its process is gone; the path then names the
            // process that has the pid now, if any (a new inode).
            let kept = self
                .processes
                .get(&pid)
                .and_then(|p| p.dir.as_ref())
                .and_then(|dir| dir.metadata().ok());
            let (count, ino) = match kept.map_or_else(|| fd_table_stat(&path), |m| Ok(size_and_inode(&m))) {
                Ok(stat) => stat,
                Err(e) if e.kind() == ErrorKind::PermissionDenied => (u64::MAX, 0),
                // Exited since the directory was listed: forgotten below.
                Err(_) => continue,
            };
            alive.insert(pid);
            let unchanged = (!second || self.read_now.contains(&pid))
                && self.counts_fds
                && count != u64::MAX
                && self
                    .processes
                    .get(&pid)
                    .is_some_and(|p| p.readable && p.fd_count == count && p.dir_ino == ino);
            if unchanged {
                self.stats.reused += 1;
            } else {
                self.walk(pid, count, ino, &path);
                if !second {
                    self.read_now.insert(pid);
                }
            }
        }
        self.processes.retain(|pid, _| alive.contains(pid));
        self.kept_dirs = self.processes.values().filter(|p| p.dir.is_some()).count();
        Ok(())
    }

    fn walk(&mut self, pid: u32, fd_count: u64, dir_ino: u64, path: &str) {
        self.stats.walked += 1;
        // The old entry goes first, closing its kept directory: when `pid` is this process,
        // the count read after the walk (the new directory open) then matches the count read
        // before it (the old one open).
        let had_dir = self.processes.remove(&pid).is_some_and(|p| p.dir.is_some());
        if had_dir {
            self.kept_dirs -= 1;
        }
        let skip = if pid == self.own_pid {
            let mut skip: FastSet<RawFd> = self.kept_elsewhere.iter().copied().collect();
            skip.extend(
                self.processes
                    .values()
                    .filter_map(|p| p.dir.as_ref())
                    .map(|d| d.as_raw_fd()),
            );
            skip
        } else {
            FastSet::default()
        };
        let fds = match walk_process(path, &skip) {
            Ok(Some((inodes, dir))) => {
                // Only where the directory's size is the fd count (Linux 6.2 and later) does a
                // kept one save anything, and only there does its fstat fail once the process
                // is gone.
                let keep = self.counts_fds && self.kept_dirs < self.keep_limit;
                // Changed while it was read: what was read may miss a socket; read it again
                // at the next pass. A directory not kept is closed first: when `pid` is this
                // process, the count before the walk did not include it either.
                let (after, dir) = if keep {
                    self.kept_dirs += 1;
                    (dir.metadata().map(|m| m.len()).ok(), Some(dir))
                } else {
                    drop(dir);
                    (fd_table_stat(path).map(|(n, _)| n).ok(), None)
                };
                ProcessFds {
                    fd_count: if after == Some(fd_count) { fd_count } else { u64::MAX },
                    dir_ino,
                    inodes,
                    readable: true,
                    dir,
                }
            }
            Ok(None) => return,
            Err(_) => ProcessFds {
                fd_count,
                dir_ino,
                inodes: Vec::new(),
                readable: false,
                dir: None,
            },
        };
        self.processes.insert(pid, fds);
    }

    fn owners(&self) -> SocketOwners {
        let mut pairs: Vec<(u64, u32)> = Vec::with_capacity(self.processes.values().map(|p| p.inodes.len()).sum());
        for (&pid, p) in &self.processes {
            pairs.extend(p.inodes.iter().map(|&inode| (inode, pid)));
        }
        pairs.sort_unstable();
        SocketOwners {
            pairs,
            unreadable_processes: self.processes.values().filter(|p| !p.readable).count(),
        }
    }

    /// Second half, once the dump is complete: the owners of the dumped sockets' inodes,
    /// each paired with whether this process could read its owner's fd table at all (its own
    /// user's sockets, or every socket as root). When one of those has no known owner and is
    /// not known to have none, a second pass walks every table the first did not read, and
    /// those it read that have changed since (it ran while the dump did).
    /// `after_dump`: the first pass ran after the dump was complete, so what it did not find
    /// has no owner (the first snapshot of a run, which reads every table anyway, runs so).
    pub fn resolve(&mut self, inodes: &[(u64, bool)], after_dump: bool) -> SocketOwners {
        let mut owners = self.owners();
        let missing = inodes
            .iter()
            .any(|&(i, readable)| readable && !owners.contains(i) && !self.unowned.contains(&i));
        let mut still_missing = FastSet::default();
        if missing && after_dump {
            self.unowned.extend(
                inodes
                    .iter()
                    .filter(|&&(i, readable)| readable && !owners.contains(i))
                    .map(|&(i, _)| i),
            );
        } else if missing {
            self.stats.second_pass = true;
            self.stats.reused = 0;
            if self.suspect.iter().any(|i| !owners.contains(*i)) {
                // Missed by the last second pass too: read this snapshot's first-pass tables
                // again as well.
                self.read_now.clear();
            }
            // /proc unreadable now, after the first pass read it: answer with what that pass saw.
            if self.pass(true).is_ok() {
                owners = self.owners();
                still_missing.extend(
                    inodes
                        .iter()
                        .filter(|&&(i, readable)| readable && !owners.contains(i) && !self.unowned.contains(&i))
                        .map(|&(i, _)| i),
                );
            }
        }
        // Missed twice in a row: unowned until it is gone.
        let (confirmed, suspect): (Vec<u64>, Vec<u64>) =
            still_missing.into_iter().partition(|i| self.suspect.contains(i));
        self.unowned.extend(confirmed);
        self.suspect = suspect.into_iter().collect();
        let current: FastSet<u64> = inodes.iter().map(|&(i, _)| i).collect();
        self.unowned.retain(|i| current.contains(i));
        owners
    }

    /// What the last refresh and resolve read.
    #[cfg(test)]
    pub fn stats(&self) -> WalkStats {
        self.stats
    }
}

/// One complete walk, without a cache.
#[cfg(test)]
pub fn scan() -> std::io::Result<SocketOwners> {
    let mut cache = OwnerCache::new(4096);
    cache.refresh()?;
    Ok(cache.owners())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().ino()
    }

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn finds_our_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let owners = scan().unwrap();
        let pids: Vec<u32> = owners.pids_of(inode_of(&listener)).collect();
        assert_eq!(pids, vec![std::process::id()]);
    }

    #[test]
    fn cache_finds_a_socket_opened_between_snapshots() {
        let mut cache = OwnerCache::new(4096);
        cache.refresh().unwrap();
        cache.resolve(&[], false);
        // Opened after the first walk; our fd count changes, or (if another thread of the test
        // binary closed an fd meanwhile) the unknown inode forces a walk: found either way.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        cache.refresh().unwrap();
        let owners = cache.resolve(&[(inode, true)], false);
        assert_eq!(owners.pids_of(inode).collect::<Vec<_>>(), vec![std::process::id()]);
    }

    #[test]
    fn a_kept_fd_directory_sees_its_count_change_and_its_process_end() {
        if fd_table_stat("/proc/self/fd").map_or(0, |(n, _)| n) == 0 {
            eprintln!("skipped: this kernel does not report fd counts in /proc/<pid>/fd");
            return;
        }
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (me, other) = (std::process::id(), child.id());
        let mut cache = OwnerCache::new(4096);
        cache.refresh().unwrap();
        cache.resolve(&[], false);
        assert!(cache.processes[&me].dir.is_some() && cache.processes[&other].dir.is_some());
        let before = cache.processes[&me].fd_count;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        cache.refresh().unwrap();
        // Read through the kept directory, the new count makes the first pass walk our table
        // again (unless another test thread closed an fd meanwhile: then the count is the same,
        // the case the module doc names).
        let found = cache.processes[&me].inodes.contains(&inode_of(&listener));
        assert!(found || cache.processes[&me].fd_count == before);
        let _ = child.kill();
        let _ = child.wait();
        cache.refresh().unwrap();
        assert!(!cache.processes.contains_key(&other), "an ended process is forgotten");
        assert_eq!(
            cache.kept_dirs,
            cache.processes.values().filter(|p| p.dir.is_some()).count()
        );
        let mut small = OwnerCache::new(1);
        small.refresh().unwrap();
        assert_eq!(small.processes.values().filter(|p| p.dir.is_some()).count(), 1);
        assert_eq!(small.kept_dirs, 1);
    }

    /// This process's own table holds the kept directories: a walk of it that kept a new one
    /// beside the old read its count as changed and walked it again at every snapshot.
    #[test]
    fn this_processes_own_table_is_not_walked_at_every_refresh() {
        if fd_table_stat("/proc/self/fd").map_or(0, |(n, _)| n) == 0 {
            eprintln!("skipped: this kernel does not report fd counts in /proc/<pid>/fd");
            return;
        }
        let me = std::process::id();
        // With directories kept, and with none (a limit on open files that leaves no room).
        for limit in [4096, 0] {
            let mut cache = OwnerCache::new(limit);
            // Other tests open and close files meanwhile, which may make any one refresh read
            // our table again; one refresh in twenty that keeps it is enough.
            let kept = (0..20).any(|_| {
                cache.refresh().unwrap();
                cache.refresh().unwrap();
                cache.processes[&me].fd_count != u64::MAX
            });
            assert!(
                kept,
                "limit {limit}: our table's count never held from one walk to the next"
            );
        }
    }

    #[test]
    fn a_walk_skips_the_fds_it_is_told_are_not_sockets() {
        let (a, b) = (
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let path = format!("/proc/{}/fd", std::process::id());
        let (all, _) = walk_process(&path, &FastSet::default()).unwrap().unwrap();
        assert!(all.contains(&inode_of(&a)) && all.contains(&inode_of(&b)));
        let skip: FastSet<RawFd> = [a.as_raw_fd()].into_iter().collect();
        let (some, _) = walk_process(&path, &skip).unwrap().unwrap();
        assert!(!some.contains(&inode_of(&a)) && some.contains(&inode_of(&b)));
    }

    #[test]
    fn same_fd_count_with_a_new_socket_forces_a_walk() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cache = OwnerCache::new(4096);
        cache.refresh().unwrap();
        let owners = cache.resolve(&[(inode_of(&first), true)], false);
        assert!(owners.contains(inode_of(&first)));
        // Pretend nothing changed since: our own entry keeps the old inodes, as when one fd
        // closed and another opened between snapshots.
        let mut cache = OwnerCache {
            counts_fds: true,
            ..cache
        };
        let pid = std::process::id();
        let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (now, _) = fd_table_stat(&format!("/proc/{pid}/fd")).unwrap();
        cache.processes.get_mut(&pid).unwrap().fd_count = now;
        cache.refresh().unwrap();
        let owners = cache.resolve(&[(inode_of(&first), true), (inode_of(&second), true)], false);
        assert_eq!(owners.pids_of(inode_of(&second)).collect::<Vec<_>>(), vec![pid]);
    }

    #[test]
    fn unowned_inodes_are_remembered_not_rewalked() {
        let mut cache = OwnerCache {
            counts_fds: true,
            ..OwnerCache::new(4096)
        };
        if fd_table_stat("/proc/self/fd").map_or(0, |(n, _)| n) == 0 {
            eprintln!("skipped: this kernel does not report fd counts in /proc/<pid>/fd");
            return;
        }
        cache.refresh().unwrap();
        // An inode no process holds (a kernel socket, say): two second passes, then remembered.
        let nobody = u64::MAX - 7;
        cache.resolve(&[(nobody, true)], false);
        assert!(cache.stats().second_pass);
        assert!(!cache.unowned.contains(&nobody), "one miss is not enough");
        cache.refresh().unwrap();
        cache.resolve(&[(nobody, true)], false);
        assert!(cache.stats().second_pass);
        assert!(cache.unowned.contains(&nobody));
        cache.refresh().unwrap();
        cache.resolve(&[(nobody, true)], false);
        assert!(
            !cache.stats().second_pass,
            "a known unowned inode must not force a walk"
        );
        // Gone from the dump: forgotten.
        cache.refresh().unwrap();
        cache.resolve(&[], false);
        assert!(!cache.unowned.contains(&nobody));
        // A socket whose owner this process could not read anyway forces no walk.
        cache.refresh().unwrap();
        cache.resolve(&[(u64::MAX - 9, false)], false);
        assert!(!cache.stats().second_pass);
        // Every table read after the dump: unowned at once, without a second pass.
        cache.refresh().unwrap();
        cache.resolve(&[(u64::MAX - 11, true)], true);
        assert!(!cache.stats().second_pass);
        assert!(cache.unowned.contains(&(u64::MAX - 11)));
    }
}
