//! `--cache DURATION` (SPEC 8): an answer paid for once is reused for the same request, in every
//! output mode, without sending anything; only complete answers are stored; damaged entries are
//! misses; the directory is private and holds no token; one flight per question, across
//! processes and batch workers; a fleet shares entries through Redis.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::redis::Redis;
use crate::util::*;

/// `bnx --cache 1h` aimed at `mock`.
fn cached(mock: &Mock) -> assert_cmd::Command {
    let mut cmd = mock.bnx();
    cmd.args(["--cache", "1h"]);
    cmd
}

/// Where `isolated` runs keep the cache: `~/.cache/bluenexus/answers`, no XDG_CACHE_HOME set.
fn answers_of(dir: &Path) -> PathBuf {
    dir.join("home/.cache/bluenexus/answers")
}

/// The entries (not the locks) in an answers directory.
fn entries(answers: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(answers)
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.extension().is_none_or(|ext| ext != "lock"));
    found.sort();
    found
}

/// How many chat requests the mock has answered, all of them logged.
fn sent(mock: &Mock) -> usize {
    mock.settled_requests().len()
}

fn run(cmd: &mut assert_cmd::Command) -> Output {
    cmd.output().unwrap()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&stdout_of(output)).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

/// The key SPEC 8 names: SHA-256 of origin, agent, the token's SHA-256 and the body, NUL-joined.
fn spec_key(origin: &str, agent: &str, token: &str, body: &str) -> String {
    let token = bnx::digest::hex(&[token.as_bytes()]);
    bnx::digest::hex(&[format!("{origin}\0{agent}\0{token}\0{body}").as_bytes()])
}

const HI_BODY: &str = r#"{"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn a_second_ask_is_answered_from_the_cache_sending_nothing() {
    let mock = Mock::start(&[]);
    let first = run(cached(&mock).arg("hi"));
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    assert_eq!(stdout_of(&first), "[turn 1] hi\n");
    let second = run(cached(&mock).args(["-v", "hi"]));
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(stdout_of(&second), "[turn 1] hi\n");
    let said = stderr_of(&second);
    assert!(
        said.contains("bnx: answer from the cache, stored 0s ago"),
        "{said}"
    );
    assert!(!said.contains("POST"), "nothing was sent: {said}");
    assert_eq!(sent(&mock), 1);
    let answers = answers_of(mock.dir.path());
    let key = spec_key(&mock.url, "default", TOKEN, HI_BODY);
    assert_eq!(
        entries(&answers),
        [answers.join(&key)],
        "one entry, named by its key"
    );
    assert!(answers.join(format!("{key}.lock")).is_file());
}

/// Runs `args` twice against `origin` with the cache: the live answer, then the stored one
/// (which `-v` must say is one).
fn twice(dir: &Path, origin: &str, args: &[&str]) -> (Output, Output) {
    let ask = |verbose: bool| {
        let mut cmd = bnx_in(dir);
        cmd.env("BLUENEXUS_BASE_URL", origin)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(["--cache", "1h"])
            .args(verbose.then_some("-v"))
            .args(args);
        let output = cmd.output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr_of(&output)
        );
        output
    };
    let (live, hit) = (ask(false), ask(true));
    assert!(
        stderr_of(&hit).contains("bnx: answer from the cache, stored"),
        "{args:?}: {}",
        stderr_of(&hit)
    );
    (live, hit)
}

fn assert_cached_meta(live: &Value, hit: &Value) {
    assert_eq!(hit["cached"], true);
    assert_eq!(live["cached"], false);
    let at = hit["cached_at"].as_str().unwrap();
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "RFC 3339: {at}"
    );
    for (field, value) in [
        ("asks", json!(0)),
        ("attempts", json!(0)),
        ("credits_consumed", json!(0)),
        ("credits_remaining", Value::Null),
        ("status", json!(200)),
    ] {
        assert_eq!(hit[field], value, "{field}: {hit}");
    }
    assert_eq!(hit["conversation_id"], live["conversation_id"]);
    assert!(live["conversation_id"].is_string());
}

#[test]
fn a_hit_writes_what_the_live_answer_wrote_in_every_output_mode() {
    let mock = Mock::start(&[]);
    let dir = mock.dir.path();
    for args in [&["hi"][..], &["-s", "hi"], &["-o", "-", "there"]] {
        let (live, hit) = twice(dir, &mock.url, args);
        assert_eq!(stdout_of(&live), stdout_of(&hit), "{args:?}");
        assert!(!stdout_of(&hit).is_empty());
    }
    let file = dir.join("answer.txt");
    let (_, _) = twice(dir, &mock.url, &["-o", file.to_str().unwrap(), "to a file"]);
    assert_eq!(fs::read_to_string(&file).unwrap(), "[turn 1] to a file\n");

    let (live, hit) = twice(dir, &mock.url, &["--json", "hi json"]);
    let (mut live, mut hit) = (json_of(&live), json_of(&hit));
    let (live_meta, hit_meta) = (live["bnx"].take(), hit["bnx"].take());
    assert_cached_meta(&live_meta, &hit_meta);
    assert_eq!(live, hit, "the stored body as received");

    let (live, hit) = twice(dir, &mock.url, &["--json", "-s", "hi lines"]);
    let (live, hit) = (stdout_of(&live), stdout_of(&hit));
    let (live_lines, hit_lines): (Vec<&str>, Vec<&str>) =
        (live.lines().collect(), hit.lines().collect());
    assert_eq!(live_lines.len(), hit_lines.len());
    let last = live_lines.len() - 1;
    assert_eq!(
        live_lines[..last],
        hit_lines[..last],
        "the payload lines as received"
    );
    let meta = |line: &str| serde_json::from_str::<Value>(line).unwrap()["bnx"].clone();
    let (live_meta, hit_meta) = (meta(live_lines[last]), meta(hit_lines[last]));
    assert_cached_meta(&live_meta, &hit_meta);
    assert_eq!(hit_meta["done"], true);
    assert_eq!(hit_meta["finish_reason"], live_meta["finish_reason"]);
    assert_eq!(sent(&mock), 6, "each request once");

    let server = answer_server("```json\n{\"a\": [1, 2.50]}\n```\n");
    for (args, written) in [
        (&["-x", "q"][..], "{\"a\": [1, 2.50]}\n"),
        (&["--expect-json", "q"], "{\"a\":[1,2.50]}\n"),
        (&["-s", "-x", "q"], "{\"a\": [1, 2.50]}\n"),
        (&["-s", "--expect-json", "q"], "{\"a\":[1,2.50]}\n"),
    ] {
        let (live, hit) = twice(dir, &server, args);
        assert_eq!(stdout_of(&live), written, "{args:?}");
        assert_eq!(stdout_of(&hit), written, "{args:?}");
    }
}

#[test]
fn every_part_of_the_request_is_part_of_the_key() {
    let mock = Mock::start(&["--token", TOKEN, "--token", "second-token"]);
    let other = Mock::start(&[]);
    cached(&mock).arg("hi").assert().success();
    let variants: &[&[&str]] = &[
        &["hi there"],
        &["--system", "be brief", "hi"],
        &["--temperature", "0.5", "hi"],
        &["--max-tokens", "50", "hi"],
        &["-s", "hi"],
        &["-a", "other-agent", "hi"],
    ];
    for args in variants {
        cached(&mock).args(*args).assert().success();
    }
    cached(&mock)
        .env("BLUENEXUS_TOKEN", "second-token")
        .arg("hi")
        .assert()
        .success();
    assert_eq!(sent(&mock), 1 + variants.len() + 1, "no variant was a hit");
    // The same home, another origin: its own key.
    let mut elsewhere = cached(&mock);
    elsewhere
        .env("BLUENEXUS_BASE_URL", &other.url)
        .arg("hi")
        .assert()
        .success();
    assert_eq!(sent(&other), 1);
    // And each of them is a hit now.
    for args in variants {
        cached(&mock).args(*args).assert().success();
    }
    assert_eq!(sent(&mock), 1 + variants.len() + 1);
}

#[test]
fn a_conversation_is_never_read_from_nor_written_to_the_cache() {
    let mock = Mock::start(&[]);
    let answers = answers_of(mock.dir.path());
    mock.bnx().arg("start one").assert().success();
    for args in [
        &["-c", "more"][..],
        &["-c", "more"],
        &["--conversation", "conv-000001", "more"],
    ] {
        cached(&mock).args(args).assert().success();
    }
    assert_eq!(sent(&mock), 4);
    assert!(entries(&answers).is_empty(), "{:?}", entries(&answers));
    let items = mock.dir.path().join("items.jsonl");
    fs::write(
        &items,
        "{\"prompt\": \"x\", \"conversation\": \"conv-000001\"}\n",
    )
    .unwrap();
    for _ in 0..2 {
        cached(&mock).arg("--batch").arg(&items).assert().success();
    }
    assert_eq!(sent(&mock), 6);
    assert!(entries(&answers).is_empty());
    // -c with nothing saved is a conversation too, though its body names none.
    let fresh = Mock::start(&[]);
    for _ in 0..2 {
        cached(&fresh).args(["-c", "hello"]).assert().success();
    }
    assert_eq!(sent(&fresh), 2);
}

#[test]
fn a_hit_does_not_change_the_saved_conversation() {
    let mock = Mock::start(&[]);
    cached(&mock).arg("hi").assert().success(); // conv-000001, stored
    mock.bnx().arg("other").assert().success(); // conv-000002, saved for -c
    let hit = run(cached(&mock).args(["--json", "hi"]));
    assert_eq!(json_of(&hit)["bnx"]["conversation_id"], "conv-000001");
    let dry = run(mock.bnx().args(["--dry-run", "-c", "next"]));
    assert_eq!(json_of(&dry)["body"]["conversationId"], "conv-000002");
}

#[test]
fn an_entry_older_than_the_duration_is_sent_again_and_refresh_always_sends() {
    let mock = Mock::start(&[]);
    let short = |mock: &Mock| {
        let mut cmd = mock.bnx();
        cmd.args(["--cache", "1s", "--json", "hi"]);
        cmd
    };
    let first = json_of(&run(&mut short(&mock)));
    let stored = Instant::now();
    let again = json_of(&run(&mut short(&mock)));
    if stored.elapsed() < Duration::from_secs(1) {
        assert_eq!(again["bnx"]["cached"], true, "younger than 1s");
    }
    while stored.elapsed() < Duration::from_millis(1100) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let expired = json_of(&run(&mut short(&mock)));
    assert_eq!(expired["bnx"]["cached"], false);
    assert_ne!(
        expired["bnx"]["conversation_id"],
        first["bnx"]["conversation_id"]
    );
    // What it sent replaced the entry: a longer DURATION finds the new one.
    let hit = json_of(&run(cached(&mock).args(["--json", "hi"])));
    assert_eq!(
        hit["bnx"]["conversation_id"],
        expired["bnx"]["conversation_id"]
    );
    let before = sent(&mock);

    let refreshed = json_of(&run(cached(&mock).args(["--refresh", "--json", "hi"])));
    assert_eq!(refreshed["bnx"]["cached"], false);
    assert_eq!(sent(&mock), before + 1);
    let hit = json_of(&run(cached(&mock).args(["--json", "hi"])));
    assert_eq!(
        hit["bnx"]["conversation_id"], refreshed["bnx"]["conversation_id"],
        "--refresh stored its answer"
    );
    assert_eq!(sent(&mock), before + 1);
    // BLUENEXUS_CACHE turns it on as the flag does.
    mock.bnx()
        .env("BLUENEXUS_CACHE", "1h")
        .args(["--refresh", "hi"])
        .assert()
        .success();
    assert_eq!(sent(&mock), before + 2);
}

#[test]
fn bad_durations_and_refresh_alone_are_refused_before_anything_is_sent() {
    let mock = Mock::start(&[]);
    for bad in ["1.5h", "366d", "10w", "-1", "1 h", ""] {
        mock.bnx().args(["--cache", bad, "hi"]).assert().code(2);
        mock.bnx()
            .env("BLUENEXUS_CACHE", bad)
            .arg("hi")
            .assert()
            .code(if bad.is_empty() { 0 } else { 78 });
    }
    mock.bnx()
        .args(["--refresh", "hi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--refresh"));
    mock.bnx()
        .args(["--cache", "off", "--refresh", "hi"])
        .assert()
        .code(2);
    let sent_before = sent(&mock);
    for off in ["0", "off", "0m"] {
        mock.bnx().args(["--cache", off, "hi"]).assert().success();
    }
    mock.bnx()
        .env("BLUENEXUS_CACHE", "off")
        .arg("hi")
        .assert()
        .success();
    assert_eq!(sent(&mock), sent_before + 4, "off is off");
    assert!(
        !answers_of(mock.dir.path()).exists(),
        "no cache directory made"
    );
}

/// Asserts that `args` (expected to exit `code`) stored nothing: the answers directory has no
/// entry, and the same run sends again.
fn assert_not_stored(mock: &Mock, args: &[&str], code: i32) {
    let before = sent(mock);
    for _ in 0..2 {
        let output = run(cached(mock).args(args));
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    assert!(
        entries(&answers_of(mock.dir.path())).is_empty(),
        "{args:?} was stored"
    );
    assert!(
        sent(mock) >= before + 2,
        "{args:?} was answered from the cache"
    );
}

#[test]
fn only_complete_answers_are_stored() {
    for (faults, args, code) in [
        (
            &["--fault", "500", "--fault", "500"][..],
            &["--retries", "0", "hi"][..],
            69,
        ),
        (&["--fault", "402", "--fault", "402"], &["hi"], 4),
        (&["--fault", "cut:1", "--fault", "cut:1"], &["-s", "hi"], 76),
        (
            &["--fault", "malformed", "--fault", "malformed"],
            &["hi"],
            76,
        ),
        (
            &["--fault", "error-event", "--fault", "error-event"],
            &["-s", "hi"],
            1,
        ),
        (&[], &["--max-tokens", "1", "a long enough prompt"], 0),
        (&[], &["-s", "--max-tokens", "1", "a long enough prompt"], 0),
        (&[], &["-x", "no code block here"], 3),
        (&[], &["--expect-json", "not json"], 3),
    ] {
        let mock = Mock::start(faults);
        assert_not_stored(&mock, args, code);
    }
    // Larger than 16 MiB.
    let big = Mock::start(&["--answer-size", "17000000", "--chunks", "2000"]);
    assert_not_stored(&big, &["hi"], 0);
    assert_not_stored(&big, &["-s", "hi"], 0);
    let under = Mock::start(&["--answer-size", "15000000", "--chunks", "2000"]);
    cached(&under).args(["-s", "hi"]).assert().success();
    cached(&under).args(["-s", "hi"]).assert().success();
    assert_eq!(sent(&under), 1, "under 16 MiB is stored");
}

#[test]
fn a_stored_answer_that_does_not_meet_this_runs_contract_is_a_miss() {
    let server_dir = tempfile::tempdir().unwrap();
    let origin = answer_server("plain prose, no block");
    let (live, hit) = twice(server_dir.path(), &origin, &["q"]);
    assert_eq!(stdout_of(&live), stdout_of(&hit));
    // The same body, so the same key: the entry is there, but -x cannot use it.
    let mut extract = bnx_in(server_dir.path());
    extract
        .env("BLUENEXUS_BASE_URL", &origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args(["--cache", "1h", "-v", "-x", "q"]);
    let output = extract.output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(stdout_of(&output).is_empty());
    assert!(
        stderr_of(&output).contains("POST"),
        "it was sent: {}",
        stderr_of(&output)
    );
    assert!(!stderr_of(&output).contains("answer from the cache"));
}

#[test]
fn an_answer_that_echoes_the_token_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let origin = answer_server(&format!("your token is {TOKEN}"));
    for _ in 0..2 {
        let mut cmd = bnx_in(dir.path());
        cmd.env("BLUENEXUS_BASE_URL", &origin)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(["--cache", "1h", "hi"]);
        cmd.assert()
            .success()
            .stdout(predicate::str::contains(TOKEN));
    }
    assert!(entries(&answers_of(dir.path())).is_empty());
    for path in walk(dir.path()) {
        if path.is_file() {
            let bytes = fs::read(&path).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(TOKEN), "{path:?}");
        }
    }
}

#[test]
fn a_damaged_or_foreign_entry_is_a_miss_and_is_replaced() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    cached(&mock).arg("hi").assert().success();
    let answers = answers_of(mock.dir.path());
    let entry = entries(&answers).pop().unwrap();
    let good = fs::read(&entry).unwrap();
    let other = answers.join("elsewhere");
    fs::write(&other, &good).unwrap();
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "truncated",
            Box::new(|| fs::write(&entry, &good[..good.len() - 5]).unwrap()),
        ),
        (
            "garbage",
            Box::new(|| fs::write(&entry, "not an entry at all").unwrap()),
        ),
        ("empty", Box::new(|| fs::write(&entry, "").unwrap())),
        (
            "a flipped byte",
            Box::new(|| {
                let mut bad = good.clone();
                let at = bad.len() - 10;
                bad[at] ^= 1;
                fs::write(&entry, bad).unwrap()
            }),
        ),
        (
            "huge",
            Box::new(|| {
                fs::write(&entry, &good).unwrap();
                fs::File::options()
                    .write(true)
                    .open(&entry)
                    .unwrap()
                    .set_len(40 << 20)
                    .unwrap()
            }),
        ),
        (
            "a symlink to a good entry",
            Box::new(|| std::os::unix::fs::symlink(&other, &entry).unwrap()),
        ),
        (
            "a FIFO",
            Box::new(|| {
                let path = std::ffi::CString::new(entry.to_str().unwrap()).unwrap();
                // SAFETY: a NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
            }),
        ),
        (
            "a directory",
            Box::new(|| fs::create_dir_all(entry.join("inside")).unwrap()),
        ),
    ];
    for (what, damage) in damages {
        let _ = fs::remove_file(&entry);
        damage();
        let before = sent(&mock);
        let output = run(cached(&mock).arg("hi"));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{what}: {}",
            stderr_of(&output)
        );
        assert_eq!(stdout_of(&output), "[turn 1] hi\n", "{what}");
        assert_eq!(sent(&mock), before + 1, "{what} was no miss");
        assert!(
            fs::symlink_metadata(&entry).unwrap().is_file(),
            "{what} was not replaced"
        );
        cached(&mock).arg("hi").assert().success();
        assert_eq!(sent(&mock), before + 1, "{what}: the new entry is used");
    }
}

#[test]
fn the_cache_is_private_and_no_file_name_or_content_holds_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&["--token", TOKEN_ECHOED]);
    let cache_dir = dir.path().join("my-cache");
    let ask = |args: &[&str]| {
        let mut cmd = mock.bnx();
        cmd.env("BLUENEXUS_TOKEN", TOKEN_ECHOED)
            .env("BLUENEXUS_CACHE_DIR", &cache_dir)
            .args(["--cache", "1h"])
            .args(args);
        cmd.assert().success();
    };
    ask(&["hi"]);
    ask(&["-s", "hi"]);
    ask(&["hi"]);
    let answers = cache_dir.join("answers");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir), 0o700);
    assert_eq!(mode(&answers), 0o700);
    let files = walk(&answers);
    assert_eq!(files.len(), 4, "two entries, two locks: {files:?}");
    for path in &files {
        assert_eq!(mode(path), 0o600, "{path:?}");
        let name = path.file_name().unwrap().to_str().unwrap();
        let digest = name.strip_suffix(".lock").unwrap_or(name);
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        let text = String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned();
        for part in [TOKEN_ECHOED, "ECHO/5150", "5150+zz"] {
            assert!(!text.contains(part) && !name.contains(part), "{path:?}");
        }
        if name.ends_with(".lock") {
            assert!(text.is_empty(), "a lock holds nothing");
        }
    }
    assert!(
        !walk(&mock.dir.path().join("home"))
            .iter()
            .any(|p| p.ends_with("answers")),
        "BLUENEXUS_CACHE_DIR was used"
    );
}

#[test]
fn an_unusable_cache_directory_is_one_warning_and_the_request_is_sent() {
    let mock = Mock::start(&[]);
    cached(&mock).arg("hi").assert().success();
    let answers = answers_of(mock.dir.path());
    fs::set_permissions(&answers, fs::Permissions::from_mode(0o755)).unwrap();
    let before = sent(&mock);
    for _ in 0..2 {
        let output = run(cached(&mock).arg("hi"));
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(stdout_of(&output), "[turn 1] hi\n");
        let stderr = stderr_of(&output);
        assert_eq!(stderr.matches("bnx: warning:").count(), 1, "{stderr}");
        assert!(
            stderr.contains("open to group or others (mode 755"),
            "{stderr}"
        );
    }
    assert_eq!(sent(&mock), before + 2, "not used");
    fs::set_permissions(&answers, fs::Permissions::from_mode(0o700)).unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&answers, Some(65534), None).unwrap();
        let output = run(cached(&mock).arg("hi"));
        assert_eq!(output.status.code(), Some(0));
        assert!(
            stderr_of(&output).contains("belongs to another user"),
            "{}",
            stderr_of(&output)
        );
        assert_eq!(sent(&mock), before + 3);
        std::os::unix::fs::chown(&answers, Some(0), None).unwrap();
    } else {
        eprintln!("skipped the other owner's directory: needs root to chown");
    }
    // A cache directory that is a file cannot hold answers either.
    let file = mock.dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let output = run(cached(&mock).env("BLUENEXUS_CACHE_DIR", &file).arg("hi"));
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr_of(&output).contains("warning: the answer cache is not used"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_full_disk_while_storing_loses_nothing_and_leaves_no_temporary_file() {
    let mock = Mock::start(&["--answer-size", "20000"]);
    // A file-size limit makes every write past 1 KiB fail (EFBIG), as a full disk does (ENOSPC);
    // SIGXFSZ is ignored so the write fails instead of killing the run.
    let limited = |args: &str| {
        let mut sh = isolated("sh", mock.dir.path());
        sh.env("BLUENEXUS_BASE_URL", &mock.url)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args([
                "-c",
                &format!("trap '' XFSZ; ulimit -f 2; exec \"$0\" --cache 1h {args}"),
                BNX,
            ])
            .stdin(Stdio::null());
        sh.output().unwrap()
    };
    for args in ["hi", "--json hi", "-s hi"] {
        let output = limited(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args}: {}",
            stderr_of(&output)
        );
        assert!(
            stdout_of(&output).len() > 20000,
            "{args}: the whole answer was written"
        );
        assert!(
            stderr_of(&output).contains("warning: the answer is not cached"),
            "{args}: {}",
            stderr_of(&output)
        );
    }
    let answers = answers_of(mock.dir.path());
    let left: Vec<_> = walk(&answers)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(sent(&mock), 3);
}

#[test]
fn a_kill_while_storing_leaves_the_old_entry_or_the_new_one() {
    let mock = Mock::start(&["--rate-limit", "0", "--answer-size", "8000000"]);
    cached(&mock).arg("hi").assert().success();
    let answers = answers_of(mock.dir.path());
    for delay_ms in [5u64, 15, 30, 60, 100, 150, 250] {
        let mut child = spawn_refresh(&mock);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let output = run(cached(&mock).args(["--json", "hi"]));
        assert_eq!(
            output.status.code(),
            Some(0),
            "after {delay_ms} ms: {}",
            stderr_of(&output)
        );
        let document = json_of(&output);
        assert_eq!(
            document["bnx"]["cached"], true,
            "after a kill at {delay_ms} ms the entry is whole"
        );
        assert!(document["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("[turn 1] hi"));
        let named: Vec<_> = entries(&answers)
            .into_iter()
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(named.len(), 1, "{named:?}");
    }
}

fn spawn_refresh(mock: &Mock) -> Child {
    let mut cmd = mock.command();
    cmd.args(["--cache", "1h", "--refresh", "hi"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

fn spawn(mut cmd: std::process::Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn eight_processes_asking_one_question_send_one_request() {
    // The first answer takes 2 s, so the other seven start while it is in flight.
    let mock = Mock::start(&["--rate-limit", "0", "--fault", "slow:2"]);
    let children: Vec<Child> = (0..8)
        .map(|_| {
            let mut cmd = mock.command();
            cmd.args(["--cache", "1h", "-v", "--json", "one question"]);
            spawn(cmd)
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert_eq!(sent(&mock), 1, "one flight");
    let mut bodies = Vec::new();
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
        let mut document = json_of(output);
        document["bnx"].take();
        bodies.push(document);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer for all"
    );
    let waited = outputs
        .iter()
        .filter(|o| stderr_of(o).contains("waiting for another bnx asking the same thing"))
        .count();
    assert!(waited >= 1, "none waited on the flight");
}

#[test]
fn a_failed_flight_lets_the_next_one_send_and_the_others_wait_for_it() {
    // The first request stalls for 1 s, then its connection closes: a failure well within the
    // others' patience (--timeout 10); the next one sent succeeds.
    let mock = Mock::start(&["--rate-limit", "0", "--fault", "stall:1"]);
    let children: Vec<Child> = (0..4)
        .map(|_| {
            let mut cmd = mock.command();
            cmd.args(["--cache", "1h", "--retries", "0", "--timeout", "10", "q"]);
            spawn(cmd)
        })
        .collect();
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code())
        .collect();
    let requests = mock.settled_requests();
    let answered = requests.iter().filter(|r| r["fault"].is_null()).count();
    assert_eq!(
        answered, 1,
        "one answer for the three after the failure: {requests:#?}"
    );
    assert_eq!(requests.len(), 2);
    let mut codes = codes;
    codes.sort();
    assert_eq!(codes[..3], [Some(0); 3], "{codes:?}");
    assert!(codes[3] != Some(0), "the stalled one failed: {codes:?}");
}

#[test]
fn a_wait_longer_than_the_timeout_sends_with_a_notice_and_a_killed_holder_frees_the_lock() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    cached(&mock).arg("warm up").assert().success();
    let answers = answers_of(mock.dir.path());
    let key = spec_key(&mock.url, "default", TOKEN, HI_BODY);
    let lock = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(answers.join(format!("{key}.lock")))
        .unwrap();
    lock.lock().unwrap();
    let output = run(cached(&mock).args(["--timeout", "1", "hi"]));
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr_of(&output).contains(
            "waited 1s (--timeout) for another bnx asking the same thing; sending it too"
        ),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(sent(&mock), 2);
    drop(lock);

    // A holder killed by SIGKILL holds nothing: the kernel drops its flock.
    let (origin, arrived) = silent_server();
    let mut holder = isolated(BNX, mock.dir.path());
    holder
        .env("BLUENEXUS_BASE_URL", &origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args(["--cache", "1h", "held"]);
    let mut holder = spawn(holder);
    arrived.recv_timeout(Duration::from_secs(10)).unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let held_key = spec_key(
        &origin,
        "default",
        TOKEN,
        r#"{"messages":[{"role":"user","content":"held"}]}"#,
    );
    let lock = fs::File::options()
        .read(true)
        .write(true)
        .open(answers.join(format!("{held_key}.lock")))
        .unwrap();
    assert!(lock.try_lock().is_ok(), "the killed holder's lock is free");
}

#[test]
fn batch_items_use_the_cache_and_duplicates_are_one_flight() {
    let mock = Mock::start(&["--rate-limit", "0", "--chunk-delay", "50"]);
    let items = mock.dir.path().join("items.jsonl");
    let text: String = (0..8)
        .map(|i| format!("{{\"id\": {i}, \"prompt\": \"question {}\"}}\n", i % 3))
        .collect();
    fs::write(&items, text).unwrap();
    let first = run(cached(&mock)
        .args(["--json", "-j", "8", "--batch"])
        .arg(&items));
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    assert_eq!(sent(&mock), 3, "three questions, eight items");
    let lines: Vec<Value> = stdout_of(&first)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    let cached_lines = lines.iter().filter(|l| l["bnx"]["cached"] == true).count();
    assert_eq!(cached_lines, 5);
    for line in &lines {
        let twin = lines
            .iter()
            .find(|l| l["content"] == line["content"] && l["bnx"]["cached"] == false)
            .unwrap();
        assert_eq!(
            line["response"], twin["response"],
            "a hit's response is the body as received"
        );
    }
    assert!(
        stderr_of(&first).contains("; 3 credits consumed, 5 from the cache"),
        "{}",
        stderr_of(&first)
    );
    let again = run(cached(&mock).args(["-j", "2", "--batch"]).arg(&items));
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(sent(&mock), 3);
    assert!(
        stderr_of(&again).contains("8 done, 0 failed"),
        "{}",
        stderr_of(&again)
    );
    assert!(
        stderr_of(&again).contains("; 0 credits consumed, 8 from the cache"),
        "{}",
        stderr_of(&again)
    );
    // Without --cache the summary is as it was.
    let plain = run(mock.bnx().arg("--batch").arg(&items));
    assert!(!stderr_of(&plain).contains("from the cache"));
}

#[test]
fn an_interrupted_batch_rerun_with_the_cache_pays_nothing_twice() {
    let mock = Mock::start(&["--rate-limit", "0", "--chunks", "2", "--chunk-delay", "150"]);
    let items = mock.dir.path().join("items.jsonl");
    let text: String = (0..8)
        .map(|i| format!("{{\"id\": \"item-{i}\", \"prompt\": \"prompt {i}\"}}\n"))
        .collect();
    fs::write(&items, text).unwrap();
    let out = mock.dir.path().join("out.jsonl");
    let mut cmd = mock.command();
    cmd.args(["--cache", "1h", "-s", "-j", "2", "--batch"])
        .arg(&items)
        .arg("-o")
        .arg(&out);
    let mut child = spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&out).unwrap_or_default().lines().count() < 3 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let finished: Vec<String> = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        finished.len() < 8,
        "the kill came too late to test anything"
    );
    // Resumed on another runner: its output file is new, the cache is what it shares.
    let elsewhere = mock.dir.path().join("rerun.jsonl");
    let rerun = run(cached(&mock)
        .args(["-s", "-j", "2", "--batch"])
        .arg(&items)
        .arg("-o")
        .arg(&elsewhere));
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr_of(&rerun));
    let lines: Vec<Value> = fs::read_to_string(&elsewhere)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    for line in &lines {
        let id = line["id"].as_str().unwrap();
        if finished.iter().any(|f| f == id) {
            assert_eq!(line["bnx"]["cached"], true, "{id} finished before: {line}");
        }
    }
    let mut answered = std::collections::BTreeMap::new();
    for request in mock
        .settled_requests()
        .iter()
        .filter(|r| r["status"] == 200)
    {
        let prompt = request["body"]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        *answered.entry(prompt).or_insert(0) += 1;
    }
    for id in &finished {
        let prompt = format!("prompt {}", id.trim_start_matches("item-"));
        assert_eq!(
            answered.get(&prompt),
            Some(&1),
            "{id} was paid for twice: {answered:?}"
        );
    }
    // And a rerun of the first output resumes it, sending nothing at all.
    let before = sent(&mock);
    cached(&mock)
        .args(["-s", "--batch"])
        .arg(&items)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(sent(&mock), before);
}

/// One machine of a fleet: a home (and so a cache) of its own, the shared store.
fn machine(mock: &Mock, name: &str, store: &str) -> assert_cmd::Command {
    let home = mock.dir.path().join(name);
    fs::create_dir_all(&home).unwrap();
    let mut cmd = mock.bnx();
    cmd.env("XDG_CACHE_HOME", &home)
        .env("BLUENEXUS_STORE", store)
        .env("BLUENEXUS_RATE_STORE", store);
    cmd
}

#[test]
fn a_fleet_shares_its_answers_through_redis() {
    let Some(redis) = Redis::start() else { return };
    let mock = Mock::start(&["--rate-limit", "0"]);
    machine(&mock, "a", &redis.url)
        .args(["--cache", "1h", "hi"])
        .assert()
        .success();
    let b = run(machine(&mock, "b", &redis.url).args(["--cache", "1h", "-v", "hi"]));
    assert_eq!(stdout_of(&b), "[turn 1] hi\n");
    assert!(
        stderr_of(&b).contains(&format!("answer from the cache in {}", redis.url)),
        "{}",
        stderr_of(&b)
    );
    assert_eq!(sent(&mock), 1, "machine b reused machine a's answer");
    let key = spec_key(&mock.url, "default", TOKEN, HI_BODY);
    assert!(
        mock.dir
            .path()
            .join("b/bluenexus/answers")
            .join(&key)
            .is_file(),
        "copied into b's cache"
    );
    let mut conn = redis.connection();
    let name = format!("bnx:cache:{{{key}}}");
    let ttl: i64 = redis::cmd("TTL").arg(&name).query(&mut conn).unwrap();
    assert!((30 * 86_400 - 60..=30 * 86_400).contains(&ttl), "{ttl}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    for key in &keys {
        assert!(!key.contains(TOKEN));
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).unwrap();
        if kind == "string" {
            let value: Vec<u8> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
            assert!(!String::from_utf8_lossy(&value).contains(TOKEN), "{key}");
        }
    }
    // DURATION applies to a store's entry by its stored time.
    std::thread::sleep(Duration::from_millis(1100));
    machine(&mock, "c", &redis.url)
        .args(["--cache", "1s", "hi"])
        .assert()
        .success();
    assert_eq!(sent(&mock), 2, "too old for 1s");
    // Over 1 MiB stays on its machine.
    let big = Mock::start(&["--rate-limit", "0", "--answer-size", "1200000"]);
    machine(&big, "a", &redis.url)
        .args(["--cache", "1h", "hi"])
        .assert()
        .success();
    machine(&big, "b", &redis.url)
        .args(["--cache", "1h", "hi"])
        .assert()
        .success();
    machine(&big, "a", &redis.url)
        .args(["--cache", "1h", "hi"])
        .assert()
        .success();
    assert_eq!(
        sent(&big),
        2,
        "b sent its own; a's local copy still served a"
    );
}

#[test]
fn a_store_that_fails_is_one_warning_and_the_local_cache_still_works() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    let gone = "redis://127.0.0.1:1";
    let first = run(machine(&mock, "a", gone).args(["--cache", "1h", "hi"]));
    assert_eq!(first.status.code(), Some(0));
    let stderr = stderr_of(&first);
    // The run's one warning for its store, which names what each of its users falls back to.
    assert_eq!(stderr.matches("warning: the store").count(), 1, "{stderr}");
    assert!(
        stderr.contains("answers cached on this machine alone"),
        "{stderr}"
    );
    let second = run(machine(&mock, "a", gone).args(["--cache", "1h", "hi"]));
    assert_eq!(second.status.code(), Some(0));
    assert!(
        !stderr_of(&second).contains("the store"),
        "a local hit asks no store"
    );
    assert_eq!(sent(&mock), 1);
    let items = mock.dir.path().join("items.jsonl");
    let text: String = (0..6)
        .map(|i| format!("{{\"prompt\": \"p{i}\"}}\n"))
        .collect();
    fs::write(&items, text).unwrap();
    let batch = run(machine(&mock, "a", gone)
        .args(["--cache", "1h", "--batch"])
        .arg(&items));
    assert_eq!(batch.status.code(), Some(0));
    assert_eq!(
        stderr_of(&batch).matches("warning: the store").count(),
        1,
        "{}",
        stderr_of(&batch)
    );
}

#[test]
fn a_hit_takes_no_pacing_slot() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    let paced = |prompt: &str| {
        let mut cmd = cached(&mock);
        cmd.args(["--rate-limit", "1/600", "--max-retry-wait", "0", prompt]);
        cmd
    };
    paced("hi").assert().success();
    for _ in 0..3 {
        paced("hi").assert().success().stdout("[turn 1] hi\n");
    }
    // The one slot is taken: anything sent now is refused, so the hits above sent nothing.
    paced("something new").assert().code(75);
    assert_eq!(sent(&mock), 1);
}
