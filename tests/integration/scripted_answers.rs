//! `bnx-mock --answers FILE` (SPEC section 11): every match field and reply kind over real
//! HTTP, `bnx -x`, `--expect-json` and a batch succeeding against scripted answers, the checks
//! that come before a rule, `--strict`, and bad or oversized answers files.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::mock::{call, chat, user, Reply, CHAT};
use crate::util::*;

/// A mock answering from `rules` (one JSON value a line) with `args` besides; the answers file
/// is `DIR/answers.jsonl`.
pub fn scripted(rules: &[Value], args: &[&str]) -> (Mock, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.jsonl");
    let lines: String = rules.iter().map(|rule| format!("{rule}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    let path = path.display().to_string();
    let mock = Mock::start(&[&["--answers", path.as_str()], args].concat());
    (mock, dir)
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// The content of a whole answer.
fn content(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["choices"][0]["message"]["content"].clone()
}

/// The `rule` of each logged request, in the order they arrived, as `LINE` of answers.jsonl.
fn rules_used(mock: &Mock, n: usize) -> Vec<Value> {
    mock.requests(n)
        .iter()
        .map(|line| match line["rule"].as_str() {
            Some(rule) => json!(rule.rsplit_once(':').unwrap().1.parse::<u64>().unwrap()),
            None => Value::Null,
        })
        .collect()
}

#[test]
fn every_match_field_chooses_its_rule() {
    let answer = |text: &str| json!({"content": text});
    let (mock, _dir) = scripted(
        &[
            json!({"match": {"agent": "billing"}, "reply": answer("agent")}),
            json!({"match": {"prompt": "weather"}, "reply": answer("prompt")}),
            json!({"match": {"prompt_regex": "^\\d+ \\+ \\d+$"}, "reply": answer("regex")}),
            json!({"match": {"system": "pirate"}, "reply": answer("system")}),
            json!({"match": {"turn": 2}, "reply": answer("turn")}),
            json!({"match": {"stream": true}, "reply": answer("stream")}),
            json!({"match": {"body": {"temperature": 0, "metadata": {"suite": "ci"}}},
                   "reply": answer("body")}),
            json!({"match": {}, "reply": answer("anything")}),
        ],
        &[],
    );
    let billing = call(
        &mock,
        "POST",
        "/api/v1/agents/billing/chat/completions",
        Some(TOKEN),
        &user("x").to_string(),
    );
    assert_eq!(content(&billing), "agent");
    assert_eq!(content(&chat(&mock, user("the weather today?"))), "prompt");
    assert_eq!(content(&chat(&mock, user("12 + 30"))), "regex");
    assert_eq!(content(&chat(&mock, user("12 + 30 = ?"))), "anything");
    let pirate = json!({"messages": [{"role": "developer", "content": "talk like a pirate"},
                                     {"role": "user", "content": "hi"}]});
    assert_eq!(content(&chat(&mock, pirate)), "system");
    let first = chat(&mock, user("hello"));
    let conversation = first.header("x-conversation-id").unwrap().to_string();
    let mut second = user("hello again");
    second["conversationId"] = json!(conversation);
    assert_eq!(content(&chat(&mock, second)), "turn");
    let events = chat(&mock, streamed(user("hi"))).events();
    assert!(
        events.iter().any(|e| e.contains("\"content\":\"stream\"")),
        "{events:?}"
    );
    let mut body = user("hi");
    body["temperature"] = json!(0.0);
    body["metadata"] = json!({"suite": "ci", "run": 7});
    assert_eq!(content(&chat(&mock, body.clone())), "body");
    body["metadata"] = json!({"suite": "nightly"});
    assert_eq!(content(&chat(&mock, body)), "anything");
    assert_eq!(
        rules_used(&mock, 11),
        [1, 2, 3, 8, 4, 8, 5, 6, 7, 8].map(|n| json!(n)),
        "the log names the rule of each request"
    );
}

#[test]
fn a_scripted_answer_is_sent_as_written_whole_and_streamed() {
    let tool_calls = json!([{"id": "call_1", "type": "function",
                             "function": {"name": "lookup", "arguments": "{\"city\":\"Oslo\"}"}}]);
    let (mock, _dir) = scripted(
        &[
            json!({"match": {"prompt": "chunks"}, "reply": {
                "content": "Hello, world", "chunks": ["Hel", "lo, ", "world"],
                "finish_reason": "length", "credits": 7}}),
            json!({"match": {"prompt": "tool"}, "reply": {"tool_calls": tool_calls}}),
            json!({"match": {"prompt": "slow"}, "reply": {"content": "late", "delay_ms": 300}}),
            json!({"match": {"prompt": "words"}, "reply": {"content": "one two three"}}),
        ],
        &[],
    );
    let mut limited = user("chunks");
    limited["max_tokens"] = json!(1);
    let whole = chat(&mock, limited.clone());
    assert_eq!(
        content(&whole),
        "Hello, world",
        "max_tokens does not cut it"
    );
    assert_eq!(whole.json()["choices"][0]["finish_reason"], "length");
    assert_eq!(whole.header("x-credits-consumed"), Some("7"));
    assert_eq!(whole.header("x-credits-remaining"), Some("999993"));
    let events = chat(&mock, streamed(limited)).events();
    let pieces: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(|s| json!(s))
        })
        .collect();
    assert_eq!(pieces, [json!("Hel"), json!("lo, "), json!("world")]);
    assert_eq!(events.last().unwrap(), "[DONE]");

    let tool = chat(&mock, user("tool"));
    let message = &tool.json()["choices"][0];
    assert_eq!(message["message"]["content"], Value::Null);
    assert_eq!(message["message"]["tool_calls"], tool_calls);
    assert_eq!(message["finish_reason"], "tool_calls");
    let events = chat(&mock, streamed(user("tool"))).events();
    let calls: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    let call = &calls[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (&call["index"], &call["function"]["name"]),
        (&json!(0), &json!("lookup"))
    );
    assert!(events
        .iter()
        .any(|e| e.contains("\"finish_reason\":\"tool_calls\"")));

    let started = Instant::now();
    assert_eq!(content(&chat(&mock, user("slow"))), "late");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let words = chat(&mock, streamed(user("words"))).events();
    let texts: Vec<&String> = words
        .iter()
        .filter(|e| e.contains("\"content\":\""))
        .collect();
    assert_eq!(texts.len(), 3, "one piece per word: {words:?}");
}

#[test]
fn recorded_error_and_fault_replies_are_sent_as_written() {
    let (mock, _dir) = scripted(
        &[
            json!({"match": {"prompt": "recorded"}, "reply": {"status": 200,
                "headers": {"Content-Type": "application/json", "X-Credits-Consumed": "3",
                            "X-Conversation-Id": "conv-recorded"},
                "body": {"id": "r1", "choices": [{"message": {"content": "from the recording"}}]}}}),
            json!({"match": {"prompt": "events"}, "reply": {"status": 200,
                "events": ["{\"choices\":[{\"delta\":{\"content\":\"ev\"}}]}", "[DONE]"]}}),
            json!({"match": {"prompt": "busy"}, "reply": {"status": 429,
                "headers": {"Retry-After": "2"},
                "error": {"message": "slow down", "type": "rate_limit_error"}}}),
            json!({"match": {"prompt": "cut"}, "reply": {"fault": "cut:1"}}),
            json!({"match": {"prompt": "drop"}, "reply": {"fault": "drop"}}),
        ],
        &[],
    );
    let recorded = chat(&mock, user("recorded"));
    assert_eq!(content(&recorded), "from the recording");
    assert_eq!(recorded.json()["id"], "r1");
    assert_eq!(recorded.header("x-conversation-id"), Some("conv-recorded"));
    assert_eq!(recorded.header("x-credits-consumed"), Some("3"));
    let events = chat(&mock, user("events"));
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        events.body,
        "data: {\"choices\":[{\"delta\":{\"content\":\"ev\"}}]}\n\ndata: [DONE]\n\n"
    );
    let busy = chat(&mock, user("busy"));
    assert_eq!((busy.status, busy.header("retry-after")), (429, Some("2")));
    assert_eq!(
        busy.json(),
        json!({"error": {"message": "slow down", "type": "rate_limit_error"}})
    );
    let cut = chat(&mock, streamed(user("cut"))).events();
    assert!(
        !cut.contains(&"[DONE]".to_string()) && cut.len() == 2,
        "{cut:?}"
    );
    let body = user("drop").to_string();
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(crate::mock::raw(&mock, request.as_bytes()), "");
    let lines = mock.requests(6);
    let faults: Vec<&Value> = lines.iter().map(|l| &l["status"]).collect();
    assert_eq!(
        faults,
        [
            &json!(200),
            &json!(200),
            &json!(429),
            &json!(200),
            &Value::Null
        ]
    );
}

#[test]
fn a_recorded_conversation_is_known_and_continues_from_its_turn() {
    let (mock, _dir) = scripted(
        &[
            json!({"match": {"turn": 1}, "reply": {"status": 200,
                "headers": {"X-Conversation-Id": "conv-abc"}, "body": {"choices": []}}}),
            json!({"match": {"turn": 2, "body": {"conversationId": "conv-abc"}},
                   "reply": {"content": "second turn"}}),
        ],
        &[],
    );
    assert_eq!(chat(&mock, user("one")).status, 200);
    let mut next = user("two");
    next["conversationId"] = json!("conv-abc");
    let reply = chat(&mock, next);
    assert_eq!(content(&reply), "second turn");
    assert_eq!(reply.header("x-conversation-id"), Some("conv-abc"));
    let mut unknown = user("two");
    unknown["conversationId"] = json!("conv-never");
    assert_eq!(chat(&mock, unknown).status, 404);
}

#[test]
fn auth_validation_rate_limit_credits_and_conversations_come_before_a_rule() {
    let (mock, _dir) = scripted(
        &[json!({"reply": {"content": "scripted", "credits": 4}})],
        &["--credits", "6", "--rate-limit", "4"],
    );
    assert_eq!(
        call(&mock, "POST", CHAT, None, &user("x").to_string()).status,
        401
    );
    assert_eq!(chat(&mock, json!({"messages": []})).status, 400);
    let mut unknown = user("x");
    unknown["conversationId"] = json!("conv-none");
    assert_eq!(chat(&mock, unknown).status, 404);
    let paid = chat(&mock, user("x"));
    assert_eq!(
        (content(&paid), paid.header("x-credits-remaining")),
        (json!("scripted"), Some("2"))
    );
    let unpaid = chat(&mock, user("x"));
    assert_eq!(unpaid.status, 402, "4 credits cannot be paid from 2");
    assert_eq!(chat(&mock, user("x")).status, 429);
    let used = rules_used(&mock, 6);
    assert_eq!(used.iter().filter(|r| !r.is_null()).count(), 2, "{used:?}");
}

#[test]
fn strict_answers_what_no_rule_matches_with_400_and_the_log_says_why() {
    let (mock, _dir) = scripted(
        &[json!({"match": {"prompt": "known"}, "reply": {"content": "yes"}, "times": 1})],
        &["--strict"],
    );
    assert_eq!(content(&chat(&mock, user("known question"))), "yes");
    let long = "known question, asked a second time after its only answer was used";
    let miss = chat(&mock, user(long));
    assert_eq!(miss.status, 400);
    let error = &miss.json()["error"];
    assert_eq!(
        (&error["type"], &error["code"]),
        (
            &json!("invalid_request_error"),
            &json!("no_matching_answer")
        )
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("agent \"default\""), "{message}");
    assert!(
        message.contains("\"known question, asked a second time afte...\""),
        "{message}"
    );
    let lines = mock.requests(2);
    assert_eq!(lines[1]["reason"], error["message"]);
    assert_eq!(lines[1].get("rule"), None);

    let strict_alone = Mock::start(&["--strict"]);
    assert_eq!(chat(&strict_alone, user("x")).status, 400);
    let (echoing, _dir) = scripted(
        &[json!({"match": {"prompt": "z"}, "reply": {"content": "z"}})],
        &[],
    );
    assert_eq!(content(&chat(&echoing, user("hello"))), "[turn 1] hello");
    let reason = echoing.only_request()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.ends_with(": the echo answer"), "{reason}");
}

#[test]
fn bnx_extracts_code_and_json_and_runs_a_batch_against_scripted_answers() {
    let (mock, dir) = scripted(
        &[
            json!({"match": {"prompt": "script"}, "reply": {
                "content": "Here you are:\n```sh\necho counted\n```\nRun it."}}),
            json!({"match": {"prompt": "json"}, "reply": {
                "content": "{\"lines\": 42}\n"}}),
            json!({"match": {"prompt_regex": "^item \\d$"}, "reply": {"content": "done"}}),
        ],
        &[],
    );
    let code = mock.bnx().args(["-x", "write a script"]).output().unwrap();
    assert_eq!(
        (code.status.code(), stdout_of(&code)),
        (Some(0), "echo counted\n".into())
    );
    let json = mock
        .bnx()
        .args(["--expect-json", "json please"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(0), "{}", stderr_of(&json));
    let parsed: Value = serde_json::from_str(&stdout_of(&json)).unwrap();
    assert_eq!(parsed, json!({"lines": 42}));
    let items = dir.path().join("items.jsonl");
    let mut file = std::fs::File::create(&items).unwrap();
    for i in 0..3 {
        writeln!(
            file,
            "{}",
            json!({"id": format!("i{i}"), "prompt": format!("item {i}")})
        )
        .unwrap();
    }
    let out = dir.path().join("out.jsonl");
    let batch = mock
        .bnx()
        .args(["--rate-limit", "0", "--batch"])
        .arg(&items)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(batch.status.code(), Some(0), "{}", stderr_of(&batch));
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert_eq!(lines.matches("\"done\"").count(), 3, "{lines}");
}

#[test]
fn a_bad_rule_or_answers_file_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.jsonl");
    std::fs::write(
        &path,
        "{\"reply\": {\"content\": \"fine\"}}\n\n{\"match\": {\"promt\": \"typo\"}, \"reply\": {\"content\": \"x\"}}\n",
    )
    .unwrap();
    let output = Command::new(BNX_MOCK)
        .args(["--answers"])
        .arg(&path)
        .args(["--", "sh", "-c", "echo ran"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(&format!(
            "bnx-mock: error: {}:3: unknown field `promt`",
            path.display()
        )),
        "{stderr}"
    );
    assert_eq!(stdout_of(&output), "", "the command did not run");
    let missing = Command::new(BNX_MOCK)
        .args(["--answers", "/no/such/answers.jsonl", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_of(&missing).contains("cannot read the answers file /no/such/answers.jsonl"));
}

#[test]
fn answers_files_are_bounded_in_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "{\"reply\":{\"content\":\"x\"}}\n";
    let (first, second) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::write(&first, rule.repeat(60_000)).unwrap();
    std::fs::write(&second, rule.repeat(40_001)).unwrap();
    let output = Command::new(BNX_MOCK)
        .arg("--answers")
        .arg(&first)
        .arg("--answers")
        .arg(&second)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    let expected = format!(
        "{}:40001: the answers files hold at most 100000 rules",
        second.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
