//! The HTTP request to make: what it asks of the agent (`Chat`), the messages, and the
//! conversation it continues, which `conversation_id` looks up for `--continue`.

use std::path::Path;

use serde_json::{json, Value};

use crate::printer::Printer;
use crate::state;
use crate::wire::{ChatRequest, Message};

pub const USER_AGENT: &str = concat!("bnx/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Conversation {
    #[default]
    New,
    Id(String),
    /// The agent's last conversation, if one was saved.
    Continue,
}

/// What the request asks of the agent, besides its messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chat {
    pub stream: bool,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub conversation: Conversation,
}

/// The conversation id to send for `conversation` with `agent` at `origin`, if any: with
/// `--continue`, the one saved in `state_dir`, or a new conversation, said in a notice.
pub fn conversation_id(
    conversation: &Conversation,
    state_dir: Option<&Path>,
    origin: &str,
    agent: &str,
    printer: &Printer,
) -> Option<String> {
    match conversation {
        Conversation::New => None,
        Conversation::Id(id) => Some(id.clone()),
        Conversation::Continue => {
            let last = state_dir.and_then(|dir| state::load(dir, origin, agent));
            if last.is_none() {
                printer.notice(&format!(
                    "no saved conversation for agent {agent:?} at {origin}: starting a new one"
                ));
            }
            last
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub accept: &'static str,
    pub body: ChatRequest,
}

impl Request {
    pub fn new(
        url: &str,
        chat: &Chat,
        messages: Vec<Message>,
        conversation_id: Option<String>,
    ) -> Self {
        Request {
            url: url.to_string(),
            accept: if chat.stream {
                "text/event-stream"
            } else {
                "application/json"
            },
            body: ChatRequest {
                messages,
                stream: chat.stream.then_some(true),
                temperature: chat.temperature,
                max_tokens: chat.max_tokens,
                conversation_id,
            },
        }
    }

    /// The body as sent, byte for byte: what the transport posts, and what a request's digest
    /// is made of (a batch line's `request`, the cache key), so the two cannot disagree.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("a request always serializes")
    }

    /// Whether the answer is asked for as a stream of events.
    pub fn streams(&self) -> bool {
        self.body.stream == Some(true)
    }

    /// The request as `--dry-run` shows it: everything that would be sent, the token redacted,
    /// or `<no token>` when there is none to send.
    pub fn describe(&self, has_token: bool) -> Value {
        json!({
            "method": "POST",
            "url": self.url,
            "headers": {
                "Authorization": if has_token { "Bearer ***" } else { "<no token>" },
                "Content-Type": "application/json",
                "Accept": self.accept,
                "User-Agent": USER_AGENT,
            },
            "body": self.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag_sets_accept_and_body() {
        let chat = Chat {
            stream: true,
            max_tokens: Some(5),
            ..Default::default()
        };
        let req = Request::new(
            "https://h/x",
            &chat,
            vec![Message::new("user", "hi")],
            Some("c-1".into()),
        );
        let shown = req.describe(true);
        assert_eq!(shown["headers"]["Accept"], "text/event-stream");
        assert_eq!(shown["headers"]["Authorization"], "Bearer ***");
        assert_eq!(
            shown["body"],
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": true,
                   "max_tokens": 5, "conversationId": "c-1"})
        );
        let plain = Request::new("https://h/x", &Chat::default(), vec![], None);
        assert_eq!(plain.accept, "application/json");
        assert_eq!(plain.describe(true)["body"], json!({"messages": []}));
        assert_eq!(
            plain.describe(false)["headers"]["Authorization"],
            "<no token>"
        );
    }
}
