//! Everything `bnx` writes on stderr: notices, verbose lines, errors and the spinner. The data
//! path (`response`, `output`) never sees it; answer text never comes here.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Error;
use crate::interrupt;
use crate::pace::Rate;
use crate::retry::secs;

/// How much stderr says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    Normal,
    /// `-v`: the exchange too.
    Verbose,
}

impl Verbosity {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}

/// Shared by reference: the spinner sits behind a lock, so no caller needs `&mut` to write a
/// line, and a line written while it spins does not tear it.
pub struct Printer {
    verbosity: Verbosity,
    spinner: Mutex<Option<Spinner>>,
}

/// A spinner, and the clean-up that erases it if Ctrl-C comes first.
struct Spinner {
    bar: ProgressBar,
    _on_interrupt: interrupt::Guard,
}

impl Printer {
    pub fn new(verbosity: Verbosity) -> Self {
        Printer {
            verbosity,
            spinner: Mutex::new(None),
        }
    }

    /// A notice the user should see: retries, a cut answer, a warning. Silenced by `-q`.
    pub fn notice(&self, message: &str) {
        if self.verbosity != Verbosity::Quiet {
            self.line(&format!("bnx: {message}"));
        }
    }

    pub fn verbose(&self, message: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.line(&format!("bnx: {message}"));
        }
    }

    /// Waiting `wait` for a request slot of `rate`.
    pub fn waiting(&self, wait: Duration, rate: Rate) {
        self.notice(&format!(
            "waiting {}s for a request slot ({rate})",
            secs(wait)
        ));
    }

    pub fn error(&self, err: &Error) {
        self.stop_spinner();
        self.line(&format!("bnx: error: {}", err.line()));
        if let Some(hint) = &err.hint {
            self.line(&format!("hint: {hint}"));
        }
    }

    fn line(&self, line: &str) {
        let print = || {
            let _ = writeln!(io::stderr().lock(), "{line}");
        };
        match self.spinner().as_ref() {
            Some(spinner) => spinner.bar.suspend(print),
            None => print(),
        }
    }

    /// Shows elapsed seconds while waiting, only for a person watching a terminal.
    pub fn start_spinner(&self) {
        if self.verbosity == Verbosity::Quiet || !io::stderr().is_terminal() {
            return;
        }
        let spinner = ProgressBar::new_spinner().with_message("waiting for the answer");
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .expect("the template is valid"),
        );
        spinner.enable_steady_tick(Duration::from_millis(100));
        let erase = spinner.clone();
        *self.spinner() = Some(Spinner {
            bar: spinner,
            _on_interrupt: interrupt::on_interrupt(move || erase.finish_and_clear()),
        });
    }

    /// Erases the spinner, before any answer text is written.
    pub fn stop_spinner(&self) {
        if let Some(spinner) = self.spinner().take() {
            spinner.bar.finish_and_clear();
        }
    }

    fn spinner(&self) -> MutexGuard<'_, Option<Spinner>> {
        self.spinner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
