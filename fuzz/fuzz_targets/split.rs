//! Fuzzes the shell's statement splitter (every script, `-f` file, piped input and `.read` goes
//! through it) with arbitrary text: nothing may panic, and the statements and the unfinished rest
//! it returns are made of the input, no more text than it was given.
//!
//! It links the `netlens-parsers` crate only (no DuckDB in the fuzz build).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlens_parsers::split::{first_keyword, is_blank, skip_comments, split};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = split(&text);
    let total: usize = s.statements.iter().map(String::len).sum::<usize>() + s.rest.len();
    assert!(total <= text.len());
    assert!(text.ends_with(s.rest.as_str()));
    for statement in &s.statements {
        assert!(text.contains(statement.as_str()));
        assert!(!is_blank(statement));
        let _ = first_keyword(statement);
        let _ = skip_comments(statement);
    }
});
