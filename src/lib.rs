//! netlens: host network analytics on an embedded DuckDB store.
//!
//! Dependencies point one way: the command line (`cli`, this file) parses and converts into
//! plain requests (`request`); domain modules (`capture`, `ingest`, `analysis`, `detect`, `geo`,
//! `report`) do the work on the `store`; `shell` prints. `serve` holds the database for many
//! clients. docs/ARCHITECTURE.md maps every module and what it may touch.

pub mod analysis;
pub mod capture;
pub mod chart;
pub mod cli;
pub mod dashboard;
pub mod detect;
pub mod error;
pub mod feedback;
pub mod files;
pub mod geo;
pub mod ingest;
pub mod interrupt;
#[cfg(test)]
use netlens_parsers::mutate;
pub mod netaddr;
pub mod output;
pub mod report;
pub mod request;
pub mod retention;
pub mod serve;
pub mod shared_reads;
pub mod shell;
pub mod store;
pub mod watch;

use std::io::{IsTerminal, Read};

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command, DomainCommand};
use error::{Error, Result};
use serve::client::{ServerAddress, TcpServer};
use shell::{Database, Flow, LocalDatabase, Session, Settings};
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

/// `serve` takes the file for writing and runs no script of its own: a global option that would
/// make it read-only, or statements given beside it, would otherwise be dropped without a word
/// (and a file the user meant to keep unchanged written to).
fn refuse_options_a_server_ignores(cli: &Cli, scripts: &[Script]) -> Result<()> {
    if cli.read_only {
        return Err(Error::Usage(
            "--read-only does not apply to `serve`: a server writes its file (snapshots, scheduled runs, \
             what clients store)\n  hint: to read a file without changing it, stop the server and use \
             `netlens --db FILE --read-only ...` (several readers may share it), or serve a copy"
                .to_string(),
        ));
    }
    if !scripts.is_empty() {
        return Err(Error::Usage(
            "-c and -f do not apply to `serve`: it runs no statements of its own\n  hint: start the server, \
             then run `netlens --db FILE -c \"...\"` in another terminal (it goes through the server)"
                .to_string(),
        ));
    }
    Ok(())
}

/// The server named by `--server`, with the token and certificate it needs; `None` without one.
fn named_server(cli: &Cli) -> Result<Option<ServerAddress>> {
    let Some(url) = &cli.server else {
        if cli.token_file.is_some() || cli.tls_ca.is_some() {
            return Err(Error::Usage(
                "--token-file and --tls-ca go with --server URL: they say how to reach a server's TCP listener"
                    .to_string(),
            ));
        }
        return Ok(None);
    };
    // NETLENS_DB in the environment names the usual file; --db beside --server names a second
    // database, and which one was meant cannot be told.
    if cli.db.is_some() && std::env::var("NETLENS_DB").ok() != cli.db {
        return Err(Error::Usage(format!(
            "--db and --server {url} both name a database\n  hint: the server's own file is the one it \
             answers for; drop --db"
        )));
    }
    let token = match &cli.token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        None => std::env::var("NETLENS_TOKEN").map_err(|_| {
            Error::Usage(format!(
                "--server {url} needs the server's token\n  hint: --token-file FILE (a copy of DATABASE.token \
                 from the server's host), or the token in NETLENS_TOKEN"
            ))
        })?,
    };
    let tls_ca = cli
        .tls_ca
        .as_ref()
        .map(|path| std::fs::read(path).map_err(|e| Error::io(path, e)))
        .transpose()?;
    Ok(Some(ServerAddress::Tcp(TcpServer::new(url, token, tls_ca)?)))
}

fn run(cli: Cli, scripts: Vec<Script>) -> Result<Outcome> {
    let named = named_server(&cli)?;
    // With --server no file of this host is opened or looked for (its default path may not even
    // be usable, say under sudo); the in-memory location is never used then.
    let location = match named {
        Some(_) => Location::Memory,
        None => Location::resolve(cli.db.as_deref())?,
    };
    let mut cli = cli;
    match cli.command.take() {
        Some(Command::Serve(_)) if named.is_some() => {
            return Err(Error::Usage(
                "--server does not apply to `serve`: a server holds a database file of this host".to_string(),
            ))
        }
        // The server handles its own signals: no Ctrl-C handler of the shell's.
        Some(Command::Serve(args)) => {
            refuse_options_a_server_ignores(&cli, &scripts)?;
            return serve::run(args.into_options(location)?).map(|_| Outcome::Success);
        }
        Some(Command::Status) => {
            return match &named {
                Some(address) => print_status(address, cli.format),
                None => status(&location, cli.format),
            }
        }
        other => cli.command = other,
    }
    interrupt::install();
    let mut settings = Settings::for_stdout();
    if let Some(mode) = cli.format {
        settings.mode = mode;
    }
    settings.headers = !cli.no_headers;
    settings.bail = cli.bail;

    let interactive_shell = match &cli.command {
        Some(Command::Shell) => true,
        Some(Command::Domain(_)) => false,
        Some(Command::Serve(_) | Command::Status) => false,
        None => scripts.is_empty() && std::io::stdin().is_terminal(),
    };
    let server = match &named {
        Some(address) => Some(shell::remote::RemoteDatabase::connect_to(address, cli.read_only)?),
        None => server_of(&location, cli.read_only)?,
    };
    let db: Box<dyn Database> = match server {
        Some(remote) => {
            // People read this; programs reading csv or json get only their data on stdout,
            // and nothing extra on stderr.
            if settings.mode.is_display() {
                eprintln!("note: {}", remote.describe());
            }
            Box::new(remote)
        }
        None => {
            // Reading a capture needs nothing from the database: an import starts it while the
            // database opens (not when the database is read-only: that import is refused).
            let ahead = match &cli.command {
                Some(Command::Domain(DomainCommand::Import(args))) if !cli.read_only => {
                    cli::import_request(args).as_ref().and_then(ingest::ReadAhead::start)
                }
                _ => None,
            };
            if let Location::File(path) = &location {
                if let Some(warning) = store::foreign_owner_warning(path) {
                    eprintln!("{warning}");
                }
            }
            let store = Store::open(&location, cli.read_only)?;
            return run_session(
                cli,
                scripts,
                Box::new(LocalDatabase::new(store)),
                settings,
                interactive_shell,
                ahead,
            );
        }
    };
    run_session(cli, scripts, db, settings, interactive_shell, None)
}

/// The server holding the database file, when one answers on its socket. A socket without a
/// server behind it (one killed with SIGKILL) is left for the next `serve` to remove: opening
/// the file here then works as without a server.
fn server_of(location: &Location, read_only: bool) -> Result<Option<shell::remote::RemoteDatabase>> {
    match serve::endpoint(location)? {
        Some((path, socket)) if serve::client::Client::probe(&socket) => {
            shell::remote::RemoteDatabase::connect(&path, &socket, read_only).map(Some)
        }
        _ => Ok(None),
    }
}

/// `netlens status`: the server's state, as lines or (`--format json`) as JSON.
fn status(location: &Location, format: Option<cli::OutputMode>) -> Result<Outcome> {
    let Some((path, socket)) = serve::endpoint(location)? else {
        return Err(Error::Usage("an in-memory database has no server".to_string()));
    };
    if !serve::client::Client::probe(&socket) {
        let stale = if socket.exists() {
            format!(" (the socket {} is left from a server that is gone)", socket.display())
        } else {
            String::new()
        };
        eprintln!("no netlens server holds {}{stale}", path.display());
        return Ok(Outcome::Failed);
    }
    print_status(&ServerAddress::Socket(socket), format)
}

/// Prints the status of the server at `address`.
fn print_status(address: &ServerAddress, format: Option<cli::OutputMode>) -> Result<Outcome> {
    let status = serve::client::Client::connect_to(address)?.status()?;
    let text = match format {
        Some(cli::OutputMode::Json | cli::OutputMode::Jsonl) => {
            serde_json::to_string_pretty(&status).map_err(|e| Error::Usage(e.to_string()))? + "\n"
        }
        _ => status.to_text(),
    };
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Output)?;
    Ok(Outcome::Success)
}

fn run_session(
    cli: Cli,
    scripts: Vec<Script>,
    db: Box<dyn Database>,
    settings: Settings,
    interactive_shell: bool,
    ahead: Option<ingest::ReadAhead>,
) -> Result<Outcome> {
    let mut session = Session::new(db, settings, interactive_shell);

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
        Some(Command::Serve(_) | Command::Status) => Ok(Outcome::Success),
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

/// The dependency rules of docs/ARCHITECTURE.md, checked on the source: a forbidden import
/// fails here, naming the file and the line.
#[cfg(test)]
mod architecture {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Module of a source file: its first path component under src/ (`lib.rs` is `lib`).
    fn module(src: &Path, file: &Path) -> String {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("component")
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    }

    /// Lines of code (comments left out) that name `crate::<target>` or, for `clap`,
    /// `netlens_packets` and `netlens_parsers`, the crate.
    fn uses(text: &str, target: &str) -> Vec<(usize, String)> {
        let needle = if ["clap", "netlens_packets", "netlens_parsers"].contains(&target) {
            target.to_string()
        } else {
            format!("crate::{target}")
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| {
                let code = l.trim_start();
                !code.starts_with("//") && code.contains(&needle)
            })
            .map(|(i, l)| (i + 1, l.trim().to_string()))
            .collect()
    }

    #[test]
    fn dependencies_point_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        // (module, what it must not use). The command line and the printing shell sit on top;
        // domain modules take plain requests; the store is a leaf that knows no source.
        let domain = [
            "analysis",
            "capture",
            "detect",
            "geo",
            "ingest",
            "report",
            "request",
            "store",
            "output",
            "netaddr",
            "watch",
            "serve",
            "retention",
            "feedback",
            "chart",
            "dashboard",
            "shared_reads",
        ];
        let mut rules: Vec<(&str, &str)> = Vec::new();
        for m in domain {
            rules.push((m, "cli"));
            rules.push((m, "shell"));
            rules.push((m, "clap"));
        }
        // Only the server (and the command line above it) may use the server.
        for m in domain.into_iter().filter(|m| *m != "serve") {
            rules.push((m, "serve"));
        }
        // Retention knows the tables, not who fills them.
        for target in ["capture", "ingest", "request"] {
            rules.push(("retention", target));
        }
        for target in [
            "ingest",
            "analysis",
            "detect",
            "geo",
            "report",
            "request",
            "serve",
            "watch",
            "retention",
            "feedback",
            "dashboard",
            "shared_reads",
            "chart",
        ] {
            rules.push(("store", target));
        }
        rules.push(("store", "capture"));
        // Ingest is file import only: capture uses its flow engine, never the reverse, and every
        // source of snapshots (a `capture::Source`) lives in capture.
        rules.push(("ingest", "capture"));
        // Opening files is a leaf: the error type only.
        for target in [
            "analysis",
            "capture",
            "cli",
            "dashboard",
            "detect",
            "geo",
            "ingest",
            "output",
            "report",
            "request",
            "serve",
            "shell",
            "store",
            "watch",
        ] {
            rules.push(("files", target));
        }
        let mut broken = Vec::new();
        for file in &files {
            let m = module(&src, file);
            let text = std::fs::read_to_string(file).expect("read");
            // Tests may build whatever they need.
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            for (owner, target) in &rules {
                if m != *owner {
                    continue;
                }
                for (line, l) in uses(code, target) {
                    broken.push(format!("{}:{line}: {owner} uses {target}: {l}", file.display()));
                }
            }
        }
        // The anomaly models are pure computation (their module docs say so): no store, no SQL.
        for name in ["iforest", "ocsvm", "lof", "autoencoder", "ensemble"] {
            let file = src.join("analysis").join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&file).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            for (line, l) in uses(code, "store") {
                broken.push(format!("{}:{line}: a pure model uses store: {l}", file.display()));
            }
            for (line, l) in code.lines().enumerate().filter(|(_, l)| l.contains("duckdb")) {
                broken.push(format!(
                    "{}:{}: a pure model uses duckdb: {}",
                    file.display(),
                    line + 1,
                    l.trim()
                ));
            }
        }
        // Sources of snapshots live in capture (the demo's synthetic history was once ingest's).
        for file in &files {
            if module(&src, file) == "capture" {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            for (i, l) in code.lines().enumerate() {
                let l = l.trim();
                if !l.starts_with("//")
                    && l.starts_with("impl")
                    && l.contains("Source for")
                    && code.contains("capture::")
                {
                    broken.push(format!(
                        "{}:{}: a capture source outside capture: {l}",
                        file.display(),
                        i + 1
                    ));
                }
            }
        }
        // The packet crate (reader, decoder, flow engine) is driven by file import and live
        // capture only; the store and everything above keep to their rows.
        for file in &files {
            let m = module(&src, file);
            if ["ingest", "capture"].contains(&m.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            for (line, l) in uses(code, "netlens_packets") {
                broken.push(format!("{}:{line}: {m} uses netlens_packets: {l}", file.display()));
            }
        }
        // The parsers of untrusted input are used where that input is read: the Zeek import,
        // replays, geo's answers, the shell's scripts and the bounded line reader's re-export;
        // and the Zeek export (store), which writes fields with the escape the import reads.
        for file in &files {
            let m = module(&src, file);
            if ["ingest", "capture", "geo", "shell", "files", "store"].contains(&m.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            for (line, l) in uses(code, "netlens_parsers") {
                broken.push(format!("{}:{line}: {m} uses netlens_parsers: {l}", file.display()));
            }
        }
        assert!(broken.is_empty(), "forbidden imports:\n{}", broken.join("\n"));
    }

    /// The crates the fuzz targets link build without DuckDB and without the netlens crate: a
    /// dependency on either would make the fuzz build compile DuckDB (C++, a long build under
    /// the sanitizers), or let a parser reach the store.
    #[test]
    fn the_fuzzed_crates_stay_free_of_duckdb_and_netlens() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for krate in ["netlens-packets", "netlens-parsers"] {
            let manifest =
                std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml")).expect("manifest");
            let dependencies = manifest.split("[dependencies]").nth(1).expect("a [dependencies] table");
            for line in dependencies.lines().filter(|l| !l.trim_start().starts_with('#')) {
                assert!(
                    !line.contains("duckdb") && !line.contains("netlens") && !line.contains("path"),
                    "{krate} depends on {line}"
                );
            }
        }
    }

    /// Domain modules return summaries and one place prints: the shell (and the entry points
    /// above it). A print macro, a handle on standard output or error, or a progress bar in a
    /// domain module's non-test code fails here.
    #[test]
    fn domain_modules_do_not_print() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        // The shell prints; main and lib run the command line; the server writes its own log.
        let allowed = ["shell", "main", "lib", "cli", "serve"];
        let printing = [
            "println!",
            "print!(",
            "eprint!(",
            "eprintln!",
            "dbg!(",
            "io::stdout",
            "io::stderr",
            "indicatif",
        ];
        let mut broken = Vec::new();
        for file in &files {
            if allowed.contains(&module(&src, file).as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            let found: Vec<String> = code
                .lines()
                .enumerate()
                .filter(|(_, l)| {
                    let l = l.trim_start();
                    !l.starts_with("//") && printing.iter().any(|p| l.contains(p))
                })
                .map(|(i, l)| format!("{}:{}: {}", file.display(), i + 1, l.trim()))
                .collect();
            broken.extend(found);
        }
        assert!(broken.is_empty(), "domain modules that print:\n{}", broken.join("\n"));
    }
}
