//! The request body checked as the API document (and then some) requires, and what of it the
//! answer needs. Parsed into typed values field by field and message by message, never into a
//! JSON tree: a hostile body of a million tiny values then costs no more memory than its own
//! bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::wire::{self, Text};

/// A valid chat request, as far as the answer needs it.
#[derive(Debug)]
pub struct Chat<'a> {
    /// The text of the last user message, or of the last message when no user spoke.
    pub echo: Cow<'a, str>,
    /// Whether `echo` is a user's message.
    pub from_user: bool,
    /// The texts of the system and developer messages, in order.
    pub system: Vec<Cow<'a, str>>,
    /// The text of all messages, in bytes.
    pub prompt_bytes: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub conversation_id: Option<String>,
}

/// Why a request body is refused, and the parameter at fault.
#[derive(Debug)]
pub struct Invalid {
    pub message: String,
    pub param: Option<String>,
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
pub fn validate(body: &[u8]) -> Result<Chat<'_>, Invalid> {
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
    let texts = messages(fields.messages)?;
    Ok(Chat {
        echo: texts.echo,
        from_user: texts.from_user,
        system: texts.system,
        prompt_bytes: texts.prompt_bytes,
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

/// What the messages say, as far as an answer needs it.
struct Texts<'a> {
    echo: Cow<'a, str>,
    from_user: bool,
    system: Vec<Cow<'a, str>>,
    prompt_bytes: usize,
}

/// Checks the messages one at a time; returns the text the answer echoes, the system texts and
/// the size of all.
fn messages(raw: Option<&RawValue>) -> Result<Texts<'_>, Invalid> {
    let raw = raw.ok_or_else(|| invalid("messages is required", "messages"))?;
    let mut echo: Option<(bool, Cow<str>)> = None;
    let mut system = Vec::new();
    let mut prompt_bytes = 0;
    let count = each_element(raw, |i, message| {
        let (role, text) = check_message(i, message)?;
        prompt_bytes += text.len();
        let from_user = role == "user";
        if role == "system" || role == "developer" {
            system.push(text.clone());
        }
        // A later user message replaces the echo; any message does until a user has spoken.
        if from_user || !echo.as_ref().is_some_and(|(user, _)| *user) {
            echo = Some((from_user, text));
        }
        Ok(())
    })
    .map_err(|failed| failed.unwrap_or_else(|| invalid("messages must be an array", "messages")))?;
    match echo {
        Some((from_user, echo)) if count > 0 => Ok(Texts {
            echo,
            from_user,
            system,
            prompt_bytes,
        }),
        _ => Err(invalid("messages must not be empty", "messages")),
    }
}

/// One message: its role, and its text.
fn check_message(i: usize, raw: &RawValue) -> Result<(&'static str, Cow<'_, str>), Invalid> {
    // Not an object: no role, which is what the error will say.
    let fields: MessageFields = object(raw).unwrap_or_default();
    let role: Option<String> = fields.role.and_then(|r| serde_json::from_str(r.get()).ok());
    let Some(role) = role.and_then(|r| wire::ROLES.into_iter().find(|known| *known == r)) else {
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
    Ok((role, text))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The param each invalid body is refused for.
    fn assert_params(cases: Vec<(String, Option<&str>)>) {
        for (body, param) in cases {
            let invalid = validate(body.as_bytes()).unwrap_err();
            assert_eq!(invalid.param.as_deref(), param, "{body}");
        }
    }

    #[test]
    fn validation_names_the_param_of_the_messages() {
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
        ];
        assert_params(cases);
    }

    #[test]
    fn validation_names_the_param_of_the_other_fields() {
        let user = r#"{"role":"user","content":"x"}"#;
        let cases: Vec<(String, Option<&str>)> = vec![
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
        assert_params(cases);
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
        let body = format!(r#"{{"messages":[{s},{u1},{},{u2}]}}"#, m("developer", "d"));
        let chat = validate(body.as_bytes()).unwrap();
        assert_eq!(
            (chat.from_user, chat.system),
            (true, vec!["s".into(), "d".into()])
        );
        let body = format!(r#"{{"messages":[{s},{a}]}}"#);
        assert!(!validate(body.as_bytes()).unwrap().from_user);
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
