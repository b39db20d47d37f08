//! What a person at a terminal sees, under a real pseudo-terminal: the spinner while the answer
//! is awaited, erased before the answer and on Ctrl-C; an error after part of an answer on a
//! line of its own; the README's token setup working at the first try. The screen is rendered
//! by a terminal emulator (vt100), so the assertions are on what is left on it.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
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
    master: File,
    written: Arc<Mutex<Vec<u8>>>,
    reader: Option<thread::JoinHandle<()>>,
}

/// A pseudo-terminal pair, both ends close-on-exec from the start, so that no other process
/// started meanwhile by a test running in parallel can hold the terminal open.
fn open_pty() -> (OwnedFd, OwnedFd) {
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
        let size = libc::winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size), 0);
        (master, OwnedFd::from_raw_fd(slave))
    }
}

impl Terminal {
    fn run(mut cmd: Command) -> Terminal {
        let (master, slave) = open_pty();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
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
        (status, screen(&written), written)
    }
}

/// The screen after `written`, as a terminal shows it: one line a row, trailing blanks cut.
fn screen(written: &[u8]) -> String {
    let size = |n| std::num::NonZeroU16::new(n).unwrap();
    let mut parser = vt100::Parser::new(size(ROWS), size(COLS), 0);
    parser.process(written);
    parser.screen().contents()
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

#[test]
fn ctrl_c_erases_the_spinner_and_ends_by_sigint() {
    let (origin, received) = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bnx_at(&origin, dir.path());
    cmd.args(["-s", "hi"]);
    let terminal = Terminal::run(cmd);
    received
        .recv_timeout(PATIENCE)
        .expect("the request was sent");
    terminal.wait_for_more(SPINNER, 0);
    // SAFETY: kill(2) with a pid this test started and still holds.
    assert_eq!(
        unsafe { libc::kill(terminal.child.id() as i32, libc::SIGINT) },
        0
    );
    let (status, screen, written) = terminal.finish();
    assert_eq!(status.signal(), Some(libc::SIGINT));
    assert_eq!(
        screen,
        "",
        "left on the screen; written: {:?}",
        String::from_utf8_lossy(&written)
    );
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

/// A batch on a terminal shows its progress on one line, which is gone when the batch ends,
/// leaving the summary; its lines go to the -o file, never past the bar.
#[test]
fn a_batch_shows_a_progress_bar_that_ends_as_the_summary() {
    let mock = Mock::start(&["--chunks", "2", "--chunk-delay", "150"]);
    let items = mock.dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let out = mock.dir.path().join("out.jsonl");
    let mut cmd = bnx_at(&mock.url, mock.dir.path());
    cmd.arg("--batch")
        .arg(&items)
        .arg("-o")
        .arg(&out)
        .args(["-s", "-j", "1"]);
    let terminal = Terminal::run(cmd);
    terminal.wait_for_more("1/3 done, 0 failed, 1 credits", 0);
    let (status, screen, _) = terminal.finish();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        screen,
        "bnx: batch: 3 done, 0 failed, 0 skipped (done before), 0 not started; 3 credits consumed"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
}
