//! `--answers FILE`: scripted answers, one JSON rule a line, read once at start; and the choice
//! of the rule that answers a request (SPEC section 11). Sending the chosen reply is
//! `replay.rs`'s job.
//!
//! Every byte of the files is bounded before it is held: a line is at most `MAX_LINE` bytes,
//! all files together `MAX_BYTES` and `MAX_RULES` rules, and a `prompt_regex` compiles to at
//! most `REGEX_SIZE` bytes (the `regex` crate matches in linear time, whatever the pattern).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::fault::Fault;
use super::validate::Chat;

/// A rule's line, at most: a recorded stream of 64 MiB of text is about 110 MiB of JSON.
pub const MAX_LINE: usize = 256 << 20;
/// All answers files together, at most.
pub const MAX_BYTES: u64 = 512 << 20;
pub const MAX_RULES: usize = 100_000;
/// A compiled `prompt_regex`, at most.
const REGEX_SIZE: usize = 1 << 20;

/// The rules of every `--answers` file, in order.
#[derive(Debug, Default)]
pub struct Answers {
    rules: Vec<Rule>,
    /// `--strict`: a request no rule matches is a 400, not the echo.
    pub strict: bool,
}

#[derive(Debug)]
pub struct Rule {
    /// `FILE:LINE`, for the log.
    pub origin: String,
    matcher: Match,
    pub reply: Reply,
    times: Option<u64>,
    used: AtomicU64,
}

#[derive(Debug, Default)]
struct Match {
    agent: Option<String>,
    prompt: Option<String>,
    prompt_regex: Option<Regex>,
    system: Option<String>,
    turn: Option<u64>,
    stream: Option<bool>,
    body: Option<Map<String, Value>>,
}

/// What a rule answers with.
#[derive(Debug)]
pub enum Reply {
    Answer(Scripted),
    Recorded(Recorded),
    Error {
        status: u16,
        headers: Vec<(String, String)>,
        error: Box<RawValue>,
    },
    Fault(Fault),
}

/// An answer written out: sent as any answer of the mock's is, with this content.
#[derive(Debug)]
pub struct Scripted {
    pub content: String,
    pub finish_reason: String,
    /// A JSON array of objects.
    pub tool_calls: Option<Box<RawValue>>,
    /// The streamed pieces; `None`: a word a piece.
    pub chunks: Option<Vec<String>>,
    pub credits: Option<u64>,
    pub delay: Duration,
}

/// An answer as it was received, sent as it was.
#[derive(Debug)]
pub struct Recorded {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: RecordedBody,
}

#[derive(Debug)]
pub enum RecordedBody {
    /// A JSON body, sent as its text.
    Json(Box<RawValue>),
    /// A body that was not JSON, kept as a string and sent as its text.
    Text(String),
    /// The data of each server-sent event.
    Events(Vec<String>),
}

/// A rule as written. Every unknown field is an error, so that a typo cannot silently match
/// every request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    #[serde(rename = "match", default)]
    matcher: MatchText,
    reply: Option<ReplyText>,
    times: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchText {
    agent: Option<String>,
    prompt: Option<String>,
    prompt_regex: Option<String>,
    system: Option<String>,
    turn: Option<u64>,
    stream: Option<bool>,
    body: Option<Map<String, Value>>,
}

/// Every field of every kind of reply: which kind a reply is comes from which it has.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyText {
    content: Option<String>,
    finish_reason: Option<String>,
    tool_calls: Option<Box<RawValue>>,
    chunks: Option<Vec<String>>,
    credits: Option<u64>,
    delay_ms: Option<u64>,
    status: Option<u16>,
    headers: Option<Map<String, Value>>,
    body: Option<Box<RawValue>>,
    events: Option<Vec<String>>,
    error: Option<Box<RawValue>>,
    fault: Option<String>,
}

impl Answers {
    /// Reads `paths` in order; an error names the file and line, as `FILE:LINE: why`.
    pub fn load(paths: &[impl AsRef<Path>], strict: bool) -> Result<Answers, String> {
        let mut answers = Answers {
            rules: Vec::new(),
            strict,
        };
        let mut bytes = 0;
        for path in paths {
            answers.read(path.as_ref(), &mut bytes)?;
        }
        Ok(answers)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn read(&mut self, path: &Path, bytes: &mut u64) -> Result<(), String> {
        let shown = path.display();
        let file = File::open(path)
            .map_err(|err| format!("cannot read the answers file {shown}: {err}"))?;
        let mut input = BufReader::new(file);
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let at = |why: String| format!("{shown}:{number}: {why}");
            let read = (&mut input)
                .take(MAX_LINE as u64 + 2)
                .read_until(b'\n', &mut line)
                .map_err(|err| at(format!("cannot read: {err}")))?;
            if read == 0 {
                return Ok(());
            }
            *bytes += read as u64;
            if line.strip_suffix(b"\n").unwrap_or(&line).len() > MAX_LINE {
                return Err(at(format!("a line is at most {} MiB", MAX_LINE >> 20)));
            }
            if *bytes > MAX_BYTES {
                let why = format!("the answers files hold at most {} MiB", MAX_BYTES >> 20);
                return Err(at(why));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.rules.len() == MAX_RULES {
                return Err(at(format!(
                    "the answers files hold at most {MAX_RULES} rules"
                )));
            }
            let rule = Rule::parse(&line, format!("{shown}:{number}")).map_err(at)?;
            self.rules.push(rule);
        }
        Ok(())
    }

    /// The first rule, in order, that matches `query` and is not used up; it is counted used.
    pub fn choose(&self, query: &Query) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            rule.matcher.holds(query)
                && rule
                    .used
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                        (rule.times.is_none_or(|times| used < times)).then_some(used + 1)
                    })
                    .is_ok()
        })
    }
}

/// What a rule may match on: the request as the mock checked it.
pub struct Query<'a> {
    pub agent: &'a str,
    pub chat: &'a Chat<'a>,
    pub turn: u64,
    pub body: &'a [u8],
    /// The body's top-level members, read once for all the rules that look at them.
    members: OnceLock<Option<HashMap<String, &'a RawValue>>>,
}

impl<'a> Query<'a> {
    pub fn new(agent: &'a str, chat: &'a Chat<'a>, turn: u64, body: &'a [u8]) -> Self {
        Query {
            agent,
            chat,
            turn,
            body,
            members: OnceLock::new(),
        }
    }

    /// The text of the last user message, if a user spoke.
    pub fn prompt(&self) -> Option<&str> {
        self.chat.from_user.then_some(&*self.chat.echo)
    }

    fn members(&self) -> Option<&HashMap<String, &'a RawValue>> {
        self.members
            .get_or_init(|| serde_json::from_slice(self.body).ok())
            .as_ref()
    }
}

impl Match {
    fn holds(&self, query: &Query) -> bool {
        let contains = |text: Option<&str>, part: &Option<String>| {
            part.as_ref()
                .is_none_or(|part| text.is_some_and(|text| text.contains(part.as_str())))
        };
        self.agent.as_ref().is_none_or(|agent| agent == query.agent)
            && contains(query.prompt(), &self.prompt)
            && self
                .prompt_regex
                .as_ref()
                .is_none_or(|regex| query.prompt().is_some_and(|p| regex.is_match(p)))
            && self.system.as_ref().is_none_or(|part| {
                query
                    .chat
                    .system
                    .iter()
                    .any(|text| text.contains(part.as_str()))
            })
            && self.turn.is_none_or(|turn| turn == query.turn)
            && self.stream.is_none_or(|stream| stream == query.chat.stream)
            && self.body.as_ref().is_none_or(|want| {
                query
                    .members()
                    .is_some_and(|have| members_hold(want, have, false))
            })
    }
}

/// Whether the members `have` hold every member of `want` (`exact`: and no other).
fn members_hold(want: &Map<String, Value>, have: &HashMap<String, &RawValue>, exact: bool) -> bool {
    (!exact || want.len() == have.len())
        && want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|raw| holds(value, raw, exact)))
}

/// Whether the JSON text `raw` holds `want`: an object holds the members it names (`exact`:
/// only those), an array is equal element by element with objects inside it equal, a number
/// equals the same number in any notation, anything else is equal. `raw` is read only as far
/// as `want` goes, so a large request costs no tree.
fn holds(want: &Value, raw: &RawValue, exact: bool) -> bool {
    match want {
        Value::Object(want) => serde_json::from_str::<HashMap<String, &RawValue>>(raw.get())
            .is_ok_and(|have| members_hold(want, &have, exact)),
        Value::Array(want) => serde_json::from_str::<Vec<&RawValue>>(raw.get()).is_ok_and(|have| {
            have.len() == want.len() && want.iter().zip(have).all(|(w, h)| holds(w, h, true))
        }),
        scalar => {
            let text = raw.get();
            !text.starts_with(['{', '['])
                && serde_json::from_str(text).is_ok_and(|have: Value| match (scalar, &have) {
                    (Value::Number(w), Value::Number(h)) => same_number(w, h),
                    _ => *scalar == have,
                })
        }
    }
}

/// Numbers by value: `1` equals `1.0`; integers beyond the exact range of a float compare as
/// integers.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let integer = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.as_f64() == b.as_f64(),
    }
}

impl Rule {
    fn parse(line: &[u8], origin: String) -> Result<Rule, String> {
        let text: RuleText = serde_json::from_slice(line).map_err(|err| {
            let err = err.to_string();
            // The line is the file's: serde's "at line 1 column N" would mislead.
            match err.rsplit_once(" at line 1 column ") {
                Some((why, column)) => format!("{why} (column {column})"),
                None => err,
            }
        })?;
        if text.times == Some(0) {
            return Err("times must be 1 or more".into());
        }
        let reply = text.reply.ok_or("a rule needs a reply")?;
        Ok(Rule {
            origin,
            matcher: Match::from_text(text.matcher)?,
            reply: Reply::from_text(reply)?,
            times: text.times,
            used: AtomicU64::new(0),
        })
    }
}

impl Match {
    fn from_text(text: MatchText) -> Result<Match, String> {
        if text.turn == Some(0) {
            return Err("match.turn counts from 1".into());
        }
        let prompt_regex = text
            .prompt_regex
            .map(|pattern| {
                RegexBuilder::new(&pattern)
                    .size_limit(REGEX_SIZE)
                    .dfa_size_limit(REGEX_SIZE)
                    .build()
                    .map_err(|err| format!("match.prompt_regex: {err}"))
            })
            .transpose()?;
        Ok(Match {
            agent: text.agent,
            prompt: text.prompt,
            prompt_regex,
            system: text.system,
            turn: text.turn,
            stream: text.stream,
            body: text.body,
        })
    }
}

impl Reply {
    fn from_text(text: ReplyText) -> Result<Reply, String> {
        let answer = text.content.is_some()
            || text.finish_reason.is_some()
            || text.tool_calls.is_some()
            || text.chunks.is_some()
            || text.credits.is_some()
            || text.delay_ms.is_some();
        let recorded = text.body.is_some() || text.events.is_some();
        let kinds = [answer, recorded, text.error.is_some(), text.fault.is_some()];
        match kinds.iter().filter(|&&kind| kind).count() {
            0 => Err("a reply needs content, tool_calls, body, events, error or fault".into()),
            1 if answer => Ok(Reply::Answer(scripted(text)?)),
            1 if recorded => Ok(Reply::Recorded(recorded_reply(text)?)),
            1 if text.error.is_some() => error_reply(text),
            1 => fault_reply(text),
            _ => Err(
                "a reply is one of an answer, a recorded answer, an error or a fault, \
                      not two at once"
                    .into(),
            ),
        }
    }
}

fn scripted(text: ReplyText) -> Result<Scripted, String> {
    if text.status.is_some() || text.headers.is_some() {
        return Err("status and headers belong to a recorded answer or an error".into());
    }
    if let Some(calls) = &text.tool_calls {
        let calls: Vec<Map<String, Value>> = serde_json::from_str(calls.get()).unwrap_or_default();
        if calls.is_empty() {
            return Err("reply.tool_calls must be a non-empty array of objects".into());
        }
    } else if text.content.is_none() {
        return Err("an answer needs content (or tool_calls)".into());
    }
    let content = text.content.unwrap_or_default();
    if let Some(chunks) = &text.chunks {
        if chunks.concat() != content {
            return Err("reply.chunks must join to reply.content".into());
        }
    }
    let finish_reason = text.finish_reason.unwrap_or_else(|| {
        let default = if text.tool_calls.is_some() {
            "tool_calls"
        } else {
            "stop"
        };
        default.into()
    });
    Ok(Scripted {
        content,
        finish_reason,
        tool_calls: text.tool_calls,
        chunks: text.chunks,
        credits: text.credits,
        delay: Duration::from_millis(text.delay_ms.unwrap_or(0)),
    })
}

fn recorded_reply(text: ReplyText) -> Result<Recorded, String> {
    let status = text.status.ok_or("a recorded answer needs its status")?;
    if !(200..=599).contains(&status) {
        return Err(format!(
            "status {status} is not a status an answer can have"
        ));
    }
    let body = match (text.body, text.events) {
        (Some(_), Some(_)) => return Err("a recorded answer has a body or events, not both".into()),
        (Some(body), None) => match serde_json::from_str::<String>(body.get()) {
            Ok(text) => RecordedBody::Text(text),
            Err(_) => RecordedBody::Json(body),
        },
        (None, events) => RecordedBody::Events(events.unwrap_or_default()),
    };
    Ok(Recorded {
        status,
        headers: headers(text.headers)?,
        body,
    })
}

fn error_reply(text: ReplyText) -> Result<Reply, String> {
    let status = text.status.ok_or("an error needs its status")?;
    if !(400..=599).contains(&status) {
        return Err(format!("an error's status is 400 to 599, not {status}"));
    }
    let error = text.error.expect("an error reply");
    if !error.get().starts_with('{') {
        return Err("reply.error must be an object, such as {\"message\": \"...\"}".into());
    }
    Ok(Reply::Error {
        status,
        headers: headers(text.headers)?,
        error,
    })
}

fn fault_reply(text: ReplyText) -> Result<Reply, String> {
    if text.status.is_some() || text.headers.is_some() {
        return Err("a fault has no status or headers of its own".into());
    }
    let spec = text.fault.expect("a fault reply");
    let fault = spec.parse().map_err(|why| format!("reply.fault: {why}"))?;
    Ok(Reply::Fault(fault))
}

/// A reply's headers: names an HTTP header can have, values without control characters, and
/// none of the framing the mock writes itself.
fn headers(headers: Option<Map<String, Value>>) -> Result<Vec<(String, String)>, String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let mut checked = Vec::new();
    for (name, value) in headers.unwrap_or_default() {
        let Value::String(value) = value else {
            return Err(format!(
                "reply.headers: the value of {name:?} must be a string"
            ));
        };
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!("reply.headers: {name:?} is not a header name"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "reply.headers: the value of {name} has a control character"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if ["content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
            return Err(format!("reply.headers: {name} is the mock's to write"));
        }
        checked.push((lower, value));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::validate::validate;

    fn rule(line: &str) -> Result<Rule, String> {
        Rule::parse(line.as_bytes(), "t:1".into())
    }

    fn matches(line: &str, agent: &str, turn: u64, body: &str) -> bool {
        let rule = rule(line).unwrap();
        let chat = validate(body.as_bytes()).unwrap();
        rule.matcher
            .holds(&Query::new(agent, &chat, turn, body.as_bytes()))
    }

    #[test]
    fn every_match_field_must_hold() {
        let body = r#"{"messages":[{"role":"system","content":"be terse"},
            {"role":"user","content":"count the lines"}],"stream":true,"temperature":0.5}"#;
        let reply = r#","reply":{"content":"x"}}"#;
        let cases = [
            (r#"{}"#, true),
            (r#"{"agent":"default"}"#, true),
            (r#"{"agent":"other"}"#, false),
            (r#"{"prompt":"the lines"}"#, true),
            (r#"{"prompt":"be terse"}"#, false),
            (r#"{"prompt_regex":"^count\\b.*s$"}"#, true),
            (r#"{"prompt_regex":"^lines"}"#, false),
            (r#"{"system":"terse"}"#, true),
            (r#"{"system":"count"}"#, false),
            (r#"{"turn":1}"#, true),
            (r#"{"turn":2}"#, false),
            (r#"{"stream":true}"#, true),
            (r#"{"stream":false}"#, false),
            (r#"{"body":{"temperature":0.5,"stream":true}}"#, true),
            (r#"{"body":{"temperature":0.50}}"#, true),
            (r#"{"body":{"temperature":1}}"#, false),
            (r#"{"body":{"max_tokens":1}}"#, false),
            (r#"{"agent":"default","prompt":"count","turn":2}"#, false),
        ];
        for (matcher, expected) in cases {
            let line = format!(r#"{{"match":{matcher}{reply}"#);
            assert_eq!(matches(&line, "default", 1, body), expected, "{matcher}");
        }
        let line = format!(r#"{{"match":{{"prompt":"x"}}{reply}"#);
        let no_user = r#"{"messages":[{"role":"system","content":"x"}]}"#;
        assert!(!matches(&line, "default", 1, no_user), "no user spoke");
        assert!(
            !matches(
                r#"{"match":{"stream":true},"reply":{"content":"x"}}"#,
                "a",
                1,
                r#"{"messages":[{"role":"user","content":"x"}]}"#
            ),
            "stream absent is false"
        );
    }

    #[test]
    fn body_objects_hold_their_members_and_arrays_are_exact() {
        let raw = |text: &str| RawValue::from_string(text.into()).unwrap();
        let want = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let holds = |w: &str, h: &str| holds(&want(w), &raw(h), false);
        assert!(holds(r#"{"a":{"b":1}}"#, r#"{"a":{"b":1.0,"c":2},"d":3}"#));
        assert!(!holds(r#"{"a":{"b":1}}"#, r#"{"a":{"c":1}}"#));
        assert!(holds(r#"{"a":[1,{"b":2}]}"#, r#"{"a":[1.0,{"b":2}]}"#));
        assert!(
            !holds(r#"{"a":[1,{"b":2}]}"#, r#"{"a":[1,{"b":2,"c":3}]}"#),
            "equal inside"
        );
        assert!(!holds(r#"{"a":[1]}"#, r#"{"a":[1,2]}"#));
        assert!(!holds(r#"{"a":"1"}"#, r#"{"a":1}"#));
        assert!(!holds(r#"{"a":{}}"#, r#"{"a":[]}"#));
        assert!(!holds(r#"{"a":1}"#, r#"{"a":[1]}"#));
        assert!(holds(r#"{"a":null}"#, r#"{"a":null}"#));
        assert!(holds(
            r#"{"n":18446744073709551615}"#,
            r#"{"n":18446744073709551615}"#
        ));
        assert!(!holds(
            r#"{"n":9007199254740993}"#,
            r#"{"n":9007199254740992}"#
        ));
    }

    #[test]
    fn every_reply_kind_reads() {
        let scripted = |line: &str| match rule(line).unwrap().reply {
            Reply::Answer(answer) => answer,
            other => panic!("{other:?}"),
        };
        let plain = scripted(r#"{"reply":{"content":"hi there"}}"#);
        assert_eq!((plain.finish_reason.as_str(), plain.chunks), ("stop", None));
        let tool = scripted(
            r#"{"reply":{"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}],"credits":0,"delay_ms":5}}"#,
        );
        assert_eq!(
            (tool.content.as_str(), tool.finish_reason.as_str()),
            ("", "tool_calls")
        );
        assert_eq!(
            (tool.credits, tool.delay),
            (Some(0), Duration::from_millis(5))
        );
        let chunked =
            scripted(r#"{"reply":{"content":"ab","chunks":["a","b"],"finish_reason":"length"}}"#);
        assert_eq!(chunked.finish_reason, "length");
        let Reply::Recorded(recorded) =
            rule(r#"{"reply":{"status":200,"headers":{"X-Conversation-Id":"c1"},"events":["{}","[DONE]"]}}"#)
                .unwrap()
                .reply
        else {
            panic!()
        };
        assert_eq!(
            recorded.headers,
            [("x-conversation-id".into(), "c1".into())]
        );
        assert!(matches!(recorded.body, RecordedBody::Events(e) if e.len() == 2));
        let Reply::Recorded(text) = rule(r#"{"reply":{"status":502,"body":"<html>"}}"#)
            .unwrap()
            .reply
        else {
            panic!()
        };
        assert!(matches!(text.body, RecordedBody::Text(t) if t == "<html>"));
        let Reply::Error { status: 429, headers, .. } =
            rule(r#"{"reply":{"status":429,"headers":{"Retry-After":"2"},"error":{"message":"slow down"}}}"#)
                .unwrap()
                .reply
        else {
            panic!()
        };
        assert_eq!(headers, [("retry-after".into(), "2".into())]);
        assert!(matches!(
            rule(r#"{"match":{},"reply":{"fault":"cut:3"},"times":2}"#).unwrap().reply,
            Reply::Fault(f) if f.to_string() == "cut:3"
        ));
    }

    #[test]
    fn invalid_rules_say_why() {
        for (line, why) in [
            (
                r#"{"reply":{"content":"x"},"extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"match":{"promt":"x"},"reply":{"content":"x"}}"#,
                "unknown field `promt`",
            ),
            (
                r#"{"reply":{"content":"x","colour":1}}"#,
                "unknown field `colour`",
            ),
            (r#"{"match":{}}"#, "a rule needs a reply"),
            (
                r#"{"reply":{"content":"x","fault":"drop"}}"#,
                "not two at once",
            ),
            (
                r#"{"reply":{"status":200,"body":{},"error":{}}}"#,
                "not two at once",
            ),
            (
                r#"{"reply":{"content":"x"},"times":0}"#,
                "times must be 1 or more",
            ),
            (
                r#"{"reply":{"content":"x"},"times":-1}"#,
                "expected u64 (column 35)",
            ),
            (
                r#"{"reply":{"content":"ab","chunks":["a"]}}"#,
                "must join to",
            ),
            (r#"{"reply":{"chunks":[]}}"#, "needs content"),
            (r#"{"reply":{"tool_calls":{}}}"#, "array of objects"),
            (r#"{"reply":{"tool_calls":[]}}"#, "array of objects"),
            (
                r#"{"reply":{"content":"x","status":200}}"#,
                "status and headers belong",
            ),
            (r#"{"reply":{"body":{}}}"#, "needs its status"),
            (
                r#"{"reply":{"status":200,"body":{},"events":[]}}"#,
                "not both",
            ),
            (r#"{"reply":{"status":200,"error":{}}}"#, "400 to 599"),
            (
                r#"{"reply":{"status":500,"error":"x"}}"#,
                "must be an object",
            ),
            (r#"{"reply":{"fault":"teapot"}}"#, "unknown fault"),
            (
                r#"{"reply":{"status":200,"headers":{"A":"b\r\nC: d"},"body":{}}}"#,
                "control",
            ),
            (
                r#"{"reply":{"status":200,"headers":{"A B":"c"},"body":{}}}"#,
                "not a header name",
            ),
            (
                r#"{"reply":{"status":200,"headers":{"Content-Length":"9"},"body":{}}}"#,
                "mock's",
            ),
            (
                r#"{"reply":{"status":200,"headers":{"A":1},"body":{}}}"#,
                "must be a string",
            ),
            (
                r#"{"match":{"turn":0},"reply":{"content":"x"}}"#,
                "counts from 1",
            ),
            (
                r#"{"match":{"body":[]},"reply":{"content":"x"}}"#,
                "expected a map",
            ),
            (
                r#"{"match":{"prompt_regex":"("},"reply":{"content":"x"}}"#,
                "prompt_regex",
            ),
            (
                r#"{"match":{"prompt_regex":"\\w{1000}{1000}"},"reply":{"content":"x"}}"#,
                "size limit",
            ),
            ("not json", "expected ident"),
        ] {
            let err = rule(line).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn times_are_used_up_in_order_then_the_next_rule_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(
            &path,
            "{\"reply\":{\"content\":\"first\"},\"times\":2}\n\n  \n{\"reply\":{\"content\":\"then\"}}\n",
        )
        .unwrap();
        let answers = Answers::load(&[&path], false).unwrap();
        let body = br#"{"messages":[{"role":"user","content":"x"}]}"#;
        let chat = validate(body).unwrap();
        let query = Query::new("a", &chat, 1, body);
        let origins: Vec<&str> = (0..4)
            .map(|_| answers.choose(&query).unwrap().origin.as_str())
            .collect();
        let first = format!("{}:1", path.display());
        let then = format!("{}:4", path.display());
        assert_eq!(origins, [&first, &first, &then, &then]);
    }

    #[test]
    fn a_bad_line_or_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"reply\":{\"content\":\"x\"}}\n{\"reply\":{}}\n").unwrap();
        let err = Answers::load(&[&path], false).unwrap_err();
        assert!(
            err.starts_with(&format!("{}:2: a reply needs", path.display())),
            "{err}"
        );
        let missing = dir.path().join("missing.jsonl");
        let err = Answers::load(&[&missing], true).unwrap_err();
        assert!(
            err.contains("missing.jsonl") && err.contains("No such file"),
            "{err}"
        );
    }
}
