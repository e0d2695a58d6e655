//! Ctrl-C (and SIGTERM): one process-wide handler. It raises a flag that long loops (capture)
//! check between steps, and interrupts the DuckDB statement running at that moment, if any,
//! so the shell cancels a query without leaving and a capture stops after the snapshot it is
//! storing.
//!
//! A server runs many clients' calls at once, so there a stop is per call: a [`Call`] entered on
//! the thread that does a client's work is what [`requested`] and [`Running`] look at on that
//! thread, and [`Call::cancel`] (the client went away or cancelled) is that call's Ctrl-C. The
//! domain code is the same either way: it checks [`requested`] and registers its statements
//! with [`Running`].

use std::cell::RefCell;
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

/// True once Ctrl-C was pressed since the last [`clear`]; in a server, once it is stopping or
/// the client whose call this thread runs cancelled it.
pub fn requested() -> bool {
    CALL.with(|c| stop_requested(c.borrow().as_deref()))
}

/// Ctrl-C (or the server stopping), or `call` cancelled by its client.
fn stop_requested(call: Option<&CallState>) -> bool {
    REQUESTED.load(Ordering::SeqCst) || call.is_some_and(CallState::is_cancelled)
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

/// While alive, Ctrl-C interrupts the statement of this connection; in a server, cancelling the
/// call this thread runs does.
pub struct Running(Registered);

enum Registered {
    /// The process-wide handle (a command line, a shell).
    Process,
    /// Registered with a client's call in a server.
    Call(Arc<CallState>, Arc<InterruptHandle>),
    /// A server's own work (capture, scheduled jobs): it stops on the server's signals.
    Nothing,
}

impl Running {
    /// Registers the connection's interrupt handle: with the process's Ctrl-C, or in a server
    /// with the call this thread runs (none: nothing to register).
    pub fn new(handle: Arc<InterruptHandle>) -> Self {
        if let Some(call) = CALL.with(|c| c.borrow().clone()) {
            if let Ok(mut running) = call.running.lock() {
                running.push(Arc::clone(&handle));
            }
            return Running(Registered::Call(call, handle));
        }
        if SERVING.load(Ordering::SeqCst) {
            return Running(Registered::Nothing);
        }
        if let Ok(mut guard) = RUNNING.lock() {
            *guard = Some(handle);
        }
        Running(Registered::Process)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        match &self.0 {
            Registered::Process => {
                if let Ok(mut guard) = RUNNING.lock() {
                    *guard = None;
                }
            }
            // Under the lock the canceller interrupts with: once this returns, no interrupt
            // meant for this statement reaches the connection's next one.
            Registered::Call(call, handle) => {
                if let Ok(mut running) = call.running.lock() {
                    if let Some(i) = running.iter().position(|h| Arc::ptr_eq(h, handle)) {
                        running.remove(i);
                    }
                }
            }
            Registered::Nothing => {}
        }
    }
}

thread_local! {
    /// The client's call this thread runs, in a server.
    static CALL: RefCell<Option<Arc<CallState>>> = const { RefCell::new(None) };
}

/// How often a cancelled call's statements are interrupted again. DuckDB forgets an interrupt
/// when a statement starts, so one that lands while the next statement is being prepared, or
/// between two statements of a command, is lost: the canceller repeats it until the call ends.
const INTERRUPT_AGAIN_EVERY: Duration = Duration::from_millis(20);

/// One client's call in a server (a statement, a command, a dashboard request): what it is
/// cancelled by when its client cancels or goes away.
#[derive(Clone, Default)]
pub struct Call(Arc<CallState>);

#[derive(Default)]
pub struct CallState {
    cancelled: AtomicBool,
    /// The call's work ended: nothing is interrupted for it any more.
    done: AtomicBool,
    /// The handles of the statements the call runs now ([`Running`]).
    running: Mutex<Vec<Arc<InterruptHandle>>>,
}

impl CallState {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Call {
    pub fn new() -> Self {
        Call::default()
    }

    /// Runs this call on the current thread until the guard drops: [`requested`] sees its
    /// cancellation and [`Running`] registers its statements with it. The guard's drop marks
    /// the call's work ended.
    pub fn enter(&self) -> Entered {
        Entered {
            call: Arc::clone(&self.0),
            _on_thread: Carried(Some(Arc::clone(&self.0))).enter(),
        }
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// The client's Ctrl-C: loops of the call stop at their next check, and its statements are
    /// interrupted (again and again, from a thread of its own, until the call's work ends).
    pub fn cancel(&self) {
        if self.0.cancelled.swap(true, Ordering::SeqCst) || self.0.done.load(Ordering::SeqCst) {
            return;
        }
        let call = Arc::clone(&self.0);
        let spawned = std::thread::Builder::new()
            .name("cancel".into())
            .spawn(move || interrupt_until_done(call));
        if spawned.is_err() {
            // No thread: one interrupt now, and the loops' checks.
            interrupt_running(&self.0);
        }
    }

    /// A guard that cancels the call when dropped: held by whatever a client's going away drops
    /// (the future awaiting the work, the stream of its results).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

fn interrupt_running(call: &CallState) {
    if let Ok(running) = call.running.lock() {
        for handle in running.iter() {
            handle.interrupt();
        }
    }
}

/// Until the call's work ends, or nothing but this thread holds the call (its work never
/// started, so no statement can be registered).
fn interrupt_until_done(call: Arc<CallState>) {
    while !call.done.load(Ordering::SeqCst) && Arc::strong_count(&call) > 1 {
        interrupt_running(&call);
        std::thread::sleep(INTERRUPT_AGAIN_EVERY);
    }
}

/// The current thread runs a call until this drops ([`Call::enter`]).
pub struct Entered {
    call: Arc<CallState>,
    /// Dropped after `drop` below: the thread's previous call comes back then.
    _on_thread: CarriedIn,
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.call.done.store(true, Ordering::SeqCst);
    }
}

/// The call the current thread runs, if any, for the threads it starts (rayon's workers, a
/// second reader): thread-local, it would not reach them otherwise.
#[derive(Clone)]
pub struct Carried(Option<Arc<CallState>>);

/// The current thread's call, to carry to other threads.
pub fn carry() -> Carried {
    Carried(CALL.with(|c| c.borrow().clone()))
}

impl Carried {
    /// [`requested`] as the carrying thread sees it: usable on any thread.
    pub fn requested(&self) -> bool {
        stop_requested(self.0.as_deref())
    }

    /// Runs the carried call on this thread too until the guard drops (its end is not the
    /// call's: that is the carrying thread's).
    pub fn enter(&self) -> CarriedIn {
        let previous = CALL.with(|c| c.replace(self.0.clone()));
        CarriedIn(previous)
    }
}

/// A carried call runs on this thread until this drops ([`Carried::enter`]).
pub struct CarriedIn(Option<Arc<CallState>>);

impl Drop for CarriedIn {
    fn drop(&mut self) {
        let previous = self.0.take();
        CALL.with(|c| *c.borrow_mut() = previous);
    }
}

/// Cancels its call when dropped ([`Call::cancel_on_drop`]); a call whose work ended is not
/// touched.
pub struct CancelOnDrop(Call);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.0 .0.done.load(Ordering::SeqCst) {
            self.0.cancel();
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

/// A query that runs for about 20 s on any machine unless stopped, one row out: a count over
/// 10^10 pairs per core. DuckDB spreads it over every core (its default threads), so a fixed
/// count would end in a moment on a large machine, before the tests that stop it could.
#[cfg(test)]
pub(crate) fn long_query() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "SELECT count(*) FROM range({}) a, range(100000) b WHERE a.range * b.range % 7 = 3",
        100_000 * cores
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call cancelled before its statement starts still stops it: DuckDB forgets an interrupt
    /// that lands before a statement begins, so the canceller repeats it.
    #[test]
    fn a_call_cancelled_before_its_statement_starts_stops_it() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let call = Call::new();
        let cancel = call.cancel_on_drop();
        drop(cancel);
        assert!(call.is_cancelled());
        let started = Instant::now();
        let _entered = call.enter();
        assert!(requested(), "the call's loops see the cancellation");
        let ran = {
            let _running = Running::new(conn.interrupt_handle());
            conn.query_row(&long_query(), [], |r| r.get::<_, i64>(0))
        };
        let error = crate::error::Error::sql(ran.unwrap_err());
        assert!(matches!(error, crate::error::Error::Interrupted), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(_entered);
        assert!(!requested(), "another call on this thread is not cancelled");
        // The connection serves its next statement.
        let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
        assert_eq!(one, 1);
    }
}
