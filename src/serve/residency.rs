//! Giving back the executable's pages a long-running server touched while it started.
//!
//! A process's resident memory (RSS) counts every page of its executable it has touched,
//! and the kernel maps a file's pages in blocks around each one touched (fault-around, 64 KiB
//! by default). netlens is one executable with DuckDB inside it, and starting a server runs a
//! great deal of code only once: opening the database and checking its migrations, DuckDB's
//! own start, the command line. Those pages stay counted long after they were last used
//! (measured in bench/RESULTS.md, "the executable's pages").
//!
//! [`release_executable_pages`] asks the kernel (`madvise(MADV_PAGEOUT)`) to reclaim the
//! executable's read-only private mappings in this process. The kernel reclaims what it may:
//! pages mapped by another process too (a second netlens running) stay, and it takes file pages
//! only from a process that could open the file for writing (its owner, for one). Reclaimed pages
//! leave the
//! page cache as well, so the code the server runs again (each snapshot, each query) is read
//! back from the executable at its next use, as at start; that is why the server does this
//! once, when its start is over, and not again and again. `madvise` never changes what a
//! mapping holds. Writable mappings (data, heap, DuckDB's cache) are never asked about.
//!
//! Linux only. Touches only this process's own mappings, read from `/proc/self/maps`.

/// A line of `/proc/self/maps`: its address range, permissions and the file's device and
/// inode (as the kernel prints them: `major:minor` in hex, inode in decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    device: &'a str,
    inode: u64,
}

fn mapping_of(line: &str) -> Option<Mapping<'_>> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let device = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    let (start, end) = (
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    );
    (start < end && perms.len() == 4).then_some(Mapping {
        start,
        end,
        perms,
        device,
        inode,
    })
}

/// The read-only private mappings of the file that holds the code at `address` (this
/// executable, when `address` is one of its functions), found by that mapping's own device and
/// inode: `stat` of the executable gives another device number than `/proc/self/maps` on some
/// file systems (btrfs subvolumes, older overlayfs).
fn read_only_ranges_of_file_at(maps: &str, address: usize) -> Vec<(usize, usize)> {
    let mappings: Vec<Mapping> = maps.lines().filter_map(mapping_of).collect();
    let Some(code) = mappings
        .iter()
        .find(|m| (m.start..m.end).contains(&address) && m.inode != 0)
    else {
        return Vec::new();
    };
    mappings
        .iter()
        .filter(|m| m.device == code.device && m.inode == code.inode)
        // Not writable now, and private: never another process's view of the file.
        .filter(|m| !m.perms.contains('w') && m.perms.ends_with('p'))
        .map(|m| (m.start, m.end))
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

/// Asks the kernel to reclaim the executable's read-only pages in this process (see the module
/// doc). Returns the bytes of address space asked about, or why nothing was asked or the
/// kernel refused (an old kernel, a seccomp filter).
pub fn release_executable_pages() -> Result<usize, String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps is unreadable: {e}"))?;
    let ranges = read_only_ranges_of_file_at(
        &maps,
        release_executable_pages as fn() -> Result<usize, String> as usize,
    );
    if ranges.is_empty() {
        return Err("no read-only mapping of the executable found in /proc/self/maps".to_string());
    }
    let mut asked = 0;
    for (start, end) in ranges {
        // SAFETY: the range is a whole mapping of this process, read from its own maps.
        // MADV_PAGEOUT changes no content of any mapping (a reclaimed page reads the same when
        // it is mapped again), so no reference into it is affected.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if rc != 0 {
            return Err(format!(
                "madvise(MADV_PAGEOUT) refused: {} (it needs Linux 5.4)",
                std::io::Error::last_os_error()
            ));
        }
        asked += end - start;
    }
    Ok(asked)
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
    fn only_the_read_only_private_mappings_of_the_codes_file_are_chosen() {
        let in_text = 0x55cc_b700_0000;
        assert_eq!(
            read_only_ranges_of_file_at(MAPS, in_text),
            vec![
                (0x55cc_b5d4_d000, 0x55cc_b6f4_8000),
                (0x55cc_b6f4_8000, 0x55cc_ba8b_e000),
                (0x55cc_ba8b_e000, 0x55cc_ba9d_9000),
            ],
            "not its writable data, not another device's file with the same inode, not a shared map"
        );
        let in_heap = 0x55cc_bc00_1000;
        assert!(
            read_only_ranges_of_file_at(MAPS, in_heap).is_empty(),
            "anonymous: no file"
        );
        assert!(read_only_ranges_of_file_at("garbage\n\n1-2 r--p\n", in_text).is_empty());
    }

    #[test]
    fn this_executables_code_is_found_in_its_own_maps() {
        // The address of a function of this binary lies in one of its read-only mappings.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let here = this_executables_code_is_found_in_its_own_maps as fn() as usize;
        let ranges = read_only_ranges_of_file_at(&maps, here);
        assert!(
            ranges.iter().any(|&(start, end)| (start..end).contains(&here)),
            "{ranges:x?} in\n{maps}"
        );
    }

    #[test]
    fn the_executables_pages_leave_this_process() {
        let before = resident_file_bytes().unwrap();
        let asked = release_executable_pages().expect("the kernel takes MADV_PAGEOUT (Linux 5.4 and later)");
        assert!(asked > 0);
        let after = resident_file_bytes().unwrap();
        assert!(after < before, "resident file pages {before} -> {after} bytes");
    }
}
