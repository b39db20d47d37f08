//! The credit ledger's rows: what recording an answer (and checking `--budget` before it) adds
//! to a round trip, and what a ledger holding a month of requests costs: its size on disk, a
//! `--spent`, and a round trip that rewrites it.
//!
//! The cost is told apart from the rest of a round trip by two servers that answer the same
//! bytes, but for the `X-Credits-*` headers: without them the ledger has nothing to record and
//! touches no file. Neither sends `X-Conversation-Id`, so no run saves a conversation.

use std::io::BufReader;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bnx::ledger::book::{Book, Entry};
use bnx::ledger::file::boot;
use bnx::mock::http::{read_request, respond};

use super::harness::{bnx_at, interleaved_pairs, ms, ratio, Report};
use crate::support::mock::BNX;

/// A server answering every request with one small answer, with or without credit headers;
/// its origin.
fn server(credits: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let body = br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if credits {
            headers.push(("X-Credits-Consumed", "1".into()));
            headers.push(("X-Credits-Remaining", "999000".into()));
        }
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut input = BufReader::new(stream.try_clone().unwrap());
            if read_request(&mut input).is_some() {
                let _ = respond(&mut stream, 200, &headers, body, true);
            }
        }
    });
    origin
}

/// `bnx ARGS` against `origin`, keeping its state in `state`.
fn bnx(origin: &str, state: &Path, args: &[&str]) -> Command {
    let mut cmd = bnx_at(origin, args);
    cmd.env("BLUENEXUS_STATE_DIR", state);
    cmd
}

/// A book of `requests` answers of 1 credit each, spread evenly over the 31 days before now,
/// so that every minute holds some: the largest a book can be.
fn month_of(requests: u64) -> Book {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let span = 31 * 24 * 3600 * 1000 - 60_000;
    let mut book = Book::default();
    // Oldest first, as they would have come: each lands at the end of the list.
    for i in (0..requests).rev() {
        let entry = Entry {
            consumed: Some(1.0),
            remaining: Some(i as f64),
            age: Duration::from_millis(span * i / requests.max(1)),
        };
        book.record(&entry, now);
    }
    book.written = now;
    book.boot = boot();
    book
}

/// The one book in `state`'s ledger.
fn book_path(state: &Path) -> PathBuf {
    let mut books = std::fs::read_dir(state.join("credits"))
        .unwrap()
        .map(|e| e.unwrap().path());
    books.next().expect("a book was written")
}

pub fn rows(report: &mut Report, runs: usize, requests: u64) {
    let (with, without) = (server(true), server(false));
    let state = tempfile::tempdir().unwrap();
    let none = tempfile::tempdir().unwrap();
    for (what, args) in [
        ("recording each answer", &["hi"][..]),
        (
            "checking --budget before each request, and recording",
            &["--budget", "1e9/1d", "hi"],
        ),
    ] {
        let (counted, plain, added) = interleaved_pairs(
            runs,
            || bnx(&with, state.path(), args),
            || bnx(&without, none.path(), &["hi"]),
        );
        report.row(
            &format!(
                "ledger: {what}, `bnx hi` with credit headers vs the same answer without \
                 (median of {runs} interleaved pairs; added: median difference)"
            ),
            format!("{} (+{})", ms(counted.wall), ms(added)),
            ms(plain.wall),
            Some(ratio(counted.wall, plain.wall)),
            "added < 0.3 ms",
            Some(added < Duration::from_micros(300)),
        );
    }

    // A month of requests, every minute of it.
    let path = book_path(state.path());
    let book = month_of(requests);
    std::fs::write(&path, book.encode()).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    report.row(
        &format!(
            "ledger: size after {requests} recorded requests over 31 days ({} minutes)",
            book.minutes.len()
        ),
        format!("{:.0} KiB", size as f64 / 1024.0),
        String::new(),
        None,
        "< 1 MiB",
        Some(size < 1 << 20),
    );
    let (spent, version, _) = interleaved_pairs(
        runs,
        || bnx(&with, state.path(), &["--spent"]),
        || {
            let mut cmd = Command::new(BNX);
            cmd.arg("--version").stdout(std::process::Stdio::null());
            cmd
        },
    );
    report.row(
        "ledger: `bnx --spent` on that ledger (baseline: `bnx --version`)",
        ms(spent.wall),
        ms(version.wall),
        Some(ratio(spent.wall, version.wall)),
        "< 5 ms",
        Some(spent.wall < Duration::from_millis(5)),
    );
    let (full, plain, added) = interleaved_pairs(
        runs,
        || bnx(&with, state.path(), &["--budget", "1e9/1d", "hi"]),
        || bnx(&without, none.path(), &["hi"]),
    );
    report.row(
        "ledger: `--budget` and recording with that ledger (rewritten whole each time) vs \
         no credit headers",
        format!("{} (+{})", ms(full.wall), ms(added)),
        ms(plain.wall),
        Some(ratio(full.wall, plain.wall)),
        "",
        None,
    );
}
