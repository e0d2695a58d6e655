//! The shell's statement splitter (netlens's `shell` uses it for every script and line): splits
//! SQL text into statements at semicolons that are not inside a string, a quoted
//! identifier, a dollar-quoted string or a comment. What follows the last semicolon is
//! returned as the unfinished rest, so the shell can keep reading lines until `;`.

/// Complete statements (without their `;`) and the unfinished rest.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub statements: Vec<String>,
    pub rest: String,
}

/// Splits `text`; statements that hold only comments and whitespace are dropped.
pub fn split(text: &str) -> Split {
    let bytes = text.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i, bytes[i]),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..].find("*/").map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b'$' => i = skip_dollar_quoted(text, i),
            b';' => {
                let stmt = &text[start..i];
                if !is_blank(stmt) {
                    statements.push(stmt.trim().to_string());
                }
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    Split {
        statements,
        rest: text[start.min(text.len())..].to_string(),
    }
}

fn skip_quoted(bytes: &[u8], open: usize, quote: u8) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `$tag$ ... $tag$` (tag may be empty). A `$` that does not open such a string (a
/// parameter like `$1`) is skipped as a single character.
fn skip_dollar_quoted(text: &str, open: usize) -> usize {
    let rest = &text[open + 1..];
    let tag_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if !rest[tag_len..].starts_with('$') || rest[..tag_len].starts_with(|c: char| c.is_ascii_digit()) {
        return open + 1;
    }
    let delimiter = &text[open..open + tag_len + 2];
    let body_start = open + tag_len + 2;
    text[body_start..]
        .find(delimiter)
        .map_or(text.len(), |p| body_start + p + delimiter.len())
}

/// The text after any leading whitespace and comments.
pub fn skip_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |p| &after[p + 1..]).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |p| &after[p + 2..]).trim_start();
        } else {
            return rest;
        }
    }
}

/// True when `sql` holds nothing but whitespace and comments.
pub fn is_blank(sql: &str) -> bool {
    skip_comments(sql).is_empty()
}

/// The statement's first keyword, upper-cased (`INSERT`, `SELECT`, ...), after comments.
pub fn first_keyword(sql: &str) -> String {
    skip_comments(sql)
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons() {
        let s = split("SELECT 1; SELECT ';' AS x; SELECT \"a;b\" FROM t;\nSELECT 2");
        assert_eq!(
            s.statements,
            vec!["SELECT 1", "SELECT ';' AS x", "SELECT \"a;b\" FROM t"]
        );
        assert_eq!(s.rest.trim(), "SELECT 2");
    }

    #[test]
    fn comments_and_escapes_do_not_end_statements() {
        let s = split("SELECT 'it''s; fine' -- a; comment\n, 1 /* b; c */;");
        assert_eq!(s.statements.len(), 1);
        assert!(s.statements[0].contains("it''s; fine"));
        assert_eq!(s.rest, "");
    }

    #[test]
    fn dollar_quotes() {
        let s = split("SELECT $$a;b$$; SELECT $x$c;d$x$; SELECT $1;");
        assert_eq!(s.statements, vec!["SELECT $$a;b$$", "SELECT $x$c;d$x$", "SELECT $1"]);
    }

    #[test]
    fn blank_statements_are_dropped_and_unterminated_text_is_rest() {
        let s = split(";; -- only a comment\n;  SELECT 'open");
        assert!(s.statements.is_empty());
        assert_eq!(s.rest, "  SELECT 'open");
        assert!(is_blank("  -- x\n /* y */ "));
        assert!(!is_blank("-- x\nSELECT 1"));
        assert_eq!(first_keyword("/* a */ -- b\n  insert into t values (1)"), "INSERT");
    }

    /// Issue 22 (fuzzing): damaged scripts (quotes, dollar quotes and comments left open, bytes
    /// that are not UTF-8 made into replacement characters). The splitter never panics, and
    /// what it returns is made of the input: no more text than it was given.
    #[test]
    fn damaged_scripts_never_panic_and_split_into_their_own_text() {
        let script = "SELECT 'a;b', \"c;d\" FROM t; -- note; here\n/* block; */ SELECT $$x;y$$, $tag$;$tag$;\n\
                      CREATE TABLE \"é;\" (x INT); INSERT INTO t VALUES ('it''s'); SELECT 1";
        for (_, case, damaged) in crate::mutate::cases(&[script.as_bytes()], 3000) {
            let text = String::from_utf8_lossy(&damaged);
            let s = split(&text);
            let total: usize = s.statements.iter().map(String::len).sum::<usize>() + s.rest.len();
            assert!(total <= text.len(), "case {case}: {text:?}");
            assert!(
                s.statements.iter().all(|st| text.contains(st.as_str())),
                "case {case}: {text:?}"
            );
            for st in &s.statements {
                let _ = first_keyword(st);
                let _ = skip_comments(st);
            }
        }
    }
}
