//! The interactive shell: rustyline line editing with a history file, multi-line statements
//! ending at `;`, and tab completion of dot commands, SQL keywords, tables, views, columns
//! and functions. Ctrl-C at the prompt clears the line; during a query it cancels the query
//! (see `interrupt`); Ctrl-D leaves.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use clap::CommandFactory;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::{Flow, Session};
use crate::cli::DotLine;
use crate::error::{Error, Result};

/// Words the completer offers, refreshed from the catalog after every statement.
#[derive(Default)]
struct Vocabulary {
    dot_commands: Vec<String>,
    keywords: Vec<String>,
    names: Vec<String>,
}

struct ShellHelper {
    vocabulary: Arc<RwLock<Vocabulary>>,
}

impl Helper for ShellHelper {}
impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}

/// Completions for the word before `pos`.
fn complete_word(vocabulary: &Vocabulary, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    if before[..start].trim() == "." {
        let candidates = vocabulary
            .dot_commands
            .iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: format!(".{c}"),
                replacement: c.clone(),
            })
            .collect();
        return (start, candidates);
    }
    if word.is_empty() {
        return (start, Vec::new());
    }
    let lower = word.to_lowercase();
    let upper_case = word.chars().all(|c| !c.is_lowercase());
    let mut seen = BTreeSet::new();
    let names = vocabulary
        .names
        .iter()
        .filter(|n| n.to_lowercase().starts_with(&lower))
        .cloned();
    let keywords = vocabulary.keywords.iter().filter(|k| k.starts_with(&lower)).map(|k| {
        if upper_case {
            k.to_uppercase()
        } else {
            k.clone()
        }
    });
    let candidates = names
        .chain(keywords)
        .filter(|c| seen.insert(c.clone()))
        .map(|c| Pair {
            display: c.clone(),
            replacement: c,
        })
        .collect();
    (start, candidates)
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        match self.vocabulary.read() {
            Ok(v) => Ok(complete_word(&v, line, pos)),
            Err(_) => Ok((pos, Vec::new())),
        }
    }
}

fn refresh(session: &mut Session, vocabulary: &Arc<RwLock<Vocabulary>>) {
    let names = session.strings(
        "SELECT DISTINCT name FROM (SELECT table_name AS name FROM duckdb_tables() \
         UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal \
         UNION ALL SELECT column_name FROM duckdb_columns() WHERE NOT internal \
         UNION ALL SELECT function_name FROM duckdb_functions() WHERE function_type IN ('scalar', 'aggregate', 'table')) \
         WHERE name NOT LIKE '!_%' ESCAPE '!' ORDER BY name",
    );
    if let Ok(mut v) = vocabulary.write() {
        v.names = names;
    }
}

fn history_path() -> Option<PathBuf> {
    crate::store::data_dir().ok().map(|d| d.join("history"))
}

/// Runs the shell until `.quit` or Ctrl-D.
pub fn run(session: &mut Session) -> Result<()> {
    let vocabulary = Arc::new(RwLock::new(Vocabulary {
        dot_commands: DotLine::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect(),
        keywords: session.strings("SELECT DISTINCT lower(keyword_name) FROM duckdb_keywords() ORDER BY 1"),
        names: Vec::new(),
    }));
    refresh(session, &vocabulary);
    // Bash-style completion: complete the common prefix, list the choices on a second Tab.
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .auto_add_history(false)
        .max_history_size(10_000)
        .map_err(|e| Error::Usage(format!("cannot configure the line editor: {e}")))?
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| Error::Usage(format!("cannot start the line editor: {e}")))?;
    editor.set_helper(Some(ShellHelper {
        vocabulary: vocabulary.clone(),
    }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "netlens {} — database {}\nEnter SQL ending with ';', or .help for commands. Ctrl-D leaves.",
        env!("CARGO_PKG_VERSION"),
        session.describe()
    );
    let mut pending = String::new();
    loop {
        let prompt = if pending.trim().is_empty() {
            "netlens> "
        } else {
            "     ..> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let flow = session.feed_line(&mut pending, &line);
                refresh(session, &vocabulary);
                if flow == Flow::Quit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                pending.clear();
            }
            Err(ReadlineError::Eof) => {
                session.finish(&mut pending);
                break;
            }
            Err(e) => return Err(Error::Usage(format!("reading input failed: {e}"))),
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary {
            dot_commands: vec!["capture".into(), "tables".into(), "timer".into()],
            keywords: vec!["select".into(), "from".into()],
            names: vec!["sockets".into(), "snapshots".into(), "state".into()],
        }
    }

    fn replacements(line: &str) -> (usize, Vec<String>) {
        let (start, pairs) = complete_word(&vocab(), line, line.len());
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_dot_commands_at_line_start() {
        assert_eq!(replacements(".t"), (1, vec!["tables".to_string(), "timer".to_string()]));
        assert_eq!(replacements(".").1.len(), 3);
    }

    #[test]
    fn completes_names_and_keywords_keeping_case() {
        assert_eq!(replacements("SELECT * FROM so").1, vec!["sockets"]);
        assert_eq!(replacements("SEL").1, vec!["SELECT"]);
        assert_eq!(replacements("sel").1, vec!["select"]);
        assert_eq!(
            replacements("SELECT s").1,
            vec!["sockets", "snapshots", "state", "select"]
        );
        assert_eq!(replacements("SELECT ").1.len(), 0);
    }
}
