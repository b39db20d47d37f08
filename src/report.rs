//! The `bnx` object of `--json` output and batch lines: what the run learned about the
//! exchange, put together from the values the client's stages returned (the agent from the
//! configuration, the attempts from the transport, the reply's facts from the response).

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::budget::{rounded, Budget};
use crate::response::{Reply, StreamFacts};
use crate::transport::Attempts;

#[derive(Debug, Clone)]
pub struct Report {
    pub agent: String,
    pub started: Instant,
    pub attempts: Attempts,
    /// The final response's facts, once one arrived.
    pub reply: Reply,
    /// Requests made for this answer (SPEC 4 `asks`).
    pub asks: u32,
    /// When the answer came from the cache: the time it was stored (RFC 3339).
    pub cached_at: Option<String>,
    /// `--budget`, and the credits consumed in its period after this answer, when known.
    pub budget: Option<(Budget, Option<f64>)>,
    /// What the asks before the last one consumed (`X-Credits-Consumed`), while a re-ask is
    /// under way.
    earlier_credits: Option<String>,
}

impl Report {
    /// With `stream`, a failure document written before any reply says `done: false`.
    pub fn new(agent: &str, stream: bool) -> Self {
        Report {
            agent: agent.to_string(),
            started: Instant::now(),
            attempts: Attempts::default(),
            reply: Reply {
                stream: stream.then(StreamFacts::default),
                ..Reply::default()
            },
            asks: 0,
            cached_at: None,
            budget: None,
            earlier_credits: None,
        }
    }

    /// Before a re-ask: what the last answer consumed stays counted; its other facts give way
    /// to the next answer's, which may never come (a failure document then shows none of them).
    pub fn next_ask(&mut self, stream: bool) {
        self.earlier_credits = self.reply.credits_consumed.take();
        self.reply = Reply {
            stream: stream.then(StreamFacts::default),
            ..Reply::default()
        };
    }

    /// After an ask: `credits_consumed` is what every ask for this answer consumed together,
    /// as the `bnx` object and a batch's `--max-credits` count it.
    pub fn add_earlier_credits(&mut self) {
        let last = self.reply.credits_consumed.take();
        self.reply.credits_consumed = match (self.earlier_credits.take(), last) {
            (Some(earlier), Some(last)) => Some(sum(earlier, last)),
            (earlier, last) => last.or(earlier),
        };
    }

    pub fn to_json(&self) -> Value {
        let reply = &self.reply;
        let mut meta = Map::new();
        meta.insert("status".into(), json!(reply.status));
        meta.insert("agent".into(), json!(self.agent));
        meta.insert("conversation_id".into(), json!(reply.conversation_id));
        meta.insert("credits_consumed".into(), credits(&reply.credits_consumed));
        meta.insert(
            "credits_remaining".into(),
            credits(&reply.credits_remaining),
        );
        meta.insert("attempts".into(), json!(self.attempts.count));
        meta.insert("asks".into(), json!(self.asks));
        meta.insert("cached".into(), json!(self.cached_at.is_some()));
        if let Some(at) = &self.cached_at {
            meta.insert("cached_at".into(), json!(at));
        }
        meta.insert(
            "elapsed_ms".into(),
            json!(self.started.elapsed().as_millis() as u64),
        );
        if let Some(secs) = self.attempts.retry_after {
            meta.insert("retry_after".into(), json!(secs));
        }
        if let Some((budget, consumed)) = &self.budget {
            meta.insert("budget".into(), budget_json(budget, *consumed));
        }
        if let Some(stream) = &reply.stream {
            meta.insert("done".into(), json!(stream.done));
            meta.insert("finish_reason".into(), json!(stream.finish_reason));
        }
        Value::Object(meta)
    }
}

/// `{"limit", "period_s", "consumed"}`, as the `bnx` object and `--spent --json` give a budget.
pub fn budget_json(budget: &Budget, consumed: Option<f64>) -> Value {
    json!({
        "limit": credits_json(budget.limit),
        "period_s": budget.period.as_secs(),
        "consumed": consumed.map(credits_json),
    })
}

/// A number of credits the ledger counted, rounded as messages give it: `500`, not `500.0`;
/// `0.3`, not `0.30000000000000004`.
pub fn credits_json(credits: f64) -> Value {
    let credits = rounded(credits);
    if credits.fract() == 0.0 && credits.abs() < 9e15 {
        json!(credits as i64)
    } else {
        json!(credits)
    }
}

/// Two credit headers added up; one that is not a number counts for nothing, unless neither is
/// (then the last, as sent).
fn sum(earlier: String, last: String) -> String {
    let number = |text: &str| text.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    match (number(&earlier), number(&last)) {
        // Display writes 6, not 6.0, and never an exponent.
        (Some(a), Some(b)) => format!("{}", a + b),
        (Some(_), None) => earlier,
        (None, _) => last,
    }
}

/// A credit header as a JSON number when it is one, else the string as sent.
fn credits(header: &Option<String>) -> Value {
    match header {
        None => Value::Null,
        Some(raw) => match raw.trim().parse::<serde_json::Number>() {
            Ok(n) => Value::Number(n),
            Err(_) => Value::String(raw.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_numbers_when_they_parse() {
        assert_eq!(credits(&Some("3".into())), json!(3));
        assert_eq!(credits(&Some("2.5".into())), json!(2.5));
        assert_eq!(credits(&Some("lots".into())), json!("lots"));
        assert_eq!(credits(&None), Value::Null);
    }

    #[test]
    fn the_credits_of_every_ask_add_up() {
        let mut report = Report::new("a", true);
        report.reply.credits_consumed = Some("3".into());
        report.add_earlier_credits();
        assert_eq!(report.to_json()["credits_consumed"], 3);
        report.reply.conversation_id = Some("c".into());
        report.next_ask(true);
        assert_eq!(report.to_json()["conversation_id"], Value::Null);
        assert_eq!(report.to_json()["done"], false, "asked to stream");
        report.reply.credits_consumed = Some("2.5".into());
        report.add_earlier_credits();
        assert_eq!(report.to_json()["credits_consumed"], 5.5);
        report.next_ask(false);
        report.add_earlier_credits();
        assert_eq!(
            report.to_json()["credits_consumed"],
            5.5,
            "a re-ask that got no answer adds nothing"
        );
        assert_eq!(sum("lots".into(), "2".into()), "2");
        assert_eq!(sum("2".into(), "lots".into()), "2");
        assert_eq!(sum("a".into(), "b".into()), "b");
        assert_eq!(sum("1".into(), "2".into()), "3");
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect()
    }

    #[test]
    fn the_spec_fields_in_order() {
        let mut report = Report::new("default", true);
        report.attempts.count = 1;
        report.reply.status = Some(200);
        assert_eq!(
            keys(&report.to_json()),
            [
                "status",
                "agent",
                "conversation_id",
                "credits_consumed",
                "credits_remaining",
                "attempts",
                "asks",
                "cached",
                "elapsed_ms",
                "done",
                "finish_reason"
            ]
        );
    }

    #[test]
    fn a_stream_is_reported_as_asked_until_the_reply_says_what_it_was() {
        let asked = Report::new("a", true);
        assert_eq!(asked.to_json()["done"], false);
        let mut whole = Report::new("a", true);
        whole.reply = Reply::default();
        assert!(whole.to_json().get("done").is_none());
        assert!(Report::new("a", false).to_json().get("done").is_none());
    }
}
