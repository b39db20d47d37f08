//! What a person at a terminal sees, under a real pseudo-terminal: the spinner while the answer
//! is awaited, erased before the answer and on Ctrl-C; an error after part of an answer on a
//! line of its own; the README's token setup working at the first try. The screen is rendered
//! by a terminal emulator (vt100), so the assertions are on what is left on it. The program
//! runs as a shell would start it in a terminal: in its own session with the terminal as its
//! controlling one, so Ctrl-C can be typed, and `echoctl` on, so the terminal echoes it as `^C`.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

const ROWS: u16 = 24;
const COLS: u16 = 100;
const SPINNER: &str = "waiting for the answer";
/// However loaded the machine, what is awaited arrives within this.
const PATIENCE: Duration = Duration::from_secs(30);

/// A program running on a pseudo-terminal: stdin, stdout and stderr are its terminal, and
/// everything it writes there is collected.
struct Terminal {
    child: Child,
    cols: u16,
    master: File,
    written: Arc<Mutex<Vec<u8>>>,
    reader: Option<thread::JoinHandle<()>>,
}

/// A pseudo-terminal pair, both ends close-on-exec from the start, so that no other process
/// started meanwhile by a test running in parallel can hold the terminal open.
fn open_pty(cols: u16) -> (OwnedFd, OwnedFd) {
    // SAFETY: plain libc calls on descriptors this function owns; every result is checked.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt failed");
        let master = OwnedFd::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let slave = libc::open(
            CStr::from_ptr(name.as_ptr()).as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(slave >= 0, "cannot open the terminal's slave side");
        let mut modes: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &mut modes), 0);
        modes.c_lflag |= libc::ISIG | libc::ICANON | libc::ECHO | libc::ECHOCTL;
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &modes), 0);
        let size = libc::winsize {
            ws_row: ROWS,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size), 0);
        (master, OwnedFd::from_raw_fd(slave))
    }
}

impl Terminal {
    fn run(cmd: Command) -> Terminal {
        Terminal::sized(cmd, COLS)
    }

    fn sized(mut cmd: Command, cols: u16) -> Terminal {
        let (master, slave) = open_pty(cols);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid(2) and ioctl(2) only, in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // Our copies of the slave side go with the command, so that the terminal ends with the
        // child.
        drop(cmd);
        let master = File::from(master);
        let written = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut master = master.try_clone().unwrap();
            let written = Arc::clone(&written);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends with EIO once no process has the terminal open.
                while let Ok(n @ 1..) = master.read(&mut buf) {
                    written.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Terminal {
            child,
            cols,
            master,
            written,
            reader: Some(reader),
        }
    }

    fn written(&self) -> Vec<u8> {
        self.written.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        let written = String::from_utf8_lossy(&self.written()).into_owned();
        written.matches(needle).count()
    }

    /// Waits until `needle` has been written more than `seen` times.
    fn wait_for_more(&self, needle: &str, seen: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(needle) <= seen {
            assert!(
                Instant::now() < deadline,
                "{needle:?} was not written again; the terminal got {:?}",
                String::from_utf8_lossy(&self.written())
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Waits for the program to end and for all it wrote; returns how it ended and the screen.
    fn finish(mut self) -> (ExitStatus, String, Vec<u8>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "still running; the terminal got {:?}",
                    String::from_utf8_lossy(&self.written())
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.reader.take().unwrap().join().unwrap();
        let written = self.written();
        (status, screen(&written, self.cols), written)
    }
}

/// The screen after `written`, as a terminal `cols` wide shows it: one line a row, trailing
/// blanks cut.
fn screen(written: &[u8], cols: u16) -> String {
    let size = |n| std::num::NonZeroU16::new(n).unwrap();
    let mut parser = vt100::Parser::new(size(ROWS), size(cols), 0);
    parser.process(written);
    parser.screen().contents()
}

/// Each frame drawn, first or after an erase of the line (`ESC [2K`), as written, padding
/// included, up to the next control character; a `^C` echoed after it is not the frame's, and
/// text that ends its line (the summary) is no frame.
fn frames(written: &[u8]) -> Vec<String> {
    let written = String::from_utf8_lossy(written);
    written
        .split("\x1b[2K")
        .filter_map(|after| {
            let end = after.find(['\r', '\n', '\x1b']).unwrap_or(after.len());
            let frame = after[..end].replace("^C", "");
            // The terminal sends a newline as `\r\n`.
            let line = after[end..].trim_start_matches('\r').starts_with('\n');
            (!line && !frame.is_empty()).then_some(frame)
        })
        .collect()
}

/// Every frame leaves room on its line for the `^C` a terminal echoes, short of the last
/// column: the erase on Ctrl-C then clears the line that holds both.
fn assert_frames_leave_room(written: &[u8], cols: u16) {
    let frames = frames(written);
    assert!(!frames.is_empty(), "no frame was drawn");
    for frame in frames {
        let width = frame.chars().count();
        assert!(
            width + "^C".len() < usize::from(cols),
            "a frame of {width} columns on a terminal of {cols}: {frame:?}"
        );
    }
}

/// Types Ctrl-C, as a person would: the terminal echoes `^C` and interrupts the program.
fn type_ctrl_c(terminal: &mut Terminal) {
    terminal.type_text("\x03");
}

/// `bnx` as started from a terminal, which always says what it is (without `TERM`, indicatif
/// draws nothing).
fn bnx_at(origin: &str, dir: &std::path::Path) -> Command {
    let mut cmd = isolated(BNX, dir);
    cmd.env("BLUENEXUS_BASE_URL", origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .env("TERM", "xterm");
    cmd
}

/// With `-s` or without, the spinner shows from the request until the first piece of the answer
/// is written, also after the response's headers arrived, and is gone before the answer.
#[test]
fn the_spinner_runs_until_the_answer_starts_and_is_erased_before_it() {
    for stream in [false, true] {
        let server = HeldAnswer::start("Forty-two.");
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = bnx_at(&server.origin, dir.path());
        cmd.args(if stream {
            &["-s", "hi"][..]
        } else {
            &["hi"][..]
        });
        let terminal = Terminal::run(cmd);
        terminal.wait_for_more(SPINNER, 0);
        server
            .headers_sent
            .recv_timeout(PATIENCE)
            .expect("the headers were sent");
        let drawn = terminal.count(SPINNER);
        terminal.wait_for_more(SPINNER, drawn);
        server.release.send(()).unwrap();
        let (status, screen, written) = terminal.finish();
        assert_eq!(status.code(), Some(0), "stream={stream}");
        assert_eq!(screen, "Forty-two.", "stream={stream}");
        let written = String::from_utf8_lossy(&written);
        let answer_at = written.find("Forty-two.").unwrap();
        assert!(
            written.rfind(SPINNER).unwrap() < answer_at,
            "stream={stream}: no frame after the answer began: {written:?}"
        );
    }
}

/// Ctrl-C erases the spinner, signalled (at 100 columns) or typed (at 80, with `echoctl` on, the
/// default: the terminal echoes `^C` where the cursor is; a frame as wide as the terminal put
/// it on the next line, and the erase cleared that line, leaving the spinner above it; a
/// narrower frame keeps both on one line, which the erase clears).
#[test]
fn ctrl_c_erases_the_spinner_and_ends_by_sigint() {
    for (cols, typed) in [(COLS, false), (80, true)] {
        let (origin, received) = silent_server();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = bnx_at(&origin, dir.path());
        cmd.args(["-s", "hi"]);
        let mut terminal = Terminal::sized(cmd, cols);
        received
            .recv_timeout(PATIENCE)
            .expect("the request was sent");
        terminal.wait_for_more(SPINNER, 0);
        if typed {
            type_ctrl_c(&mut terminal);
        } else {
            // SAFETY: kill(2) with a pid this test started and still holds.
            assert_eq!(
                unsafe { libc::kill(terminal.child.id() as i32, libc::SIGINT) },
                0
            );
        }
        let (status, screen, written) = terminal.finish();
        assert_eq!(status.signal(), Some(libc::SIGINT));
        let shown = String::from_utf8_lossy(&written);
        assert_eq!(screen, "", "left on the screen; written: {shown:?}");
        assert_eq!(shown.contains("^C"), typed, "{shown:?}");
        assert_frames_leave_room(&written, cols);
    }
}

#[test]
fn an_error_after_part_of_the_answer_starts_on_a_new_line() {
    let mock = Mock::start(&["--fault", "error-event", "--fault", "error-event"]);
    let mut cmd = bnx_at(&mock.url, mock.dir.path());
    cmd.args(["-s", "alpha", "beta"]);
    let (status, screen, _) = Terminal::run(cmd).finish();
    assert_eq!(status.code(), Some(1));
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines.len(), 2, "{screen}");
    assert_eq!(lines[0], "[turn ");
    assert!(
        lines[1].starts_with("bnx: error: the server reported an error: "),
        "{screen}"
    );

    // Where stdout is not that terminal, stderr gets no extra line.
    let output = mock
        .command()
        .args(["-s", "alpha", "beta"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout_of(&output), "[turn ");
    assert!(stderr_of(&output).starts_with("bnx: error:"));
}

/// The README's token setup, run as written by bash on a terminal: the token typed and one
/// Enter make a private token file, with nothing echoed.
#[test]
fn the_readme_token_setup_works_at_the_first_try() {
    let readme = include_str!("../../README.md");
    let setup = readme
        .lines()
        .find(|line| line.contains("read -rs"))
        .expect("the README sets the token up with read -rs");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = isolated("bash", dir.path());
    cmd.args(["--norc", "-c", setup]);
    let mut terminal = Terminal::run(cmd);
    terminal.wait_for_more("token:", 0);
    terminal.type_text("tok-123\r");
    let (status, screen, _) = terminal.finish();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(
        !screen.contains("tok-123"),
        "the token was echoed: {screen}"
    );
    let file = dir.path().join("config/bluenexus/token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok-123\n");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let mock = Mock::start(&["--token", "tok-123"]);
    isolated(BNX, dir.path())
        .env("BLUENEXUS_BASE_URL", &mock.url)
        .arg("hi")
        .stdin(Stdio::null())
        .output()
        .map(|output| assert_eq!(stdout_of(&output), "[turn 1] hi\n"))
        .unwrap();
}

/// `bnx --batch ITEMS -o OUT` as started from a terminal, `items` items aimed at `mock`; with
/// the paths of ITEMS and OUT.
fn batch_at(mock: &Mock, items: usize) -> (Command, PathBuf, PathBuf) {
    let path = mock.dir.path().join("items.jsonl");
    let text: String = (0..items)
        .map(|i| format!("{{\"prompt\": \"p{i}\"}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    let out = mock.dir.path().join("out.jsonl");
    let mut cmd = bnx_at(&mock.url, mock.dir.path());
    cmd.arg("--batch").arg(&path).arg("-o").arg(&out);
    (cmd, path, out)
}

/// A batch on a terminal shows its progress on one line, which is gone when the batch ends,
/// leaving the summary; its lines go to the -o file, never past the bar.
#[test]
fn a_batch_shows_a_progress_bar_that_ends_as_the_summary() {
    let mock = Mock::start(&["--chunks", "2", "--chunk-delay", "150"]);
    let (mut cmd, _, out) = batch_at(&mock, 3);
    cmd.args(["-s", "-j", "1"]);
    let terminal = Terminal::run(cmd);
    terminal.wait_for_more("1/3 done, 0 failed, 1 credit,", 0);
    let (status, screen, written) = terminal.finish();
    assert_frames_leave_room(&written, COLS);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        screen,
        "bnx: batch: 3 done, 0 failed, 0 skipped (done before), 0 not started; 3 credits consumed"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
}

/// A batch on an 80-column terminal: the bar never wraps, its time left counts the pacing wait
/// (2 of 6 done at once, then the others at 2 per 6 s: 12 s more, not the 0 s the pace of
/// the first two gives), and Ctrl-C leaves only the summary: how far the batch came, and that
/// a rerun with the same -o resumes, which it does.
#[test]
fn a_batch_interrupted_at_80_columns_says_how_far_it_came() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    let (mut cmd, items, out) = batch_at(&mock, 6);
    cmd.args(["-j", "1", "--rate-limit", "2/6"]);
    let mut terminal = Terminal::sized(cmd, 80);
    let paced = Instant::now() + PATIENCE;
    let frame = loop {
        let waiting = frames(&terminal.written())
            .into_iter()
            .find(|f| f.contains(" 2/6 done") && f.contains("waiting"));
        if let Some(frame) = waiting {
            break frame;
        }
        assert!(Instant::now() < paced, "no frame showed the pacing wait");
        thread::sleep(Duration::from_millis(10));
    };
    let left: u64 = frame
        .split(" left")
        .next()
        .and_then(|head| head.rsplit(", ").next())
        .and_then(|left| left.strip_suffix('s'))
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no time left in seconds: {frame:?}"));
    assert!(
        left >= 8,
        "{left}s left, with 12s of pacing ahead: {frame:?}"
    );
    type_ctrl_c(&mut terminal);
    let (status, screen, written) = terminal.finish();
    assert_eq!(status.signal(), Some(libc::SIGINT));
    assert_eq!(
        screen,
        "bnx: batch interrupted: 2/6 done, 0 failed, 2 credits; 0 skipped (done before); \
         a rerun with the same -o resumes",
        "written: {:?}",
        String::from_utf8_lossy(&written)
    );
    assert_frames_leave_room(&written, 80);

    let rerun = mock
        .command()
        .arg("--batch")
        .arg(&items)
        .arg("-o")
        .arg(&out)
        .args(["--rate-limit", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr_of(&rerun));
    assert!(
        stderr_of(&rerun).contains("4 done, 0 failed, 2 skipped (done before)"),
        "{}",
        stderr_of(&rerun)
    );
}
