//! The mock's deterministic answers: `[turn N] ` and the echoed message, padded with filler
//! to `--answer-size`, cut at `max_tokens`, and split into stream pieces.
//!
//! The filler is computed from its offset, never stored, so an answer of hundreds of MiB can be
//! streamed in flat memory.

use std::borrow::Cow;

const FILLER: &str =
    " lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.";

/// The mock counts a token per 4 bytes, rounded up.
pub fn tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    head: String,
    len: usize,
}

impl Content {
    /// The answer echoing `echo` at turn `turn`, at least `min_len` bytes long.
    pub fn answer(echo: &str, turn: u64, min_len: usize) -> Self {
        let head = format!("[turn {turn}] {echo}");
        let len = head.len().max(min_len);
        Content { head, len }
    }

    /// `text` as it is: a scripted answer.
    pub fn text_of(text: &str) -> Self {
        Content {
            head: text.to_string(),
            len: text.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Cuts the answer to at most `max_tokens` tokens; says whether it cut anything.
    pub fn limit_tokens(&mut self, max_tokens: u64) -> bool {
        let max_len = usize::try_from(max_tokens.saturating_mul(4)).unwrap_or(usize::MAX);
        if self.len <= max_len {
            return false;
        }
        self.len = self.floor_boundary(max_len);
        true
    }

    fn is_boundary(&self, at: usize) -> bool {
        at >= self.head.len() || self.head.is_char_boundary(at)
    }

    fn floor_boundary(&self, mut at: usize) -> usize {
        while !self.is_boundary(at) {
            at -= 1;
        }
        at
    }

    fn ceil_boundary(&self, mut at: usize) -> usize {
        while !self.is_boundary(at) {
            at += 1;
        }
        at
    }

    /// Bytes `start..end`, both on character boundaries.
    pub fn slice(&self, start: usize, end: usize) -> Cow<'_, str> {
        let head_len = self.head.len();
        if end <= head_len {
            return Cow::Borrowed(&self.head[start..end]);
        }
        let mut text = String::with_capacity(end - start);
        if start < head_len {
            text.push_str(&self.head[start..]);
        }
        let mut at = start.max(head_len) - head_len;
        let stop = end - head_len;
        while at < stop {
            let offset = at % FILLER.len();
            let take = (FILLER.len() - offset).min(stop - at);
            text.push_str(&FILLER[offset..offset + take]);
            at += take;
        }
        Cow::Owned(text)
    }

    pub fn text(&self) -> Cow<'_, str> {
        self.slice(0, self.len)
    }

    /// Stream pieces as byte ranges: `chunks` near-equal pieces, or by default a word (and the
    /// space after it) a piece, as a model would send them.
    pub fn pieces(&self, chunks: Option<usize>) -> Pieces<'_> {
        Pieces {
            content: self,
            chunks,
            start: 0,
            index: 0,
        }
    }

    fn next_word_end(&self, from: usize) -> usize {
        let mut at = from;
        while at < self.len {
            let window = self.slice(at, self.ceil_boundary((at + 64).min(self.len)));
            if let Some(space) = window.find(' ') {
                return self.ceil_boundary(at + space + 1);
            }
            at += window.len().max(1);
        }
        self.len
    }
}

pub struct Pieces<'a> {
    content: &'a Content,
    chunks: Option<usize>,
    start: usize,
    index: usize,
}

impl Iterator for Pieces<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let len = self.content.len;
        while self.start < len {
            let end = match self.chunks {
                Some(n) => {
                    self.index += 1;
                    let share = (len as u128 * self.index as u128 / n.max(1) as u128) as usize;
                    self.content.ceil_boundary(share.min(len))
                }
                None => self.content.next_word_end(self.start),
            };
            if end > self.start {
                let piece = (self.start, end);
                self.start = end;
                return Some(piece);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(text: &str, min_len: usize) -> Content {
        Content::answer(text, 1, min_len)
    }

    fn joined(c: &Content, chunks: Option<usize>) -> (String, usize) {
        let mut out = String::new();
        let mut count = 0;
        for (a, b) in c.pieces(chunks) {
            out.push_str(&c.slice(a, b));
            count += 1;
        }
        (out, count)
    }

    #[test]
    fn echoes_with_the_turn() {
        assert_eq!(Content::answer("héllo", 3, 0).text(), "[turn 3] héllo");
    }

    #[test]
    fn padding_reaches_the_exact_size_and_is_deterministic() {
        let c = content("hi", 1000);
        assert_eq!(c.len(), 1000);
        let text = c.text();
        assert_eq!(text.len(), 1000);
        assert!(text.starts_with("[turn 1] hi lorem ipsum"));
        assert_eq!(c.slice(500, 700), &text[500..700]);
    }

    #[test]
    fn pieces_cover_the_answer_exactly() {
        for c in [
            content("a bé c  d", 0),
            content("x", 5000),
            content("wörd", 301),
        ] {
            let (words, n) = joined(&c, None);
            assert_eq!(words, c.text());
            assert!(n > 1);
            for chunks in [1, 2, 7, 100, 10_000] {
                let (text, count) = joined(&c, Some(chunks));
                assert_eq!(text, c.text(), "{chunks}");
                assert!(count <= chunks);
            }
        }
        assert_eq!(joined(&content("x", 1000), Some(10)).1, 10);
        let words: Vec<_> = content("a b", 0).pieces(None).collect();
        assert_eq!(words, [(0, 6), (6, 9), (9, 11), (11, 12)]);
    }

    #[test]
    fn a_scripted_text_is_sent_as_written_in_words() {
        let c = Content::text_of("Here is `x`.\n```sh\nls\n```");
        assert_eq!(c.text(), "Here is `x`.\n```sh\nls\n```");
        let (words, n) = joined(&c, None);
        assert_eq!((words.as_str(), n), (c.text().as_ref(), 3));
    }

    #[test]
    fn max_tokens_cuts_on_a_character_boundary() {
        let mut c = content("ééééé", 0);
        assert!(c.limit_tokens(3));
        assert_eq!(c.text(), "[turn 1] é");
        let mut c = content("ok", 0);
        assert!(!c.limit_tokens(100));
        assert_eq!(tokens(0), 0);
        assert_eq!(tokens(5), 2);
    }
}
