//! A re-ask (`--reask`): the request that continues the exchange after an answer that broke its
//! contract, and the user message that says what was wrong and what to send instead.

use crate::contract::{shown_path, Broken, Contract};
use crate::request::Request;
use crate::schema::Mismatch;
use crate::wire::Message;

/// A schema longer than this (compact) is not repeated in the message: the failures name what
/// to fix, and the prompt that asked for the shape is already in the exchange.
const MAX_SCHEMA_SHOWN: usize = 16 * 1024;

/// The request after `previous`, whose `answer` (as received) broke `contract`. In a
/// conversation (`conversation`: the id the answer carried, else the one `previous` continued)
/// it sends that id and the one message; otherwise the messages so far, the answer and the
/// message, so the agent sees what it said.
pub fn request(
    previous: &Request,
    answer: &str,
    conversation: Option<String>,
    contract: &Contract,
    broken: &Broken,
) -> Request {
    let mut next = previous.clone();
    let ask = Message::new("user", message(contract, broken));
    match conversation {
        Some(id) => {
            next.body.messages = vec![ask];
            next.body.conversation_id = Some(id);
        }
        None => {
            next.body.messages.push(Message::new("assistant", answer));
            next.body.messages.push(ask);
        }
    }
    next
}

/// What was wrong with the answer, and what to send instead.
pub fn message(contract: &Contract, broken: &Broken) -> String {
    let wrong = match broken {
        Broken::Empty => "Your answer was empty.".to_string(),
        Broken::NoCodeBlock => "Your answer holds no fenced code block.".to_string(),
        Broken::NotJson { why, .. } => format!("Your answer is not one JSON value ({why})."),
        Broken::TooDeep => "Your answer nests deeper than 128 levels.".to_string(),
        Broken::TooMany => "Your answer holds more than 2,000,000 JSON values.".to_string(),
        Broken::Mismatch(mismatch) => failures(mismatch),
    };
    let instead = match contract {
        Contract::CodeBlock => {
            "Reply with the code in one fenced code block: a line of ``` before it and after it."
                .to_string()
        }
        Contract::Json => "Reply with only the JSON value, no prose.".to_string(),
        Contract::Schema(schema) if schema.text().len() <= MAX_SCHEMA_SHOWN => format!(
            "It must be valid against this JSON Schema: {}\nReply with only the JSON value, no \
             prose.",
            schema.text()
        ),
        Contract::Schema(_) => "Reply with only the JSON value, no prose.".to_string(),
    };
    format!("{wrong}\n{instead}")
}

fn failures(mismatch: &Mismatch) -> String {
    let mut text = String::from("Your answer does not match the JSON Schema:");
    for failure in &mismatch.failures {
        text.push_str(&format!(
            "\n- {}: {}",
            shown_path(&failure.path),
            failure.message
        ));
    }
    let more = mismatch.total - mismatch.failures.len();
    if more > 0 {
        text.push_str(&format!("\n- and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::request::Chat;
    use crate::schema::Schema;

    fn first() -> Request {
        let messages = vec![
            Message::new("system", "be brief"),
            Message::new("user", "q"),
        ];
        Request::new("https://h/x", &Chat::default(), messages, None)
    }

    #[test]
    fn without_a_conversation_the_exchange_is_sent_again_with_the_answer_as_received() {
        let next = request(
            &first(),
            "Sure!\n```\n{}\n```",
            None,
            &Contract::Json,
            &Broken::NotJson {
                why: "expected value at line 1 column 1".into(),
                at: String::new(),
            },
        );
        let roles: Vec<&str> = next.body.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(next.body.messages[2].content, "Sure!\n```\n{}\n```");
        assert_eq!(
            next.body.messages[3].content,
            "Your answer is not one JSON value (expected value at line 1 column 1).\nReply with \
             only the JSON value, no prose."
        );
        assert_eq!(next.body.conversation_id, None);
    }

    #[test]
    fn in_a_conversation_one_message_is_sent_with_its_id() {
        let next = request(
            &first(),
            "prose",
            Some("conv-1".into()),
            &Contract::CodeBlock,
            &Broken::NoCodeBlock,
        );
        assert_eq!(next.body.messages.len(), 1, "no --system again");
        assert_eq!(next.body.messages[0].role, "user");
        assert!(next.body.messages[0].content.contains("fenced code block"));
        assert_eq!(next.body.conversation_id.as_deref(), Some("conv-1"));
        assert_eq!(next.url, "https://h/x");
    }

    #[test]
    fn a_schema_message_lists_the_failures_and_the_schema() {
        let schema = Schema::from_arg(r#"{"type": "object", "required": ["a"]}"#).unwrap();
        let contract = Contract::Schema(Arc::new(schema));
        let broken = contract.check("{\"b\": 1}").unwrap_err();
        assert_eq!(
            message(&contract, &broken),
            "Your answer does not match the JSON Schema:\n- (root): \"a\" is a required \
             property\nIt must be valid against this JSON Schema: \
             {\"type\":\"object\",\"required\":[\"a\"]}\nReply with only the JSON value, no prose."
        );
    }
}
