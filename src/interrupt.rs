//! Ctrl-C: `bnx` still dies by SIGINT, as a shell expects (130), but first undoes what it left
//! running: the spinner line on the terminal, a token command with its process group.
//!
//! Nothing is installed until something registers a clean-up, so a plain pipeline run pays
//! nothing. Once installed, a thread waits for SIGINT or SIGTERM, runs the clean-ups that are
//! still registered, and then lets the signal take its default course.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::emulate_default_handler;

/// Given the signal that came.
type Cleanup = Box<dyn Fn(i32) + Send>;

static CLEANUPS: Mutex<BTreeMap<u64, Cleanup>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs its clean-up if the process is interrupted while the guard lives.
#[must_use = "the clean-up is dropped with the guard"]
pub struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        cleanups().remove(&self.0);
    }
}

/// Registers `cleanup` to run on SIGINT or SIGTERM until the guard is dropped.
pub fn on_interrupt(cleanup: impl Fn(i32) + Send + 'static) -> Guard {
    INSTALL.call_once(install);
    register(&mut cleanups(), cleanup)
}

/// Starts something that must not outlive an interrupt (a child process, say) and registers
/// its clean-up as one step: a signal that comes in between waits for the clean-up rather than
/// leaving what `start` started running.
pub fn started<T, C: Fn(i32) + Send + 'static>(
    start: impl FnOnce() -> std::io::Result<(T, C)>,
) -> std::io::Result<(T, Guard)> {
    INSTALL.call_once(install);
    // Held across the start: the signal thread takes this lock before it runs any clean-up.
    let mut cleanups = cleanups();
    let (started, cleanup) = start()?;
    Ok((started, register(&mut cleanups, cleanup)))
}

fn register(
    cleanups: &mut BTreeMap<u64, Cleanup>,
    cleanup: impl Fn(i32) + Send + 'static,
) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    cleanups.insert(id, Box::new(cleanup));
    Guard(id)
}

/// Holds the calling thread for good once a signal has come: the clean-ups it set off (a token
/// command killed, say) can end the run's work first, and the run must then end by the signal,
/// not by the exit code that work would give.
pub fn hold_if_interrupted() {
    while INTERRUPTED.load(Ordering::Acquire) {
        thread::park();
    }
}

fn cleanups() -> MutexGuard<'static, BTreeMap<u64, Cleanup>> {
    CLEANUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn install() {
    // Without the handler, the signal ends the process as it always did: only the clean-up is
    // lost, so a failure here is not worth failing the run.
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::Release);
            for cleanup in cleanups().values() {
                cleanup(signal);
            }
            let _ = emulate_default_handler(signal);
        }
    });
}
