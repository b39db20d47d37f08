//! Everything `bnx` writes on stderr: notices, verbose lines, errors, the spinner and a batch's
//! progress bar. The data path (`response`, `output`) never sees it; answer text never comes
//! here.
//!
//! Each line goes out in one `write(2)`, an error with its hint too, so that runs sharing one
//! stderr (`xargs -P`, a CI log) never cut into each other's lines. A frame of the spinner or
//! the bar leaves the terminal's last columns free: the `^C` a terminal echoes then lands on
//! the frame's own line, which the erase on Ctrl-C clears with it.

use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::error::Error;
use crate::rate::Rate;
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
    /// What a batch's bar, and its summary on Ctrl-C, say: the batch keeps it current.
    progress: Arc<Mutex<Progress>>,
    /// While a batch runs, Ctrl-C prints its summary.
    summary: Mutex<Option<interrupt::Guard>>,
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
            progress: Arc::default(),
            summary: Mutex::new(None),
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

    /// A wait for a request slot of `rate`, `wait` long: `message` as a notice, or in a batch a
    /// countdown in its progress bar, which from then on counts the pacing in the time left.
    pub fn waiting(&self, message: &str, wait: Duration, rate: Rate) {
        if !self.batch {
            return self.notice(message);
        }
        lock(&self.progress).wait = Some((Instant::now() + wait, rate));
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
        self.show(None, |state, width| {
            const TICKS: [char; 8] = ['⠁', '⠂', '⠄', '⡀', '⢀', '⠠', '⠐', '⠈'];
            let elapsed = state.elapsed();
            let tick = TICKS[(elapsed.as_millis() / 100 % 8) as usize];
            fit(
                width,
                &[
                    format!("{tick} waiting for the answer"),
                    format!(" {:#}", HumanDuration(elapsed)),
                ],
            )
        });
    }

    /// A batch's progress, only for a person watching a terminal.
    pub fn start_progress(&self, items: u64) {
        {
            let mut progress = lock(&self.progress);
            progress.total = items;
            progress.status = "done".into();
        }
        let progress = Arc::clone(&self.progress);
        self.show(Some(items), move |state, width| {
            lock(&progress).frame(state.elapsed(), width)
        });
        // Never the progress lock while the bar's is held: a frame drawn under the bar's
        // takes the progress lock.
        let bar = self.bar().as_ref().map(|bar| bar.bar.clone());
        lock(&self.progress).bar = bar;
    }

    /// Updates a batch's progress: `done` of the total, and what else to say (`done, 1 failed,
    /// 4 credits`).
    pub fn progress(&self, done: u64, message: String) {
        {
            let mut progress = lock(&self.progress);
            progress.done = done;
            progress.status = message;
        }
        if let Some(bar) = self.bar().as_ref() {
            bar.bar.set_position(done);
        }
    }

    /// From now until the batch is over, Ctrl-C (or SIGTERM) erases the bar and prints how far
    /// the batch came: `skipped` items were done before, and `resumable` says whether a rerun
    /// picks up where this one stopped (`-o FILE`).
    pub fn summary_on_interrupt(&self, skipped: usize, resumable: bool) {
        let progress = Arc::clone(&self.progress);
        {
            let mut progress = lock(&progress);
            progress.skipped = skipped;
            progress.resumable = resumable;
        }
        let quiet = self.verbosity == Verbosity::Quiet;
        *lock(&self.summary) = Some(interrupt::on_interrupt(move |_| {
            let (bar, summary) = {
                let progress = lock(&progress);
                (progress.bar.clone(), progress.interrupted())
            };
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if !quiet {
                let _ = io::stderr()
                    .lock()
                    .write_all(format!("bnx: {summary}\n").as_bytes());
            }
        }));
    }

    /// Draws `frame` (given the bar's state and the columns it may take) on the terminal,
    /// redrawn every tick: a spinner, or a bar of `len` steps.
    fn show(
        &self,
        len: Option<u64>,
        frame: impl Fn(&ProgressState, usize) -> String + Send + Sync + Clone + 'static,
    ) {
        if self.verbosity == Verbosity::Quiet || !io::stderr().is_terminal() {
            return;
        }
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(Screen::default()), 20);
        let bar = ProgressBar::with_draw_target(len, target);
        let style = ProgressStyle::with_template("{frame}")
            .expect("the template is valid")
            .with_key(
                "frame",
                move |state: &ProgressState, out: &mut dyn fmt::Write| {
                    let _ = out.write_str(&frame(state, frame_width()));
                },
            );
        bar.set_style(style);
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

    /// Erases a batch's progress bar when the batch is over; its summary is the caller's.
    pub fn finish_progress(&self) {
        let summary = lock(&self.summary).take();
        drop(summary);
        self.erase();
        lock(&self.progress).bar = None;
    }

    fn erase(&self) {
        if let Some(bar) = self.bar().take() {
            bar.bar.finish_and_clear();
        }
    }

    fn bar(&self) -> MutexGuard<'_, Option<Bar>> {
        lock(&self.bar)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A batch's progress, as its bar and its summary on Ctrl-C show it.
#[derive(Default)]
struct Progress {
    /// Items finished (done or failed), of `total`.
    done: u64,
    total: u64,
    /// What follows `done/total`: `done, 1 failed, 4 credits`.
    status: String,
    /// When the last pacing wait reported ends, and the rate that made it.
    wait: Option<(Instant, Rate)>,
    /// Items done before this run.
    skipped: usize,
    /// A rerun resumes (`-o FILE`).
    resumable: bool,
    /// The bar, for the summary on Ctrl-C to erase first.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// The bar's line, `width` columns at most: the counts, then the time left and the pacing
    /// wait as they fit, and the bar itself in front where there is room for it.
    fn frame(&self, elapsed: Duration, width: usize) -> String {
        let now = Instant::now();
        let wait = self
            .wait
            .map(|(until, rate)| (until.saturating_duration_since(now), rate));
        let mut parts = vec![format!("{}/{} {}", self.done, self.total, self.status)];
        if let Some(left) = time_left(self.done, self.total, elapsed, wait) {
            parts.push(format!(", {:#} left", HumanDuration(left)));
        }
        if let Some((wait, _)) = wait.filter(|(wait, _)| !wait.is_zero()) {
            parts.push(format!(
                ", waiting {}s for a slot",
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            ));
        }
        let text = fit(width, &parts);
        let room = width.saturating_sub(text.chars().count() + 1).min(30);
        if room < 10 {
            return text;
        }
        let filled = (room as u64 * self.done / self.total.max(1)) as usize;
        format!("{}{} {text}", "#".repeat(filled), "-".repeat(room - filled))
    }

    /// The summary of a batch cut short.
    fn interrupted(&self) -> String {
        let rerun = if self.resumable {
            "a rerun with the same -o resumes"
        } else {
            "without -o FILE a rerun starts over"
        };
        format!(
            "batch interrupted: {}/{} {}; {} skipped (done before); {rerun}",
            self.done, self.total, self.status, self.skipped
        )
    }
}

/// The time a batch still needs, when there is anything to go by: at the pace of the items so
/// far, and at least what the pacing allows once a wait showed that it binds: the wait under
/// way, then `rate.requests` of the other items every `rate.window`.
fn time_left(
    done: u64,
    total: u64,
    elapsed: Duration,
    wait: Option<(Duration, Rate)>,
) -> Option<Duration> {
    let remaining = total.checked_sub(done).filter(|&n| n > 0)?;
    let so_far = (done > 0).then(|| elapsed.mul_f64(remaining as f64 / done as f64));
    let paced = wait.map(|(wait, rate)| {
        let windows = (remaining - 1) / u64::from(rate.requests.max(1));
        wait.saturating_add(
            rate.window
                .saturating_mul(windows.min(u32::MAX.into()) as u32),
        )
    });
    so_far.max(paced)
}

/// `parts` joined, the first always (cut to `width` columns if it must be), each other one if
/// it still fits, in order.
fn fit(width: usize, parts: &[String]) -> String {
    let mut line = String::new();
    let mut used = 0;
    for (i, part) in parts.iter().enumerate() {
        let len = part.chars().count();
        if i == 0 {
            line.extend(part.chars().take(width));
            used = len.min(width);
        } else if used + len <= width {
            line.push_str(part);
            used += len;
        } else {
            break;
        }
    }
    line
}

/// Columns a frame leaves free at the end of the line: two for the `^C` a terminal echoes, one
/// so that the cursor never rests in the last column, where a terminal wraps.
const MARGIN: usize = 3;

/// The columns a frame may take.
fn frame_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize it is given, and only that.
    let columns = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        match libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) {
            0 if size.ws_col > 0 => usize::from(size.ws_col),
            _ => 80,
        }
    };
    columns.saturating_sub(MARGIN).max(1)
}

/// Standard error as indicatif draws on it: as wide as a frame may be, and each frame (or
/// erase) sent in one write, so that no line of another process lands inside one.
#[derive(Debug, Default)]
struct Screen {
    pending: Mutex<Vec<u8>>,
}

impl Screen {
    fn put(&self, text: &str) -> io::Result<()> {
        lock(&self.pending).extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn cursor(&self, n: usize, code: char) -> io::Result<()> {
        match n {
            0 => Ok(()),
            n => self.put(&format!("\x1b[{n}{code}")),
        }
    }
}

impl indicatif::TermLike for Screen {
    fn width(&self) -> u16 {
        frame_width().try_into().unwrap_or(u16::MAX)
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'D')
    }

    fn write_line(&self, line: &str) -> io::Result<()> {
        self.put(line)?;
        self.put("\n")
    }

    fn write_str(&self, text: &str) -> io::Result<()> {
        self.put(text)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> io::Result<()> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        io::stderr().lock().write_all(&pending)
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

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        requests: 2,
        window: Duration::from_secs(6),
    };

    #[test]
    fn the_time_left_counts_the_pacing_once_a_wait_showed_it_binds() {
        let secs = Duration::from_secs;
        // 2 of 6 done in 0.2 s: at that pace, 0.4 s more.
        let fast = Duration::from_millis(200);
        assert_eq!(time_left(2, 6, fast, None), Some(fast * 2));
        // But the third waits 6 s for its slot, and the fourth with it; the last two get the
        // slots of the next window, 6 s later.
        assert_eq!(time_left(2, 6, fast, Some((secs(6), RATE))), Some(secs(12)));
        // A slow pace so far wins over a pacing that allows more.
        assert_eq!(
            time_left(2, 6, secs(20), Some((secs(1), RATE))),
            Some(secs(40))
        );
        assert_eq!(
            time_left(0, 6, Duration::ZERO, None),
            None,
            "nothing to go by"
        );
        assert_eq!(time_left(6, 6, secs(3), Some((secs(1), RATE))), None);
    }

    #[test]
    fn a_frame_fits_its_width_dropping_what_matters_least_first() {
        let progress = Progress {
            done: 4,
            total: 20,
            status: "done, 1 failed, 4 credits".into(),
            wait: Some((Instant::now() + Duration::from_millis(2500), RATE)),
            ..Progress::default()
        };
        let elapsed = Duration::from_secs(1);
        // Left: the 2.5 s wait, then the 15 other items at 2 per 6 s, 7 windows more: 44.5 s.
        let wide = progress.frame(elapsed, 97);
        assert!(
            wide.ends_with(" 4/20 done, 1 failed, 4 credits, 44s left, waiting 3s for a slot"),
            "{wide}"
        );
        assert!(wide.starts_with("######------"), "{wide}");
        for width in [1, 10, 30, 40, 52, 62, 77, 97, 200] {
            let frame = progress.frame(elapsed, width);
            assert!(frame.chars().count() <= width, "{width}: {frame}");
            assert!(frame.contains("4/20") || width < 4, "{width}: {frame}");
        }
        assert_eq!(
            progress.frame(elapsed, 40),
            "4/20 done, 1 failed, 4 credits, 44s left"
        );
        assert_eq!(progress.frame(elapsed, 10), "4/20 done,");
    }

    #[test]
    fn an_interrupted_batch_says_how_far_it_came_and_how_to_go_on() {
        let mut progress = Progress {
            done: 4,
            total: 20,
            status: "done, 1 failed, 4 credits".into(),
            skipped: 2,
            resumable: true,
            ..Progress::default()
        };
        assert_eq!(
            progress.interrupted(),
            "batch interrupted: 4/20 done, 1 failed, 4 credits; 2 skipped (done before); \
             a rerun with the same -o resumes"
        );
        progress.resumable = false;
        assert!(progress
            .interrupted()
            .ends_with("; without -o FILE a rerun starts over"));
    }
}
