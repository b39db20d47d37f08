//! `bnx-mock` over real HTTP: shapes, headers, auth, validation, OpenAI clients' requests, rate
//! limit, credits, every fault, the log, event pacing, concurrency, malformed requests, start-up
//! and exec mode. Clients that attack its limits are in `mock_hostile`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;
use serde_json::{json, Value};

/// A raw HTTP/1.1 exchange: the full response as text (the connection is closed by us asking).
pub fn raw(mock: &Mock, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(&mock.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// The Content-Length of a response head.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap()
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The SSE data payloads, in order.
    pub fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// A request with ureq, which de-chunks the body for us. No proxy, no redirects.
pub fn call(mock: &Mock, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    let url = format!("{}{path}", mock.url);
    let mut request = ureq::http::Request::builder().method(method).uri(&url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let request = request
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .unwrap();
    let mut response = agent.run(request).unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Reply {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

pub const CHAT: &str = "/api/v1/agents/default/chat/completions";

pub fn chat(mock: &Mock, body: Value) -> Reply {
    call(mock, "POST", CHAT, Some(TOKEN), &body.to_string())
}

pub fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

#[test]
fn answers_with_the_documented_shape_and_headers() {
    let mock = Mock::start(&[]);
    let reply = chat(&mock, user("What meetings do I have today?"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "object", "created", "model", "choices", "usage"]
    );
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "[turn 1] What meetings do I have today?"},
                "finish_reason": "stop"}])
    );
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    assert_eq!(reply.header("x-credits-consumed"), Some("1"));
    assert_eq!(reply.header("x-credits-remaining"), Some("999999"));
    assert_eq!(reply.header("x-conversation-id"), Some("conv-000001"));
    let second = chat(&mock, user("again"));
    assert_eq!(
        second.header("x-credits-remaining"),
        Some("999998"),
        "the balance goes down"
    );
    assert_eq!(second.header("x-conversation-id"), Some("conv-000002"));
}

#[test]
fn streams_chunks_then_done() {
    let mock = Mock::start(&[]);
    let mut body = user("Summarize my Slack messages");
    body["stream"] = json!(true);
    let reply = chat(&mock, body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert!(reply.header("x-conversation-id").is_some());
    let events = reply.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["choices"][0]["index"] == 0));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant"})
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[turn 1] Summarize my Slack messages");
    assert!(chunks.len() > 4, "one chunk a word");
}

#[test]
fn size_chunks_and_max_tokens_options() {
    let mock = Mock::start(&["--answer-size", "1000", "--chunks", "10"]);
    let mut body = user("hi");
    body["stream"] = json!(true);
    let events = chat(&mock, body.clone()).events();
    assert_eq!(
        events.len(),
        1 + 10 + 1 + 1,
        "role, 10 pieces, finish, [DONE]"
    );
    let whole = chat(&mock, user("hi")).json();
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.len(), 1000);
    assert!(content.starts_with("[turn 1] hi lorem ipsum"));
    let mut limited = user("hi");
    limited["max_tokens"] = json!(5);
    let cut = chat(&mock, limited).json();
    assert_eq!(
        cut["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(cut["choices"][0]["finish_reason"], "length");
}

#[test]
fn conversations_continue_and_unknown_ids_are_404() {
    let mock = Mock::start(&[]);
    let first = chat(&mock, user("one"));
    let id = first.header("x-conversation-id").unwrap().to_string();
    let mut next = user("two");
    next["conversationId"] = json!(id);
    let second = chat(&mock, next);
    assert_eq!(second.header("x-conversation-id"), Some(id.as_str()));
    assert_eq!(
        second.json()["choices"][0]["message"]["content"],
        "[turn 2] two"
    );
    let mut unknown = user("x");
    unknown["conversationId"] = json!("conv-missing");
    let reply = chat(&mock, unknown);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["param"], "conversationId");
}

#[test]
fn bearer_auth_and_scopes() {
    let mock = Mock::start(&[
        "--token",
        "all",
        "--token",
        "use:agents-use",
        "--token",
        "read:agents-read",
    ]);
    let body = user("x").to_string();
    assert_eq!(call(&mock, "POST", CHAT, None, &body).status, 401);
    let unknown = call(&mock, "POST", CHAT, Some("nope"), &body);
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["error"]["type"], "authentication_error");
    assert_eq!(call(&mock, "POST", CHAT, Some("all"), &body).status, 200);
    assert_eq!(call(&mock, "POST", CHAT, Some("use"), &body).status, 200);
    let read = call(&mock, "POST", CHAT, Some("read"), &body);
    assert_eq!(read.status, 403);
    assert_eq!(read.json()["error"]["type"], "permission_error");
}

#[test]
fn invalid_bodies_are_400_with_openai_style_errors() {
    let mock = Mock::start(&[]);
    let cases = [
        ("{not json", Value::Null),
        (r#"{"messages": []}"#, json!("messages")),
        (
            r#"{"messages": [{"role": "bot", "content": "x"}]}"#,
            json!("messages[0].role"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": null}]}"#,
            json!("messages[0].content"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "temperature": -0.1}"#,
            json!("temperature"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}"#,
            json!("max_tokens"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "stream": 1}"#,
            json!("stream"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "conversationId": []}"#,
            json!("conversationId"),
        ),
    ];
    for (body, param) in cases {
        let reply = call(&mock, "POST", CHAT, Some(TOKEN), body);
        assert_eq!(reply.status, 400, "{body}");
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}");
        assert!(error["message"].as_str().unwrap().len() > 5);
    }
}

#[test]
fn wrong_method_and_unknown_path_have_json_errors() {
    let mock = Mock::start(&[]);
    let get = call(&mock, "GET", CHAT, Some(TOKEN), "");
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert!(get.json()["error"]["message"].is_string());
    let missing = call(
        &mock,
        "POST",
        "/api/v1/agents/default/other",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["type"], "not_found_error");
}

#[test]
fn rate_limit_is_per_token_with_retry_after_in_whole_seconds() {
    let mock = Mock::start(&["--rate-limit", "2", "--token", "a", "--token", "b"]);
    let body = user("x").to_string();
    for _ in 0..2 {
        assert_eq!(call(&mock, "POST", CHAT, Some("a"), &body).status, 200);
    }
    let limited = call(&mock, "POST", CHAT, Some("a"), &body);
    assert_eq!(limited.status, 429);
    let secs: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs));
    assert_eq!(limited.json()["error"]["type"], "rate_limit_error");
    assert_eq!(call(&mock, "POST", CHAT, Some("b"), &body).status, 200);
}

#[test]
fn faults_apply_in_order_then_requests_behave() {
    let mock = Mock::start(&[
        "--fault",
        "429:3",
        "--fault",
        "500",
        "--fault",
        "502",
        "--fault",
        "503",
        "--fault",
        "504",
        "--fault",
        "html",
        "--fault",
        "redirect:http://elsewhere.test/x",
    ]);
    let body = user("x");
    let limited = chat(&mock, body.clone());
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("3"))
    );
    assert!(limited.json()["error"]["message"].is_string());
    for status in [500, 502, 503, 504] {
        let reply = chat(&mock, body.clone());
        assert_eq!(reply.status, status);
        assert_eq!(reply.json()["error"]["type"], "server_error");
    }
    let html = chat(&mock, body.clone());
    assert_eq!(html.status, 502);
    assert_eq!(html.header("content-type"), Some("text/html"));
    assert!(html.body.contains("<h1>502 Bad Gateway</h1>"));
    let redirect = chat(&mock, body.clone());
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (307, Some("http://elsewhere.test/x"))
    );
    assert_eq!(chat(&mock, body).status, 200);
    // Each request is logged after its answer is sent, so two answered back to back can be
    // logged in either order: the answers above proved the order, the log proves the names.
    let mut faults: Vec<String> = mock
        .requests(8)
        .iter()
        .map(|r| r["fault"].to_string())
        .collect();
    faults.sort();
    assert_eq!(
        faults,
        [
            "\"429:3\"",
            "\"500\"",
            "\"502\"",
            "\"503\"",
            "\"504\"",
            "\"html\"",
            "\"redirect:http://elsewhere.test/x\"",
            "null"
        ]
    );
}

#[test]
fn faults_are_applied_before_auth() {
    let mock = Mock::start(&["--fault", "503"]);
    assert_eq!(call(&mock, "POST", CHAT, None, "garbage").status, 503);
    assert_eq!(call(&mock, "POST", CHAT, None, "garbage").status, 401);
}

#[test]
fn drop_closes_without_a_response() {
    let mock = Mock::start(&["--fault", "drop"]);
    let body = user("x").to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw(&mock, request.as_bytes()), "");
    assert_eq!(mock.requests(1)[0]["status"], Value::Null);
}

#[test]
fn malformed_cut_and_error_event_break_the_answer_as_named() {
    let mock = Mock::start(&[
        "--fault",
        "malformed",
        "--fault",
        "malformed",
        "--fault",
        "cut:2",
        "--fault",
        "cut",
        "--fault",
        "error-event",
        "--fault",
        "error-event",
    ]);
    let mut streaming = user("one two three four");
    streaming["stream"] = json!(true);
    let broken = chat(&mock, user("x"));
    assert_eq!(broken.status, 200);
    assert!(serde_json::from_str::<Value>(&broken.body).is_err());
    let events = chat(&mock, streaming.clone()).events();
    assert!(serde_json::from_str::<Value>(&events[1]).is_ok());
    assert!(
        serde_json::from_str::<Value>(&events[2]).is_err(),
        "{events:?}"
    );

    let cut = chat(&mock, streaming.clone()).events();
    assert_eq!(cut.len(), 3, "role chunk and two content chunks: {cut:?}");
    assert!(!cut.contains(&"[DONE]".to_string()));
    let body = user("x").to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let short = raw(&mock, request.as_bytes());
    let (head, rest) = short.split_once("\r\n\r\n").unwrap();
    assert!(
        rest.len() < content_length(head),
        "the body stops short of its Content-Length"
    );

    let errored = chat(&mock, streaming).events();
    let last: Value = serde_json::from_str(errored.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!errored.contains(&"[DONE]".to_string()));
    let error_body = chat(&mock, user("x"));
    assert_eq!(error_body.status, 200);
    assert!(error_body.json()["error"]["message"].is_string());
}

#[test]
fn stall_sends_headers_then_silence_and_slow_delays_the_answer() {
    let mock = Mock::start(&["--fault", "stall:1", "--fault", "slow:0.5"]);
    let body = user("x").to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(&mock.addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "silence, then close"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("choices"));
    let started = Instant::now();
    assert_eq!(chat(&mock, user("x")).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(450));
}

#[test]
fn each_event_reaches_the_socket_when_produced() {
    let mock = Mock::start(&["--chunks", "6", "--chunk-delay", "500"]);
    let mut body = user("x");
    body["stream"] = json!(true);
    let body = body.to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(&mock.addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.contains("\"content\"") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    let first = started.elapsed();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap_or_default();
    let all = started.elapsed();
    assert!(
        first < Duration::from_millis(1500),
        "first piece after {first:?}"
    );
    assert!(
        all >= Duration::from_millis(2900),
        "six pieces 500 ms apart took {all:?}"
    );
}

#[test]
fn a_stalled_request_does_not_block_others() {
    let mock = Mock::start(&["--fault", "stall:20"]);
    let body = user("x").to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stalled = TcpStream::connect(&mock.addr).unwrap();
    stalled.write_all(request.as_bytes()).unwrap();
    // The stall sends its headers at once: once they are here, the fault is this request's.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = String::new();
    BufReader::new(&stalled).read_line(&mut head).unwrap();
    assert_eq!(head, "HTTP/1.1 200 OK\r\n");
    let started = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = mock.url.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
                agent
                    .post(format!("{url}{CHAT}"))
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .send(user("x").to_string())
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn log_has_one_line_per_request_with_the_token_redacted() {
    let mock = Mock::start(&["--token", "s3cret-token"]);
    call(
        &mock,
        "POST",
        CHAT,
        Some("s3cret-token"),
        &user("logged").to_string(),
    );
    call(&mock, "GET", "/nowhere", None, "");
    let requests = mock.requests(2);
    assert_eq!(requests.len(), 2);
    // Both may arrive within one millisecond and be logged in either order.
    let (first, second) = match requests[0]["method"].as_str() {
        Some("POST") => (&requests[0], &requests[1]),
        _ => (&requests[1], &requests[0]),
    };
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], CHAT);
    assert_eq!(first["status"], 200);
    assert_eq!(first["headers"]["authorization"], "Bearer ***");
    assert_eq!(first["body"]["messages"][0]["content"], "logged");
    let time = first["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.starts_with("20") && time.ends_with('Z'),
        "RFC 3339 with milliseconds: {time}"
    );
    assert!(first["duration_ms"].as_u64().is_some());
    assert_eq!(second["method"], "GET");
    assert_eq!(second["status"], 404);
    let text = std::fs::read_to_string(mock.dir.path().join("requests.jsonl")).unwrap();
    assert!(!text.contains("s3cret"));
}

#[test]
fn hostile_requests_get_4xx_and_the_server_survives() {
    let mock = Mock::start(&[]);
    let huge_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100_000));
    assert!(raw(&mock, huge_header.as_bytes()).starts_with("HTTP/1.1 431"));
    let huge_body = format!("POST {CHAT} HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n");
    assert!(raw(&mock, huge_body.as_bytes()).starts_with("HTTP/1.1 413"));
    assert!(raw(&mock, b"\x16\x03\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(
        &mock,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .starts_with("HTTP/1.1 411"));
    assert_eq!(chat(&mock, user("still here")).status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let mock = Mock::start(&[]);
    let body = user("x").to_string();
    let one = format!(
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let last = one.replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n");
    let text = raw(&mock, format!("{one}{one}{last}").as_bytes());
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3);
}

#[test]
fn exec_mode_runs_the_command_with_url_and_token_and_forwards_its_exit() {
    let output = Command::new(BNX_MOCK)
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$BLUENEXUS_BASE_URL $BLUENEXUS_TOKEN\"; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    let line = stdout_of(&output);
    assert!(line.starts_with("http://127.0.0.1:"), "{line}");
    assert!(line.trim_end().ends_with(" bnx-mock-token"), "{line}");
    let killed = Command::new(BNX_MOCK)
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(killed.code(), Some(128 + 15));
    let missing = Command::new(BNX_MOCK)
        .args(["--", "/no/such/command"])
        .status()
        .unwrap();
    assert_eq!(missing.code(), Some(127));
}

#[test]
fn exec_mode_passes_a_sigterm_on_to_the_command() {
    // The command says when it is ready, and what ended it: the TERM, or its own 10 s.
    let script = "trap 'echo terminated; exit 7' TERM; echo ready; \
                  i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; echo orphaned";
    let mut mock = Command::new(BNX_MOCK)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(mock.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill(2) of our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(mock.id() as i32, libc::SIGTERM) }, 0);
    let status = mock.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    // Read to the end: the command's stdout closes when it exits.
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "terminated\n");

    // Ctrl-C reaches the whole group from the terminal: the mock adds no SIGTERM that would
    // cut the command's own clean-up short.
    let script = "trap 'sleep 0.3; echo cleaned; exit 3' INT; echo ready; \
                  i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; echo orphaned";
    let mut mock = Command::new(BNX_MOCK)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(mock.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill(2) of our child's own process group.
    assert_eq!(unsafe { libc::kill(-(mock.id() as i32), libc::SIGINT) }, 0);
    assert_eq!(mock.wait().unwrap().signal(), Some(libc::SIGINT));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "cleaned\n");
}

#[test]
fn exec_mode_serves_bnx_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BNX_MOCK)
        .env_clear()
        .env("HOME", dir.path())
        .args(["--fault", "503", "--", BNX, "-q", "hello", "mock"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout_of(&output), "[turn 1] hello mock\n");
}

#[test]
fn help_documents_every_option_and_fault() {
    let output = Command::new(BNX_MOCK).arg("--help").output().unwrap();
    let help = stdout_of(&output);
    for needle in [
        "--listen",
        "--token",
        "--rate-limit",
        "--credits",
        "--fault",
        "--log",
        "--answer-size",
        "--chunks",
        "--chunk-delay",
        "--max-connections",
        "--header-timeout",
        "--idle-timeout",
        "--progress-timeout",
        "N[/SECS]",
        "71 cannot listen",
        "429[:SECS]",
        "402",
        "500 502 503 504",
        "drop",
        "html",
        "malformed",
        "cut[:N]",
        "error-event",
        "stall[:SECS]",
        "slow[:SECS]",
        "redirect[:URL]",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

/// A raw request on the chat path with `headers` and `body`, the connection closed after it.
fn raw_chat(headers: &str, body: &str) -> String {
    format!(
        "POST {CHAT} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn bare_lf_heads_are_served_and_ambiguous_lengths_refused() {
    let mock = Mock::start(&[]);
    let body = user("lf").to_string();
    let bare_lf =
        raw_chat(&format!("Authorization: Bearer {TOKEN}\r\n"), &body).replace("\r\n", "\n");
    let served = raw(&mock, bare_lf.as_bytes());
    assert!(served.starts_with("HTTP/1.1 200 OK"), "{served}");
    assert!(served.contains("[turn 1] lf"));
    for length in ["+45", "-1", "0x10", "4 5", ""] {
        let request = format!("POST {CHAT} HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
        let reply = raw(&mock, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400"), "{length:?}: {reply}");
    }
    let conflicting =
        format!("POST {CHAT} HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc");
    let reply = raw(&mock, conflicting.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("conflicting Content-Length"), "{reply}");
    let agreeing = raw_chat(
        &format!(
            "Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n",
            body.len()
        ),
        &body,
    );
    assert!(raw(&mock, agreeing.as_bytes()).starts_with("HTTP/1.1 200"));
}

#[test]
fn refused_requests_are_logged_with_a_reason() {
    let mock = Mock::start(&[]);
    let refusals: [(&[u8], u16, &str); 5] = [
        (b"\x16\x03\x01garbage\r\n\r\n", 400, "not valid HTTP"),
        (
            b"POST /x HTTP/1.1\r\nContent-Length: +45\r\n\r\n",
            400,
            "bad Content-Length",
        ),
        (
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
            "Content-Length",
        ),
        (
            b"POST /x HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
            413,
            "exceeds",
        ),
        (
            &[b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat(),
            431,
            "exceeds",
        ),
    ];
    for (request, status, _) in &refusals {
        assert!(raw(&mock, request).starts_with(&format!("HTTP/1.1 {status}")));
    }
    let lines = mock.requests(refusals.len());
    assert_eq!(lines.len(), refusals.len(), "{lines:#?}");
    for (line, (_, status, reason)) in lines.iter().zip(&refusals) {
        assert_eq!(line["status"], *status, "{line}");
        assert!(line["reason"].as_str().unwrap().contains(reason), "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line["duration_ms"].is_u64(), "{line}");
    }
    assert_eq!(
        lines[0]["method"],
        Value::Null,
        "the head could not be parsed"
    );
    assert_eq!(lines[2]["path"], "/x", "the head was parsed");
}

#[test]
fn every_accepted_token_is_redacted_in_the_log() {
    let mock = Mock::start(&["--token", "s3cret-a", "--token", "s3cret-b:agents-read"]);
    let body = json!({"messages": [{"role": "user", "content": "my key is s3cret-b"}],
                      "api_key": "s3cret-a"})
    .to_string();
    let headers = "Authorization: Bearer s3cret-a\r\nX-Api-Key: s3cret-a\r\n\
                   Cookie: session=s3cret-b; theme=dark\r\nProxy-Authorization: Basic dXNlcg==\r\n";
    let reply = raw(&mock, raw_chat(headers, &body).as_bytes());
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let line = mock.only_request();
    let headers = &line["headers"];
    assert_eq!(headers["authorization"], "Bearer ***");
    assert_eq!(headers["x-api-key"], "***");
    assert_eq!(headers["cookie"], "session=***; theme=dark");
    assert_eq!(headers["proxy-authorization"], "Basic ***");
    assert_eq!(line["body"]["messages"][0]["content"], "my key is ***");
    assert_eq!(line["body"]["api_key"], "***");
    let text = std::fs::read_to_string(mock.dir.path().join("requests.jsonl")).unwrap();
    assert!(
        !text.contains("s3cret") && !text.contains("dXNlcg"),
        "{text}"
    );
}

#[test]
fn a_token_escaped_or_percent_encoded_is_redacted_whole_in_the_log() {
    let token = "tok/SEC+ret=9xZ";
    let mock = Mock::start(&["--token", token]);
    let encoded = "tok%2FSEC%2Bret%3D9xZ";
    let body = r#"{"messages": [{"role": "user",
        "content": "my token is tok\/SEC+ret=9xZ or \u0074ok/SEC+ret=9xZ"}],
        "\u0074ok\/SEC+ret=9xZ": true}"#;
    let headers = format!(
        "Authorization: Bearer {token}\r\nX-Api-Key: tok%2fSEC%2bret%3d9xZ\r\n\
         Cookie: t={encoded}; theme=dark\r\n"
    );
    for path in [
        CHAT.to_string(),
        format!("/api/v1/agents/{encoded}/chat/completions"),
    ] {
        let request = raw_chat(&headers, body).replacen(CHAT, &path, 1);
        assert!(raw(&mock, request.as_bytes()).starts_with("HTTP/1.1 200"));
    }
    let lines = mock.requests(2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for line in &lines {
        assert_eq!(line["headers"]["x-api-key"], "***", "{line}");
        assert_eq!(line["headers"]["cookie"], "t=***; theme=dark", "{line}");
        assert_eq!(
            line["body"]["messages"][0]["content"], "my token is *** or ***",
            "{line}"
        );
        assert_eq!(line["body"]["***"], true, "{line}");
    }
    assert_eq!(lines[1]["path"], "/api/v1/agents/***/chat/completions");
    let log = mock.log();
    assert!(!log.contains("SEC"), "{log}");
}

#[test]
fn fault_arguments_with_control_characters_are_a_usage_error() {
    for fault in [
        "redirect:http://x/\r\nX-Injected: yes",
        "redirect:http://x/\u{1b}[31m",
    ] {
        let output = Command::new(BNX_MOCK)
            .args(["--fault", fault])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{fault:?}");
        assert!(
            stderr_of(&output).contains("control character"),
            "{}",
            stderr_of(&output)
        );
    }
}

#[test]
fn accepts_what_openai_clients_send() {
    let mock = Mock::start(&[]);
    let tool_flow = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "add "}, {"type": "text", "text": "2 and 2"}]},
            {"role": "assistant", "content": null,
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "4"}
        ],
        "max_completion_tokens": 4,
        "tools": [{"type": "function", "function": {"name": "add"}}],
        "n": 1
    });
    let reply = chat(&mock, tool_flow);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], "[turn 1] add 2 a");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let mut bad = user("x");
    bad["stream_options"] = json!("include_usage");
    let refused = chat(&mock, bad);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["param"], "stream_options");
}

#[test]
fn include_usage_adds_a_usage_chunk_before_done() {
    let mock = Mock::start(&[]);
    let mut body = user("count me");
    body["stream"] = json!(true);
    let plain = chat(&mock, body.clone()).events();
    body["stream_options"] = json!({"include_usage": true});
    let events = chat(&mock, body).events();
    assert_eq!(events.len(), plain.len() + 1);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let finish: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["object"], "chat.completion.chunk");
    assert_eq!(usage["choices"], json!([]));
    let answer = "[turn 1] count me".len() as u64;
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": answer.div_ceil(4),
               "total_tokens": 2 + answer.div_ceil(4)})
    );
    assert!(!plain.iter().any(|e| e.contains("\"usage\"")));
}

#[test]
fn an_answer_the_credits_cannot_pay_for_is_402_with_a_json_error() {
    let mock = Mock::start(&["--credits", "2", "--fault", "402"]);
    let injected = chat(&mock, user("x"));
    assert_eq!(injected.status, 402);
    assert_eq!(injected.json()["error"]["type"], "insufficient_credits");
    let first = chat(&mock, user("one"));
    let second = chat(&mock, user("two"));
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(second.header("x-credits-remaining"), Some("0"));
    let broke = chat(&mock, user("three"));
    assert_eq!(broke.status, 402);
    assert_eq!(broke.header("content-type"), Some("application/json"));
    let error = &broke.json()["error"];
    assert_eq!(error["type"], "insufficient_credits");
    assert!(error["message"].as_str().unwrap().contains("credits"));
}

#[test]
fn rate_limit_takes_a_window_in_seconds() {
    let mock = Mock::start(&["--rate-limit", "2/1"]);
    let statuses: Vec<u16> = (0..3).map(|_| chat(&mock, user("x")).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let limited = chat(&mock, user("x"));
    assert_eq!(
        limited.header("retry-after"),
        Some("1"),
        "whole seconds, at least 1"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(&mock, user("x")).status == 429 {
        assert!(
            Instant::now() < deadline,
            "a slot frees once the window has passed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let unlimited = Mock::start(&["--rate-limit", "0"]);
    assert!((0..40).all(|_| chat(&unlimited, user("x")).status == 200));
}

/// A standalone `bnx-mock`, killed when dropped.
struct Standalone(Child);

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn standalone_start_up_says_url_token_and_the_line_to_paste() {
    let mut mock = Standalone(
        Command::new(BNX_MOCK)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--token",
                "it's",
                "--token",
                "r:agents-read",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines: Vec<String> = BufReader::new(mock.0.stderr.take().unwrap())
        .lines()
        .take(4)
        .map(Result::unwrap)
        .collect();
    let url = lines[0].strip_prefix("bnx-mock: listening on ").unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{lines:?}");
    assert_eq!(lines[1], "bnx-mock: token it's (agents-all)");
    assert_eq!(lines[2], "bnx-mock: token r (agents-read)");
    assert!(
        lines[3].starts_with("export BLUENEXUS_BASE_URL="),
        "{lines:?}"
    );
    let pasted = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}; printf '%s %s' \"$BLUENEXUS_BASE_URL\" \"$BLUENEXUS_TOKEN\"",
            lines[3]
        ))
        .output()
        .unwrap();
    assert_eq!(stdout_of(&pasted), format!("{url} it's"));
}

#[test]
fn an_address_it_cannot_listen_on_is_exit_71() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for command in [&[][..], &["--", "sh", "-c", "echo ran"]] {
        let output = Command::new(BNX_MOCK)
            .args(["--listen", &addr])
            .args(command)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(71));
        let stderr = stderr_of(&output);
        assert!(
            stderr.starts_with(&format!("bnx-mock: error: cannot listen on {addr}")),
            "{stderr}"
        );
        assert_eq!(stdout_of(&output), "", "the command did not run");
    }
}

#[test]
fn a_host_name_is_listened_on_and_a_malformed_address_is_a_usage_error() {
    let output = Command::new(BNX_MOCK)
        .args(["--listen", "localhost:0", "--", "sh", "-c"])
        .arg("echo \"$BLUENEXUS_BASE_URL\"")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let url = stdout_of(&output);
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://[::1]:"),
        "{url}"
    );
    for bad in ["localhost", ":8787", "localhost:http", "127.0.0.1:65536"] {
        let output = Command::new(BNX_MOCK)
            .args(["--listen", bad, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        assert!(stderr_of(&output).contains("expected HOST:PORT"), "{bad}");
    }
}

#[test]
fn a_wildcard_listen_address_is_exported_as_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BNX_MOCK)
        .env_clear()
        .env("HOME", dir.path())
        .args(["--listen", "0.0.0.0:0", "--", "sh", "-c"])
        .arg(format!(
            "echo \"$BLUENEXUS_BASE_URL\"; {BNX} -q hello wildcard"
        ))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    let (url, answer) = stdout.split_once('\n').unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    assert_eq!(answer, "[turn 1] hello wildcard\n");
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped the IPv6 case: no IPv6 loopback here");
        return;
    }
    let output = Command::new(BNX_MOCK)
        .args([
            "--listen",
            "[::]:0",
            "--",
            "sh",
            "-c",
            "echo \"$BLUENEXUS_BASE_URL\"",
        ])
        .output()
        .unwrap();
    assert!(
        stdout_of(&output).starts_with("http://[::1]:"),
        "{output:?}"
    );
}

#[test]
fn an_http10_keep_alive_stream_ends_with_the_answer() {
    // An HTTP/1.0 stream has no chunked framing: only the close ends its body, so a client that
    // asked for keep-alive would otherwise wait out the whole idle timeout.
    let mock = Mock::start(&["--idle-timeout", "30"]);
    let body = json!({"messages": [{"role": "user", "content": "old"}], "stream": true});
    let body = body.to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nConnection: keep-alive\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let reply = raw(&mock, request.as_bytes());
    let took = started.elapsed();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("data: [DONE]\n\n"), "{reply}");
    assert!(
        took < Duration::from_secs(5),
        "the body ended after {took:?}"
    );
    assert_eq!(mock.only_request()["status"], 200);
}

#[test]
fn a_head_request_gets_a_head_and_no_body() {
    // A HEAD response has no body whatever its Content-Length: bytes after its head would be
    // read as the start of the next response on the connection.
    let mock = Mock::start(&[]);
    let reply = raw(
        &mock,
        format!(
            "HEAD {CHAT} HTTP/1.1\r\nHost: x\r\n\r\n\
             HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let parts: Vec<&str> = reply.split("\r\n\r\n").collect();
    assert_eq!(parts.len(), 4, "{reply}");
    assert!(parts[0].starts_with("HTTP/1.1 405"), "{reply}");
    assert!(parts[1].starts_with("HTTP/1.1 404"), "{reply}");
    assert!(parts[2].starts_with("HTTP/1.1 404"), "{reply}");
    assert!(parts[3].contains("GET /last"), "{reply}");
    assert_eq!(mock.requests(3).len(), 3);
}

#[test]
fn a_token_sent_where_no_token_belongs_is_neither_echoed_nor_logged() {
    let token = "s3cret-tok";
    let mock = Mock::start(&["--token", token]);
    let auth = format!("Authorization: Bearer {token}\r\n");
    let body = json!({"messages": [{"role": "user", "content": "x"}], "conversationId": token});
    let requests = [
        (
            format!("POST {CHAT} HTTP/1.1\r\nContent-Length: {token}\r\n\r\n"),
            400,
        ),
        (
            format!("{token} {CHAT} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"),
            405,
        ),
        (
            format!("GET /{token} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"),
            404,
        ),
        (raw_chat(&format!("{auth}{token}: 1\r\n"), "{}"), 400),
        (raw_chat(&auth, &body.to_string()), 404),
    ];
    for (request, status) in &requests {
        let reply = raw(&mock, request.as_bytes());
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
        assert!(!reply.contains("s3cret"), "{reply}");
    }
    let lines = mock.requests(requests.len());
    assert_eq!(lines.len(), requests.len(), "{lines:#?}");
    let log = mock.log();
    assert!(!log.contains("s3cret"), "{log}");
}

#[test]
fn a_repeated_header_is_logged_with_every_value() {
    // The log is how a test sees what a client sent: a second header of a name must not hide
    // the first.
    let mock = Mock::start(&[]);
    let headers =
        format!("Authorization: Bearer {TOKEN}\r\nX-Trace: one\r\nx-trace: two\r\nAccept: a\r\n");
    let reply = raw(
        &mock,
        raw_chat(&headers, &user("dup").to_string()).as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let line = mock.only_request();
    assert_eq!(line["headers"]["x-trace"], "one, two", "{line}");
    assert_eq!(line["headers"]["accept"], "a", "{line}");
}

#[test]
fn exec_mode_exports_its_rate_limit_and_a_scratch_state_removed_after() {
    let home = tempfile::tempdir().unwrap();
    let script = "echo \"$BLUENEXUS_RATE_LIMIT $BLUENEXUS_STATE_DIR $BLUENEXUS_CACHE_DIR\"; \
                  i=0; while [ $i -lt 7 ]; do bnx -q \"run $i\" || exit $?; i=$((i+1)); done";
    let bin = Path::new(BNX).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let output = Command::new(BNX_MOCK)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", path)
        .arg("--log")
        .arg(&log)
        .args(["--rate-limit", "3/2", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    let first: Vec<&str> = stdout.lines().next().unwrap().split(' ').collect();
    assert_eq!(first[0], "3/2", "{stdout}");
    let (state, cache) = (Path::new(first[1]), Path::new(first[2]));
    assert_eq!(
        state.parent(),
        cache.parent(),
        "one scratch directory: {stdout}"
    );
    assert!(
        !state.parent().unwrap().exists(),
        "removed when COMMAND exited"
    );
    let statuses: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, [200; 7], "bnx paced to the mock's limit: no 429");
    assert_eq!(
        std::fs::read_dir(home.path()).unwrap().count(),
        0,
        "no pacing or conversation file left in the user's home"
    );

    let mine = tempfile::tempdir().unwrap();
    let kept = Command::new(BNX_MOCK)
        .env("BLUENEXUS_STATE_DIR", mine.path())
        .args(["--", "sh", "-c", "echo \"$BLUENEXUS_STATE_DIR\""])
        .output()
        .unwrap();
    assert_eq!(
        stdout_of(&kept).trim_end(),
        mine.path().to_str().unwrap(),
        "the caller's own"
    );
}

#[test]
fn a_log_file_that_cannot_be_written_is_named() {
    let output = Command::new(BNX_MOCK)
        .args(["--log", "/proc/x/y", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    assert!(
        stderr_of(&output).starts_with("bnx-mock: error: cannot write the log file /proc/x/y: "),
        "{}",
        stderr_of(&output)
    );
}
