//! Every exit code of the README's table, each from a real server behaviour or a real
//! configuration mistake.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

use crate::util::*;

#[test]
fn exit_1_for_a_400_with_the_servers_message() {
    let mock = Mock::start(&[]);
    let output = mock
        .bnx()
        .args(["--json", "--messages", "-"])
        .write_stdin(r#"[{"role": "robot", "content": "x"}]"#)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("bnx: error: HTTP 400 Bad Request: messages[0].role must be"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["error"]["type"], "invalid_request_error");
    assert_eq!(doc["error"]["param"], "messages[0].role");
    assert_eq!(doc["bnx"]["status"], 400);
    assert_eq!(doc["bnx"]["attempts"], 1);
}

#[test]
fn exit_4_for_402_when_credits_run_out() {
    let mock = Mock::start(&["--credits", "1"]);
    mock.bnx().arg("a").assert().success();
    mock.bnx().arg("b").assert().code(4).stderr(
        predicate::str::contains("bnx: error: HTTP 402").and(predicate::str::contains(
            "hint: the account is out of credits",
        )),
    );
}

#[test]
fn exit_1_for_a_redirect_which_is_not_followed() {
    let mock = Mock::start(&["--fault", "redirect:http://127.0.0.1:9/elsewhere"]);
    mock.bnx()
        .arg("x")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "redirected (HTTP 307) to http://127.0.0.1:9/elsewhere",
        ));
    assert_eq!(mock.requests(1).len(), 1);
}

#[test]
fn exit_1_for_an_sse_error_event_after_the_text_that_arrived() {
    let mock = Mock::start(&["--fault", "error-event"]);
    mock.bnx()
        .args(["-s", "alpha", "beta"])
        .assert()
        .code(1)
        .stdout("[turn ")
        .stderr(predicate::str::contains("injected error event"));
}

#[test]
fn exit_2_for_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--no-such-flag", "x"],
        vec!["--temperature", "3", "x"],
        vec!["--max-tokens", "0", "x"],
        vec!["--timeout", "soon", "x"],
        vec!["-c", "--conversation", "a", "x"],
    ] {
        let output = bnx_in(dir.path()).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn exit_76_for_answers_that_are_not_the_api() {
    let mock = Mock::start(&[
        "--fault",
        "malformed",
        "--fault",
        "malformed",
        "--fault",
        "cut",
    ]);
    mock.bnx()
        .arg("x")
        .assert()
        .code(76)
        .stdout("")
        .stderr(predicate::str::contains("not valid JSON"));
    mock.bnx()
        .args(["-s", "one", "two"])
        .assert()
        .code(76)
        .stdout("[turn ");
    mock.bnx()
        .arg("x")
        .assert()
        .code(76)
        .stderr(predicate::str::contains("before the answer was complete"));
}

#[test]
fn exit_76_for_a_stream_cut_before_done_keeping_what_arrived() {
    let mock = Mock::start(&["--fault", "cut:3", "--fault", "cut:2"]);
    mock.bnx()
        .args(["-s", "one", "two", "three", "four"])
        .assert()
        .code(76)
        .stdout("[turn 1] one ")
        .stderr(predicate::str::contains("ended before [DONE]"));
    let output = mock
        .bnx()
        .args(["-s", "--json", "one", "two", "three"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(76));
    let lines: Vec<Value> = stdout_of(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "role chunk, two pieces, the failure document"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["bnx"]["done"], false);
    assert_eq!(last["error"]["type"], "protocol");
}

#[test]
fn exit_77_for_refused_or_underprivileged_tokens() {
    let mock = Mock::start(&[
        "--token",
        "reader:agents-read",
        "--token",
        "user:agents-use",
    ]);
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "wrong")
        .arg("x")
        .assert()
        .code(77)
        .stderr(predicate::str::contains("HTTP 401").and(predicate::str::contains("hint:")));
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "reader")
        .arg("x")
        .assert()
        .code(77)
        .stderr(predicate::str::contains("HTTP 403").and(predicate::str::contains("agents-use")));
    mock.bnx()
        .env("BLUENEXUS_TOKEN", "user")
        .arg("x")
        .assert()
        .success();
}

#[test]
fn exit_78_for_configuration_errors() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .env_remove("BLUENEXUS_TOKEN")
        .arg("x")
        .assert()
        .code(78)
        .stderr(
            predicate::str::contains("no access token")
                .and(predicate::str::contains("--token-file")),
        );
    mock.bnx()
        .env("BLUENEXUS_BASE_URL", "http://api.example.com")
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("refusing plain http://"));
    let token_file = mock.dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o644)).unwrap();
    mock.bnx()
        .arg("--token-file")
        .arg(&token_file)
        .arg("x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("hint: chmod 600"));
    mock.bnx()
        .args(["--token-cmd", "echo oops >&2; exit 4", "x"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("oops").and(predicate::str::contains("exit status 4")));
    mock.assert_no_requests();
}

#[test]
fn sigint_ends_the_run_as_the_shell_expects() {
    let dir = tempfile::tempdir().unwrap();
    let output = interrupted(dir.path(), &["-s".as_ref(), "x".as_ref()], || {});
    let code = output
        .status
        .code()
        .or(output.status.signal().map(|s| 128 + s));
    assert_eq!(code, Some(130));
}
