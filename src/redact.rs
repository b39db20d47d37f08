//! Keeping the token out of what `bnx` shows, even when a server echoes it back: in an error
//! message, an error body, a `Location` header or an SSE error event.
//!
//! The two places that write for people and scripts hold the token once it is known and pass
//! everything through here: `Printer` (every stderr line) and `Output` (the `--json` failure
//! document, the `bnx` object, and `--json --stream` lines). So no error path can forget it. A
//! successful answer's content is written as received. `bnx-mock`'s `--log` masks its accepted
//! tokens here too.
//!
//! A server quoting the token rarely quotes it as sent: it escapes it into a JSON string
//! (`tok\/x`, `\u0074ok`) or percent-encodes it into a URL, in whole or in part. So the token is
//! looked for in every such form, and the whole form is masked wherever it is found. Tokens are
//! visible ASCII (both binaries refuse any other), which is what the JSON forms are read for.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::token::Secret;

pub const MASK: &str = "***";

/// Where `token` occurs in `text`, as a byte range of `text` each, sorted by start: as sent;
/// percent-encoded in whole or in part, with any case of hex digits; escaped as in a JSON string
/// (`\/`, `\"`, `\\`, `\u0074` with any case); or escaped that way after being percent-encoded.
fn occurrences(token: &[u8], text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    if token.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<Range<usize>> = find_all(bytes, token)
        .map(|at| at..at + token.len())
        .collect();
    // Text with no escape of either kind, the common case, costs one search.
    let percent = memchr::memchr(b'%', bytes).is_some();
    let escaped = memchr::memchr(b'\\', bytes).is_some();
    if percent {
        search(token, percent_decoded(plain(bytes)), &mut found);
    }
    if escaped {
        search(token, json_unescaped(bytes), &mut found);
        // `%` itself may be escaped (`\u0025`), so this form is read whenever escapes are.
        search(token, percent_decoded(json_unescaped(bytes)), &mut found);
    }
    if percent || escaped {
        found.sort_by_key(|range| (range.start, range.end));
        found.dedup();
    }
    found
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

/// One byte of text as a form of it reads, and the bytes of the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    byte: u8,
    from: usize,
    to: usize,
}

/// The text as it is, a byte a unit.
fn plain(text: &[u8]) -> impl Iterator<Item = Unit> + '_ {
    text.iter().enumerate().map(|(at, &byte)| Unit {
        byte,
        from: at,
        to: at + 1,
    })
}

/// The text with the escapes of a JSON string read. A `\u` escape of a character beyond ASCII
/// reads as 0xFF, a byte no token holds. Anything else, a backslash that starts no escape
/// included, reads as it is.
fn json_unescaped(text: &[u8]) -> impl Iterator<Item = Unit> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let first = *text.get(at)?;
        let (byte, width) = match (first, text.get(at + 1)) {
            (b'\\', Some(b'u')) => match text.get(at + 2..at + 6).and_then(hex) {
                Some(code) => (
                    u8::try_from(code).ok().filter(u8::is_ascii).unwrap_or(0xFF),
                    6,
                ),
                None => (first, 1),
            },
            (b'\\', Some(&escaped @ (b'"' | b'\\' | b'/'))) => (escaped, 2),
            _ => (first, 1),
        };
        let unit = Unit {
            byte,
            from: at,
            to: at + width,
        };
        at += width;
        Some(unit)
    })
}

/// `units` with `%XX` escapes read, each as the byte it stands for.
fn percent_decoded(mut units: impl Iterator<Item = Unit>) -> impl Iterator<Item = Unit> {
    let mut ahead = VecDeque::with_capacity(3);
    std::iter::from_fn(move || {
        ahead.extend(units.by_ref().take(3 - ahead.len()));
        let first = ahead.pop_front()?;
        let escape = match (first.byte, ahead.front(), ahead.get(1)) {
            (b'%', Some(high), Some(low)) => hex(&[high.byte, low.byte]),
            _ => None,
        };
        let Some(byte) = escape else {
            return Some(first);
        };
        ahead.pop_front();
        let low = ahead.pop_front()?;
        Some(Unit {
            byte: byte as u8,
            from: first.from,
            to: low.to,
        })
    })
}

/// The number hex digits spell, in any case; `None` unless every byte is one.
fn hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0, |n, &digit| {
        Some(n * 16 + char::from(digit).to_digit(16)?)
    })
}

/// Adds to `found` every occurrence of `token` in `units`, overlapping ones included, as the
/// range of the text its units were read from. One pass (Knuth-Morris-Pratt), holding nothing
/// but two tables the token's length: a form is read as it is searched, never held whole.
fn search(token: &[u8], units: impl Iterator<Item = Unit>, found: &mut Vec<Range<usize>>) {
    let n = token.len();
    // fallback[i]: the length of the longest proper prefix of token[..=i] that ends it too.
    let mut fallback = vec![0; n];
    let mut k = 0;
    for i in 1..n {
        while k > 0 && token[i] != token[k] {
            k = fallback[k - 1];
        }
        if token[i] == token[k] {
            k += 1;
        }
        fallback[i] = k;
    }
    // Where each of the last n units began, by their count modulo n.
    let mut starts = vec![0; n];
    let mut matched = 0;
    for (i, unit) in units.enumerate() {
        starts[i % n] = unit.from;
        while matched > 0 && token[matched] != unit.byte {
            matched = fallback[matched - 1];
        }
        if token[matched] == unit.byte {
            matched += 1;
        }
        if matched == n {
            found.push(starts[(i + 1) % n]..unit.to);
            matched = fallback[n - 1];
        }
    }
}

/// `text` with every occurrence of `token`, in any of the forms above, replaced by `***`.
pub fn mask<'a>(token: &str, text: &'a str) -> Cow<'a, str> {
    masked(text, occurrences(token.as_bytes(), text))
}

/// `text` with the ranges `found` (sorted by start) replaced by `***`.
fn masked(text: &str, found: impl IntoIterator<Item = Range<usize>>) -> Cow<'_, str> {
    let mut found = found.into_iter().peekable();
    if found.peek().is_none() {
        return Cow::Borrowed(text);
    }
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    for range in found {
        // Overlapping occurrences (a token that repeats itself) are masked once.
        if range.start >= copied {
            masked.push_str(&text[copied..range.start]);
            masked.push_str(MASK);
            copied = range.end;
        } else if range.end > copied {
            copied = range.end;
        }
    }
    masked.push_str(&text[copied..]);
    Cow::Owned(masked)
}

/// The most bytes one byte of a token takes in the forms above: `\u0025\u0033\u0041`, its
/// percent-escape with each character of that JSON-escaped.
const WIDEST: usize = 18;

/// The start of `body` as text, at most `max` bytes of it, with the token masked, and whether
/// that is all of it. A cut never falls inside an occurrence of the token: that occurrence is
/// left out whole, so no part of it is shown. Only as much of `body` is read as an occurrence
/// starting before the cut can reach, so a large body costs no more than a small one.
pub fn head(secret: Option<&Secret>, body: &[u8], max: usize) -> (String, bool) {
    let token = secret.map_or("", Secret::expose);
    let read = &body[..body.len().min(max + WIDEST * token.len())];
    let text = String::from_utf8_lossy(read);
    let found = occurrences(token.as_bytes(), &text);
    let mut cut = (0..=max.min(text.len()))
        .rev()
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0);
    while let Some(split) = found.iter().find(|r| r.start < cut && cut < r.end) {
        cut = split.start;
    }
    let whole = cut == text.len() && read.len() == body.len();
    let shown = masked(&text[..cut], found.into_iter().filter(|r| r.end <= cut));
    (shown.into_owned(), whole)
}

/// Whether `text` holds the token in any of its forms.
pub fn contains(secret: &Secret, text: &str) -> bool {
    !occurrences(secret.expose().as_bytes(), text).is_empty()
}

/// `text` with every occurrence of the token replaced by `***`.
pub fn text<'a>(secret: Option<&Secret>, text: &'a str) -> Cow<'a, str> {
    match secret {
        Some(secret) => mask(secret.expose(), text),
        None => Cow::Borrowed(text),
    }
}

/// JSON text from a server, with the token masked and still JSON: as received when it holds
/// no form of the token; else parsed, its strings and keys masked, and written compact (and
/// then masked as text as well, for a token spread over its structure). Text that is not JSON
/// is masked as text.
pub fn json<'a>(secret: Option<&Secret>, text: &'a str) -> Cow<'a, str> {
    let Some(secret) = secret.filter(|secret| contains(secret, text)) else {
        return Cow::Borrowed(text);
    };
    match serde_json::from_str::<Value>(text) {
        Ok(mut parsed) => {
            value(Some(secret), &mut parsed);
            Cow::Owned(self::text(Some(secret), &parsed.to_string()).into_owned())
        }
        Err(_) => self::text(Some(secret), text),
    }
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

    #[test]
    fn json_escaped_forms_are_masked_whole() {
        let s = secret("tok/SEC+ret=9xZ");
        assert_eq!(
            text(
                Some(&s),
                r#"{"m":"bad tok\/SEC+ret=9xZ","d":"\u0074\u006F\u006bx"}"#
            ),
            r#"{"m":"bad ***","d":"\u0074\u006F\u006bx"}"#,
            "a prefix that is not the token stays"
        );
        assert_eq!(
            text(Some(&s), r#""\u0074ok\/SEC\u002bret\u003D9xZ""#),
            r#""***""#
        );
        assert_eq!(
            text(
                Some(&s),
                r#"{"url":"https:\/\/x\/?t=tok%2FSEC%2Bret%3D9xZ"}"#
            ),
            r#"{"url":"https:\/\/x\/?t=***"}"#,
            "percent-encoded inside a JSON string"
        );
        assert_eq!(
            text(Some(&s), r#""tok\u002FSEC\u0025\u0032Bret=9xZ""#),
            r#""***""#,
            "the percent sign of an escape escaped in turn"
        );
        let quoting = secret(r#"a"b\c/"#);
        assert_eq!(
            text(Some(&quoting), r#"["a\"b\\c\/", "a\u0022b\\c/"]"#),
            r#"["***", "***"]"#
        );
        assert_eq!(text(Some(&quoting), r#"a"b\c/"#), "***", "as sent");
        let percent = secret("p%41q");
        assert_eq!(
            text(Some(&percent), "p%41q p%2541q p\\u002541q"),
            "*** *** ***",
            "a token holding a percent sign, as sent and encoded"
        );
        assert_eq!(
            text(Some(&s), r"\\u0074ok/SEC+ret=9xZ tok\/SEC+ret=9x\u00e9"),
            r"\\u0074ok/SEC+ret=9xZ tok\/SEC+ret=9x\u00e9",
            "an escaped backslash escapes nothing; a character beyond ASCII is no part of it"
        );
    }

    #[test]
    fn a_head_never_ends_in_a_part_of_the_token() {
        let s = secret("bnx-mock-token");
        let body = format!("{}=bnx-mock-token tail", "x".repeat(100));
        for max in 0..body.len() + 2 {
            let (shown, whole) = head(Some(&s), body.as_bytes(), max);
            assert!(!shown.contains('b'), "{max}: {shown}");
            assert!(shown.len() <= max, "{max}: {shown}");
            assert_eq!(whole, max >= body.len(), "{max}");
        }
        let (shown, whole) = head(Some(&s), body.as_bytes(), 115);
        assert_eq!(
            (shown.as_str(), whole),
            (&*format!("{}=***", "x".repeat(100)), false)
        );
        let (shown, _) = head(None, body.as_bytes(), 105);
        assert_eq!(
            shown,
            format!("{}=bnx-", "x".repeat(100)),
            "no token, no mask"
        );
        let (shown, whole) = head(Some(&s), b"a\xff\xfeb", 10);
        assert_eq!((shown.as_str(), whole), ("a\u{fffd}\u{fffd}b", true));
    }

    #[test]
    fn json_text_stays_json() {
        let s = secret("tok-S3CRET");
        let clean = r#"{"b": 1.50, "a": "x"}"#;
        assert!(matches!(json(Some(&s), clean), Cow::Borrowed(_)));
        assert_eq!(
            json(Some(&s), r#"{"id": "tok-\u0053\u0033CRET", "n": 1}"#),
            r#"{"id":"***","n":1}"#
        );
        assert_eq!(
            json(Some(&s), r#"{"tok-S3CRET": 1}"#),
            r#"{"***":1}"#,
            "keys too"
        );
        assert_eq!(json(Some(&s), "not json tok-S3CRET"), "not json ***");
        assert_eq!(json(None, r#""tok-S3CRET""#), r#""tok-S3CRET""#);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One byte of a token as encoders might write it: percent-encoded or not, then escaped
        /// into a JSON string or not, by `choice`, with hex digits in either case.
        fn encode(byte: u8, percent: bool, json: bool, choice: u8) -> String {
            let hex = |digits: String| match choice % 2 {
                0 => digits.to_ascii_uppercase(),
                _ => digits,
            };
            // A percent-encoder encodes every `%`, or the token would not decode back.
            let encoded = match percent && (byte == b'%' || choice.is_multiple_of(3)) {
                true => format!("%{}", hex(format!("{byte:02x}"))),
                false => char::from(byte).to_string(),
            };
            if !json {
                return encoded;
            }
            // A JSON encoder escapes every `"` and `\`, and may escape anything else.
            encoded
                .bytes()
                .map(|b| match (b, choice % 4) {
                    (b'"' | b'\\' | b'/', 0 | 1) => format!("\\{}", char::from(b)),
                    (b'"' | b'\\', _) | (_, 2) => format!("\\u{}", hex(format!("{b:04x}"))),
                    _ => char::from(b).to_string(),
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn every_encoding_of_the_token_is_masked_and_nothing_else(
                token in "[!-)+-~]{1,24}",
                choices in prop::collection::vec(any::<u8>(), 24),
                percent in any::<bool>(),
                json in any::<bool>(),
                before in "[ a-zA-Z0-9:,{}\"]{0,20}",
                after in "[ a-zA-Z0-9:,{}\"]{0,20}",
            ) {
                let encoded: String = token
                    .bytes()
                    .zip(&choices)
                    .map(|(byte, &choice)| encode(byte, percent, json, choice))
                    .collect();
                let text = format!("{before}{encoded}{after}");
                let masked = mask(&token, &text);
                prop_assert!(!masked.contains(&token), "{} -> {}", text, masked);
                prop_assert!(occurrences(token.as_bytes(), &masked).is_empty(), "{} -> {}", text, masked);
                prop_assert!(masked.contains(MASK), "{} -> {}", text, masked);
                // However it is cut, what is shown is the start of the text masked whole.
                let whole_masked = mask(&token, &text);
                for max in [0, 1, before.len(), before.len() + 1, text.len() / 2, text.len() - 1, text.len()] {
                    let (shown, whole) = head(Some(&secret(&token)), text.as_bytes(), max);
                    prop_assert!(whole_masked.starts_with(&shown), "{}: {} -> {}", max, text, shown);
                    prop_assert_eq!(whole, shown == *whole_masked, "{}: {} -> {}", max, text, shown);
                }
                // What holds no form of the token is left as it is.
                let around = before + &after;
                prop_assert!(matches!(mask(&token, &around), Cow::Borrowed(_)) || around.contains(&token));
            }
        }
    }
}
