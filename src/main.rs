//! The `netlens` binary: parse the command line, run, map the outcome to an exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Everything netlens writes (database, WAL, history, exports) describes this host's
    // activity: keep it private to the user.
    #[cfg(unix)]
    // SAFETY: umask only changes this process's file-creation mask and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    match netlens::run_from_args() {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) => {
            eprintln!("Error: {}", netlens::output::visible(&e.to_string()));
            // A command cancelled by Ctrl-C exits as the shell expects of SIGINT.
            let interrupted = matches!(e, netlens::error::Error::Interrupted);
            ExitCode::from(if interrupted { 130 } else { 1 })
        }
    }
}
