//! The mock's one endpoint, `POST /api/v1/agents/{id}/chat/completions`, as the API document
//! describes it, plus the injected faults.
//!
//! Order of checks, as a client sees them: a queued fault; the route (404) and method (405);
//! the bearer token (401) and its scopes (403); the rate limit (429); the body (400); the
//! conversation (404); the credits (402); then the answer, whole or streamed.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;

use super::accounts::{Accounts, Admission, Charge};
use super::answer::{tokens, Content};
use super::fault::Fault;
use super::http::{self, Budget, Request};
use super::log::{Exchange, Log, Secrets};
use crate::wire::{self, ChatChunk, ChatCompletion, ChunkChoice, Delta, ErrorBody, Text, Usage};

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
    /// What error messages that quote the client must mask.
    pub secrets: Secrets,
    pub options: AnswerOptions,
    pub completions: AtomicU64,
    /// Request bodies held across all connections.
    pub bodies: Budget,
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
    if request.method == "HEAD" {
        return exchange(request, &mut http::HeadOnly::new(out), socket, shared);
    }
    exchange(request, out, socket, shared)
}

fn exchange(request: &Request, out: &mut impl Write, socket: &TcpStream, shared: &Shared) -> Next {
    let agent = route(&request.path);
    let fault = agent
        .as_ref()
        .and_then(|_| lock(&shared.faults).pop_front());
    let fault_name = fault.as_ref().map(Fault::to_string);
    let outcome = match fault {
        Some(fault) => inject(fault, request, agent, out, socket, shared),
        None => answer(request, agent, out, shared),
    };
    let (status, reason, next) = match outcome {
        Ok((status, next)) => (status, None, next),
        Err(err) => (None, Some(undelivered(&err)), Next::Close),
    };
    if let Some(log) = &shared.log {
        log.record(&Exchange {
            arrived: request.arrived,
            request: Some(request),
            status,
            reason,
            fault: fault_name,
        });
    }
    if request.close {
        Next::Close
    } else {
        next
    }
}

/// Why an answer did not reach the client, for the log.
fn undelivered(err: &io::Error) -> String {
    match err.kind() {
        // The socket's write timeout: no byte moved for that long.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "the client stopped reading the answer".into()
        }
        _ => format!("the answer was cut short: {err}"),
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

/// The 402 of an empty balance; `why` tells a real one from an injected one.
fn no_credits(out: &mut impl Write, why: &str) -> Outcome {
    let message = format!("not enough credits left for this request{why}");
    error(out, 402, "insufficient_credits", &message, None, vec![])
}

/// An answer ready to be sent: its id, its content and the headers that go with it.
struct Answer {
    id: String,
    content: Content,
    headers: Headers,
}

fn answer(
    request: &Request,
    agent: Option<String>,
    out: &mut impl Write,
    shared: &Shared,
) -> Outcome {
    let Some(agent) = agent else {
        let message = format!("no such endpoint: {} {}", request.method, request.path);
        let message = shared.secrets.redact(&message);
        return error(out, 404, "not_found_error", &message, None, vec![]);
    };
    if request.method != "POST" {
        let message = format!("{} is not allowed here; use POST", request.method);
        let message = shared.secrets.redact(&message);
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
            let message = "rate limit exceeded: too many requests for this token";
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
        Err(Invalid { message, param }) => {
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
    // One lock: the turn is part of the answer, whose length sets the charge.
    let charged = {
        let mut accounts = lock(&shared.accounts);
        accounts.next_turn(token, &agent, conversation).map(|turn| {
            let mut content = Content::answer(&chat.echo, turn, shared.options.answer_size);
            let cut = chat.max_tokens.is_some_and(|max| content.limit_tokens(max));
            let charge = accounts.charge(token, &agent, conversation, tokens(content.len()));
            (content, if cut { "length" } else { "stop" }, charge)
        })
    };
    let not_found = |out: &mut _| {
        let message = format!("conversation {:?} not found", conversation.unwrap_or(""));
        let message = shared.secrets.redact(&message);
        let param = Some("conversationId");
        error(out, 404, "not_found_error", &message, param, vec![])
    };
    let Some((content, finish_reason, charge)) = charged else {
        return not_found(out);
    };
    let (conversation_id, consumed, remaining) = match charge {
        Charge::Granted {
            conversation,
            consumed,
            remaining,
        } => (conversation, consumed, remaining),
        Charge::NoCredits => return no_credits(out, ""),
        Charge::UnknownConversation => return not_found(out),
    };
    let answer = Answer {
        id: shared.next_id(),
        headers: vec![
            ("X-Credits-Consumed", consumed.to_string()),
            ("X-Credits-Remaining", remaining.to_string()),
            ("X-Conversation-Id", conversation_id),
        ],
        content,
    };
    let prompt_tokens = tokens(chat.prompt_bytes);
    if chat.stream {
        let usage = chat
            .include_usage
            .then(|| usage(prompt_tokens, &answer.content));
        let ending = Ending::Done {
            finish_reason,
            usage,
        };
        stream(out, request.http10, answer, ending, &shared.options)
    } else {
        let body = completion_body(&answer, finish_reason, prompt_tokens);
        let mut headers = answer.headers;
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

/// A valid chat request, as far as the answer needs it.
#[derive(Debug)]
struct Chat<'a> {
    /// The text of the last user message, or of the last message when no user spoke.
    echo: Cow<'a, str>,
    /// The text of all messages, in bytes.
    prompt_bytes: usize,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u64>,
    conversation_id: Option<String>,
}

/// Why a request body is refused, and the parameter at fault.
#[derive(Debug)]
struct Invalid {
    message: String,
    param: Option<String>,
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// The request's fields, each kept as its JSON text until checked; any other field is skipped
/// unparsed (OpenAI SDKs send `model` and more).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Fields<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, rename = "conversationId")]
    conversation_id: Option<&'a RawValue>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct MessageFields<'a> {
    #[serde(borrow)]
    role: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct Part<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    text: Text<'a>,
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The request body checked as the API document (and then some) requires. Parsed into typed
/// values field by field and message by message, never into a JSON tree: a hostile body of a
/// million tiny values then costs no more memory than its own bytes.
fn validate(body: &[u8]) -> Result<Chat<'_>, Invalid> {
    let not_json = |e: serde_json::Error| Invalid {
        message: format!("the request body is not valid JSON: {e}"),
        param: None,
    };
    let raw: &RawValue = serde_json::from_slice(body).map_err(not_json)?;
    let fields: Fields = object(raw).map_err(|e| match e {
        Some(e) => not_json(e),
        None => Invalid {
            message: "the request body must be a JSON object".into(),
            param: None,
        },
    })?;
    let temperature: Option<f64> = typed(
        fields.temperature,
        "temperature",
        "temperature must be a number from 0 to 2",
    )?;
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(invalid(
            "temperature must be a number from 0 to 2",
            "temperature",
        ));
    }
    let mut max_tokens = None;
    for (raw, param) in [
        (fields.max_tokens, "max_tokens"),
        (fields.max_completion_tokens, "max_completion_tokens"),
    ] {
        let message = format!("{param} must be a positive integer");
        match typed(raw, param, &message)? {
            Some(0) => return Err(invalid(message, param)),
            // Both names given: the smaller limit holds.
            Some(n) => max_tokens = Some(max_tokens.map_or(n, |max: u64| max.min(n))),
            None => {}
        }
    }
    let stream = typed(fields.stream, "stream", "stream must be a boolean")?;
    let include_usage = match fields.stream_options {
        None => false,
        Some(raw) => {
            let message = "stream_options must be an object, its include_usage a boolean";
            let options: StreamOptions =
                object(raw).map_err(|_| invalid(message, "stream_options"))?;
            options.include_usage.unwrap_or(false)
        }
    };
    let conversation_id = typed(
        fields.conversation_id,
        "conversationId",
        "conversationId must be a string",
    )?;
    let (echo, prompt_bytes) = messages(fields.messages)?;
    Ok(Chat {
        echo,
        prompt_bytes,
        stream: stream.unwrap_or(false),
        include_usage,
        max_tokens,
        conversation_id,
    })
}

/// A field's value as `T`, or `message` naming the field.
fn typed<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    param: &str,
    message: &str,
) -> Result<Option<T>, Invalid> {
    raw.map(|raw| serde_json::from_str(raw.get()).map_err(|_| invalid(message, param)))
        .transpose()
}

/// Checks the messages one at a time; returns the text the answer echoes and the size of all.
fn messages(raw: Option<&RawValue>) -> Result<(Cow<'_, str>, usize), Invalid> {
    let raw = raw.ok_or_else(|| invalid("messages is required", "messages"))?;
    let mut echo: Option<(bool, Cow<str>)> = None;
    let mut prompt_bytes = 0;
    let count = each_element(raw, |i, message| {
        let (from_user, text) = check_message(i, message)?;
        prompt_bytes += text.len();
        // A later user message replaces the echo; any message does until a user has spoken.
        if from_user || !echo.as_ref().is_some_and(|(user, _)| *user) {
            echo = Some((from_user, text));
        }
        Ok(())
    })
    .map_err(|failed| failed.unwrap_or_else(|| invalid("messages must be an array", "messages")))?;
    match echo {
        Some((_, text)) if count > 0 => Ok((text, prompt_bytes)),
        _ => Err(invalid("messages must not be empty", "messages")),
    }
}

/// One message: whether a user sent it, and its text.
fn check_message(i: usize, raw: &RawValue) -> Result<(bool, Cow<'_, str>), Invalid> {
    // Not an object: no role, which is what the error will say.
    let fields: MessageFields = object(raw).unwrap_or_default();
    let role: Option<String> = fields.role.and_then(|r| serde_json::from_str(r.get()).ok());
    let Some(role) = role.filter(|r| wire::ROLES.contains(&r.as_str())) else {
        let message = format!(
            "messages[{i}].role must be one of {}",
            wire::ROLES.join(", ")
        );
        return Err(invalid(message, format!("messages[{i}].role")));
    };
    let calls_tools = fields
        .tool_calls
        .is_some_and(|calls| each_element(calls, |_, _| Ok::<_, ()>(())).is_ok_and(|n| n > 0));
    let text = match fields.content {
        Some(content) => content_text(content),
        // An assistant message that calls tools may come without content.
        None if role == "assistant" && calls_tools => Some(Cow::Borrowed("")),
        None => None,
    };
    let Some(text) = text else {
        let message = format!(
            "messages[{i}].content must be a string or an array of \
             {{\"type\": \"text\", \"text\": ...}} parts"
        );
        return Err(invalid(message, format!("messages[{i}].content")));
    };
    Ok((role == "user", text))
}

/// A message's content as text: a string, or the text of its parts joined.
fn content_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    if let Ok(Text(text)) = serde_json::from_str(raw.get()) {
        return Some(text);
    }
    let mut joined = String::new();
    each_element(raw, |_, part| match object::<Part>(part) {
        Ok(part) if part.kind == "text" => {
            joined.push_str(part.text.as_str());
            Ok(())
        }
        _ => Err(()),
    })
    .ok()?;
    Some(Cow::Owned(joined))
}

/// `raw` as `T` when it is a JSON object that `T` accepts; `Err(None)` when it is not an object
/// (a derived struct would also take an array, which no client means).
fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, Option<serde_json::Error>> {
    if !raw.get().starts_with('{') {
        return Err(None);
    }
    serde_json::from_str(raw.get()).map_err(Some)
}

/// Calls `each` on the elements of the JSON array `raw` in order, without collecting them, and
/// stops at its first error; returns the number of elements. `Err(None)` when `raw` is not an
/// array.
fn each_element<'a, E>(
    raw: &'a RawValue,
    each: impl FnMut(usize, &'a RawValue) -> Result<(), E>,
) -> Result<usize, Option<E>> {
    struct Each<F, E> {
        each: F,
        failed: Option<E>,
    }
    impl<'de, F, E> Visitor<'de> for &mut Each<F, E>
    where
        F: FnMut(usize, &'de RawValue) -> Result<(), E>,
    {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while let Some(element) = seq.next_element()? {
                if let Err(failed) = (self.each)(count, element) {
                    self.failed = Some(failed);
                    return Err(de::Error::custom("stopped at an invalid element"));
                }
                count += 1;
            }
            Ok(count)
        }
    }
    let mut visitor = Each { each, failed: None };
    let mut parser = serde_json::Deserializer::from_str(raw.get());
    let counted = (&mut parser).deserialize_seq(&mut visitor);
    counted.map_err(|_| visitor.failed)
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

fn usage(prompt_tokens: u64, content: &Content) -> Usage {
    let completion_tokens = tokens(content.len());
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

fn completion_body(answer: &Answer, finish_reason: &str, prompt_tokens: u64) -> Vec<u8> {
    let completion = ChatCompletion {
        id: answer.id.as_str().into(),
        object: wire::CHAT_COMPLETION.into(),
        created: created(),
        model: MODEL.into(),
        choices: vec![wire::Choice {
            index: 0,
            message: wire::AssistantMessage {
                role: "assistant".into(),
                content: Some(Text(answer.content.text())),
            },
            finish_reason: Some(finish_reason.into()),
        }],
        usage: Some(usage(prompt_tokens, &answer.content)),
    };
    serde_json::to_vec(&completion).expect("serializes")
}

/// How a stream ends after its content chunks.
enum Ending<'a> {
    /// A last chunk with this finish reason, the usage chunk when asked for, then `[DONE]`.
    Done {
        finish_reason: &'a str,
        usage: Option<Usage>,
    },
    /// The body ends after this many content chunks, with no `[DONE]`.
    Cut(usize),
    /// After the first content chunk, a chunk that is not valid JSON, then `[DONE]`.
    Malformed,
    /// After the first content chunk, an `{"error": ...}` event; no `[DONE]`.
    ErrorEvent,
}

/// The chunk `stream_options.include_usage` asks for: no choices, the usage of the answer.
#[derive(Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'a str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: Usage,
}

fn stream(
    out: &mut impl Write,
    http10: bool,
    mut answer: Answer,
    ending: Ending,
    options: &AnswerOptions,
) -> Outcome {
    answer
        .headers
        .insert(0, ("Content-Type", "text/event-stream".into()));
    answer
        .headers
        .insert(1, ("Cache-Control", "no-cache".into()));
    let mut body = http::Stream::start(out, &answer.headers, http10)?;
    let id = answer.id.as_str();
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
        Ending::Done { .. } => usize::MAX,
        Ending::Cut(n) => n,
        Ending::Malformed | Ending::ErrorEvent => 1,
    };
    let content = &answer.content;
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
        Ending::Done {
            finish_reason,
            usage,
        } => {
            event.send_chunk(&mut body, Delta::default(), Some(finish_reason))?;
            if let Some(usage) = usage {
                let chunk = UsageChunk {
                    id,
                    object: wire::CHAT_COMPLETION_CHUNK,
                    created: event.created,
                    model: MODEL,
                    choices: [],
                    usage,
                };
                let json = serde_json::to_vec(&chunk).expect("serializes");
                body.send(&[b"data: ", &json, b"\n\n"])?;
            }
            body.send(&[b"data: [DONE]\n\n"])?;
            // HTTP/1.0 has no chunks: only the close ends the body, keep-alive or not.
            if http10 {
                Next::Close
            } else {
                Next::KeepAlive
            }
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
            error: None,
        };
        self.json.clear();
        serde_json::to_writer(&mut self.json, &chunk).expect("serializes");
        body.send(&[b"data: ", &self.json, b"\n\n"])
    }
}

/// Applies `fault`; `slow` delays the normal answer to the chat path of `agent`. Faults come
/// before validation, so the body is used only as far as it is valid.
fn inject(
    fault: Fault,
    request: &Request,
    agent: Option<String>,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
) -> Outcome {
    let chat = validate(&request.body).ok();
    let wants_stream = chat.as_ref().is_some_and(|chat| chat.stream);
    let broken_answer = || Answer {
        id: shared.next_id(),
        content: Content::answer(
            chat.as_ref().map_or("", |chat| &chat.echo),
            1,
            shared.options.answer_size,
        ),
        headers: vec![],
    };
    let broken_stream = match fault {
        Fault::Malformed => Some(Ending::Malformed),
        Fault::Cut { chunks } => Some(Ending::Cut(chunks)),
        Fault::ErrorEvent => Some(Ending::ErrorEvent),
        _ => None,
    };
    if let Some(ending) = broken_stream.filter(|_| wants_stream) {
        return stream(
            out,
            request.http10,
            broken_answer(),
            ending,
            &shared.options,
        );
    }
    let json = [("Content-Type", "application/json".to_string())];
    match fault {
        Fault::RateLimited { retry_after } => error(
            out,
            429,
            "rate_limit_error",
            "rate limit exceeded (injected fault)",
            None,
            vec![("Retry-After", retry_after.to_string())],
        ),
        Fault::Status(402) => no_credits(out, " (injected 402)"),
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
        Fault::Malformed => {
            let id = shared.next_id();
            let body = format!("{{\"id\":\"{id}\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"trunc");
            http::respond(out, 200, &json, body.as_bytes(), false)?;
            Ok((Some(200), Next::KeepAlive))
        }
        Fault::Cut { .. } => {
            let body = completion_body(&broken_answer(), "stop", 0);
            http::respond_short(out, &json, &body[..body.len() / 2], body.len())?;
            Ok((Some(200), Next::Close))
        }
        Fault::ErrorEvent => {
            let body = ErrorBody::new(
                "server_error",
                "the agent failed (injected error body)",
                None,
            );
            let body = serde_json::to_vec(&body).expect("serializes");
            http::respond(out, 200, &json, &body, false)?;
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
        let user = r#"{"role":"user","content":"x"}"#;
        let cases: Vec<(String, Option<&str>)> = vec![
            ("not json".into(), None),
            ("[]".into(), None),
            (r#"{"messages":[1],"messages":[2]}"#.into(), None),
            ("{}".into(), Some("messages")),
            (r#"{"messages":[]}"#.into(), Some("messages")),
            (r#"{"messages":{}}"#.into(), Some("messages")),
            (
                r#"{"messages":[{"role":"robot","content":"x"}]}"#.into(),
                Some("messages[0].role"),
            ),
            (
                r#"{"messages":[["user","x"]]}"#.into(),
                Some("messages[0].role"),
            ),
            (
                r#"{"messages":[{"role":"user","content":1}]}"#.into(),
                Some("messages[0].content"),
            ),
            (
                r#"{"messages":[{"role":"user"}]}"#.into(),
                Some("messages[0].content"),
            ),
            (
                format!(r#"{{"messages":[{user},{{"role":"user","content":null}}]}}"#),
                Some("messages[1].content"),
            ),
            (
                r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#.into(),
                Some("messages[0].content"),
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#
                    .into(),
                Some("messages[0].content"),
            ),
            (
                r#"{"messages":[{"role":"user","content":[["text","x"]]}]}"#.into(),
                Some("messages[0].content"),
            ),
            (
                format!(r#"{{"messages":[{user}],"temperature":2.5}}"#),
                Some("temperature"),
            ),
            (
                format!(r#"{{"messages":[{user}],"temperature":"1"}}"#),
                Some("temperature"),
            ),
            (
                format!(r#"{{"messages":[{user}],"max_tokens":0}}"#),
                Some("max_tokens"),
            ),
            (
                format!(r#"{{"messages":[{user}],"max_tokens":1.5}}"#),
                Some("max_tokens"),
            ),
            (
                format!(r#"{{"messages":[{user}],"max_completion_tokens":-1}}"#),
                Some("max_completion_tokens"),
            ),
            (
                format!(r#"{{"messages":[{user}],"stream":"yes"}}"#),
                Some("stream"),
            ),
            (
                format!(r#"{{"messages":[{user}],"stream_options":true}}"#),
                Some("stream_options"),
            ),
            (
                format!(r#"{{"messages":[{user}],"stream_options":[]}}"#),
                Some("stream_options"),
            ),
            (
                format!(r#"{{"messages":[{user}],"stream_options":{{"include_usage":1}}}}"#),
                Some("stream_options"),
            ),
            (
                format!(r#"{{"messages":[{user}],"conversationId":7}}"#),
                Some("conversationId"),
            ),
        ];
        for (body, param) in cases {
            let invalid = validate(body.as_bytes()).unwrap_err();
            assert_eq!(invalid.param.as_deref(), param, "{body}");
        }
    }

    #[test]
    fn accepts_what_openai_clients_send() {
        let ok = validate(br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"stream":true,"temperature":0,"n":1,"tools":[{"type":"function"}]}"#).unwrap();
        assert!(ok.stream && !ok.include_usage);
        let body = br#"{"messages":[
            {"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"what is "},{"type":"text","text":"2+2?"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"add","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"4"}],
            "max_completion_tokens":9,"max_tokens":20,"stream_options":{"include_usage":true}}"#;
        let chat = validate(body).unwrap();
        assert_eq!(chat.echo, "what is 2+2?");
        assert_eq!(
            chat.prompt_bytes,
            "be brief".len() + "what is 2+2?".len() + 1
        );
        assert_eq!(chat.max_tokens, Some(9));
        assert!(chat.include_usage && !chat.stream);
    }

    #[test]
    fn echoes_the_last_user_message_else_the_last_message() {
        let echo = |messages: &str| {
            let body = format!(r#"{{"messages":{messages}}}"#);
            validate(body.as_bytes()).unwrap().echo.into_owned()
        };
        let m = |role: &str, text: &str| format!(r#"{{"role":"{role}","content":"{text}"}}"#);
        let (s, u1, a, u2) = (
            m("system", "s"),
            m("user", "first"),
            m("assistant", "a"),
            m("user", "héllo"),
        );
        assert_eq!(echo(&format!("[{s},{u1},{a},{u2}]")), "héllo");
        assert_eq!(echo(&format!("[{s},{u1},{a}]")), "first");
        assert_eq!(echo(&format!("[{s},{a}]")), "a");
    }

    #[test]
    fn each_element_stops_at_the_first_failure() {
        let raw: &RawValue = serde_json::from_str("[1, 2, 3, 4]").unwrap();
        let mut seen = vec![];
        let stopped = each_element(raw, |i, element| {
            seen.push(element.get().to_string());
            if i == 1 {
                Err("two")
            } else {
                Ok(())
            }
        });
        assert_eq!(
            (stopped, seen),
            (Err(Some("two")), vec!["1".into(), "2".into()])
        );
        let not_array: &RawValue = serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert_eq!(each_element(not_array, |_, _| Ok::<_, ()>(())), Err(None));
    }
}
