//! Ctrl-C (and SIGTERM): one process-wide handler. It raises a flag that long loops (capture)
//! check between steps, and interrupts the DuckDB statement running at that moment, if any,
//! so the shell cancels a query without leaving and a capture stops after the snapshot it is
//! storing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use duckdb::InterruptHandle;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static RUNNING: Mutex<Option<Arc<InterruptHandle>>> = Mutex::new(None);
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// Set in `netlens serve`: a stop, once requested, is for the whole process and stays.
static SERVING: AtomicBool = AtomicBool::new(false);

/// Installs the handler once; later calls do nothing. Returns false when it could not be
/// installed (then Ctrl-C keeps its default meaning: end the process).
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        ctrlc::set_handler(|| {
            REQUESTED.store(true, Ordering::SeqCst);
            if let Ok(guard) = RUNNING.lock() {
                if let Some(handle) = guard.as_ref() {
                    handle.interrupt();
                }
            }
        })
        .is_ok()
    })
}

/// True once Ctrl-C was pressed since the last [`clear`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Forgets an earlier Ctrl-C (at the start of each command). In a server a stop request is
/// never forgotten: commands run for clients must not undo a SIGTERM.
pub fn clear() {
    if !SERVING.load(Ordering::SeqCst) {
        REQUESTED.store(false, Ordering::SeqCst);
    }
}

/// Marks this process as a server: [`clear`] no longer forgets a stop request, and the server's
/// own signal handling calls [`request_stop`] (the Ctrl-C handler is not installed).
pub fn serving() {
    SERVING.store(true, Ordering::SeqCst);
}

/// Asks every loop to stop, as Ctrl-C does (a server's SIGTERM or SIGINT).
pub fn request_stop() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// While alive, Ctrl-C interrupts the statement of this connection.
pub struct Running(());

impl Running {
    /// Registers the connection's interrupt handle. A server runs many clients' commands at
    /// once and stops on signals of its own: there this registers nothing.
    pub fn new(handle: Arc<InterruptHandle>) -> Self {
        if SERVING.load(Ordering::SeqCst) {
            return Running(());
        }
        if let Ok(mut guard) = RUNNING.lock() {
            *guard = Some(handle);
        }
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if SERVING.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut guard) = RUNNING.lock() {
            *guard = None;
        }
    }
}

/// Sleeps until `deadline`, waking early on Ctrl-C. Returns true when interrupted.
pub fn sleep_until(deadline: Instant) -> bool {
    loop {
        if requested() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
