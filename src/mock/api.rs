//! The mock's one endpoint, `POST /api/v1/agents/{id}/chat/completions`, as the API document
//! describes it, plus the injected faults.
//!
//! Order of checks, as a client sees them: a queued fault; the route (404) and method (405);
//! the bearer token (401) and its scopes (403); the rate limit (429); the body (400); the
//! conversation (404); the credits (402); then the answer, whole or streamed.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::accounts::{Accounts, Admission, Charge};
use super::answer::{tokens, Content};
use super::fault::Fault;
use super::http::{self, Request};
use super::log::Log;
use crate::wire::{
    self, ChatChunk, ChatCompletion, ChatRequest, ChunkChoice, Delta, ErrorBody, Message, Text,
    Usage,
};

pub const MODEL: &str = "bluenexus/mock-1";

const HTML_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// How answers are shaped, from the command line.
#[derive(Debug, Clone, Default)]
pub struct AnswerOptions {
    /// Pad every answer to at least this many bytes.
    pub answer_size: usize,
    /// Stream this many content chunks instead of one per word.
    pub chunks: Option<usize>,
    /// Pause before each streamed content chunk.
    pub chunk_delay: Duration,
}

/// What all connections share.
pub struct Shared {
    pub accounts: Mutex<Accounts>,
    pub faults: Mutex<VecDeque<Fault>>,
    pub log: Option<Log>,
    pub options: AnswerOptions,
    pub completions: AtomicU64,
}

/// Whether the connection may carry another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

type Headers = Vec<(&'static str, String)>;

/// Answers one request; logs it when done.
pub fn handle(
    request: &Request,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
) -> Next {
    let agent = route(&request.path);
    let fault = agent
        .as_ref()
        .and_then(|_| lock(&shared.faults).pop_front());
    let fault_name = fault.as_ref().map(Fault::to_string);
    let outcome = match fault {
        Some(fault) => inject(fault, request, agent, out, socket, shared),
        None => answer(request, agent, out, shared),
    };
    let (status, next) = outcome.unwrap_or((None, Next::Close));
    if let Some(log) = &shared.log {
        log.record(request, status, fault_name);
    }
    if request.close {
        Next::Close
    } else {
        next
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The agent id of a chat path.
fn route(path: &str) -> Option<String> {
    let agent = path
        .strip_prefix("/api/v1/agents/")?
        .strip_suffix("/chat/completions")?;
    if agent.is_empty() || agent.contains('/') {
        return None;
    }
    Some(percent_decode_str(agent).decode_utf8_lossy().into_owned())
}

type Outcome = io::Result<(Option<u16>, Next)>;

fn error(
    out: &mut impl Write,
    status: u16,
    kind: &str,
    message: &str,
    param: Option<&str>,
    mut headers: Headers,
) -> Outcome {
    let body = serde_json::to_vec(&ErrorBody::new(kind, message, param)).expect("serializes");
    headers.insert(0, ("Content-Type", "application/json".into()));
    http::respond(out, status, &headers, &body, false)?;
    Ok((Some(status), Next::KeepAlive))
}

fn answer(
    request: &Request,
    agent: Option<String>,
    out: &mut impl Write,
    shared: &Shared,
) -> Outcome {
    let Some(agent) = agent else {
        let message = format!("no such endpoint: {} {}", request.method, request.path);
        return error(out, 404, "not_found_error", &message, None, vec![]);
    };
    if request.method != "POST" {
        let message = format!("{} is not allowed here; use POST", request.method);
        return error(
            out,
            405,
            "invalid_request_error",
            &message,
            None,
            vec![("Allow", "POST".into())],
        );
    }
    let Some(token) = bearer(request) else {
        let message = "missing bearer token: send Authorization: Bearer ACCESS_TOKEN";
        return error(out, 401, "authentication_error", message, None, vec![]);
    };
    let admission = lock(&shared.accounts).admit(token, Instant::now());
    match admission {
        Admission::Admitted => {}
        Admission::UnknownToken => {
            return error(
                out,
                401,
                "authentication_error",
                "invalid or expired access token",
                None,
                vec![],
            )
        }
        Admission::MissingScope => {
            let message = "the token lacks the agents-all or agents-use scope";
            return error(out, 403, "permission_error", message, None, vec![]);
        }
        Admission::RateLimited(secs) => {
            let message = "rate limit exceeded: too many requests per minute";
            return error(
                out,
                429,
                "rate_limit_error",
                message,
                None,
                vec![("Retry-After", secs.to_string())],
            );
        }
    }
    let chat = match validate(&request.body) {
        Ok(chat) => chat,
        Err((message, param)) => {
            return error(
                out,
                400,
                "invalid_request_error",
                &message,
                param.as_deref(),
                vec![],
            )
        }
    };
    let conversation = chat.conversation_id.as_deref();
    let not_found = |out: &mut _| {
        let message = format!("conversation {:?} not found", conversation.unwrap_or(""));
        error(
            out,
            404,
            "not_found_error",
            &message,
            Some("conversationId"),
            vec![],
        )
    };
    let Some(turn) = lock(&shared.accounts).next_turn(token, &agent, conversation) else {
        return not_found(out);
    };
    let build = |turn| {
        let mut content = Content::answer(&chat.messages, turn, shared.options.answer_size);
        let cut = chat.max_tokens.is_some_and(|max| content.limit_tokens(max));
        (content, if cut { "length" } else { "stop" })
    };
    let (mut content, mut finish_reason) = build(turn);
    let charge = lock(&shared.accounts).charge(token, &agent, conversation, tokens(content.len()));
    let (conversation, consumed, remaining) = match charge {
        Charge::Granted {
            turn: granted,
            conversation,
            consumed,
            remaining,
        } => {
            if granted != turn {
                (content, finish_reason) = build(granted);
            }
            (conversation, consumed, remaining)
        }
        Charge::UnknownConversation => return not_found(out),
        Charge::NoCredits => {
            return error(
                out,
                402,
                "insufficient_credits",
                "not enough credits left for this request",
                None,
                vec![],
            )
        }
    };
    let headers = vec![
        ("X-Credits-Consumed", consumed.to_string()),
        ("X-Credits-Remaining", remaining.to_string()),
        ("X-Conversation-Id", conversation),
    ];
    let id = shared.next_id();
    if chat.stream == Some(true) {
        stream(
            out,
            request,
            headers,
            &content,
            Ending::Done(finish_reason),
            &id,
            &shared.options,
        )
    } else {
        let prompt_tokens = tokens(chat.messages.iter().map(|m| m.content.len()).sum());
        let body = completion_body(&id, &content, finish_reason, prompt_tokens);
        let mut headers = headers;
        headers.insert(0, ("Content-Type", "application/json".into()));
        http::respond(out, 200, &headers, &body, false)?;
        Ok((Some(200), Next::KeepAlive))
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The request body checked as the API document (and then some) requires. Unknown top-level
/// keys are allowed, as OpenAI SDKs send `model` and others.
fn validate(body: &[u8]) -> Result<ChatRequest, (String, Option<String>)> {
    let invalid = |message: String, param: &str| Err((message, Some(param.to_string())));
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| (format!("the request body is not valid JSON: {e}"), None))?;
    let Some(object) = value.as_object() else {
        return Err(("the request body must be a JSON object".into(), None));
    };
    let messages = match object.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => return invalid("messages must not be empty".into(), "messages"),
        Some(_) => return invalid("messages must be an array".into(), "messages"),
        None => return invalid("messages is required".into(), "messages"),
    };
    let mut checked = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let Some(role) = role.filter(|r| wire::ROLES.contains(r)) else {
            return invalid(
                format!(
                    "messages[{i}].role must be one of {}",
                    wire::ROLES.join(", ")
                ),
                &format!("messages[{i}].role"),
            );
        };
        let Some(content) = message.get("content").and_then(Value::as_str) else {
            return invalid(
                format!("messages[{i}].content must be a string"),
                &format!("messages[{i}].content"),
            );
        };
        checked.push(Message::new(role, content));
    }
    let temperature = match object.get("temperature") {
        None | Some(Value::Null) => None,
        Some(t) => match t.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t),
            _ => {
                return invalid(
                    "temperature must be a number from 0 to 2".into(),
                    "temperature",
                )
            }
        },
    };
    let max_tokens = match object.get("max_tokens") {
        None | Some(Value::Null) => None,
        Some(n) => match n.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => return invalid("max_tokens must be a positive integer".into(), "max_tokens"),
        },
    };
    let stream = match object.get("stream") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return invalid("stream must be a boolean".into(), "stream"),
    };
    let conversation_id = match object.get("conversationId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return invalid("conversationId must be a string".into(), "conversationId"),
    };
    Ok(ChatRequest {
        messages: checked,
        stream,
        temperature,
        max_tokens,
        conversation_id,
    })
}

fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    fn next_id(&self) -> String {
        format!(
            "chatcmpl-mock-{}",
            self.completions.fetch_add(1, Ordering::Relaxed) + 1
        )
    }
}

fn completion_body(
    id: &str,
    content: &Content,
    finish_reason: &str,
    prompt_tokens: u64,
) -> Vec<u8> {
    let completion_tokens = tokens(content.len());
    let completion = ChatCompletion {
        id: id.into(),
        object: wire::CHAT_COMPLETION.into(),
        created: created(),
        model: MODEL.into(),
        choices: vec![wire::Choice {
            index: 0,
            message: wire::AssistantMessage {
                role: "assistant".into(),
                content: Some(Text(content.text())),
            },
            finish_reason: Some(finish_reason.into()),
        }],
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }),
    };
    serde_json::to_vec(&completion).expect("serializes")
}

/// How a stream ends after its content chunks.
enum Ending<'a> {
    /// A last chunk with this finish reason, then `[DONE]`.
    Done(&'a str),
    /// The body ends after this many content chunks, with no `[DONE]`.
    Cut(usize),
    /// After the first content chunk, a chunk that is not valid JSON, then `[DONE]`.
    Malformed,
    /// After the first content chunk, an `{"error": ...}` event; no `[DONE]`.
    ErrorEvent,
}

fn stream(
    out: &mut impl Write,
    request: &Request,
    mut headers: Headers,
    content: &Content,
    ending: Ending,
    id: &str,
    options: &AnswerOptions,
) -> Outcome {
    headers.insert(0, ("Content-Type", "text/event-stream".into()));
    headers.insert(1, ("Cache-Control", "no-cache".into()));
    let mut body = http::Stream::start(out, &headers, request.http10)?;
    let mut event = Event {
        id,
        created: created(),
        json: Vec::with_capacity(512),
    };
    event.send_chunk(
        &mut body,
        Delta {
            role: Some("assistant".into()),
            content: None,
        },
        None,
    )?;
    body.flush()?;
    let limit = match ending {
        Ending::Done(_) => usize::MAX,
        Ending::Cut(n) => n,
        Ending::Malformed | Ending::ErrorEvent => 1,
    };
    for (start, end) in content.pieces(options.chunks).take(limit) {
        if !options.chunk_delay.is_zero() {
            body.flush()?;
            sleep(options.chunk_delay);
        }
        let piece = content.slice(start, end);
        event.send_chunk(
            &mut body,
            Delta {
                role: None,
                content: Some(Text(piece)),
            },
            None,
        )?;
    }
    let next = match ending {
        Ending::Done(finish_reason) => {
            event.send_chunk(&mut body, Delta::default(), Some(finish_reason))?;
            body.send(&[b"data: [DONE]\n\n"])?;
            Next::KeepAlive
        }
        Ending::Cut(_) => Next::Close,
        Ending::Malformed => {
            body.send(&[
                b"data: {\"id\":\"",
                id.as_bytes(),
                b"\",\"choices\":[{\"delta\":{\"content\":\"unterminated\n\n",
            ])?;
            body.send(&[b"data: [DONE]\n\n"])?;
            Next::Close
        }
        Ending::ErrorEvent => {
            let error = ErrorBody::new(
                "server_error",
                "the agent failed mid-answer (injected error event)",
                None,
            );
            let json = serde_json::to_vec(&error).expect("serializes");
            body.send(&[b"data: ", &json, b"\n\n"])?;
            Next::Close
        }
    };
    body.finish()?;
    Ok((Some(200), next))
}

/// Serializes chunks into one reused buffer.
struct Event<'a> {
    id: &'a str,
    created: u64,
    json: Vec<u8>,
}

impl Event<'_> {
    fn send_chunk<W: Write>(
        &mut self,
        body: &mut http::Stream<'_, W>,
        delta: Delta<'_>,
        finish_reason: Option<&str>,
    ) -> io::Result<()> {
        let chunk = ChatChunk {
            id: self.id.into(),
            object: wire::CHAT_COMPLETION_CHUNK.into(),
            created: self.created,
            model: MODEL.into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(Text::from),
            }],
        };
        self.json.clear();
        serde_json::to_writer(&mut self.json, &chunk).expect("serializes");
        body.send(&[b"data: ", &self.json, b"\n\n"])
    }
}

/// Applies `fault`; `slow` delays the normal answer to the chat path of `agent`.
fn inject(
    fault: Fault,
    request: &Request,
    agent: Option<String>,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
) -> Outcome {
    let wants_stream = serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|body| body.get("stream").and_then(Value::as_bool))
        == Some(true);
    let content = || {
        let messages = serde_json::from_slice::<ChatRequest>(&request.body)
            .map(|chat| chat.messages)
            .unwrap_or_default();
        Content::answer(&messages, 1, shared.options.answer_size)
    };
    let id = shared.next_id();
    match fault {
        Fault::RateLimited { retry_after } => error(
            out,
            429,
            "rate_limit_error",
            "rate limit exceeded (injected fault)",
            None,
            vec![("Retry-After", retry_after.to_string())],
        ),
        Fault::Status(status) => {
            let message = format!("the service failed (injected {status})");
            error(out, status, "server_error", &message, None, vec![])
        }
        Fault::Drop => {
            socket.shutdown(Shutdown::Both)?;
            Ok((None, Next::Close))
        }
        Fault::Html => {
            let headers = [("Content-Type", "text/html".to_string())];
            http::respond(out, 502, &headers, HTML_PAGE.as_bytes(), false)?;
            Ok((Some(502), Next::KeepAlive))
        }
        Fault::Malformed if wants_stream => stream(
            out,
            request,
            vec![],
            &content(),
            Ending::Malformed,
            &id,
            &shared.options,
        ),
        Fault::Malformed => {
            let body = format!("{{\"id\":\"{id}\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"trunc");
            http::respond(
                out,
                200,
                &[("Content-Type", "application/json".into())],
                body.as_bytes(),
                false,
            )?;
            Ok((Some(200), Next::KeepAlive))
        }
        Fault::Cut { chunks } if wants_stream => stream(
            out,
            request,
            vec![],
            &content(),
            Ending::Cut(chunks),
            &id,
            &shared.options,
        ),
        Fault::Cut { .. } => {
            let body = completion_body(&id, &content(), "stop", 0);
            let headers = [("Content-Type", "application/json".to_string())];
            http::respond_short(out, &headers, &body[..body.len() / 2], body.len())?;
            Ok((Some(200), Next::Close))
        }
        Fault::ErrorEvent if wants_stream => stream(
            out,
            request,
            vec![],
            &content(),
            Ending::ErrorEvent,
            &id,
            &shared.options,
        ),
        Fault::ErrorEvent => {
            let body = ErrorBody::new(
                "server_error",
                "the agent failed (injected error body)",
                None,
            );
            let body = serde_json::to_vec(&body).expect("serializes");
            http::respond(
                out,
                200,
                &[("Content-Type", "application/json".into())],
                &body,
                false,
            )?;
            Ok((Some(200), Next::KeepAlive))
        }
        Fault::Stall(silence) => {
            let content_type = if wants_stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            http::Stream::start(
                out,
                &[("Content-Type", content_type.into())],
                request.http10,
            )?
            .flush()?;
            sleep(silence);
            socket.shutdown(Shutdown::Both)?;
            Ok((Some(200), Next::Close))
        }
        Fault::Slow(delay) => {
            sleep(delay);
            answer(request, agent, out, shared)
        }
        Fault::Redirect(location) => {
            let message = format!("moved to {location} (injected redirect)");
            error(
                out,
                307,
                "redirect",
                &message,
                None,
                vec![("Location", location)],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_the_chat_path() {
        assert_eq!(
            route("/api/v1/agents/default/chat/completions").as_deref(),
            Some("default")
        );
        assert_eq!(
            route("/api/v1/agents/a%2Fb/chat/completions").as_deref(),
            Some("a/b")
        );
        for other in [
            "/",
            "/api/v1/agents//chat/completions",
            "/api/v1/agents/a/b/chat/completions",
            "/api/v1/agents/a/chat",
        ] {
            assert_eq!(route(other), None, "{other}");
        }
    }

    #[test]
    fn validation_names_the_param() {
        let cases: [(&str, Option<&str>); 12] = [
            ("not json", None),
            ("[]", None),
            ("{}", Some("messages")),
            (r#"{"messages":[]}"#, Some("messages")),
            (r#"{"messages":{}}"#, Some("messages")),
            (
                r#"{"messages":[{"role":"robot","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"messages":[{"role":"user","content":1}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":2.5}"#,
                Some("temperature"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                Some("stream"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"conversationId":7}"#,
                Some("conversationId"),
            ),
        ];
        for (body, param) in cases {
            let (_, got) = validate(body.as_bytes()).unwrap_err();
            assert_eq!(got.as_deref(), param, "{body}");
        }
        let ok = validate(br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"stream":true,"temperature":0}"#).unwrap();
        assert_eq!(ok.stream, Some(true));
        assert_eq!(ok.temperature, Some(0.0));
    }
}
