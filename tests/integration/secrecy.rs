//! The token goes nowhere but to the API host: not into any output or log, not to a proxy that
//! could read it, not to a redirect target. A server that echoes it, plain, JSON-escaped or
//! percent-encoded, in an error, a header, an event or an answer gets it masked as `***`
//! wherever bnx writes what the server sent. Anything that could smuggle a header is refused
//! before a byte is sent.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::util::*;

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
    mock.assert_no_requests();
}

const SECRET: &str = "tok-SECRET-4242";

#[test]
fn an_https_proxy_only_ever_sees_connect_never_the_token() {
    let proxy =
        Scripted::answering(|_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec());
    let dir = tempfile::tempdir().unwrap();
    bnx_in(dir.path())
        .env("BLUENEXUS_TOKEN", SECRET)
        .env("HTTPS_PROXY", &proxy.origin)
        .env("BLUENEXUS_BASE_URL", "https://api.bluenexus.test")
        .args(["--retries", "0", "x"])
        .assert()
        .code(69)
        .stderr(predicate::str::contains("proxy"));
    let seen = proxy.received();
    assert!(
        seen.starts_with("CONNECT api.bluenexus.test:443 HTTP/1.1"),
        "{seen}"
    );
    assert!(!seen.contains("SECRET"), "{seen}");
}

#[test]
fn a_redirect_target_receives_nothing() {
    let elsewhere =
        Scripted::answering(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
    let target = format!(
        "redirect:{}/api/v1/agents/default/chat/completions",
        elsewhere.origin
    );
    let mock = Mock::start(&["--token", SECRET, "--fault", &target]);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", SECRET)
        .args(["-v", "x"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("redirects are not followed")
                .and(predicate::str::contains("SECRET").not()),
        );
    assert_eq!(elsewhere.received(), "");
}

#[test]
fn header_smuggling_agent_ids_and_tokens_are_refused_before_sending() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-a", "bot\r\nX-Evil: 1", "x"])
        .assert()
        .code(2)
        .stdout("");
    mock.bnx()
        .env("BLUENEXUS_AGENT", "bot\r\nX-Evil: 1")
        .arg("x")
        .assert()
        .code(78)
        .stdout("");
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "a\nX-Evil: 1")
        .arg("x")
        .assert()
        .code(78);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "a b")
        .arg("x")
        .assert()
        .code(78);
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .args(["--token-cmd", "printf 'tok-SPACED out'"])
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("SPACED").not());
    mock.assert_no_requests();
}

#[test]
fn a_failing_token_command_never_echoes_what_it_printed() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .args(["--token-cmd", &format!("echo {SECRET}; exit 3"), "x"])
        .assert()
        .code(78)
        .stdout("")
        .stderr(
            predicate::str::contains("exit status 3").and(predicate::str::contains("SECRET").not()),
        );
}

#[test]
fn the_token_never_reaches_the_log_or_any_output_under_faults() {
    let mock = Mock::start(&[
        "--token",
        SECRET,
        "--fault",
        "html",
        "--fault",
        "500",
        "--fault",
        "drop",
        "--fault",
        "cut:1",
        "--fault",
        "malformed",
    ]);
    for args in [
        vec!["-v", "--json", "x"],
        vec!["-v", "-s", "x"],
        vec!["-v", "--json", "-s", "x"],
    ] {
        let output = mock
            .bnx()
            .env("BLUENEXUS_TOKEN", SECRET)
            .args(&args)
            .output()
            .unwrap();
        let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert!(
            !all.contains("SECRET") && !all.contains("4242"),
            "{args:?}: {all}"
        );
    }
    let log = std::fs::read_to_string(mock.dir.path().join("requests.jsonl")).unwrap();
    assert!(!log.contains("SECRET"));
}

/// `bnx -v` with PROMPT and `-f dotenv` (a file holding the token) against `mock`: the line
/// that shows the request body.
fn verbose_request_body(mock: &Mock, token: &str, prompt: &str) -> String {
    let dotenv = mock.dir.path().join("dotenv");
    fs::write(&dotenv, format!("BLUENEXUS_TOKEN={token}\n")).unwrap();
    let output = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", token)
        .args(["-v", "--rate-limit", "0", "-f"])
        .arg(&dotenv)
        .arg(prompt)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stderr
        .lines()
        .find(|line| line.starts_with("bnx: request body ("))
        .unwrap_or_else(|| panic!("no request body in {stderr}"))
        .to_string()
}

#[test]
fn verbose_shows_no_part_of_the_token_wherever_it_cuts_the_request_body() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    // Where the token lies in the body, from a body short enough to be shown whole.
    let whole = verbose_request_body(&mock, TOKEN, "x");
    assert!(!whole.contains("cut at"), "{whole}");
    let shown = whole.split_once("): ").unwrap().1;
    let at = shown.find("BLUENEXUS_TOKEN=***").unwrap() + "BLUENEXUS_TOKEN=".len();
    for inside in 0..=TOKEN.len() {
        // The prompt that puts the 2 KiB cut `inside` bytes into the token.
        let prompt = "x".repeat(1 + 2048 - inside - at);
        let line = verbose_request_body(&mock, TOKEN, &prompt);
        let shown = line
            .strip_suffix("...")
            .unwrap_or_else(|| panic!("{inside}: not cut: {line}"));
        assert!(line.contains("bytes, cut at 2 KiB): "), "{line}");
        for end in 1..=TOKEN.len() {
            assert!(
                !shown.ends_with(&TOKEN[..end]),
                "cut {inside} bytes into the token: ...{}",
                &line[line.len() - 60..]
            );
        }
    }
}

#[test]
fn verbose_masks_the_token_as_the_request_body_escapes_it() {
    let token = r#"tok"S3C\RET/9"#;
    let mock = Mock::start(&["--rate-limit", "0", "--token", token]);
    let line = verbose_request_body(&mock, token, "my token is in the file");
    assert!(line.contains(r#"BLUENEXUS_TOKEN=***\n</file>"#), "{line}");
    assert!(!line.contains("S3C"), "{line}");
}

/// The token, as sent or as a JSON encoder escapes it, in an error body that `-v` shows.
#[test]
fn verbose_never_shows_the_token_a_server_echoes_in_its_error_body() {
    let body = format!(r#"{{"error":{{"message":"bad request","seen":"Bearer {TOKEN}"}}}}"#);
    let reply = http(
        "400 Bad Request",
        "Content-Type: application/json\r\n",
        &body,
    );
    let server = Scripted::replies(vec![vec![Step::Send(reply)]]);
    let dir = tempfile::tempdir().unwrap();
    let output = server.bnx(dir.path()).args(["-v", "hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains(r#""seen":"Bearer ***"}}"#), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    // Escaped: `/` as `\/`, or every character as a `\u` escape.
    let server = Scripted::answering(|request| {
        let (slashes, escapes) = json_escaped(&bearer(request));
        let body =
            format!(r#"{{"error":{{"message":"bad token {slashes}"}},"detail":"{escapes}"}}"#);
        http(
            "401 Unauthorized",
            "Content-Type: application/json\r\n",
            &body,
        )
    });
    for args in [&["-v", "x"][..], &["-v", "--json", "x"]] {
        let output = echoing(&server, dir.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(77), "{}", all_of(&output));
        assert_no_token(&output, &format!("{args:?}"));
        let stderr = stderr_of(&output);
        let body = stderr
            .lines()
            .find_map(|line| line.strip_prefix("bnx: error body ("))
            .unwrap_or_else(|| panic!("no error body in {stderr}"));
        assert!(
            body.ends_with(r#"bytes): {"error":{"message":"bad token ***"},"detail":"***"}"#),
            "{body}"
        );
        assert!(
            !stderr.contains("ECHO") && !stderr.contains(r"\u0074"),
            "{stderr}"
        );
    }
}

/// `TOKEN_ECHOED` percent-encoded, as a server may quote it in a URL.
const TOKEN_ENCODED: &str = "tok%2DECHO%2F5150%2Bzz";

/// `bnx` aimed at `server` with `TOKEN_ECHOED`, running in `dir`.
fn echoing(server: &Scripted, dir: &Path) -> assert_cmd::Command {
    let mut cmd = server.bnx(dir);
    cmd.env("BLUENEXUS_TOKEN", TOKEN_ECHOED);
    cmd
}

/// `bnx --batch` of one item, `{"id": "a", "prompt": "x"}`, with `args`, against `server`.
fn one_item_batch(server: &Scripted, dir: &Path, args: &[&str]) -> Output {
    let items = dir.join("items.jsonl");
    fs::write(&items, "{\"id\": \"a\", \"prompt\": \"x\"}\n").unwrap();
    echoing(server, dir)
        .args(args)
        .arg("--batch")
        .arg(&items)
        .output()
        .unwrap()
}

/// The token the request carried, as an echoing server would quote it.
fn bearer(request: &Request) -> String {
    request
        .header("authorization")
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_string()
}

fn assert_no_token(output: &Output, what: &str) {
    let all = all_of(output);
    for leak in [TOKEN_ECHOED, TOKEN_ENCODED, "ECHO/5150", "ECHO%2F5150"] {
        assert!(!all.contains(leak), "{what}: {leak} leaked in {all}");
    }
    assert!(all.contains("***"), "{what}: nothing was masked in {all}");
    assert_clean_stderr(&stderr_of(output));
}

#[test]
fn a_server_echoing_the_token_gets_it_masked_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Scripted, i32, Vec<&[&str]>)> = vec![
        (
            "401 quoting the Bearer header",
            Scripted::answering(|request| {
                let body = json!({"error": {"message": format!("invalid token: Bearer {}", bearer(request)),
                                            "type": "authentication_error"}});
                http(
                    "401 Unauthorized",
                    "Content-Type: application/json\r\n",
                    &body.to_string(),
                )
            }),
            77,
            vec![&["x"], &["--json", "x"], &["-v", "--json", "-s", "x"]],
        ),
        (
            "400 body with a bare string error",
            Scripted::answering(|request| {
                let body = json!({"error": format!("no such key {}", bearer(request))});
                http(
                    "400 Bad Request",
                    "Content-Type: application/json\r\n",
                    &body.to_string(),
                )
            }),
            1,
            vec![&["x"], &["--json", "x"], &["-v", "--json", "-s", "x"]],
        ),
        (
            "503 body quoting the header",
            Scripted::answering(|request| {
                let body = json!({"error": {"message": format!("upstream refused Authorization: Bearer {}", bearer(request)),
                                            "type": "unavailable"}});
                http(
                    "503 Service Unavailable",
                    "Content-Type: application/json\r\n",
                    &body.to_string(),
                )
            }),
            69,
            vec![
                &["--retries", "1", "x"],
                &["-v", "--json", "--retries", "0", "x"],
            ],
        ),
        (
            "an SSE error event",
            Scripted::answering(|request| {
                let error = json!({"error": {"message": format!("token {} revoked", bearer(request)),
                                             "type": "auth"}});
                sse(&[
                    r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
                    &error.to_string(),
                ])
            }),
            1,
            vec![&["-s", "x"], &["--json", "-s", "x"], &["-v", "--json", "x"]],
        ),
        (
            "a 307 Location carrying it encoded and plain",
            Scripted::answering(|request| {
                let token = bearer(request);
                let encoded: String = token
                    .bytes()
                    .map(|b| match b {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                let location = format!("Location: https://evil.example/{token}?t={encoded}\r\n");
                http("307 Temporary Redirect", &location, "")
            }),
            1,
            vec![&["x"], &["-v", "--json", "x"], &["--json", "-s", "x"]],
        ),
    ];
    for (what, server, code, runs) in cases {
        for args in runs {
            let output = echoing(&server, dir.path()).args(args).output().unwrap();
            let what = format!("{what} {args:?}");
            assert_eq!(
                output.status.code(),
                Some(code),
                "{what}: {}",
                all_of(&output)
            );
            assert_no_token(&output, &what);
            if args.contains(&"--json") {
                let last: Value =
                    serde_json::from_str(stdout_of(&output).lines().last().unwrap()).unwrap();
                assert!(last["error"]["message"].is_string(), "{what}: {last}");
            }
        }
    }
}

/// The token as a JSON encoder may write it into a string: `/` as `\/`, or every character as
/// a `\u` escape.
fn json_escaped(token: &str) -> (String, String) {
    let slashes = token.replace('/', "\\/");
    let escapes = token.bytes().map(|b| format!("\\u{b:04x}")).collect();
    (slashes, escapes)
}

#[test]
fn an_event_with_an_error_member_fails_the_stream_even_beside_choices() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|request| {
        let event =
            json!({"choices": [], "error": {"message": format!("Bearer {}", bearer(request))}});
        sse(&[
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            &event.to_string(),
            "[DONE]",
        ])
    });
    let output = echoing(&server, dir.path())
        .args(["-s", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", all_of(&output));
    assert_no_token(&output, "-s");
    assert_eq!(stdout_of(&output), "Hi");
    assert!(
        stderr_of(&output).contains("bnx: error: the server reported an error: Bearer ***\n"),
        "{}",
        stderr_of(&output)
    );
    let output = echoing(&server, dir.path())
        .args(["-s", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", all_of(&output));
    assert_no_token(&output, "-s --json");
    let lines: Vec<Value> = stdout_of(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[1],
        json!({"choices": [], "error": {"message": "Bearer ***"}})
    );
    assert_eq!(lines[2]["error"]["message"], "Bearer ***");
    assert_eq!(lines[2]["bnx"]["done"], false);
}

#[test]
fn stream_lines_echoing_the_token_are_written_masked() {
    let dir = tempfile::tempdir().unwrap();
    // The token in a chunk's id, JSON-escaped in its model, and percent-encoded in its content.
    let server = Scripted::answering(|request| {
        let token = bearer(request);
        let (slashes, _) = json_escaped(&token);
        let first = format!(
            r#"{{"id":"{token}","model":"{slashes}","choices":[{{"delta":{{"content":"Hi"}}}}]}}"#
        );
        let second = json!({"id": "c", "choices": [{"delta": {"content": format!(" {TOKEN_ENCODED}")},
                                                   "finish_reason": "stop"}]});
        sse(&[&first, &second.to_string(), "[DONE]"])
    });
    let output = echoing(&server, dir.path())
        .args(["-s", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    assert_no_token(&output, "-s --json");
    let stdout = stdout_of(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            r#"{"id":"***","model":"***","choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"id":"c","choices":[{"delta":{"content":" ***"},"finish_reason":"stop"}]}"#,
        ]
    );
    assert_eq!(
        serde_json::from_str::<Value>(lines[2]).unwrap()["bnx"]["done"],
        true
    );
    // As text, the content is the answer, written as received.
    echoing(&server, dir.path())
        .args(["-s", "x"])
        .assert()
        .success()
        .stdout(format!("Hi {TOKEN_ENCODED}\n"));
    // A batch item's response holds the same events, masked the same way; its content is the
    // answer, as received.
    let output = one_item_batch(&server, dir.path(), &["-s", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    let line: Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    assert_eq!(line["content"], format!("Hi {TOKEN_ENCODED}"));
    let response = line["response"].to_string();
    assert!(!response.contains("ECHO"), "{response}");
    assert_eq!(line["response"][0]["id"], "***");
    assert_eq!(line["response"][0]["model"], "***");
    assert_eq!(
        line["response"][1]["choices"][0]["delta"]["content"],
        " ***"
    );
}

#[test]
fn a_whole_answer_echoing_the_token_is_written_masked_under_json() {
    let dir = tempfile::tempdir().unwrap();
    // The token in the id, JSON-escaped in the model, and percent-encoded in the content.
    let server = Scripted::answering(|request| {
        let token = bearer(request);
        let (slashes, _) = json_escaped(&token);
        let body = format!(
            r#"{{"id":"{token}","model":"{slashes}","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi {TOKEN_ENCODED}"}},"finish_reason":"stop"}}]}}"#
        );
        http("200 OK", "Content-Type: application/json\r\n", &body)
    });
    let output = echoing(&server, dir.path())
        .args(["--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    assert_no_token(&output, "--json");
    let doc: Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    assert_eq!(doc["id"], "***");
    assert_eq!(doc["model"], "***");
    assert_eq!(doc["choices"][0]["message"]["content"], "Hi ***");
    assert_eq!(doc["bnx"]["status"], 200);
    // As text, the content is the answer, written as received.
    echoing(&server, dir.path())
        .arg("x")
        .assert()
        .success()
        .stdout(format!("Hi {TOKEN_ENCODED}\n"));
    // A batch item's response is masked the same way; its content is the answer.
    let output = one_item_batch(&server, dir.path(), &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    let line: Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    assert_eq!(line["content"], format!("Hi {TOKEN_ENCODED}"));
    assert!(!line["response"].to_string().contains("ECHO"), "{line}");
    assert_eq!(line["response"]["id"], "***");
    assert_eq!(line["response"]["model"], "***");
}

#[test]
fn a_conversation_id_echoing_the_token_is_neither_shown_nor_saved() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|request| {
        let mut response = json_answer(r#"{"role": "assistant", "content": "fine"}"#);
        let id = format!("X-Conversation-Id: {}\r\n", bearer(request));
        response.splice(17..17, id.into_bytes());
        response
    });
    let output = echoing(&server, dir.path())
        .args(["-v", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["bnx"]["conversation_id"], Value::Null);
    assert!(!all_of(&output).contains("ECHO/5150"));
    let state = dir.path().join("state/bluenexus");
    assert!(
        !state.join("conversations-by-api").exists(),
        "nothing saved"
    );
    for file in walk(&state).into_iter().filter(|f| f.is_file()) {
        let content = String::from_utf8_lossy(&fs::read(&file).unwrap()).into_owned();
        assert!(!content.contains("ECHO"), "{}: {content}", file.display());
    }
}

#[test]
fn a_batch_items_line_never_holds_the_echoed_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|request| {
        let body = json!({"error": {"message": format!("no access for Bearer {}", bearer(request)),
                                    "type": "permission"}});
        let conversation = format!("X-Conversation-Id: {}\r\n", bearer(request));
        http("403 Forbidden", &conversation, &body.to_string())
    });
    let output = one_item_batch(&server, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(77), "{}", all_of(&output));
    assert_no_token(&output, "a batch item");
    let line: Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    assert_eq!(line["error"]["message"], "no access for Bearer ***");
    assert_eq!(line["bnx"]["conversation_id"], Value::Null);
}

#[test]
fn a_successful_answer_is_written_as_received_even_if_it_quotes_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|request| {
        let content =
            json!({"role": "assistant", "content": format!("you sent {}", bearer(request))});
        json_answer(&content.to_string())
    });
    echoing(&server, dir.path())
        .arg("x")
        .assert()
        .success()
        .stdout(format!("you sent {TOKEN_ECHOED}\n"));
}
