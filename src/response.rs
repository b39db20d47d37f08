//! Reading the final response: an error status becomes an `Error`; an answer, whole or
//! streamed, goes to the output as it is decoded.
//!
//! Every size is bounded: an error body, a whole answer, one stream event. A stream as a whole
//! is not, because it is never held: each piece is written as soon as its event is complete.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::http::{HeaderMap, Response};
use ureq::Body;

use crate::chunk;
use crate::error::{Error, Kind, Result};
use crate::output::Output;
use crate::sse::{self, EventTooLarge};
use crate::state;
use crate::wire::{self, ChatCompletion};

/// A whole (non-streamed) answer larger than this is refused.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Of an error body, only this much is read: enough for any error message.
const MAX_ERROR_BODY: u64 = 64 * 1024;
const READ_BUFFER: usize = 64 * 1024;

impl From<EventTooLarge> for Error {
    fn from(err: EventTooLarge) -> Self {
        Error::new(Kind::Protocol, err)
    }
}

/// What the final response said about itself, whether or not it held an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub status: Option<u16>,
    pub credits_consumed: Option<String>,
    pub credits_remaining: Option<String>,
    pub conversation_id: Option<String>,
    /// The answer was streamed: how far it got.
    pub stream: Option<StreamFacts>,
    pub finish_reason: Option<String>,
    /// A text answer that held no text: what it held instead, for a notice.
    pub no_text: Option<String>,
    /// An error status's body as the server sent it (up to 64 KiB), for `-v`.
    pub error_body: Option<Vec<u8>>,
}

impl Reply {
    /// Says so when the answer was cut at its token limit (`finish_reason: "length"`).
    pub fn cut(&self, max_tokens: Option<u64>) -> Option<String> {
        let limit = match max_tokens {
            Some(_) => "--max-tokens",
            None => "the agent's token limit",
        };
        (self.finish_reason.as_deref() == Some("length"))
            .then(|| format!("the answer was cut at {limit}"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFacts {
    pub done: bool,
    pub finish_reason: Option<String>,
    /// Some answer text was written.
    pub text: bool,
    /// Tool calls the deltas started, when they carried no text.
    pub tool_calls: usize,
}

/// How to read an answer.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// The answer was asked for as a stream: what one without a `Content-Type` is taken for.
    pub stream: bool,
    /// A stream's longest silence between two events (`--timeout`).
    pub timeout: Duration,
    /// Why a retry was refused, for the error message.
    pub gave_up: Option<&'a str>,
}

/// Reads `response`, handing the answer to `out` as it arrives. A whole answer's body is also
/// returned, for a `--json` document or a batch line's `response`.
pub fn read<W: Write>(
    response: Response<Body>,
    reading: Reading,
    out: &mut Output<W>,
) -> (Reply, Result<Option<Vec<u8>>>) {
    let mut reply = headers(response.headers());
    let status = response.status();
    reply.status = Some(status.as_u16());
    if status.is_redirection() {
        let location = header(response.headers(), "location").unwrap_or("nowhere");
        let err = Error::msg(
            Kind::Refused,
            format!(
                "the server redirected (HTTP {}) to {location}; redirects are not followed",
                status.as_u16()
            ),
        )
        .with_hint("check --base-url / BLUENEXUS_BASE_URL")
        .with_json_type("http");
        return (reply, Err(err));
    }
    if !status.is_success() {
        let (body, err) = http_error(response, reading.gave_up);
        reply.error_body = Some(body);
        return (reply, Err(err));
    }
    let content_type = header(response.headers(), "content-type").unwrap_or("");
    let is_stream = if content_type.is_empty() {
        reading.stream
    } else {
        content_type
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
    };
    if !is_stream {
        let result = whole(response.into_body(), out);
        let result = result.map(|(answered, body)| {
            reply.finish_reason = answered.finish_reason;
            reply.no_text = answered.no_text;
            Some(body)
        });
        return (reply, result);
    }
    let (progress, result) = pump(
        &mut response.into_body().into_reader(),
        reading.timeout,
        out,
    );
    reply.finish_reason = progress.finish_reason.clone();
    let done = progress.done;
    if done && !progress.text {
        reply.no_text = Some(match progress.tool_calls {
            0 => held_nothing(progress.finish_reason.as_deref()),
            n => tool_calls(n),
        });
    }
    reply.stream = Some(progress);
    let result = result.and_then(|()| match done {
        true => Ok(None),
        false => Err(Error::msg(
            Kind::Protocol,
            "the stream ended before [DONE]: the answer is incomplete",
        )),
    });
    (reply, result)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The API's own headers: credits and the conversation.
fn headers(headers: &HeaderMap) -> Reply {
    Reply {
        credits_consumed: header(headers, wire::HEADER_CREDITS_CONSUMED).map(str::to_string),
        credits_remaining: header(headers, wire::HEADER_CREDITS_REMAINING).map(str::to_string),
        conversation_id: header(headers, wire::HEADER_CONVERSATION_ID)
            .map(str::trim)
            .filter(|id| state::is_valid_id(id))
            .map(str::to_string),
        ..Reply::default()
    }
}

/// An error status as an `Error`, carrying the server's own error object and message, and the
/// body it came in.
fn http_error(response: Response<Body>, gave_up: Option<&str>) -> (Vec<u8>, Error) {
    let status = response.status();
    let code = status.as_u16();
    let mut body = Vec::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let server_error = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(ServerError::from_body);
    let mut message = format!("HTTP {code} {}", status.canonical_reason().unwrap_or(""));
    if let Some(text) = server_error.as_ref().and_then(|e| e.text.as_deref()) {
        message = format!("{}: {text}", message.trim_end());
    }
    if let Some(why) = gave_up {
        message = format!("{message} ({why})");
    }
    let names_scopes = message.contains("agents-all") || message.contains("agents-use");
    let kind = Kind::for_status(code);
    let mut err = Error::msg(kind, message).with_json_type("http");
    if let Some(object) = server_error.and_then(|e| e.object) {
        err = err.with_server_error(object);
    }
    let err = match code {
        401 => err.with_hint("the token was refused: check it, or get a new one"),
        402 => err.with_hint("the account is out of credits: add credits, then run again"),
        // The hint adds what to do, never the server's own words again.
        403 if names_scopes => err.with_hint("give bnx a token that has one of those scopes"),
        403 => err.with_hint("the token needs the agents-all or agents-use scope"),
        429 => err.with_hint("rate limited: try again later"),
        _ => err,
    };
    (body, err)
}

/// What a server's error body says: its message, and its own `error` object when it is one.
/// An `error` that is not an object (`"error": "text"`, or a `message` beside it) has no object
/// to keep: `--json` then reports `{"message", "type": "http"}`, so `.error.message` always
/// works.
#[derive(Debug, Clone, PartialEq)]
struct ServerError {
    text: Option<String>,
    object: Option<Value>,
}

impl ServerError {
    /// `None` when the body names neither an `error` nor a `message`.
    fn from_body(mut body: Value) -> Option<ServerError> {
        let beside = body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string);
        let error = body.get_mut("error").map(Value::take);
        let (text, object) = match error {
            Some(Value::Object(object)) => {
                let own = object.get("message").and_then(Value::as_str);
                (
                    own.map(str::to_string).or(beside),
                    Some(Value::Object(object)),
                )
            }
            Some(Value::String(error)) => match beside {
                Some(message) if message != error => (Some(format!("{error}: {message}")), None),
                _ => (Some(error), None),
            },
            Some(_) | None => (beside, None),
        };
        (text.is_some() || object.is_some()).then_some(ServerError { text, object })
    }
}

/// A whole JSON answer: what it said of itself, and its body.
fn whole<W: Write>(body: Body, out: &mut Output<W>) -> Result<(Answered, Vec<u8>)> {
    let mut bytes = Vec::new();
    body.into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(e, false))?;
    if bytes.len() as u64 > MAX_BODY {
        return Err(Error::msg(
            Kind::Protocol,
            format!("the answer is larger than {} MiB", MAX_BODY >> 20),
        ));
    }
    let answered = write_answer(&bytes, out)?;
    Ok((answered, bytes))
}

/// What a whole answer said of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    pub finish_reason: Option<String>,
    /// It held no text (`content: null`): what it held instead.
    pub no_text: Option<String>,
}

/// Checks a whole answer and hands its content to `out` as text. Public so that the fuzz
/// target drives it with arbitrary bytes.
pub fn write_answer<W: Write>(bytes: &[u8], out: &mut Output<W>) -> Result<Answered> {
    let completion: ChatCompletion = match serde_json::from_str(utf8(bytes, "the answer")?) {
        Ok(completion) => completion,
        Err(e) => return Err(not_an_answer(bytes, e, "the answer")),
    };
    let first = completion
        .choices
        .first()
        .ok_or_else(|| Error::msg(Kind::Protocol, "the answer has no choices"))?;
    let finish_reason = first.finish_reason.as_ref().map(|r| r.as_str().to_string());
    let mut no_text = None;
    match &first.message.content {
        Some(content) => out.text(content.as_str())?,
        None => no_text = Some(held_instead(bytes, finish_reason.as_deref())),
    }
    Ok(Answered {
        finish_reason,
        no_text,
    })
}

/// What an answer without content held instead, for a notice: its tool calls, a function
/// call or a refusal (read again, only in this rare case), or nothing.
fn held_instead(bytes: &[u8], finish_reason: Option<&str>) -> String {
    let body = serde_json::from_slice::<Value>(bytes).unwrap_or_default();
    let message = &body["choices"][0]["message"];
    match message["tool_calls"].as_array().map(Vec::len) {
        Some(n) if n > 0 => tool_calls(n),
        _ if message["function_call"].is_object() => "it holds a function call".into(),
        _ if message["refusal"].is_string() => "it holds a refusal (see --json)".into(),
        _ => held_nothing(finish_reason),
    }
}

fn tool_calls(n: usize) -> String {
    match n {
        1 => "it holds 1 tool call".into(),
        n => format!("it holds {n} tool calls"),
    }
}

fn held_nothing(finish_reason: Option<&str>) -> String {
    match finish_reason {
        Some(reason) => format!("it holds nothing else (finish_reason {reason:?})"),
        None => "it holds nothing else".into(),
    }
}

/// The tool calls a stream event starts: each has a new `index` (or, without one, an `id`).
fn started_tool_calls(text: &str, so_far: usize) -> usize {
    let event = serde_json::from_str::<Value>(text).unwrap_or_default();
    let calls = event["choices"][0]["delta"]["tool_calls"].as_array();
    calls
        .into_iter()
        .flatten()
        .fold(so_far, |count, call| match call["index"].as_u64() {
            Some(index) => count.max(index as usize + 1),
            None if call.get("id").is_some() => count + 1,
            None => count,
        })
}

/// Why `bytes` did not parse as the expected shape: an `{"error": ...}` body is the server's
/// refusal (exit 1, with its message); anything else is a protocol error.
fn not_an_answer(bytes: &[u8], parse_error: serde_json::Error, what: &str) -> Error {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if value.get("error").is_some() => reported(value),
        Ok(_) => Error::msg(
            Kind::Protocol,
            format!("{what} is not a chat completion: {parse_error}"),
        ),
        Err(e) => Error::msg(Kind::Protocol, format!("{what} is not valid JSON: {e}")),
    }
}

/// A body or event with an `error` member: the server's refusal, with its message.
fn reported(body: Value) -> Error {
    let error = ServerError::from_body(body);
    let message = error.as_ref().and_then(|e| e.text.as_deref());
    let err = Error::msg(
        Kind::Refused,
        format!(
            "the server reported an error: {}",
            message.unwrap_or("no message")
        ),
    );
    match error.and_then(|e| e.object) {
        Some(object) => err.with_server_error(object),
        None => err,
    }
}

/// Decodes an SSE body from `reader` until `[DONE]`, the end, or a failure, writing each piece
/// as its event completes and flushing before every wait for more data. Public so that the
/// fuzz target and the property tests drive the real thing with arbitrary bytes and reads.
///
/// `timeout` bounds the silence between two events, not between two reads: the transport's
/// per-read timeout catches a silent server, this clock one that drips bytes but no event.
pub fn pump<R: Read, W: Write>(
    reader: &mut R,
    timeout: Duration,
    out: &mut Output<W>,
) -> (StreamFacts, Result<()>) {
    let mut decoder = sse::Decoder::default();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut events = Events::default();
    let mut last_event = Instant::now();
    // The silence timer is read once per read, not once per event: at 200,000 events a clock
    // read each was 3.5% of a stream's time.
    let heard = Cell::new(false);
    let on_data = |data: &[u8], events: &mut Events, out: &mut Output<W>| {
        heard.set(true);
        events.on_event(data, out)
    };
    let result = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break decoder.finish(&mut |data| on_data(data, &mut events, out)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(read_error(e, true)),
        };
        let fed = decoder.feed(&buf[..n], &mut |data| on_data(data, &mut events, out));
        if let Err(e) = fed.and_then(|_| out.flush()) {
            break Err(e);
        }
        if events.progress.done {
            break Ok(());
        }
        let now = Instant::now();
        if heard.replace(false) {
            last_event = now;
        } else if now - last_event > timeout {
            break Err(stream_silent());
        }
    };
    let flushed = out.flush();
    (events.progress, result.and(flushed))
}

/// What a stream's events leave for the ones after them.
#[derive(Default)]
struct Events {
    progress: StreamFacts,
    chunks: chunk::Reader,
}

impl Events {
    fn on_event<W: Write>(&mut self, data: &[u8], out: &mut Output<W>) -> Result<()> {
        let progress = &mut self.progress;
        if progress.done {
            return Ok(());
        }
        // As the OpenAI SDKs read it: `[DONE] ` or `[DONE]\r` from a sloppy server still ends.
        if data.trim_ascii_start().starts_with(wire::DONE) {
            progress.done = true;
            return Ok(());
        }
        // `data:` with nothing after it carries nothing to parse: skipped, as a comment would be.
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        // Checked once here, so that no parser need check each string again, and so that a
        // field a parser would skip unchecked cannot carry invalid UTF-8 into the output.
        let text = utf8(data, "a stream event")?;
        let parsed = match self.chunks.read(text) {
            Some(piece) => Ok(Some(piece)),
            None => chunk::parse(text),
        };
        out.event(text, matches!(parsed, Ok(Some(_))))?;
        let piece = match parsed {
            Ok(Some(piece)) => piece,
            Ok(None) => return Err(reported(serde_json::from_str(text).unwrap_or_default())),
            Err(e) => return Err(not_an_answer(data, e, "a stream event")),
        };
        match &piece.content {
            Some(content) => {
                out.text(content.as_str())?;
                progress.text = true;
            }
            None if !progress.text => {
                progress.tool_calls = started_tool_calls(text, progress.tool_calls);
            }
            None => {}
        }
        if let Some(reason) = &piece.finish_reason {
            progress.finish_reason = Some(reason.as_str().to_string());
        }
        Ok(())
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        Error::msg(
            Kind::Protocol,
            format!(
                "{what} is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

fn stream_silent() -> Error {
    Error::msg(
        Kind::Unavailable,
        "no event for longer than --timeout; the answer is incomplete",
    )
    .with_json_type("timeout")
}

/// A failure while reading the body, after the response began.
fn read_error(err: io::Error, streaming: bool) -> Error {
    let timed_out = err.kind() == io::ErrorKind::TimedOut
        || err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|e| matches!(e, ureq::Error::Timeout(_)));
    if timed_out && streaming {
        return stream_silent();
    }
    if timed_out {
        return Error::msg(
            Kind::Unavailable,
            "the answer did not arrive within --timeout; the answer is incomplete",
        )
        .with_json_type("timeout");
    }
    Error::new(
        Kind::Protocol,
        anyhow::Error::new(err).context("the connection failed before the answer was complete"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;
    use serde_json::json;

    #[test]
    fn server_errors_in_every_shape() {
        let parse = |body: Value| ServerError::from_body(body).map(|e| (e.text, e.object));
        let text = |s: &str| Some(s.to_string());
        let object = json!({"message": "bad token", "type": "auth"});
        assert_eq!(
            parse(json!({ "error": object })),
            Some((text("bad token"), Some(object)))
        );
        assert_eq!(
            parse(json!({"error": "plain"})),
            Some((text("plain"), None))
        );
        assert_eq!(
            parse(json!({"error": "Unauthorized", "message": "token expired"})),
            Some((text("Unauthorized: token expired"), None))
        );
        assert_eq!(
            parse(json!({"error": true, "message": "no"})),
            Some((text("no"), None))
        );
        assert_eq!(
            parse(json!({"message": "Forbidden"})),
            Some((text("Forbidden"), None))
        );
        assert_eq!(
            parse(json!({"error": {"code": 7}})),
            Some((None, Some(json!({"code": 7}))))
        );
        assert_eq!(parse(json!({"error": null})), None);
        assert_eq!(parse(json!([1])), None);
    }

    #[test]
    fn events_write_text_or_lines() {
        let mut text = Output::new(Vec::new(), Mode::Text);
        let mut events = Events::default();
        events
            .on_event(
                br#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
                &mut text,
            )
            .unwrap();
        events
            .on_event(
                br#"{"choices":[{"delta":{"content":"H\u00e9"}}]}"#,
                &mut text,
            )
            .unwrap();
        events
            .on_event(
                br#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#,
                &mut text,
            )
            .unwrap();
        events.on_event(b"[DONE]", &mut text).unwrap();
        events
            .on_event(br#"{"choices":[{"delta":{"content":"late"}}]}"#, &mut text)
            .unwrap();
        assert_eq!(text.into_inner(), "Hé".as_bytes());
        assert_eq!(
            events.progress,
            StreamFacts {
                done: true,
                finish_reason: Some("length".into()),
                text: true,
                tool_calls: 0,
            }
        );

        let mut lines = Output::new(Vec::new(), Mode::Json);
        let mut events = Events::default();
        events.on_event(b"{\"choices\":\n[]}", &mut lines).unwrap();
        events.on_event(br#"{"choices": [ ]}"#, &mut lines).unwrap();
        assert_eq!(
            lines.into_inner(),
            b"{\"choices\":[]}\n{\"choices\": [ ]}\n"
        );
    }

    #[test]
    fn done_with_whitespace_around_it_ends_the_stream() {
        for done in [&b"[DONE] "[..], b" [DONE]", b"[DONE]\r", b"\t[DONE]  "] {
            let mut events = Events::default();
            let mut text = Output::new(Vec::new(), Mode::Text);
            events.on_event(done, &mut text).unwrap();
            assert!(events.progress.done, "{:?}", String::from_utf8_lossy(done));
        }
    }

    #[test]
    fn invalid_utf8_in_a_skipped_field_is_refused_not_printed() {
        let data = b"{\"x\":\"\xff\",\n\"choices\":[{\"delta\":{\"content\":\"a\"}}]}";
        for mode in [Mode::Text, Mode::Json] {
            let mut out = Output::new(Vec::new(), mode);
            let err = Events::default().on_event(data, &mut out).unwrap_err();
            assert_eq!(err.kind, Kind::Protocol);
            assert!(err.line().contains("not valid UTF-8"), "{}", err.line());
            assert!(out.into_inner().is_empty());
        }
        let body = b"{\"x\":\"\xff\",\"choices\":[{\"message\":{\"content\":\"a\"}}]}";
        let mut out = Output::new(Vec::new(), Mode::Json);
        let err = write_answer(body, &mut out).unwrap_err();
        assert_eq!(err.kind, Kind::Protocol);
    }

    #[test]
    fn error_events_and_garbage_are_told_apart() {
        let mut out = Output::new(Vec::new(), Mode::Text);
        let mut events = Events::default();
        // A chunk first, so that the events after it are also compared with its shape.
        let chunk = br#"{"choices":[{"delta":{"content":"a"}}]}"#;
        events.on_event(chunk, &mut out).unwrap();
        let err = events
            .on_event(
                br#"{"error":{"message":"boom","type":"server_error"}}"#,
                &mut out,
            )
            .unwrap_err();
        assert_eq!(err.kind, Kind::Refused);
        assert!(err.line().contains("boom"));
        assert_eq!(err.json()["type"], "server_error");
        let err = events
            .on_event(br#"{"choices":[{"delta":{"content":"He"#, &mut out)
            .unwrap_err();
        assert_eq!(err.kind, Kind::Protocol);
        let err = events.on_event(br#"{"object":"x"}"#, &mut out).unwrap_err();
        assert_eq!(err.kind, Kind::Protocol);
    }

    mod properties {
        use super::super::*;
        use crate::mode::Mode;
        use crate::wire::{ChatChunk, ChunkChoice, Delta, Text};
        use proptest::collection::vec;
        use proptest::prelude::*;
        use std::time::Duration;

        /// A reader that hands out `data` in reads of the given sizes, cycling through them.
        struct Reads<'a> {
            data: &'a [u8],
            sizes: Vec<usize>,
            next: usize,
        }

        impl Read for Reads<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let size = self.sizes[self.next % self.sizes.len()]
                    .min(buf.len())
                    .min(self.data.len());
                self.next += 1;
                buf[..size].copy_from_slice(&self.data[..size]);
                self.data = &self.data[size..];
                Ok(size)
            }
        }

        fn run(input: &[u8], sizes: Vec<usize>, json: bool) -> (Vec<u8>, StreamFacts, Result<()>) {
            let mode = if json { Mode::Json } else { Mode::Text };
            let mut out = Output::new(Vec::new(), mode);
            let mut reads = Reads {
                data: input,
                sizes,
                next: 0,
            };
            let (progress, result) = pump(&mut reads, Duration::from_secs(3600), &mut out);
            (out.into_inner(), progress, result)
        }

        fn chunk_json(content: &str) -> String {
            let chunk = ChatChunk {
                id: "c".into(),
                object: wire::CHAT_COMPLETION_CHUNK.into(),
                created: 1,
                model: "m".into(),
                choices: vec![ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: None,
                        content: Some(Text(content.into())),
                    },
                    finish_reason: None,
                }],
                error: None,
            };
            serde_json::to_string(&chunk).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_stream_bytes_never_panic(
                input in vec(any::<u8>(), 0..2048),
                sizes in vec(1usize..64, 1..8),
                json in any::<bool>(),
            ) {
                let (written, progress, result) = run(&input, sizes, json);
                prop_assert!(result.is_err() || !progress.done || input.windows(6).any(|w| w == wire::DONE));
                let written = std::str::from_utf8(&written);
                prop_assert!(written.is_ok(), "output is always UTF-8");
                if json {
                    for line in written.unwrap().lines() {
                        prop_assert!(serde_json::from_str::<Value>(line).is_ok(), "not JSON: {:?}", line);
                    }
                }
            }

            #[test]
            fn streamed_text_is_exactly_the_content_in_any_reads(
                contents in vec(any::<String>(), 0..12),
                sizes in vec(1usize..48, 1..8),
            ) {
                let mut stream = String::from("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n");
                for content in &contents {
                    stream.push_str(&format!("data: {}\n\n", chunk_json(content)));
                }
                stream.push_str("data: [DONE]\n\n");
                let (text, progress, result) = run(stream.as_bytes(), sizes.clone(), false);
                prop_assert!(result.is_ok());
                prop_assert!(progress.done);
                prop_assert_eq!(String::from_utf8(text).unwrap(), contents.concat());

                let (lines, _, result) = run(stream.as_bytes(), sizes, true);
                prop_assert!(result.is_ok());
                let lines = String::from_utf8(lines).unwrap();
                let expected: Vec<String> = contents.iter().map(|c| chunk_json(c)).collect();
                prop_assert_eq!(lines.lines().skip(1).collect::<Vec<_>>(), expected);
            }

            #[test]
            fn a_cut_stream_writes_a_prefix_and_is_not_done(
                contents in vec("[a-zé ]{1,12}", 1..8),
                keep in any::<prop::sample::Index>(),
                sizes in vec(1usize..48, 1..8),
            ) {
                let mut stream = String::new();
                for content in &contents {
                    stream.push_str(&format!("data: {}\n\n", chunk_json(content)));
                }
                let cut = keep.index(stream.len() + 1);
                let cut = (0..=cut).rev().find(|&i| stream.is_char_boundary(i)).unwrap();
                let (text, progress, _) = run(&stream.as_bytes()[..cut], sizes, false);
                prop_assert!(!progress.done);
                prop_assert!(contents.concat().starts_with(std::str::from_utf8(&text).unwrap()));
            }
        }
    }
}
