//! What a pipeline reaches for: files into the prompt (`-f`), an output file replaced only on
//! success (`-o`), the first code block (`-x`), a JSON answer (`--expect-json`),
//! `--fail-on-length`, `-n`; each asserted by the exact bytes on stdout, the files on disk and
//! the exit code.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;

use crate::util::*;

/// The names in `dir`, sorted: a temporary file left behind would show here.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The content of the one user message the mock received.
fn sent_prompt(mock: &Mock) -> String {
    let request = mock.only_request();
    let messages = request["body"]["messages"].as_array().unwrap();
    messages.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn files_go_between_the_prompt_and_stdin_each_in_a_file_block() {
    let mock = Mock::start(&[]);
    let work = mock.dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(work.join("a.txt"), "alpha\n").unwrap();
    fs::write(work.join("b.rs"), "fn b() {}\n\n").unwrap();
    mock.bnx()
        .current_dir(&work)
        .args(["-f", "a.txt", "review", "--file", "b.rs", "these"])
        .write_stdin("from stdin\n")
        .assert()
        .success()
        .stdout(
            "[turn 1] review these\n\n<file name=\"a.txt\">\nalpha\n</file>\n\n\
             <file name=\"b.rs\">\nfn b() {}\n\n</file>\n\nfrom stdin\n",
        )
        .stderr("");
    assert_eq!(
        sent_prompt(&mock),
        "review these\n\n<file name=\"a.txt\">\nalpha\n</file>\n\n\
         <file name=\"b.rs\">\nfn b() {}\n\n</file>\n\nfrom stdin\n"
    );
}

#[test]
fn a_file_can_be_a_pipe() {
    let mock = Mock::start(&[]);
    let output = isolated("bash", mock.dir.path())
        .env("BLUENEXUS_BASE_URL", &mock.url)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .env("BNX", BNX)
        .args([
            "-c",
            r#""$BNX" -f <(printf 'line 1\nline 2\n') "what changed?""#,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let prompt = sent_prompt(&mock);
    let (head, block) = prompt.split_once("\n\n").unwrap();
    assert_eq!(head, "what changed?");
    assert!(block.starts_with("<file name=\"/dev/fd/"), "{block}");
    assert!(block.ends_with("\">\nline 1\nline 2\n</file>"), "{block}");
}

#[test]
fn a_missing_directory_or_binary_file_is_exit_65_naming_it_and_sends_nothing() {
    let mock = Mock::start(&[]);
    let work = mock.dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(work.join("image.png"), b"\x89PNG\r\n\x1a\n\xff").unwrap();
    fs::create_dir(work.join("home")).unwrap();
    for (file, error) in [
        (
            "missing.txt",
            "cannot read file missing.txt: No such file or directory (os error 2)",
        ),
        ("home", "cannot read file home: it is a directory"),
        (
            "image.png",
            "file image.png is not valid UTF-8 (invalid byte at offset 0)",
        ),
    ] {
        mock.bnx()
            .current_dir(&work)
            .args(["-f", file, "describe"])
            .assert()
            .code(65)
            .stdout("")
            .stderr(format!("bnx: error: {error}\n"));
    }
    mock.assert_no_requests();
}

#[test]
fn files_and_stdin_count_together_against_the_64_mib_limit() {
    let mock = Mock::start(&[]);
    // Sparse files: nothing of this size is ever held by the test itself.
    let file = mock.dir.path().join("big.log");
    fs::File::create(&file).unwrap().set_len(40 << 20).unwrap();
    let stdin_file = mock.dir.path().join("stdin.log");
    fs::File::create(&stdin_file)
        .unwrap()
        .set_len(30 << 20)
        .unwrap();
    let output = mock
        .command()
        .arg("-f")
        .arg(&file)
        .arg("summarize")
        .stdin(fs::File::open(&stdin_file).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(
        stderr_of(&output),
        "bnx: error: standard input takes the input (files, stdin and --messages together) \
         past 64 MiB; refusing to send it cut\n"
    );
    mock.assert_no_requests();
}

#[test]
fn output_replaces_the_file_only_on_success_keeping_its_mode() {
    let mock = Mock::start(&["--fault", "500"]);
    let dir = mock.dir.path().join("out");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("today.txt");
    fs::write(&file, "yesterday\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();

    mock.bnx()
        .args(["--retries", "0", "-o"])
        .arg(&file)
        .arg("today")
        .assert()
        .code(69)
        .stdout("");
    assert_eq!(fs::read_to_string(&file).unwrap(), "yesterday\n");
    assert_eq!(listing(&dir), ["today.txt"]);

    mock.bnx()
        .arg("-o")
        .arg(&file)
        .arg("today")
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert_eq!(fs::read_to_string(&file).unwrap(), "[turn 1] today\n");
    assert_eq!(mode(&file), 0o640);
    assert_eq!(listing(&dir), ["today.txt"]);
}

#[test]
fn output_through_a_symlink_writes_its_target_even_a_missing_one() {
    let mock = Mock::start(&[]);
    let dir = mock.dir.path().join("out");
    fs::create_dir(&dir).unwrap();
    // A link to a link to a file not there yet, relative to the link's directory, as `>` takes.
    std::os::unix::fs::symlink("middle.txt", dir.join("latest.txt")).unwrap();
    std::os::unix::fs::symlink("answers/today.txt", dir.join("middle.txt")).unwrap();
    fs::create_dir(dir.join("answers")).unwrap();
    for prompt in ["first", "second"] {
        mock.bnx()
            .arg("-o")
            .arg(dir.join("latest.txt"))
            .arg(prompt)
            .assert()
            .success()
            .stdout("")
            .stderr("");
        let written = fs::read_to_string(dir.join("answers/today.txt")).unwrap();
        assert_eq!(written, format!("[turn 1] {prompt}\n"));
    }
    for link in ["latest.txt", "middle.txt"] {
        assert!(fs::symlink_metadata(dir.join(link))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert_eq!(listing(&dir.join("answers")), ["today.txt"]);
}

#[test]
fn a_read_only_output_file_is_refused_as_the_shell_would() {
    let mock = Mock::start(&[]);
    let file = mock.dir.path().join("kept.txt");
    fs::write(&file, "kept\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o444)).unwrap();
    // Root may write any file, and `>` then succeeds too: the rule is to agree with it.
    let shell_may_write = std::process::Command::new("sh")
        .arg("-c")
        .arg("true >> \"$0\"")
        .arg(&file)
        .status()
        .unwrap()
        .success();
    let output = mock.bnx().arg("-o").arg(&file).arg("hi").output().unwrap();
    if shell_may_write {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        assert_eq!(fs::read_to_string(&file).unwrap(), "[turn 1] hi\n");
    } else {
        assert_eq!(output.status.code(), Some(74), "{}", stderr_of(&output));
        assert!(stderr_of(&output).contains("Permission denied"));
        assert_eq!(fs::read_to_string(&file).unwrap(), "kept\n");
        mock.assert_no_requests();
    }
}

#[test]
fn a_new_output_file_gets_the_umask_and_json_failures_still_reach_stdout() {
    let mock = Mock::start(&["--fault", "503"]);
    let dir = mock.dir.path().join("out");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("answer.json");
    let output = mock
        .command()
        .args(["--retries", "0", "--json", "-o"])
        .arg(&file)
        .arg("hi")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["bnx"]["status"], 503);
    assert!(listing(&dir).is_empty(), "no file, no temporary file");

    let mut cmd = mock.command();
    // SAFETY: umask(2) only, in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o027);
            Ok(())
        });
    }
    let output = cmd
        .args(["--json", "-o"])
        .arg(&file)
        .arg("hi")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout_of(&output), "");
    let doc: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["choices"][0]["message"]["content"], "[turn 1] hi");
    assert_eq!(mode(&file), 0o640, "0666 less the umask 027");
    assert_eq!(listing(&dir), ["answer.json"]);
}

#[test]
fn an_output_file_that_cannot_be_written_fails_before_sending() {
    let mock = Mock::start(&[]);
    let missing = mock.dir.path().join("no/such/dir/out.txt");
    mock.bnx()
        .arg("-o")
        .arg(&missing)
        .arg("hi")
        .assert()
        .code(74)
        .stdout("")
        .stderr(format!(
            "bnx: error: cannot write to {}: No such file or directory (os error 2)\n",
            missing.display()
        ));
    let output = mock
        .bnx()
        .args(["--json", "-o"])
        .arg(&missing)
        .arg("hi")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot write to "),
        "{doc}"
    );
    mock.bnx()
        .arg("-o")
        .arg(mock.dir.path())
        .arg("hi")
        .assert()
        .code(74)
        .stderr(format!(
            "bnx: error: {} is a directory\n",
            mock.dir.path().display()
        ));
    mock.assert_no_requests();
}

#[test]
fn an_output_file_name_as_long_as_the_system_allows_is_written() {
    let mock = Mock::start(&[]);
    let dir = mock.dir.path().join("out");
    fs::create_dir(&dir).unwrap();
    // 254 bytes, within the 255 of NAME_MAX, so `> FILE` can create either: the temporary
    // file's name must not be longer than FILE's own.
    for name in [
        format!("{}.txt", "a".repeat(250)),
        format!("{}.txt", "é".repeat(125)),
    ] {
        let file = dir.join(&name);
        mock.bnx()
            .arg("-o")
            .arg(&file)
            .arg("hi")
            .assert()
            .success()
            .stdout("")
            .stderr("");
        assert!(fs::read_to_string(&file).unwrap().ends_with(" hi\n"));
        assert_eq!(listing(&dir), [name.as_str()]);
        fs::remove_file(&file).unwrap();
    }
}

#[test]
fn ctrl_c_keeps_the_old_output_file_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let file = out.join("report.txt");
    fs::write(&file, "last good report\n").unwrap();
    let args = ["-s".as_ref(), "-o".as_ref(), file.as_os_str(), "x".as_ref()];
    let output = interrupted(dir.path(), &args, || {
        assert_eq!(
            listing(&out),
            ["report.txt"],
            "the temporary file has no name"
        );
    });
    assert_eq!(output.status.signal(), Some(libc::SIGINT));
    assert_eq!(fs::read_to_string(&file).unwrap(), "last good report\n");
    assert_eq!(listing(&out), ["report.txt"]);
}

/// Nothing can clean up after a SIGKILL: the temporary file has no name to leave behind
/// (`O_TMPFILE`), yet it is open in FILE's directory, where the commit renames it.
#[test]
fn a_kill_mid_answer_leaves_the_old_file_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let file = out.join("report.txt");
    fs::write(&file, "last good report\n").unwrap();
    let (origin, received) = silent_server();
    let mut child = isolated(BNX, dir.path())
        .env("BLUENEXUS_BASE_URL", &origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args(["-s", "-o"])
        .arg(&file)
        .arg("x")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    received
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("bnx sent its request");
    let open: Vec<String> = fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    let during = listing(&out);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    let unnamed = format!("{}/#", out.display());
    assert!(
        open.iter()
            .any(|t| t.starts_with(&unnamed) && t.ends_with(" (deleted)")),
        "no unnamed file open in {}: {open:?}",
        out.display()
    );
    assert_eq!(during, ["report.txt"]);
    assert_eq!(fs::read_to_string(&file).unwrap(), "last good report\n");
    assert_eq!(listing(&out), ["report.txt"]);
}

#[test]
fn extract_writes_the_first_fenced_block_exactly() {
    let mock = Mock::start(&[]);
    let prompt = "Run:\n```sh title=x\necho 'hi there'\n  ls\n```\nthen\n~~~\nsecond\n~~~";
    for stream in [false, true] {
        mock.bnx()
            .args(if stream {
                &["-s", "-x"][..]
            } else {
                &["-x"][..]
            })
            .arg(prompt)
            .assert()
            .success()
            .stdout("echo 'hi there'\n  ls\n")
            .stderr("");
    }
    mock.bnx()
        .args(["-x", "prose only, no code"])
        .assert()
        .code(3)
        .stdout("")
        .stderr("bnx: error: the answer holds no fenced code block (-x)\n");
}

#[test]
fn expect_json_writes_the_value_compact_on_one_line_as_written() {
    let origin = answer_server(
        "```json\n{\"b\": 1.50, \"a\": [1e2, true, null],\n \"s\": \"x\\ny \\u00e9\"}\n```\n",
    );
    let dir = tempfile::tempdir().unwrap();
    for stream in [false, true] {
        bnx_in(dir.path())
            .env("BLUENEXUS_BASE_URL", &origin)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(if stream {
                &["-s", "--expect-json"][..]
            } else {
                &["--expect-json"][..]
            })
            .arg("risks as JSON")
            .assert()
            .success()
            .stdout("{\"b\":1.50,\"a\":[1e2,true,null],\"s\":\"x\\ny \\u00e9\"}\n")
            .stderr("");
    }
}

#[test]
fn expect_json_refuses_prose_with_exit_3_and_writes_nothing() {
    let mock = Mock::start(&[]);
    for args in [&["--expect-json"][..], &["-s", "--expect-json"][..]] {
        let output = mock.bnx().args(args).arg("{\"a\": 1}").output().unwrap();
        assert_eq!(output.status.code(), Some(3), "{args:?}");
        assert_eq!(stdout_of(&output), "");
        let stderr = stderr_of(&output);
        assert!(
            stderr.starts_with("bnx: error: the answer is not one JSON value (--expect-json): "),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// A cron mail must show what came instead of JSON: where parsing stopped, and how the answer
/// starts, on one line; an answer that echoes the token shows it masked, and a long token that
/// the 40 characters would cut shows no part of it.
#[test]
fn expect_json_says_where_parsing_stopped_and_how_the_answer_starts() {
    let short = "tok-5f2a9c";
    let long = "tok-0123456789abcdefghijklmnopqrstuvwxyz";
    let mock = Mock::start(&["--token", short, "--token", long]);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", short)
        .args([
            "--expect-json",
            "Sure,",
            "here",
            "it",
            "is:\n\n{\"a\":",
            "1}",
        ])
        .assert()
        .code(3)
        .stdout("")
        .stderr(
            "bnx: error: the answer is not one JSON value (--expect-json): parsing stopped at \
             line 1, column 3 (expected ident); the answer starts \"[turn 1] Sure, here it is: \
             {\"a\": 1}\"\n",
        );
    let output = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", short)
        .args(["--expect-json", "-s", "the", "token", short, "is", "here"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr_of(&output).ends_with("the answer starts \"[turn 1] the token *** is here\"\n"),
        "{}",
        stderr_of(&output)
    );
    let output = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", long)
        .args(["--expect-json", "-s", long, "and", "more"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = stderr_of(&output);
    assert!(
        stderr.ends_with("the answer starts \"[turn 1]\"...\n"),
        "{stderr}"
    );
    for part in long.as_bytes().windows(6) {
        let part = std::str::from_utf8(part).unwrap();
        assert!(
            !stderr.contains(part),
            "{part:?} of the token shown: {stderr}"
        );
    }
}

/// The `-x` recipe of the README and of `--help`, run as written: an answer without a code
/// block is exit 3 and leaves no file (a shell redirect would have left an empty `count.sh`).
#[test]
fn the_extract_recipes_leave_no_file_when_the_answer_holds_no_block() {
    let mock = Mock::start(&[]);
    let help = mock.bnx().arg("--help").output().unwrap();
    let help = stdout_of(&help);
    let readme = include_str!("../../README.md");
    let recipe = |text: &str| -> String {
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with("bnx -x "))
            .expect("a bnx -x recipe");
        line.split('#').next().unwrap().trim().to_string()
    };
    let bin = Path::new(BNX).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (source, line) in [("README", recipe(readme)), ("--help", recipe(&help))] {
        let work = tempfile::tempdir().unwrap();
        let output = isolated("sh", mock.dir.path())
            .current_dir(work.path())
            .env("PATH", &path)
            .env("BLUENEXUS_BASE_URL", &mock.url)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(["-c", &line])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{source}: {line}");
        assert!(
            stderr_of(&output).contains("no fenced code block"),
            "{source}: {}",
            stderr_of(&output)
        );
        assert!(
            listing(work.path()).is_empty(),
            "{source}: {line} left {:?}",
            listing(work.path())
        );
    }
}

#[test]
fn extract_expect_json_and_json_exclude_each_other() {
    let mock = Mock::start(&[]);
    for pair in [
        ["-x", "--json"],
        ["-x", "--expect-json"],
        ["--expect-json", "--json"],
    ] {
        let output = mock.bnx().args(pair).arg("q").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{pair:?}");
        assert!(
            stderr_of(&output).contains("cannot be used with"),
            "{pair:?}"
        );
    }
    mock.assert_no_requests();
}

#[test]
fn fail_on_length_is_exit_3_after_the_text() {
    let mock = Mock::start(&[]);
    for stream in [false, true] {
        mock.bnx()
            .args(if stream { &["-s"][..] } else { &[][..] })
            .args(["--fail-on-length", "--max-tokens", "2", "a long question"])
            .assert()
            .code(3)
            .stdout("[turn 1]\n")
            .stderr("bnx: error: the answer was cut at --max-tokens (--fail-on-length)\n");
    }
    let output = mock
        .bnx()
        .args(["--json", "--fail-on-length", "--max-tokens", "2", "long"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stdout = stdout_of(&output);
    assert_eq!(stdout.lines().count(), 1, "one document: {stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["error"]["type"], "answer");
    mock.bnx()
        .args(["--fail-on-length", "short"])
        .assert()
        .success()
        .stdout("[turn 1] short\n");
}

#[test]
fn output_is_not_replaced_when_the_answer_is_not_what_was_asked() {
    let mock = Mock::start(&[]);
    let file = mock.dir.path().join("kept.txt");
    fs::write(&file, "old\n").unwrap();
    for args in [
        &["--fail-on-length", "--max-tokens", "2", "long question"][..],
        &["-x", "no code"][..],
    ] {
        mock.bnx()
            .arg("-o")
            .arg(&file)
            .args(args)
            .assert()
            .code(3)
            .stdout("");
        assert_eq!(fs::read_to_string(&file).unwrap(), "old\n", "{args:?}");
    }
}

#[test]
fn n_never_reads_stdin_and_refuses_messages_from_it() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-n", "only", "this"])
        .write_stdin("the loop's next line")
        .assert()
        .success()
        .stdout("[turn 1] only this\n");
    mock.bnx()
        .args(["-n", "--messages", "-", "x"])
        .write_stdin("[]")
        .assert()
        .code(2)
        .stdout("")
        .stderr("bnx: error: --messages - reads standard input, which --no-stdin forbids\n");
    assert_eq!(mock.requests(1).len(), 1);
}

#[test]
fn verbose_shows_the_request_body_cut_at_2_kib() {
    let mock = Mock::start(&[]);
    let output = mock.bnx().args(["-v", "hi"]).output().unwrap();
    let stderr = stderr_of(&output);
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    assert!(
        stderr.contains(&format!(
            "bnx: request body ({} bytes): {body}\n",
            body.len()
        )),
        "{stderr}"
    );
    let long = "x".repeat(3000);
    let output = mock.bnx().args(["-v", &long]).output().unwrap();
    let stderr = stderr_of(&output);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("bnx: request body"))
        .unwrap();
    let size = body.len() - "hi".len() + long.len();
    assert!(
        line.starts_with(&format!(
            "bnx: request body ({size} bytes, cut at 2 KiB): {{\"messages\""
        )),
        "{line}"
    );
    assert!(line.ends_with("xxx..."), "{line}");
    assert!(line.len() < 2200, "{}", line.len());
}

#[test]
fn verbose_shows_the_servers_error_body_and_the_403_hint_adds_only_what_to_do() {
    let mock = Mock::start(&["--token", "reader:agents-read"]);
    let output = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", "reader")
        .args(["-v", "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(77));
    let stderr = stderr_of(&output);
    let body_line = stderr
        .lines()
        .find(|l| l.starts_with("bnx: error body ("))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        body_line.contains(r#""type":"permission_error""#),
        "{body_line}"
    );
    let tail: Vec<&str> = stderr.lines().rev().take(2).collect();
    assert_eq!(
        tail,
        [
            "hint: give bnx a token that has one of those scopes",
            "bnx: error: HTTP 403 Forbidden: the token lacks the agents-all or agents-use scope",
        ]
    );
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "reader")
        .arg("hi")
        .assert()
        .code(77)
        .stderr(predicate::str::contains("error body").not());
}

#[test]
fn version_names_the_target_and_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let output = bnx_in(dir.path()).arg("--version").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let version = stdout_of(&output);
    let expected = format!("bnx {} (", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");
    assert!(version.contains(std::env::consts::ARCH), "{version}");
    assert!(version.contains(std::env::consts::OS), "{version}");
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(head) = head.ok().filter(|h| h.status.success()) {
        let commit = String::from_utf8(head.stdout).unwrap();
        assert!(
            version.ends_with(&format!(", commit {})\n", commit.trim())),
            "{version}"
        );
    }
    let short = bnx_in(dir.path()).arg("-V").output().unwrap();
    assert_eq!(
        stdout_of(&short),
        format!("bnx {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// A FIFO (like a device) cannot be replaced without destroying it: `-o` writes into it, as the
/// shell's `>` would, and it is still a FIFO afterwards.
#[test]
fn output_to_a_fifo_writes_into_it_and_leaves_it_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let mock = Mock::start(&[]);
    let fifo = mock.dir.path().join("pipe");
    let reader = read_fifo(&fifo);
    mock.bnx().arg("-o").arg(&fifo).arg("hi").assert().success();
    assert_eq!(reader.join().unwrap(), "[turn 1] hi\n");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}
