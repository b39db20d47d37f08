//! What the test modules share: `bnx` commands with an isolated environment, and checks on what
//! a run wrote.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

pub use predicates::prelude::*;
pub use serde_json::{json, Value};

pub use crate::support::measure;
pub use crate::support::mock::{isolated, Mock, BNX, BNX_MOCK, TOKEN};

/// A run may not take longer than this, whatever goes wrong.
const RUN_LIMIT: Duration = Duration::from_secs(60);

impl Mock {
    /// `bnx` aimed at this mock, as assert_cmd runs it: stdin is an empty pipe unless the test
    /// writes one.
    pub fn bnx(&self) -> assert_cmd::Command {
        checked(self.command())
    }
}

/// Runs `first` (which must retry once) into a mock started with `--fault 429:SECS`, then
/// `second` while `first` waits out the 429: `second` must wait for the same pause, and both
/// succeed. Whatever `first` and `second` share for pacing, this proves it carries a pause.
pub fn assert_a_429_pauses_the_other(mock: &Mock, mut first: Command, mut second: Command) {
    let first = first
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let limited = mock.requests(1);
    assert_eq!(limited[0]["status"], 429);
    let second = second.stdin(Stdio::null()).output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", stderr_of(&second));
    assert!(
        stderr_of(&second).contains("for a request slot"),
        "the second run did not wait for the pause: {}",
        stderr_of(&second)
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    let statuses: Vec<Value> = mock
        .requests(3)
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(429), json!(200), json!(200)]);
}

/// `bnx` with no server and no token: for what happens before anything is sent.
pub fn bnx_in(dir: &Path) -> assert_cmd::Command {
    checked(isolated(BNX, dir))
}

fn checked(cmd: Command) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(RUN_LIMIT);
    cmd
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the run wrote no panic, no debug dump and at most one error line.
pub fn assert_clean_stderr(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bnx: error:"))
        .collect();
    assert!(errors.len() <= 1, "{stderr}");
}

/// A server that reads one request head, reports it, and then says nothing while the client
/// waits: for what happens to a run in flight.
pub fn silent_server() -> (String, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (report, received) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = report.send(head);
        // Held open, silent, until the client goes away.
        let _ = conn.read(&mut buf);
    });
    (origin, received)
}

/// What one measured run of a process cost, and what it wrote.
pub struct Measured {
    pub code: Option<i32>,
    pub elapsed: Duration,
    pub max_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin empty) to the end with its output in files, measured by `measure::run`.
pub fn run_measured(cmd: &mut Command) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let cost = measure::run(
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap()),
    );
    Measured {
        code: cost.code,
        elapsed: cost.wall,
        max_rss_kib: cost.max_rss_kib,
        stdout: std::fs::read_to_string(out_path).unwrap(),
        stderr: std::fs::read_to_string(err_path).unwrap(),
    }
}
