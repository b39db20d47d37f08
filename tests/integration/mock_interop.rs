//! `bnx-mock` driven by the official `openai` Python SDK: what SPEC section 6 promises to any
//! OpenAI-compatible client. Skipped, with a message saying so, where `python3` cannot import
//! `openai` (`.ci/run` installs it).

use std::process::Command;

use crate::util::*;
use serde_json::{json, Value};

/// Calls the mock the ways an SDK user does, and prints what the SDK made of each answer as one
/// JSON document. The first request meets a queued 402 fault.
const SCRIPT: &str = r#"
import json, os, openai
base = os.environ["MOCK_URL"] + "/api/v1/agents/default"
client = openai.OpenAI(base_url=base, api_key=os.environ["MOCK_TOKEN"], max_retries=0)
seen = {}

def failure(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "type": e.body.get("type")}

ask = lambda c: c.chat.completions.create(model="any", messages=[{"role": "user", "content": "x"}])
seen["fault"] = failure(lambda: ask(client))

raw = client.chat.completions.with_raw_response.create(
    model="bluenexus",
    messages=[{"role": "developer", "content": "be brief"},
              {"role": "user", "content": [{"type": "text", "text": "hello "},
                                           {"type": "text", "text": "sdk"}]}],
    max_completion_tokens=100)
reply = raw.parse()
seen["plain"] = {"content": reply.choices[0].message.content,
                 "finish_reason": reply.choices[0].finish_reason,
                 "total_tokens": reply.usage.total_tokens,
                 "conversation": raw.headers.get("x-conversation-id")}

chunks = list(client.chat.completions.create(
    model="any", messages=[{"role": "user", "content": "stream me"}],
    stream=True, stream_options={"include_usage": True}))
seen["stream"] = {"text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                  "last_choices": len(chunks[-1].choices),
                  "usage": chunks[-1].usage.total_tokens if chunks[-1].usage else None}

tools = client.chat.completions.create(model="any", messages=[
    {"role": "user", "content": "add 2 and 2"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "4"}])
seen["tools"] = tools.choices[0].message.content

wrong = openai.OpenAI(base_url=base, api_key="wrong-token", max_retries=0)
seen["auth"] = failure(lambda: ask(wrong))
print(json.dumps(seen))
"#;

pub fn python_with_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `script` with MOCK_URL and MOCK_TOKEN set, and no OpenAI or proxy setting of the
/// machine's; what it printed, as JSON.
pub fn python(script: &str, url: &str, token: &str) -> Value {
    let output = Command::new("python3")
        .args(["-c", script])
        .env("MOCK_URL", url)
        .env("MOCK_TOKEN", token)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    serde_json::from_str(&stdout_of(&output)).unwrap()
}

#[test]
fn the_official_openai_python_sdk_works_against_the_mock() {
    if !python_with_openai() {
        println!("skipped: python3 cannot import openai (python3 -m pip install openai)");
        return;
    }
    let mock = Mock::start(&["--fault", "402"]);
    let seen = python(SCRIPT, &mock.url, TOKEN);
    assert_eq!(
        seen["fault"],
        json!({"class": "APIStatusError", "status": 402, "type": "insufficient_credits"})
    );
    assert_eq!(
        seen["plain"],
        json!({"content": "[turn 1] hello sdk", "finish_reason": "stop", "total_tokens": 10,
               "conversation": "conv-000001"})
    );
    assert_eq!(
        seen["stream"],
        json!({"text": "[turn 1] stream me", "last_choices": 0, "usage": 8})
    );
    assert_eq!(seen["tools"], "[turn 1] add 2 and 2");
    assert_eq!(
        seen["auth"],
        json!({"class": "AuthenticationError", "status": 401, "type": "authentication_error"})
    );
    assert_eq!(
        mock.requests(5).len(),
        5,
        "every SDK request reached the mock"
    );
}
