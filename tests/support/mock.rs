//! A real `bnx-mock` process on 127.0.0.1, and `bnx` commands aimed at it with an environment
//! that holds nothing of the machine's (no proxies, no real config or state). Shared by the
//! integration tests and the benchmark harness.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const TOKEN: &str = "bnx-mock-token";
pub const BNX: &str = env!("CARGO_BIN_EXE_bnx");
pub const BNX_MOCK: &str = env!("CARGO_BIN_EXE_bnx-mock");

/// Where the mock logs a sentinel request, so a test can tell "no request came" from "not
/// logged yet".
const SENTINEL: &str = "/bnx-test-sentinel";

pub struct Mock {
    child: Child,
    /// What the mock wrote to stderr after its first line, read as it comes so that the mock
    /// never waits on a full pipe.
    stderr: Arc<Mutex<String>>,
    /// The origin, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub addr: String,
    /// A scratch directory: home, config and state of the `bnx` runs, and the request log.
    pub dir: TempDir,
}

impl Mock {
    pub fn start(args: &[&str]) -> Mock {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(BNX_MOCK)
            .args(["--listen", "127.0.0.1:0", "--log"])
            .arg(dir.path().join("requests.jsonl"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bnx-mock starts");
        let mut line = String::new();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        reader.read_line(&mut line).unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        std::thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                for line in reader.lines().map_while(Result::ok) {
                    let mut stderr = stderr.lock().unwrap();
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
            }
        });
        let url = line
            .trim()
            .strip_prefix("bnx-mock: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        for sub in ["home", "config", "state"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Mock {
            child,
            stderr,
            url,
            addr,
            dir,
        }
    }

    /// `bnx` aimed at this mock with its default token.
    pub fn command(&self) -> Command {
        let mut cmd = isolated(BNX, self.dir.path());
        cmd.env("BLUENEXUS_BASE_URL", &self.url)
            .env("BLUENEXUS_TOKEN", TOKEN);
        cmd
    }

    /// The lines the mock wrote to stderr after its first, so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The mock's process id, to read its costs from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl")).unwrap_or_default()
    }

    /// The requests logged so far, in the order they arrived, waiting up to 5 s for at least `n`
    /// of them. The mock logs a request when it has finished answering it, which may be just
    /// after the client has read the answer, so one that came later can be logged first.
    pub fn requests(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            // A line longer than the mock's write buffer arrives in parts: only whole lines
            // are requests logged.
            let whole = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
            let mut lines: Vec<Value> = whole
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                // Stable: requests arriving in the same millisecond keep the log's order.
                lines.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The one request the mock received.
    pub fn only_request(&self) -> Value {
        let requests = self.requests(1);
        assert_eq!(requests.len(), 1, "{requests:#?}");
        requests.into_iter().next().unwrap()
    }

    /// Asserts that no client request reached the mock. A sentinel request is sent and waited
    /// for, so that a request still being logged cannot slip past the check.
    pub fn assert_no_requests(&self) {
        let requests = self.settled_requests();
        assert!(requests.is_empty(), "{requests:#?}");
    }

    /// Every client request logged so far, once the requests that had arrived are all logged:
    /// a sentinel request is sent and its line waited for, then left out with the earlier ones.
    pub fn settled_requests(&self) -> Vec<Value> {
        let sentinels = || self.log().matches(SENTINEL).count();
        let before = sentinels();
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {SENTINEL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        while sentinels() == before {
            assert!(Instant::now() < deadline, "the sentinel was never logged");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut requests = self.requests(0);
        requests.retain(|r| r["path"] != SENTINEL);
        requests
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program` with HOME and the XDG directories under `dir`, and none of the machine's
/// variables but PATH.
pub fn isolated(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_STATE_HOME", dir.join("state"));
    cmd
}
