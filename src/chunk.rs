//! The common shape of a stream chunk, read without serde.
//!
//! On a stream of 200,000 events, serde_json took 58% of `bnx -s`'s instructions, most of them
//! finding the ends of strings a few bytes at a time. `read` takes a plain subset of JSON:
//! strings without escapes, unknown members whose values are not objects or arrays, one choice
//! at most. It finds string ends with `memchr` and allocates nothing. Anything outside that
//! subset gives `None`, and the caller parses the chunk in full, which then decides. What `read`
//! accepts, the full parse accepts with the same piece: a property test below holds it to that.

use crate::wire::{ChatChunk, Text};

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

/// The piece of the chunk `json`, if the chunk is in the plain subset; `None` says to parse it
/// in full.
pub fn read(json: &str) -> Option<Piece<'_>> {
    // JSON allows a byte below 0x20 only as whitespace between tokens, never in a string. One
    // vectorised pass over a chunk that has none spares a check of each string; a chunk that
    // has any (a tab, data of several lines) is left to the full parse.
    if json.bytes().min()? < 0x20 {
        return None;
    }
    let mut scan = Scan { text: json, at: 0 };
    let mut piece = None;
    let mut seen = Seen::default();
    scan.object(|scan, key| match key {
        "choices" => {
            seen.once(0)?;
            piece = Some(scan.choices()?);
            Some(())
        }
        "id" => seen.once(1).and_then(|()| scan.string()).map(drop),
        "object" => seen.once(2).and_then(|()| scan.string()).map(drop),
        "model" => seen.once(3).and_then(|()| scan.string()).map(drop),
        "created" => seen.once(4).and_then(|()| scan.integer(u64::MAX)),
        _ => scan.scalar(),
    })?;
    scan.whitespace();
    if scan.at != json.len() {
        return None;
    }
    piece
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
    fn choices(&mut self) -> Option<Piece<'a>> {
        self.eat(b'[')?;
        self.whitespace();
        if self.eat(b']').is_some() {
            return Some(Piece::default());
        }
        let mut piece = Piece::default();
        let mut seen = Seen::default();
        self.object(|scan, key| match key {
            "index" => {
                seen.once(0)?;
                scan.integer(u32::MAX.into())
            }
            "delta" => {
                seen.once(1)?;
                piece.content = scan.delta()?;
                Some(())
            }
            "finish_reason" => {
                seen.once(2)?;
                piece.finish_reason = scan.nullable_string()?;
                Some(())
            }
            _ => scan.scalar(),
        })?;
        self.whitespace();
        self.eat(b']')?;
        Some(piece)
    }

    /// A delta: its content.
    fn delta(&mut self) -> Option<Option<Text<'a>>> {
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

    /// A string without escapes (`read` has ruled out control characters).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are ASCII quotes, so this is a char boundary: `get` only avoids a panic path.
        self.text.get(start..start + len)
    }

    fn nullable_string(&mut self) -> Option<Option<Text<'a>>> {
        if self.peek()? == b'n' {
            return self.literal("null").map(|()| None);
        }
        self.string().map(|s| Some(Text::from(s)))
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
        serde_json::from_str::<ChatChunk>(json)
            .ok()
            .map(Piece::from)
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
            let fast = read(json);
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
            r#"{"id":"x"}"#,
            "{\"choices\":[{\"delta\":{\"content\":\"a\u{1}\"}}]}",
            r#"{"choices":[{"delta":{"content":"a"#,
        ] {
            assert_eq!(read(json), None, "{json}");
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
                if let Some(fast) = read(&json) {
                    prop_assert_eq!(Some(fast), full(&json), "{}", json);
                }
                // The same chunk cut short, or with something after it.
                let at = cut.index(json.len() + 1);
                let at = (0..=at).rev().find(|&i| json.is_char_boundary(i)).unwrap();
                let changed = format!("{}{junk}", &json[..at]);
                if let Some(fast) = read(&changed) {
                    prop_assert_eq!(Some(fast), full(&changed), "{}", changed);
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
                let fast = read(&json);
                prop_assert!(fast.is_some(), "{}", json);
                prop_assert_eq!(fast, full(&json));
            }
        }
    }
}
