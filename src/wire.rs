//! Wire types of the Agent Chat Completions API, defined once and used by `bnx`, `bnx-mock` and
//! the tests.
//!
//! Response types borrow their strings from the buffer they were parsed from, so the client's
//! hot path (one chunk per streamed piece) copies nothing it does not print. Fields the API
//! document's own examples leave out (a chunk's `id`, `index`, ...) default rather than fail.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeInclusive;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub const CHAT_COMPLETION: &str = "chat.completion";
pub const CHAT_COMPLETION_CHUNK: &str = "chat.completion.chunk";
/// The data payload that ends a stream.
pub const DONE: &[u8] = b"[DONE]";

pub const HEADER_CREDITS_CONSUMED: &str = "x-credits-consumed";
pub const HEADER_CREDITS_REMAINING: &str = "x-credits-remaining";
pub const HEADER_CONVERSATION_ID: &str = "x-conversation-id";
/// The wait a 429 asks for: whole seconds in `Retry-After`, milliseconds in `retry-after-ms`.
pub const HEADER_RETRY_AFTER: &str = "retry-after";
pub const HEADER_RETRY_AFTER_MS: &str = "retry-after-ms";

/// The range of `temperature`, as the API documents it.
pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=2.0;

/// Roles a message may have (`developer` is OpenAI's newer name for `system`).
pub const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The path of the chat endpoint for `agent` (already percent-encoded).
pub fn chat_path(encoded_agent: &str) -> String {
    format!("/api/v1/agents/{encoded_agent}/chat/completions")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(
        rename = "conversationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub conversation_id: Option<String>,
}

/// A string that borrows from the input when it has no escapes. `Option<Cow<str>>` alone would
/// always copy: serde only borrows through a field or newtype marked `borrow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A message's or a delta's `content`: a string, `null`, or an array of content parts
/// (`[{"type": "text", "text": "..."}]`, which OpenAI-compatible servers may send), read as the
/// concatenation of their `text`s. A plain string still borrows from the input.
fn content<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Text<'a>>, D::Error> {
    d.deserialize_any(ContentVisitor(PhantomData))
}

struct ContentVisitor<'a>(PhantomData<Text<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
    type Value = Option<Text<'a>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, null or an array of content parts")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Text(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Text(Cow::Owned(v.to_string()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Text(Cow::Owned(v))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<Self::Value, A::Error> {
        let mut text = String::new();
        while let Some(part) = parts.next_element::<serde_json::Value>()? {
            if let Some(piece) = part.get("text").and_then(serde_json::Value::as_str) {
                text.push_str(piece);
            }
        }
        Ok(Some(Text(Cow::Owned(text))))
    }
}

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text(Cow::Borrowed(s))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub object: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub choices: Vec<Choice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow)]
    pub message: AssistantMessage<'a>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Text<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage<'a> {
    #[serde(borrow, default)]
    pub role: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "content")]
    pub content: Option<Text<'a>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk<'a> {
    #[serde(borrow, default, skip_serializing_if = "str::is_empty")]
    pub id: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "str::is_empty")]
    pub object: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(borrow, default, skip_serializing_if = "str::is_empty")]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub choices: Vec<ChunkChoice<'a>>,
    /// Never sent: an `error` member makes an event the server's error report, whatever else
    /// it holds (a proxy may add one to a chunk), so a client must see it.
    #[serde(default, skip_serializing)]
    pub error: Option<de::IgnoredAny>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default)]
    pub delta: Delta<'a>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Text<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Text<'a>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "content",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Text<'a>>,
}

/// The OpenAI-style error body: `{"error": {"message", "type", "param"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(kind: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        ErrorBody {
            error: ApiError {
                message: message.into(),
                kind: kind.to_string(),
                param: param.map(str::to_string),
                code: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_content_borrows_from_input() {
        let raw = r#"{"choices":[{"delta":{"content":"Here"}}]}"#;
        let chunk: ChatChunk = serde_json::from_str(raw).unwrap();
        let content = chunk.choices[0].delta.content.as_ref().unwrap();
        assert!(matches!(content.0, Cow::Borrowed("Here")));
    }

    #[test]
    fn content_parts_are_read_as_their_text() {
        let raw = r#"{"choices":[{"message":{"content":[{"type":"text","text":"Hel"},
            {"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"lo"}]}}]}"#;
        let answer: ChatCompletion = serde_json::from_str(raw).unwrap();
        let content = answer.choices[0].message.content.as_ref().unwrap();
        assert_eq!(content.as_str(), "Hello");
        let raw = r#"{"choices":[{"delta":{"content":[{"type":"text","text":"a\nb"}]}}]}"#;
        let chunk: ChatChunk = serde_json::from_str(raw).unwrap();
        assert_eq!(
            chunk.choices[0].delta.content.as_ref().unwrap().as_str(),
            "a\nb"
        );
        let raw = r#"{"choices":[{"message":{"content":null,"tool_calls":[]}}]}"#;
        let answer: ChatCompletion = serde_json::from_str(raw).unwrap();
        assert_eq!(answer.choices[0].message.content, None);
        assert!(
            serde_json::from_str::<ChatChunk>(r#"{"choices":[{"delta":{"content":7}}]}"#).is_err()
        );
    }

    #[test]
    fn api_document_examples_parse() {
        let role: ChatChunk =
            serde_json::from_str(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#).unwrap();
        assert_eq!(
            role.choices[0].delta.role.as_ref().unwrap().as_str(),
            "assistant"
        );
        let escaped: ChatChunk = serde_json::from_str(
            r#"{"choices":[{"delta":{"content":"a\nb"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            escaped.choices[0].delta.content.as_ref().unwrap().as_str(),
            "a\nb"
        );
        let body = r#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1713000000,
            "model":"bluenexus/glm-4.7-flash-tee","choices":[{"index":0,"message":{"role":"assistant",
            "content":"Here are your meetings"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":150,"completion_tokens":45,"total_tokens":195}}"#;
        let full: ChatCompletion = serde_json::from_str(body).unwrap();
        assert_eq!(full.usage.unwrap().total_tokens, 195);
        assert_eq!(
            full.choices[0].finish_reason.as_ref().unwrap().as_str(),
            "stop"
        );
    }

    #[test]
    fn request_serializes_conversation_id_in_camel_case_and_omits_unset_fields() {
        let req = ChatRequest {
            messages: vec![Message::new("user", "hi")],
            conversation_id: Some("conv-1".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"messages":[{"role":"user","content":"hi"}],"conversationId":"conv-1"}"#
        );
    }
}
