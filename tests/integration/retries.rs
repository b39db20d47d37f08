//! Retries, timeouts and waits: which failures are retried, how often, with which notices, and
//! when `bnx` gives up at once.

use crate::util::*;

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
        let server = Scripted::answering(move |_| http(status, &headers, ""));
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
        let server = Scripted::answering(move |_| http("429 Too Many Requests", &headers, ""));
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

/// A cron mail must say where the request failed to go: every network error names the host and
/// the port (the default one too), in each retry notice, the error and the `--json` document.
#[test]
fn network_errors_name_the_host_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let place = closed.local_addr().unwrap().to_string();
    drop(closed);
    let output = isolated(BNX, dir.path())
        .env("BLUENEXUS_BASE_URL", format!("http://{place}"))
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args(["--retries", "1", "--json", "x"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    let refused = format!("connection to {place} failed before an answer: Connection refused");
    let stderr = stderr_of(&output);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(&format!("bnx: {refused}")), "{stderr}");
    assert!(lines[0].contains("; retrying in"), "{stderr}");
    assert!(
        lines[1].starts_with(&format!("bnx: error: {refused}")),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&refused),
        "{doc}"
    );

    let (origin, _received) = silent_server();
    let place = origin.trim_start_matches("http://");
    let output = isolated(BNX, dir.path())
        .env("BLUENEXUS_BASE_URL", &origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args(["--retries", "0", "--timeout", "0.5", "x"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    assert_eq!(
        stderr_of(&output),
        format!("bnx: error: no answer from {place} within 0.5s (--timeout)\n")
    );
}
