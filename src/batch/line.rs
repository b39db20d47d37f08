//! One line of a batch's output: written when an item finishes, read back by the journal to
//! resume. One type for both, so a field added to the line is added once.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::client::Answer;
use crate::contract::Contract;
use crate::digest;
use crate::error::{Error, Kind, Result};
use crate::extract;
use crate::redact;
use crate::request::Request;
use crate::token::Secret;

#[derive(Debug, Serialize, Deserialize)]
pub struct Line<'a> {
    #[serde(borrow)]
    pub id: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub response: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    pub bnx: Value,
}

impl Line<'_> {
    /// The exit code the item ended with, when the line says.
    pub fn exit_code(&self) -> Option<i64> {
        self.bnx.get("exit_code")?.as_i64()
    }

    /// The digest of the request the item sent ([`request_digest`]); a line written before
    /// this field existed has none.
    pub fn request(&self) -> Option<&str> {
        self.bnx.get("request")?.as_str()
    }
}

/// What says whether an item asks the same as when its line was written: the hex SHA-256 of
/// the API origin, the agent and the request body as sent, joined by NUL bytes (the cache key
/// without the token), so an edited prompt, a changed file or other options are another
/// request.
pub fn request_digest(origin: &str, agent: &str, request: &Request) -> String {
    let body = request.body_bytes();
    digest::hex(&[origin.as_bytes(), &[0], agent.as_bytes(), &[0], &body])
}

/// What a successful item's line holds: its `content` (the text, or what `-x`,
/// `--expect-json` or `--schema` made of it, the last two a JSON value) and, when asked, its `response` as
/// received, with the token masked in it as in any `--json` output (the content, like a
/// whole answer's, is kept as received).
pub struct Delivered {
    pub content: Box<RawValue>,
    pub response: Option<Box<RawValue>>,
}

impl Delivered {
    pub fn new(
        answer: Answer,
        contract: Option<&Contract>,
        response: bool,
        token: &Secret,
    ) -> Result<Delivered> {
        let text = answer.content.unwrap_or_default();
        let content = match contract {
            Some(contract) if contract.yields_json() => {
                RawValue::from_string(text).map_err(protocol)?
            }
            _ => serde_json::value::to_raw_value(&text).expect("a string serializes"),
        };
        let response = response
            .then(|| received(answer.body, &answer.events, token))
            .transpose()?;
        Ok(Delivered { content, response })
    }
}

/// The response as received: a whole answer's body, or a stream's events as an array.
fn received(body: Option<Vec<u8>>, events: &[String], token: &Secret) -> Result<Box<RawValue>> {
    match body {
        Some(body) => {
            let body = std::str::from_utf8(&body)
                .map_err(|e| Error::msg(Kind::Protocol, format!("the answer is not UTF-8: {e}")))?;
            compact(&redact::json(Some(token), body))
        }
        None => {
            let events = events
                .iter()
                .map(|event| {
                    compact(&redact::json(Some(token), event)).map(|e| e.get().to_string())
                })
                .collect::<Result<Vec<_>>>()?;
            RawValue::from_string(format!("[{}]", events.join(","))).map_err(protocol)
        }
    }
}

/// A body as one line: as received when it is one already, else without the whitespace between
/// its tokens (number text kept, as `--json --stream` keeps it).
fn compact(text: &str) -> Result<Box<RawValue>> {
    let line = if text.contains(['\n', '\r']) {
        extract::compact_json(text).map_err(protocol)?
    } else {
        text.trim().to_string()
    };
    RawValue::from_string(line).map_err(protocol)
}

fn protocol(e: serde_json::Error) -> Error {
    Error::msg(Kind::Protocol, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_digest_changes_with_the_origin_the_agent_and_every_byte_of_the_body() {
        use crate::request::Chat;
        use crate::wire::Message;
        let request = |text: &str, chat: &Chat| {
            Request::new("https://h/x", chat, vec![Message::new("user", text)], None)
        };
        let plain = Chat::default();
        let asked = request("hi", &plain);
        let digest = request_digest("https://h", "a", &asked);
        assert_eq!(
            digest,
            digest::hex(&[b"https://h\0a\0", &asked.body_bytes()])
        );
        assert_eq!(
            digest,
            request_digest("https://h", "a", &request("hi", &plain))
        );
        let warmer = Chat {
            temperature: Some(0.5),
            ..Chat::default()
        };
        for other in [
            request_digest("https://other", "a", &asked),
            request_digest("https://h", "b", &asked),
            request_digest("https://h", "a", &request("hi!", &plain)),
            request_digest("https://h", "a", &request("hi", &warmer)),
        ] {
            assert_ne!(other, digest);
        }
    }

    #[test]
    fn a_line_reads_back_as_it_was_written() {
        let id = RawValue::from_string("\"a\"".into()).unwrap();
        let content = RawValue::from_string("{\"k\":1.50}".into()).unwrap();
        let line = Line {
            id: &id,
            content: Some(&content),
            response: None,
            error: None,
            bnx: serde_json::json!({"exit_code": 0}),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"id":"a","content":{"k":1.50},"bnx":{"exit_code":0}}"#
        );
        let read: Line = serde_json::from_str(&text).unwrap();
        assert_eq!((read.id.get(), read.exit_code()), ("\"a\"", Some(0)));
        assert_eq!(read.content.unwrap().get(), "{\"k\":1.50}");
    }
}
