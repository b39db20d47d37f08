//! Credits across runs (SPEC 9): the ledger adds exactly what the server charged, a budget and a
//! floor hold across processes and machines, a ledger or store that cannot be used refuses runs
//! with a limit and costs others a warning, clocks set back or forward lift no budget, and
//! `--spent` says what was consumed. A "machine" is a state directory of its own.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bnx::budget::Budget;
use bnx::ledger::book::{Balance, Book, Boot, Entry, Query};
use bnx::ledger::file::boot;
use bnx::ledger::redis::{RedisLedger, PREFIX};
use bnx::store::StoreUrl;
use bnx::timestamp::rfc3339;

use crate::support::redis::Redis;
use crate::util::*;

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The one JSON document of a run's stdout.
fn document(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout_of(output), stderr_of(output)))
}

/// `bnx --spent --json` on `cmd`, which must succeed.
fn spent(mut cmd: assert_cmd::Command) -> Value {
    let output = cmd.args(["--spent", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    document(&output)
}

/// The directory of the books of `state` (a `BLUENEXUS_STATE_DIR`, or the mock's default).
fn credits_dir(state: &Path) -> PathBuf {
    state.join("credits")
}

/// The mock's default state directory, as `Mock::command` sets it.
fn state_of(mock: &Mock) -> PathBuf {
    mock.state_dir().join("bluenexus")
}

/// The book of the mock's origin and token: made by one answered run, found as the only file.
fn book_of(mock: &Mock) -> PathBuf {
    mock.bnx().arg("first").assert().success();
    let mut files: Vec<PathBuf> = fs::read_dir(credits_dir(&state_of(mock)))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

fn minute_of(at: u64) -> u32 {
    (at / MINUTE) as u32
}

/// A book written now, in this boot, holding `minutes` as (age in ms, credits).
fn book_now(minutes: &[(u64, f64)], balance: Option<Balance>) -> Book {
    let now = now_ms();
    let mut minutes: Vec<(u32, f64)> = minutes
        .iter()
        .map(|&(age, credits)| (minute_of(now - age), credits))
        .collect();
    minutes.sort_by_key(|&(m, _)| m);
    Book {
        minutes,
        balance,
        written: now,
        boot: boot(),
    }
}

/// `runs` processes from `make`, at most `at_once` at a time, as `xargs -P` starts them.
fn xargs(runs: usize, at_once: usize, make: impl Fn(usize) -> Command + Sync) -> Vec<Output> {
    let next = AtomicUsize::new(0);
    let outputs = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..at_once {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= runs {
                    break;
                }
                let output = make(i).stdin(Stdio::null()).output().unwrap();
                outputs.lock().unwrap().push(output);
            });
        }
    });
    outputs.into_inner().unwrap()
}

fn answered(mock: &Mock, at_least: usize) -> usize {
    mock.requests(at_least)
        .iter()
        .filter(|r| r["status"] == 200)
        .count()
}

#[test]
fn the_ledger_adds_exactly_what_the_mock_charged() {
    // Answers of 8,000 bytes cost 3 credits; cut at 100 tokens, 1. The first request fails.
    let mock = Mock::start(&[
        "--credits",
        "1000",
        "--answer-size",
        "8000",
        "--fault",
        "500",
    ]);
    let failed = mock
        .bnx()
        .args(["--retries", "0", "fails"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(69));
    // What each answer said it cost, and the balance it left.
    let run = |args: &[&str]| {
        let output = mock.bnx().args(["--json"]).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        let text = stdout_of(&output);
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let meta = &last["bnx"];
        (
            meta["credits_consumed"].as_f64().unwrap(),
            meta["credits_remaining"].as_f64().unwrap(),
        )
    };
    let mut charged = 0.0;
    for args in [
        &["one"][..],
        &["--max-tokens", "100", "two"],
        &["-s", "three"],
        &["-s", "--max-tokens", "100", "four"],
    ] {
        charged += run(args).0;
    }
    let items = mock.dir.path().join("items.jsonl");
    fs::write(
        &items,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"max_tokens\": 100}\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let output = mock
        .bnx()
        .arg("--batch")
        .arg(&items)
        .args(["-j", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    for line in stdout_of(&output).lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        charged += line["bnx"]["credits_consumed"].as_f64().unwrap();
    }
    // Last, alone, so that its balance is the one that arrived last.
    let (cost, last_remaining) = run(&["five"]);
    charged += cost;
    assert_eq!(answered(&mock, 9), 8);
    assert_eq!(charged, 3.0 * 5.0 + 3.0, "what the answers said they cost");
    assert_eq!(
        1000.0 - last_remaining,
        charged,
        "what the mock's balance says"
    );
    let ledger = spent(mock.bnx());
    assert_eq!(
        ledger["consumed"],
        json!({"1h": 18, "1d": 18, "7d": 18, "30d": 18})
    );
    assert_eq!(ledger["remaining"].as_f64(), Some(last_remaining));
    assert_eq!(ledger["budget"], Value::Null);
    let at = ledger["remaining_at"].as_str().unwrap();
    let now = rfc3339(SystemTime::now());
    let a_minute_ago = rfc3339(SystemTime::now() - Duration::from_secs(60));
    assert!(
        a_minute_ago.as_str() < at && at <= now.as_str(),
        "{at} vs {now}"
    );
}

#[test]
fn credit_headers_that_are_not_credible_numbers_are_not_added_and_v_says_so() {
    let headers = [
        ("lots", "x"),
        ("-3", "5"),
        ("1e300", "1e300"),
        ("NaN", "inf"),
        ("2", "7.5"),
        ("0.25", "-1"),
    ];
    let replies = headers
        .iter()
        .map(|(consumed, remaining)| {
            let head = format!(
                "Content-Type: application/json\r\nX-Credits-Consumed: {consumed}\r\nX-Credits-Remaining: {remaining}\r\n"
            );
            vec![Step::Send(http(
                "200 OK",
                &head,
                r#"{"choices":[{"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#,
            ))]
        })
        .collect();
    let server = Scripted::replies(replies);
    let dir = tempfile::tempdir().unwrap();
    let mut stderr = String::new();
    for _ in &headers {
        let output = server.bnx(dir.path()).args(["-v", "hi"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        stderr.push_str(&stderr_of(&output));
    }
    for (name, value, why) in [
        ("X-Credits-Consumed", "lots", "is not a number"),
        ("X-Credits-Consumed", "-3", "is negative"),
        (
            "X-Credits-Consumed",
            "1e300",
            "is not a credible number of credits (more than 1e9)",
        ),
        ("X-Credits-Remaining", "inf", "is not a finite number"),
        ("X-Credits-Consumed", "NaN", "is not a finite number"),
        ("X-Credits-Remaining", "x", "is not a number"),
    ] {
        let said = format!("bnx: credits: {name} \"{value}\" {why}");
        assert!(stderr.contains(&said), "{said}\n{stderr}");
    }
    assert_eq!(
        stderr.matches("; not recorded in the ledger").count(),
        7,
        "{stderr}"
    );
    let ledger = spent(server.bnx(dir.path()));
    assert_eq!(ledger["consumed"]["1h"], 2.25);
    assert_eq!(ledger["remaining"], -1, "a balance may be below zero");
}

#[test]
fn a_budget_shared_by_parallel_processes_overshoots_at_most_the_requests_in_flight() {
    let mock = Mock::start(&[]);
    let outputs = xargs(24, 8, |i| {
        let mut cmd = mock.command();
        cmd.args(["--budget", "10/1h", "--json", &format!("run {i}")]);
        cmd
    });
    let (mut sent, mut refused) = (0, 0);
    for output in &outputs {
        match output.status.code() {
            Some(0) => sent += 1,
            Some(4) => {
                refused += 1;
                let doc = document(output);
                let message = doc["error"]["message"].as_str().unwrap();
                assert!(message.starts_with("credit budget reached: "), "{message}");
                assert!(message.ends_with(" of 10 per 1h"), "{message}");
                assert_eq!(doc["error"]["type"], "budget");
                assert!(doc["bnx"]["budget"]["consumed"].as_f64().unwrap() >= 10.0);
                assert_eq!(doc["bnx"]["attempts"], 0);
            }
            code => panic!("exit {code:?}: {}", stderr_of(output)),
        }
    }
    // Each run checks before it sends: once 10 are counted nothing more is sent, and only the
    // other 7 of the 8 in flight can have passed the check before that.
    assert!((10..=17).contains(&sent), "{sent} sent");
    assert_eq!(sent + refused, 24);
    assert_eq!(
        answered(&mock, sent),
        sent,
        "the mock answered what was sent"
    );
    assert_eq!(spent(mock.bnx())["consumed"]["1h"], json!(sent));
}

#[test]
fn two_machines_on_one_redis_share_one_budget() {
    let Some(redis) = Redis::start() else { return };
    let mock = Mock::start(&[]);
    let machines: Vec<PathBuf> = ["a", "b"].iter().map(|m| mock.dir.path().join(m)).collect();
    let on = |m: usize| {
        let mut cmd = mock.bnx();
        cmd.env("BLUENEXUS_STATE_DIR", &machines[m])
            .env("BLUENEXUS_STORE", &redis.url);
        cmd
    };
    let mut codes = Vec::new();
    for run in 0..8 {
        let output = on(run % 2)
            .args(["--budget", "5/1h", &format!("run {run}")])
            .output()
            .unwrap();
        codes.push(output.status.code().unwrap());
    }
    assert_eq!(
        codes,
        [0, 0, 0, 0, 0, 4, 4, 4],
        "alone, each would have sent 5"
    );
    assert_eq!(answered(&mock, 5), 5);
    for machine in &machines {
        assert!(!credits_dir(machine).exists(), "the ledger is the store's");
    }
    let fleet = spent(on(1));
    assert_eq!(fleet["consumed"]["1h"], 5);
    assert_eq!(fleet["remaining"], 999_995);
    let mut alone = on(0);
    alone.env_remove("BLUENEXUS_STORE");
    assert_eq!(spent(alone)["consumed"]["1h"], 0);
    // Three keys under the digest, none of them without an expiry.
    let mut look = redis.connection();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}*"))
        .query(&mut look)
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (key, what) in keys.iter().zip(["balance", "index", "minutes"]) {
        assert!(key.ends_with(&format!("}}:{what}")), "{key}");
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut look).unwrap();
        assert!(ttl > 31 * DAY as i64, "{key}: {ttl}");
    }
}

#[test]
fn a_store_killed_mid_run_refuses_runs_with_a_limit_and_others_count_locally() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    // Streamed answers of 100 ms each: the batch is still running when the store dies.
    let mock = Mock::start(&["--chunks", "2", "--chunk-delay", "50"]);
    let items: String = (0..30)
        .map(|i| format!("{{\"prompt\": \"item {i}\"}}\n"))
        .collect();
    let file = mock.dir.path().join("items.jsonl");
    fs::write(&file, items).unwrap();
    let machine = mock.dir.path().join("a");
    let batch = mock
        .command()
        .env("BLUENEXUS_STATE_DIR", &machine)
        .env("BLUENEXUS_STORE", &redis.url)
        .arg("--batch")
        .arg(&file)
        .args(["-s", "-j", "2", "--budget", "1000/1d", "--rate-limit", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(mock.requests(4).len() >= 4, "the batch never got going");
    redis.kill();
    let output = batch.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("bnx: error: cannot check the fleet's budget (--budget): the store "),
        "{stderr}"
    );
    let lines = stdout_of(&output).lines().count();
    assert!(lines < 30, "{stderr}");
    assert_eq!(
        answered(&mock, lines),
        lines,
        "every answer has its line, nothing else was sent"
    );
    // A single run with a limit is refused before anything is sent.
    let before = mock.requests(lines).len();
    let limited = mock
        .bnx()
        .env("BLUENEXUS_STORE", &redis.url)
        .args(["--min-credits", "1", "hi"])
        .output()
        .unwrap();
    assert_eq!(limited.status.code(), Some(4));
    assert!(stderr_of(&limited)
        .contains("cannot check the fleet's budget (--min-credits): the store redis://127.0.0.1:"));
    assert!(stderr_of(&limited).contains(" cannot be reached ("));
    // Without a limit: one warning, and the answer is counted on this machine alone.
    let fresh = mock.dir.path().join("b");
    let unlimited = mock
        .bnx()
        .env("BLUENEXUS_STATE_DIR", &fresh)
        .env("BLUENEXUS_STORE", &redis.url)
        .arg("hi")
        .output()
        .unwrap();
    assert_eq!(unlimited.status.code(), Some(0));
    let warning = stderr_of(&unlimited);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("bnx: warning: the store redis://127.0.0.1:")
            && warning.ends_with(
                "; pacing on this machine alone, credits recorded on this machine only\n"
            ),
        "{warning}"
    );
    assert_eq!(mock.requests(before + 1).len(), before + 1);
    let mut local = mock.bnx();
    local.env("BLUENEXUS_STATE_DIR", &fresh);
    assert_eq!(spent(local)["consumed"]["1h"], 1);
}

/// `cmd`, run by a user who cannot write where root could: nobody, when the tests run as root.
fn unprivileged(mut cmd: Command) -> assert_cmd::Command {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(60));
    cmd
}

#[test]
fn a_read_only_state_directory_warns_without_a_limit_and_refuses_with_one() {
    use std::os::unix::fs::PermissionsExt;
    let mock = Mock::start(&[]);
    let top = tempfile::tempdir().unwrap();
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let state = top.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o555)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = mock.command();
        cmd.env("BLUENEXUS_STATE_DIR", &state).args(args);
        unprivileged(cmd)
    };
    run(&["--rate-limit", "0", "hi"])
        .assert()
        .success()
        .stdout("[turn 1] hi\n")
        .stderr(
            predicate::str::contains("bnx: warning: the credit ledger cannot be used (").count(1),
        )
        .stderr(predicate::str::contains("; credits are not recorded\n"));
    for (limit, named) in [
        (["--budget", "100/1d"], "--budget"),
        (["--min-credits", "1"], "--min-credits"),
    ] {
        let output = run(&[limit[0], limit[1], "--json", "hi"]).output().unwrap();
        assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
        let doc = document(&output);
        assert_eq!(doc["error"]["type"], "budget");
        let message = doc["error"]["message"].as_str().unwrap();
        let expected = format!("cannot check {named}: the credit ledger cannot be used (");
        assert!(message.starts_with(&expected), "{message}");
    }
    assert_eq!(
        mock.requests(1).len(),
        1,
        "only the run without a limit sent"
    );
    assert!(fs::read_dir(&state).unwrap().next().is_none());
}

#[test]
fn a_damaged_ledger_is_never_replaced_and_refuses_runs_with_a_limit() {
    let mock = Mock::start(&[]);
    let path = book_of(&mock);
    let shown = path.display().to_string();
    let mut bytes = fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    fs::write(&path, &bytes).unwrap();
    mock.bnx().arg("hi").assert().success().stderr(format!(
        "bnx: warning: the credit ledger {shown} is damaged (its checksum does not match: it \
         was cut short or edited); credits are not recorded until it is removed\n"
    ));
    let output = mock
        .bnx()
        .args(["--budget", "100/1d", "--json", "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        stderr_of(&output),
        format!(
            "bnx: error: cannot check --budget: the credit ledger {shown} is damaged (its \
             checksum does not match: it was cut short or edited)\nhint: removing {shown} \
             starts a new ledger, which forgets the credits consumed so far in the period\n"
        )
    );
    assert_eq!(document(&output)["error"]["type"], "budget");
    let output = mock.bnx().args(["--spent", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(65));
    assert!(document(&output)["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&shown));
    assert_eq!(fs::read(&path).unwrap(), bytes, "never replaced");
    assert_eq!(
        answered(&mock, 2),
        2,
        "the first run and the one without a limit"
    );
    // A link standing in its place is not followed, nor written through.
    let elsewhere = mock.dir.path().join("elsewhere");
    fs::write(&elsewhere, "mine").unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    mock.bnx()
        .args(["--budget", "100/1d", "hi"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "is damaged (it is a symbolic link)",
        ));
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "mine");
    // Removed, it starts again from nothing.
    fs::remove_file(&path).unwrap();
    mock.bnx()
        .args(["--budget", "100/1d", "hi"])
        .assert()
        .success()
        .stderr("");
    assert_eq!(spent(mock.bnx())["consumed"]["1h"], 1);
}

#[test]
fn a_clock_set_back_or_forward_lifts_no_budget() {
    let mock = Mock::start(&[]);
    let path = book_of(&mock);
    let now = now_ms();
    let budget = |expected: i32| {
        let output = mock
            .bnx()
            .args(["--budget", "5/1h", "hi"])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{}",
            stderr_of(&output)
        );
        stderr_of(&output)
    };
    // Written two hours "from now", in another boot: the clock was set back since.
    let ahead = Book {
        minutes: vec![(minute_of(now + 2 * HOUR), 5.0)],
        balance: None,
        written: now + 2 * HOUR,
        boot: None,
    };
    fs::write(&path, ahead.encode()).unwrap();
    assert!(budget(4).contains("credit budget reached: 5 of 5 per 1h"));
    assert_eq!(spent(mock.bnx())["consumed"]["1h"], 5, "counted as now's");
    let Some(this_boot) = boot() else {
        return; // no boot clock on this system: the wall clock is all there is
    };
    // Written two days ago by the wall clock, a minute ago by the boot clock: the wall clock
    // was set forward two days since. The minute is a minute old, not two days.
    let behind = |id| Book {
        minutes: vec![(minute_of(now - 2 * DAY), 5.0)],
        balance: None,
        written: now - 2 * DAY,
        boot: Some(Boot {
            id,
            clock: this_boot.clock.saturating_sub(MINUTE),
        }),
    };
    fs::write(&path, behind(this_boot.id).encode()).unwrap();
    budget(4);
    // The same book from another boot: only the wall clock is known, and two days have passed.
    fs::write(&path, behind([9; 16]).encode()).unwrap();
    budget(0);
}

#[test]
fn spent_reads_an_empty_and_a_full_ledger_sending_nothing() {
    let mock = Mock::start(&[]);
    mock.bnx().arg("--spent").assert().success().stdout(format!(
        "credits consumed for {}\n  last hour     0\n  last day      0\n  last 7 days   0\n  \
         last 30 days  0\nlast balance    none seen yet\n",
        mock.url
    ));
    assert_eq!(
        spent(mock.bnx()),
        json!({"origin": mock.url, "consumed": {"1h": 0, "1d": 0, "7d": 0, "30d": 0},
               "remaining": null, "remaining_at": null, "budget": null})
    );
    let mut with_budget = mock.bnx();
    with_budget.env("BLUENEXUS_BUDGET", "5/7d");
    assert_eq!(
        spent(with_budget)["budget"],
        json!({"limit": 5, "period_s": 604_800, "consumed": 0})
    );
    mock.assert_no_requests();
    assert!(
        !credits_dir(&state_of(&mock)).exists(),
        "--spent writes nothing"
    );

    let path = book_of(&mock);
    let seen = now_ms() - 5 * MINUTE;
    let full = book_now(
        &[
            (30 * MINUTE, 1.0),
            (12 * HOUR, 2.0),
            (3 * DAY, 4.0),
            (20 * DAY, 8.0),
            (40 * DAY, 16.0),
        ],
        Some(Balance {
            credits: 123.5,
            at: seen,
        }),
    );
    fs::write(&path, full.encode()).unwrap();
    let seen = rfc3339(UNIX_EPOCH + Duration::from_millis(seen));
    mock.bnx()
        .args(["--spent", "--budget", "2.5/1d"])
        .assert()
        .success()
        .stdout(format!(
            "credits consumed for {}\n  last hour     1\n  last day      3\n  last 7 days   7\n  \
             last 30 days  15\nlast balance    123.5 credits, seen {seen}\nbudget          3 of \
             2.5 per 1d\n",
            mock.url
        ));
    let mut cmd = mock.bnx();
    cmd.args(["--budget", "2.5/1d"]);
    assert_eq!(
        spent(cmd),
        json!({"origin": mock.url, "consumed": {"1h": 1, "1d": 3, "7d": 7, "30d": 15},
               "remaining": 123.5, "remaining_at": seen,
               "budget": {"limit": 2.5, "period_s": 86_400, "consumed": 3}})
    );
    assert_eq!(answered(&mock, 1), 1, "only book_of's run");
}

#[test]
fn the_token_is_in_no_ledger_file_name_content_or_key() {
    let Some(redis) = Redis::start() else { return };
    let secret = "tok-LEDGER-SECRET-314159";
    let mock = Mock::start(&["--token", secret]);
    let state = mock.dir.path().join("machine");
    for store in [None, Some(&redis.url)] {
        let mut cmd = mock.bnx();
        cmd.env("BLUENEXUS_TOKEN", secret)
            .env("BLUENEXUS_STATE_DIR", &state)
            .args(["--budget", "50/1d", "--min-credits", "1", "hi"]);
        if let Some(url) = store {
            cmd.env("BLUENEXUS_STORE", url);
        }
        cmd.assert().success();
        let mut spent = mock.bnx();
        spent
            .env("BLUENEXUS_TOKEN", secret)
            .env("BLUENEXUS_STATE_DIR", &state);
        if let Some(url) = store {
            spent.env("BLUENEXUS_STORE", url);
        }
        let output = spent.arg("--spent").output().unwrap();
        assert!(!all_of(&output).contains("314159"), "{}", all_of(&output));
    }
    let parts = [secret, "SECRET", "314159"];
    let files = walk(&credits_dir(&state));
    assert!(!files.is_empty());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let content = String::from_utf8_lossy(&fs::read(&file).unwrap()).into_owned();
        for part in parts {
            assert!(!name.contains(part) && !content.contains(part), "{name}");
        }
    }
    let mut look = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut look).unwrap();
    assert!(keys.iter().any(|k| k.starts_with(PREFIX)), "{keys:?}");
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut look).unwrap();
        let dump = String::from_utf8_lossy(&dump);
        for part in parts {
            assert!(!key.contains(part) && !dump.contains(part), "{key}");
        }
    }
}

#[test]
fn bad_budgets_are_usage_errors_from_the_flag_and_configuration_errors_from_the_env() {
    let mock = Mock::start(&[]);
    for bad in ["lots", "-1", "5/59", "5/32d", "5/1.5h", "", "1e400"] {
        mock.bnx()
            .args(["--budget", bad, "hi"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("'--budget <N[/PERIOD]>'"));
    }
    for flag in [["--min-credits", "-1"], ["--min-credits", "lots"]] {
        mock.bnx().args(flag).arg("hi").assert().code(2);
    }
    for bad in ["lots", "5/1w", "off/1d"] {
        mock.bnx()
            .env("BLUENEXUS_BUDGET", bad)
            .arg("hi")
            .assert()
            .code(78)
            .stderr(predicate::str::starts_with(
                "bnx: error: BLUENEXUS_BUDGET: ",
            ));
    }
    mock.bnx()
        .env("BLUENEXUS_BUDGET", "0")
        .arg("hi")
        .assert()
        .code(4)
        .stderr(
            "bnx: error: credit budget reached: 0 of 0 per 1d\nhint: --budget 0 refuses every \
             request: raise it, or turn a budget set in the environment off with --budget off\n",
        );
    mock.assert_no_requests();
    mock.bnx()
        .env("BLUENEXUS_BUDGET", "0")
        .args(["--budget", "off", "hi"])
        .assert()
        .success();
}

#[test]
fn min_credits_holds_every_single_request_from_the_last_balance_seen() {
    let mock = Mock::start(&["--credits", "10"]);
    let floor = |prompt: &str| {
        mock.bnx()
            .args(["--min-credits", "9", prompt])
            .output()
            .unwrap()
    };
    assert_eq!(floor("no balance seen: sent").status.code(), Some(0));
    assert_eq!(floor("9 left, not below 9: sent").status.code(), Some(0));
    let refused = floor("8 left: refused");
    assert_eq!(refused.status.code(), Some(4));
    assert_eq!(
        stderr_of(&refused),
        "bnx: error: 8 credits remain, below --min-credits 9\nhint: add credits to the \
         account, or lower --min-credits\n"
    );
    let json = mock
        .bnx()
        .args(["--min-credits", "8.5", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(4));
    assert_eq!(
        document(&json)["error"],
        json!({"message": "8 credits remain, below --min-credits 8.5", "type": "budget"})
    );
    assert_eq!(answered(&mock, 2), 2);
    mock.bnx()
        .args(["--min-credits", "8", "y"])
        .assert()
        .success();
}

#[test]
fn a_budget_reached_says_when_it_frees_and_the_bnx_object_counts_after_each_answer() {
    let mock = Mock::start(&[]);
    let run = |args: &[&str]| {
        mock.bnx()
            .args(["--budget", "2/1h"])
            .args(args)
            .output()
            .unwrap()
    };
    let first = run(&["-v", "one"]);
    assert!(
        stderr_of(&first).contains("bnx: credits: 1 consumed, 1 of 2 per 1h\n"),
        "{}",
        stderr_of(&first)
    );
    let second = run(&["--json", "two"]);
    assert_eq!(
        document(&second)["bnx"]["budget"],
        json!({"limit": 2, "period_s": 3600, "consumed": 2})
    );
    let refused = run(&["--json", "three"]);
    assert_eq!(refused.status.code(), Some(4));
    let doc = document(&refused);
    assert_eq!(
        doc["error"],
        json!({"message": "credit budget reached: 2 of 2 per 1h", "type": "budget"})
    );
    assert_eq!(
        doc["bnx"]["budget"],
        json!({"limit": 2, "period_s": 3600, "consumed": 2})
    );
    let retry_after = doc["bnx"]["retry_after"].as_f64().unwrap();
    assert!((3540.0..=3660.0).contains(&retry_after), "{retry_after}");
    assert!(stderr_of(&refused).contains("hint: enough of it frees up in "));
    assert_eq!(answered(&mock, 2), 2);
}

#[test]
fn a_batch_stops_at_the_budget_as_at_max_credits() {
    let mock = Mock::start(&[]);
    let items: String = (0..6)
        .map(|i| format!("{{\"prompt\": \"item {i}\"}}\n"))
        .collect();
    let file = mock.dir.path().join("items.jsonl");
    fs::write(&file, items).unwrap();
    let output = mock
        .bnx()
        .arg("--batch")
        .arg(&file)
        .args(["-j", "1", "--budget", "3/1h"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let lines: Vec<Value> = stdout_of(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "the refused item is not started");
    assert!(lines.iter().all(|l| l["bnx"]["exit_code"] == 0));
    let consumed: Vec<&Value> = lines
        .iter()
        .map(|l| &l["bnx"]["budget"]["consumed"])
        .collect();
    assert_eq!(consumed, [&json!(1), &json!(2), &json!(3)]);
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(
            "bnx: batch: 3 done, 0 failed, 0 skipped (done before), 3 not started; 3 credits \
             consumed\nbnx: error: credit budget reached: 3 of 3 per 1h\nhint: enough of it \
             frees up in "
        ) && stderr.ends_with("; run again then, or raise --budget\n"),
        "{stderr}"
    );
    assert_eq!(answered(&mock, 3), 3);
}

/// The store's rule is `Book::standing`'s: the same answers recorded through the Lua script
/// and through the pure rule, at the server's clock, say the same of every period and budget.
#[test]
fn the_store_runs_the_rule_of_book_standing_on_the_servers_clock() {
    let Some(redis) = Redis::start() else { return };
    let url: StoreUrl = redis.url.parse().unwrap();
    let ledger = RedisLedger::new(Arc::new(bnx::store::Redis::connect(&url)));
    let mut look = redis.connection();
    let server_now = |look: &mut redis::Connection| -> u64 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(look).unwrap();
        secs * 1000 + micros / 1000
    };
    let key = "0".repeat(64);
    let query = |budget: f64| Query {
        periods: [60, 3600, 86_400, 7 * 86_400, 30 * 86_400, 31 * 86_400]
            .map(Duration::from_secs)
            .to_vec(),
        budget: Some(Budget {
            limit: budget,
            period: Duration::from_secs(86_400),
        }),
    };
    // Every answer lands half a minute from the minute's edge that the periods cut at.
    let mut book = Book::default();
    for (step, minutes_ago) in [
        0u64, 1, 2, 59, 60, 61, 600, 1439, 1440, 1441, 9000, 44_000, 44_700,
    ]
    .into_iter()
    .enumerate()
    {
        let now = server_now(&mut look);
        let entry = Entry {
            consumed: Some(0.1 * (step as f64 + 1.0)),
            remaining: Some(1000.0 - step as f64),
            age: Duration::from_millis(minutes_ago * MINUTE + 30_000),
        };
        ledger.record(&key, &entry, &query(1.0)).unwrap();
        book.record(&entry, now);
    }
    for limit in [0.05, 1.0, 2.5, 100.0] {
        let now = server_now(&mut look);
        let theirs = ledger.standing(&key, &query(limit)).unwrap();
        book.settle(now);
        let ours = book.standing(now, &query(limit));
        for (a, b) in theirs.consumed.iter().zip(&ours.consumed) {
            assert!((a - b).abs() < 1e-9, "{theirs:?}\n{ours:?}");
        }
        let (a, b) = (theirs.budget.unwrap(), ours.budget.unwrap());
        assert!((a.consumed - b.consumed).abs() < 1e-9);
        match (a.frees_in, b.frees_in) {
            (Some(a), Some(b)) => assert!(a.abs_diff(b) < Duration::from_secs(1), "{a:?} {b:?}"),
            (a, b) => assert_eq!(a, b, "limit {limit}"),
        }
        assert_eq!(theirs.balance.unwrap().credits, 1000.0);
    }
    // The minutes no period can count were dropped from both.
    let kept: usize = redis::cmd("ZCARD")
        .arg(format!("{PREFIX}{{{key}}}:index"))
        .query(&mut look)
        .unwrap();
    assert_eq!(kept, book.minutes.len());
}
