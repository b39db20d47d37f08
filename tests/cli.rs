//! `bnx` end to end: the real binary against a real `bnx-mock` on 127.0.0.1, asserting stdout,
//! stderr, the exit code and what the server received.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use predicates::prelude::*;
use serde_json::{json, Value};

// ---- success paths and what the server receives -------------------------------------------

#[test]
fn answers_a_prompt_and_sends_what_the_api_expects() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["hello", "world"])
        .assert()
        .success()
        .stdout("[turn 1] hello world\n")
        .stderr("");
    let request = mock.only_request();
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/api/v1/agents/default/chat/completions");
    assert_eq!(request["status"], 200);
    let headers = &request["headers"];
    assert_eq!(headers["authorization"], "Bearer ***");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(
        headers["user-agent"],
        concat!("bnx/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        request["body"],
        json!({"messages": [{"role": "user", "content": "hello world"}]})
    );
}

#[test]
fn prompt_and_stdin_are_joined_instruction_first() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .arg("summarize")
        .write_stdin("line 1\nline 2\n")
        .assert()
        .success();
    let body = &mock.only_request()["body"];
    assert_eq!(
        body["messages"][0]["content"],
        "summarize\n\nline 1\nline 2\n"
    );
}

#[test]
fn stdin_alone_is_the_prompt_and_no_stdin_ignores_it() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .write_stdin("just data")
        .assert()
        .success()
        .stdout("[turn 1] just data\n");
    mock.bnx()
        .args(["--no-stdin", "only", "this"])
        .write_stdin("ignored")
        .assert()
        .success()
        .stdout("[turn 1] only this\n");
    let requests = mock.requests(2);
    assert_eq!(requests[1]["body"]["messages"][0]["content"], "only this");
}

#[test]
fn no_prompt_is_a_usage_error_and_sends_nothing() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .write_stdin(" \n\t\n")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with("bnx: error: no prompt"));
    assert!(mock.requests(0).is_empty());
}

#[test]
fn stdin_that_is_not_utf8_is_exit_65_naming_the_offset() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .arg("x")
        .write_stdin(b"abc\xffdef".to_vec())
        .assert()
        .code(65)
        .stderr(predicate::str::contains("offset 3"));
    assert!(mock.requests(0).is_empty());
}

#[test]
fn system_temperature_max_tokens_reach_the_body() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args([
            "--system",
            "be brief",
            "--temperature",
            "0.5",
            "--max-tokens",
            "100",
            "q",
        ])
        .assert()
        .success();
    assert_eq!(
        mock.only_request()["body"],
        json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}],
               "temperature": 0.5, "max_tokens": 100})
    );
}

#[test]
fn messages_file_is_sent_as_given_with_the_prompt_appended() {
    let mock = Mock::start(&[]);
    let file = mock.dir.path().join("m.json");
    let history = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]);
    fs::write(&file, history.to_string()).unwrap();
    mock.bnx()
        .arg("--messages")
        .arg(&file)
        .arg("next")
        .assert()
        .success()
        .stdout("[turn 1] next\n");
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin(history.to_string())
        .assert()
        .success();
    let requests = mock.requests(2);
    let mut expected = history.as_array().unwrap().clone();
    assert_eq!(
        requests[1]["body"]["messages"],
        Value::Array(expected.clone())
    );
    expected.push(json!({"role": "user", "content": "next"}));
    assert_eq!(requests[0]["body"]["messages"], Value::Array(expected));
}

#[test]
fn invalid_messages_are_exit_65_with_the_position() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin("[{\"role\": \"user\",\n \"content\": }]")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("line 2 column"));
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin(r#"[{"role": "user"}]"#)
        .assert()
        .code(65)
        .stderr(predicate::str::contains(
            "element 0: missing field `content`",
        ));
    assert!(mock.requests(0).is_empty());
}

#[test]
fn agent_is_percent_encoded_into_the_path() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-a", "team/ops bot", "x"])
        .assert()
        .success();
    assert_eq!(
        mock.only_request()["path"],
        "/api/v1/agents/team%2Fops%20bot/chat/completions"
    );
    mock.bnx()
        .env("BLUENEXUS_AGENT", "from-env")
        .arg("x")
        .assert()
        .success();
    assert_eq!(
        mock.requests(2)[1]["path"],
        "/api/v1/agents/from-env/chat/completions"
    );
}

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
    assert_eq!(shown["headers"]["Authorization"], "Bearer ***");
    assert_eq!(
        shown["body"],
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": true, "conversationId": "conv-9"})
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(mock.requests(0).is_empty());
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

// ---- conversations ---------------------------------------------------------------------------

#[test]
fn continue_picks_up_the_last_conversation_of_the_agent() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-c", "first"])
        .assert()
        .success()
        .stdout("[turn 1] first\n")
        .stderr(predicate::str::contains("no saved conversation"));
    mock.bnx()
        .args(["-c", "second"])
        .assert()
        .success()
        .stdout("[turn 2] second\n");
    mock.bnx()
        .args(["-c", "-a", "other", "x"])
        .assert()
        .success()
        .stdout("[turn 1] x\n");
    mock.bnx()
        .args(["-c", "-s", "third"])
        .assert()
        .success()
        .stdout("[turn 3] third\n");
    let requests = mock.requests(4);
    assert_eq!(requests[1]["body"]["conversationId"], "conv-000001");
    assert!(requests[2]["body"].get("conversationId").is_none());
    assert_eq!(requests[3]["body"]["conversationId"], "conv-000001");
    let saved =
        fs::read_to_string(mock.state_dir().join("bluenexus/conversations/default")).unwrap();
    assert_eq!(saved, "conv-000001");
}

#[test]
fn explicit_conversation_and_unknown_conversation() {
    let mock = Mock::start(&[]);
    mock.bnx().arg("first").assert().success();
    mock.bnx()
        .args(["--conversation", "conv-000001", "again"])
        .assert()
        .success()
        .stdout("[turn 2] again\n");
    mock.bnx()
        .args(["--conversation", "conv-nope", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("HTTP 404").and(predicate::str::contains("not found")));
}

#[test]
fn unwritable_state_directory_is_only_a_warning() {
    let mock = Mock::start(&[]);
    let blocker = mock.dir.path().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    mock.bnx()
        .env("XDG_STATE_HOME", &blocker)
        .arg("hi")
        .assert()
        .success()
        .stdout("[turn 1] hi\n")
        .stderr(predicate::str::contains(
            "warning: cannot save the conversation",
        ));
}

// ---- exit codes from real server behaviour -------------------------------------------------

#[test]
fn exit_1_for_a_400_with_the_servers_message() {
    let mock = Mock::start(&[]);
    let output = mock
        .bnx()
        .args(["--json", "--messages", "-"])
        .write_stdin(r#"[{"role": "robot", "content": "x"}]"#)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("bnx: error: HTTP 400 Bad Request: messages[0].role must be"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["error"]["type"], "invalid_request_error");
    assert_eq!(doc["error"]["param"], "messages[0].role");
    assert_eq!(doc["bnx"]["status"], 400);
    assert_eq!(doc["bnx"]["attempts"], 1);
}

#[test]
fn exit_1_for_402_when_credits_run_out() {
    let mock = Mock::start(&["--credits", "1"]);
    mock.bnx().arg("a").assert().success();
    mock.bnx()
        .arg("b")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("HTTP 402"));
}

#[test]
fn exit_1_for_a_redirect_which_is_not_followed() {
    let mock = Mock::start(&["--fault", "redirect:http://127.0.0.1:9/elsewhere"]);
    mock.bnx()
        .arg("x")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "redirected (HTTP 307) to http://127.0.0.1:9/elsewhere",
        ));
    assert_eq!(mock.requests(1).len(), 1);
}

#[test]
fn exit_1_for_an_sse_error_event_after_the_text_that_arrived() {
    let mock = Mock::start(&["--fault", "error-event"]);
    mock.bnx()
        .args(["-s", "alpha", "beta"])
        .assert()
        .code(1)
        .stdout("[turn ")
        .stderr(predicate::str::contains("injected error event"));
}

#[test]
fn exit_2_for_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--no-such-flag", "x"],
        vec!["--temperature", "3", "x"],
        vec!["--max-tokens", "0", "x"],
        vec!["--timeout", "soon", "x"],
        vec!["-c", "--conversation", "a", "x"],
    ] {
        let output = bnx_isolated(dir.path()).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn exit_69_after_retrying_5xx() {
    let mock = Mock::start(&["--fault", "503", "--fault", "500", "--fault", "html"]);
    let output = mock.bnx().args(["--json", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(69));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.matches("retrying in").count(), 2, "{stderr}");
    assert!(
        stderr.contains("bnx: error: HTTP 502 Bad Gateway"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["bnx"]["attempts"], 3);
    assert_eq!(doc["error"]["type"], "http");
    let statuses: Vec<Value> = mock
        .requests(3)
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(500), json!(502)]);
}

#[test]
fn retries_then_succeeds_with_one_notice_per_retry() {
    let mock = Mock::start(&["--fault", "502", "--fault", "429:0"]);
    let output = mock.bnx().args(["--json", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr
        .lines()
        .all(|l| l.starts_with("bnx: HTTP ") && l.contains("retrying in")));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["bnx"]["attempts"], 3);
    mock.bnx().args(["-q", "x"]).assert().success().stderr("");
}

#[test]
fn exit_69_when_the_connection_drops_or_nothing_listens() {
    let mock = Mock::start(&["--fault", "drop", "--fault", "drop"]);
    mock.bnx()
        .args(["--retries", "1", "x"])
        .assert()
        .code(69)
        .stderr(predicate::str::contains("retrying in").count(1));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = mock
        .bnx()
        .env("BLUENEXUS_BASE_URL", url)
        .args(["--retries", "0", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["error"]["type"], "network");
    assert_eq!(doc["bnx"]["status"], Value::Null);
}

#[test]
fn exit_69_on_timeout_streaming_or_not() {
    let mock = Mock::start(&[
        "--fault", "stall:30", "--fault", "stall:30", "--fault", "slow:30",
    ]);
    for args in [vec!["x"], vec!["-s", "x"], vec!["--json", "x"]] {
        let output = mock
            .bnx()
            .args(["--timeout", "0.5", "--retries", "0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(69), "{args:?}");
        assert!(stderr_of(&output).contains("--timeout"), "{args:?}");
        if args[0] == "--json" {
            let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
            assert_eq!(doc["error"]["type"], "timeout");
        }
    }
}

#[test]
fn exit_75_when_rate_limited_after_retries() {
    let mock = Mock::start(&["--fault", "429:0", "--fault", "429:0", "--fault", "429:0"]);
    mock.bnx().arg("x").assert().code(75).stderr(
        predicate::str::contains("HTTP 429 Too Many Requests")
            .and(predicate::str::contains("hint:")),
    );
    assert_eq!(mock.requests(3).len(), 3);
}

#[test]
fn exit_75_at_once_when_retry_after_exceeds_max_retry_wait() {
    let mock = Mock::start(&["--rate-limit", "1"]);
    mock.bnx().arg("a").assert().success();
    let output = mock
        .bnx()
        .args(["--json", "--max-retry-wait", "5", "b"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(75));
    assert!(stderr_of(&output).contains("longer than --max-retry-wait 5s"));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["bnx"]["attempts"], 1);
    assert!(doc["bnx"]["retry_after"].as_f64().unwrap() > 5.0);
    assert_eq!(doc["error"]["type"], "rate_limit_error");
}

#[test]
fn exit_76_for_answers_that_are_not_the_api() {
    let mock = Mock::start(&[
        "--fault",
        "malformed",
        "--fault",
        "malformed",
        "--fault",
        "cut",
    ]);
    mock.bnx()
        .arg("x")
        .assert()
        .code(76)
        .stdout("")
        .stderr(predicate::str::contains("not valid JSON"));
    mock.bnx()
        .args(["-s", "one", "two"])
        .assert()
        .code(76)
        .stdout("[turn ");
    mock.bnx()
        .arg("x")
        .assert()
        .code(76)
        .stderr(predicate::str::contains("before the answer was complete"));
}

#[test]
fn exit_76_for_a_stream_cut_before_done_keeping_what_arrived() {
    let mock = Mock::start(&["--fault", "cut:3", "--fault", "cut:2"]);
    mock.bnx()
        .args(["-s", "one", "two", "three", "four"])
        .assert()
        .code(76)
        .stdout("[turn 1] one ")
        .stderr(predicate::str::contains("ended before [DONE]"));
    let output = mock
        .bnx()
        .args(["-s", "--json", "one", "two", "three"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(76));
    let lines: Vec<Value> = stdout_of(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "role chunk, two pieces, the failure document"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["bnx"]["done"], false);
    assert_eq!(last["error"]["type"], "protocol");
}

#[test]
fn exit_77_for_refused_or_underprivileged_tokens() {
    let mock = Mock::start(&[
        "--token",
        "reader:agents-read",
        "--token",
        "user:agents-use",
    ]);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "wrong")
        .arg("x")
        .assert()
        .code(77)
        .stderr(predicate::str::contains("HTTP 401").and(predicate::str::contains("hint:")));
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "reader")
        .arg("x")
        .assert()
        .code(77)
        .stderr(predicate::str::contains("HTTP 403").and(predicate::str::contains("agents-use")));
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "user")
        .arg("x")
        .assert()
        .success();
}

#[test]
fn exit_78_for_configuration_errors() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .arg("x")
        .assert()
        .code(78)
        .stderr(
            predicate::str::contains("no access token")
                .and(predicate::str::contains("--token-file")),
        );
    mock.bnx()
        .env("BLUENEXUS_BASE_URL", "http://api.example.com")
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("refusing plain http://"));
    let token_file = mock.dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o644)).unwrap();
    mock.bnx()
        .arg("--token-file")
        .arg(&token_file)
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("hint: chmod 600"));
    mock.bnx()
        .args(["--token-cmd", "echo oops >&2; exit 4", "x"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("oops").and(predicate::str::contains("exit status 4")));
    assert!(mock.requests(0).is_empty());
}

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
fn exit_74_when_stdout_cannot_be_written() {
    let mock = Mock::start(&[]);
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = Command::new(BNX)
        .env_clear()
        .env("BLUENEXUS_BASE_URL", &mock.url)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .env("HOME", mock.dir.path().join("home"))
        .arg("x")
        .stdin(Stdio::null())
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    assert!(stderr_of(&output).contains("cannot write to standard output"));
}

#[test]
fn closed_stdout_is_a_quiet_exit_0() {
    let mock = Mock::start(&["--answer-size", "4000000", "--chunks", "4000"]);
    for stream in [false, true] {
        let mut child = Command::new(BNX)
            .env_clear()
            .env("BLUENEXUS_BASE_URL", &mock.url)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .env("HOME", mock.dir.path().join("home"))
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
fn sigint_ends_the_run_as_the_shell_expects() {
    let mock = Mock::start(&["--fault", "stall:30"]);
    let child = Command::new(BNX)
        .env_clear()
        .env("BLUENEXUS_BASE_URL", &mock.url)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .env("HOME", mock.dir.path().join("home"))
        .args(["-s", "x"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    mock.requests(0);
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let code = output
        .status
        .code()
        .or(output.status.signal().map(|s| 128 + s));
    assert_eq!(code, Some(130));
}

// ---- the token stays secret --------------------------------------------------------------------

#[test]
fn the_token_appears_in_no_output_on_any_path() {
    let secret = "tok-S3CRET-9f8e7d6c";
    let mock = Mock::start(&[
        "--token",
        secret,
        "--fault",
        "503",
        "--fault",
        "redirect",
        "--fault",
        "error-event",
        "--fault",
        "malformed",
    ]);
    let runs: Vec<Vec<&str>> = vec![
        vec!["-v", "--json", "x"],
        vec!["-v", "x"],
        vec!["-v", "-s", "--json", "x"],
        vec!["-v", "-s", "x"],
        vec!["-v", "--dry-run", "x"],
        vec!["-v", "--json", "--conversation", "nope", "x"],
        vec!["-v", "--json", "--max-tokens", "1", "x"],
    ];
    for args in runs {
        let output = mock
            .bnx()
            .env("BLUENEXUS_TOKEN", secret)
            .args(&args)
            .output()
            .unwrap();
        let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert!(!all.contains("S3CRET"), "{args:?}: {all}");
        assert!(!all.contains("9f8e7d6c"), "{args:?}: {all}");
        assert_clean_stderr(&stderr_of(&output));
    }
    let wrong = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", "tok-WRONG-123456")
        .args(["-v", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(77));
    assert!(!format!("{wrong:?}").contains("WRONG-123456"));
    let log = fs::read_to_string(mock.dir.path().join("requests.jsonl")).unwrap();
    assert!(!log.contains("S3CRET"));
}

#[test]
fn a_token_that_could_inject_headers_is_refused_before_sending() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "abc\r\nX-Injected: 1")
        .arg("x")
        .assert()
        .code(78)
        .stderr(
            predicate::str::contains("whitespace").and(predicate::str::contains("Injected").not()),
        );
    assert!(mock.requests(0).is_empty());
}

// ---- help ----------------------------------------------------------------------------------------

#[test]
fn help_lists_options_environment_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let output = bnx_isolated(dir.path()).arg("--help").output().unwrap();
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
        "--no-stdin",
        "--messages",
        "--system",
        "--dry-run",
        "--quiet",
        "--verbose",
        "--completions",
        "BLUENEXUS_TOKEN",
        "BLUENEXUS_TOKEN_CMD",
        "BLUENEXUS_AGENT",
        "BLUENEXUS_BASE_URL",
        "HTTPS_PROXY",
        "Exit codes:",
        "  75  rate limited",
        "  78  configuration error",
        "Examples:",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn a_healthy_stream_longer_than_the_timeout_is_never_cut() {
    // Five gaps of 0.4 s: 2 s in all, against a 1.5 s limit on the silence between events.
    let mock = Mock::start(&["--chunks", "5", "--chunk-delay", "400"]);
    mock.bnx()
        .args(["-s", "--timeout", "1.5", "a", "b", "c"])
        .assert()
        .success()
        .stdout("[turn 1] a b c\n");
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
