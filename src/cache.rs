//! The answer cache (`--cache DURATION`, SPEC 8): an answer paid for once is reused for the
//! same request made again within DURATION, without sending it, taking a pacing slot or
//! consuming a credit.
//!
//! The same request is the same key: the digest of the API origin, the agent, the token's
//! digest and the body as sent ([`key`]). A conversation moves on, so a request that continues
//! one is never looked up nor stored. Only complete answers are stored (status 200, a whole
//! body or a stream that reached `[DONE]`, not cut at the token limit, meeting the run's
//! contract, at most 16 MiB, never one that echoes the token), in `answers/` on this machine
//! ([`files`]), in the format of [`entry`], and, with `--store`, in the fleet's Redis
//! ([`fleet`]). Processes asking the same thing at once wait for the first one ([`flight`]).
//!
//! The client runs this step around every exchange (`Client::ask`); a stored answer is
//! replayed through the response decoder, so it writes what the live answer wrote.

pub mod entry;
pub mod files;
pub mod fleet;
pub mod flight;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::contract::Contract;
use crate::digest;
use crate::mode::Mode;
use crate::output::Output;
use crate::printer::Printer;
use crate::redact;
use crate::request::Request;
use crate::response::{self, Received, Reply};
use crate::store::Redis;
use crate::token::Secret;
use crate::wire;
pub use entry::MAX_ANSWER;
use entry::{Answer, Entry};
use files::Answers;
use fleet::Fleet;
use flight::Flight;

/// A stored time this far ahead of the clock (another machine's clock, in a fleet) still
/// counts as now; further, the entry is not trusted to be fresh.
const CLOCK_SLACK_MS: u64 = 60_000;

/// The key of a request: the hex SHA-256 of the normalised origin, the agent, the token's hex
/// SHA-256 and the body as sent, joined by NUL bytes. Neither the token nor a part of it can be
/// read back from it.
pub fn key(origin: &str, agent: &str, token: &Secret, body: &[u8]) -> String {
    let token = digest::hex(&[token.expose().as_bytes()]);
    digest::hex(&[
        origin.as_bytes(),
        b"\0",
        agent.as_bytes(),
        b"\0",
        token.as_bytes(),
        b"\0",
        body,
    ])
}

/// The cache of a run.
pub struct Cache {
    answers: Answers,
    fleet: Option<Fleet>,
    ttl: Duration,
    refresh: bool,
    origin: String,
    token: Secret,
}

/// A stored answer fresh enough to use, and where it was found.
pub struct Hit {
    pub entry: Entry,
    from: Option<String>,
}

impl Cache {
    /// The cache of a run, unless `--cache` is off. A cache directory that cannot be used is
    /// one warning, and the run goes on as without `--cache`.
    pub fn for_run(
        config: &Config,
        token: &Secret,
        store: Option<&Arc<Redis>>,
        printer: &Printer,
    ) -> Option<Cache> {
        let caching = config.cache?;
        let answers = config
            .cache_dir
            .as_deref()
            .ok_or_else(|| "neither XDG_CACHE_HOME nor HOME is set".to_string())
            .and_then(Answers::open);
        let answers = match answers {
            Ok(answers) => answers,
            Err(why) => {
                printer.notice(&format!(
                    "warning: the answer cache is not used ({why}); the request is sent"
                ));
                return None;
            }
        };
        Some(Cache {
            answers,
            fleet: store.map(Fleet::new),
            ttl: caching.ttl,
            refresh: caching.refresh,
            origin: config.origin.clone(),
            token: token.clone(),
        })
    }

    /// The key of `request` to `agent`; `None` for a request that continues a conversation.
    pub fn key(&self, agent: &str, request: &Request) -> Option<String> {
        let conversation = request.continues || request.body.conversation_id.is_some();
        (!conversation).then(|| key(&self.origin, agent, &self.token, &request.body_bytes()))
    }

    /// A fresh stored answer to `key` that decodes and meets `contract`, from this machine or
    /// else the fleet's store (copied here then); `None` with `--refresh`.
    pub fn lookup(&self, key: &str, contract: Option<&Contract>, printer: &Printer) -> Option<Hit> {
        if self.refresh {
            return None;
        }
        let local = self.answers.read(key).and_then(|b| Entry::decode(&b, key));
        if let Some(entry) = local.filter(|e| self.usable(e, contract)) {
            return Some(Hit { entry, from: None });
        }
        let fleet = self.fleet.as_ref()?;
        let bytes = fleet.get(key, printer)?;
        let entry = Entry::decode(&bytes, key).filter(|e| self.usable(e, contract))?;
        if let Err(why) = self.answers.write(key, &bytes) {
            printer.verbose(&format!("the store's answer is not kept here: {why}"));
        }
        Some(Hit {
            entry,
            from: Some(fleet.url().to_string()),
        })
    }

    /// Waits, up to `patience`, for another process sending `key` (or a worker of this batch):
    /// see [`flight`].
    pub fn flight(&self, key: &str, patience: Duration, printer: &Printer) -> Flight {
        flight::take(self.answers.lock_file(key), patience, printer)
    }

    /// Stores the answer `received` (`None`: too large to have been kept whole) with what
    /// `reply` said of it as `key`'s entry, if it is one to store; a failure to store is a
    /// warning, never the run's.
    pub fn store(&self, key: &str, received: Option<Received>, reply: &Reply, printer: &Printer) {
        let entry = match self.storable(received, reply) {
            Ok(entry) => entry,
            Err(why) => return printer.verbose(&format!("the answer is not cached: {why}")),
        };
        let Some(bytes) = entry.encode(key) else {
            return printer.verbose("the answer is not cached: it has too many events");
        };
        if let Err(why) = self.answers.write(key, &bytes) {
            printer.notice(&format!(
                "warning: the answer is not cached ({}: {why})",
                self.answers.dir().display()
            ));
        }
        if let Some(fleet) = &self.fleet {
            fleet.set(key, &bytes, printer);
        }
    }

    /// The entry of a complete answer, or why it is not one to keep.
    fn storable(&self, received: Option<Received>, reply: &Reply) -> Result<Entry, &'static str> {
        let received = received.ok_or("it is larger than 16 MiB")?;
        if reply.status != Some(200) {
            return Err("its status is not 200");
        }
        if reply.finish_reason.as_deref() == Some("length") {
            return Err("it was cut at the token limit");
        }
        let (answer, size) = match received {
            Received::Body(body) => (Answer::Body(body.to_vec()), body.len()),
            Received::Events(events) => {
                if !reply.stream.as_ref().is_some_and(|s| s.done) {
                    return Err("the stream did not end with [DONE]");
                }
                let mut events = events.to_vec();
                events.push(String::from_utf8_lossy(wire::DONE).into_owned());
                let size = events.iter().map(String::len).sum();
                (Answer::Events(events), size)
            }
        };
        if size > MAX_ANSWER {
            return Err("it is larger than 16 MiB");
        }
        let echoes = |text: &str| redact::contains(&self.token, text);
        let texts: Vec<&str> = match &answer {
            Answer::Body(body) => vec![std::str::from_utf8(body).map_err(|_| "it is not UTF-8")?],
            Answer::Events(events) => events.iter().map(String::as_str).collect(),
        };
        let headers = [&reply.credits_consumed, &reply.credits_remaining];
        if texts
            .into_iter()
            .chain(headers.into_iter().flatten().map(String::as_str))
            .any(echoes)
        {
            return Err("it holds the token");
        }
        Ok(Entry {
            stored_at_ms: now_ms(),
            status: 200,
            credits_consumed: reply.credits_consumed.clone(),
            credits_remaining: reply.credits_remaining.clone(),
            conversation_id: reply.conversation_id.clone(),
            answer,
        })
    }

    /// Fresh, decodable and meeting `contract`: tried on the side first, so that an entry that
    /// is not (a miss) has written nothing.
    fn usable(&self, entry: &Entry, contract: Option<&Contract>) -> bool {
        let now = now_ms();
        if entry.status != 200 || entry.stored_at_ms > now + CLOCK_SLACK_MS {
            return false;
        }
        let age = Duration::from_millis(now.saturating_sub(entry.stored_at_ms));
        if age >= self.ttl {
            return false;
        }
        let mut side = Output::new(io::sink(), Mode::Lines { response: false });
        let (_, decoded) = response::replay(entry.received(), Reply::default(), &mut side);
        let held = side.take_held().unwrap_or_default();
        decoded.is_ok() && contract.is_none_or(|c| c.check(&held).is_ok())
    }
}

impl Hit {
    /// What the response's headers said, as a cached answer reports them (SPEC 8): nothing
    /// consumed, no balance, the stored conversation.
    pub fn reply(&self) -> Reply {
        Reply {
            status: Some(self.entry.status),
            credits_consumed: Some("0".into()),
            credits_remaining: None,
            conversation_id: self.entry.conversation_id.clone(),
            ..Reply::default()
        }
    }

    /// When it was stored, in RFC 3339.
    pub fn stored_at(&self) -> String {
        let at = UNIX_EPOCH + Duration::from_millis(self.entry.stored_at_ms);
        humantime::format_rfc3339_seconds(at).to_string()
    }

    /// For `-v`: `answer from the cache, stored 12m ago`.
    pub fn said(&self) -> String {
        let age = Duration::from_millis(now_ms().saturating_sub(self.entry.stored_at_ms));
        let from = match &self.from {
            None => "the cache".to_string(),
            Some(store) => format!("the cache in {store}"),
        };
        format!("answer from {from}, stored {} ago", ago(age))
    }

    /// A whole answer's body, for the `--json` document or a batch line's `response`.
    pub fn body(&self) -> Option<Vec<u8>> {
        match &self.entry.answer {
            Answer::Body(body) => Some(body.clone()),
            Answer::Events(_) => None,
        }
    }
}

/// An age in its largest whole unit: `45s`, `12m`, `3h`, `2d`.
fn ago(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_tells_every_part_apart_and_holds_no_part_of_the_token() {
        let token = Secret::parse("tok-SECRET-123", "test").unwrap();
        let other = Secret::parse("tok-OTHER", "test").unwrap();
        let k = key("https://a", "default", &token, b"{}");
        assert_eq!(k.len(), 64);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        for different in [
            key("https://b", "default", &token, b"{}"),
            key("https://a", "other", &token, b"{}"),
            key("https://a", "default", &other, b"{}"),
            key("https://a", "default", &token, b"{ }"),
            key("https://a", "defaul", &token, b"t{}"),
        ] {
            assert_ne!(k, different);
        }
        let token_hex = digest::hex(&[b"tok-SECRET-123"]);
        let expected = digest::hex(&[format!("https://a\0default\0{token_hex}\0{{}}").as_bytes()]);
        assert_eq!(k, expected, "SPEC 8's key, exactly");
    }

    #[test]
    fn ages_read_in_their_largest_whole_unit() {
        let s = Duration::from_secs;
        assert_eq!(ago(s(0)), "0s");
        assert_eq!(ago(s(59)), "59s");
        assert_eq!(ago(s(725)), "12m");
        assert_eq!(ago(s(7200)), "2h");
        assert_eq!(ago(s(86_400 * 3 + 5)), "3d");
    }
}
