//! Giving back the executable's pages a long-running server touched once and no longer uses.
//!
//! A process's resident memory (RSS) counts every page of its executable it has touched,
//! and the kernel maps a file's pages in blocks around each one touched (fault-around, 64 KiB
//! by default). netlens is one executable with DuckDB inside it, and starting a server runs a
//! great deal of code only once: opening the database and checking its migrations, DuckDB's
//! own start, the command line, the first queries. Measured on a capturing server, those pages
//! were about two thirds of its RSS, long after they were last used (bench/RESULTS.md, "the
//! executable's pages").
//!
//! [`release_executable_pages`] asks the kernel (`madvise(MADV_PAGEOUT)`) to take the
//! executable's read-only pages out of this process's mappings. They are clean copies of the
//! file, so nothing is written anywhere; the code the server runs again (each snapshot, each
//! query) is mapped again at its next use from the page cache, as at start. The server does
//! this once its start is over, and again now and then (a client's rare command maps more).
//! Writable pages (the executable's data, the heap) are never touched. Where the kernel refuses
//! (before Linux 5.4, or a seccomp filter), nothing changes.
//!
//! Touches only this process's own mappings, read from `/proc/self/maps`.

use std::os::unix::fs::MetadataExt;

/// One line of `/proc/self/maps` that is a read-only mapping of the file with this
/// device and inode: its address range.
fn read_only_range_of(line: &str, dev: (u32, u32), inode: u64) -> Option<(usize, usize)> {
    let mut fields = line.split_ascii_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let device = fields.next()?;
    let ino: u64 = fields.next()?.parse().ok()?;
    let (major, minor) = device.split_once(':')?;
    let device = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    // Only pages that cannot have been written: neither writable nor shared.
    if ino != inode || device != dev || perms.len() < 4 || perms.contains('w') || !perms.ends_with('p') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (start, end) = (
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    );
    (start < end).then_some((start, end))
}

/// The read-only ranges of the file (`dev`, `inode`) in a `/proc/PID/maps` listing.
fn read_only_ranges(maps: &str, dev: (u32, u32), inode: u64) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| read_only_range_of(line, dev, inode))
        .collect()
}

/// This process's resident pages of files (its executable's among them), in bytes, as
/// `/proc/self/status` gives them.
pub fn resident_file_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Takes the executable's read-only pages out of this process (see the module doc). Returns
/// the bytes of address space it asked about; `None` when the executable or the mappings
/// could not be read or the kernel refused.
pub fn release_executable_pages() -> Option<usize> {
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    let dev = (libc::major(exe.dev()), libc::minor(exe.dev()));
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut asked = 0;
    for (start, end) in read_only_ranges(&maps, dev, exe.ino()) {
        // SAFETY: the range is a whole mapping of this process, read from its own maps, of
        // pages that were never written; MADV_PAGEOUT only drops them from memory (the next
        // access maps them again from the file) and changes no content.
        let done = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if done != 0 {
            return None;
        }
        asked += end - start;
    }
    Some(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55ccb5d4d000-55ccb6f48000 r--p 00000000 fe:00 5308714                    /work/cost/thr2
55ccb6f48000-55ccba8be000 r-xp 011fa000 fe:00 5308714                    /work/cost/thr2
55ccba8be000-55ccba9d9000 r--p 04b6f000 fe:00 5308714                    /work/cost/thr2
55ccba9d9000-55ccba9de000 rw-p 04c89000 fe:00 5308714                    /work/cost/thr2
55ccba9de000-55ccba9e9000 rw-p 00000000 00:00 0 
55ccbc000000-55ccbc021000 rw-p 00000000 00:00 0                          [heap]
7f2489f00000-7f2489f28000 r--p 00000000 fe:00 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f2489f28000-7f248a0bd000 r-xp 00028000 fe:01 5308714                    /elsewhere/same-inode
7f248a0bd000-7f248a0c0000 r--s 00000000 fe:00 5308714                    /work/cost/thr2
7ffc3a1f1000-7ffc3a212000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn only_the_executables_read_only_private_mappings_are_chosen() {
        let ranges = read_only_ranges(MAPS, (0xfe, 0), 5_308_714);
        assert_eq!(
            ranges,
            vec![
                (0x55cc_b5d4_d000, 0x55cc_b6f4_8000),
                (0x55cc_b6f4_8000, 0x55cc_ba8b_e000),
                (0x55cc_ba8b_e000, 0x55cc_ba9d_9000),
            ],
            "not its writable data, not another device's file with the same inode, not a shared map"
        );
        assert!(read_only_ranges("garbage\n\n1-2 r--p\n", (0xfe, 0), 5_308_714).is_empty());
    }

    #[test]
    fn the_executables_pages_leave_and_come_back_when_run() {
        let before = resident_file_bytes().unwrap();
        let asked = release_executable_pages().expect("this kernel takes MADV_PAGEOUT (Linux 5.4 and later)");
        assert!(asked > 0, "the test binary has read-only mappings");
        let after = resident_file_bytes().unwrap();
        assert!(after < before, "resident file pages {before} -> {after} bytes");
        // Code still runs: the pages come back as it is used.
        let sum: u64 = (1..=1000u64).map(|n| n * n).sum();
        assert_eq!(sum, 333_833_500);
    }
}
