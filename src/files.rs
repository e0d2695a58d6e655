//! Opening the files netlens writes at a path a user gave (`capture --record`, the shell's
//! `.output` and `.once`), so that a symbolic link planted there by someone else (in a shared
//! directory such as /tmp) cannot redirect the write to a file of the user's: the last
//! component is opened with `O_NOFOLLOW`, and a new file is private (0600). And reading lines of
//! the files netlens reads line by line (Zeek logs, recordings) with a bound on a line's length,
//! so a file without newlines (or an endless one, such as a device) cannot fill the memory.
//!
//! A leaf: uses the error type and nothing else of the crate.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// What [`read_line_within`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// The end of the input: nothing was read.
    End,
    /// A line of this many bytes (its newline included, when it has one) is in the buffer.
    Line(usize),
    /// The next line is longer than the bound (`max` bytes besides its newline): the buffer
    /// holds its first `max` bytes; one byte past them has been read and dropped, the rest is unread.
    TooLong,
}

/// Reads the next line of `input` (up to and including its `\n`) into `line` (emptied first),
/// reading at most `max` bytes of it: memory stays within `max` whatever the input.
pub fn read_line_within<R: std::io::BufRead>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    use std::io::{BufRead, Read};
    line.clear();
    let n = input.by_ref().take(max as u64 + 1).read_until(b'\n', line)?;
    Ok(match n {
        0 => LineRead::End,
        n if n > max && line.last() != Some(&b'\n') => {
            line.truncate(max);
            LineRead::TooLong
        }
        n => LineRead::Line(n),
    })
}

/// How an existing file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Emptied first (`.output`).
    Truncate,
    /// Written after its end (`--record`).
    Append,
}

/// Opens `path` for writing, creating it (mode 0600) when missing, never through a symbolic
/// link in its last component.
pub fn open_for_writing(path: &Path, existing: Existing) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
    match existing {
        Existing::Append => options.append(true),
        Existing::Truncate => options.write(true).truncate(true),
    };
    options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            Error::Usage(format!(
                "{}: is a symbolic link, which netlens does not write through (someone else may have planted it)\n  \
                 hint: give the path of the file itself",
                path.display()
            ))
        } else {
            Error::io(path, e)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Issue 22: a line is read up to the bound and no further, from any input (here an
    /// endless one).
    #[test]
    fn lines_are_read_within_the_bound() {
        let mut input = std::io::BufReader::new(&b"ab\nwxyz\ncdefg\n\nxyz"[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            match read_line_within(&mut input, &mut line, 4).unwrap() {
                LineRead::End => break,
                read => got.push((read, String::from_utf8(line.clone()).unwrap())),
            }
        }
        assert_eq!(
            got,
            [
                (LineRead::Line(3), "ab\n".to_string()),
                (LineRead::Line(5), "wxyz\n".to_string()),
                (LineRead::TooLong, "cdef".to_string()),
                (LineRead::Line(1), "\n".to_string()),
                (LineRead::Line(1), "\n".to_string()),
                (LineRead::Line(3), "xyz".to_string()),
            ]
        );
        let mut endless = std::io::BufReader::new(std::io::repeat(b'x'));
        assert_eq!(
            read_line_within(&mut endless, &mut line, 1 << 20).unwrap(),
            LineRead::TooLong
        );
        assert_eq!(line.len(), 1 << 20);
    }

    #[test]
    fn a_planted_symlink_is_not_followed_and_its_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let planted = dir.path().join("out.csv");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        for existing in [Existing::Truncate, Existing::Append] {
            let e = open_for_writing(&planted, existing).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn files_are_created_private_truncated_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        open_for_writing(&path, Existing::Append)
            .unwrap()
            .write_all(b"a\n")
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        open_for_writing(&path, Existing::Append)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        open_for_writing(&path, Existing::Truncate)
            .unwrap()
            .write_all(b"c\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
    }
}
