//! netlens: host network analytics on an embedded DuckDB store.
//!
//! Data flows one way: `capture` (and later `ingest`) append raw rows through `store`;
//! analysis reads the store with SQL; `shell` is where analysts meet it. See
//! ARCHITECTURE.md in the project's shared folder for the whole design.

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod detect;
pub mod error;
pub mod geo;
pub mod ingest;
pub mod interrupt;
pub mod netaddr;
pub mod output;
pub mod report;
pub mod shell;
pub mod store;

use std::io::{IsTerminal, Read};

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command, DomainCommand};
use error::{Error, Result};
use shell::{Flow, Session, Settings};
use store::{Location, Store};

/// Process exit status for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything succeeded (or the output reader went away).
    Success,
    /// At least one statement or command failed; the messages went to stderr.
    Failed,
    /// Stopped by Ctrl-C.
    Interrupted,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::Interrupted => 130,
        }
    }
}

/// One script source of a one-shot run, in command-line order.
enum Script {
    Text(String),
    File(std::path::PathBuf),
}

/// Parses the command line and runs it.
pub fn run_from_args() -> Result<Outcome> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::Usage(e.to_string()))?;
    // -c and -f run in the order given, whichever flag they came from.
    let mut scripts: Vec<(usize, Script)> = Vec::new();
    if let Some(indices) = matches.indices_of("queries") {
        scripts.extend(
            indices
                .zip(cli.queries.iter())
                .map(|(i, q)| (i, Script::Text(q.clone()))),
        );
    }
    if let Some(indices) = matches.indices_of("files") {
        scripts.extend(indices.zip(cli.files.iter()).map(|(i, f)| (i, Script::File(f.clone()))));
    }
    scripts.sort_by_key(|(i, _)| *i);
    run(cli, scripts.into_iter().map(|(_, s)| s).collect())
}

fn run(cli: Cli, scripts: Vec<Script>) -> Result<Outcome> {
    interrupt::install();
    let location = Location::resolve(cli.db.as_deref())?;
    let mut settings = Settings::for_stdout();
    if let Some(mode) = cli.format {
        settings.mode = mode;
    }
    settings.headers = !cli.no_headers;
    settings.bail = cli.bail;

    let interactive_shell = match &cli.command {
        Some(Command::Shell) => true,
        Some(Command::Domain(_)) => false,
        None => scripts.is_empty() && std::io::stdin().is_terminal(),
    };
    // Reading a capture needs nothing from the database: an import starts it while the
    // database opens (not when the database is read-only: that import is refused).
    let ahead = match &cli.command {
        Some(Command::Domain(DomainCommand::Import(args))) if !cli.read_only => ingest::ReadAhead::start(args),
        _ => None,
    };
    let store = Store::open(&location, cli.read_only)?;
    let mut session = Session::new(store, settings, interactive_shell);

    match cli.command {
        Some(Command::Domain(command)) => {
            // A Ctrl-C while the database opened stops an import already reading.
            if ahead.is_none() {
                interrupt::clear();
            }
            match session.run_domain_ahead(command, ahead) {
                Ok(()) => Ok(Outcome::Success),
                Err(e) if e.is_broken_pipe() => Ok(Outcome::Success),
                Err(e) => Err(e),
            }
        }
        // A shell session showed its errors as they happened; leaving it is a success.
        Some(Command::Shell) => shell::repl::run(&mut session).map(|_| Outcome::Success),
        None if interactive_shell => shell::repl::run(&mut session).map(|_| Outcome::Success),
        None => {
            let mut flow = Flow::Continue;
            if scripts.is_empty() {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| Error::io("<stdin>", e))?;
                flow = session.run_script(&text);
            }
            for script in scripts {
                if flow != Flow::Continue {
                    break;
                }
                flow = match script {
                    Script::Text(text) => session.run_script(&text),
                    Script::File(path) => session.read(&path),
                };
            }
            Ok(outcome(&session, flow))
        }
    }
}

fn outcome(session: &Session, flow: Flow) -> Outcome {
    if flow == Flow::Stop && interrupt::requested() {
        Outcome::Interrupted
    } else if session.failures() > 0 {
        Outcome::Failed
    } else {
        Outcome::Success
    }
}
