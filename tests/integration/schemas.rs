//! `--schema` and `--reask` (SPEC 10): the JSON-Schema-Test-Suite through the validator and
//! through the binary, what a run writes and exits with, the exact requests of a re-ask, batch
//! items with their own schemas, and hostile answers and schemas.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bnx::schema::Schema;

use crate::util::*;

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/json-schema-test-suite/tests"
);

/// Files the suite's runners skip by design: remote documents, and a vocabulary of another
/// meta-schema.
const SKIPPED_FILES: [&str; 2] = ["refRemote.json", "vocabulary.json"];

/// One case of the suite.
struct Case {
    file: String,
    group: String,
    schema: Value,
    data: Value,
    valid: bool,
}

/// Every case of `draft`'s required files, the schema marked with the draft when it names
/// none (bnx's default is 2020-12).
fn cases(draft: &str) -> Vec<Case> {
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new(SUITE).join(draft))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if SKIPPED_FILES.contains(&file.as_str()) {
            continue;
        }
        let groups: Vec<Value> = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        for group in groups {
            let mut schema = group["schema"].clone();
            if let (Some(map), "draft7") = (schema.as_object_mut(), draft) {
                map.entry("$schema")
                    .or_insert(json!("http://json-schema.org/draft-07/schema#"));
            }
            for test in group["tests"].as_array().unwrap() {
                cases.push(Case {
                    file: file.clone(),
                    group: group["description"].as_str().unwrap().to_string(),
                    schema: schema.clone(),
                    data: test["data"].clone(),
                    valid: test["valid"].as_bool().unwrap(),
                });
            }
        }
    }
    cases
}

/// A schema that needs another document: the suite's remote server, or a meta-schema, which
/// `--schema` refuses by design. Anything else that does not compile is a failure.
fn needs_a_remote_schema(why: &str) -> bool {
    [
        "refers to http://localhost:1234/",
        "refers to https://json-schema.org/",
        "refers to http://json-schema.org/",
    ]
    .iter()
    .any(|remote| why.starts_with(remote))
        && why.ends_with("outside its own document: nothing is fetched")
}

#[test]
fn the_validator_agrees_with_the_official_test_suite() {
    let mut report = Vec::new();
    for draft in ["draft2020-12", "draft7"] {
        let (mut run, mut skipped) = (0, 0);
        let mut failed = Vec::new();
        for case in cases(draft) {
            let schema = match Schema::from_text(&case.schema.to_string()) {
                Ok(schema) => schema,
                Err(why) if needs_a_remote_schema(&why) => {
                    skipped += 1;
                    continue;
                }
                Err(why) => {
                    run += 1;
                    failed.push(format!("{} / {}: {why}", case.file, case.group));
                    continue;
                }
            };
            run += 1;
            if schema.check(&case.data).is_ok() != case.valid {
                failed.push(format!("{} / {}: {}", case.file, case.group, case.data));
            }
        }
        let line = format!(
            "{draft}: {run} run, {} passed, {skipped} skipped (remote schemas)",
            run - failed.len()
        );
        println!("{line}");
        assert!(failed.is_empty(), "{line}\n{}", failed.join("\n"));
        assert!(run > 800, "{line}");
        report.push(line);
    }
    println!("{}", report.join("; "));
}

/// A chat server that answers its n-th request with the n-th of `replies` (then the last
/// again): `(content, extra header lines)`, streamed when the request asks.
fn answering(replies: Vec<(&'static str, &'static str)>) -> Scripted {
    let next = AtomicUsize::new(0);
    Scripted::answering(move |request| {
        let n = next.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1);
        let (content, headers) = replies[n];
        reply(request, content, headers)
    })
}

fn reply(request: &Request, content: &str, headers: &str) -> Vec<u8> {
    let headers = format!("X-Credits-Consumed: 2\r\n{headers}");
    if request.json()["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            json!({"object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            .to_string()
        };
        let mut events = vec![chunk(json!({"role": "assistant"}), Value::Null)];
        for piece in content.split_inclusive(' ') {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        events.push("[DONE]".into());
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        http(
            "200 OK",
            &format!("Content-Type: text/event-stream\r\n{headers}"),
            &body,
        )
    } else {
        let body = json!({"object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]});
        http(
            "200 OK",
            &format!("Content-Type: application/json\r\n{headers}"),
            &body.to_string(),
        )
    }
}

/// A server whose answer is the last user message: for answers a test picks per run.
fn echoing() -> Scripted {
    Scripted::answering(|request| {
        let messages = request.json()["messages"].clone();
        let last = messages.as_array().unwrap().last().unwrap()["content"].clone();
        reply(request, last.as_str().unwrap(), "")
    })
}

fn bodies(server: &Scripted) -> Vec<Value> {
    server.requests().iter().map(Request::json).collect()
}

const PERSON: &str = r#"{"type": "object", "required": ["name", "age"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "additionalProperties": false}"#;

#[test]
fn a_sample_of_the_suite_agrees_through_the_binary() {
    let server = echoing();
    let dir = tempfile::tempdir().unwrap();
    let mut sampled = 0;
    let mut skipped = 0;
    for draft in ["draft2020-12", "draft7"] {
        let mut seen = std::collections::HashSet::new();
        for case in cases(draft) {
            // The first case of each file.
            let first = seen.insert(case.file.clone());
            let remote = Schema::from_text(&case.schema.to_string())
                .is_err_and(|why| needs_a_remote_schema(&why));
            skipped += usize::from(first && remote);
            if !first || remote {
                continue;
            }
            sampled += 1;
            let schema = dir.path().join("schema.json");
            fs::write(&schema, case.schema.to_string()).unwrap();
            let output = server
                .bnx(dir.path())
                .current_dir(dir.path())
                .arg("--schema")
                .arg(&schema)
                // Far more requests than the account's 30 a minute, to a local server.
                .env("BLUENEXUS_RATE_LIMIT", "0")
                .arg("--")
                .arg(case.data.to_string())
                .output()
                .unwrap();
            let expected = if case.valid { 0 } else { 3 };
            assert_eq!(
                output.status.code(),
                Some(expected),
                "{} / {}: {}\n{}",
                case.file,
                case.group,
                case.data,
                stderr_of(&output)
            );
            if case.valid {
                let written: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
                assert_eq!(written, case.data);
            }
        }
    }
    println!("{sampled} cases through the binary, {skipped} skipped (remote schemas)");
    assert!(sampled > 60, "{sampled}");
}

#[test]
fn a_valid_answer_is_written_compact_with_its_key_order_and_number_text() {
    let server = answering(vec![(
        "```json\n{\"name\": \"Frank \\\"H\\\"\",\n  \"age\": 1.0e2}\n```",
        "",
    )]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("person.json"), PERSON).unwrap();
    for stream in [false, true] {
        server
            .bnx(dir.path())
            .current_dir(dir.path())
            .args(if stream { &["-s"][..] } else { &[][..] })
            .args(["--schema", "person.json", "who?"])
            .assert()
            .success()
            .stdout("{\"name\":\"Frank \\\"H\\\"\",\"age\":1.0e2}\n")
            .stderr("");
    }
    // --schema implies --expect-json, and may be given with it; inline schemas too.
    server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args(["--expect-json", "--schema", PERSON, "who?"])
        .assert()
        .success();
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn an_invalid_answer_is_exit_3_naming_the_first_failure() {
    let server = answering(vec![
        ("{\"name\": 12, \"age\": -1, \"x\": 1}", ""),
        ("[1, 2]", ""),
        ("Sure! {\"name\": \"a\", \"age\": 1}", ""),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let run = |prompt: &str| {
        server
            .bnx(dir.path())
            .current_dir(dir.path())
            .args(["--schema", PERSON, prompt])
            .assert()
            .code(3)
            .stdout("")
    };
    run("a").stderr(
        "bnx: error: the answer does not match the schema (--schema): (root): additional \
         property \"x\" is not allowed (and 2 more)\n",
    );
    run("b").stderr(
        "bnx: error: the answer does not match the schema (--schema): (root): [1,2] is not of \
         type \"object\"\n",
    );
    run("c").stderr(predicate::str::starts_with(
        "bnx: error: the answer is not one JSON value (--schema): parsing stopped at line 1, column 1 \
         (expected value); the answer starts \"Sure! {\"name\": \"a\", \"age\": 1}\"",
    ));
}

#[test]
fn schema_excludes_json_and_extract_and_a_bad_schema_sends_nothing() {
    let server = answering(vec![("{}", "")]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bad.json"), "{\"type\": ").unwrap();
    fs::write(dir.path().join("other.json"), "{}").unwrap();
    server
        .bnx(dir.path())
        .args(["--schema", "{}", "--json", "q"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "\"message\":\"the argument '--schema <SCHEMA>' cannot be used with '--json'\"",
        ));
    for args in [
        &["--schema", "{}", "-x"][..],
        &["--reask", "1"],
        &["--reask", "6", "-x"],
        &["--reask", "-1", "-x"],
    ] {
        server
            .bnx(dir.path())
            .current_dir(dir.path())
            .args(args)
            .arg("q")
            .assert()
            .code(2)
            .stdout("");
    }
    for (schema, message) in [
        (
            "bad.json",
            "--schema: schema file bad.json is not JSON: EOF while parsing",
        ),
        (
            "missing.json",
            "--schema: cannot read schema file missing.json: No such file",
        ),
        (
            ".",
            "--schema: cannot read schema file .: it is a directory",
        ),
        (
            "{\"type\": 7}",
            "--schema: the schema is not a valid schema: /type: 7 is not",
        ),
        (
            "{\"$schema\": \"http://json-schema.org/draft-03/schema#\"}",
            "--schema: the schema names an unknown $schema",
        ),
        (
            "{\"$ref\": \"other.json\"}",
            "--schema: the schema refers to other.json, outside its own document: nothing is \
             fetched",
        ),
        (
            "{\"$ref\": \"http://127.0.0.1:9/s.json\"}",
            "refers to http://127.0.0.1:9/s.json, outside",
        ),
        (
            "{\"items\": {\"$ref\": \"https://json-schema.org/draft/2020-12/schema\"}}",
            "refers to https://json-schema.org/draft/2020-12/schema, outside",
        ),
        (
            "{\"$ref\": \"#/$defs/none\"}",
            "--schema: the schema is not a valid schema",
        ),
        ("{\"$ref\": \"#\"}", "causing reference cycle"),
    ] {
        let output = server
            .bnx(dir.path())
            .current_dir(dir.path())
            .args(["--schema", schema, "q"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{schema}");
        let stderr = stderr_of(&output);
        assert!(stderr.starts_with("bnx: error: "), "{stderr}");
        assert!(stderr.contains(message), "{schema}: {stderr}");
        assert_clean_stderr(&stderr);
    }
    // Even a dry run checks the schema, and no token is needed to find it bad.
    bnx_in(dir.path())
        .args(["--dry-run", "--schema", "bad.json", "q"])
        .assert()
        .code(2);
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[test]
fn a_reask_without_a_conversation_sends_the_exchange_and_the_answer_as_received() {
    let server = answering(vec![
        (
            "Here it is:\n```json\n{\"name\": \"Al\", \"age\": \"3\"}\n```",
            "",
        ),
        ("{\"name\": \"Al\", \"age\": 3}", ""),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let output = server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args([
            "--schema",
            PERSON,
            "--reask",
            "2",
            "--system",
            "Be exact.",
            "Al, 3",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "{\"name\":\"Al\",\"age\":3}\n");
    assert_eq!(
        stderr_of(&output),
        "bnx: the answer is not one JSON value; asking again (1 of 2)\n"
    );
    let sent = bodies(&server);
    assert_eq!(
        sent[0],
        json!({"messages": [{"role": "system", "content": "Be exact."},
                            {"role": "user", "content": "Al, 3"}]})
    );
    let compact_schema = Schema::from_arg(PERSON).unwrap().text().to_string();
    assert_eq!(
        sent[1],
        json!({"messages": [
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": "Al, 3"},
            {"role": "assistant",
             "content": "Here it is:\n```json\n{\"name\": \"Al\", \"age\": \"3\"}\n```"},
            {"role": "user", "content": format!(
                "Your answer is not one JSON value (expected value at line 1 column 1).\n\
                 It must be valid against this JSON Schema: {compact_schema}\n\
                 Reply with only the JSON value, no prose.")},
        ]})
    );
    assert_eq!(sent.len(), 2);
}

#[test]
fn a_reask_in_a_conversation_sends_one_message_with_its_id() {
    let server = answering(vec![
        (
            "{\"name\": \"Al\", \"age\": \"3\"}",
            "X-Conversation-Id: conv-7\r\n",
        ),
        (
            "{\"name\": \"Al\", \"age\": 3}",
            "X-Conversation-Id: conv-7\r\n",
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args([
            "--schema", PERSON, "--reask", "1", "--system", "S", "-s", "Al",
        ])
        .assert()
        .success()
        .stdout("{\"name\":\"Al\",\"age\":3}\n")
        .stderr("bnx: the answer does not match the schema; asking again (1 of 1)\n");
    let sent = bodies(&server);
    let compact_schema = Schema::from_arg(PERSON).unwrap().text().to_string();
    assert_eq!(
        sent[1],
        json!({"messages": [{"role": "user", "content": format!(
            "Your answer does not match the JSON Schema:\n\
             - /age: \"3\" is not of type \"integer\"\n\
             It must be valid against this JSON Schema: {compact_schema}\n\
             Reply with only the JSON value, no prose.")}],
               "stream": true, "conversationId": "conv-7"}),
        "one message, no --system again, streamed as the first was"
    );
    // The conversation the last answer carried is the one -c continues.
    let state = walk(&dir.path().join("state"));
    assert!(
        state
            .iter()
            .any(|p| fs::read_to_string(p).is_ok_and(|t| t.contains("conv-7"))),
        "{state:?}"
    );
}

#[test]
fn exhausted_reasks_end_with_exit_3_after_every_ask() {
    let server = answering(vec![("no code here", "")]);
    let dir = tempfile::tempdir().unwrap();
    server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args(["-x", "--reask", "2", "a script"])
        .assert()
        .code(3)
        .stdout("")
        .stderr(
            "bnx: the answer holds no fenced code block; asking again (1 of 2)\n\
             bnx: the answer holds no fenced code block; asking again (2 of 2)\n\
             bnx: error: the answer holds no fenced code block (-x)\n",
        );
    let sent = bodies(&server);
    assert_eq!(sent.len(), 3);
    let last = sent[2]["messages"].as_array().unwrap();
    let roles: Vec<&str> = last.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
    assert_eq!(
        last[4]["content"],
        "Your answer holds no fenced code block.\nReply with the code in one fenced code \
         block: a line of ``` before it and after it."
    );
    let server = answering(vec![("prose", "")]);
    server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args(["--expect-json", "--reask", "1", "q"])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "bnx: the answer is not one JSON value; asking again (1 of 1)\n",
        ));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_reask_that_fails_ends_with_its_own_exit_code() {
    let asked = AtomicUsize::new(0);
    let server = Scripted::answering(move |request| match asked.fetch_add(1, Ordering::SeqCst) {
        0 => reply(request, "prose", ""),
        _ => http(
            "400 Bad Request",
            "Content-Type: application/json\r\n",
            r#"{"error": {"message": "too long", "type": "invalid_request_error"}}"#,
        ),
    });
    let dir = tempfile::tempdir().unwrap();
    let output = server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args(["--expect-json", "--reask", "3", "q"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("asking again (1 of 3)"), "{stderr}");
    assert!(
        stderr.contains("bnx: error: ") && stderr.contains("too long"),
        "{stderr}"
    );
    assert_eq!(
        server.requests().len(),
        2,
        "400 is not retried, nor asked again"
    );
}

fn write_items(dir: &Path, items: &[Value]) -> PathBuf {
    let path = dir.join("items.jsonl");
    let text: String = items.iter().map(|i| format!("{i}\n")).collect();
    fs::write(&path, text).unwrap();
    path
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn batch_items_have_their_own_schemas_and_their_lines_say_what_broke() {
    let server = echoing();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("person.json"), PERSON).unwrap();
    let items = write_items(
        dir.path(),
        &[
            json!({"id": "path", "prompt": "{\"name\": \"a\", \"age\": 1.0e1}",
                   "schema": "person.json"}),
            json!({"id": "object", "prompt": "[1]", "schema": {"type": "array"}}),
            json!({"id": "run", "prompt": "{\"n\": 1}"}),
            json!({"id": "broken", "prompt": "{\"name\": 1, \"age\": \"x\"}",
                   "schema": "person.json"}),
        ],
    );
    let output = server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args(["--batch", items.to_str().unwrap(), "-j", "1"])
        .args(["--schema", "{\"type\": \"object\", \"required\": [\"n\"]}"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let first = lines(&stdout_of(&output));
    assert_eq!(first[0]["content"], json!({"name": "a", "age": 10.0}));
    assert!(
        stdout_of(&output).contains("\"age\":1.0e1"),
        "number text as received"
    );
    assert_eq!(first[1]["content"], json!([1]), "the item's schema wins");
    assert_eq!(first[2]["content"], json!({"n": 1}), "the run's schema");
    assert_eq!(first[3]["bnx"]["exit_code"], 3);
    assert_eq!(
        first[3]["error"],
        json!({"message": "the answer does not match the schema (--schema): /age: \"x\" is \
                           not of type \"integer\" (and 1 more)",
               "type": "answer",
               "errors": [{"path": "/age", "message": "\"x\" is not of type \"integer\""},
                          {"path": "/name", "message": "1 is not of type \"string\""}]})
    );
    // --json: the line holds the response too, and an item's schema is still its own.
    let output = server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args(["--batch", items.to_str().unwrap(), "-j", "1", "--json"])
        .output()
        .unwrap();
    let lines = lines(&stdout_of(&output));
    assert_eq!(lines[1]["content"], json!([1]));
    assert_eq!(lines[1]["response"]["object"], "chat.completion");
    assert_eq!(
        lines[2]["content"], "{\"n\": 1}",
        "no contract for this item"
    );
    assert_eq!(lines[3]["error"]["errors"][0]["path"], "/age");
}

#[test]
fn a_batch_reask_is_counted_in_asks_and_its_credits_add_up() {
    let server = answering(vec![("prose", ""), ("{\"n\": 1}", "")]);
    let dir = tempfile::tempdir().unwrap();
    let items = write_items(dir.path(), &[json!({"id": "a", "prompt": "q"})]);
    let output = server
        .bnx(dir.path())
        .current_dir(dir.path())
        .args([
            "--batch",
            items.to_str().unwrap(),
            "--expect-json",
            "--reask",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let line = &lines(&stdout_of(&output))[0];
    assert_eq!(line["content"], json!({"n": 1}));
    assert_eq!(line["bnx"]["asks"], 2);
    assert_eq!(line["bnx"]["credits_consumed"], 4, "2 credits an ask");
}

#[test]
fn a_bad_item_schema_is_exit_65_naming_its_line_before_anything_is_sent() {
    let server = echoing();
    let dir = tempfile::tempdir().unwrap();
    for (schema, message) in [
        (
            json!({"type": "nope"}),
            "items.jsonl, line 2: the schema is not a valid schema",
        ),
        (
            json!("missing.json"),
            "items.jsonl, line 2: cannot read schema file missing.json",
        ),
        (
            json!({"$ref": "https://example.com/s"}),
            "line 2: the schema refers to https://example.com/s",
        ),
        (
            json!(true),
            "line 2: schema must be a path or an object, not true",
        ),
    ] {
        let items = write_items(
            dir.path(),
            &[
                json!({"prompt": "a"}),
                json!({"prompt": "b", "schema": schema}),
            ],
        );
        server
            .bnx(dir.path())
            .current_dir(dir.path())
            .args(["--batch", items.to_str().unwrap()])
            .assert()
            .code(65)
            .stdout("")
            .stderr(predicate::str::contains(message));
    }
    assert!(server.requests().is_empty());
}

#[test]
fn hostile_answers_end_with_exit_3_in_bounded_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = format!("[{}0]", "0,".repeat(30 << 20));
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let catastrophic = format!("\"{}!\"", "a".repeat(1 << 20));
    for (answer, schema, message) in [
        (zeros, "{}", "holds more than 2,000,000 JSON values"),
        (deep, "{}", "nests deeper than 128 levels"),
        (
            catastrophic,
            r#"{"pattern": "^(a+)+$"}"#,
            "does not match the pattern",
        ),
    ] {
        let answer = Arc::new(answer);
        let served = Arc::clone(&answer);
        let server = Scripted::answering(move |request| reply(request, &served, ""));
        let mut cmd = isolated(BNX, dir.path());
        cmd.env("BLUENEXUS_BASE_URL", &server.origin)
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(["--schema", schema, "q"]);
        let run = run_measured(&mut cmd);
        assert_eq!(run.code, Some(3), "{message}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{}", run.stderr);
        assert!(
            // Bounded, not fast: a debug build on a loaded 2-core machine took 31 s here.
            run.elapsed < Duration::from_secs(120),
            "{message}: {:?}",
            run.elapsed
        );
        // The 60 MiB answer is read (body and text, held once each) but never made a tree.
        assert!(
            run.max_rss_kib < 400 << 10,
            "{message}: {} KiB",
            run.max_rss_kib
        );
        assert_clean_stderr(&run.stderr);
    }
}
