//! `--continue` and `--conversation`: what is saved, where, and what is sent back.

use std::fs;

use crate::util::*;

#[test]
fn continue_picks_up_the_last_conversation_of_the_agent() {
    let mock = Mock::start(&[]);
    mock.bnx()
        .args(["-c", "first"])
        .assert()
        .success()
        .stdout("[turn 1] first\n")
        .stderr(predicate::str::contains("no saved conversation"));
    mock.bnx()
        .args(["-c", "second"])
        .assert()
        .success()
        .stdout("[turn 2] second\n");
    mock.bnx()
        .args(["-c", "-a", "other", "x"])
        .assert()
        .success()
        .stdout("[turn 1] x\n");
    mock.bnx()
        .args(["-c", "-s", "third"])
        .assert()
        .success()
        .stdout("[turn 3] third\n");
    let requests = mock.requests(4);
    assert_eq!(requests[1]["body"]["conversationId"], "conv-000001");
    assert!(requests[2]["body"].get("conversationId").is_none());
    assert_eq!(requests[3]["body"]["conversationId"], "conv-000001");
    let saved =
        fs::read_to_string(mock.state_dir().join("bluenexus/conversations/default")).unwrap();
    assert_eq!(saved, "conv-000001");
}

#[test]
fn explicit_conversation_and_unknown_conversation() {
    let mock = Mock::start(&[]);
    mock.bnx().arg("first").assert().success();
    mock.bnx()
        .args(["--conversation", "conv-000001", "again"])
        .assert()
        .success()
        .stdout("[turn 2] again\n");
    mock.bnx()
        .args(["--conversation", "conv-nope", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("HTTP 404").and(predicate::str::contains("not found")));
}
