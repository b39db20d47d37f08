//! Where the token comes from (`BLUENEXUS_TOKEN`, `--token-cmd`, `--token-file`, the default
//! file), in which order, and what a source may not do: be larger than 16 KiB (refused, never
//! cut), be other than a regular file, or outlive an interrupted run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn token_sources_in_order() {
    let mock = Mock::start(&[]);
    let token_file = mock.dir.path().join("config/bluenexus/token");
    fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    fs::write(&token_file, format!("  {TOKEN}\n")).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .arg("default file")
        .assert()
        .success();
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .env("BLUENEXUS_TOKEN_CMD", format!("echo {TOKEN}"))
        .arg("env cmd")
        .assert()
        .success();
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "wrong")
        .args(["--token-cmd", &format!("printf {TOKEN}"), "x"])
        .assert()
        .success();
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "wrong")
        .arg("--token-file")
        .arg(&token_file)
        .arg("x")
        .assert()
        .success();
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "wrong")
        .arg("x")
        .assert()
        .code(77);
}

#[test]
fn token_sources_over_16_kib_are_refused_never_cut() {
    let mock = Mock::start(&[]);
    let file = mock.dir.path().join("token");
    fs::write(&file, format!("{TOKEN}{}junk", " ".repeat(70_000))).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    mock.bnx()
        .arg("--token-file")
        .arg(&file)
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("larger than 16 KiB"));
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "t".repeat(100_000))
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("larger than 16 KiB"));
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .args(["--token-cmd", "head -c 20000 /dev/zero | tr '\\0' t", "x"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("more than 16 KiB"));
    mock.assert_no_requests();
}

#[test]
fn a_token_file_that_is_not_a_regular_file_is_refused_promptly() {
    let mock = Mock::start(&[]);
    let fifo = mock.dir.path().join("fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    for (file, what) in [
        (fifo.as_path(), "a FIFO"),
        (mock.dir.path(), "a directory"),
        (Path::new("/dev/zero"), "a device"),
    ] {
        let started = Instant::now();
        mock.bnx()
            .arg("--token-file")
            .arg(file)
            .arg("x")
            .timeout(Duration::from_secs(20))
            .assert()
            .code(78)
            .stderr(predicate::str::contains(format!(
                "is {what}, not a regular file"
            )));
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
    }
    mock.assert_no_requests();
}

#[test]
fn an_interrupted_run_kills_the_token_command_with_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!(
        "sleep 100 & echo $$ $! > '{}.tmp'; mv '{0}.tmp' '{0}'; wait",
        pids.display()
    );
    let mut child = isolated(BNX, dir.path())
        .args(["--token-cmd", &command, "x"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pids.exists() {
        assert!(Instant::now() < deadline, "the token command never started");
        thread::sleep(Duration::from_millis(10));
    }
    let pids: Vec<i32> = fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // SAFETY: kill(2) with a pid this test started and still holds.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "bnx dies by the signal"
    );
    for pid in pids {
        while is_running(pid) {
            assert!(
                Instant::now() < deadline,
                "process {pid} of the group still runs"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Alive and not a zombie waiting to be reaped.
fn is_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z')
    })
}
