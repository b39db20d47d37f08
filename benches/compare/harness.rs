//! The benchmark harness behind `cargo bench --bench compare`: `bnx` measured side by side with
//! `curl`, `curl | jq` and the official `openai` Python SDK, against `bnx-mock` on 127.0.0.1, in
//! one run; streams also against the mock's answer replayed from memory (`floor.rs`). Medians of
//! several runs; CPU time and peak RSS from `wait4`. It prints a table with PASS/MISS per target
//! and never fails on a number: timing is not a test.
//!
//! `Scale::Smoke` runs every measurement once or twice on tiny inputs and skips the Python SDK,
//! so a test can prove the harness still works without taking a benchmark's time.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bnx::mock::http::{read_request, Stream};

use super::floor::Floor;
use super::ledger;
use crate::support::measure::{self, Cost};
use crate::support::mock::{Mock, BNX, TOKEN};

const CHAT: &str = "/api/v1/agents/default/chat/completions";
const STREAM_BODY: &str = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Smoke,
    Full,
}

struct Params {
    startup_runs: usize,
    request_runs: usize,
    stream_runs: usize,
    sdk_stream_runs: usize,
    stream_bytes: usize,
    stream_events: usize,
    latency_events: usize,
    whole_bytes: usize,
    /// Batch items for the pacing row, and the rate (requests per window) they are paced to.
    pacing_items: usize,
    pacing_rate: (usize, f64),
    /// Interleaved pairs of runs for each ledger row, and the requests its full ledger holds.
    ledger_runs: usize,
    ledger_requests: u64,
    /// Runs of each of the cache rows, and the entries of the full cache.
    cache_runs: usize,
    cache_entries: usize,
}

impl Scale {
    fn params(self) -> Params {
        match self {
            Scale::Smoke => Params {
                startup_runs: 3,
                request_runs: 2,
                stream_runs: 1,
                sdk_stream_runs: 0,
                stream_bytes: 200_000,
                stream_events: 1_000,
                latency_events: 10,
                whole_bytes: 100_000,
                pacing_items: 12,
                pacing_rate: (6, 1.0),
                ledger_runs: 3,
                ledger_requests: 2_000,
                cache_runs: 3,
                cache_entries: 50,
            },
            Scale::Full => Params {
                startup_runs: 200,
                request_runs: 40,
                stream_runs: 20,
                sdk_stream_runs: 3,
                stream_bytes: 64 << 20,
                stream_events: 200_000,
                latency_events: 300,
                whole_bytes: 10 << 20,
                pacing_items: 100,
                pacing_rate: (10, 1.0),
                ledger_runs: 150,
                ledger_requests: 100_000,
                cache_runs: 200,
                cache_entries: 10_000,
            },
        }
    }
}

/// Runs `cmd` (stdin empty) and asserts it succeeded.
pub(crate) fn cost(cmd: &mut Command) -> Cost {
    let cost = measure::run(cmd.stdin(Stdio::null()));
    assert_eq!(cost.code, Some(0), "{cmd:?} failed");
    cost
}

/// Median wall and CPU time, and the largest peak RSS, of `runs` runs.
fn median_of(runs: usize, mut make: impl FnMut() -> Command) -> Cost {
    median((0..runs.max(1)).map(|_| cost(&mut make())).collect())
}

fn median(mut costs: Vec<Cost>) -> Cost {
    let max_rss_kib = costs.iter().map(|c| c.max_rss_kib).max().unwrap_or(0);
    costs.sort_by_key(|c| c.wall);
    let wall = costs[costs.len() / 2].wall;
    costs.sort_by_key(|c| c.cpu);
    Cost {
        code: Some(0),
        wall,
        cpu: costs[costs.len() / 2].cpu,
        max_rss_kib,
    }
}

/// `runs` runs each of `a` and `b`, alternating so that a change in the machine's load falls on
/// both: their median costs, as `median_of` gives them.
fn interleaved(
    runs: usize,
    mut a: impl FnMut() -> Command,
    mut b: impl FnMut() -> Command,
) -> (Cost, Cost) {
    let (mut costs_a, mut costs_b) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        costs_a.push(cost(&mut a()));
        costs_b.push(cost(&mut b()));
    }
    (median(costs_a), median(costs_b))
}

/// As [`interleaved`], and the median of the differences between the two runs of each pair:
/// what `a` adds to `b`, steadier than the difference of the medians when both are noisy.
pub(crate) fn interleaved_pairs(
    runs: usize,
    mut a: impl FnMut() -> Command,
    mut b: impl FnMut() -> Command,
) -> (Cost, Cost, Duration) {
    let (mut costs_a, mut costs_b, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let (cost_a, cost_b) = (cost(&mut a()), cost(&mut b()));
        added.push(cost_a.wall.as_secs_f64() - cost_b.wall.as_secs_f64());
        costs_a.push(cost_a);
        costs_b.push(cost_b);
    }
    added.sort_by(f64::total_cmp);
    let added = Duration::from_secs_f64(added[added.len() / 2].max(0.0));
    (median(costs_a), median(costs_b), added)
}

impl Mock {
    /// Unlimited requests: the benchmarks make far more than 30 a minute.
    fn unlimited(args: &[&str]) -> Mock {
        Mock::start(&[&["--rate-limit", "0"], args].concat())
    }

    fn bnx_to_null(&self, args: &[&str]) -> Command {
        bnx_at(&self.url, args)
    }

    fn curl(&self, curl: &Path, stream: bool) -> Command {
        curl_at(curl, &self.url, stream)
    }
}

/// `bnx` with `args` against the server at `origin`, its stdout dropped.
pub(crate) fn bnx_at(origin: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BNX);
    cmd.env_clear()
        .env("HOME", std::env::temp_dir())
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("bnx-bench-state"),
        )
        .env("BLUENEXUS_BASE_URL", origin)
        .env("BLUENEXUS_TOKEN", TOKEN)
        // Unpaced: these runs measure the client, not the account's limit.
        .env("BLUENEXUS_RATE_LIMIT", "0")
        .args(args)
        .stdout(Stdio::null());
    cmd
}

/// `curl` asking the server at `origin` for an answer, which it drops.
fn curl_at(curl: &Path, origin: &str, stream: bool) -> Command {
    let mut cmd = Command::new(curl);
    cmd.env_clear()
        .args(curl_args(origin, stream))
        .args(["-o", "/dev/null"]);
    cmd
}

fn curl_args(origin: &str, stream: bool) -> Vec<String> {
    let body = if stream {
        STREAM_BODY
    } else {
        r#"{"messages":[{"role":"user","content":"hi"}]}"#
    };
    vec![
        "-sSfN".into(),
        "-H".into(),
        format!("Authorization: Bearer {TOKEN}"),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-d".into(),
        body.into(),
        format!("{origin}{CHAT}"),
    ]
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A virtualenv with the `openai` package, made once under `target/`. None (with the reason
/// printed) when Python or the package index cannot be had.
fn python_sdk(notes: &mut Vec<String>) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let python = venv.join("bin/python");
    let has_sdk = |python: &Path| {
        Command::new(python)
            .args(["-c", "import openai"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_sdk(&python) {
        return Some(python);
    }
    let Some(system_python) = find_tool("python3") else {
        notes.push("Python SDK skipped: no python3 on PATH".into());
        return None;
    };
    eprintln!(
        "bench: installing the openai package into {}",
        venv.display()
    );
    let made = Command::new(system_python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "openai"])
            .status()
            .is_ok_and(|s| s.success());
    if made && has_sdk(&python) {
        Some(python)
    } else {
        notes.push("Python SDK skipped: `pip install openai` into a virtualenv failed".into());
        None
    }
}

const SDK_SCRIPT: &str = r#"
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
messages = [{"role": "user", "content": "hi"}]
if sys.argv[3] == "stream":
    for chunk in client.chat.completions.create(model="any", messages=messages, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            sys.stdout.write(chunk.choices[0].delta.content)
else:
    sys.stdout.write(client.chat.completions.create(model="any", messages=messages).choices[0].message.content)
sys.stdout.write("\n")
"#;

struct Row {
    what: String,
    bnx: String,
    baseline: String,
    ratio: Option<f64>,
    target: String,
    pass: Option<bool>,
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| measure | bnx | baseline | ratio | target | result |")?;
        writeln!(f, "|---|---|---|---|---|---|")?;
        for row in &self.rows {
            let ratio = row.ratio.map_or("".to_string(), |r| format!("{r:.3}"));
            let result = match row.pass {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "",
            };
            writeln!(
                f,
                "| {} | {} | {} | {ratio} | {} | {result} |",
                row.what, row.bnx, row.baseline, row.target
            )?;
        }
        for note in &self.notes {
            writeln!(f, "\n{note}")?;
        }
        Ok(())
    }
}

impl Report {
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn row(
        &mut self,
        what: &str,
        bnx: String,
        baseline: String,
        ratio: Option<f64>,
        target: &str,
        pass: Option<bool>,
    ) {
        self.rows.push(Row {
            what: what.into(),
            bnx,
            baseline,
            ratio,
            target: target.into(),
            pass,
        });
    }
}

pub fn run(scale: Scale) -> Report {
    let p = scale.params();
    let mut report = Report {
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let curl = find_tool("curl");
    let jq = find_tool("jq");
    if curl.is_none() || jq.is_none() {
        report
            .notes
            .push("curl or jq not on PATH: their baselines are skipped".into());
    }
    let python = if scale == Scale::Full {
        python_sdk(&mut report.notes)
    } else {
        None
    };
    let sdk_script = std::env::temp_dir().join(format!("bnx-bench-sdk-{}.py", std::process::id()));
    std::fs::write(&sdk_script, SDK_SCRIPT).unwrap();
    let sdk = |origin: &str, mode: &str| {
        let mut cmd = Command::new(python.as_ref().unwrap());
        cmd.arg(&sdk_script)
            .args([&format!("{origin}/api/v1/agents/default"), TOKEN, mode])
            .env_remove("ALL_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .stdout(Stdio::null());
        cmd
    };

    // 1. Start-up.
    let (startup, spawn_floor) = interleaved(
        p.startup_runs,
        || {
            let mut cmd = Command::new(BNX);
            cmd.arg("--version").stdout(Stdio::null());
            cmd
        },
        || Command::new("true"),
    );
    report.row(
        "start-up: `bnx --version` (baseline: `true`)",
        ms(startup.wall),
        ms(spawn_floor.wall),
        Some(ratio(startup.wall, spawn_floor.wall)),
        "< 2 ms",
        Some(startup.wall < Duration::from_millis(2)),
    );

    // 2. Small round trip.
    let small = Mock::unlimited(&[]);
    if let (Some(curl), Some(jq)) = (&curl, &jq) {
        let (bnx_small, pipeline) = interleaved(
            p.request_runs,
            || small.bnx_to_null(&["hi"]),
            || {
                let args: Vec<String> = curl_args(&small.url, false)
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect();
                let mut cmd = Command::new("sh");
                cmd.args([
                    "-c",
                    &format!(
                        "{} {} | {} -r '.choices[0].message.content'",
                        curl.display(),
                        args.join(" "),
                        jq.display()
                    ),
                ])
                .stdout(Stdio::null());
                cmd
            },
        );
        let r = ratio(bnx_small.wall, pipeline.wall);
        report.row(
            "round trip: `bnx hi` vs `curl | jq`",
            ms(bnx_small.wall),
            ms(pipeline.wall),
            Some(r),
            "<= 0.5",
            Some(r <= 0.5),
        );
        let (bnx_small, bare) = interleaved(
            p.request_runs,
            || small.bnx_to_null(&["hi"]),
            || small.curl(curl, false),
        );
        let r = ratio(bnx_small.wall, bare.wall);
        report.row(
            "round trip: `bnx hi` vs `curl > /dev/null`",
            ms(bnx_small.wall),
            ms(bare.wall),
            Some(r),
            "<= 1.0",
            Some(r <= 1.0),
        );
    }
    if python.is_some() {
        let bnx_small = median_of(p.request_runs, || small.bnx_to_null(&["hi"]));
        let sdk_small = median_of(p.request_runs.min(10), || sdk(&small.url, "whole"));
        let r = ratio(sdk_small.wall, bnx_small.wall);
        report.row(
            "round trip: Python SDK / `bnx hi`",
            ms(bnx_small.wall),
            ms(sdk_small.wall),
            Some(r),
            ">= 20x",
            Some(r >= 20.0),
        );
    }

    // 3. Streaming throughput, and 5a. memory while streaming. The floor is the mock's answer
    // replayed from memory, so that the server's cost is the same, and small, for every client.
    let stream_bytes = p.stream_bytes.to_string();
    let events = p.stream_events.to_string();
    let big = Mock::unlimited(&["--answer-size", &stream_bytes, "--chunks", &events]);
    let floor = Floor::record(&format!("{}{CHAT}", big.url), TOKEN, STREAM_BODY);
    let wire_bytes = floor.wire_bytes();
    let size = format!(
        "{:.0} MiB answer, {} MiB on the wire, {} events",
        p.stream_bytes as f64 / 1048576.0,
        wire_bytes >> 20,
        p.stream_events
    );
    let bnx_floor = || bnx_at(floor.origin(), &["-s", "hi"]);
    let bnx_stream = match &curl {
        Some(curl) => {
            let (bnx_stream, curl_stream) = interleaved(p.stream_runs, bnx_floor, || {
                curl_at(curl, floor.origin(), true)
            });
            let r = ratio(bnx_stream.wall, curl_stream.wall);
            report.row(
                &format!(
                    "stream wall: `bnx -s` vs `curl -N > /dev/null`, answer replayed from memory ({size})"
                ),
                ms(bnx_stream.wall),
                ms(curl_stream.wall),
                Some(r),
                "<= 2.0",
                Some(r <= 2.0),
            );
            let (bnx_mock, curl_mock) = interleaved(
                p.stream_runs,
                || big.bnx_to_null(&["-s", "hi"]),
                || big.curl(curl, true),
            );
            report.row(
                "stream wall, same answer generated by bnx-mock (the mock sets both times)",
                ms(bnx_mock.wall),
                ms(curl_mock.wall),
                Some(ratio(bnx_mock.wall, curl_mock.wall)),
                "",
                None,
            );
            bnx_stream
        }
        None => median_of(p.stream_runs, bnx_floor),
    };
    let mb_per_s = wire_bytes as f64 / 1e6 / bnx_stream.wall.as_secs_f64();
    report.row(
        "stream: bnx parse rate (wire bytes / wall, replayed answer)",
        format!("{mb_per_s:.0} MB/s"),
        String::new(),
        None,
        "> 500 MB/s",
        Some(mb_per_s > 500.0),
    );
    if python.is_some() && p.sdk_stream_runs > 0 {
        let sdk_stream = median_of(p.sdk_stream_runs, || sdk(floor.origin(), "stream"));
        let r = ratio(sdk_stream.cpu, bnx_stream.cpu);
        report.row(
            "stream CPU: Python SDK / `bnx -s`",
            ms(bnx_stream.cpu),
            ms(sdk_stream.cpu),
            Some(r),
            ">= 10x",
            Some(r >= 10.0),
        );
    }
    report.row(
        "peak RSS: `bnx -s` over the large stream",
        format!("{:.1} MiB", bnx_stream.max_rss_kib as f64 / 1024.0),
        String::new(),
        None,
        "< 10 MiB",
        Some(bnx_stream.max_rss_kib < 10 * 1024),
    );
    drop(floor);
    drop(big);

    // 4. Streamed-piece latency.
    let (p50, p99, max) = latency(p.latency_events);
    report.row(
        &format!(
            "added latency per streamed piece, p50 / p99 / max ({} events 10 ms apart)",
            p.latency_events
        ),
        format!("{} / {} / {}", ms(p50), ms(p99), ms(max)),
        String::new(),
        None,
        "p99 < 1 ms",
        Some(p99 < Duration::from_millis(1)),
    );

    // 5b. Memory on a large whole answer.
    let whole_bytes = p.whole_bytes.to_string();
    let whole = Mock::unlimited(&["--answer-size", &whole_bytes]);
    let limit_kib = 3 * p.whole_bytes as u64 / 1024;
    for (what, args) in [
        ("`bnx`", vec!["hi"]),
        ("`bnx --json`", vec!["--json", "hi"]),
    ] {
        let cost = median_of(p.stream_runs.min(3), || whole.bnx_to_null(&args));
        report.row(
            &format!(
                "peak RSS: {what} on a {:.0} MiB whole answer",
                p.whole_bytes as f64 / 1048576.0
            ),
            format!("{:.1} MiB", cost.max_rss_kib as f64 / 1024.0),
            String::new(),
            Some(cost.max_rss_kib as f64 * 1024.0 / p.whole_bytes as f64),
            "< 3x body",
            Some(cost.max_rss_kib < limit_kib),
        );
    }

    // 5c. --schema: validating a large answer, and what a small schema costs at start-up.
    schema_rows(&mut report, &p);

    // 6. Binary size.
    let bytes = std::fs::metadata(BNX).map(|m| m.len()).unwrap_or(0);
    report.row(
        "binary size of bnx",
        format!("{:.2} MiB", bytes as f64 / 1048576.0),
        String::new(),
        None,
        "< 8 MiB",
        Some(bytes < 8 << 20),
    );

    // 7. Pacing efficiency: a batch at 8 jobs against a mock whose limit bnx paces to. Ideal:
    // the first N items at once, then N more each window, and not a 429. Retries stay on, so
    // a 429 on a loaded machine is counted in the row rather than failing the run.
    let (n, window) = p.pacing_rate;
    let rate = format!("{n}/{window}");
    let paced = Mock::start(&["--rate-limit", &rate]);
    let items = paced.dir.path().join("items.jsonl");
    let lines: String = (0..p.pacing_items)
        .map(|i| format!("{{\"prompt\": \"item {i}\"}}\n"))
        .collect();
    std::fs::write(&items, lines).unwrap();
    let batch = cost(&mut paced.bnx_to_null(&[
        "--batch",
        &items.display().to_string(),
        "-j",
        "8",
        "--rate-limit",
        &rate,
        "-q",
    ]));
    let ideal = Duration::from_secs_f64((p.pacing_items.div_ceil(n) - 1) as f64 * window);
    let refused = paced
        .requests(p.pacing_items)
        .iter()
        .filter(|r| r["status"] == 429)
        .count();
    let r = ratio(batch.wall, ideal);
    report.row(
        &format!(
            "pacing: {} batch items at 8 jobs, mock and bnx at {n} per {window}s: wall / ideal, 429s",
            p.pacing_items
        ),
        format!("{}, {refused} × 429", ms(batch.wall)),
        ms(ideal),
        Some(r),
        "<= 1.1, no 429",
        Some(r <= 1.1 && refused == 0),
    );

    // 8. The credit ledger.
    ledger::rows(&mut report, p.ledger_runs, p.ledger_requests);
    // 9. The answer cache.
    cache_rows(&mut report, &p, &small);

    if python.is_some() {
        let mut check = sdk(&small.url, "whole");
        let out = check.stdout(Stdio::piped()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        report.notes.push(format!(
            "OpenAI Python SDK against bnx-mock answered: {:?}",
            text.trim()
        ));
    }
    let _ = std::fs::remove_file(&sdk_script);
    report.notes.push(format!(
        "Peak RSS comes from wait4, or, where that may be the harness's own peak resident size \
         ({:.1} MiB), from the child's VmHWM sampled until it exits.",
        own_peak_rss_kib() as f64 / 1024.0
    ));
    report
}

/// A schema of 50 properties (strings, integers, numbers, booleans, an enum, a pattern), as
/// the `items` of an array, and an answer of such records of about `bytes`.
fn records(bytes: usize) -> (String, String) {
    let kinds = [
        r#"{"type": "string", "maxLength": 64}"#,
        r#"{"type": "integer", "minimum": 0}"#,
        r#"{"type": "number", "maximum": 1e9}"#,
        r#"{"type": "boolean"}"#,
        r#"{"enum": ["red", "green", "blue"]}"#,
        r#"{"type": "string", "pattern": "^[a-z]+-[0-9]+$"}"#,
    ];
    let properties: Vec<String> = (0..50)
        .map(|i| format!("\"p{i}\": {}", kinds[i % kinds.len()]))
        .collect();
    let names: Vec<String> = (0..50).map(|i| format!("\"p{i}\"")).collect();
    let schema = format!(
        r#"{{"type": "array", "items": {{"type": "object", "properties": {{{}}},
            "required": [{}], "additionalProperties": false}}}}"#,
        properties.join(", "),
        names.join(", ")
    );
    let mut answer = String::from("[");
    for n in 0.. {
        let fields: Vec<String> = (0..50)
            .map(|i| {
                let value = match i % kinds.len() {
                    0 => format!("\"value {n} {i}\""),
                    1 => format!("{}", n * 50 + i),
                    2 => format!("{}", (n * 50 + i) as f64 / 7.0),
                    3 => format!("{}", (n + i) % 2 == 0),
                    4 => format!("\"{}\"", ["red", "green", "blue"][(n + i) % 3]),
                    _ => format!("\"item-{n}\""),
                };
                format!("\"p{i}\": {value}")
            })
            .collect();
        answer.push_str(&format!("{{{}}}", fields.join(", ")));
        if answer.len() >= bytes {
            break;
        }
        answer.push_str(",\n");
    }
    answer.push(']');
    (schema, answer)
}

/// `bnx --schema` against `bnx --expect-json` on the same large answer (the difference is
/// the schema's own cost), and the start-up that compiling a small schema adds.
fn schema_rows(report: &mut Report, p: &Params) {
    let (schema, answer) = records(p.whole_bytes);
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("records.json");
    std::fs::write(&schema_file, &schema).unwrap();
    let schema_arg = schema_file.display().to_string();
    let floor = Floor::whole(&answer);
    let (checked, parsed) = interleaved(
        p.stream_runs.min(10),
        || bnx_at(floor.origin(), &["--schema", &schema_arg, "records"]),
        || bnx_at(floor.origin(), &["--expect-json", "records"]),
    );
    let mib = answer.len() as f64 / 1048576.0;
    report.row(
        &format!(
            "`bnx --schema` (50 properties) vs `bnx --expect-json`, {mib:.0} MiB answer: wall, \
             peak RSS"
        ),
        format!(
            "{}, {:.1} MiB",
            ms(checked.wall),
            checked.max_rss_kib as f64 / 1024.0
        ),
        format!(
            "{}, {:.1} MiB",
            ms(parsed.wall),
            parsed.max_rss_kib as f64 / 1024.0
        ),
        Some(ratio(checked.wall, parsed.wall)),
        "",
        None,
    );
    let extra = checked.wall.saturating_sub(parsed.wall).as_secs_f64();
    let mb_per_s = answer.len() as f64 / 1e6 / extra.max(1e-9);
    report.row(
        "--schema rate: answer bytes / (--schema wall - --expect-json wall)",
        format!("{mb_per_s:.0} MB/s"),
        String::new(),
        None,
        ">= 100 MB/s",
        Some(mb_per_s >= 100.0),
    );
    let small = r#"{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}"#;
    let dry = |args: &'static [&'static str]| {
        move || {
            let mut cmd = bnx_at("http://127.0.0.1:9", args);
            cmd.arg("--dry-run");
            cmd
        }
    };
    let (with_schema, without) = interleaved(
        p.startup_runs,
        || {
            let mut cmd = dry(&["q"])();
            cmd.args(["--schema", small]);
            cmd
        },
        dry(&["q"]),
    );
    let added = with_schema.wall.saturating_sub(without.wall);
    report.row(
        "start-up of `--schema` with a small schema: `bnx --dry-run --schema S q` (baseline: \
         without --schema), and the difference",
        format!("{}, +{}", ms(with_schema.wall), ms(added)),
        ms(without.wall),
        Some(ratio(with_schema.wall, without.wall)),
        "+ < 3 ms",
        Some(added < Duration::from_millis(3)),
    );
}

/// The answer cache (row 9): a hit (`bnx --cache 1h hi`, answered from a warm entry) against
/// the same request sent to the mock and against start-up, the three interleaved run for run;
/// then a hit in a cache of `cache_entries` entries against one in a cache of one, interleaved.
fn cache_rows(report: &mut Report, p: &Params, mock: &Mock) {
    let dirs = tempfile::tempdir().unwrap();
    let (one, full) = (dirs.path().join("one"), dirs.path().join("full"));
    let hit = |cache_dir: &Path| {
        let mut cmd = mock.bnx_to_null(&["--cache", "1h", "hi"]);
        cmd.env("BLUENEXUS_CACHE_DIR", cache_dir);
        cmd
    };
    for dir in [&one, &full] {
        cost(&mut hit(dir));
    }
    // Entries of other requests, each a file of the size of the real one.
    let answers = full.join("answers");
    let entry = std::fs::read_dir(&answers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .unwrap();
    let bytes = std::fs::read(&entry).unwrap();
    for i in 0..p.cache_entries {
        let name = bnx::digest::hex(&[format!("other request {i}").as_bytes()]);
        std::fs::write(answers.join(&name), &bytes).unwrap();
        std::fs::write(answers.join(format!("{name}.lock")), "").unwrap();
    }
    let (mut hits, mut trips, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..p.cache_runs {
        hits.push(cost(&mut hit(&one)));
        trips.push(cost(&mut mock.bnx_to_null(&["hi"])));
        let mut version = Command::new(BNX);
        version.arg("--version").stdout(Stdio::null());
        starts.push(cost(&mut version));
    }
    let (hit_cost, trip, start) = (median(hits), median(trips), median(starts));
    let r = ratio(hit_cost.wall, trip.wall);
    report.row(
        "cache hit: `bnx --cache 1h hi` vs the round trip `bnx hi`",
        ms(hit_cost.wall),
        ms(trip.wall),
        Some(r),
        "<= 0.5",
        Some(r <= 0.5),
    );
    let r = ratio(hit_cost.wall, start.wall);
    report.row(
        "cache hit: `bnx --cache 1h hi` vs start-up `bnx --version`",
        ms(hit_cost.wall),
        ms(start.wall),
        Some(r),
        "<= 1.5",
        Some(r <= 1.5),
    );
    let (in_full, in_one) = interleaved(p.cache_runs, || hit(&full), || hit(&one));
    let r = ratio(in_full.wall, in_one.wall);
    report.row(
        &format!(
            "cache hit among {} entries vs in a cache of 1",
            p.cache_entries
        ),
        ms(in_full.wall),
        ms(in_one.wall),
        Some(r),
        "<= 1.1",
        Some(r <= 1.1),
    );
}

fn own_peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Serves one stream whose events carry their own index, 10 ms apart, to a `bnx -s` whose
/// stdout comes back here: for each event, the time from our write to its text on the pipe.
fn latency(events: usize) -> (Duration, Duration, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut child = bnx_at(&origin, &["-s", "hi"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut arrived = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Ok(index) = line.trim().parse::<usize>() {
                arrived.push((index, Instant::now()));
            }
        }
        arrived
    });
    let (socket, _) = listener.accept().unwrap();
    let mut input = BufReader::new(socket.try_clone().unwrap());
    let mut out = socket;
    read_request(&mut input).expect("bnx sent a request");
    let mut sent = Vec::with_capacity(events);
    {
        let headers = [("Content-Type", "text/event-stream".to_string())];
        let mut body = Stream::start(&mut out, 200, &headers, false).unwrap();
        body.send(&[b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"])
            .unwrap();
        body.flush().unwrap();
        let start = Instant::now();
        for i in 0..events {
            let due = start + Duration::from_millis(10 * i as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let event =
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{i}\\n\"}}}}]}}\n\n");
            sent.push(Instant::now());
            body.send(&[event.as_bytes()]).unwrap();
            body.flush().unwrap();
        }
        body.send(&[b"data: [DONE]\n\n"]).unwrap();
        // bnx may close the connection the moment [DONE] arrives, before the terminator.
        let _ = body.finish();
    }
    let arrived = reader.join().unwrap();
    child.wait().unwrap();
    let mut added: Vec<Duration> = arrived
        .iter()
        .map(|(i, at)| at.saturating_duration_since(sent[*i]))
        .collect();
    assert_eq!(added.len(), events, "every piece arrived");
    added.sort();
    let pct = |p: f64| added[((added.len() - 1) as f64 * p).round() as usize];
    (pct(0.5), pct(0.99), *added.last().unwrap())
}

/// Formats the machine line for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut line = String::new();
    let _ = write!(line, "{cpu}, {cores} cores, {}", std::env::consts::ARCH);
    line
}
