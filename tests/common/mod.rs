//! Shared by the integration tests: a real `bnx-mock` process on 127.0.0.1, and `bnx` commands
//! with an environment that holds nothing of the machine's (no proxies, no real config).
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const TOKEN: &str = "bnx-mock-token";
pub const BNX: &str = env!("CARGO_BIN_EXE_bnx");
pub const BNX_MOCK: &str = env!("CARGO_BIN_EXE_bnx-mock");

pub struct Mock {
    child: Child,
    /// The origin, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub addr: String,
    /// A scratch directory: home, config and state of the `bnx` runs, and the request log.
    pub dir: TempDir,
}

impl Mock {
    pub fn start(args: &[&str]) -> Mock {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("requests.jsonl");
        let mut child = Command::new(BNX_MOCK)
            .args(["--listen", "127.0.0.1:0", "--log"])
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bnx-mock starts");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
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
            url,
            addr,
            dir,
        }
    }

    /// `bnx` aimed at this mock with its default token. Its stdin is an empty pipe (assert_cmd's
    /// way) unless the test writes one.
    pub fn bnx(&self) -> assert_cmd::Command {
        let mut cmd = bnx_isolated(self.dir.path());
        cmd.env("BLUENEXUS_BASE_URL", &self.url)
            .env("BLUENEXUS_TOKEN", TOKEN);
        cmd
    }

    /// The mock's process id, to read its costs from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The requests logged so far, waiting up to 5 s for at least `n` of them: the mock logs a
    /// request when it has finished answering it, which may be just after the client exits.
    pub fn requests(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("requests.jsonl")).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
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
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bnx` with HOME and XDG directories under `dir`, and none of the machine's variables.
pub fn bnx_isolated(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BNX);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .timeout(Duration::from_secs(60));
    cmd
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the run wrote no panic, no debug dump and at most an error line and a hint line.
pub fn assert_clean_stderr(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bnx: error:"))
        .collect();
    assert!(errors.len() <= 1, "{stderr}");
}

#[path = "../../benches/compare/measure.rs"]
pub mod measure;

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

/// A std `Command` for `bnx` with the same isolation as `bnx_isolated`.
pub fn bnx_std(dir: &Path) -> Command {
    let mut cmd = Command::new(BNX);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("BLUENEXUS_TOKEN", TOKEN);
    cmd
}
