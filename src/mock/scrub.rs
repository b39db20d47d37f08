//! The client's token kept out of a recording, even when the upstream echoes it: masked in
//! every body, header and event in whatever form `redact::mask` finds it (as sent,
//! JSON-escaped, percent-encoded), and in the text the events' contents put together, where a
//! model may have written it across two or more events. There `***` goes where the token starts
//! and the rest of it is removed from the events that follow.
//!
//! Events wait here, in order, only while a token form starting in their content could still be
//! completed by a later event: `reach` bytes of content after them. Memory stays flat whatever
//! the length of the stream.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;

use serde::Deserialize;

use crate::redact::{self, MASK};

/// The credential to mask, if the client sent one.
#[derive(Debug, Clone)]
pub struct Scrub {
    token: Option<String>,
}

impl Scrub {
    pub fn new(token: Option<&str>) -> Scrub {
        Scrub {
            token: token.filter(|t| !t.is_empty()).map(str::to_string),
        }
    }

    /// `text` with every form of the token masked; borrowed when it holds none.
    pub fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.token {
            Some(token) => redact::mask(token, text),
            None => Cow::Borrowed(text),
        }
    }

    fn found(&self, text: &str) -> bool {
        matches!(self.text(text), Cow::Owned(_))
    }

    /// The longest text a form of the token can take: each byte percent-encoded, and each
    /// character of that escaped as in a JSON string (`\u0025`).
    fn reach(&self) -> usize {
        self.token.as_ref().map_or(0, |token| 18 * token.len())
    }
}

/// A stream's events on their way into a recording.
pub struct Events {
    scrub: Scrub,
    pending: VecDeque<Pending>,
    /// The bytes of content the pending events hold.
    held: usize,
}

struct Pending {
    payload: String,
    /// The text of the first choice's `delta.content`, when it is a string.
    content: Option<String>,
    rewritten: bool,
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow)]
    choices: Vec<ChoiceView<'a>>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(borrow)]
    delta: Option<DeltaView<'a>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

fn content_of(payload: &str) -> Option<String> {
    let chunk: ChunkView = serde_json::from_str(payload).ok()?;
    let content = chunk.choices.into_iter().next()?.delta?.content?;
    Some(content.into_owned())
}

impl Events {
    pub fn new(scrub: Scrub) -> Events {
        Events {
            scrub,
            pending: VecDeque::new(),
            held: 0,
        }
    }

    /// Takes the next event's data; `ready` gets, in order, the events that can no longer
    /// change.
    pub fn push(&mut self, data: &str, ready: &mut impl FnMut(String)) {
        let payload = self.scrub.text(data).into_owned();
        if self.scrub.token.is_none() {
            return ready(payload);
        }
        let content = content_of(&payload);
        let before = self.held;
        self.held += content.as_ref().map_or(0, String::len);
        let added = content.as_ref().is_some_and(|c| !c.is_empty());
        self.pending.push_back(Pending {
            payload,
            content,
            rewritten: false,
        });
        if added && before > 0 {
            self.across(before);
        }
        self.release(ready);
    }

    /// Ends the stream: every event left is ready.
    pub fn finish(mut self, ready: &mut impl FnMut(String)) {
        while let Some(event) = self.pending.pop_front() {
            ready(event.into_payload());
        }
    }

    /// Lets go of the events a token form can no longer reach across.
    fn release(&mut self, ready: &mut impl FnMut(String)) {
        let reach = self.scrub.reach();
        while let Some(front) = self.pending.front() {
            let len = front.content.as_ref().map_or(0, String::len);
            if self.pending.len() > 1 && self.held - len >= reach {
                self.held -= len;
                let event = self.pending.pop_front().expect("a front event");
                ready(event.into_payload());
            } else {
                break;
            }
        }
    }

    /// Masks the token forms that cross `boundary`, the start of the newest content in the
    /// text the pending contents put together.
    fn across(&mut self, boundary: usize) {
        let text: String = self
            .pending
            .iter()
            .filter_map(|event| event.content.as_deref())
            .collect();
        let reach = self.scrub.reach();
        let lo = floor(&text, boundary.saturating_sub(reach));
        let hi = ceil(&text, (boundary + reach).min(text.len()));
        let mut found = occurrences(&self.scrub, &text, lo, hi);
        found.retain(|range| range.start < boundary && range.end > boundary);
        for range in merged(found).into_iter().rev() {
            self.cut(range);
        }
    }

    /// Replaces `range` of the put-together text: `***` where it starts, nothing after.
    fn cut(&mut self, range: Range<usize>) {
        let mut at = 0;
        for event in self.pending.iter_mut() {
            let Some(content) = &mut event.content else {
                continue;
            };
            let (start, end) = (at, at + content.len());
            at = end;
            if end <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            let mask = if range.start >= start { MASK } else { "" };
            content.replace_range(from..to, mask);
            event.rewritten = true;
        }
        self.held = self
            .pending
            .iter()
            .map(|e| e.content.as_ref().map_or(0, String::len))
            .sum();
    }
}

impl Pending {
    /// The event as recorded: as it came (masked), or with its content rewritten.
    fn into_payload(self) -> String {
        let (true, Some(content)) = (self.rewritten, self.content) else {
            return self.payload;
        };
        let Ok(mut chunk) = serde_json::from_str::<serde_json::Value>(&self.payload) else {
            return self.payload;
        };
        if let Some(slot) = chunk.pointer_mut("/choices/0/delta/content") {
            *slot = content.into();
        }
        chunk.to_string()
    }
}

/// Every token form in `text[lo..hi]`, as ranges of `text`, latest first: the last start that
/// still finds one, the shortest end from there, and again before that end.
fn occurrences(scrub: &Scrub, text: &str, lo: usize, mut hi: usize) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    while hi > lo && scrub.found(&text[lo..hi]) {
        let start = last_true(lo, hi, |s| {
            let s = floor(text, s);
            scrub.found(&text[s..hi])
        });
        let start = floor(text, start);
        let end = first_true(start + 1, hi, |e| scrub.found(&text[start..ceil(text, e)]));
        let end = ceil(text, end);
        found.push(start..end);
        hi = floor(text, end - 1);
    }
    found
}

/// The largest `i` in `lo..hi` for which `holds` (true at `lo`, and false past some point).
fn last_true(mut lo: usize, mut hi: usize, holds: impl Fn(usize) -> bool) -> usize {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The smallest `i` in `lo..=hi` for which `holds` (true at `hi`, and from some point on).
fn first_true(mut lo: usize, mut hi: usize, holds: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    hi
}

fn merged(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

fn floor(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "sk-live-9f8e7d6c5b4a";

    fn chunk(content: &str) -> String {
        serde_json::json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": content}}]})
            .to_string()
    }

    /// The events recorded from `events`, and the text their contents put together.
    fn recorded(events: &[String]) -> (Vec<String>, String) {
        let mut scrubber = Events::new(Scrub::new(Some(TOKEN)));
        let mut out = Vec::new();
        for event in events {
            scrubber.push(event, &mut |e| out.push(e));
        }
        scrubber.finish(&mut |e| out.push(e));
        let text = out.iter().filter_map(|e| content_of(e)).collect();
        (out, text)
    }

    #[test]
    fn a_token_split_across_events_is_masked_where_it_starts() {
        let events = [
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#.to_string(),
            chunk("your key is sk-live-"),
            chunk("9f8e7d"),
            chunk("6c5b4a, keep it"),
            chunk(" safe"),
            "[DONE]".to_string(),
        ];
        let (out, text) = recorded(&events);
        assert_eq!(text, "your key is ***, keep it safe");
        assert_eq!(out.len(), events.len(), "no event is lost or added");
        assert_eq!(out[0], events[0], "untouched events are kept byte for byte");
        assert_eq!(out[4], events[4]);
        assert_eq!(out[5], "[DONE]");
        assert_eq!(content_of(&out[2]).unwrap(), "");
        assert!(!out.concat().contains("9f8e") && !out.concat().contains("sk-live"));
    }

    #[test]
    fn a_percent_encoded_token_split_in_two_is_masked() {
        let encoded = "sk%2Dlive%2D9f8e7d6c5b4a";
        let events = [
            chunk(&format!("see https://x.test/?k={}", &encoded[..7])),
            chunk(&format!("{} done", &encoded[7..])),
        ];
        let (_, text) = recorded(&events);
        assert_eq!(text, "see https://x.test/?k=*** done");
    }

    #[test]
    fn whole_tokens_are_masked_in_any_member_and_others_kept() {
        let events = [
            format!(r#"{{"id":"{TOKEN}","choices":[{{"delta":{{"content":"a {TOKEN} b"}}}}]}}"#),
            r#"{"error":{"message":"bad token sk-live-9f8e7d6c5b4a"}}"#.to_string(),
            "not json at all".to_string(),
        ];
        let (out, text) = recorded(&events);
        assert_eq!(text, "a *** b");
        assert_eq!(out[1], r#"{"error":{"message":"bad token ***"}}"#);
        assert_eq!(out[2], "not json at all");
        assert!(!out.concat().contains("9f8e"));
    }

    #[test]
    fn without_a_token_events_pass_at_once_unchanged() {
        let mut scrubber = Events::new(Scrub::new(None));
        let mut out = Vec::new();
        scrubber.push(&chunk("sk-live-"), &mut |e| out.push(e));
        assert_eq!(out, [chunk("sk-live-")]);
    }

    #[test]
    fn memory_stays_flat_on_a_long_stream() {
        let mut scrubber = Events::new(Scrub::new(Some(TOKEN)));
        let mut released = 0;
        for i in 0..10_000 {
            scrubber.push(&chunk(&format!("word{i} ")), &mut |_| released += 1);
            assert!(scrubber.held <= 18 * TOKEN.len() + 20, "{}", scrubber.held);
        }
        assert!(released > 9_900);
    }
}
