//! Everything `bnx` writes on stderr: notices, verbose lines, errors, the spinner and a batch's
//! progress bar. The data path (`response`, `output`) never sees it; answer text never comes
//! here.
//!
//! Each line goes out in one `write(2)`, an error with its hint too, so that runs sharing one
//! stderr (`xargs -P`, a CI log) never cut into each other's lines.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Error;
use crate::token::Secret;
use crate::{interrupt, redact};

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

/// Shared by reference, across a batch's workers too: the bar sits behind a lock, so no caller
/// needs `&mut` to write a line, and a line written while the bar is drawn does not tear it.
pub struct Printer {
    verbosity: Verbosity,
    /// A batch reports pacing waits in its progress bar, or not at all: a line per item would
    /// bury everything else.
    batch: bool,
    bar: Mutex<Option<Bar>>,
    /// Once known, the token is masked in every line: a line may quote the server.
    secret: OnceLock<Secret>,
    /// Standard output's last line is unfinished (an answer cut short): a line written on the
    /// same terminal must start on a new line.
    mid_line: AtomicBool,
}

/// The spinner or progress bar on the terminal's last line, and the clean-up that erases it if
/// Ctrl-C comes first.
struct Bar {
    bar: ProgressBar,
    _on_interrupt: interrupt::Guard,
}

impl Printer {
    pub fn new(verbosity: Verbosity) -> Self {
        Printer {
            verbosity,
            batch: false,
            bar: Mutex::new(None),
            secret: OnceLock::new(),
            mid_line: AtomicBool::new(false),
        }
    }

    /// Masks `secret` in every line written from now on.
    pub fn redact(&self, secret: &Secret) {
        let _ = self.secret.set(secret.clone());
    }

    pub fn for_batch(verbosity: Verbosity) -> Self {
        Printer {
            batch: true,
            ..Printer::new(verbosity)
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

    /// A wait the user should know of (`waiting 12s for a request slot`): a notice, or in a
    /// batch a word in its progress bar.
    pub fn waiting(&self, message: &str) {
        if !self.batch {
            return self.notice(message);
        }
        if let Some(bar) = self.bar().as_ref() {
            bar.bar.set_prefix(format!(", {message}"));
        }
    }

    /// A body, as `-v` shows it: on one line, control characters made visible, cut at 2 KiB
    /// where no part of the token is left (see `redact::head`).
    pub fn verbose_body(&self, what: &str, body: &[u8]) {
        if self.verbosity != Verbosity::Verbose {
            return;
        }
        let size = body.len();
        let (shown, whole) = redact::head(self.secret.get(), body, VERBOSE_BODY);
        let shown: String = shown
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if !whole {
            self.line(&format!(
                "bnx: {what} ({size} bytes, cut at 2 KiB): {shown}..."
            ));
        } else {
            self.line(&format!("bnx: {what} ({size} bytes): {shown}"));
        }
    }

    pub fn error(&self, err: &Error) {
        self.erase();
        match &err.hint {
            Some(hint) => self.line(&format!("bnx: error: {}\nhint: {hint}", err.line())),
            None => self.line(&format!("bnx: error: {}", err.line())),
        }
    }

    /// Runs `write` with the bar lifted off the terminal, for output that may share it.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        match self.bar().as_ref() {
            Some(bar) => bar.bar.suspend(write),
            None => write(),
        }
    }

    /// Writes `text` (one line, or an error and its hint) and its newline in one write.
    fn line(&self, text: &str) {
        let text = redact::text(self.secret.get(), text);
        self.suspend(|| {
            let mut whole = String::with_capacity(text.len() + 2);
            if self.mid_line.swap(false, Ordering::Relaxed) && same_terminal() {
                whole.push('\n');
            }
            whole.push_str(&text);
            whole.push('\n');
            let _ = io::stderr().lock().write_all(whole.as_bytes());
        });
    }

    /// Shows elapsed seconds while waiting, only for a person watching a terminal.
    pub fn start_spinner(&self) {
        let spinner = ProgressBar::new_spinner().with_message("waiting for the answer");
        self.show(spinner, "{spinner} {msg} {elapsed}");
    }

    /// A batch's progress, only for a person watching a terminal.
    pub fn start_progress(&self, items: u64) {
        let bar = ProgressBar::new(items);
        self.show(bar, "{bar:30} {pos}/{len} {msg}{prefix}, {eta} left");
    }

    /// Updates a batch's progress: `done` of the total, and what else to say.
    pub fn progress(&self, done: u64, message: String) {
        if let Some(bar) = self.bar().as_ref() {
            bar.bar.set_position(done);
            bar.bar.set_message(message);
            bar.bar.set_prefix("");
        }
    }

    fn show(&self, bar: ProgressBar, template: &str) {
        if self.verbosity == Verbosity::Quiet || !io::stderr().is_terminal() {
            return;
        }
        bar.set_style(ProgressStyle::with_template(template).expect("the template is valid"));
        bar.enable_steady_tick(Duration::from_millis(100));
        let erase = bar.clone();
        *self.bar() = Some(Bar {
            bar,
            _on_interrupt: interrupt::on_interrupt(move |_| erase.finish_and_clear()),
        });
    }

    /// Erases the spinner, before any answer text is written. A batch's bar stays: its items'
    /// answers go to a file or stdout, never past it on the terminal.
    pub fn stop_spinner(&self) {
        if !self.batch {
            self.erase();
        }
    }

    /// Erases a batch's progress bar when the batch is over.
    pub fn finish_progress(&self) {
        self.erase();
    }

    fn erase(&self) {
        if let Some(bar) = self.bar().take() {
            bar.bar.finish_and_clear();
        }
    }

    fn bar(&self) -> MutexGuard<'_, Option<Bar>> {
        self.bar
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
