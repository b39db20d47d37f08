//! Keeping the token out of what `bnx` shows, even when a server echoes it back: in an error
//! message, an error body, a `Location` header or an SSE error event.
//!
//! The two places that write for people and scripts hold the token once it is known and pass
//! everything through here: `Printer` (every stderr line) and `Output` (the `--json` failure
//! document, the `bnx` object, and stream lines that are not answer content). So no error path
//! can forget it. A successful answer's content is written as received.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use crate::token::Secret;

pub const MASK: &str = "***";

/// The forms in which the token may come back: as sent, and percent-encoded as a server would
/// put it into a URL.
fn forms(secret: &Secret) -> impl Iterator<Item = Cow<'_, str>> {
    let raw = secret.expose();
    let encoded: Cow<str> = utf8_percent_encode(raw, NON_ALPHANUMERIC).into();
    let encoded = Some(encoded).filter(|e| e != raw);
    std::iter::once(Cow::Borrowed(raw)).chain(encoded)
}

/// Whether `text` holds the token in any of its forms.
pub fn contains(secret: &Secret, text: &str) -> bool {
    forms(secret).any(|form| text.contains(form.as_ref()))
}

/// `text` with every occurrence of the token replaced by `***`.
pub fn text<'a>(secret: Option<&Secret>, text: &'a str) -> Cow<'a, str> {
    let Some(secret) = secret.filter(|s| contains(s, text)) else {
        return Cow::Borrowed(text);
    };
    let mut redacted = text.to_string();
    for form in forms(secret) {
        redacted = redacted.replace(form.as_ref(), MASK);
    }
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
