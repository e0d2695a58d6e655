//! Which processes hold which socket: every `/proc/<pid>/fd/*` link of the form
//! `socket:[inode]`, gathered into an inode → pids map (the same walk `ss -p` does).
//!
//! Reading another user's fd table needs root (or CAP_SYS_PTRACE); processes whose table is
//! unreadable are counted so the caller can say once that their sockets have no pid.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;

/// Inode → pids, plus how many processes could not be inspected.
#[derive(Debug, Default)]
pub struct SocketOwners {
    pub by_inode: HashMap<u64, Vec<u32>>,
    pub unreadable_processes: usize,
}

fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?;
    let digits = rest.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads the target of `name` inside the directory `dir`: `readlinkat` resolves one name
/// instead of walking `/proc/<pid>/fd/<n>` from the root for each of tens of thousands of fds.
fn read_link_at(dir: &fs::File, name: &std::ffi::OsStr, buf: &mut [u8]) -> Option<usize> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(name.as_bytes()).ok()?;
    // SAFETY: `dir` is an open directory, `name` is NUL-terminated, and the kernel writes at
    // most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok()
}

/// Walks /proc. Processes that exit during the walk are skipped silently: they are gone.
pub fn scan() -> std::io::Result<SocketOwners> {
    let mut owners = SocketOwners::default();
    let mut path = String::with_capacity(64);
    let mut target = [0u8; 64];
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        path.clear();
        let _ = write!(path, "/proc/{pid}/fd");
        let (fds, dir) = match fs::read_dir(&path).and_then(|fds| Ok((fds, fs::File::open(&path)?))) {
            Ok(pair) => pair,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                owners.unreadable_processes += 1;
                continue;
            }
            Err(_) => continue,
        };
        for fd in fds {
            let Ok(fd) = fd else { continue };
            // Socket links are "socket:[<inode>]", well under 64 bytes; longer targets are paths.
            let Some(len) = read_link_at(&dir, &fd.file_name(), &mut target) else {
                continue;
            };
            if let Some(inode) = socket_inode(&target[..len.min(target.len())]) {
                let pids = owners.by_inode.entry(inode).or_default();
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn finds_our_own_socket() {
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let inode = fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino();
        let owners = scan().unwrap();
        assert_eq!(owners.by_inode.get(&inode), Some(&vec![std::process::id()]));
    }
}
