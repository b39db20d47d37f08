//! Sending the reply of the scripted answer that matched a request: an answer written out, an
//! answer recorded from a real API sent as it was received, an error, or a fault.

use std::borrow::Cow;
use std::io::Write;
use std::net::TcpStream;
use std::thread::sleep;

use serde::Serialize;
use serde_json::value::RawValue;

use super::accounts::{price, Charge};
use super::answer::{tokens, Content};
use super::answers::{Recorded, RecordedBody, Reply, Rule, Scripted};
use super::fault::{self, Injected};
use super::http::{self, CONTENT_TYPE};
use super::reply::{self, error_body, no_conversation, no_credits, Answer, Asked, Next, Outcome};
use super::stream::{self, Ending, EVENT_STREAM};
use super::{lock, Shared};
use crate::wire;

/// What became of a rule's reply.
pub enum Replayed {
    Sent(Outcome),
    /// A `slow` fault has waited: the request gets the echo answer.
    Echo,
}

/// Sends `rule`'s reply to the request `asked`, at the conversation's `turn`.
pub fn send(
    rule: &Rule,
    asked: &Asked,
    turn: u64,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
) -> Replayed {
    Replayed::Sent(match &rule.reply {
        Reply::Answer(scripted) => answer(scripted, asked, out, shared),
        Reply::Recorded(recorded) => replay(recorded, asked, turn, out, shared),
        Reply::Error {
            status,
            headers,
            error,
        } => error_body(out, *status, &ErrorReply { error }, borrowed(headers)),
        Reply::Fault(fault) => match fault::inject(fault, asked.request, out, socket, shared) {
            Injected::Sent(outcome) => outcome,
            Injected::Delayed => return Replayed::Echo,
        },
    })
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    error: &'a RawValue,
}

fn borrowed(headers: &[(String, String)]) -> Vec<(&str, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect()
}

/// A scripted answer, charged and sent as the echo would be, with its own content.
fn answer(scripted: &Scripted, asked: &Asked, out: &mut impl Write, shared: &Shared) -> Outcome {
    sleep(scripted.delay);
    let chat = asked.chat;
    let content = Content::text_of(&scripted.content);
    let cost = scripted
        .credits
        .unwrap_or_else(|| price(tokens(content.len())));
    let conversation = chat.conversation_id.as_deref();
    let charge = lock(&shared.accounts).charge(asked.token, asked.agent, conversation, cost);
    let headers = match charge {
        Charge::Granted(granted) => reply::charged(granted),
        Charge::NoCredits => return no_credits(out, ""),
        Charge::UnknownConversation => return no_conversation(out, chat, &shared.secrets),
    };
    let answer = Answer {
        id: shared.next_id(),
        content,
        tool_calls: scripted.tool_calls.clone(),
        headers,
    };
    let finish_reason = scripted.finish_reason.as_str();
    let prompt_tokens = tokens(chat.prompt_bytes);
    if !chat.stream {
        return reply::whole(out, answer, finish_reason, prompt_tokens);
    }
    let ending = Ending::done(
        finish_reason,
        chat.include_usage,
        prompt_tokens,
        &answer.content,
    );
    let (http10, delay) = (asked.request.http10, shared.options.chunk_delay);
    match &scripted.chunks {
        Some(chunks) => {
            let pieces = chunks.iter().map(|piece| Cow::Borrowed(piece.as_str()));
            stream::send(out, http10, &answer, pieces, ending, delay)
        }
        None => {
            let content = &answer.content;
            let words = content.pieces(None).map(|(a, b)| content.slice(a, b));
            stream::send(out, http10, &answer, words, ending, delay)
        }
    }
}

/// A recorded answer, sent as it was received. A successful one is paid for with the credits
/// it says it consumed, and the conversation it names becomes known at this turn.
fn replay(
    recorded: &Recorded,
    asked: &Asked,
    turn: u64,
    out: &mut impl Write,
    shared: &Shared,
) -> Outcome {
    let header = |name: &str| {
        recorded
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if (200..300).contains(&recorded.status) {
        let cost = header(wire::HEADER_CREDITS_CONSUMED)
            .and_then(|consumed| consumed.trim().parse().ok())
            .unwrap_or(price(0));
        let mut accounts = lock(&shared.accounts);
        if accounts.pay(asked.token, cost).is_none() {
            drop(accounts);
            return no_credits(out, "");
        }
        if let Some(id) = header(wire::HEADER_CONVERSATION_ID) {
            accounts.register(asked.token, asked.agent, id, turn);
        }
    }
    let mut headers = borrowed(&recorded.headers);
    let (content_type, body) = match &recorded.body {
        RecordedBody::Json(json) => (reply::JSON, json.get()),
        RecordedBody::Text(text) => ("text/plain; charset=utf-8", text.as_str()),
        RecordedBody::Events(events) => {
            if header(CONTENT_TYPE).is_none() {
                headers.insert(0, (CONTENT_TYPE, EVENT_STREAM.into()));
            }
            return events_reply(out, recorded.status, &headers, events, asked.request.http10);
        }
    };
    if header(CONTENT_TYPE).is_none() {
        headers.insert(0, (CONTENT_TYPE, content_type.into()));
    }
    http::respond(out, recorded.status, &headers, body.as_bytes(), false)?;
    Ok((Some(recorded.status), Next::KeepAlive))
}

/// Recorded events are sent with nothing between them to wait for, so they are framed many to
/// an HTTP chunk of this size, which the client's reads take in whole.
const BATCH: usize = 64 * 1024;

fn events_reply(
    out: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    events: &[String],
    http10: bool,
) -> Outcome {
    let mut body = http::Stream::start(out, status, headers, http10)?;
    let mut batch = Vec::with_capacity(BATCH + 1024);
    for event in events {
        // An event of several data lines was recorded joined by newlines.
        for line in event.split('\n') {
            batch.extend_from_slice(b"data: ");
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
        }
        batch.push(b'\n');
        if batch.len() >= BATCH {
            body.send(&[&batch])?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        body.send(&[&batch])?;
    }
    body.finish()?;
    // HTTP/1.0 has no chunks: only the close ends the body.
    let next = if http10 { Next::Close } else { Next::KeepAlive };
    Ok((Some(status), next))
}
