//! Everything `bnx` writes on stderr: notices, verbose lines, errors and the spinner. The data
//! path (`response`, `output`) never sees it; answer text never comes here.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Error;
use crate::interrupt;

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
    /// Standard output's last line is unfinished (an answer cut short): a line written on the
    /// same terminal must start on a new line.
    mid_line: AtomicBool,
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
            mid_line: AtomicBool::new(false),
        }
    }

    /// Standard output as the printer must see it: the spinner is erased before the first
    /// byte of the answer reaches the terminal, and an unfinished last line is noted.
    pub fn stdout<W: Write>(&self, out: W) -> Stdout<'_, W> {
        Stdout { out, printer: self }
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

    /// A body, as `-v` shows it: on one line, control characters made visible, cut at 2 KiB.
    pub fn verbose_body(&self, what: &str, body: &[u8]) {
        if self.verbosity != Verbosity::Verbose {
            return;
        }
        let size = body.len();
        let shown: String = String::from_utf8_lossy(&body[..size.min(VERBOSE_BODY)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if size > VERBOSE_BODY {
            self.line(&format!(
                "bnx: {what} ({size} bytes, cut at 2 KiB): {shown}..."
            ));
        } else {
            self.line(&format!("bnx: {what} ({size} bytes): {shown}"));
        }
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
            let mut stderr = io::stderr().lock();
            if self.mid_line.swap(false, Ordering::Relaxed) && same_terminal() {
                let _ = stderr.write_all(b"\n");
            }
            let _ = writeln!(stderr, "{line}");
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

/// How much of a body `-v` shows.
const VERBOSE_BODY: usize = 2048;

/// Whether standard output and standard error are one terminal, where answer text and a
/// notice share lines.
fn same_terminal() -> bool {
    let device = |fd: std::os::fd::BorrowedFd| {
        let file = File::from(fd.try_clone_to_owned().ok()?);
        file.metadata().ok().map(|meta| meta.rdev())
    };
    io::stdout().is_terminal()
        && io::stderr().is_terminal()
        && device(io::stdout().as_fd()) == device(io::stderr().as_fd())
}

/// Standard output, erasing the spinner before it writes. See [`Printer::stdout`].
pub struct Stdout<'a, W> {
    out: W,
    printer: &'a Printer,
}

impl<W: Write> Write for Stdout<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.printer.stop_spinner();
        let written = self.out.write(buf)?;
        if let Some(&last) = buf[..written].last() {
            self.printer
                .mid_line
                .store(last != b'\n', Ordering::Relaxed);
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
