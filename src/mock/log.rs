//! `--log FILE`: one JSON line per request, written and flushed when the request completes, so
//! a test can assert on exactly what a client sent. Refused requests are logged too, with the
//! reason, and no accepted token ever reaches the file.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::map::Entry;
use serde_json::value::RawValue;
use serde_json::Map;

use super::http::{Arrival, Request};
use crate::redact;
use crate::timestamp::rfc3339;

pub struct Log {
    file: Mutex<File>,
    secrets: Secrets,
}

/// The accepted tokens, longest first so that no token is left half-redacted by a shorter one
/// inside it.
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Secrets {
        let mut tokens: Vec<String> = tokens.into_iter().collect();
        tokens.sort_by_key(|token| std::cmp::Reverse(token.len()));
        Secrets(tokens)
    }

    /// Every accepted token masked, as sent, JSON-escaped or percent-encoded (a path or a
    /// cookie carries it encoded), the whole of each occurrence: see [`redact::mask`].
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for secret in &self.0 {
            if let Cow::Owned(masked) = redact::mask(secret, &text) {
                text = Cow::Owned(masked);
            }
        }
        text
    }
}

/// A logged body: JSON as it came (on one line), or else text.
#[derive(Serialize)]
#[serde(untagged)]
enum Body {
    Json(Box<RawValue>),
    Text(String),
}

/// One exchange: a request (absent when its head could not be parsed) and what became of it.
pub struct Exchange<'a> {
    pub arrived: Arrival,
    pub request: Option<&'a Request>,
    /// `None` when no response was sent (the `drop` fault, a client gone).
    pub status: Option<u16>,
    /// Why the request was refused, its answer not delivered, or no scripted answer matched.
    pub reason: Option<String>,
    pub fault: Option<String>,
    /// The scripted answer that gave the reply, as `FILE:LINE`.
    pub rule: Option<String>,
    /// A credential to mask besides the accepted tokens: the client's own, which a recording
    /// mock passes on without knowing it.
    pub secret: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    duration_ms: u128,
    method: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
    headers: Option<Map<String, serde_json::Value>>,
    body: Option<Body>,
    status: Option<u16>,
    reason: Option<Cow<'a, str>>,
    fault: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
}

impl Log {
    pub fn create(path: &Path, tokens: impl IntoIterator<Item = String>) -> io::Result<Log> {
        Ok(Log {
            file: Mutex::new(File::create(path)?),
            secrets: Secrets::new(tokens),
        })
    }

    /// Writes the line straight to the file: a body of control bytes, escaped, is six times
    /// its size, and is never held whole.
    pub fn record(&self, exchange: &Exchange) {
        let line = self.line(exchange);
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = BufWriter::new(&mut *file);
        let _ = serde_json::to_writer(&mut out, &line)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
    }

    fn line<'a>(&self, exchange: &'a Exchange) -> Line<'a> {
        let request = exchange.request;
        let redact = |text: &'a str| self.redact(text, exchange.secret);
        Line {
            time: rfc3339(exchange.arrived.time),
            duration_ms: exchange.arrived.instant.elapsed().as_millis(),
            method: request.map(|r| redact(&r.method)),
            path: request.map(|r| redact(&r.path)),
            headers: request.map(|r| self.headers(r, exchange.secret)),
            body: request.map(|r| self.body(&r.body, exchange.secret)),
            status: exchange.status,
            reason: exchange.reason.as_deref().map(redact),
            fault: exchange.fault.as_deref(),
            rule: exchange.rule.as_deref(),
        }
    }

    /// Every accepted token replaced by `***`, and the credentials of the Authorization headers
    /// whatever they are: a client may send a real token to the mock by mistake.
    fn headers(&self, request: &Request, secret: Option<&str>) -> Map<String, serde_json::Value> {
        let mut headers = Map::new();
        for (name, value) in &request.headers {
            let value = match name.as_str() {
                "authorization" | "proxy-authorization" => match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} ***"),
                    None => "***".to_string(),
                },
                _ => self.redact(value, secret).into_owned(),
            };
            // Repeated fields combine as RFC 9110 (5.3) says a recipient may combine them.
            match headers.entry(self.redact(name, secret).into_owned()) {
                Entry::Vacant(entry) => {
                    entry.insert(value.into());
                }
                Entry::Occupied(mut entry) => {
                    if let serde_json::Value::String(first) = entry.get_mut() {
                        first.push_str(", ");
                        first.push_str(&value);
                    }
                }
            }
        }
        headers
    }

    /// The body as JSON when it is JSON (kept as text: a hostile body of a million tiny values
    /// would cost many times its size as a parsed tree), else as a string. Tokens are masked in
    /// the text, in whatever form a JSON string gives them (`\/`, `\u0074`), keys included, so
    /// the body need not be parsed for it.
    fn body(&self, body: &[u8], secret: Option<&str>) -> Body {
        let text = String::from_utf8_lossy(body);
        let text = self.redact(&text, secret);
        // Raw CR and LF can only be whitespace between JSON tokens: spaces keep the line one line.
        match RawValue::from_string(text.replace(['\r', '\n'], " ")) {
            Ok(json) => Body::Json(json),
            Err(_) => Body::Text(text.into_owned()),
        }
    }

    fn redact<'t>(&self, text: &'t str, secret: Option<&str>) -> Cow<'t, str> {
        let text = self.secrets.redact(text);
        match secret.map(|secret| redact::mask(secret, &text).into_owned()) {
            Some(masked) if masked != *text => Cow::Owned(masked),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(tokens: &[&str]) -> (Log, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().unwrap();
        let log = Log::create(file.path(), tokens.iter().map(|t| t.to_string())).unwrap();
        (log, file)
    }

    fn request(headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: "POST".into(),
            path: "/p".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            close: false,
            http10: false,
            arrived: Arrival::now(),
        }
    }

    fn entry(log: &Log, request: Option<&Request>, reason: Option<&str>) -> serde_json::Value {
        let exchange = Exchange {
            arrived: request.map_or_else(Arrival::now, |r| r.arrived),
            request,
            status: Some(200),
            reason: reason.map(str::to_string),
            fault: Some("cut:1".into()),
            rule: None,
            secret: Some("client-own"),
        };
        let line = serde_json::to_string(&log.line(&exchange)).unwrap();
        assert!(!line.contains('\n'));
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn every_token_is_redacted_wherever_it_appears() {
        let (log, _file) = log(&["s3cret", "s3cret-longer", "q\"uote"]);
        let request = request(
            &[
                ("authorization", "Bearer not-even-accepted"),
                ("proxy-authorization", "Basic abc"),
                ("x-api-key", "s3cret-longer"),
                ("cookie", "session=s3cret; other=1"),
                ("user-agent", "t"),
                ("x-client", "client-own"),
            ],
            br#"{"a": 1, "key": "s3cret", "q": "q\"uote", "own": "client-own",
                "nested": ["s3cret-longer"]}"#,
        );
        let e = entry(&log, Some(&request), None);
        assert_eq!(e["headers"]["authorization"], "Bearer ***");
        assert_eq!(e["headers"]["proxy-authorization"], "Basic ***");
        assert_eq!(e["headers"]["x-api-key"], "***");
        assert_eq!(e["headers"]["cookie"], "session=***; other=1");
        assert_eq!(e["headers"]["user-agent"], "t");
        assert_eq!(e["body"]["a"], 1);
        assert_eq!(e["body"]["key"], "***");
        assert_eq!(e["body"]["q"], "***");
        assert_eq!(e["body"]["nested"][0], "***");
        assert_eq!(e["headers"]["x-client"], "***");
        assert_eq!(e["body"]["own"], "***");
        assert_eq!(e.get("rule"), None);
        assert_eq!(e["fault"], "cut:1");
        assert_eq!(e["reason"], serde_json::Value::Null);
        let text = e.to_string();
        assert!(!text.contains("s3cret") && !text.contains("uote"), "{text}");
        assert!(!text.contains("client-own"), "{text}");
    }

    #[test]
    fn escaped_and_encoded_tokens_are_redacted_whole() {
        let (log, _file) = log(&["tok/SEC+ret=9xZ"]);
        let mut request = request(
            &[
                ("cookie", "t=tok%2FSEC%2Bret%3D9xZ"),
                ("x-api-key", "tok%2fSEC%2bret%3d9xZ"),
            ],
            br#"{"content": "my token is tok\/SEC+ret=9xZ or \u0074ok/SEC+ret=9xZ",
                "\u0074ok\/SEC+ret=9xZ": 1}"#,
        );
        request.path = "/api/v1/agents/tok%2FSEC%2Bret%3D9xZ/chat/completions".into();
        let e = entry(&log, Some(&request), None);
        assert_eq!(e["path"], "/api/v1/agents/***/chat/completions");
        assert_eq!(e["headers"]["cookie"], "t=***");
        assert_eq!(e["headers"]["x-api-key"], "***");
        assert_eq!(e["body"]["content"], "my token is *** or ***");
        assert_eq!(e["body"]["***"], 1, "a key too");
        let text = e.to_string();
        assert!(!text.contains("SEC"), "{text}");
    }

    #[test]
    fn a_body_that_is_not_json_is_text() {
        let (log, _file) = log(&["tok"]);
        let e = entry(&log, Some(&request(&[], b"key=tok\n\xff")), None);
        assert_eq!(e["body"], "key=***\n\u{fffd}");
    }

    #[test]
    fn a_refusal_without_a_head_has_its_reason_and_time() {
        let (log, _file) = log(&[]);
        let e = entry(&log, None, Some("too big"));
        assert_eq!(e["reason"], "too big");
        assert_eq!(e["method"], serde_json::Value::Null);
        assert!(e["duration_ms"].is_u64());
        let time = e["time"].as_str().unwrap();
        assert_eq!((time.len(), &time[10..11], &time[23..]), (24, "T", "Z"));
    }
}
