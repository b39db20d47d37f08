//! What `bnx` writes: text, streamed text, `--json` documents and lines, `--dry-run`, `-v`,
//! notices, `--help`, and what happens when stdout goes away.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

#[test]
fn streams_text_and_asks_for_sse() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-s", "one", "two", "three"])
        .assert()
        .success()
        .stdout("[turn 1] one two three\n")
        .stderr("");
    let request = mock.only_request();
    assert_eq!(request["headers"]["accept"], "text/event-stream");
    assert_eq!(request["body"]["stream"], true);
}

#[test]
fn json_output_keeps_the_body_and_adds_bnx_metadata() {
    let mock = Mock::start(&[]);
    let output = mock.bnx().args(["--json", "hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = stdout_of(&output);
    assert_eq!(stdout.lines().count(), 1, "one document, one line");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "object", "created", "model", "choices", "usage", "bnx"]
    );
    assert_eq!(doc["object"], "chat.completion");
    assert_eq!(doc["choices"][0]["message"]["content"], "[turn 1] hi");
    let meta = &doc["bnx"];
    assert_eq!(meta["status"], 200);
    assert_eq!(meta["agent"], "default");
    assert_eq!(meta["conversation_id"], "conv-000001");
    assert_eq!(meta["credits_consumed"], 1);
    assert_eq!(meta["credits_remaining"], 999_999);
    assert_eq!(meta["attempts"], 1);
    assert_eq!(meta["asks"], 1);
    assert_eq!(meta["cached"], false);
    assert!(meta["elapsed_ms"].is_u64());
}

#[test]
fn json_stream_is_one_line_per_event_then_metadata() {
    let mock = Mock::start(&[]);
    let output = mock
        .bnx()
        .args(["--json", "-s", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<Value> = stdout_of(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, events) = lines.split_last().unwrap();
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[turn 1] a b");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let meta = &last["bnx"];
    assert_eq!(meta["done"], true);
    assert_eq!(meta["finish_reason"], "stop");
    assert_eq!(meta["status"], 200);
    assert_eq!(meta["credits_consumed"], 1);
}

#[test]
fn json_stream_lines_keep_a_multi_line_events_number_text() {
    let dir = tempfile::tempdir().unwrap();
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\n\
                data:  \"n\": 1.50, \"big\": 123456789012345678901234, \"e\": 1E2, \"s\": \"x  y\"}\n\n\
                data: [DONE]\n\n";
    let reply = http("200 OK", "Content-Type: text/event-stream\r\n", body);
    let server = Scripted::answering(move |_| reply.clone());
    let output = server
        .bnx(dir.path())
        .args(["-s", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0],
        r#"{"choices":[{"delta":{"content":"a"}}],"n":1.50,"big":123456789012345678901234,"e":1E2,"s":"x  y"}"#,
        "one line, compact, as received"
    );
}

#[test]
fn answer_cut_at_max_tokens_is_printed_with_a_notice() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--max-tokens", "2", "a long question"])
        .assert()
        .success()
        .stdout("[turn 1]\n")
        .stderr(predicate::str::contains("cut at --max-tokens"));
    mock.bnx()
        .args(["-s", "-q", "--max-tokens", "2", "a long question"])
        .assert()
        .success()
        .stdout("[turn 1]\n")
        .stderr("");
}

#[test]
fn dry_run_sends_nothing_needs_no_token_and_redacts() {
    let mock = Mock::start(&[]);
    let output = mock
        .bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .args(["--dry-run", "-s", "--conversation", "conv-9", "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let shown: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(shown["method"], "POST");
    assert_eq!(
        shown["url"],
        format!("{}/api/v1/agents/default/chat/completions", mock.url)
    );
    assert_eq!(shown["headers"]["Authorization"], "<no token>");
    assert_eq!(
        stderr_of(&output),
        "bnx: the request would not be sent: no access token\n"
    );
    assert_eq!(
        shown["body"],
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": true, "conversationId": "conv-9"})
    );
    let output = mock.bnx().args(["--dry-run", "hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let shown: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(shown["headers"]["Authorization"], "Bearer ***");
    assert!(!stdout_of(&output).contains(TOKEN));
    assert_eq!(stderr_of(&output), "");
    mock.assert_no_requests();
}

#[test]
fn an_empty_environment_variable_counts_as_unset() {
    let mock = Mock::start(&[]);
    let output = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", "")
        .env("BLUENEXUS_TOKEN_CMD", format!("echo {TOKEN}"))
        .env("BLUENEXUS_AGENT", "")
        .env("BLUENEXUS_RATE_LIMIT", "")
        .env("HTTPS_PROXY", "")
        .arg("hi")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "[turn 1] hi\n");
    assert_eq!(
        mock.only_request()["path"],
        "/api/v1/agents/default/chat/completions"
    );
    let output = mock
        .bnx()
        .env("BLUENEXUS_BASE_URL", "")
        .args(["--dry-run", "hi"])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(
        shown["url"],
        "https://api.bluenexus.ai/api/v1/agents/default/chat/completions"
    );
}

#[test]
fn a_bad_agent_id_is_a_usage_error_as_a_flag_and_a_configuration_error_from_the_environment() {
    let mock = Mock::start(&[]);
    for (agent, why) in [
        ("", "it is empty"),
        ("..", "another path"),
        ("a\u{7}b", "control"),
    ] {
        let output = mock.bnx().args(["-a", agent, "hi"]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{agent:?}");
        assert!(stderr_of(&output).contains(why), "{}", stderr_of(&output));
        let output = mock
            .bnx()
            .env("BLUENEXUS_AGENT", agent)
            .arg("hi")
            .output()
            .unwrap();
        // An empty variable is unset: the default agent.
        let code = if agent.is_empty() { 0 } else { 78 };
        assert_eq!(output.status.code(), Some(code), "{agent:?}");
    }
    assert_eq!(mock.requests(1).len(), 1);
}

#[test]
fn dry_run_runs_no_token_command() {
    let mock = Mock::start(&[]);
    let ran = mock.dir.path().join("ran");
    let command = format!("touch {}; echo {TOKEN}", ran.display());
    for (flag, env) in [
        (Some(command.as_str()), None),
        (None, Some(command.as_str())),
    ] {
        let mut bnx = mock.bnx();
        bnx.env_remove("BLUENEXUS_TOKEN").args(["--dry-run", "hi"]);
        if let Some(command) = flag {
            bnx.args(["--token-cmd", command]);
        }
        if let Some(command) = env {
            bnx.env("BLUENEXUS_TOKEN_CMD", command);
        }
        let output = bnx.output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        let shown: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        assert_eq!(shown["headers"]["Authorization"], "Bearer ***");
        assert_eq!(stderr_of(&output), "");
        assert!(!ran.exists(), "the token command ran");
    }
    // The same command is run when the request is sent.
    let output = mock
        .bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .args(["--token-cmd", &command, "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(ran.exists());
    assert_eq!(mock.requests(1).len(), 1);
}

#[test]
fn verbose_shows_the_exchange_but_never_the_token() {
    let mock = Mock::start(&[]);
    let output = mock.bnx().args(["-v", "hi"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert!(stderr.contains("POST http://"), "{stderr}");
    assert!(stderr.contains("Bearer ***"), "{stderr}");
    assert!(stderr.contains("HTTP 200"), "{stderr}");
    assert!(
        stderr.contains("credits consumed 1, remaining 999999"),
        "{stderr}"
    );
    assert!(stderr.contains("conversation conv-000001"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
    assert_eq!(stdout_of(&output), "[turn 1] hi\n");
}

#[test]
fn a_configuration_failure_document_names_the_agent_from_the_environment() {
    let mock = Mock::start(&[]);
    let output = mock
        .bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .env("BLUENEXUS_AGENT", "ops-bot")
        .args(["--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["bnx"]["agent"], "ops-bot");
    assert_eq!(doc["error"]["type"], "config");
}

#[test]
fn every_write_failure_is_exit_74_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(&[]);
    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let runs: Vec<Command> = vec![
        {
            let mut c = isolated(BNX, dir.path());
            c.args(["--completions", "bash"]);
            c
        },
        {
            let mut c = isolated(BNX, dir.path());
            c.arg("--help");
            c
        },
        {
            let mut c = mock.command();
            c.arg("x");
            c
        },
        {
            let mut c = mock.command();
            c.args(["-s", "x"]);
            c
        },
    ];
    for mut cmd in runs {
        let output = cmd
            .stdin(Stdio::null())
            .stdout(full())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(74), "{cmd:?}: {stderr}");
        assert!(
            stderr.starts_with("bnx: error: cannot write to standard output"),
            "{stderr}"
        );
        assert_clean_stderr(&stderr);
    }
}

#[test]
fn closed_stdout_is_a_quiet_exit_0() {
    let mock = Mock::start(&["--answer-size", "4000000", "--chunks", "4000"]);
    for stream in [false, true] {
        let mut child = mock
            .command()
            .args(if stream { vec!["-s", "x"] } else { vec!["x"] })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "stream={stream}");
        assert_eq!(stderr_of(&output), "", "stream={stream}");
    }
}

#[test]
fn help_lists_options_environment_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let output = bnx_in(dir.path()).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = stdout_of(&output);
    for needle in [
        "--agent",
        "--base-url",
        "--token-file",
        "--token-cmd",
        "--stream",
        "--json",
        "--temperature",
        "--max-tokens",
        "--conversation",
        "--continue",
        "--timeout",
        "--connect-timeout",
        "--retries",
        "--max-retry-wait",
        "-n, --no-stdin",
        "-f, --file <PATH>",
        "-o, --output <FILE>",
        "-x, --extract",
        "--expect-json",
        "--fail-on-length",
        "--messages",
        "--system",
        "--dry-run",
        "--quiet",
        "--verbose",
        "--completions",
        "--rate-limit",
        "--rate-store",
        "--batch",
        "-j, --jobs",
        "--max-credits",
        "--min-credits",
        "BLUENEXUS_TOKEN",
        "BLUENEXUS_TOKEN_CMD",
        "BLUENEXUS_AGENT",
        "BLUENEXUS_BASE_URL",
        "BLUENEXUS_RATE_LIMIT",
        "BLUENEXUS_RATE_STORE",
        "HTTPS_PROXY",
        "Batches:",
        "Exit codes:",
        "  75  rate limited",
        "  78  configuration error",
        "Examples:",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    // Every section an option's text points to is in --help itself: `--batch` once sent
    // readers to a "Batches" section that did not exist.
    for pointer in help.split("see \"").skip(1) {
        let section = pointer.split('"').next().unwrap();
        assert!(
            help.contains(&format!("\n{section}:\n")),
            "--help points to a section {section:?} it does not have"
        );
    }
}

#[test]
fn a_server_error_of_any_shape_has_a_message_in_json() {
    let dir = tempfile::tempdir().unwrap();
    for (body, message) in [
        (
            r#"{"error": "quota gone"}"#,
            "HTTP 400 Bad Request: quota gone",
        ),
        (
            r#"{"error": "bad_request", "message": "field x is wrong"}"#,
            "HTTP 400 Bad Request: bad_request: field x is wrong",
        ),
        (
            r#"{"message": "Forbidden"}"#,
            "HTTP 400 Bad Request: Forbidden",
        ),
        (r#"{"error": {"code": 7}}"#, "HTTP 400 Bad Request"),
    ] {
        let server = Scripted::answering(move |_| {
            http(
                "400 Bad Request",
                "Content-Type: application/json\r\n",
                body,
            )
        });
        let output = server
            .bnx(dir.path())
            .args(["--json", "x"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{body}");
        let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        assert_eq!(doc["error"]["message"], message, "{body}: {doc}");
        assert_eq!(
            stderr_of(&output).lines().next().unwrap(),
            format!("bnx: error: {message}")
        );
    }
}

#[test]
fn usage_errors_write_the_json_document_when_json_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--json", "--no-such-flag", "x"],
        vec!["--temperature", "3", "--json", "x"],
        vec!["--json", "-c", "--conversation", "a", "x"],
    ] {
        let output = bnx_in(dir.path()).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        assert_eq!(doc["error"]["type"], "usage", "{args:?}");
        assert!(doc["error"]["message"].is_string());
        assert!(doc["bnx"].is_object());
        let stderr = stderr_of(&output);
        assert!(stderr.starts_with("bnx: error: "), "{stderr}");
        assert!(stderr.lines().count() <= 2, "{stderr}");
        assert!(
            stderr.lines().skip(1).all(|l| l.starts_with("hint: ")),
            "{stderr}"
        );
    }
    let plain = bnx_in(dir.path())
        .args(["--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!((plain.status.code(), plain.stdout.len()), (Some(2), 0));
    let after_dashes = bnx_in(dir.path())
        .args(["--no-such-flag", "--", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        after_dashes.stdout.len(),
        0,
        "--json after -- is a prompt word"
    );
    bnx_in(dir.path())
        .args(["--json", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: bnx"));
    bnx_in(dir.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("bnx "));
}

#[test]
fn an_answer_of_tool_calls_writes_nothing_and_says_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|_| {
        json_answer(
            r#"{"role": "assistant", "content": null, "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}"#,
        )
    });
    server
        .bnx(dir.path())
        .arg("x")
        .assert()
        .success()
        .stdout("")
        .stderr("bnx: the answer has no text: it holds 2 tool calls\n");
    for asked in ["-x", "--expect-json"] {
        server
            .bnx(dir.path())
            .args([asked, "x"])
            .assert()
            .code(3)
            .stdout("");
    }
    let streamed = streaming(&[
        r#"{"choices":[{"delta":{"role":"assistant","content":null}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f"}}]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
        r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        "[DONE]",
    ]);
    assert_streamed(
        &streamed,
        dir.path(),
        "",
        "bnx: the answer has no text: it holds 1 tool call\n",
    );
    streamed
        .bnx(dir.path())
        .args(["-s", "-x", "x"])
        .assert()
        .code(3)
        .stdout("");
}

/// A server that streams `events` in answer to every request.
fn streaming(events: &'static [&'static str]) -> Scripted {
    Scripted::answering(move |_| sse(events))
}

/// `bnx -s` against `server` succeeds, writing `stdout` and `stderr`.
fn assert_streamed(server: &Scripted, dir: &Path, stdout: &str, stderr: &str) {
    server
        .bnx(dir)
        .args(["-s", "x"])
        .assert()
        .success()
        .stdout(stdout.to_string())
        .stderr(stderr.to_string());
}

#[test]
fn content_as_an_array_of_parts_is_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|_| {
        json_answer(
            r#"{"role": "assistant", "content": [{"type": "text", "text": "Hel"},
                {"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "lo"}]}"#,
        )
    });
    server
        .bnx(dir.path())
        .arg("x")
        .assert()
        .success()
        .stdout("Hello\n");
    let streamed = streaming(&[
        r#"{"choices":[{"delta":{"content":[{"type":"text","text":"Str"}]}}]}"#,
        r#"{"choices":[{"delta":{"content":[{"type":"text","text":"eamed"}]}}]}"#,
        "[DONE]",
    ]);
    assert_streamed(&streamed, dir.path(), "Streamed\n", "");
}

#[test]
fn an_empty_sse_data_event_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let server = streaming(&[
        r#"{"choices":[{"delta":{"content":"a"}}]}"#,
        "",
        r#"{"choices":[{"delta":{"content":"b"}}]}"#,
        "[DONE]",
    ]);
    assert_streamed(&server, dir.path(), "ab\n", "");
    let lines = server
        .bnx(dir.path())
        .args(["-s", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(lines.status.code(), Some(0));
    assert_eq!(
        stdout_of(&lines).lines().count(),
        3,
        "two chunks and the bnx line"
    );
}

/// Runs that share one stderr (`xargs -P`, a CI log) never cut into each other's lines: each
/// line goes out in one write, and an error with its hint in one, so the hint stays under its
/// error. Eight batches at once, half of them with a refused token, all writing `-v` lines.
#[test]
fn parallel_runs_sharing_stderr_never_cut_into_each_others_lines() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    let items = mock.dir.path().join("items.jsonl");
    let text: String = (0..60)
        .map(|i| format!("{{\"prompt\": \"p{i}\"}}\n"))
        .collect();
    fs::write(&items, text).unwrap();
    let output = isolated("sh", mock.dir.path())
        .env("BLUENEXUS_BASE_URL", &mock.url)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .arg("-c")
        .arg(r#"for i in 1 2 3 4; do "$0" "$@" & BLUENEXUS_TOKEN=refused "$0" "$@" & done; wait"#)
        .arg(BNX)
        .args(["-v", "--rate-limit", "0", "--batch"])
        .arg(&items)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    let lines: Vec<&str> = stderr.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "stderr ends with a newline");
    let lines = &lines[..lines.len() - 1];
    for (i, line) in lines.iter().enumerate() {
        let own = line.strip_prefix("bnx: ").or(line.strip_prefix("hint: "));
        assert!(
            own.is_some_and(|rest| !rest.contains("bnx: ") && !rest.contains("hint: ")),
            "line {i} is not one whole line: {line:?}"
        );
        if line.starts_with("hint: ") {
            assert!(
                lines[i - 1].starts_with("bnx: error: "),
                "line {i}, a hint, is not under its error: {:?}",
                &lines[i - 1..=i]
            );
        }
    }
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("bnx: batch: 60 done, 0 failed"), 4, "{stderr}");
    assert_eq!(count("bnx: error: "), 4, "{stderr}");
    assert_eq!(count("hint: "), 4, "{stderr}");
    assert!(count("bnx: HTTP 200") >= 240, "{stderr}");
}
