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
    let kept = mock.state_dir().join("bluenexus/conversations-by-api");
    let mut saved: Vec<String> = fs::read_dir(&kept)
        .unwrap()
        .map(|entry| fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    saved.sort();
    assert_eq!(saved, ["conv-000001", "conv-000002"], "one file per agent");
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

#[test]
fn a_mock_run_never_reads_or_replaces_the_real_apis_conversation() {
    let mock = Mock::start(&[]);
    let legacy = mock.state_dir().join("bluenexus/conversations");
    fs::create_dir_all(&legacy).unwrap();
    fs::write(legacy.join("default"), "conv-real-42\n").unwrap();
    mock.bnx()
        .args(["-c", "first"])
        .assert()
        .success()
        .stderr(predicate::str::contains("no saved conversation"));
    mock.bnx().args(["-c", "second"]).assert().success();
    let requests = mock.requests(2);
    assert!(requests[0]["body"].get("conversationId").is_none());
    assert_eq!(requests[1]["body"]["conversationId"], "conv-000001");
    assert_eq!(
        fs::read_to_string(legacy.join("default")).unwrap(),
        "conv-real-42\n",
        "the real API's conversation is untouched"
    );
    // The default origin still finds the conversation an older bnx saved.
    let output = mock
        .bnx()
        .env_remove("BLUENEXUS_BASE_URL")
        .args(["--dry-run", "-c", "third"])
        .output()
        .unwrap();
    let request: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(request["body"]["conversationId"], "conv-real-42");
}

#[test]
fn a_250_character_agent_id_saves_and_no_file_name_carries_it_or_the_token() {
    let mock = Mock::start(&[]);
    let agent = "a".repeat(250);
    mock.bnx()
        .args(["-a", &agent, "-c", "one"])
        .assert()
        .success()
        .stderr(predicate::str::contains("no saved conversation"));
    mock.bnx()
        .args(["-a", &agent, "-c", "two"])
        .assert()
        .success()
        .stderr("");
    let requests = mock.requests(2);
    assert_eq!(requests[1]["body"]["conversationId"], "conv-000001");
    for entry in walk(&mock.state_dir()) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() <= 64, "{name}");
        // Not "aaaa": one hex digest in a thousand holds that by chance.
        assert!(
            !name.contains(&agent[..16]) && !name.contains(TOKEN),
            "{name}"
        );
    }
}
