//! A real `redis-server` on a free loopback port, for what a fleet shares: no persistence, ready
//! once it answers PING, killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const PROGRAM: &str = "redis-server";

pub struct Redis {
    child: Child,
    pub port: u16,
    /// `redis://127.0.0.1:PORT`
    pub url: String,
    /// Its working directory, so that nothing it might write lands in the tree.
    _dir: TempDir,
}

impl Redis {
    /// A fresh server. `None`, with the reason on stderr, only where `redis-server` is not
    /// installed and this is not CI: `.ci/run` installs it, so in CI its absence fails the test.
    pub fn start() -> Option<Redis> {
        if Command::new(PROGRAM).arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{PROGRAM} is missing; .ci/run installs it (apt-get install redis-server)"
            );
            eprintln!("skipped: {PROGRAM} is not installed (apt-get install redis-server)");
            return None;
        }
        // The port is free when asked, but another process may take it before the server
        // binds it; then the server exits, and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new(PROGRAM)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut redis = Redis {
                child,
                port,
                url: format!("redis://127.0.0.1:{port}"),
                _dir: dir,
            };
            if redis.ready() {
                return Some(redis);
            }
        }
        panic!("{PROGRAM} did not start on a free port in 5 tries");
    }

    /// Waits up to 10 s for the server to answer PING; `false` if it exited first.
    fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if self.try_connection().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{PROGRAM} on port {} never answered PING", self.port);
    }

    fn try_connection(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(("127.0.0.1", self.port)).ok()?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<()>(&mut connection).ok()?;
        Some(connection)
    }

    /// A connection of the test's own, to look at what the clients wrote.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("redis-server answers")
    }

    /// SIGKILL: the server is gone at once, as after a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
