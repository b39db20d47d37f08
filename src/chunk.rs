//! The common shape of a stream chunk, read without serde.
//!
//! On a stream of 200,000 events, serde_json took 58% of `bnx -s`'s instructions, most of them
//! finding the ends of strings a few bytes at a time. `Reader` takes a plain subset of JSON:
//! strings without escapes, unknown members whose values are not objects or arrays, one choice
//! at most. It allocates nothing per chunk, but for keeping a new shape (below). Anything
//! outside that subset gives `None`, and the caller parses the chunk in full, which then
//! decides. What `Reader` accepts, the full parse accepts with the same piece: property tests
//! below hold it to that.
//!
//! A stream's chunks mostly differ only in their content: same id, model, creation time, same
//! members in the same order. So `Reader` keeps the bytes around the last chunk's content, and
//! a chunk that has them, with plain content between, is that chunk's structure exactly. It
//! is checked by comparing bytes and scanning the content once, not by scanning every token.

use std::ops::Range;

use crate::wire::{ChatChunk, Text};

/// A chunk by the full parse, for what `Reader` leaves to it: `None` for an event with an
/// `error` member, which is the server's error report whatever else it holds.
pub fn parse(json: &str) -> serde_json::Result<Option<Piece<'_>>> {
    let chunk: ChatChunk = serde_json::from_str(json)?;
    Ok(chunk.error.is_none().then(|| Piece::from(chunk)))
}

/// What the client takes from a chunk: its first choice's content and finish reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Piece<'a> {
    pub content: Option<Text<'a>>,
    pub finish_reason: Option<Text<'a>>,
}

impl<'a> From<ChatChunk<'a>> for Piece<'a> {
    fn from(chunk: ChatChunk<'a>) -> Self {
        let first = chunk.choices.into_iter().next();
        first.map_or_else(Piece::default, |choice| Piece {
            content: choice.delta.content,
            finish_reason: choice.finish_reason,
        })
    }
}

/// Where a piece's strings lie in its chunk, without their quotes.
#[derive(Debug, Default)]
struct Spans {
    content: Option<Range<usize>>,
    finish_reason: Option<Range<usize>>,
}

/// Reads the chunks of one stream.
#[derive(Debug, Default)]
pub struct Reader {
    /// The last chunk read whose content was a string, up to that string's opening quote and
    /// from its closing quote, and where its finish reason lay. Empty before there is one.
    before: Vec<u8>,
    after: Vec<u8>,
    finish_reason: Option<Place>,
}

/// Where a span lies: in `before`, or in `after` counted from its start.
#[derive(Debug, Clone)]
enum Place {
    Before(Range<usize>),
    After(Range<usize>),
}

impl Reader {
    /// The piece of the chunk `json`, if the chunk is in the plain subset; `None` says to parse
    /// it in full.
    pub fn read<'a>(&mut self, json: &'a str) -> Option<Piece<'a>> {
        let spans = match self.like_last(json) {
            Some(spans) => spans,
            None => {
                let spans = scan(json)?;
                self.remember(json, &spans);
                spans
            }
        };
        let text = |span: Option<Range<usize>>| span.and_then(|s| json.get(s)).map(Text::from);
        Some(Piece {
            content: text(spans.content),
            finish_reason: text(spans.finish_reason),
        })
    }

    /// The spans of `json` if it is the remembered chunk with another content string, one that
    /// needs no escapes and has no control characters. Tokens outside such a string do not
    /// depend on what it holds, so `json` reads as that chunk did, with this content.
    fn like_last(&self, json: &str) -> Option<Spans> {
        if self.before.is_empty() {
            return None;
        }
        let bytes = json.as_bytes();
        let content = bytes.strip_prefix(&self.before[..])?;
        let content = content.strip_suffix(&self.after[..])?;
        let control = content.iter().copied().min().is_some_and(|b| b < 0x20);
        if control || memchr::memchr2(b'"', b'\\', content).is_some() {
            return None;
        }
        let start = self.before.len();
        let end = start + content.len();
        let finish_reason = self.finish_reason.clone().map(|place| match place {
            Place::Before(span) => span,
            Place::After(span) => span.start + end..span.end + end,
        });
        Some(Spans {
            content: Some(start..end),
            finish_reason,
        })
    }

    fn remember(&mut self, json: &str, spans: &Spans) {
        let Some(content) = &spans.content else {
            return;
        };
        let bytes = json.as_bytes();
        self.before.clear();
        self.before.extend_from_slice(&bytes[..content.start]);
        self.after.clear();
        self.after.extend_from_slice(&bytes[content.end..]);
        self.finish_reason = spans.finish_reason.clone().map(|span| {
            if span.start >= content.end {
                Place::After(span.start - content.end..span.end - content.end)
            } else {
                Place::Before(span)
            }
        });
    }
}

/// The spans of the chunk `json`, token by token, if it is in the plain subset.
fn scan(json: &str) -> Option<Spans> {
    // JSON allows a byte below 0x20 only as whitespace between tokens, never in a string. One
    // vectorised pass over a chunk that has none spares a check of each string; a chunk that
    // has any (a tab, data of several lines) is left to the full parse.
    if json.bytes().min()? < 0x20 {
        return None;
    }
    let mut scan = Scan { text: json, at: 0 };
    let mut spans = None;
    let mut seen = Seen::default();
    scan.object(|scan, key| match key {
        "choices" => {
            seen.once(0)?;
            spans = Some(scan.choices()?);
            Some(())
        }
        "id" => seen.once(1).and_then(|()| scan.string()).map(drop),
        "object" => seen.once(2).and_then(|()| scan.string()).map(drop),
        "model" => seen.once(3).and_then(|()| scan.string()).map(drop),
        "created" => seen.once(4).and_then(|()| scan.integer(u64::MAX)),
        // An error report, or not, is for the full parse to tell.
        "error" => None,
        _ => scan.scalar(),
    })?;
    scan.whitespace();
    if scan.at != json.len() {
        return None;
    }
    spans
}

/// The known members met so far: the full parse refuses a known member given twice.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    fn once(&mut self, bit: u8) -> Option<()> {
        let mask = 1 << bit;
        if self.0 & mask != 0 {
            return None;
        }
        self.0 |= mask;
        Some(())
    }
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    /// An object, handing each member's key to `member`, which reads the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.whitespace();
        self.eat(b'{')?;
        self.whitespace();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.whitespace();
            self.eat(b':')?;
            self.whitespace();
            member(self, key)?;
            self.whitespace();
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
            self.whitespace();
        }
    }

    /// `choices`, with no choice or one.
    fn choices(&mut self) -> Option<Spans> {
        self.eat(b'[')?;
        self.whitespace();
        if self.eat(b']').is_some() {
            return Some(Spans::default());
        }
        let mut spans = Spans::default();
        let mut seen = Seen::default();
        self.object(|scan, key| match key {
            "index" => {
                seen.once(0)?;
                scan.integer(u32::MAX.into())
            }
            "delta" => {
                seen.once(1)?;
                spans.content = scan.delta()?;
                Some(())
            }
            "finish_reason" => {
                seen.once(2)?;
                spans.finish_reason = scan.nullable_string()?;
                Some(())
            }
            _ => scan.scalar(),
        })?;
        self.whitespace();
        self.eat(b']')?;
        Some(spans)
    }

    /// A delta: its content.
    fn delta(&mut self) -> Option<Option<Range<usize>>> {
        let mut content = None;
        let mut seen = Seen::default();
        self.object(|scan, key| match key {
            "role" => {
                seen.once(0)?;
                scan.nullable_string().map(drop)
            }
            "content" => {
                seen.once(1)?;
                content = scan.nullable_string()?;
                Some(())
            }
            _ => scan.scalar(),
        })?;
        Some(content)
    }

    /// A string without escapes (`scan` has ruled out control characters): where it lies,
    /// without its quotes.
    fn span(&mut self) -> Option<Range<usize>> {
        self.eat(b'"')?;
        let start = self.at;
        let len = memchr::memchr2(b'"', b'\\', &self.text.as_bytes()[start..])?;
        self.at = start + len;
        self.eat(b'"')?;
        Some(start..start + len)
    }

    fn string(&mut self) -> Option<&'a str> {
        let span = self.span()?;
        // Both ends are ASCII quotes, so this is a char boundary: `get` only avoids a panic path.
        self.text.get(span)
    }

    fn nullable_string(&mut self) -> Option<Option<Range<usize>>> {
        if self.peek()? == b'n' {
            return self.literal("null").map(|()| None);
        }
        self.span().map(Some)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A non-negative integer up to `max`, as the full parse takes it into an unsigned field: a
    /// fraction or an exponent makes it a float, which that field refuses.
    fn integer(&mut self, max: u64) -> Option<()> {
        let (start, first) = (self.at, self.peek()?);
        let mut value = 0u64;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let count = self.at - start;
        let leading_zero = count > 1 && first == b'0';
        let float = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (count > 0 && !leading_zero && !float && value <= max).then_some(())
    }

    /// The value of a member nobody reads: a string, number or literal. An object or array is
    /// left to the full parse.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'n' => self.literal("null"),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A number by JSON's grammar, which the full parse checks even of a value it skips.
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        let first = self.peek();
        let count = self.digits();
        if count == 0 || (count > 1 && first == Some(b'0')) {
            return None;
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(json: &str) -> Option<Piece<'_>> {
        parse(json).ok().flatten()
    }

    /// A first chunk: read token by token.
    fn scanned(json: &str) -> Option<Piece<'_>> {
        Reader::default().read(json)
    }

    #[test]
    fn the_api_shapes_are_read_without_the_full_parse() {
        for json in [
            r#"{"id":"c-1","object":"chat.completion.chunk","created":1713000000,"model":"m","choices":[{"index":0,"delta":{"content":"Hé 😀"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":null,"system_fingerprint":"fp"}"#,
            r#" { "choices" : [ { "delta" : { "content" : null } } ] , "x" : -1.5e+3 } "#,
            r#"{"choices":[]}"#,
        ] {
            let fast = scanned(json);
            assert!(fast.is_some(), "{json}");
            assert_eq!(fast, full(json), "{json}");
        }
    }

    #[test]
    fn anything_outside_the_plain_subset_is_left_to_the_full_parse() {
        for json in [
            r#"{"choices":[{"delta":{"content":"a\nb"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a"}},{"delta":{}}]}"#,
            r#"{"choices":[],"usage":{"total_tokens":1}}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":[],"created":1.0}"#,
            r#"{"choices":[],"created":01}"#,
            r#"{"choices":[],"x":01}"#,
            r#"{"choices":[{"index":4294967296}]}"#,
            r#"{"choices":[{"delta":{"content":"a"}}]}x"#,
            r#"{"error":{"message":"boom"}}"#,
            r#"{"choices":[],"error":"boom"}"#,
            r#"{"choices":[{"delta":{"content":"a"}}],"error":null}"#,
            r#"{"id":"x"}"#,
            "{\"choices\":[{\"delta\":{\"content\":\"a\u{1}\"}}]}",
            r#"{"choices":[{"delta":{"content":"a"#,
        ] {
            assert_eq!(scanned(json), None, "{json}");
        }
    }

    #[test]
    fn a_chunk_like_the_last_is_read_by_its_shape() {
        let chunk = |content: &str, reason: &str, after: bool| match after {
            true => format!(
                r#"{{"id":"c","choices":[{{"delta":{{"content":"{content}"}},"finish_reason":{reason}}}]}}"#
            ),
            false => format!(
                r#"{{"id":"c","choices":[{{"finish_reason":{reason},"delta":{{"content":"{content}"}}}}]}}"#
            ),
        };
        for after in [true, false] {
            let mut reader = Reader::default();
            let first = chunk("a", r#""stop""#, after);
            assert_eq!(reader.read(&first), full(&first));
            for content in ["", "bcd é", "x".repeat(300).as_str()] {
                let next = chunk(content, r#""stop""#, after);
                assert!(reader.like_last(&next).is_some(), "{next}");
                let piece = reader.read(&next).unwrap();
                assert_eq!(piece.content.unwrap().as_str(), content);
                assert_eq!(piece.finish_reason.unwrap().as_str(), "stop");
            }
            // Content that a plain string cannot hold, and content that ends the string early,
            // are read token by token.
            for content in [
                r"a
b",
                "a\u{1}b",
                r#"a","x":"b"#,
            ] {
                let next = chunk(content, r#""stop""#, after);
                assert!(reader.like_last(&next).is_none(), "{next}");
                assert_eq!(reader.read(&next), scanned(&next), "{next}");
            }
            let other = chunk("a", "null", after);
            assert!(reader.like_last(&other).is_none());
            assert_eq!(reader.read(&other), full(&other));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A string the fast path reads: no escapes, no control characters.
        fn plain() -> BoxedStrategy<String> {
            "[a-zé😀 .:,{}\\[\\]]{0,12}"
                .prop_map(|s| format!("\"{s}\""))
                .boxed()
        }

        /// JSON text for any value, leaning towards what a chunk holds, with the edge cases of
        /// numbers, strings and nesting that the full parse refuses or the fast path leaves to it.
        fn value() -> BoxedStrategy<String> {
            prop_oneof![
                4 => plain(),
                2 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
                2 => Just("null".to_string()),
                1 => prop::sample::select(vec!["true", "false", "nul", "{}", "[1]", "\"a\\u0041\"", "\"a\\x\"", "\"tab\there\""]).prop_map(str::to_string),
                1 => any::<u64>().prop_map(|n| n.to_string()),
                1 => any::<i64>().prop_map(|n| n.to_string()),
                1 => any::<f64>().prop_map(|n| serde_json::to_string(&n).unwrap()),
                1 => "-?[0-9]{0,3}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            ]
            .boxed()
        }

        fn space() -> impl Strategy<Value = &'static str> {
            prop_oneof![200 => Just(""), 10 => Just(" "), 10 => Just("\n\t "), 1 => Just("\u{c}")]
        }

        /// An object: its `main` member and some of `others` (each a key, its value, and how
        /// likely it is to be there; `main`'s key among them makes it repeated), in any order.
        fn object(
            main: (&'static str, BoxedStrategy<String>),
            others: Vec<(f64, &'static str, BoxedStrategy<String>)>,
        ) -> BoxedStrategy<String> {
            let member = |key: &'static str, value: BoxedStrategy<String>| {
                (value, space(), space())
                    .prop_map(move |(value, a, b)| format!("{a}\"{key}\"{b}:{a}{value}{b}"))
            };
            let others: Vec<_> = others
                .into_iter()
                .map(|(likely, key, value)| prop::option::weighted(likely, member(key, value)))
                .collect();
            (member(main.0, main.1), others)
                .prop_flat_map(|(main, others)| {
                    let mut members: Vec<String> = others.into_iter().flatten().collect();
                    members.push(main);
                    Just(members).prop_shuffle()
                })
                .prop_map(|members| format!("{{{}}}", members.join(",")))
                .boxed()
        }

        /// The value of a known member: mostly of its type, sometimes anything.
        fn typed(strategy: BoxedStrategy<String>) -> BoxedStrategy<String> {
            prop_oneof![16 => strategy, 1 => value()].boxed()
        }

        fn integer() -> BoxedStrategy<String> {
            typed(
                prop_oneof![
                    any::<u32>().prop_map(|n| n.to_string()),
                    any::<u64>().prop_map(|n| n.to_string())
                ]
                .boxed(),
            )
        }

        fn nullable() -> BoxedStrategy<String> {
            typed(prop_oneof![3 => plain(), 1 => Just("null".to_string())].boxed())
        }

        fn chunk() -> BoxedStrategy<String> {
            let delta = object(
                ("content", nullable()),
                vec![
                    (0.05, "content", nullable()),
                    (0.4, "role", nullable()),
                    (0.05, "cont\\u0065nt", plain()),
                    (0.2, "other", value()),
                ],
            );
            let choice = object(
                ("delta", typed(delta)),
                vec![
                    (0.5, "finish_reason", nullable()),
                    (0.5, "index", integer()),
                    (0.2, "logprobs", value()),
                    (0.05, "delta", value()),
                ],
            );
            let choices = prop_oneof![
                1 => Just(vec![]),
                8 => prop::collection::vec(choice.clone(), 1..=1),
                1 => prop::collection::vec(choice, 2..3),
            ]
            .prop_map(|choices| format!("[{}]", choices.join(",")));
            object(
                ("choices", typed(choices.boxed())),
                vec![
                    (0.05, "choices", value()),
                    (0.5, "id", typed(plain())),
                    (0.5, "object", typed(plain())),
                    (0.5, "created", integer()),
                    (0.5, "model", typed(plain())),
                    (0.2, "usage", value()),
                    (0.05, "id", plain()),
                    (0.05, "error", value()),
                ],
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5000))]

            #[test]
            fn what_the_fast_path_reads_the_full_parse_reads_the_same(
                json in chunk(),
                cut in any::<prop::sample::Index>(),
                junk in prop_oneof![Just(""), Just("x"), Just("}"), Just(" ")],
            ) {
                if let Some(fast) = scanned(&json) {
                    prop_assert_eq!(Some(fast), full(&json), "{}", json);
                }
                // The same chunk cut short, or with something after it.
                let at = cut.index(json.len() + 1);
                let at = (0..=at).rev().find(|&i| json.is_char_boundary(i)).unwrap();
                let changed = format!("{}{junk}", &json[..at]);
                if let Some(fast) = scanned(&changed) {
                    prop_assert_eq!(Some(fast), full(&changed), "{}", changed);
                }
            }

            #[test]
            fn after_any_chunk_the_next_reads_as_the_full_parse_does(
                first in chunk(),
                other in chunk(),
                content in prop_oneof![
                    "[^\"\\\\\u{0}-\u{1f}]{0,40}",
                    any::<String>(),
                    any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
                ],
            ) {
                let mut reader = Reader::default();
                let _ = reader.read(&first);
                // The last chunk with its content replaced by anything, even what is not a JSON
                // string's inside; or another chunk altogether.
                let next = if reader.before.is_empty() {
                    other
                } else {
                    let (before, after) = (&reader.before, &reader.after);
                    let next = [before, content.as_bytes(), after].concat();
                    String::from_utf8(next).unwrap()
                };
                let plain = !content.contains(['"', '\\']) && !content.contains(|c| c < ' ');
                if !reader.before.is_empty() && plain {
                    prop_assert!(reader.like_last(&next).is_some(), "{}", next);
                }
                if let Some(fast) = reader.read(&next) {
                    prop_assert_eq!(Some(fast), full(&next), "{}", next);
                }
            }

            #[test]
            fn plain_chunks_take_the_fast_path(
                content in "[^\"\\\\\u{0}-\u{1f}]{0,40}",
                reason in prop::option::of("[a-z_]{1,12}"),
                created in any::<u64>(),
                index in any::<u32>(),
            ) {
                let reason = reason.map_or("null".to_string(), |r| format!("\"{r}\""));
                let json = format!(
                    r#"{{"id":"c","object":"chat.completion.chunk","created":{created},"model":"m","choices":[{{"index":{index},"delta":{{"content":"{content}"}},"finish_reason":{reason}}}]}}"#
                );
                let fast = scanned(&json);
                prop_assert!(fast.is_some(), "{}", json);
                prop_assert_eq!(fast, full(&json));
            }
        }
    }
}
