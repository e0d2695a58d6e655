//! Reading the lines of the line-based formats (Zeek logs, replays) with a bound on a line's
//! length, so a file without newlines (or an endless one, such as a device) cannot fill the
//! memory.
//!
//! A leaf: std only.

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

#[cfg(test)]
mod tests {
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
}
