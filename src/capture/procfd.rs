//! Which processes hold which socket: every `/proc/<pid>/fd/*` link of the form
//! `socket:[inode]`, gathered into an inode → pids map (the same walk `ss -p` does).
//!
//! A capture takes a snapshot every second or so, and at tens of thousands of sockets the walk
//! (one `readlinkat` per fd) is the most expensive part of a snapshot, while between two
//! snapshots most fd tables do not change. So [`OwnerCache`] keeps each process's socket
//! inodes and walks again only the processes that are new or whose number of open fds
//! changed: since Linux 6.2 the size of `/proc/<pid>/fd` is that number, one `stat` per process.
//! Change that keeps the count (one fd closed, another opened) is caught by its result: a
//! socket inode that no cached table holds makes every process not walked in this snapshot be
//! walked again. Inodes that a complete walk found no owner for (kernel sockets, tables we may
//! not read) are remembered, so they do not force a full walk at every snapshot.
//! The one change this cannot see is a process dropping a socket that stays open in another
//! process while opening a non-socket fd in the same interval: that socket keeps the dropped
//! pid in its list until the process's fd count next changes. On kernels that do not report
//! the count every snapshot walks everything.
//!
//! Reading another user's fd table needs root (or CAP_SYS_PTRACE); processes whose table is
//! unreadable are counted so the caller can say once that their sockets have no pid.

use std::collections::{HashMap, HashSet};

use foldhash::HashSet as FastSet;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;

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
    /// Socket inodes, sorted and without repeats.
    inodes: Vec<u64>,
    /// False when the table could not be read (permission).
    readable: bool,
}

/// How much a refresh had to read, for tests and the curious.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    /// Processes whose fd table was read.
    pub walked: usize,
    /// Processes taken from the cache.
    pub reused: usize,
    /// Whether a socket no cached table held forced a walk of every process.
    pub full_walk: bool,
}

/// Socket owners kept between snapshots of one capture run.
#[derive(Debug)]
pub struct OwnerCache {
    processes: HashMap<u32, ProcessFds>,
    /// Socket inodes a complete walk found no owner for.
    unowned: FastSet<u64>,
    /// Whether this kernel reports the number of open fds as the size of `/proc/<pid>/fd`.
    counts_fds: bool,
    /// Pids walked in the current snapshot.
    walked_now: HashSet<u32>,
    stats: WalkStats,
}

impl Default for OwnerCache {
    fn default() -> Self {
        OwnerCache::new()
    }
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

/// Size of `/proc/<pid>/fd`: the number of open fds on Linux ≥ 6.2, 0 before.
fn fd_count(path: &str) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| m.size())
}

/// Reads one process's socket inodes. `Ok(None)`: the process is gone.
fn walk_process(path: &str) -> std::io::Result<Option<Vec<u64>>> {
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
    Ok(Some(inodes))
}

impl OwnerCache {
    /// An empty cache; the first refresh walks every process.
    pub fn new() -> Self {
        let counts_fds = fd_count("/proc/self/fd").is_ok_and(|n| n > 0);
        OwnerCache {
            processes: HashMap::new(),
            unowned: FastSet::default(),
            counts_fds,
            walked_now: HashSet::new(),
            stats: WalkStats::default(),
        }
    }

    /// First half of a snapshot, run while the socket dump is in flight: forgets processes
    /// that exited and walks the ones that are new or whose fd count changed.
    pub fn refresh(&mut self) -> std::io::Result<()> {
        self.walked_now.clear();
        self.stats = WalkStats::default();
        let mut alive = HashSet::with_capacity(self.processes.len() + 16);
        let mut path = String::with_capacity(32);
        for entry in fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            alive.insert(pid);
            path.clear();
            let _ = write!(path, "/proc/{pid}/fd");
            let count = match fd_count(&path) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::PermissionDenied => u64::MAX,
                Err(_) => continue,
            };
            let unchanged = self.counts_fds
                && count != u64::MAX
                && self
                    .processes
                    .get(&pid)
                    .is_some_and(|p| p.readable && p.fd_count == count);
            if unchanged {
                self.stats.reused += 1;
            } else {
                self.walk(pid, count, &path);
            }
        }
        self.processes.retain(|pid, _| alive.contains(pid));
        Ok(())
    }

    fn walk(&mut self, pid: u32, fd_count: u64, path: &str) {
        self.walked_now.insert(pid);
        self.stats.walked += 1;
        match walk_process(path) {
            Ok(Some(inodes)) => {
                self.processes.insert(
                    pid,
                    ProcessFds {
                        fd_count,
                        inodes,
                        readable: true,
                    },
                );
            }
            Ok(None) => {
                self.processes.remove(&pid);
            }
            Err(_) => {
                self.processes.insert(
                    pid,
                    ProcessFds {
                        fd_count,
                        inodes: Vec::new(),
                        readable: false,
                    },
                );
            }
        }
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

    /// Second half: the owners of the dumped sockets' inodes. When one is owned by no cached
    /// table and was not known to be unowned, every process not yet walked in this snapshot is
    /// walked again before answering.
    pub fn resolve(&mut self, inodes: &[u64]) -> SocketOwners {
        let mut owners = self.owners();
        let missing = |owners: &SocketOwners, unowned: &FastSet<u64>| {
            inodes.iter().any(|&i| !owners.contains(i) && !unowned.contains(&i))
        };
        if missing(&owners, &self.unowned) {
            let stale: Vec<u32> = self
                .processes
                .keys()
                .copied()
                .filter(|pid| !self.walked_now.contains(pid))
                .collect();
            if !stale.is_empty() {
                self.stats.full_walk = true;
                let mut path = String::with_capacity(32);
                for pid in stale {
                    path.clear();
                    let _ = write!(path, "/proc/{pid}/fd");
                    let count = fd_count(&path).unwrap_or(u64::MAX);
                    self.walk(pid, count, &path);
                    self.stats.reused = self.stats.reused.saturating_sub(1);
                }
                owners = self.owners();
            }
        }
        // Every process has now been read in this snapshot or kept its count: what has no owner
        // now is unowned until a walk says otherwise.
        let current: FastSet<u64> = inodes.iter().copied().collect();
        self.unowned.retain(|i| current.contains(i));
        for &i in inodes {
            if !owners.contains(i) {
                self.unowned.insert(i);
            }
        }
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
    let mut cache = OwnerCache::new();
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
        let mut cache = OwnerCache::new();
        cache.refresh().unwrap();
        cache.resolve(&[]);
        // Opened after the first walk; our fd count changes, or (if another thread of the test
        // binary closed an fd meanwhile) the unknown inode forces a walk: found either way.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&listener);
        cache.refresh().unwrap();
        let owners = cache.resolve(&[inode]);
        assert_eq!(owners.pids_of(inode).collect::<Vec<_>>(), vec![std::process::id()]);
    }

    #[test]
    fn same_fd_count_with_a_new_socket_forces_a_walk() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cache = OwnerCache::new();
        cache.refresh().unwrap();
        let owners = cache.resolve(&[inode_of(&first)]);
        assert!(owners.contains(inode_of(&first)));
        // Pretend nothing changed since: our own entry keeps the old inodes, as when one fd
        // closed and another opened between snapshots.
        let mut cache = OwnerCache {
            counts_fds: true,
            ..cache
        };
        let pid = std::process::id();
        let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let now = fd_count(&format!("/proc/{pid}/fd")).unwrap();
        cache.processes.get_mut(&pid).unwrap().fd_count = now;
        cache.refresh().unwrap();
        let owners = cache.resolve(&[inode_of(&first), inode_of(&second)]);
        assert_eq!(owners.pids_of(inode_of(&second)).collect::<Vec<_>>(), vec![pid]);
        assert!(cache.walked_now.contains(&pid));
    }

    #[test]
    fn unowned_inodes_are_remembered_not_rewalked() {
        let mut cache = OwnerCache {
            counts_fds: true,
            ..OwnerCache::new()
        };
        if fd_count("/proc/self/fd").unwrap_or(0) == 0 {
            eprintln!("skipped: this kernel does not report fd counts in /proc/<pid>/fd");
            return;
        }
        cache.refresh().unwrap();
        // An inode no process holds (a kernel socket, say): one full walk, then remembered.
        let nobody = u64::MAX - 7;
        cache.resolve(&[nobody]);
        assert!(cache.unowned.contains(&nobody));
        cache.refresh().unwrap();
        cache.resolve(&[nobody]);
        assert!(!cache.stats().full_walk, "a known unowned inode must not force a walk");
        // Gone from the dump: forgotten.
        cache.refresh().unwrap();
        cache.resolve(&[]);
        assert!(!cache.unowned.contains(&nobody));
    }
}
