//! Trust against servers that behave badly on purpose, odd URLs and odd environments (issue 9):
//! the token never shows even when a server echoes it, a base URL means exactly what it says,
//! proxies are honoured or refused but never bypassed, saved conversations belong to their API,
//! waits too long for any clock fail at once, token sources neither cut nor hang, an early
//! answer to a large upload is read, and `--json` always has `.error.message`.
//!
//! Each hostile server here is a std socket on 127.0.0.1 that records what it received.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// A token with characters a server would percent-encode into a URL.
const TOKEN_ECHOED: &str = "tok-ECHO/5150+zz";
const TOKEN_ENCODED: &str = "tok%2DECHO%2F5150%2Bzz";

const SENTINEL: &str = "GET /trust-sentinel";

/// How a hostile server answers one connection, given the request head it read.
type Script = dyn Fn(&mut TcpStream, &str) + Send + Sync;

/// A server that reads each request head, records it, and runs `script` on the connection.
struct Hostile {
    origin: String,
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    fn start(script: impl Fn(&mut TcpStream, &str) + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&heads);
        let script: Arc<Script> = Arc::new(script);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let head = read_head(&mut stream);
                record.lock().unwrap().push(head.clone());
                if !head.starts_with(SENTINEL) {
                    let script = Arc::clone(&script);
                    thread::spawn(move || script(&mut stream, &head));
                }
            }
        });
        Hostile {
            origin: format!("http://{addr}"),
            addr,
            heads,
        }
    }

    /// A server that answers every request with `response`, after reading the whole request.
    fn answering(response: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Hostile {
        Hostile::start(move |stream, head| {
            read_body(stream, head);
            let _ = stream.write_all(&response(head));
        })
    }

    /// The request heads received so far, every connection made before this call included: a
    /// sentinel connection is made and waited for, as connections are accepted in order.
    fn requests(&self) -> Vec<String> {
        let mut sentinel = TcpStream::connect(&self.addr).unwrap();
        write!(sentinel, "{SENTINEL} HTTP/1.1\r\n\r\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let heads = self.heads.lock().unwrap().clone();
            if let Some(at) = heads.iter().position(|h| h.starts_with(SENTINEL)) {
                self.heads.lock().unwrap().remove(at);
                return heads[..at].to_vec();
            }
            assert!(Instant::now() < deadline, "the sentinel never arrived");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn bnx(&self, dir: &Path) -> assert_cmd::Command {
        let mut cmd = bnx_in(dir);
        cmd.env("BLUENEXUS_BASE_URL", &self.origin)
            .env("BLUENEXUS_TOKEN", TOKEN_ECHOED);
        cmd
    }

    /// `bnx --batch` of one item, `{"id": "a", "prompt": "x"}`, with `args`.
    fn one_item_batch(&self, dir: &Path, args: &[&str]) -> Output {
        let items = dir.join("items.jsonl");
        fs::write(&items, "{\"id\": \"a\", \"prompt\": \"x\"}\n").unwrap();
        self.bnx(dir)
            .args(args)
            .arg("--batch")
            .arg(&items)
            .output()
            .unwrap()
    }
}

/// The token the request carried, as an echoing server would quote it.
fn bearer(head: &str) -> String {
    header(head, "authorization")
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_string()
}

fn json_answer(message: &str) -> Vec<u8> {
    let body = json!({"choices": [{"index": 0, "message": message_json(message),
                                   "finish_reason": "stop"}]});
    http(
        "200 OK",
        "Content-Type: application/json\r\n",
        &body.to_string(),
    )
}

fn message_json(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

fn sse(events: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    http("200 OK", "Content-Type: text/event-stream\r\n", &body)
}

/// stdout and stderr of a run, for checks on both.
fn all_of(output: &Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

fn assert_no_token(output: &Output, what: &str) {
    let all = all_of(output);
    for leak in [TOKEN_ECHOED, TOKEN_ENCODED, "ECHO/5150", "ECHO%2F5150"] {
        assert!(!all.contains(leak), "{what}: {leak} leaked in {all}");
    }
    assert!(all.contains("***"), "{what}: nothing was masked in {all}");
    assert_clean_stderr(&stderr_of(output));
}

// 1. A server that echoes the token.

#[test]
fn a_server_echoing_the_token_gets_it_masked_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Hostile, i32, Vec<&[&str]>)> = vec![
        (
            "401 quoting the Bearer header",
            Hostile::answering(|head| {
                let body = json!({"error": {"message": format!("invalid token: Bearer {}", bearer(head)),
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
            Hostile::answering(|head| {
                let body = json!({"error": format!("no such key {}", bearer(head))});
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
            Hostile::answering(|head| {
                let body = json!({"error": {"message": format!("upstream refused Authorization: Bearer {}", bearer(head)),
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
            Hostile::answering(|head| {
                let error = json!({"error": {"message": format!("token {} revoked", bearer(head)),
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
            Hostile::answering(|head| {
                let token = bearer(head);
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
            let output = server.bnx(dir.path()).args(args).output().unwrap();
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
fn an_error_body_escaping_the_token_shows_it_masked_in_verbose() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::answering(|head| {
        let (slashes, escapes) = json_escaped(&bearer(head));
        let body =
            format!(r#"{{"error":{{"message":"bad token {slashes}"}},"detail":"{escapes}"}}"#);
        http(
            "401 Unauthorized",
            "Content-Type: application/json\r\n",
            &body,
        )
    });
    for args in [&["-v", "x"][..], &["-v", "--json", "x"]] {
        let output = server.bnx(dir.path()).args(args).output().unwrap();
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

#[test]
fn an_event_with_an_error_member_fails_the_stream_even_beside_choices() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::answering(|head| {
        let event =
            json!({"choices": [], "error": {"message": format!("Bearer {}", bearer(head))}});
        sse(&[
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            &event.to_string(),
            "[DONE]",
        ])
    });
    let output = server.bnx(dir.path()).args(["-s", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", all_of(&output));
    assert_no_token(&output, "-s");
    assert_eq!(stdout_of(&output), "Hi");
    assert!(
        stderr_of(&output).contains("bnx: error: the server reported an error: Bearer ***\n"),
        "{}",
        stderr_of(&output)
    );
    let output = server
        .bnx(dir.path())
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
    let server = Hostile::answering(|head| {
        let token = bearer(head);
        let (slashes, _) = json_escaped(&token);
        let first = format!(
            r#"{{"id":"{token}","model":"{slashes}","choices":[{{"delta":{{"content":"Hi"}}}}]}}"#
        );
        let second = json!({"id": "c", "choices": [{"delta": {"content": format!(" {TOKEN_ENCODED}")},
                                                   "finish_reason": "stop"}]});
        sse(&[&first, &second.to_string(), "[DONE]"])
    });
    let output = server
        .bnx(dir.path())
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
    server
        .bnx(dir.path())
        .args(["-s", "x"])
        .assert()
        .success()
        .stdout(format!("Hi {TOKEN_ENCODED}\n"));
    // A batch item's response holds the same events, masked the same way; its content is the
    // answer, as received.
    let output = server.one_item_batch(dir.path(), &["-s", "--json"]);
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
    let server = Hostile::answering(|head| {
        let token = bearer(head);
        let (slashes, _) = json_escaped(&token);
        let body = format!(
            r#"{{"id":"{token}","model":"{slashes}","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi {TOKEN_ENCODED}"}},"finish_reason":"stop"}}]}}"#
        );
        http("200 OK", "Content-Type: application/json\r\n", &body)
    });
    let output = server
        .bnx(dir.path())
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
    server
        .bnx(dir.path())
        .arg("x")
        .assert()
        .success()
        .stdout(format!("Hi {TOKEN_ENCODED}\n"));
    // A batch item's response is masked the same way; its content is the answer.
    let output = server.one_item_batch(dir.path(), &["--json"]);
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
    let server = Hostile::answering(|head| {
        let mut response = json_answer(r#"{"role": "assistant", "content": "fine"}"#);
        let id = format!("X-Conversation-Id: {}\r\n", bearer(head));
        response.splice(17..17, id.into_bytes());
        response
    });
    let output = server
        .bnx(dir.path())
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
    let server = Hostile::answering(|head| {
        let body = json!({"error": {"message": format!("no access for Bearer {}", bearer(head)),
                                    "type": "permission"}});
        let conversation = format!("X-Conversation-Id: {}\r\n", bearer(head));
        http("403 Forbidden", &conversation, &body.to_string())
    });
    let output = server.one_item_batch(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(77), "{}", all_of(&output));
    assert_no_token(&output, "a batch item");
    let line: Value = serde_json::from_str(stdout_of(&output).trim()).unwrap();
    assert_eq!(line["error"]["message"], "no access for Bearer ***");
    assert_eq!(line["bnx"]["conversation_id"], Value::Null);
}

#[test]
fn a_successful_answer_is_written_as_received_even_if_it_quotes_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::answering(|head| {
        let content = json!({"role": "assistant", "content": format!("you sent {}", bearer(head))});
        json_answer(&content.to_string())
    });
    server
        .bnx(dir.path())
        .arg("x")
        .assert()
        .success()
        .stdout(format!("you sent {TOKEN_ECHOED}\n"));
}

// 2. Base URL.

#[test]
fn a_port_out_of_range_or_empty_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    // http's Uri once read :99999 as 34463 (99999 - 65536) and :65616 as 80.
    let wrapped = TcpListener::bind("127.0.0.1:34463").ok();
    for url in [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:65616",
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
    ] {
        let output = bnx_in(dir.path())
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(["-v", "--base-url", url, "x"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{url}");
        let stderr = stderr_of(&output);
        assert!(stderr.contains("port"), "{url}: {stderr}");
        assert!(!stderr.contains("POST"), "{url}: nothing is sent: {stderr}");
        assert_clean_stderr(&stderr);
    }
    if let Some(wrapped) = wrapped {
        wrapped.set_nonblocking(true).unwrap();
        assert!(wrapped.accept().is_err(), "the wrapped port was reached");
    }
}

#[test]
fn user_info_query_and_fragment_are_refused_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::answering(|_| json_answer(r#"{"content": "x"}"#));
    for url in [
        format!("http://me:hunter2@{}", server.addr),
        format!("{}/?key=hunter2", server.origin),
        format!("{}#hunter2", server.origin),
        format!("http://me:hun#ter2@{}", server.addr),
    ] {
        let output = bnx_in(dir.path())
            .env("BLUENEXUS_TOKEN", TOKEN)
            .env("BLUENEXUS_BASE_URL", &url)
            .args(["--json", "x"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{url}");
        let all = all_of(&output);
        assert!(!all.contains("hunter2") && !all.contains("ter2"), "{all}");
        assert!(all.contains("***"), "{all}");
        let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        assert_eq!(doc["error"]["type"], "config");
    }
    assert_eq!(server.requests(), Vec::<String>::new());
}

#[test]
fn a_pasted_endpoint_gets_a_hint_with_the_origin_to_use() {
    let dir = tempfile::tempdir().unwrap();
    bnx_in(dir.path())
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args([
            "--base-url",
            "https://gw.example/team/api/v1/agents/default/chat/completions",
            "x",
        ])
        .assert()
        .code(78)
        .stderr(
            predicate::str::contains("already holds /api/v1").and(predicate::str::contains(
                "hint: use the origin https://gw.example/team\n",
            )),
        );
}

#[test]
fn a_gateway_prefix_is_kept_trailing_slashes_ignored_and_verbose_shows_the_real_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::answering(|_| json_answer(r#"{"content": "via gateway"}"#));
    let output = server
        .bnx(dir.path())
        .env(
            "BLUENEXUS_BASE_URL",
            format!("{}/gw/bluenexus//", server.origin),
        )
        .args(["-v", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    assert_eq!(stdout_of(&output), "via gateway\n");
    let path = "/gw/bluenexus/api/v1/agents/default/chat/completions";
    assert!(
        stderr_of(&output).contains(&format!("POST {}{path} (attempt 1)", server.origin)),
        "{}",
        stderr_of(&output)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with(&format!("POST {path} HTTP/1.1")),
        "{}",
        requests[0]
    );
}

// 3. Proxies.

/// What a SOCKS proxy was asked.
#[derive(Debug, Clone, Default)]
struct SocksSeen {
    version: u8,
    /// `host:port` as the client named it.
    target: String,
    /// The first bytes the client sent through the tunnel.
    tunnelled: Vec<u8>,
}

/// A minimal SOCKS4/4a/5 server: it records the target, grants the connection, records what
/// comes through, and closes.
struct Socks {
    url_host: String,
    seen: Arc<Mutex<Vec<SocksSeen>>>,
}

impl Socks {
    fn start() -> Socks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url_host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let seen = socks_session(&mut stream).unwrap_or_default();
                record.lock().unwrap().push(seen);
            }
        });
        Socks { url_host, seen }
    }

    /// The sessions so far, every connection made before this call included: a sentinel
    /// connection (version 0) is made and waited for, as sessions are served in order.
    fn seen(&self) -> Vec<SocksSeen> {
        drop(TcpStream::connect(&self.url_host).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if let Some(at) = seen.iter().position(|s| s.version == 0) {
                self.seen.lock().unwrap().remove(at);
                return seen[..at].to_vec();
            }
            assert!(Instant::now() < deadline, "the sentinel never arrived");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn socks_session(s: &mut TcpStream) -> std::io::Result<SocksSeen> {
    let mut byte = [0u8; 1];
    let read = |s: &mut TcpStream, n: usize| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf)?;
        Ok(buf)
    };
    s.read_exact(&mut byte)?;
    let mut seen = SocksSeen {
        version: byte[0],
        ..SocksSeen::default()
    };
    if byte[0] == 4 {
        let head = read(s, 7)?; // command, port, address
        let port = u16::from_be_bytes([head[1], head[2]]);
        let until_nul = |s: &mut TcpStream| -> std::io::Result<String> {
            let mut text = Vec::new();
            let mut b = [0u8; 1];
            loop {
                s.read_exact(&mut b)?;
                if b[0] == 0 {
                    return Ok(String::from_utf8_lossy(&text).into_owned());
                }
                text.push(b[0]);
            }
        };
        until_nul(s)?; // user id
        let host = if head[3..6] == [0, 0, 0] {
            until_nul(s)?
        } else {
            format!("{}.{}.{}.{}", head[3], head[4], head[5], head[6])
        };
        seen.target = format!("{host}:{port}");
        s.write_all(&[0, 90, 0, 0, 0, 0, 0, 0])?;
    } else {
        let methods = read(s, 1)?;
        read(s, methods[0] as usize)?;
        s.write_all(&[5, 0])?;
        let request = read(s, 4)?; // version, command, reserved, address type
        let host = match request[3] {
            1 => {
                let ip = read(s, 4)?;
                format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
            }
            3 => {
                let len = read(s, 1)?;
                String::from_utf8_lossy(&read(s, len[0] as usize)?).into_owned()
            }
            _ => "?".into(),
        };
        let port = read(s, 2)?;
        seen.target = format!("{host}:{}", u16::from_be_bytes([port[0], port[1]]));
        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80])?;
    }
    let mut tunnelled = [0u8; 64];
    let n = s.read(&mut tunnelled).unwrap_or(0);
    seen.tunnelled = tunnelled[..n].to_vec();
    Ok(seen)
}

/// A proxy that records one CONNECT line and refuses it.
fn connect_recorder() -> Hostile {
    Hostile::start(|stream, _| {
        let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    })
}

fn through_proxy(dir: &Path, base_url: &str, vars: &[(&str, &str)]) -> Output {
    let mut cmd = bnx_in(dir);
    cmd.env("BLUENEXUS_TOKEN", TOKEN_ECHOED)
        .env("BLUENEXUS_BASE_URL", base_url)
        .args(["--retries", "0", "--connect-timeout", "5", "x"]);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

#[test]
fn socks_proxies_carry_the_request_and_resolve_where_their_scheme_says() {
    let dir = tempfile::tempdir().unwrap();
    for (scheme, base_url, version, target) in [
        (
            "socks5h",
            "https://api.bluenexus.test",
            5,
            "api.bluenexus.test:443",
        ),
        ("socks5", "https://192.0.2.10:8443", 5, "192.0.2.10:8443"),
        ("socks4", "https://192.0.2.10", 4, "192.0.2.10:443"),
        (
            "socks4a",
            "https://api.bluenexus.test:444",
            4,
            "api.bluenexus.test:444",
        ),
    ] {
        let socks = Socks::start();
        let proxy = format!("{scheme}://{}", socks.url_host);
        let output = through_proxy(dir.path(), base_url, &[("ALL_PROXY", &proxy)]);
        assert_eq!(
            output.status.code(),
            Some(69),
            "{scheme}: {}",
            all_of(&output)
        );
        assert!(
            stderr_of(&output).contains(&format!("through the proxy {proxy}")),
            "{scheme}: {}",
            stderr_of(&output)
        );
        let seen = socks.seen();
        assert_eq!(seen.len(), 1, "{scheme}: {seen:?}");
        assert_eq!(
            (seen[0].version, seen[0].target.as_str()),
            (version, target)
        );
        assert_eq!(
            seen[0].tunnelled.first(),
            Some(&0x16),
            "{scheme}: TLS starts inside the tunnel"
        );
        let tunnelled = String::from_utf8_lossy(&seen[0].tunnelled);
        assert!(!tunnelled.contains("ECHO"), "{scheme}: {tunnelled}");
    }
}

#[test]
fn https_proxy_beats_all_proxy_in_either_case() {
    let dir = tempfile::tempdir().unwrap();
    for (https_var, all_var) in [("HTTPS_PROXY", "ALL_PROXY"), ("https_proxy", "all_proxy")] {
        let socks = Socks::start();
        let connect = connect_recorder();
        let output = through_proxy(
            dir.path(),
            "https://api.bluenexus.test",
            &[
                (all_var, &format!("socks5h://{}", socks.url_host)),
                (https_var, &connect.origin),
            ],
        );
        assert_eq!(output.status.code(), Some(69), "{}", all_of(&output));
        let requests = connect.requests();
        assert_eq!(requests.len(), 1, "{https_var}");
        assert!(requests[0].starts_with("CONNECT api.bluenexus.test:443 HTTP/1.1"));
        assert!(!requests[0].contains("ECHO"));
        assert!(socks.seen().is_empty(), "{all_var} was not used");
    }
}

#[test]
fn no_proxy_sends_the_host_direct_and_a_dns_failure_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let connect = connect_recorder();
    let output = through_proxy(
        dir.path(),
        "https://api.bluenexus.invalid",
        &[
            ("HTTPS_PROXY", &connect.origin),
            ("NO_PROXY", "localhost,.invalid"),
        ],
    );
    assert_eq!(output.status.code(), Some(69), "{}", all_of(&output));
    assert!(
        stderr_of(&output).contains("cannot resolve the host name api.bluenexus.invalid"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(connect.requests(), Vec::<String>::new());
}

#[test]
fn an_unusable_proxy_url_is_exit_78_never_a_direct_connection() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("ALL_PROXY", "ftp://127.0.0.1:1"),
        ("HTTPS_PROXY", "socks5://127.0.0.1:99999"),
        ("https_proxy", "http://me:hunter2@127.0.0.1:"),
        ("all_proxy", "socks5h://[::1"),
        ("HTTPS_PROXY", "http://127.0.0.1:1/path?k=hunter2"),
    ] {
        // A direct connection would end in a DNS failure (69), not 78.
        let output = through_proxy(dir.path(), "https://api.bluenexus.invalid", &[(var, value)]);
        assert_eq!(
            output.status.code(),
            Some(78),
            "{var}={value}: {}",
            all_of(&output)
        );
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(&format!("{var} is not a proxy URL")),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn a_loopback_api_is_never_sent_through_a_socks_proxy() {
    let socks = Socks::start();
    let mock = Mock::start(&[]);
    mock.bnx()
        .env("ALL_PROXY", format!("socks5h://{}", socks.url_host))
        .arg("x")
        .assert()
        .success()
        .stdout("[turn 1] x\n");
    mock.only_request();
    assert!(socks.seen().is_empty());
}

// 4. Saved conversations belong to their API.

#[test]
fn a_mock_run_never_reads_or_replaces_the_real_apis_conversation() {
    let mock = Mock::start(&[]);
    let legacy = mock.state_dir().join("bluenexus/conversations");
    fs::create_dir_all(&legacy).unwrap();
    fs::write(legacy.join("default"), "conv-real-42\n").unwrap();
    mock.bnx()
        .args(["-c", "first"])
        .assert()
        .success()
        .stderr(predicate::str::contains("no saved conversation"));
    mock.bnx().args(["-c", "second"]).assert().success();
    let requests = mock.requests(2);
    assert!(requests[0]["body"].get("conversationId").is_none());
    assert_eq!(requests[1]["body"]["conversationId"], "conv-000001");
    assert_eq!(
        fs::read_to_string(legacy.join("default")).unwrap(),
        "conv-real-42\n",
        "the real API's conversation is untouched"
    );
    // The default origin still finds the conversation an older bnx saved.
    let output = mock
        .bnx()
        .env_remove("BLUENEXUS_BASE_URL")
        .args(["--dry-run", "-c", "third"])
        .output()
        .unwrap();
    let request: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(request["body"]["conversationId"], "conv-real-42");
}

#[test]
fn a_250_character_agent_id_saves_and_no_file_name_carries_it_or_the_token() {
    let mock = Mock::start(&[]);
    let agent = "a".repeat(250);
    mock.bnx()
        .args(["-a", &agent, "-c", "one"])
        .assert()
        .success()
        .stderr(predicate::str::contains("no saved conversation"));
    mock.bnx()
        .args(["-a", &agent, "-c", "two"])
        .assert()
        .success()
        .stderr("");
    let requests = mock.requests(2);
    assert_eq!(requests[1]["body"]["conversationId"], "conv-000001");
    for entry in walk(&mock.state_dir()) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() <= 64, "{name}");
        // Not "aaaa": one hex digest in a thousand holds that by chance.
        assert!(
            !name.contains(&agent[..16]) && !name.contains(TOKEN),
            "{name}"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

// 5. A wait too long for any clock.

#[test]
fn a_huge_retry_after_fails_at_once_and_is_reported_as_a_number() {
    let dir = tempfile::tempdir().unwrap();
    for (status, header, code, reported) in [
        (
            "429 Too Many Requests",
            "Retry-After: 99999999999999999999",
            75,
            Some(1e20),
        ),
        (
            "429 Too Many Requests",
            "Retry-After: 1e300",
            75,
            Some(1e300),
        ),
        (
            "429 Too Many Requests",
            "retry-after-ms: 1e30",
            75,
            Some(1e27),
        ),
        ("503 Service Unavailable", "Retry-After: 1e300", 69, None),
    ] {
        let headers = format!("{header}\r\n");
        let server = Hostile::answering(move |_| http(status, &headers, ""));
        let output = server
            .bnx(dir.path())
            .args(["--json", "--retries", "3", "x"])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{header}: {}",
            all_of(&output)
        );
        assert_eq!(server.requests().len(), 1, "{header}: one request");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("longer than --max-retry-wait 60s"),
            "{stderr}"
        );
        let stdout = stdout_of(&output);
        let doc: Value = serde_json::from_str(&stdout).unwrap();
        match reported {
            None => assert!(doc["bnx"].get("retry_after").is_none(), "{stdout}"),
            // A JSON number of that very value, however serde_json spells it (1e300, 1e+300).
            Some(secs) => assert_eq!(doc["bnx"]["retry_after"].as_f64(), Some(secs), "{stdout}"),
        }
    }
}

#[test]
fn a_negative_or_unparseable_retry_after_counts_as_absent() {
    let dir = tempfile::tempdir().unwrap();
    for header in ["Retry-After: -5", "Retry-After: soon", "Retry-After: inf"] {
        let headers = format!("{header}\r\n");
        let server = Hostile::answering(move |_| http("429 Too Many Requests", &headers, ""));
        let output = server
            .bnx(dir.path())
            .args(["--json", "--retries", "1", "x"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(75), "{header}");
        assert_eq!(
            server.requests().len(),
            2,
            "{header}: retried after the backoff"
        );
        let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        assert!(doc["bnx"].get("retry_after").is_none(), "{header}: {doc}");
    }
}

// 6. Token sources.

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

// 7. An early answer to a large upload.

/// More than the kernel buffers on both ends hold, so that writing it fails once the server
/// stops reading.
const LARGE: usize = 32 * 1024 * 1024;

fn large_prompt(server: &Hostile, dir: &Path, args: &[&str]) -> Output {
    server
        .bnx(dir)
        .args(args)
        .args(["--messages", "-"])
        .write_stdin(json!([{"role": "user", "content": "x".repeat(LARGE)}]).to_string())
        .output()
        .unwrap()
}

#[test]
fn a_server_refusing_a_large_upload_early_gives_its_status() {
    let dir = tempfile::tempdir().unwrap();
    for (status, code) in [("413 Payload Too Large", 1), ("401 Unauthorized", 77)] {
        let server = Hostile::start(move |stream, _| {
            let body = r#"{"error":{"message":"refused early","type":"x"}}"#;
            let _ = stream.write_all(&http(status, "Content-Type: application/json\r\n", body));
            // Closed with the body unread: the kernel resets the connection.
        });
        let output = large_prompt(&server, dir.path(), &[]);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{status}: {}",
            all_of(&output)
        );
        let stderr = stderr_of(&output);
        assert!(
            stderr.starts_with(&format!("bnx: error: HTTP {status}: refused early")),
            "{stderr}"
        );
        assert_eq!(server.requests().len(), 1, "{status}: not retried");
    }
}

#[test]
fn a_server_closing_during_the_upload_says_so_with_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(|stream, _| {
        let mut some = vec![0u8; 64 * 1024];
        let _ = stream.read_exact(&mut some);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let output = large_prompt(&server, dir.path(), &["--json"]);
    assert_eq!(output.status.code(), Some(69), "{}", all_of(&output));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(
            "bnx: error: the server closed the connection while the request (32.0 MiB) was being sent"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_clean_stderr(&stderr);
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["error"]["type"], "network");
    assert_eq!(server.requests().len(), 1, "not retried");
}

// 8. `--json` gaps.

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
        let server = Hostile::answering(move |_| {
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

// 9. Answers that carry no text.

#[test]
fn an_answer_of_tool_calls_writes_nothing_and_says_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::answering(|_| {
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
fn streaming(events: &'static [&'static str]) -> Hostile {
    Hostile::answering(move |_| sse(events))
}

/// `bnx -s` against `server` succeeds, writing `stdout` and `stderr`.
fn assert_streamed(server: &Hostile, dir: &Path, stdout: &str, stderr: &str) {
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
    let server = Hostile::answering(|_| {
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

// 10. Write failures.

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

// 11. Smaller ones.

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

#[test]
fn messages_with_a_key_twice_or_a_directory_are_bad_input() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin(r#"[{"role": "user", "content": "a", "content": "b"}]"#)
        .assert()
        .code(65)
        .stderr(predicate::str::contains("duplicate field `content`"));
    let dir = mock.dir.path().to_str().unwrap().to_string();
    mock.bnx()
        .args(["--messages", &dir, "x"])
        .assert()
        .code(65)
        .stderr(predicate::str::contains(format!(
            "{dir}: it is a directory"
        )));
    mock.assert_no_requests();
}
