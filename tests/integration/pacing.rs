//! Pacing shared by every `bnx` process of the user for one API and token: waits instead of
//! 429s, a refusal when the wait is too long, a 429's pause shared, and a state directory that
//! cannot be used costing only a warning.

use std::fs;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::util::*;

/// `bnx` runs started together against `mock`, each with `args`; their outputs, in start order.
fn together(mock: &Mock, runs: usize, args: &[&str]) -> Vec<std::process::Output> {
    let children: Vec<Child> = (0..runs)
        .map(|i| {
            mock.command()
                .args(args)
                .arg(format!("run {i}"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// `runs` `bnx` processes against `mock`, at most `parallel` at a time, as `xargs -P` starts
/// them; their outputs.
fn xargs(mock: &Mock, runs: usize, parallel: usize, args: &[&str]) -> Vec<std::process::Output> {
    let next = AtomicUsize::new(0);
    let outputs = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::SeqCst) < runs {
                    let output = mock.command().args(args).arg("x").output().unwrap();
                    outputs.lock().unwrap().push(output);
                }
            });
        }
    });
    outputs.into_inner().unwrap()
}

fn statuses(mock: &Mock, n: usize) -> Vec<u64> {
    mock.requests(n)
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

#[test]
fn two_dozen_processes_eight_at_a_time_stay_under_the_servers_limit() {
    let mock = Mock::start(&["--rate-limit", "6/3"]);
    let outputs = xargs(&mock, 24, 8, &["--rate-limit", "6/3"]);
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    }
    let seen = statuses(&mock, 24);
    assert_eq!(seen.len(), 24, "one request each: no retries were needed");
    assert!(seen.iter().all(|&s| s == 200), "{seen:?}");

    // The same without pacing meets the limit: this is what the pacing saved.
    let unpaced = Mock::start(&["--rate-limit", "6/3"]);
    let outputs = xargs(&unpaced, 24, 8, &["--rate-limit", "0", "--retries", "0"]);
    let refused = outputs
        .iter()
        .filter(|o| o.status.code() == Some(75))
        .count();
    assert!(refused >= 12, "only {refused} of 24 met the limit");
    assert_eq!(
        statuses(&unpaced, 24).iter().filter(|&&s| s == 429).count(),
        refused
    );
}

#[test]
fn processes_over_the_limit_wait_for_a_slot_instead_of_meeting_429() {
    // The mock allows 30 a minute; the client paces at 3 a second, so a 429 could only come
    // from a process that did not wait.
    let mock = Mock::start(&[]);
    let outputs = together(&mock, 7, &["--rate-limit", "3/1", "--retries", "0"]);
    let waited = outputs
        .iter()
        .filter(|o| stderr_of(o).contains("for a request slot (3 per 1s)"))
        .count();
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    }
    assert!(waited >= 4, "only {waited} of 7 runs waited");
    let requests = mock.requests(7);
    assert_eq!(requests.len(), 7);
    assert!(requests.iter().all(|r| r["status"] == 200));
}

#[test]
fn a_wait_longer_than_max_retry_wait_fails_at_once_without_sending() {
    let mock = Mock::start(&[]);
    for i in 0..2 {
        mock.bnx()
            .args(["--rate-limit", "2/60", &format!("q{i}")])
            .assert()
            .success();
    }
    let output = mock
        .bnx()
        .args([
            "--rate-limit",
            "2/60",
            "--max-retry-wait",
            "5",
            "--json",
            "q2",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(75));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("bnx: error: the next request slot is 6")
            && stderr.contains("(2 per 60s)"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["error"]["type"], "pacing");
    assert_eq!(doc["bnx"]["attempts"], 0);
    assert!(doc["bnx"]["retry_after"].as_f64().unwrap() > 59.0);
    assert_eq!(mock.requests(2).len(), 2, "the refused run sent nothing");
}

#[test]
fn a_429_pauses_every_process_of_the_user() {
    let mock = Mock::start(&["--fault", "429:2"]);
    let mut first = mock.command();
    first.args(["--retries", "1", "first"]);
    let mut second = mock.command();
    second.arg("second");
    assert_a_429_pauses_the_other(&mock, first, second);
}

#[test]
fn the_state_is_one_digest_named_file_that_holds_no_token() {
    let secret = "tok-PACE-SECRET-31337";
    let mock = Mock::start(&["--token", secret]);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", secret)
        .arg("x")
        .assert()
        .success();
    let dir = mock.state_dir().join("bluenexus/pace");
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].len() == 64 && names[0].bytes().all(|b| b.is_ascii_hexdigit()));
    let state = fs::read_to_string(dir.join(&names[0])).unwrap();
    assert!(
        !state.contains("SECRET") && !state.contains("31337"),
        "{state}"
    );
    let slots: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(slots["taken"].as_array().unwrap().len(), 1);
}

/// Pacing and conversations share the state directory: losing it costs warnings, not the run.
#[test]
fn an_unusable_state_directory_costs_only_warnings() {
    let mock = Mock::start(&[]);
    let blocker = mock.dir.path().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    mock.bnx()
        .env("XDG_STATE_HOME", &blocker)
        .arg("hi")
        .assert()
        .success()
        .stdout("[turn 1] hi\n")
        .stderr(
            predicate::str::contains("bnx: warning: pacing is off (")
                .count(1)
                .and(predicate::str::contains(
                    "bnx: warning: cannot save the conversation",
                )),
        );
    mock.bnx()
        .env("XDG_STATE_HOME", &blocker)
        .args(["--rate-limit", "0", "hi"])
        .assert()
        .success()
        .stderr(predicate::str::contains("pacing").not());
}

#[test]
fn a_bad_rate_limit_is_a_usage_or_configuration_error() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--rate-limit", "3/0", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("N/SECS"));
    mock.bnx()
        .env("BLUENEXUS_RATE_LIMIT", "lots")
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("BLUENEXUS_RATE_LIMIT"));
    mock.assert_no_requests();
}

#[test]
fn a_caller_who_accepts_a_windows_wait_is_never_refused_for_the_margin() {
    // 6 per second and --max-retry-wait 1: the 7th request waits the window plus the margin
    // that keeps arrivals apart, and takes it rather than failing with 75.
    let mock = Mock::start(&["--rate-limit", "6/1"]);
    let outputs = together(&mock, 7, &["--rate-limit", "6/1", "--max-retry-wait", "1"]);
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    }
    assert_eq!(statuses(&mock, 7), vec![200; 7]);
}

/// The state file the pacing of `mock`'s origin and default token uses.
fn state_file(mock: &Mock) -> std::path::PathBuf {
    mock.bnx()
        .args(["--rate-limit", "5/60", "first"])
        .assert()
        .success();
    let dir = mock.state_dir().join("bluenexus/pace");
    let mut names = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path());
    names.next().unwrap()
}

#[test]
fn a_state_from_a_clock_set_back_is_forgotten_not_waited_for() {
    let mock = Mock::start(&[]);
    let path = state_file(&mock);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Written two hours "from now" by a clock since set back: its slots and pause are off by
    // as much, and would hold every run back for two hours.
    let two_hours = 7_200_000;
    let future = now + two_hours;
    fs::write(
        &path,
        format!("{{\"taken\":[{future},{future}],\"paused_until\":{future},\"written\":{future}}}"),
    )
    .unwrap();
    mock.bnx()
        .args(["--rate-limit", "2/60", "--max-retry-wait", "1", "x"])
        .assert()
        .success()
        .stderr("");
    fs::write(
        &path,
        "{\"taken\":[],\"paused_until\":18446744073709551615}",
    )
    .unwrap();
    mock.bnx()
        .args(["--max-retry-wait", "1", "x"])
        .assert()
        .success()
        .stderr("");
}

#[test]
fn a_state_path_that_is_not_a_file_turns_pacing_off_and_never_hangs() {
    let mock = Mock::start(&[]);
    let path = state_file(&mock);
    fs::remove_file(&path).unwrap();
    let fifo = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    mock.bnx()
        .arg("x")
        .timeout(Duration::from_secs(20))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("pacing is off")
                .and(predicate::str::contains("not a regular file")),
        );
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    mock.bnx()
        .arg("x")
        .timeout(Duration::from_secs(20))
        .assert()
        .success()
        .stderr(predicate::str::contains("pacing is off"));
}

#[test]
fn a_state_that_is_not_utf8_starts_afresh_with_one_warning_and_paces_on() {
    // The first request meets an injected 500, which the mock answers before counting it
    // against its limit: it only makes the state file.
    let mock = Mock::start(&["--rate-limit", "4/60", "--fault", "500"]);
    mock.bnx()
        .args(["--rate-limit", "4/60", "--retries", "0", "first"])
        .assert()
        .failure();
    let dir = mock.state_dir().join("bluenexus/pace");
    let path = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    fs::write(
        &path,
        b"\xff\xfe{\"taken\": [\x80], \"paused_until\": \xc3\x28}",
    )
    .unwrap();
    let outputs = together(
        &mock,
        8,
        &[
            "--rate-limit",
            "4/60",
            "--max-retry-wait",
            "5",
            "--retries",
            "0",
        ],
    );
    let mut codes = Vec::new();
    let mut resets = 0;
    for output in &outputs {
        let stderr = stderr_of(output);
        assert!(stderr.matches("bnx: warning:").count() <= 1, "{stderr}");
        resets += stderr
            .matches("bnx: warning: the pacing state could not be read (")
            .count();
        codes.push(output.status.code());
        if output.status.code() == Some(75) {
            assert!(
                stderr.contains("the next request slot is 6") && stderr.contains("(4 per 60s)"),
                "{stderr}"
            );
        }
    }
    assert_eq!(resets, 1, "one run found the state unreadable and said so");
    codes.sort();
    assert_eq!(
        codes,
        [Some(0); 4]
            .into_iter()
            .chain([Some(75); 4])
            .collect::<Vec<_>>()
    );
    // The mock's limit was never met: four were sent, four waited too long and sent nothing.
    assert_eq!(statuses(&mock, 5), [500, 200, 200, 200, 200]);
    let state: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(state["taken"].as_array().unwrap().len(), 4);
}

/// The output of `child`, which must end within `limit`: killed and failed if it does not.
fn within(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "still running after {limit:?}: {:?}",
                child.wait_with_output()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A process that holds `path`'s lock until it is killed, as a `bnx` stopped with Ctrl-Z
/// while it held it would: a shell that locks the file with flock(1) and becomes a `sleep`
/// that keeps the locked descriptor.
struct LockHolder(Child);

impl LockHolder {
    fn start(path: &std::path::Path) -> LockHolder {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "exec 9<>\"$0\" && flock -x 9 && echo locked && exec sleep 120",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "locked\n");
        LockHolder(child)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pacing_lock_never_let_go_costs_one_warning_and_freezes_no_run() {
    let mock = Mock::start(&[]);
    let path = state_file(&mock);
    let holder = LockHolder::start(&path);
    let run = mock
        .bnx()
        .args(["--rate-limit", "5/60", "x"])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let stderr = stderr_of(&run);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout_of(&run), "[turn 1] x\n");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("bnx: warning: pacing is off (")
            && stderr.contains("another process has held the pacing state's lock for over 2s"),
        "{stderr}"
    );
    drop(holder);

    // Taken in the middle of a batch: the attempt that meets it waits 2 s, says so once, and
    // the batch finishes unpaced.
    let items: String = (0..8)
        .map(|i| format!("{{\"id\": {i}, \"prompt\": \"item {i}\"}}\n"))
        .collect();
    let file = mock.dir.path().join("items.jsonl");
    fs::write(&file, items).unwrap();
    let batch = mock
        .command()
        .arg("--batch")
        .arg(&file)
        .args(["-j", "1", "--rate-limit", "1/1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(mock.requests(4).len() >= 4, "the batch never got going");
    let holder = LockHolder::start(&path);
    let output = within(batch, Duration::from_secs(40));
    drop(holder);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout_of(&output).lines().count(), 8);
    assert_eq!(stderr.matches("bnx: warning:").count(), 1, "{stderr}");
    assert!(
        stderr.contains("bnx: warning: pacing is off (")
            && stderr.contains("held the pacing state's lock for over 2s"),
        "{stderr}"
    );
    assert_eq!(statuses(&mock, 10), vec![200; 10]);
}
