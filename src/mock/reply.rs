//! What every kind of answer shares: the outcome of an exchange, the JSON error bodies, and a
//! whole (non-streamed) completion.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use super::accounts::Granted;
use super::answer::{tokens, Content};
use super::http::{self, Request, CONTENT_TYPE};
use super::log::Secrets;
use super::validate::Chat;
use crate::wire::{self, ErrorBody, Text, Usage};

pub const MODEL: &str = "bluenexus/mock-1";
pub const JSON: &str = "application/json";

/// Response headers: lower-case names (`http` writes them in their usual case).
pub type Headers<'a> = Vec<(&'a str, String)>;

/// A request that passed every check before its answer, and what of it an answer needs.
pub struct Asked<'r> {
    pub request: &'r Request,
    pub agent: &'r str,
    pub token: &'r str,
    pub chat: &'r Chat<'r>,
}

/// Whether the connection may carry another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// The status sent (none: the connection was closed without one), or why nothing could be.
pub type Outcome = io::Result<(Option<u16>, Next)>;

pub fn error(
    out: &mut impl Write,
    status: u16,
    kind: &str,
    message: &str,
    param: Option<&str>,
    headers: Headers,
) -> Outcome {
    error_body(out, status, &ErrorBody::new(kind, message, param), headers)
}

/// An error response with `body` as its JSON.
pub fn error_body(
    out: &mut impl Write,
    status: u16,
    body: &impl Serialize,
    mut headers: Headers,
) -> Outcome {
    let body = serde_json::to_vec(body).expect("serializes");
    headers.insert(0, (CONTENT_TYPE, JSON.into()));
    http::respond(out, status, &headers, &body, false)?;
    Ok((Some(status), Next::KeepAlive))
}

/// The 404 of a conversation this caller does not have.
pub fn no_conversation(out: &mut impl Write, chat: &Chat, secrets: &Secrets) -> Outcome {
    let id = chat.conversation_id.as_deref().unwrap_or("");
    let message = format!("conversation {id:?} not found");
    let message = secrets.redact(&message);
    let param = Some("conversationId");
    error(out, 404, "not_found_error", &message, param, vec![])
}

/// The 402 of an empty balance; `why` tells a real one from an injected one.
pub fn no_credits(out: &mut impl Write, why: &str) -> Outcome {
    let message = format!("not enough credits left for this request{why}");
    error(out, 402, "insufficient_credits", &message, None, vec![])
}

/// An answer ready to be sent: its id, its content, the tool calls it makes, and the headers
/// that go with it.
pub struct Answer {
    pub id: String,
    pub content: Content,
    /// A JSON array; with it, an empty content is sent as `null`.
    pub tool_calls: Option<Box<RawValue>>,
    pub headers: Headers<'static>,
}

impl Answer {
    pub fn echo(id: String, content: Content) -> Answer {
        Answer {
            id,
            content,
            tool_calls: None,
            headers: vec![],
        }
    }

    /// The content to send: `None` (JSON `null`) for a tool call that says nothing.
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        if self.tool_calls.is_some() && self.content.is_empty() {
            None
        } else {
            Some(self.content.text())
        }
    }
}

/// The headers of a paid answer.
pub fn charged(granted: Granted) -> Headers<'static> {
    vec![
        (wire::HEADER_CREDITS_CONSUMED, granted.consumed.to_string()),
        (
            wire::HEADER_CREDITS_REMAINING,
            granted.remaining.to_string(),
        ),
        (wire::HEADER_CONVERSATION_ID, granted.conversation),
    ]
}

pub fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn usage(prompt_tokens: u64, content: &Content) -> Usage {
    let completion_tokens = tokens(content.len());
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

/// A `chat.completion` as the API sends it. Its own types, not `wire`'s: the mock also sends
/// `tool_calls`, which `bnx` has no use for.
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'a str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a RawValue>,
}

pub fn completion_body(answer: &Answer, finish_reason: &str, prompt_tokens: u64) -> Vec<u8> {
    let completion = Completion {
        id: &answer.id,
        object: wire::CHAT_COMPLETION,
        created: created(),
        model: MODEL,
        choices: [CompletionChoice {
            index: 0,
            message: Message {
                role: "assistant",
                content: answer.text().map(Text),
                tool_calls: answer.tool_calls.as_deref(),
            },
            finish_reason,
        }],
        usage: usage(prompt_tokens, &answer.content),
    };
    serde_json::to_vec(&completion).expect("serializes")
}

/// A whole answer: the completion with its headers.
pub fn whole(
    out: &mut impl Write,
    mut answer: Answer,
    finish_reason: &str,
    prompt_tokens: u64,
) -> Outcome {
    let body = completion_body(&answer, finish_reason, prompt_tokens);
    answer.headers.insert(0, (CONTENT_TYPE, JSON.into()));
    http::respond(out, 200, &answer.headers, &body, false)?;
    Ok((Some(200), Next::KeepAlive))
}
