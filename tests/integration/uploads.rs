//! A large request that a server answers, or closes, before it has read all of it: the early
//! answer is read and reported, and a close says so with the size; neither is retried.

use std::path::Path;
use std::process::Output;

use crate::util::*;

/// More than the kernel buffers on both ends hold, so that writing it fails once the server
/// stops reading.
const LARGE: usize = 32 * 1024 * 1024;

fn large_prompt(server: &Scripted, dir: &Path, args: &[&str]) -> Output {
    server
        .bnx(dir)
        .args(args)
        .args(["--messages", "-"])
        .write_stdin(json!([{"role": "user", "content": "x".repeat(LARGE)}]).to_string())
        .output()
        .unwrap()
}

#[test]
fn a_server_refusing_a_large_upload_early_gives_its_status() {
    let dir = tempfile::tempdir().unwrap();
    for (status, code) in [("413 Payload Too Large", 1), ("401 Unauthorized", 77)] {
        let server = Scripted::early(move |_| {
            let body = r#"{"error":{"message":"refused early","type":"x"}}"#;
            let answer = http(status, "Content-Type: application/json\r\n", body);
            // Closed with the body unread, as a server refusing it early does.
            vec![Step::Send(answer), Step::Reset]
        });
        let output = large_prompt(&server, dir.path(), &[]);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{status}: {}",
            all_of(&output)
        );
        let stderr = stderr_of(&output);
        assert!(
            stderr.starts_with(&format!("bnx: error: HTTP {status}: refused early")),
            "{stderr}"
        );
        assert_eq!(server.requests().len(), 1, "{status}: not retried");
    }
}

#[test]
fn a_server_closing_during_the_upload_says_so_with_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::early(|_| vec![Step::Read(64 * 1024), Step::Close]);
    let output = large_prompt(&server, dir.path(), &["--json"]);
    assert_eq!(output.status.code(), Some(69), "{}", all_of(&output));
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(
            "bnx: error: the server closed the connection while the request (32.0 MiB) was being sent"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_clean_stderr(&stderr);
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(doc["error"]["type"], "network");
    assert_eq!(server.requests().len(), 1, "not retried");
}
