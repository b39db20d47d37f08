//! What `bnx` sends: the prompt words, stdin, `--system`, `--messages`, the agent in the path.

use std::fs;

use crate::util::*;

#[test]
fn answers_a_prompt_and_sends_what_the_api_expects() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["hello", "world"])
        .assert()
        .success()
        .stdout("[turn 1] hello world\n")
        .stderr("");
    let request = mock.only_request();
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/api/v1/agents/default/chat/completions");
    assert_eq!(request["status"], 200);
    let headers = &request["headers"];
    assert_eq!(headers["authorization"], "Bearer ***");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(
        headers["user-agent"],
        concat!("bnx/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        request["body"],
        json!({"messages": [{"role": "user", "content": "hello world"}]})
    );
}

#[test]
fn prompt_and_stdin_are_joined_instruction_first() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .arg("summarize")
        .write_stdin("line 1\nline 2\n")
        .assert()
        .success();
    let body = &mock.only_request()["body"];
    assert_eq!(
        body["messages"][0]["content"],
        "summarize\n\nline 1\nline 2\n"
    );
}

#[test]
fn stdin_alone_is_the_prompt_and_no_stdin_ignores_it() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .write_stdin("just data")
        .assert()
        .success()
        .stdout("[turn 1] just data\n");
    mock.bnx()
        .args(["--no-stdin", "only", "this"])
        .write_stdin("ignored")
        .assert()
        .success()
        .stdout("[turn 1] only this\n");
    let requests = mock.requests(2);
    assert_eq!(requests[1]["body"]["messages"][0]["content"], "only this");
}

#[test]
fn no_prompt_is_a_usage_error_and_sends_nothing() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .write_stdin(" \n\t\n")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with("bnx: error: no prompt"));
    mock.assert_no_requests();
}

#[test]
fn stdin_that_is_not_utf8_is_exit_65_naming_the_offset() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .arg("x")
        .write_stdin(b"abc\xffdef".to_vec())
        .assert()
        .code(65)
        .stderr(predicate::str::contains("offset 3"));
    mock.assert_no_requests();
}

#[test]
fn system_temperature_max_tokens_reach_the_body() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args([
            "--system",
            "be brief",
            "--temperature",
            "0.5",
            "--max-tokens",
            "100",
            "q",
        ])
        .assert()
        .success();
    assert_eq!(
        mock.only_request()["body"],
        json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}],
               "temperature": 0.5, "max_tokens": 100})
    );
}

#[test]
fn messages_file_is_sent_as_given_with_the_prompt_appended() {
    let mock = Mock::start(&[]);
    let file = mock.dir.path().join("m.json");
    let history = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]);
    fs::write(&file, history.to_string()).unwrap();
    mock.bnx()
        .arg("--messages")
        .arg(&file)
        .arg("next")
        .assert()
        .success()
        .stdout("[turn 1] next\n");
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin(history.to_string())
        .assert()
        .success();
    let requests = mock.requests(2);
    let mut expected = history.as_array().unwrap().clone();
    assert_eq!(
        requests[1]["body"]["messages"],
        Value::Array(expected.clone())
    );
    expected.push(json!({"role": "user", "content": "next"}));
    assert_eq!(requests[0]["body"]["messages"], Value::Array(expected));
}

#[test]
fn invalid_messages_are_exit_65_with_the_position() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin("[{\"role\": \"user\",\n \"content\": }]")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("line 2 column"));
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin(r#"[{"role": "user"}]"#)
        .assert()
        .code(65)
        .stderr(predicate::str::contains(
            "element 0: missing field `content`",
        ));
    mock.assert_no_requests();
}

#[test]
fn agent_is_percent_encoded_into_the_path() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-a", "team/ops bot", "x"])
        .assert()
        .success();
    assert_eq!(
        mock.only_request()["path"],
        "/api/v1/agents/team%2Fops%20bot/chat/completions"
    );
    mock.bnx()
        .env("BLUENEXUS_AGENT", "from-env")
        .arg("x")
        .assert()
        .success();
    assert_eq!(
        mock.requests(2)[1]["path"],
        "/api/v1/agents/from-env/chat/completions"
    );
}

#[test]
fn messages_with_a_key_twice_or_a_directory_are_bad_input() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["--messages", "-"])
        .write_stdin(r#"[{"role": "user", "content": "a", "content": "b"}]"#)
        .assert()
        .code(65)
        .stderr(predicate::str::contains("duplicate field `content`"));
    let dir = mock.dir.path().to_str().unwrap().to_string();
    mock.bnx()
        .args(["--messages", &dir, "x"])
        .assert()
        .code(65)
        .stderr(predicate::str::contains(format!(
            "{dir}: it is a directory"
        )));
    mock.assert_no_requests();
}
