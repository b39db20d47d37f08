//! `bnx-mock` against clients that attack its limits, over real sockets: slow and dripping
//! heads, more connections than allowed, idle keep-alive, stalled uploads and clients that stop
//! reading. What the mock costs meanwhile is read from `/proc/PID/status` and printed (see it
//! with `cargo test --test integration mock_hostile -- --nocapture`); the tests assert counts,
//! statuses and bounds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::mock::content_length;
use crate::util::*;
use serde_json::Value;

const CHAT: &str = "/api/v1/agents/default/chat/completions";
const MIB: u64 = 1024 * 1024;
/// The largest body the mock accepts, and its bound on bodies in flight (SPEC section 6).
const MAX_BODY: usize = 8 * 1024 * 1024;
const MAX_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// The mock's resident memory in bytes and its thread count.
fn costs(mock: &Mock) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", mock.pid())).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap()
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// Polls `check` for up to 10 s; fails the test with `what` if it never holds.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(mock: &Mock) -> TcpStream {
    let stream = TcpStream::connect(&mock.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A connection whose request head has begun and never ends.
fn slow_header(mock: &Mock) -> TcpStream {
    let mut stream = connect(mock);
    write!(stream, "POST {CHAT} HTTP/1.1\r\nX-Slow: a").unwrap();
    stream
}

/// Everything the server sends until it closes the connection (a reset counts as a close).
fn read_all(mut stream: TcpStream) -> String {
    let mut bytes = Vec::new();
    if let Err(err) = stream.read_to_end(&mut bytes) {
        assert_ne!(err.kind(), std::io::ErrorKind::WouldBlock, "not closed");
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The response head, read byte by byte so nothing after it is consumed.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A well-behaved client's request: its status, or `None` when the connection failed.
fn normal_request(mock: &Mock) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let response = agent
        .post(format!("{}{CHAT}", mock.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send(r#"{"messages": [{"role": "user", "content": "hi"}]}"#);
    response.ok().map(|r| r.status().as_u16())
}

fn statuses(lines: &[Value]) -> Vec<Option<u64>> {
    lines.iter().map(|l| l["status"].as_u64()).collect()
}

#[test]
fn many_slow_header_connections_do_not_lock_out_a_normal_client() {
    let mock = Mock::start(&[]);
    let (rss_before, threads_before) = costs(&mock);
    let held: Vec<TcpStream> = (0..200).map(|_| slow_header(&mock)).collect();
    wait_until("a thread for each slow connection", || {
        costs(&mock).1 >= threads_before + 200
    });
    let (rss_held, threads_held) = costs(&mock);
    let started = Instant::now();
    assert_eq!(normal_request(&mock), Some(200));
    let waited = started.elapsed();
    eprintln!(
        "200 slow-header connections held: RSS {:.1} -> {:.1} MiB, threads {threads_before} -> \
         {threads_held}; a normal client was served in {waited:?}",
        rss_before as f64 / MIB as f64,
        rss_held as f64 / MIB as f64,
    );
    assert!(rss_held < rss_before + 32 * MIB, "{rss_held}");
    drop(held);
}

#[test]
fn past_the_connection_cap_one_more_gets_503_until_the_header_deadline_frees_a_slot() {
    let mock = Mock::start(&["--max-connections", "8", "--header-timeout", "1"]);
    let (_, threads_before) = costs(&mock);
    let held: Vec<TcpStream> = (0..8).map(|_| slow_header(&mock)).collect();
    wait_until("a thread for each slow connection", || {
        costs(&mock).1 >= threads_before + 8
    });
    let refused = read_all(connect(&mock));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("more than 8 connections"), "{refused}");
    let started = Instant::now();
    let mut attempts = 0;
    while normal_request(&mock) != Some(200) {
        attempts += 1;
        assert!(
            attempts < 100,
            "a normal client is served once the deadline frees a slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "8 of 8 connections held by slow heads: a normal client retrying every 50 ms was \
         served after {:?} ({attempts} refused attempts)",
        started.elapsed()
    );
    for stream in held {
        let reply = read_all(stream);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    }
    let lines = mock.requests(10 + attempts);
    let count = |status| statuses(&lines).iter().filter(|s| **s == status).count();
    assert_eq!(count(Some(408)), 8, "{lines:#?}");
    assert_eq!(count(Some(503)), 1 + attempts, "{lines:#?}");
    assert_eq!(count(Some(200)), 1, "{lines:#?}");
}

#[test]
fn a_connection_dripping_its_head_is_closed_at_the_deadline() {
    let mock = Mock::start(&["--header-timeout", "1"]);
    let mut stream = connect(&mock);
    let reader = std::thread::spawn({
        let stream = stream.try_clone().unwrap();
        move || read_all(stream)
    });
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nX-Drip: {}\r\n\r\n",
        "a".repeat(200)
    );
    let mut sent = 0;
    for byte in head.bytes() {
        if reader.is_finished() || stream.write_all(&[byte]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = reader.join().unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(sent < head.len(), "closed mid-head, after {sent} bytes");
    eprintln!("a head dripped at 20 bytes a second was cut off after {sent} bytes");
    let line = mock.only_request();
    assert_eq!(line["status"], 408);
    assert_eq!(line["reason"], "the request head arrived too slowly");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let mock = Mock::start(&["--idle-timeout", "0.3"]);
    let mut stream = connect(&mock);
    let body = r#"{"messages": [{"role": "user", "content": "hi"}]}"#;
    write!(
        stream,
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert!(head.contains("Connection: keep-alive"), "{head}");
    stream
        .read_exact(&mut vec![0; content_length(&head)])
        .unwrap();
    assert_eq!(read_all(stream), "", "closed with nothing more sent");
    assert_eq!(mock.requests(2).len(), 1, "an idle close is not a request");
}

#[test]
fn stalled_uploads_are_bounded_in_memory_and_dropped_without_progress() {
    let mock = Mock::start(&["--progress-timeout", "2"]);
    let (rss_before, threads_before) = costs(&mock);
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\n\
         Content-Length: {MAX_BODY}\r\n\r\n"
    );
    let (mut stalled, mut refused) = (Vec::new(), 0);
    for _ in 0..20 {
        let mut stream = connect(&mock);
        stream.write_all(head.as_bytes()).unwrap();
        let interim = read_head(&mut stream);
        if interim.starts_with("HTTP/1.1 100") {
            // All of the body but its last byte, then silence.
            stream.write_all(&vec![b'x'; MAX_BODY - 1]).unwrap();
            stalled.push(stream);
        } else {
            assert!(interim.starts_with("HTTP/1.1 503"), "{interim}");
            refused += 1;
        }
    }
    assert_eq!(stalled.len(), MAX_IN_FLIGHT / MAX_BODY);
    assert_eq!(refused, 20 - stalled.len());
    let held = (stalled.len() * MAX_BODY) as u64;
    wait_until("the mock holds the stalled bodies", || {
        costs(&mock).0 >= rss_before + held * 7 / 8
    });
    let (rss_held, threads_held) = costs(&mock);
    eprintln!(
        "20 clients stalled one byte short of an 8 MiB upload: {} held, {refused} refused; RSS \
         {:.1} -> {:.1} MiB, threads {threads_before} -> {threads_held}",
        stalled.len(),
        rss_before as f64 / MIB as f64,
        rss_held as f64 / MIB as f64,
    );
    assert!(rss_held < rss_before + held + 24 * MIB, "{rss_held}");
    for stream in stalled {
        let reply = read_all(stream);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    }
    assert_eq!(normal_request(&mock), Some(200), "the budget is free again");
    let lines = mock.requests(21);
    let count = |status| statuses(&lines).iter().filter(|s| **s == status).count();
    assert_eq!((count(Some(503)), count(Some(408))), (12, 8), "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l["reason"] == "the request body stopped arriving"));
}

/// Sends a request for a streamed answer on `stream`, and reads nothing of it.
fn ask_for_a_stream(mut stream: TcpStream) -> TcpStream {
    let body = r#"{"messages": [{"role": "user", "content": "hi"}], "stream": true}"#;
    write!(
        stream,
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

#[test]
fn a_client_that_stops_reading_its_answer_is_dropped() {
    let mock = Mock::start(&[
        "--progress-timeout",
        "0.5",
        "--answer-size",
        "50000000",
        "--chunks",
        "1000",
    ]);
    let (_, threads_before) = costs(&mock);
    let stream = ask_for_a_stream(connect(&mock));
    let line = mock.only_request();
    assert_eq!(line["reason"], "the client stopped reading the answer");
    assert_eq!(line["status"], Value::Null);
    assert!(line["duration_ms"].as_u64().unwrap() >= 500);
    wait_until("the connection's thread has ended", || {
        costs(&mock).1 == threads_before
    });
    let received = read_all(stream).len();
    assert!(received < 50_000_000, "{received}");
}

/// Makes `stream`'s receive buffer as small as the kernel allows near `bytes`.
fn shrink_receive_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt(2) with a pointer to an int and its size, on a socket we own.
    let done = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(done, 0);
}

#[test]
fn a_client_that_stops_reading_a_huge_stream_is_dropped_within_a_second_of_the_deadline() {
    let mock = Mock::start(&[
        "--progress-timeout",
        "2",
        "--answer-size",
        "200000000",
        "--chunks",
        "20000",
    ]);
    let stream = connect(&mock);
    shrink_receive_buffer(&stream, 16 * 1024);
    let _stream = ask_for_a_stream(stream);
    let line = mock.only_request();
    assert_eq!(line["reason"], "the client stopped reading the answer");
    let held = line["duration_ms"].as_u64().unwrap();
    eprintln!("a client reading nothing of a 200 MB stream was held {held} ms (deadline 2000)");
    assert!((2000..3000).contains(&held), "{held} ms");
}

#[test]
fn hundreds_of_heads_dripping_a_byte_a_second_are_all_closed_within_a_second_of_the_deadline() {
    let mock = Mock::start(&["--header-timeout", "2", "--max-connections", "400"]);
    // All connected at once, from one thread, as fast as it can: more than the kernel's usual
    // queue of connections not yet accepted.
    let mut open: Vec<TcpStream> = (0..300)
        .map(|_| {
            let stream = TcpStream::connect(&mock.addr).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let head = format!("POST {CHAT} HTTP/1.1\r\nX-Drip: {}", "a".repeat(20));
    let mut reply = [0; 256];
    let until = Instant::now() + Duration::from_secs(10);
    for tick in 0.. {
        if open.is_empty() || Instant::now() > until {
            break;
        }
        if tick % 20 == 0 {
            let byte = [head.as_bytes()[(tick / 20) % head.len()]];
            for stream in &mut open {
                let _ = stream.write(&byte);
            }
        }
        open.retain_mut(|stream| {
            matches!(stream.read(&mut reply), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open.is_empty(),
        "{} connections still open after 10 s",
        open.len()
    );
    // How long each was held, as the mock measured it from its accept: this test's own polling
    // of 300 sockets lags on a loaded machine, the mock's clock does not.
    let lines = mock.requests(300);
    assert_eq!(lines.len(), 300, "each one logged");
    let held: Vec<u64> = lines
        .iter()
        .map(|l| l["duration_ms"].as_u64().unwrap())
        .collect();
    let longest = held.iter().max().unwrap();
    let late = held.iter().filter(|&&ms| ms >= 3000).count();
    eprintln!("300 dripping heads, deadline 2 s: the longest held {longest} ms, {late} past 3 s");
    assert_eq!(
        late, 0,
        "every connection closed within a second of its deadline"
    );
}
