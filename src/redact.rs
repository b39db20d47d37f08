//! Keeping the token out of what `bnx` shows, even when a server echoes it back: in an error
//! message, an error body, a `Location` header or an SSE error event.
//!
//! The two places that write for people and scripts hold the token once it is known and pass
//! everything through here: `Printer` (every stderr line) and `Output` (the `--json` failure
//! document, the `bnx` object, and stream lines that are not answer content). So no error path
//! can forget it. A successful answer's content is written as received.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::token::Secret;

pub const MASK: &str = "***";

/// Where the token occurs in `text`: as sent, or percent-encoded in whole or in part (as a
/// server would put it into a URL, with any case of hex digits), each as a byte range of `text`.
fn occurrences(secret: &Secret, text: &str) -> Vec<Range<usize>> {
    let token = secret.expose().as_bytes();
    let bytes = text.as_bytes();
    if !bytes.contains(&b'%') {
        return find_all(bytes, token)
            .map(|at| at..at + token.len())
            .collect();
    }
    // Decoded bytes, each with the range of `text` it came from.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut from = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        let width = if escape.is_some() { 3 } else { 1 };
        decoded.push(escape.unwrap_or(bytes[i]));
        from.push(i..i + width);
        i += width;
    }
    find_all(&decoded, token)
        .map(|at| from[at].start..from[at + token.len() - 1].end)
        .collect()
}

/// Every position of `needle` in `haystack`, overlapping ones included: masking only every
/// other occurrence of a token that repeats itself would leave part of it.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let finder = memchr::memmem::Finder::new(needle);
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + finder.find(haystack.get(from..)?)?;
        from = at + 1;
        Some(at)
    })
}

/// Whether `text` holds the token in any of its forms.
pub fn contains(secret: &Secret, text: &str) -> bool {
    !occurrences(secret, text).is_empty()
}

/// `text` with every occurrence of the token replaced by `***`.
pub fn text<'a>(secret: Option<&Secret>, text: &'a str) -> Cow<'a, str> {
    let found = secret.map(|s| occurrences(s, text)).unwrap_or_default();
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for range in found {
        // Overlapping occurrences (a token that repeats itself) are masked once.
        if range.start >= copied {
            redacted.push_str(&text[copied..range.start]);
            redacted.push_str(MASK);
            copied = range.end;
        } else if range.end > copied {
            copied = range.end;
        }
    }
    redacted.push_str(&text[copied..]);
    Cow::Owned(redacted)
}

/// Redacts every string of `value`, object keys included. Returns whether anything changed.
pub fn value(secret: Option<&Secret>, value: &mut Value) -> bool {
    let Some(secret) = secret else {
        return false;
    };
    match value {
        Value::String(s) => match text(Some(secret), s) {
            Cow::Owned(redacted) => {
                *s = redacted;
                true
            }
            Cow::Borrowed(_) => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
            self::value(Some(secret), item) | changed
        }),
        Value::Object(map) => {
            let changed_keys = map.keys().any(|k| contains(secret, k));
            if changed_keys {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (text(Some(secret), &k).into_owned(), v))
                    .collect::<Map<_, _>>();
            }
            map.values_mut().fold(changed_keys, |changed, v| {
                self::value(Some(secret), v) | changed
            })
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(s: &str) -> Secret {
        Secret::parse(s, "test").unwrap()
    }

    #[test]
    fn every_occurrence_in_every_form_is_masked() {
        let s = secret("tok/SECRET+1");
        assert_eq!(
            text(Some(&s), "Bearer tok/SECRET+1 and tok/SECRET+1"),
            "Bearer *** and ***"
        );
        assert_eq!(
            text(Some(&s), "https://x/?t=tok%2FSECRET%2B1"),
            "https://x/?t=***"
        );
        assert_eq!(
            text(Some(&s), "/tok%2fSECRET+1/%74ok/SECRET%2b1%"),
            "/***/***%",
            "in part, any case"
        );
        let repeating = secret("abab");
        assert_eq!(text(Some(&repeating), "xababab"), "x***");
        assert!(matches!(
            text(Some(&s), "nothing"),
            Cow::Borrowed("nothing")
        ));
        assert_eq!(text(None, "tok/SECRET+1"), "tok/SECRET+1");
    }

    #[test]
    fn json_strings_and_keys_are_masked_in_place() {
        let s = secret("tok-S3CRET");
        let mut v = json!({"message": "bad tok-S3CRET", "tok-S3CRET": [1, "x tok-S3CRET"], "n": 2});
        assert!(value(Some(&s), &mut v));
        assert_eq!(
            v,
            json!({"message": "bad ***", "***": [1, "x ***"], "n": 2})
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"message":"bad ***","***":[1,"x ***"],"n":2}"#,
            "key order is kept"
        );
        let mut clean = json!({"a": "b"});
        assert!(!value(Some(&s), &mut clean));
    }
}
