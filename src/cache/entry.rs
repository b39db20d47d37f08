//! One stored answer, as a file of the cache holds it and the fleet's store keeps it: the same
//! bytes in both places.
//!
//! ```text
//! bnx-cache 1\n
//! {"key":..,"stored_at_ms":..,"status":200,"credits_consumed":"3",..,"lengths":[..],"sha256":..}\n
//! PAYLOAD
//! ```
//!
//! The payload is the body as received, or a stream's data payloads as received one after the
//! other, `lengths` saying where each ends. The SHA-256 of the rest of the header and the
//! payload is in the header, so a file that was cut, torn or altered is told from one that holds
//! an answer: whatever the bytes, [`Entry::decode`]
//! gives a whole entry or none, and never panics. The key is in the header too, so an entry
//! under another key's name (a file copied by hand, a store that mixes keys up) is no answer to
//! this request.

use serde::{Deserialize, Serialize};

use crate::digest;
use crate::response::Received;

const MAGIC: &[u8] = b"bnx-cache 1\n";

/// The largest answer stored: its body, or its payloads together.
pub const MAX_ANSWER: usize = 16 << 20;

/// The largest header: a stream's `lengths` of a large answer take room.
const MAX_HEADER: usize = 4 << 20;

/// The largest entry read: the largest answer and header; a larger file is not an entry.
pub const MAX_ENTRY: usize = MAGIC.len() + MAX_HEADER + 1 + MAX_ANSWER;

/// What the answer was: a body, or a stream's payloads, `[DONE]` the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Body(Vec<u8>),
    Events(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
    pub status: u16,
    pub credits_consumed: Option<String>,
    pub credits_remaining: Option<String>,
    pub conversation_id: Option<String>,
    pub answer: Answer,
}

#[derive(Clone, Serialize, Deserialize)]
struct Header {
    key: String,
    stored_at_ms: u64,
    status: u16,
    credits_consumed: Option<String>,
    credits_remaining: Option<String>,
    conversation_id: Option<String>,
    /// Whether the payload is a stream's events.
    stream: bool,
    /// The length of each part of the payload: the one body, or each event.
    lengths: Vec<usize>,
    /// Of the header with this field empty, then the payload.
    sha256: String,
}

impl Header {
    fn checksum(&self, payload: &[&[u8]]) -> String {
        let unsummed = Header {
            sha256: String::new(),
            ..self.clone()
        };
        let header = serde_json::to_vec(&unsummed).expect("a header serializes");
        digest::hex(&[&[header.as_slice()], payload].concat())
    }
}

impl Entry {
    /// The answer as the response decoder replays it.
    pub fn received(&self) -> Received<'_> {
        match &self.answer {
            Answer::Body(body) => Received::Body(body),
            Answer::Events(events) => Received::Events(events),
        }
    }

    /// The entry as stored under `key`; `None` when its header would be too large to read back.
    pub fn encode(&self, key: &str) -> Option<Vec<u8>> {
        let (stream, parts): (bool, Vec<&[u8]>) = match &self.answer {
            Answer::Body(body) => (false, vec![body]),
            Answer::Events(events) => (true, events.iter().map(|e| e.as_bytes()).collect()),
        };
        let mut header = Header {
            key: key.to_string(),
            stored_at_ms: self.stored_at_ms,
            status: self.status,
            credits_consumed: self.credits_consumed.clone(),
            credits_remaining: self.credits_remaining.clone(),
            conversation_id: self.conversation_id.clone(),
            stream,
            lengths: parts.iter().map(|p| p.len()).collect(),
            sha256: String::new(),
        };
        header.sha256 = header.checksum(&parts);
        let header = serde_json::to_vec(&header).expect("a header serializes");
        if header.len() > MAX_HEADER {
            return None;
        }
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let mut bytes = Vec::with_capacity(MAGIC.len() + header.len() + 1 + size);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&header);
        bytes.push(b'\n');
        parts.iter().for_each(|part| bytes.extend_from_slice(part));
        Some(bytes)
    }

    /// The entry that `bytes` hold for `key`, if they hold one whole.
    pub fn decode(bytes: &[u8], key: &str) -> Option<Entry> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let end = memchr::memchr(b'\n', &rest[..rest.len().min(MAX_HEADER + 1)])?;
        let header: Header = serde_json::from_slice(&rest[..end]).ok()?;
        let payload = &rest[end + 1..];
        let total = header
            .lengths
            .iter()
            .try_fold(0usize, |sum, &n| sum.checked_add(n))?;
        if header.key != key || total != payload.len() || total > MAX_ANSWER {
            return None;
        }
        let mut parts = Vec::with_capacity(header.lengths.len());
        let mut at = 0;
        for &n in &header.lengths {
            parts.push(&payload[at..at + n]);
            at += n;
        }
        if header.checksum(&parts) != header.sha256 {
            return None;
        }
        let answer = match header.stream {
            false if parts.len() == 1 => Answer::Body(payload.to_vec()),
            false => return None,
            true => Answer::Events(
                parts
                    .iter()
                    .map(|part| std::str::from_utf8(part).ok().map(str::to_string))
                    .collect::<Option<_>>()?,
            ),
        };
        Some(Entry {
            stored_at_ms: header.stored_at_ms,
            status: header.status,
            credits_consumed: header.credits_consumed,
            credits_remaining: header.credits_remaining,
            conversation_id: header.conversation_id,
            answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(answer: Answer) -> Entry {
        Entry {
            stored_at_ms: 1_700_000_000_123,
            status: 200,
            credits_consumed: Some("3".into()),
            credits_remaining: Some("997".into()),
            conversation_id: Some("conv-1".into()),
            answer,
        }
    }

    #[test]
    fn an_entry_reads_back_as_it_was_stored_under_its_key_only() {
        let moved = Answer::Events(vec!["ab".into(), "c".into()]);
        let bytes = entry(moved).encode("k").unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let shifted = text.replace("[2,1]", "[1,2]");
        assert_eq!(
            Entry::decode(shifted.as_bytes(), "k"),
            None,
            "where the events end is summed too"
        );
        let events = Answer::Events(vec!["{\"a\":\n1}".into(), "é".into(), "[DONE]".into()]);
        for answer in [Answer::Body(b"{\"choices\":[]}\n".to_vec()), events] {
            let stored = entry(answer);
            let bytes = stored.encode("k1").unwrap();
            assert_eq!(Entry::decode(&bytes, "k1"), Some(stored));
            assert_eq!(Entry::decode(&bytes, "k2"), None, "another key's entry");
        }
    }

    #[test]
    fn a_cut_or_altered_entry_is_none() {
        let bytes = entry(Answer::Body(b"{\"choices\":[1]}".to_vec()))
            .encode("k")
            .unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(Entry::decode(&bytes[..cut], "k"), None, "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for bit in [0x01, 0x20] {
                let mut altered = bytes.clone();
                altered[at] ^= bit;
                assert_eq!(Entry::decode(&altered, "k"), None, "flip {bit} at {at}");
            }
        }
        let mut longer = bytes.clone();
        longer.push(b'x');
        assert_eq!(Entry::decode(&longer, "k"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Entry::decode(&bytes, "k");
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = Entry::decode(&with_magic, "k");
        }
    }
}
