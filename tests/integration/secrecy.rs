//! The token goes nowhere but to the API host: not into any output or log, not to a proxy that
//! could read it, not to a redirect target. Anything that could smuggle a header is refused
//! before a byte is sent.

use std::fs;

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

/// A server that records every request sent to it and answers `reply`.
struct Recorder(Scripted);

impl Recorder {
    fn start(reply: &'static [u8]) -> Recorder {
        Recorder(Scripted::answering(move |_| reply.to_vec()))
    }

    /// Every byte received, from every connection made so far.
    fn seen(&self) -> String {
        let requests = self.0.requests();
        requests
            .iter()
            .map(|r| format!("{}{}", r.head, String::from_utf8_lossy(&r.body)))
            .collect()
    }
}

const SECRET: &str = "tok-SECRET-4242";

#[test]
fn an_https_proxy_only_ever_sees_connect_never_the_token() {
    let proxy = Recorder::start(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    let dir = tempfile::tempdir().unwrap();
    bnx_in(dir.path())
        .env("BLUENEXUS_TOKEN", SECRET)
        .env("HTTPS_PROXY", &proxy.0.origin)
        .env("BLUENEXUS_BASE_URL", "https://api.bluenexus.test")
        .args(["--retries", "0", "x"])
        .assert()
        .code(69)
        .stderr(predicate::str::contains("proxy"));
    let seen = proxy.seen();
    assert!(
        seen.starts_with("CONNECT api.bluenexus.test:443 HTTP/1.1"),
        "{seen}"
    );
    assert!(!seen.contains("SECRET"), "{seen}");
}

#[test]
fn a_loopback_api_is_never_sent_through_a_proxy() {
    let proxy = Recorder::start(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    let mock = Mock::start(&[]);
    for var in [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "http_proxy",
    ] {
        mock.bnx()
            .env(var, &proxy.0.origin)
            .arg("x")
            .assert()
            .success()
            .stdout("[turn 1] x\n");
    }
    assert_eq!(proxy.seen(), "");
}

#[test]
fn a_redirect_target_receives_nothing() {
    let elsewhere = Recorder::start(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let target = format!(
        "redirect:{}/api/v1/agents/default/chat/completions",
        elsewhere.0.origin
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
    assert_eq!(elsewhere.seen(), "");
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
}
