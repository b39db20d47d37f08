//! `bnx` against servers that misbehave on purpose: endless headers, an endless SSE line, an
//! endless body, bytes dripped one a second. Each run must end with the exit code the contract
//! gives, within the configured limits, in bounded memory (peak RSS measured).

use std::time::Duration;

use crate::util::*;

/// Serves one connection with `steps`, once the whole request is read.
fn server(steps: Vec<Step>) -> String {
    Scripted::replies(vec![steps]).origin
}

fn run(origin: &str, args: &[&str]) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let run = run_measured(
        isolated(BNX, dir.path())
            .env("BLUENEXUS_TOKEN", TOKEN)
            .env("BLUENEXUS_BASE_URL", origin)
            .args(["--retries", "0"])
            .args(args),
    );
    // Shown with --nocapture: the figures for the record.
    eprintln!(
        "{args:?}: exit {:?} after {:?}, peak RSS {} KiB",
        run.code, run.elapsed, run.max_rss_kib
    );
    run
}

const MIB: u64 = 1024;

/// `head`, then `filler` until the client goes away.
fn endless(head: &[u8], filler: &[u8]) -> Vec<Step> {
    let block = filler.repeat(64 * 1024 / filler.len());
    vec![Step::Send(head.to_vec()), Step::Repeat(block)]
}

/// `head`, then `byte` once a second, 30 times.
fn drip(head: &[u8], byte: u8) -> Vec<Step> {
    let mut steps = vec![Step::Send(head.to_vec())];
    for _ in 0..30 {
        steps.extend([Step::Sleep(Duration::from_secs(1)), Step::Send(vec![byte])]);
    }
    steps
}

#[test]
fn endless_headers_are_a_protocol_error() {
    let origin = server(endless(
        b"HTTP/1.1 200 OK\r\n",
        b"X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    ));
    let run = run(&origin, &["x"]);
    assert_eq!(run.code, Some(76), "{}", run.stderr);
    assert!(run.stderr.contains("headers"), "{}", run.stderr);
    assert!(
        run.max_rss_kib < 32 * MIB,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
}

#[test]
fn an_endless_sse_line_is_refused_at_the_event_cap() {
    let origin = server(endless(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: ",
        b"a",
    ));
    let run = run(&origin, &["-s", "x"]);
    assert_eq!(run.code, Some(76), "{}", run.stderr);
    assert!(
        run.stderr.contains("larger than 16777216 bytes"),
        "{}",
        run.stderr
    );
    assert!(
        run.max_rss_kib < 64 * MIB,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn an_endless_whole_body_is_refused_at_the_body_cap() {
    let origin = server(endless(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        b"[1,",
    ));
    let run = run(&origin, &["--json", "x"]);
    assert_eq!(run.code, Some(76), "{}", run.stderr);
    assert!(run.stderr.contains("larger than 64 MiB"), "{}", run.stderr);
    assert!(
        run.max_rss_kib < 160 * MIB,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["error"]["type"], "protocol");
}

#[test]
fn a_body_shorter_than_its_length_is_a_protocol_error() {
    let short = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{\"choices\":";
    let origin = server(vec![Step::Send(short.to_vec())]);
    let run = run(&origin, &["x"]);
    assert_eq!(run.code, Some(76), "{}", run.stderr);
}

#[test]
fn a_stream_dripping_bytes_without_events_times_out() {
    let origin = server(drip(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ",
        b'a',
    ));
    let run = run(&origin, &["-s", "--timeout", "2", "x"]);
    assert_eq!(run.code, Some(69), "{}", run.stderr);
    assert!(
        run.stderr.contains("no event for longer than --timeout"),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn a_whole_answer_dripping_bytes_times_out() {
    let origin = server(drip(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        b' ',
    ));
    let run = run(&origin, &["--timeout", "2", "x"]);
    assert_eq!(run.code, Some(69), "{}", run.stderr);
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn headers_dripping_bytes_time_out() {
    let origin = server(drip(b"HTTP/1.1 200", b' '));
    let run = run(&origin, &["-s", "--timeout", "2", "x"]);
    assert_eq!(run.code, Some(69), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn a_server_that_accepts_and_never_answers_times_out() {
    let origin = server(vec![Step::Silence]);
    let run = run(&origin, &["--timeout", "1", "x"]);
    assert_eq!(run.code, Some(69), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(8),
        "took {:?}",
        run.elapsed
    );
}

const JSON_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 55\r\n\r\n\
{\"choices\":[{\"message\":{\"content\":\"whole\"},\"index\":0}]}";

const SSE_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
data: {\"choices\":[{\"delta\":{\"content\":\"streamed\"}}]}\n\ndata: [DONE]\n\n";

#[test]
fn the_answer_is_read_by_its_content_type_whatever_was_asked() {
    let origin = server(vec![Step::Send(JSON_ANSWER.to_vec())]);
    let whole = run(&origin, &["-s", "x"]);
    assert_eq!(
        (whole.code, whole.stdout.as_str()),
        (Some(0), "whole\n"),
        "{}",
        whole.stderr
    );
    let origin = server(vec![Step::Send(SSE_ANSWER.to_vec())]);
    let streamed = run(&origin, &["x"]);
    assert_eq!(
        (streamed.code, streamed.stdout.as_str()),
        (Some(0), "streamed\n"),
        "{}",
        streamed.stderr
    );
}

#[test]
fn a_5xx_asking_for_a_longer_wait_than_allowed_fails_at_once() {
    let origin = server(vec![Step::Send(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let run = run_measured(
        isolated(BNX, dir.path())
            .env("BLUENEXUS_TOKEN", TOKEN)
            .env("BLUENEXUS_BASE_URL", &origin)
            .args(["--retries", "3", "--max-retry-wait", "5", "x"]),
    );
    assert_eq!(run.code, Some(69), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("asked to wait 120s, longer than --max-retry-wait 5s"),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
}
