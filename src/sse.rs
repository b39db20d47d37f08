//! An incremental Server-Sent Events decoder, following the WHATWG EventSource parsing rules.
//!
//! Bytes arrive in reads of any size; an event, a line, a CR/LF pair or a UTF-8 character can be
//! split anywhere. The decoder keeps only the unfinished line and the data of the unfinished
//! event, both capped, so a hostile stream cannot make it allocate without bound.
//!
//! Decisions where the rules leave room or a client must differ:
//! - Only `data` matters to this API; `event`, `id` and `retry` are read and ignored.
//! - At the end of the stream, an unterminated last line is still a line, and an event that has
//!   data but no closing blank line is still dispatched. WHATWG drops it; real servers end with
//!   `data: [DONE]` and no blank line, and dropping answer text is worse than showing it.
//! - Data is handed over as bytes: UTF-8 is checked by whoever parses it, once per event, so a
//!   character split across two reads is never seen half.

use std::fmt;

/// A single event's data may not grow past this by default.
pub const DEFAULT_MAX_EVENT: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTooLarge(pub usize);

impl fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a server-sent event is larger than {} bytes", self.0)
    }
}

impl std::error::Error for EventTooLarge {}

#[derive(Debug)]
pub struct Decoder {
    max_event: usize,
    /// The line read so far when a read ended in the middle of it.
    line: Vec<u8>,
    /// The event's data lines, each followed by `\n`.
    data: Vec<u8>,
    /// A read ended on CR: an LF starting the next read belongs to the same line end.
    skip_lf: bool,
    first_line: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_EVENT)
    }
}

impl Decoder {
    pub fn new(max_event: usize) -> Self {
        Decoder {
            max_event,
            line: Vec::new(),
            data: Vec::new(),
            skip_lf: false,
            first_line: true,
        }
    }

    /// Decodes `input`, calling `on_event` with the data of each event it completes.
    pub fn feed<E: From<EventTooLarge>>(
        &mut self,
        mut input: &[u8],
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.skip_lf && !input.is_empty() {
            self.skip_lf = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        // The data of the open event while it is one line that lies whole in `input`, as most
        // events do: handed over from there, not copied into `data` first.
        let mut single = None;
        while let Some(end) = memchr::memchr2(b'\n', b'\r', input) {
            if self.line.is_empty() {
                if end > self.max_event {
                    return Err(EventTooLarge(self.max_event).into());
                }
                self.line_done(&input[..end], Some(&mut single), on_event)?;
            } else {
                self.append_partial(&input[..end])?;
                let line = std::mem::take(&mut self.line);
                let result = self.line_done(&line, None, on_event);
                self.line = line;
                self.line.clear();
                result?;
            }
            input = if input[end] == b'\n' {
                &input[end + 1..]
            } else if end + 1 == input.len() {
                self.skip_lf = true;
                &[]
            } else if input[end + 1] == b'\n' {
                &input[end + 2..]
            } else {
                &input[end + 1..]
            };
        }
        if let Some(data) = single {
            self.keep(data);
        }
        self.append_partial(input).map_err(E::from)
    }

    /// Ends the stream: a pending last line and a pending event are processed (see the module
    /// documentation for why).
    pub fn finish<E: From<EventTooLarge>>(
        &mut self,
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, None, on_event)?;
        }
        self.dispatch(None, on_event)
    }

    fn append_partial(&mut self, bytes: &[u8]) -> Result<(), EventTooLarge> {
        if self.line.len() + bytes.len() > self.max_event {
            return Err(EventTooLarge(self.max_event));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Handles one line. A line of the input comes with `feed`'s `single`, where the open
    /// event's data may stay uncopied; a line kept across reads comes without, and is copied.
    fn line_done<'a, E: From<EventTooLarge>>(
        &mut self,
        mut line: &'a [u8],
        single: Option<&mut Option<&'a [u8]>>,
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.first_line {
            self.first_line = false;
            line = line.strip_prefix("\u{FEFF}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch(single.and_then(Option::take), on_event);
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            self.data_line(value, single)?;
        }
        Ok(())
    }

    fn data_line<'a>(
        &mut self,
        value: &'a [u8],
        single: Option<&mut Option<&'a [u8]>>,
    ) -> Result<(), EventTooLarge> {
        match single {
            Some(single) if single.is_none() && self.data.is_empty() => {
                if value.len() + 1 > self.max_event {
                    return Err(EventTooLarge(self.max_event));
                }
                *single = Some(value);
            }
            single => {
                if let Some(data) = single.and_then(Option::take) {
                    self.keep(data);
                }
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(EventTooLarge(self.max_event));
                }
                self.keep(value);
            }
        }
        Ok(())
    }

    /// Copies a data line into the open event.
    fn keep(&mut self, data: &[u8]) {
        self.data.extend_from_slice(data);
        self.data.push(b'\n');
    }

    fn dispatch<E>(
        &mut self,
        single: Option<&[u8]>,
        on_event: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(data) = single {
            return on_event(data);
        }
        if self.data.is_empty() {
            return Ok(());
        }
        let result = on_event(&self.data[..self.data.len() - 1]);
        self.data.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces cut at `cuts`, returning the events as strings.
    fn decode_split(input: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut decoder = Decoder::default();
        let mut events = Vec::new();
        let mut on_event = |data: &[u8]| -> Result<(), EventTooLarge> {
            events.push(String::from_utf8(data.to_vec()).unwrap());
            Ok(())
        };
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            decoder.feed(&input[start..cut], &mut on_event).unwrap();
            start = cut;
        }
        decoder.finish(&mut on_event).unwrap();
        events
    }

    fn decode(input: &str) -> Vec<String> {
        decode_split(input.as_bytes(), &[])
    }

    #[test]
    fn data_with_and_without_space() {
        assert_eq!(
            decode("data: a\n\ndata:b\n\ndata:  c\n\n"),
            ["a", "b", " c"]
        );
    }

    #[test]
    fn all_line_endings() {
        assert_eq!(
            decode("data: a\r\n\r\ndata: b\r\rdata: c\n\n"),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn multi_line_data_joined_with_newline() {
        assert_eq!(decode("data: a\ndata: b\ndata\n\n"), ["a\nb\n"]);
    }

    #[test]
    fn comments_other_fields_and_empty_events_are_skipped() {
        assert_eq!(
            decode(": keep-alive\n\nevent: message\nid: 7\nretry: 10\n\ndata: x\n\n"),
            ["x"]
        );
    }

    #[test]
    fn empty_data_line_is_an_empty_event() {
        assert_eq!(decode("data:\n\n"), [""]);
    }

    #[test]
    fn leading_bom_is_stripped_once() {
        assert_eq!(decode("\u{FEFF}data: a\n\n"), ["a"]);
        assert_eq!(decode("data: a\n\n\u{FEFF}data: b\n\n"), ["a"]);
    }

    #[test]
    fn field_without_colon_is_a_field_with_empty_value() {
        assert_eq!(decode("data\n\n"), [""]);
        assert_eq!(decode("dat\n\n"), Vec::<String>::new());
    }

    #[test]
    fn unterminated_last_event_is_dispatched() {
        assert_eq!(decode("data: a\n\ndata: [DONE]"), ["a", "[DONE]"]);
        assert_eq!(decode("data: [DONE]\n"), ["[DONE]"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input = "\u{FEFF}data: {\"c\":\"h\u{e9}\u{1F600}\"}\r\n\r\n: c\rdata: x\rdata: y\r\rdata: [DONE]\n\n";
        let whole = decode(input);
        assert_eq!(whole, ["{\"c\":\"h\u{e9}\u{1F600}\"}", "x\ny", "[DONE]"]);
        let bytes = input.as_bytes();
        for a in 0..=bytes.len() {
            assert_eq!(decode_split(bytes, &[a]), whole, "cut at {a}");
            for b in a..=bytes.len() {
                assert_eq!(decode_split(bytes, &[a, b]), whole, "cuts at {a},{b}");
            }
        }
        let every_byte: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(decode_split(bytes, &every_byte), whole);
    }

    #[test]
    fn a_crlf_split_across_reads_is_one_line_end() {
        assert_eq!(decode_split(b"data: a\r\n\r\n", &[8]), ["a"]);
        assert_eq!(decode_split(b"data: a\r\n\r\n", &[8, 9, 10]), ["a"]);
    }

    #[test]
    fn an_overlong_line_is_refused_however_it_arrives() {
        let line = b"x-not-a-field-anyone-reads-but-long\n";
        let mut sink = |_: &[u8]| -> Result<(), EventTooLarge> { Ok(()) };
        assert_eq!(Decoder::new(8).feed(line, &mut sink), Err(EventTooLarge(8)));
        let mut split = Decoder::new(8);
        split.feed(&line[..4], &mut sink).unwrap();
        assert_eq!(split.feed(&line[4..], &mut sink), Err(EventTooLarge(8)));
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut decoder = Decoder::new(8);
        let mut sink = |_: &[u8]| -> Result<(), EventTooLarge> { Ok(()) };
        assert_eq!(
            decoder.feed(b"data: 12345678", &mut sink),
            Err(EventTooLarge(8))
        );
        let mut decoder = Decoder::new(8);
        assert_eq!(
            decoder.feed(b"data: 1234\ndata: 5678\n", &mut sink),
            Err(EventTooLarge(8))
        );
    }

    mod properties {
        use super::super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// All events of `input` fed in pieces ending at `cuts`, or the error.
        fn events(input: &[u8], cuts: &[usize], cap: usize) -> Result<Vec<Vec<u8>>, EventTooLarge> {
            let mut decoder = Decoder::new(cap);
            let mut events = Vec::new();
            let mut sink = |data: &[u8]| -> Result<(), EventTooLarge> {
                assert!(data.len() <= cap, "an event past the cap was dispatched");
                events.push(data.to_vec());
                Ok(())
            };
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort();
            let mut start = 0;
            for cut in cuts.into_iter().chain(std::iter::once(input.len())) {
                decoder.feed(&input[start..cut], &mut sink)?;
                assert!(
                    decoder.line.len() <= cap && decoder.data.len() <= cap,
                    "state past the cap"
                );
                start = cut;
            }
            decoder.finish(&mut sink)?;
            Ok(events)
        }

        /// A stream of bytes that leans towards what SSE is made of.
        fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"data:".to_vec()),
                Just(b"data: ".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b":".to_vec()),
                Just("\u{FEFF}".as_bytes().to_vec()),
                Just("é😀".as_bytes().to_vec()),
                vec(any::<u8>(), 0..8),
            ];
            vec(piece, 0..64).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn arbitrary_bytes_in_any_split_give_the_same_result(
                input in prop_oneof![sse_bytes(), vec(any::<u8>(), 0..512)],
                cuts in vec(any::<usize>(), 0..12),
                cap in prop_oneof![Just(DEFAULT_MAX_EVENT), 1usize..64],
            ) {
                let whole = events(&input, &[], cap);
                prop_assert_eq!(events(&input, &cuts, cap), whole.clone());
                let every_byte: Vec<usize> = (0..input.len()).collect();
                prop_assert_eq!(events(&input, &every_byte, cap), whole);
            }

            #[test]
            fn encoded_events_decode_to_themselves(
                texts in vec("[^\r]{0,40}", 1..8),
                eol in prop_oneof![Just("\n"), Just("\r"), Just("\r\n")],
                spaced in any::<bool>(),
                comment in any::<bool>(),
                bom in any::<bool>(),
                terminate_last in any::<bool>(),
                cuts in vec(any::<usize>(), 0..8),
            ) {
                let mut stream = if bom { "\u{FEFF}".to_string() } else { String::new() };
                for (i, text) in texts.iter().enumerate() {
                    if comment {
                        stream.push_str(&format!(": keep-alive{eol}"));
                    }
                    for line in text.split('\n') {
                        let sep = if spaced || line.starts_with(' ') { "data: " } else { "data:" };
                        stream.push_str(&format!("{sep}{line}{eol}"));
                    }
                    if terminate_last || i + 1 < texts.len() {
                        stream.push_str(eol);
                    }
                }
                let expected: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
                prop_assert_eq!(events(stream.as_bytes(), &cuts, DEFAULT_MAX_EVENT).unwrap(), expected);
            }
        }
    }
}
