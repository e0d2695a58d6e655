//! Opening the files netlens writes at a path a user gave (`capture --record`, the shell's
//! `.output` and `.once`), so that a symbolic link planted there by someone else (in a shared
//! directory such as /tmp) cannot redirect the write to a file of the user's: the last
//! component is opened with `O_NOFOLLOW`, and a new file is private (0600). The bounded line
//! reader of the files netlens reads line by line lives with the parsers
//! (`netlens_parsers::lines`) and is re-exported here.
//!
//! A leaf: uses the error type and nothing else of the crate.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};
pub use netlens_parsers::lines::{read_line_within, LineRead};

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
