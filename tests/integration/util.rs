//! What the test modules share: `bnx` commands with an isolated environment, and checks on what
//! a run wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

pub use predicates::prelude::*;
pub use serde_json::{json, Value};

pub use crate::support::measure;
pub use crate::support::mock::{isolated, Mock, BNX, BNX_MOCK, TOKEN};
pub use crate::support::scripted::{http, Request, Scripted, Step};

/// A token with characters a server would percent-encode into a URL.
pub const TOKEN_ECHOED: &str = "tok-ECHO/5150+zz";

/// A run may not take longer than this, whatever goes wrong.
const RUN_LIMIT: Duration = Duration::from_secs(60);

impl Mock {
    /// `bnx` aimed at this mock, as assert_cmd runs it: stdin is an empty pipe unless the test
    /// writes one.
    pub fn bnx(&self) -> assert_cmd::Command {
        checked(self.command())
    }
}

impl Scripted {
    /// `bnx` aimed at this server with the test token, running in `dir`.
    pub fn bnx(&self, dir: &Path) -> assert_cmd::Command {
        let mut cmd = bnx_in(dir);
        cmd.env("BLUENEXUS_BASE_URL", &self.origin)
            .env("BLUENEXUS_TOKEN", TOKEN);
        cmd
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

/// stdout and stderr of a run, for checks on both.
pub fn all_of(output: &Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

/// Every file and directory below `dir`, none when it cannot be read.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
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

/// A server that reads one request, says so on the channel, and then says nothing while the
/// client waits: for what happens to a run in flight.
pub fn silent_server() -> (String, Receiver<()>) {
    let (arrived, received) = mpsc::channel();
    let server = Scripted::replies(vec![vec![Step::Notify(arrived), Step::Silence]]);
    (server.origin, received)
}

/// Runs `bnx ARGS` against a `silent_server` and, once its request has arrived and `meanwhile`
/// has looked at what the run left so far, interrupts it with SIGINT; returns how it ended.
pub fn interrupted(dir: &Path, args: &[&std::ffi::OsStr], meanwhile: impl FnOnce()) -> Output {
    let (origin, received) = silent_server();
    let child = isolated(BNX, dir)
        .env("BLUENEXUS_BASE_URL", &origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    received
        .recv_timeout(Duration::from_secs(10))
        .expect("bnx sent its request");
    meanwhile();
    // SAFETY: kill(2) with a pid this test started and still holds.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    child.wait_with_output().unwrap()
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

/// One SSE event holding a chunk with `delta` and `finish_reason`.
fn chunk_event(delta: Value, finish_reason: Option<&str>) -> String {
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]});
    format!("data: {chunk}\n\n")
}

/// A chat server whose every answer is `content`: a whole `chat.completion`, or, when the
/// request asks to stream, one event a word. For answers the mock cannot give (its echo starts
/// with `[turn N]`), such as a bare JSON value.
pub fn answer_server(content: &str) -> String {
    let content = content.to_string();
    let server = Scripted::answering(move |request| {
        let reply = if request.json()["stream"] == true {
            let mut events = chunk_event(json!({"role": "assistant"}), None);
            for word in content.split_inclusive(' ') {
                events.push_str(&chunk_event(json!({"content": word}), None));
            }
            events.push_str(&chunk_event(json!({}), Some("stop")));
            events.push_str("data: [DONE]\n\n");
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{events}")
        } else {
            let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}]})
            .to_string();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        reply.into_bytes()
    });
    server.origin
}

/// A server for one request that holds its answer back: it sends the headers (and, streaming,
/// a first event without text) at once, says so on `headers_sent`, and sends `content` only
/// once `release` is signalled. For what a terminal shows while an answer is awaited.
pub struct HeldAnswer {
    pub origin: String,
    pub headers_sent: Receiver<()>,
    pub release: Sender<()>,
}

impl HeldAnswer {
    pub fn start(content: &str) -> HeldAnswer {
        let (sent, headers_sent) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let mut gate = Some((sent, released));
        let content = content.to_string();
        let server = Scripted::start(move |request| {
            // One request is held; another would find the gate gone and be closed unanswered.
            let Some((sent, released)) = gate.take() else {
                return Vec::new();
            };
            let (head, rest) = if request.json()["stream"] == true {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n".to_string()
                    + &chunk_event(json!({"role": "assistant"}), None);
                let rest =
                    chunk_event(json!({"content": content}), Some("stop")) + "data: [DONE]\n\n";
                (head, rest)
            } else {
                let body =
                    json!({"choices": [{"message": {"role": "assistant", "content": content},
                                               "finish_reason": "stop"}]})
                    .to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                (head, body)
            };
            vec![
                Step::Send(head.into_bytes()),
                Step::Notify(sent),
                Step::Await(released),
                Step::Send(rest.into_bytes()),
            ]
        });
        HeldAnswer {
            origin: server.origin,
            headers_sent,
            release,
        }
    }
}

/// A whole answer holding `message`, the assistant message as JSON text.
pub fn json_answer(message: &str) -> Vec<u8> {
    let message: Value = serde_json::from_str(message).unwrap();
    let body = json!({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]});
    http(
        "200 OK",
        "Content-Type: application/json\r\n",
        &body.to_string(),
    )
}

/// A streamed answer of `events`, each the data of one SSE event.
pub fn sse(events: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    http("200 OK", "Content-Type: text/event-stream\r\n", &body)
}

/// A FIFO made at `path`, and a thread reading it to its end: what a program wrote into it.
pub fn read_fifo(path: &Path) -> std::thread::JoinHandle<String> {
    let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read_to_string(path).unwrap())
}
