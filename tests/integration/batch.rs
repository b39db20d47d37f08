//! `--batch`: items checked before anything is sent, one line per item, resumable output that
//! never pays twice for an item that finished, the stops, and the exit code rule.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::util::*;

/// The output lines, parsed.
fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn write_items(dir: &Path, items: &[Value]) -> std::path::PathBuf {
    let path = dir.join("items.jsonl");
    let text: String = items.iter().map(|i| format!("{i}\n")).collect();
    fs::write(&path, text).unwrap();
    path
}

/// `bnx --batch ITEMS` aimed at `mock`.
fn batch(mock: &Mock, items: &Path) -> assert_cmd::Command {
    let mut cmd = mock.bnx();
    cmd.arg("--batch").arg(items);
    cmd
}

/// `n` items with ids `item-0`... and prompts `prompt 0`...
fn numbered(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("item-{i}"), "prompt": format!("prompt {i}")}))
        .collect()
}

/// How many requests the mock received for each prompt.
fn prompts_sent(mock: &Mock, at_least: usize) -> std::collections::BTreeMap<String, usize> {
    let mut sent = std::collections::BTreeMap::new();
    for request in mock.requests(at_least) {
        let messages = request["body"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(last) = messages.last() {
            *sent
                .entry(last["content"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    sent
}

#[test]
fn each_item_gets_one_line_with_its_content_and_report() {
    let mock = Mock::start(&[]);
    let items = write_items(
        mock.dir.path(),
        &[
            json!({"id": "a", "prompt": "alpha"}),
            json!({"id": 2, "prompt": "beta", "system": "be brief", "temperature": 0.5, "max_tokens": 50}),
            json!({"prompt": "gamma", "agent": "ops bot"}),
            json!({"id": "d", "messages": [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}], "prompt": "delta"}),
        ],
    );
    let output = batch(&mock, &items)
        .args(["-j", "2", "Q:"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let mut lines = lines(&stdout_of(&output));
    lines.sort_by_key(|l| l["id"].to_string());
    let ids: Vec<String> = lines.iter().map(|l| l["id"].to_string()).collect();
    assert_eq!(ids, ["\"3\"", "\"a\"", "\"d\"", "2"]);
    assert_eq!(lines[1]["content"], "[turn 1] Q:\n\nalpha");
    assert_eq!(lines[0]["bnx"]["agent"], "ops bot");
    for line in &lines {
        let meta = &line["bnx"];
        assert_eq!(
            (meta["exit_code"].clone(), meta["status"].clone()),
            (json!(0), json!(200))
        );
        assert_eq!(meta["finish_reason"], "stop");
        assert_eq!(meta["credits_consumed"], 1);
        assert!(line.get("response").is_none(), "only with --json");
    }
    assert_eq!(
        stderr_of(&output),
        "bnx: batch: 4 done, 0 failed, 0 skipped (done before), 0 not started; 4 credits consumed\n"
    );
    let requests = mock.requests(4);
    let body = |content: &str| {
        requests
            .iter()
            .map(|r| r["body"].clone())
            .find(|b| b["messages"].as_array().unwrap().last().unwrap()["content"] == content)
            .unwrap_or_else(|| panic!("no request for {content:?}"))
    };
    assert_eq!(
        body("Q:\n\nbeta"),
        json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q:\n\nbeta"}],
               "temperature": 0.5, "max_tokens": 50})
    );
    assert_eq!(body("Q:\n\ndelta")["messages"].as_array().unwrap().len(), 3);
    assert!(requests
        .iter()
        .any(|r| r["path"] == "/api/v1/agents/ops%20bot/chat/completions"));
}

#[test]
fn a_pretty_printed_response_is_one_line_with_its_number_text_kept() {
    let body = "{\n  \"choices\": [{\"message\": {\"content\": \"ok\"}}],\n  \
                \"score\": 1.50,\n  \"big\": 123456789012345678901234\n}\n";
    let reply = http("200 OK", "Content-Type: application/json\r\n", body);
    let server = Scripted::answering(move |_| reply.clone());
    let dir = tempfile::tempdir().unwrap();
    let items = write_items(dir.path(), &numbered(1));
    let output = server
        .bnx(dir.path())
        .args(["--json", "--batch"])
        .arg(&items)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains(r#""response":{"choices":[{"message":{"content":"ok"}}],"score":1.50,"big":123456789012345678901234}"#),
        "{stdout}"
    );
}

#[test]
fn files_are_read_per_item_and_json_lines_hold_the_response() {
    let mock = Mock::start(&[]);
    let notes = mock.dir.path().join("notes.md");
    fs::write(&notes, "line one\n").unwrap();
    let items = write_items(
        mock.dir.path(),
        &[json!({"id": "n", "prompt": "summarize", "files": [notes]})],
    );
    let output = batch(&mock, &items).arg("--json").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let line = &lines(&stdout_of(&output))[0];
    let expected = format!(
        "summarize\n\n<file name=\"{}\">\nline one\n</file>",
        notes.display()
    );
    assert_eq!(line["content"], format!("[turn 1] {expected}"));
    assert_eq!(line["response"]["object"], "chat.completion");
    assert_eq!(
        line["response"]["choices"][0]["message"]["content"],
        line["content"]
    );
}

#[test]
fn a_bad_line_is_exit_65_naming_it_and_nothing_is_sent() {
    let mock = Mock::start(&[]);
    let cases = [
        (
            "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"temprature\": 1}\n",
            "line 2: unknown field `temprature`",
        ),
        (
            "{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": \"1\", \"prompt\": \"b\"}\n",
            "line 2: the id \"1\" is already used on line 1",
        ),
        (
            "{\"prompt\": \"a\"}\n[\"b\"]\n",
            "line 2: not a JSON object",
        ),
        (
            "{\"prompt\": \"a\", \"agent\": \"..\"}\n",
            "line 1: bad agent id",
        ),
    ];
    for (text, expected) in cases {
        let path = mock.dir.path().join("bad.jsonl");
        fs::write(&path, text).unwrap();
        batch(&mock, &path)
            .assert()
            .code(65)
            .stdout("")
            .stderr(predicate::str::contains(expected));
    }
    mock.bnx()
        .args(["--batch", "-"])
        .write_stdin("{\"prompt\": 1}\n")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("standard input, line 1"));
    mock.assert_no_requests();
}

#[test]
fn the_exit_code_is_the_first_failed_item_in_input_order() {
    // One job and no retries: the first request (item-0) meets the 503, the rest succeed.
    let mock = Mock::start(&["--fault", "503"]);
    let items = write_items(mock.dir.path(), &numbered(3));
    let output = batch(&mock, &items)
        .args(["-j", "1", "--retries", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    let lines = lines(&stdout_of(&output));
    let codes: Vec<Value> = lines
        .iter()
        .map(|l| l["bnx"]["exit_code"].clone())
        .collect();
    assert_eq!(codes, [json!(69), json!(0), json!(0)]);
    assert_eq!(lines[0]["error"]["type"], "server_error");
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("bnx: batch: 2 done, 1 failed, 0 skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bnx: error: item \"item-0\" (line 1) failed with exit 69"),
        "{stderr}"
    );
}

#[test]
fn a_refused_token_starts_no_new_item() {
    let mock = Mock::start(&[]);
    let items = write_items(mock.dir.path(), &numbered(5));
    let output = mock
        .bnx()
        .env("BLUENEXUS_TOKEN", "wrong")
        .arg("--batch")
        .arg(&items)
        .args(["-j", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(77));
    let lines = lines(&stdout_of(&output));
    assert_eq!(
        lines.len(),
        1,
        "the item that met the 401 gets its line, no other starts"
    );
    assert_eq!(lines[0]["bnx"]["exit_code"], 77);
    assert!(stderr_of(&output).contains("0 done, 1 failed, 0 skipped (done before), 4 not started"));
    assert_eq!(mock.requests(1).len(), 1);
}

#[test]
fn out_of_credits_and_credit_budgets_stop_the_batch_with_exit_4() {
    let broke = Mock::start(&["--credits", "2"]);
    let items = write_items(broke.dir.path(), &numbered(5));
    let output = batch(&broke, &items).args(["-j", "1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    let codes: Vec<Value> = lines(&stdout_of(&output))
        .iter()
        .map(|l| l["bnx"]["exit_code"].clone())
        .collect();
    assert_eq!(codes, [json!(0), json!(0), json!(4)]);
    assert!(stderr_of(&output).contains("hint: the account is out of credits"));

    let mock = Mock::start(&["--credits", "10"]);
    let items = write_items(mock.dir.path(), &numbered(5));
    let budget = |args: &[&str]| {
        let output = batch(&mock, &items)
            .args(["-j", "1"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
        (lines(&stdout_of(&output)).len(), stderr_of(&output))
    };
    let (done, stderr) = budget(&["--max-credits", "2"]);
    assert_eq!(done, 2);
    assert!(
        stderr.contains("hint: raise --max-credits; with -o FILE, a rerun skips the items done"),
        "{stderr}"
    );
    // 8 credits remain: the next item leaves 7, below the floor of 7.5.
    let (done, stderr) = budget(&["--min-credits", "7.5"]);
    assert_eq!(done, 1);
    assert!(stderr.contains("hint: add credits"), "{stderr}");
}

#[test]
fn max_credits_holds_however_many_jobs_and_says_what_was_consumed() {
    let cheap = numbered(20);
    let dear_after_the_first = priced(20, &(1..20).collect::<Vec<_>>());
    /// A run with -j 8 and `--max-credits cap`: the items sent, the credits they cost, the error
    /// after `--max-credits N reached: `, the summary's counts.
    struct Case<'a> {
        mock: &'a [&'a str],
        items: &'a [Value],
        cap: &'a str,
        sent: usize,
        paid: f64,
        error: &'a str,
        summary: &'a str,
    }
    let cases = [
        // Nothing is sent.
        Case {
            mock: &[],
            items: &cheap,
            cap: "0",
            sent: 0,
            paid: 0.0,
            error: "this run consumed 0 credits",
            summary:
                "0 done, 0 failed, 0 skipped (done before), 20 not started; 0 credits consumed",
        },
        // A credit an answer: the first runs alone, then four at most, never the eight -j allows.
        Case {
            mock: &[],
            items: &cheap,
            cap: "5",
            sent: 5,
            paid: 5.0,
            error: "this run consumed 5 credits",
            summary:
                "5 done, 0 failed, 0 skipped (done before), 15 not started; 5 credits consumed",
        },
        // Three an answer: 3, then two more (3 + 2 x 3 = 9); a fourth could reach 12.
        Case {
            mock: &["--answer-size", "8000"],
            items: &cheap,
            cap: "10",
            sent: 3,
            paid: 9.0,
            error: "this run consumed 9 credits, and another item could cost 3 credits",
            summary:
                "3 done, 0 failed, 0 skipped (done before), 17 not started; 9 credits consumed",
        },
        // Answers dearer than any seen before: the overshoot is theirs, and both the error and
        // the summary give every credit consumed, the items in flight at the cap included.
        Case {
            mock: &[],
            items: &dear_after_the_first,
            cap: "5",
            sent: 5,
            paid: 9.0,
            error: "this run consumed 9 credits",
            summary:
                "5 done, 0 failed, 0 skipped (done before), 15 not started; 9 credits consumed",
        },
    ];
    for Case {
        mock,
        items,
        cap,
        sent,
        paid,
        error,
        summary,
    } in cases
    {
        let mock = Mock::start(mock);
        let items = write_items(mock.dir.path(), items);
        let output = batch(&mock, &items)
            .args(["-j", "8", "--rate-limit", "0", "--max-credits", cap])
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains(&format!("bnx: batch: {summary}\n"))
                && stderr.contains(&format!(
                    "bnx: error: --max-credits {cap} reached: {error}\n"
                )),
            "{stderr}"
        );
        let lines = lines(&stdout_of(&output));
        assert!(
            lines.iter().all(|l| l["bnx"]["exit_code"] == 0),
            "{lines:?}"
        );
        let cost: f64 = lines
            .iter()
            .map(|l| l["bnx"]["credits_consumed"].as_f64().unwrap())
            .sum();
        assert_eq!((lines.len(), cost), (sent, paid), "--max-credits {cap}");
        if sent == 0 {
            mock.assert_no_requests();
        } else {
            assert_eq!(mock.requests(sent).len(), sent, "--max-credits {cap}");
        }
    }
}

/// The most requests the mock was answering at one time, from its log's arrival times and
/// durations.
fn most_at_once(requests: &[Value]) -> usize {
    const DAY: u64 = 86_400_000;
    let ms = |request: &Value| {
        let time = request["time"].as_str().unwrap();
        let clock = &time[11..23]; // HH:MM:SS.mmm
        let part = |range: std::ops::Range<usize>| clock[range].parse::<u64>().unwrap();
        let ms = ((part(0..2) * 60 + part(3..5)) * 60 + part(6..8)) * 1000 + part(9..12);
        // A run over midnight: its early-morning times come after the late-evening ones.
        if ms < DAY / 2 && requests[0]["time"].as_str().unwrap()[11..13] >= *"12" {
            ms + DAY
        } else {
            ms
        }
    };
    let mut edges: Vec<(u64, i32)> = requests
        .iter()
        .flat_map(|r| {
            let start = ms(r);
            [(start, 1), (start + r["duration_ms"].as_u64().unwrap(), -1)]
        })
        .collect();
    // An answer ending in the millisecond another starts is not counted with it.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn jobs_run_that_many_items_at_once_and_no_more() {
    let slow: Vec<&str> = ["--fault", "slow:1"].repeat(9);
    let mock = Mock::start(&slow);
    let items = write_items(mock.dir.path(), &numbered(9));
    let output = batch(&mock, &items).args(["-j", "3"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(lines(&stdout_of(&output)).len(), 9);
    let requests = mock.requests(9);
    assert_eq!(requests.len(), 9);
    assert!(requests
        .iter()
        .all(|r| r["duration_ms"].as_u64() >= Some(1000)));
    assert_eq!(most_at_once(&requests), 3);
}

/// `numbered(n)`, the items at `costly` asking for an answer of two credits at the mock
/// (over 1000 tokens of 4 bytes, the mock's price).
fn priced(n: usize, costly: &[usize]) -> Vec<Value> {
    let mut items = numbered(n);
    for &i in costly {
        items[i]["prompt"] = json!(format!("prompt {i} {}", "x".repeat(4000)));
    }
    items
}

#[test]
fn an_item_waiting_for_its_retry_is_not_retried_once_the_budget_is_reached() {
    // The first item runs alone and costs 1, so two may then be in flight under a cap of 3.
    // Whichever of them comes first gets the 429 and waits 2 s to retry; the other is
    // answered meanwhile for 2 credits and reaches the budget.
    let mock = Mock::start(&["--fault", "slow:0", "--fault", "429:2"]);
    let items = write_items(mock.dir.path(), &priced(4, &[1, 2]));
    let output = batch(&mock, &items)
        .args(["-j", "2", "--rate-limit", "0", "--max-credits", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(75), "{}", stderr_of(&output));
    let lines = lines(&stdout_of(&output));
    assert_eq!(lines.len(), 3, "{lines:?}");
    let failed = lines
        .iter()
        .find(|l| l["bnx"]["exit_code"] == 75)
        .unwrap_or_else(|| panic!("{lines:?}"));
    // The server's own error object, and one attempt: the retry was never sent.
    assert_eq!(failed["bnx"]["attempts"], 1);
    assert_eq!(failed["error"]["type"], "rate_limit_error");
    assert!(stderr_of(&output).contains("2 done, 1 failed, 0 skipped (done before), 1 not started"));
    assert_eq!(mock.requests(3).len(), 3);
}

#[test]
fn an_item_waiting_for_its_pacing_slot_is_not_sent_once_the_budget_is_reached() {
    let mock = Mock::start(&[]);
    let items = write_items(mock.dir.path(), &priced(4, &[1, 2]));
    let out = mock.dir.path().join("out.jsonl");
    // The first item runs alone and costs 1, so two may then be in flight under a cap of 3.
    // The third slot is 3 s away; the item that took the second reaches the budget (2
    // credits) long before.
    let output = batch(&mock, &items)
        .args(["-j", "2", "--rate-limit", "2/3", "--max-credits", "3", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    let lines = lines(&fs::read_to_string(&out).unwrap());
    // Either of the two costly items may take the second slot.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l["bnx"]["exit_code"] == 0),
        "{lines:?}"
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("batch: 2 done, 0 failed, 0 skipped (done before), 2 not started"),
        "{stderr}"
    );
    assert!(stderr.contains("--max-credits 3 reached"), "{stderr}");
    assert_eq!(mock.requests(2).len(), 2);
    // The rerun resumes with the items never started.
    let output = batch(&mock, &items)
        .args(["--rate-limit", "0", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let sent = prompts_sent(&mock, 4);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent.values().all(|&n| n == 1), "{sent:?}");
}

#[test]
fn a_line_cut_short_by_a_full_disk_is_taken_back() {
    let mock = Mock::start(&[]);
    let items = write_items(mock.dir.path(), &numbered(3));
    let out = mock.dir.path().join("out.jsonl");
    let run = |limit: Option<u64>| {
        let mut cmd = mock.command();
        if let Some(limit) = limit {
            // SAFETY: setrlimit(2) and signal(2) only, in the child between fork and exec.
            // Past the limit a write fails with EFBIG (SIGXFSZ ignored), the way a full disk
            // fails one: a write that crosses it is cut short.
            unsafe {
                cmd.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    match libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        cmd.arg("--batch")
            .arg(&items)
            .args(["-j", "1", "--rate-limit", "0", "-o"])
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert_eq!(run(None).status.code(), Some(0));
    let first = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .len() as u64
        + 1;
    fs::remove_file(&out).unwrap();

    // Room for one line and a half.
    let cut = run(Some(first + first / 2));
    assert_eq!(cut.status.code(), Some(74), "{}", stderr_of(&cut));
    let text = fs::read_to_string(&out).unwrap();
    // Only whole lines (their elapsed_ms may differ from the first run's by a digit or two).
    assert!(text.ends_with('\n'), "{text:?}");
    assert_eq!(lines(&text).len(), 1, "{text:?}");
    assert!(
        stderr_of(&cut).contains("File too large"),
        "{}",
        stderr_of(&cut)
    );

    let rerun = run(None);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr_of(&rerun));
    assert!(stderr_of(&rerun).contains("2 done, 0 failed, 1 skipped (done before)"));
    assert_eq!(lines(&fs::read_to_string(&out).unwrap()).len(), 3);
}

#[test]
fn a_rerun_with_output_skips_what_is_done_and_repairs_a_torn_line() {
    let mock = Mock::start(&["--fault", "503"]);
    let items = write_items(mock.dir.path(), &numbered(3));
    let out = mock.dir.path().join("out.jsonl");
    let run = || {
        batch(&mock, &items)
            .arg("-o")
            .arg(&out)
            .args(["-j", "1", "--retries", "0"])
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(69));
    assert_eq!(stdout_of(&first), "", "the lines go to the file");
    // A crash mid-write leaves a line without its newline.
    let mut text = fs::read_to_string(&out).unwrap();
    text.push_str("{\"id\":\"item-9\",\"bnx\":{\"exit_co");
    fs::write(&out, text).unwrap();
    let second = run();
    assert_eq!(second.status.code(), Some(0), "{}", stderr_of(&second));
    assert!(stderr_of(&second).contains("1 done, 0 failed, 2 skipped (done before)"));
    let lines = lines(&fs::read_to_string(&out).unwrap());
    let record: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["bnx"]["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        record,
        [
            ("item-0".into(), 69),
            ("item-1".into(), 0),
            ("item-2".into(), 0),
            ("item-0".into(), 0)
        ]
    );
    let sent = prompts_sent(&mock, 4);
    assert_eq!(
        sent["prompt 0"], 2,
        "the failed item is retried on the rerun"
    );
    assert_eq!(
        (sent["prompt 1"], sent["prompt 2"]),
        (1, 1),
        "done items are never sent again"
    );
}

#[test]
fn a_batch_killed_halfway_resumes_and_never_repeats_a_finished_item() {
    // Each answer waits 300 ms, so the kill finds the batch with some items done, some in
    // flight and some not started.
    let mock = Mock::start(&["--rate-limit", "0", "--chunks", "2", "--chunk-delay", "150"]);
    let items = write_items(mock.dir.path(), &numbered(12));
    let out = mock.dir.path().join("out.jsonl");
    // The rerun asks the same server with the same options, as a resume does: another
    // server or other options would be other requests, run again.
    let run = || {
        let mut cmd = mock.command();
        cmd.arg("--batch")
            .arg(&items)
            .arg("-o")
            .arg(&out)
            .args(["-s", "-j", "2", "--rate-limit", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let mut child = run().spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&out).unwrap_or_default().lines().count() < 4 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let finished_before: Vec<String> = BufReader::new(fs::File::open(&out).unwrap())
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(&l.unwrap()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        finished_before.len() < 12,
        "the kill came too late to test anything"
    );
    let rerun = run().output().unwrap();
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr_of(&rerun));
    let skipped = format!("{} skipped (done before)", finished_before.len());
    assert!(
        stderr_of(&rerun).contains(&skipped),
        "{}",
        stderr_of(&rerun)
    );
    let lines = lines(&fs::read_to_string(&out).unwrap());
    let mut ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("item-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected, "every item has exactly one line");
    assert!(lines.iter().all(|l| l["bnx"]["exit_code"] == 0));
    // Both runs asked this mock: an item finished before the kill was sent once, any other
    // once more only if it was in flight when the kill came (two jobs: two at most).
    let sent = prompts_sent(&mock, 12);
    assert_eq!(sent.len(), 12, "{sent:?}");
    for id in &finished_before {
        let prompt = format!("prompt {}", id.trim_start_matches("item-"));
        assert_eq!(sent[&prompt], 1, "{id} had finished and was sent again");
    }
    let twice = sent.values().filter(|&&n| n == 2).count();
    assert!(twice <= 2 && sent.values().all(|&n| n <= 2), "{sent:?}");
}

#[test]
fn a_rerun_runs_again_the_items_whose_request_changed_and_says_how_many() {
    let mock = Mock::start(&["--rate-limit", "0"]);
    let notes = mock.dir.path().join("notes.md");
    fs::write(&notes, "line one\n").unwrap();
    let mut items = numbered(4);
    items.push(json!({"id": "notes", "prompt": "summarize", "files": [notes]}));
    let out = mock.dir.path().join("out.jsonl");
    let sent = std::cell::Cell::new(0);
    // Runs the batch of `items` with `args` into `out`; the requests it sent, and its stderr.
    let rerun = |items: &[Value], args: &[&str]| {
        let file = write_items(mock.dir.path(), items);
        let output = batch(&mock, &file)
            .args(["--rate-limit", "0", "-o"])
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        let before = sent.get();
        sent.set(mock.requests(before).len());
        (sent.get() - before, stderr)
    };
    let (first, _) = rerun(&items, &[]);
    assert_eq!(first, 5);
    let written = lines(&fs::read_to_string(&out).unwrap());
    let digests: std::collections::BTreeSet<&str> = written
        .iter()
        .map(|l| l["bnx"]["request"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 5, "one request each: {written:?}");
    assert!(digests
        .iter()
        .all(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())));

    let (again, stderr) = rerun(&items, &[]);
    assert_eq!(again, 0, "{stderr}");
    assert!(
        stderr.contains("0 done, 0 failed, 5 skipped (done before)"),
        "{stderr}"
    );
    assert!(!stderr.contains("changed"), "{stderr}");

    // Two prompts edited and a file changed: those three run again, said once.
    items[0]["prompt"] = json!("prompt 0, edited");
    items[1]["prompt"] = json!("prompt 1, edited");
    fs::write(&notes, "line one, changed\n").unwrap();
    let (again, stderr) = rerun(&items, &[]);
    assert_eq!(again, 3, "{stderr}");
    assert_eq!(
        stderr
            .matches("batch: 3 items done before changed since (prompt, files or options): running them again\n")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("3 done, 0 failed, 2 skipped (done before)"),
        "{stderr}"
    );
    let prompts = prompts_sent(&mock, sent.get());
    assert_eq!(
        (
            prompts["prompt 0"],
            prompts["prompt 0, edited"],
            prompts["prompt 2"]
        ),
        (1, 1, 1)
    );

    // Other options change every request; the rerun after that sends nothing.
    let (again, stderr) = rerun(&items, &["--system", "be brief"]);
    assert_eq!(again, 5, "{stderr}");
    assert!(
        stderr.contains("batch: 5 items done before changed since"),
        "{stderr}"
    );
    let (again, stderr) = rerun(&items, &["--system", "be brief"]);
    assert_eq!(again, 0, "{stderr}");
    let (again, stderr) = rerun(&items, &["--system", "be brief", "--temperature", "0.3"]);
    assert_eq!(again, 5, "{stderr}");
}

#[test]
fn lines_written_before_the_request_field_count_as_the_same_request() {
    let mock = Mock::start(&[]);
    let out = mock.dir.path().join("out.jsonl");
    // As an older bnx wrote them: no `request` in the bnx object.
    let old: String = (0..3)
        .map(|i| {
            format!("{{\"id\":\"item-{i}\",\"content\":\"old\",\"bnx\":{{\"exit_code\":0}}}}\n")
        })
        .collect();
    fs::write(&out, &old).unwrap();
    let mut items = numbered(4);
    items[0]["prompt"] = json!("prompt 0, edited since");
    let items = write_items(mock.dir.path(), &items);
    let output = batch(&mock, &items).arg("-o").arg(&out).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 done, 0 failed, 3 skipped (done before)"),
        "{stderr}"
    );
    assert!(!stderr.contains("changed"), "{stderr}");
    let prompts = prompts_sent(&mock, 1);
    assert_eq!(
        prompts.into_iter().collect::<Vec<_>>(),
        [("prompt 3".to_string(), 1)]
    );
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.starts_with(&old), "{text}");
}

#[test]
fn dry_run_shows_every_items_request_and_sends_nothing() {
    let mock = Mock::start(&[]);
    let items = write_items(mock.dir.path(), &numbered(2));
    let output = mock
        .bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .arg("--batch")
        .arg(&items)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let lines = lines(&stdout_of(&output));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["id"], "item-1");
    assert_eq!(
        lines[1]["request"]["body"]["messages"][0]["content"],
        "prompt 1"
    );
    mock.assert_no_requests();
}

#[test]
fn memory_stays_flat_whatever_the_number_of_items() {
    let mock = Mock::start(&["--rate-limit", "0", "--answer-size", "20000"]);
    let items = write_items(mock.dir.path(), &numbered(1500));
    let out = mock.dir.path().join("out.jsonl");
    // The lines go to a file, counted as a stream: held in this process, 30 MB would raise
    // the floor of every peak RSS measured after it (see support/measure.rs).
    let run = run_measured(
        mock.command()
            .arg("--batch")
            .arg(&items)
            .arg("-o")
            .arg(&out)
            .args(["-j", "8", "--rate-limit", "0", "-q"]),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let size = fs::metadata(&out).unwrap().len();
    let count = BufReader::new(fs::File::open(&out).unwrap())
        .lines()
        .count();
    assert_eq!(count, 1500);
    assert!(size > 30_000_000, "{size} bytes out");
    eprintln!(
        "1500 items, {} MB out: peak RSS {} KiB",
        size >> 20,
        run.max_rss_kib
    );
    assert!(
        run.max_rss_kib < 40 * 1024,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
}

#[test]
fn a_batch_over_the_limit_waits_for_slots_and_meets_no_429() {
    let mock = Mock::start(&["--rate-limit", "6/2"]);
    let items = write_items(mock.dir.path(), &numbered(12));
    let output = batch(&mock, &items)
        .args(["-j", "8", "--rate-limit", "6/2", "--retries", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(lines(&stdout_of(&output)).len(), 12);
    let statuses: Vec<Value> = mock
        .requests(12)
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(200); 12]);
    // Without a terminal, a batch's pacing waits are not notices: only the summary is said.
    assert_eq!(
        stderr_of(&output).lines().count(),
        1,
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn extract_and_expect_json_shape_each_items_content() {
    let mock = Mock::start(&[]);
    let items = write_items(
        mock.dir.path(),
        &[
            json!({"id": "code", "prompt": "see:\n```sh\nls -l\n```"}),
            json!({"id": "prose", "prompt": "no code here"}),
        ],
    );
    let run = |args: &[&str]| {
        let output = batch(&mock, &items)
            .args(["-j", "1"])
            .args(args)
            .output()
            .unwrap();
        (output.status.code(), lines(&stdout_of(&output)))
    };
    let (code, lines) = run(&["-x"]);
    assert_eq!(code, Some(3), "prose has no code block");
    assert_eq!(lines[0]["content"], "ls -l\n");
    assert_eq!(lines[1]["bnx"]["exit_code"], 3);
    assert_eq!(lines[1]["error"]["type"], "answer");

    let json_items = write_items(
        mock.dir.path(),
        &[json!({"id": "j", "prompt": "x", "system": "ignored"})],
    );
    // The mock echoes "[turn 1] x": not JSON, so --expect-json refuses it.
    let output = batch(&mock, &json_items)
        .arg("--expect-json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(stdout_of(&output).contains("not one JSON value"));
}

#[test]
fn mistakes_found_before_anything_is_sent() {
    let mock = Mock::start(&[]);
    let items = write_items(
        mock.dir.path(),
        &[
            json!({"id": "a", "prompt": "fine"}),
            json!({"id": "b", "prompt": "x", "files": ["no-such-file.md"]}),
        ],
    );
    batch(&mock, &items)
        .assert()
        .code(65)
        .stderr(predicate::str::contains(
            "line 2: cannot read file no-such-file.md",
        ));
    batch(&mock, mock.dir.path())
        .assert()
        .code(65)
        .stderr(predicate::str::contains("it is a directory"));
    let before = fs::read_to_string(&items).unwrap();
    batch(&mock, &items)
        .arg("-o")
        .arg(&items)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is the batch file itself"));
    assert_eq!(fs::read_to_string(&items).unwrap(), before);
    for (args, expected) in [
        (vec!["--jobs", "-1"], "must be a whole number from 1 to 64"),
        (vec!["--max-credits", "-1"], "must be a number of credits"),
        (vec!["--rate-limit", "-1"], "expected N or N/SECS"),
        (
            vec!["--dry-run", "-o", "out.jsonl"],
            "--dry-run writes a batch's requests",
        ),
    ] {
        batch(&mock, &items)
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(expected));
    }
    mock.bnx()
        .args(["-n", "--batch", "-"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--batch - reads standard input"));
    mock.assert_no_requests();
}

#[test]
fn piped_data_is_every_items_last_part_and_ids_keep_their_text() {
    let mock = Mock::start(&[]);
    let items = mock.dir.path().join("items.jsonl");
    fs::write(
        &items,
        "{\"id\": 12345678901234567890123, \"prompt\": \"one\"}\n{\"id\": 12345678901234567890124, \"prompt\": \"two\"}\n",
    )
    .unwrap();
    let output = batch(&mock, &items)
        .args(["-j", "1", "review:"])
        .write_stdin("DATA\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    assert!(
        stdout.starts_with("{\"id\":12345678901234567890123,"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n{\"id\":12345678901234567890124,"),
        "{stdout}"
    );
    assert_eq!(
        prompts_sent(&mock, 2).into_keys().collect::<Vec<_>>(),
        ["review:\n\none\n\nDATA\n", "review:\n\ntwo\n\nDATA\n"]
    );
}

/// A single request's `-o` writes into a device or a FIFO as `>` would; so does a batch's,
/// as `>>` would: `-o /dev/null` to run the items for what they leave (a cache, the summary),
/// `-o >(gzip > answers.gz)` to pipe the lines. Nothing there to resume from, nothing removed.
#[test]
fn output_to_a_device_or_a_fifo_takes_the_lines() {
    let mock = Mock::start(&[]);
    let items = write_items(mock.dir.path(), &numbered(3));
    let output = batch(&mock, &items)
        .args(["-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "");
    assert!(
        stderr_of(&output).starts_with("bnx: batch: 3 done, 0 failed, 0 skipped (done before)"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(prompts_sent(&mock, 3).len(), 3);

    let fifo = mock.dir.path().join("pipe");
    let reader = read_fifo(&fifo);
    batch(&mock, &items)
        .arg("-o")
        .arg(&fifo)
        .assert()
        .success()
        .stdout("");
    let mut ids: Vec<String> = lines(&reader.join().unwrap())
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["item-0", "item-1", "item-2"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}
