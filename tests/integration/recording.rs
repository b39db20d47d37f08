//! `bnx-mock --record FILE --upstream URL` (SPEC section 11): real traffic recorded through the
//! mock and replayed with `--answers FILE --strict`. The upstream is a second `bnx-mock` on
//! loopback (some with scripted answers), or, for upstreams that attack the recorder, a small
//! scripted server in this module.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::mock::{call, user, Reply, CHAT};
use crate::scripted_answers::scripted;
use crate::util::*;

/// The upstream's own token: what a user records with.
const REAL_TOKEN: &str = "sk-Proj-9f8e7d6c5b4a3f2e1d0c";

/// A recording mock passing requests to `upstream`, and where it records.
fn recorder(upstream: &str, args: &[&str]) -> (Mock, TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recorded.jsonl");
    let path = file.display().to_string();
    let mock = Mock::start(&[&["--record", path.as_str(), "--upstream", upstream], args].concat());
    (mock, dir, file)
}

/// The rules recorded so far.
fn rules(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn post(mock: &Mock, token: &str, body: &Value) -> Reply {
    call(mock, "POST", CHAT, Some(token), &body.to_string())
}

/// `bnx-mock ARGS -- sh -c SCRIPT` with `bnx` on PATH, nothing of the machine's environment
/// but `extra`.
fn exec(args: &[&OsStrLike], script: &str, extra: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let bin = Path::new(BNX).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(BNX_MOCK)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home.path())
        .envs(extra.iter().copied())
        .args(args)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

type OsStrLike = std::ffi::OsStr;

fn os(text: &str) -> &OsStrLike {
    text.as_ref()
}

#[test]
fn a_two_turn_conversation_is_recorded_then_replayed_with_the_upstream_gone() {
    let upstream = Mock::start(&["--token", REAL_TOKEN]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.jsonl");
    let script = "echo \"token=$BLUENEXUS_TOKEN rate=${BLUENEXUS_RATE_LIMIT-unset}\"; \
                  bnx 'plan my day' && bnx -c 'and tomorrow?'";
    let recorded = exec(
        &[
            os("--record"),
            file.as_os_str(),
            os("--upstream"),
            os(&upstream.url),
        ],
        script,
        &[("BLUENEXUS_TOKEN", REAL_TOKEN)],
    );
    assert_eq!(recorded.status.code(), Some(0), "{}", stderr_of(&recorded));
    assert_eq!(
        stdout_of(&recorded),
        format!("token={REAL_TOKEN} rate=unset\n[turn 1] plan my day\n[turn 2] and tomorrow?\n"),
        "COMMAND keeps the caller's token and the real API's pacing"
    );
    let lines = rules(&file);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for rule in &lines {
        assert_eq!(
            (&rule["times"], &rule["match"]["agent"]),
            (&json!(1), &json!("default"))
        );
        assert_eq!(rule["reply"]["status"], 200);
        assert_eq!(rule["reply"]["headers"]["X-Conversation-Id"], "conv-000001");
    }
    assert_eq!(lines[1]["match"]["body"]["conversationId"], "conv-000001");
    drop(upstream);

    let replayed = exec(
        &[os("--answers"), file.as_os_str(), os("--strict")],
        "bnx 'plan my day' && bnx -c 'and tomorrow?' && bnx 'never recorded'",
        &[],
    );
    assert_eq!(
        stdout_of(&replayed),
        "[turn 1] plan my day\n[turn 2] and tomorrow?\n",
        "{}",
        stderr_of(&replayed)
    );
    assert_ne!(
        replayed.status.code(),
        Some(0),
        "the unrecorded request is refused"
    );
    assert!(
        stderr_of(&replayed).contains("no scripted answer matches"),
        "{}",
        stderr_of(&replayed)
    );
}

#[test]
fn a_recorded_stream_is_replayed_byte_for_byte() {
    let upstream = Mock::start(&["--chunks", "40", "--answer-size", "3000"]);
    let (recording, _dir, file) = recorder(&upstream.url, &[]);
    let body = json!({"messages": [{"role": "user", "content": "stream it"}], "stream": true,
                      "stream_options": {"include_usage": true}});
    let live = post(&recording, TOKEN, &body);
    assert_eq!(live.status, 200);
    assert!(live.body.ends_with("data: [DONE]\n\n"));
    let lines = rules(&file);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["reply"]["events"].as_array().unwrap().len(),
        1 + 40 + 1 + 1 + 1
    );
    drop(upstream);
    let path = file.display().to_string();
    let replay = Mock::start(&["--answers", &path, "--strict"]);
    let replayed = post(&replay, TOKEN, &body);
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("content-type"), Some("text/event-stream"));
    assert_eq!(replayed.body, live.body, "the client reads the same bytes");
}

#[test]
fn the_token_is_never_recorded_whole_encoded_or_split_across_events() {
    let encoded = REAL_TOKEN.replace('-', "%2D");
    let (upstream, _answers) = scripted(
        &[
            json!({"match": {"prompt": "whole"}, "reply": {"content": format!("your key is {REAL_TOKEN}.")}}),
            json!({"match": {"prompt": "encoded"}, "reply": {"content": format!("https://x.test/?k={encoded}")}}),
            json!({"match": {"prompt": "split"}, "reply": {
                "content": format!("the key: {REAL_TOKEN} ok"),
                "chunks": ["the key: sk-Pr", "oj-9f8e7d6c5b4a3f2e1d0c", " ok"]}}),
            json!({"match": {"prompt": "header"}, "reply": {"status": 200,
                "headers": {"X-Conversation-Id": REAL_TOKEN}, "body": {"echo": REAL_TOKEN}}}),
            json!({"match": {"prompt": "error"}, "reply": {"status": 401,
                "error": {"message": format!("bad key {encoded}")}}}),
        ],
        &["--token", REAL_TOKEN],
    );
    let (recording, _dir, file) = recorder(&upstream.url, &[]);
    let whole = post(
        &recording,
        REAL_TOKEN,
        &user(&format!("whole: is {REAL_TOKEN} mine?")),
    );
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        format!("your key is {REAL_TOKEN}."),
        "the client itself gets the answer as it was"
    );
    post(&recording, REAL_TOKEN, &user("encoded"));
    let split = post(
        &recording,
        REAL_TOKEN,
        &json!({"messages": [{"role": "user", "content": "split"}],
                                                    "stream": true}),
    );
    assert!(
        split.body.contains("oj-9f8e7d6c5b4a3f2e1d0c"),
        "passed on as it came"
    );
    post(&recording, REAL_TOKEN, &user("header"));
    assert_eq!(post(&recording, REAL_TOKEN, &user("error")).status, 401);

    let text = std::fs::read_to_string(&file).unwrap();
    let lines = rules(&file);
    assert_eq!(lines.len(), 5, "{text}");
    for window in REAL_TOKEN.as_bytes().windows(8) {
        let part = std::str::from_utf8(window).unwrap();
        assert!(
            !text.contains(part),
            "{part:?} of the token is in the recording: {text}"
        );
    }
    assert!(!text.contains("%2D9f8e"), "{text}");
    assert_eq!(
        lines[0]["match"]["body"]["messages"][0]["content"],
        "whole: is *** mine?"
    );
    let body: Value = serde_json::from_str(lines[0]["reply"]["body"].to_string().as_str()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "your key is ***.");
    assert_eq!(
        lines[1]["reply"]["body"]["choices"][0]["message"]["content"],
        "https://x.test/?k=***"
    );
    let pieces: String = lines[2]["reply"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e.as_str().unwrap()).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(pieces, "the key: *** ok");
    assert_eq!(lines[3]["reply"]["headers"]["X-Conversation-Id"], "***");
    assert_eq!(lines[3]["reply"]["body"]["echo"], "***");
    assert_eq!(lines[4]["reply"]["body"]["error"]["message"], "bad key ***");
    let log = recording.log();
    assert!(
        !log.contains("9f8e7d6c") && !log.contains("%2D9f8e"),
        "{log}"
    );
    assert_eq!(recording.requests(5).len(), 5, "logged, the token masked");
}

#[test]
fn errors_are_recorded_and_replayed_in_order() {
    let upstream = Mock::start(&["--fault", "429:1"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.jsonl");
    let recorded = exec(
        &[
            os("--record"),
            file.as_os_str(),
            os("--upstream"),
            os(&upstream.url),
        ],
        "bnx 'retry me'",
        &[("BLUENEXUS_TOKEN", TOKEN)],
    );
    assert_eq!(
        stdout_of(&recorded),
        "[turn 1] retry me\n",
        "{}",
        stderr_of(&recorded)
    );
    let statuses: Vec<Value> = rules(&file)
        .iter()
        .map(|r| r["reply"]["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(429), json!(200)]);
    assert_eq!(rules(&file)[0]["reply"]["headers"]["Retry-After"], "1");
    drop(upstream);
    let path = file.display().to_string();
    let replay = Mock::start(&["--answers", &path, "--strict"]);
    let run = replay.bnx().arg("retry me").output().unwrap();
    assert_eq!(
        stdout_of(&run),
        "[turn 1] retry me\n",
        "{}",
        stderr_of(&run)
    );
    let replayed: Vec<Value> = replay
        .requests(2)
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(replayed, [json!(429), json!(200)]);
}

#[test]
fn an_unreachable_upstream_is_502_and_a_body_that_is_no_object_is_not_recorded() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (recording, _dir, file) = recorder(&origin, &[]);
    let reply = post(&recording, TOKEN, &user("anyone there?"));
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["type"], "upstream_error");
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&origin));
    assert!(recording.only_request()["reason"]
        .as_str()
        .unwrap()
        .contains("cannot be reached"));

    let upstream = Mock::start(&[]);
    let (recording, _dir2, file2) = recorder(&upstream.url, &[]);
    let refused = call(&recording, "POST", CHAT, Some(TOKEN), "[1, 2]");
    assert_eq!(
        refused.status, 400,
        "passed on, and the upstream's answer passed back"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !recording.stderr().contains("not recorded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let notices: Vec<String> = recording
        .stderr()
        .lines()
        .filter(|line| line.contains("not recorded"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        notices,
        [format!(
            "bnx-mock: not recorded: POST {CHAT}: the request body is not a JSON object"
        )]
    );
    assert_eq!(rules(&file).len() + rules(&file2).len(), 0);
}

#[test]
fn recording_options_are_checked_before_the_mock_starts() {
    let run = |args: &[&str]| {
        Command::new(BNX_MOCK)
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap()
    };
    for (args, why) in [
        (&["--record", "r.jsonl"][..], "--upstream <URL>"),
        (
            &["--upstream", "https://api.example.test"][..],
            "--record <FILE>",
        ),
        (
            &[
                "--record",
                "r.jsonl",
                "--upstream",
                "https://a.test",
                "--answers",
                "a.jsonl",
            ][..],
            "cannot be used with",
        ),
        (
            &[
                "--record",
                "r.jsonl",
                "--upstream",
                "https://a.test",
                "--fault",
                "503",
            ][..],
            "cannot be used with",
        ),
        (
            &[
                "--record",
                "r.jsonl",
                "--upstream",
                "http://api.example.test",
            ][..],
            "refusing plain http:// to api.example.test",
        ),
        (
            &["--record", "r.jsonl", "--upstream", "https://a.test/api/v1"][..],
            "already holds /api/v1",
        ),
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_of(&output).contains(why),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    let output = run(&["--record", "/proc/x/y", "--upstream", "https://a.test"]);
    assert_eq!(output.status.code(), Some(74));
    assert!(
        stderr_of(&output).starts_with("bnx-mock: error: cannot write the recording /proc/x/y: "),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_64_mib_stream_is_recorded_in_flat_memory_and_replayed_whole() {
    // Events of 3 KiB: the stream is as large, and the debug build's time per event is spent
    // 20,000 times rather than 200,000.
    let upstream = Mock::start(&[
        "--rate-limit",
        "0",
        "--answer-size",
        "67108864",
        "--chunks",
        "20000",
    ]);
    let (recording, _dir, file) = recorder(&upstream.url, &[]);
    let before = peak_rss(recording.pid());
    let body = json!({"messages": [{"role": "user", "content": "big"}], "stream": true});
    let (live_bytes, live_hash) = stream_digest(&recording, &body);
    let peak = peak_rss(recording.pid());
    eprintln!(
        "recording a {} MiB stream: peak RSS {:.1} -> {:.1} MiB",
        live_bytes >> 20,
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    assert!(live_bytes > 64 << 20, "{live_bytes}");
    assert!(peak < before + (16 << 20), "{before} -> {peak}");
    // Logged once the rule is appended.
    assert_eq!(recording.only_request()["status"], 200);
    let recorded = std::fs::metadata(&file).unwrap().len();
    assert!(
        recorded > 64 << 20,
        "one rule holds the whole stream: {recorded}"
    );
    drop(upstream);
    let path = file.display().to_string();
    let replay = Mock::start(&["--answers", &path, "--strict"]);
    assert_eq!(stream_digest(&replay, &body), (live_bytes, live_hash));
}

/// The size and a digest of the body of a streamed answer, read without holding it.
fn stream_digest(mock: &Mock, body: &Value) -> (u64, u64) {
    let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
    let response = agent
        .post(format!("{}{CHAT}", mock.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send(body.to_string())
        .unwrap();
    let mut reader = response.into_body().into_reader();
    let (mut size, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            return (size, hash);
        }
        size += n as u64;
        for &byte in &buf[..n] {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// A process's peak resident memory, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line["VmHWM:".len()..]
        .trim()
        .trim_end_matches(" kB")
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// An upstream that answers each connection's request head with `answer`.
fn hostile(answer: fn(&mut TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                answer(&mut stream);
            });
        }
    });
    origin
}

#[test]
fn a_hostile_upstream_cannot_hang_or_exhaust_the_recorder() {
    let silent = hostile(|_| std::thread::sleep(Duration::from_secs(30)));
    let huge = hostile(|s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(100_000)
        );
    });
    let garbage = hostile(|s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02");
    });
    for (origin, why) in [(&silent, "timeout"), (&huge, "header"), (&garbage, "")] {
        let (recording, _dir, file) = recorder(origin, &["--upstream-timeout", "1"]);
        let started = Instant::now();
        let reply = post(&recording, TOKEN, &user("x"));
        assert_eq!(reply.status, 502, "{origin}: {}", reply.body);
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase();
        assert!(message.contains(why), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(rules(&file).is_empty());
    }

    let endless = hostile(|s| {
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        let event = format!(
            "data: {}\n\n",
            json!({"choices": [{"delta": {"content": "more "}}]})
        );
        let events = event.repeat(1000);
        if s.write_all(head.as_bytes()).is_ok() {
            while s.write_all(events.as_bytes()).is_ok() {}
        }
    });
    let (recording, _dir, file) = recorder(&endless, &[]);
    let before = peak_rss(recording.pid());
    let mut client = TcpStream::connect(&recording.addr).unwrap();
    let body = json!({"messages": [{"role": "user", "content": "x"}], "stream": true}).to_string();
    write!(
        client,
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut read = 0;
    let mut buf = vec![0; 1 << 16];
    while read < 64 << 20 {
        read += client.read(&mut buf).unwrap();
    }
    drop(client);
    let line = recording.only_request();
    assert!(
        line["reason"].as_str().unwrap().contains("cut short"),
        "{line}"
    );
    let peak = peak_rss(recording.pid());
    eprintln!("64 MiB of a never-ending stream: peak RSS {before} -> {peak} bytes");
    assert!(peak < before + (16 << 20), "{before} -> {peak}");
    assert!(
        rules(&file).is_empty(),
        "an answer the client left is not recorded"
    );
}

/// The official `openai` SDK's requests, a whole answer and a stream, and what it made of them,
/// as one JSON document.
const SDK_SCRIPT: &str = r#"
import json, os, openai
client = openai.OpenAI(base_url=os.environ["MOCK_URL"] + "/api/v1/agents/default",
                       api_key=os.environ["MOCK_TOKEN"], max_retries=0)
whole = client.chat.completions.create(
    model="any", messages=[{"role": "user", "content": "recorded by the sdk"}])
chunks = list(client.chat.completions.create(
    model="any", messages=[{"role": "user", "content": "streamed by the sdk"}],
    stream=True, stream_options={"include_usage": True}))
seen = {"whole": whole.choices[0].message.content, "id": whole.id,
        "stream": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "usage": chunks[-1].usage.total_tokens}
print(json.dumps(seen))
"#;

fn sdk(url: &str, token: &str) -> Value {
    crate::mock_interop::python(SDK_SCRIPT, url, token)
}

#[test]
fn the_openai_python_sdk_is_recorded_through_the_proxy_and_replayed() {
    if !crate::mock_interop::python_with_openai() {
        println!("skipped: python3 cannot import openai (python3 -m pip install openai)");
        return;
    }
    let upstream = Mock::start(&["--token", REAL_TOKEN]);
    let (recording, _dir, file) = recorder(&upstream.url, &[]);
    let live = sdk(&recording.url, REAL_TOKEN);
    assert_eq!(live["stream"], "[turn 1] streamed by the sdk", "{live}");
    assert_eq!(rules(&file).len(), 2);
    assert!(!std::fs::read_to_string(&file).unwrap().contains("9f8e7d6c"));
    drop(upstream);

    let path = file.display().to_string();
    let replay = Mock::start(&["--answers", &path, "--strict"]);
    assert_eq!(
        sdk(&replay.url, TOKEN),
        live,
        "the SDK makes the same of the replayed answers"
    );
    let rules_used: Vec<Value> = replay
        .requests(2)
        .iter()
        .map(|r| r["rule"].clone())
        .collect();
    assert_eq!(
        rules_used,
        [json!(format!("{path}:1")), json!(format!("{path}:2"))]
    );
}
