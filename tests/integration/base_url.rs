//! What a base URL means: exactly the origin (and gateway prefix) it says, a port in range,
//! no user info, query or fragment (refused, never quoted), and a hint for a pasted endpoint.

use std::net::TcpListener;

use crate::util::*;

#[test]
fn a_port_out_of_range_or_empty_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    // http's Uri once read :99999 as 34463 (99999 - 65536) and :65616 as 80.
    let wrapped = TcpListener::bind("127.0.0.1:34463").ok();
    for url in [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:65616",
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
    ] {
        let output = bnx_in(dir.path())
            .env("BLUENEXUS_TOKEN", TOKEN)
            .args(["-v", "--base-url", url, "x"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{url}");
        let stderr = stderr_of(&output);
        assert!(stderr.contains("port"), "{url}: {stderr}");
        assert!(!stderr.contains("POST"), "{url}: nothing is sent: {stderr}");
        assert_clean_stderr(&stderr);
    }
    if let Some(wrapped) = wrapped {
        wrapped.set_nonblocking(true).unwrap();
        assert!(wrapped.accept().is_err(), "the wrapped port was reached");
    }
}

#[test]
fn user_info_query_and_fragment_are_refused_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|_| json_answer(r#"{"content": "x"}"#));
    for url in [
        format!("http://me:hunter2@{}", server.addr),
        format!("{}/?key=hunter2", server.origin),
        format!("{}#hunter2", server.origin),
        format!("http://me:hun#ter2@{}", server.addr),
    ] {
        let output = bnx_in(dir.path())
            .env("BLUENEXUS_TOKEN", TOKEN)
            .env("BLUENEXUS_BASE_URL", &url)
            .args(["--json", "x"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{url}");
        let all = all_of(&output);
        assert!(!all.contains("hunter2") && !all.contains("ter2"), "{all}");
        assert!(all.contains("***"), "{all}");
        let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        assert_eq!(doc["error"]["type"], "config");
    }
    assert_eq!(server.requests(), Vec::<Request>::new());
}

#[test]
fn a_pasted_endpoint_gets_a_hint_with_the_origin_to_use() {
    let dir = tempfile::tempdir().unwrap();
    bnx_in(dir.path())
        .env("BLUENEXUS_TOKEN", TOKEN)
        .args([
            "--base-url",
            "https://gw.example/team/api/v1/agents/default/chat/completions",
            "x",
        ])
        .assert()
        .code(78)
        .stderr(
            predicate::str::contains("already holds /api/v1").and(predicate::str::contains(
                "hint: use the origin https://gw.example/team\n",
            )),
        );
}

#[test]
fn a_gateway_prefix_is_kept_trailing_slashes_ignored_and_verbose_shows_the_real_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::answering(|_| json_answer(r#"{"content": "via gateway"}"#));
    let output = server
        .bnx(dir.path())
        .env(
            "BLUENEXUS_BASE_URL",
            format!("{}/gw/bluenexus//", server.origin),
        )
        .args(["-v", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", all_of(&output));
    assert_eq!(stdout_of(&output), "via gateway\n");
    let path = "/gw/bluenexus/api/v1/agents/default/chat/completions";
    assert!(
        stderr_of(&output).contains(&format!("POST {}{path} (attempt 1)", server.origin)),
        "{}",
        stderr_of(&output)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0]
            .head
            .starts_with(&format!("POST {path} HTTP/1.1")),
        "{}",
        requests[0].head
    );
}
