//! Answers streamed as server-sent events: a role chunk, the content pieces (and the tool
//! calls), then how the stream ends. Each event is flushed before any wait, so a client sees it
//! when it is produced.

use std::borrow::Cow;
use std::io::{self, Write};
use std::thread::sleep;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use super::answer::Content;
use super::http::{self, CACHE_CONTROL, CONTENT_TYPE};
use super::reply::{created, usage, Answer, Next, Outcome, MODEL};
use super::AnswerOptions;
use crate::wire::{self, ChatChunk, ChunkChoice, Delta, ErrorBody, Text, Usage};

pub const EVENT_STREAM: &str = "text/event-stream";

/// How a stream ends after its content chunks.
pub enum Ending<'a> {
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

impl<'a> Ending<'a> {
    /// The usual end of an answer of `content`: the usage chunk when the request asked for it.
    pub fn done(
        finish_reason: &'a str,
        include_usage: bool,
        prompt_tokens: u64,
        content: &Content,
    ) -> Self {
        Ending::Done {
            finish_reason,
            usage: include_usage.then(|| usage(prompt_tokens, content)),
        }
    }
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

/// The chunk that carries an answer's tool calls, each with its `index`, as OpenAI streams them.
#[derive(Serialize)]
struct ToolCallChunk<'a> {
    id: &'a str,
    object: &'a str,
    created: u64,
    model: &'a str,
    choices: [ToolCallChoice; 1],
}

#[derive(Serialize)]
struct ToolCallChoice {
    index: u32,
    delta: ToolCallDelta,
    finish_reason: Option<()>,
}

#[derive(Serialize)]
struct ToolCallDelta {
    tool_calls: Vec<serde_json::Value>,
}

/// The answer's content streamed in the pieces `--chunks` asks for (default: a word each).
pub fn echo(
    out: &mut impl Write,
    http10: bool,
    answer: Answer,
    ending: Ending,
    options: &AnswerOptions,
) -> Outcome {
    let content = &answer.content;
    let pieces = content
        .pieces(options.chunks)
        .map(|(start, end)| content.slice(start, end));
    send(out, http10, &answer, pieces, ending, options.chunk_delay)
}

/// Streams `answer` as `pieces`, pausing `delay` before each.
pub fn send<'p>(
    out: &mut impl Write,
    http10: bool,
    answer: &Answer,
    pieces: impl Iterator<Item = Cow<'p, str>>,
    ending: Ending,
    delay: Duration,
) -> Outcome {
    let mut headers = vec![
        (CONTENT_TYPE, EVENT_STREAM.to_string()),
        (CACHE_CONTROL, "no-cache".to_string()),
    ];
    headers.extend(answer.headers.iter().cloned());
    let mut body = http::Stream::start(out, 200, &headers, http10)?;
    let mut event = Event {
        id: &answer.id,
        created: created(),
        json: Vec::with_capacity(512),
    };
    let role = Delta {
        role: Some("assistant".into()),
        content: None,
    };
    event.send_chunk(&mut body, role, None)?;
    body.flush()?;
    let limit = match ending {
        Ending::Done { .. } => usize::MAX,
        Ending::Cut(n) => n,
        Ending::Malformed | Ending::ErrorEvent => 1,
    };
    for piece in pieces.take(limit) {
        if !delay.is_zero() {
            body.flush()?;
            sleep(delay);
        }
        let delta = Delta {
            role: None,
            content: Some(Text(piece)),
        };
        event.send_chunk(&mut body, delta, None)?;
    }
    if let (Some(calls), Ending::Done { .. }) = (&answer.tool_calls, &ending) {
        event.send_tool_calls(&mut body, calls)?;
    }
    let next = end(&mut body, &mut event, ending, http10)?;
    body.finish()?;
    Ok((Some(200), next))
}

/// Sends what follows the content, as `ending` says.
fn end<W: Write>(
    body: &mut http::Stream<'_, W>,
    event: &mut Event,
    ending: Ending,
    http10: bool,
) -> io::Result<Next> {
    let id = event.id;
    Ok(match ending {
        Ending::Done {
            finish_reason,
            usage,
        } => {
            event.send_chunk(body, Delta::default(), Some(finish_reason))?;
            if let Some(usage) = usage {
                let chunk = UsageChunk {
                    id,
                    object: wire::CHAT_COMPLETION_CHUNK,
                    created: event.created,
                    model: MODEL,
                    choices: [],
                    usage,
                };
                event.send(body, &chunk)?;
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
            let message = "the agent failed mid-answer (injected error event)";
            event.send(body, &ErrorBody::new("server_error", message, None))?;
            Next::Close
        }
    })
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
        self.send(body, &chunk)
    }

    fn send_tool_calls<W: Write>(
        &mut self,
        body: &mut http::Stream<'_, W>,
        calls: &RawValue,
    ) -> io::Result<()> {
        // Checked to be an array of objects when the answers were read.
        let calls: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(calls.get()).unwrap_or_default();
        let tool_calls = calls
            .into_iter()
            .enumerate()
            .map(|(index, mut call)| {
                call.insert("index".into(), index.into());
                serde_json::Value::Object(call)
            })
            .collect();
        let chunk = ToolCallChunk {
            id: self.id,
            object: wire::CHAT_COMPLETION_CHUNK,
            created: self.created,
            model: MODEL,
            choices: [ToolCallChoice {
                index: 0,
                delta: ToolCallDelta { tool_calls },
                finish_reason: None,
            }],
        };
        self.send(body, &chunk)
    }

    fn send<W: Write>(
        &mut self,
        body: &mut http::Stream<'_, W>,
        chunk: &impl Serialize,
    ) -> io::Result<()> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, chunk).expect("serializes");
        body.send(&[b"data: ", &self.json, b"\n\n"])
    }
}
