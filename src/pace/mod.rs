//! Pacing: at most N requests per rolling window, shared by every `bnx` process of this user for
//! the same API origin and token, so that `xargs -P 8`, overlapping cron jobs and parallel CI
//! steps stay under the account's limit instead of each meeting it as a 429.
//!
//! Each attempt reserves a slot: the earliest time at which it keeps every window under the
//! limit, and sleeps until then. Reserving (rather than polling for a free slot) gives each
//! waiting process its own time, so they do not wake together and fight for one slot. The rule
//! is [`rule::next_slot`], a pure function; where the slots are kept is a [`Store`]: a small
//! locked file ([`file`]), Redis for a fleet ([`redis`]), with the file taking over when Redis
//! fails. This module wires them into the [`Pacer`] of a run.

pub mod file;
pub mod redis;
pub mod rule;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

use crate::digest;
use crate::duration::secs;
use crate::error::{Error, Kind};
use crate::printer::Printer;
use crate::rate::Rate;
use crate::store::Redis;
use crate::token::Secret;
pub use file::FileStore;
use redis::RedisStore;
pub use rule::{reserve, Slots, FURTHEST};

/// Where the slots of every (origin, token) are kept, shared by whoever uses the same store.
///
/// Times cross this boundary as waits, not instants: each store reads its own clock (Redis
/// reads the server's, which every machine of a fleet shares), and the caller sleeps the wait
/// on its own, whatever its clock says.
pub trait Store: Send + Sync {
    /// Runs [`reserve`] on the slots of `key` atomically, at the store's clock: the wait until
    /// the slot taken, or the wait refused.
    fn reserve(
        &self,
        key: &str,
        rate: Rate,
        limit: Duration,
    ) -> io::Result<std::result::Result<Duration, Duration>>;
    /// Makes every process wait `wait` from now before its next attempt (a 429's Retry-After).
    fn pause(&self, key: &str, wait: Duration) -> io::Result<()>;
}

/// The key of an (origin, token) pair: a SHA-256 digest, so that neither the token nor a part
/// of it is ever a file name or a Redis key.
pub fn key(origin: &str, token: &Secret) -> String {
    digest::hex(&[origin.as_bytes(), &[0], token.expose().as_bytes()])
}

/// A wait shorter than this is not worth a notice.
const NOTICEABLE: Duration = Duration::from_millis(100);

/// Paces the attempts of one (origin, token) through a store.
pub struct Pacer {
    store: Box<dyn Store>,
    /// With a fleet's shared store: its connection, which says when it failed, and this
    /// machine's file, or why it cannot be used, which takes over for the rest of the run once
    /// the shared store fails.
    fallback: Option<(Arc<Redis>, std::result::Result<FileStore, String>)>,
    /// Whether the shared store has failed: from then on only the fallback is asked.
    failed: AtomicBool,
    key: String,
    rate: Rate,
    /// The longest wait accepted (`--max-retry-wait`).
    limit: Duration,
}

/// Why an attempt may go now, or may not.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// The slot is now (the caller has waited for it).
    Go,
    /// The next slot is further away than the caller accepts.
    Refused(Duration),
}

impl Pacer {
    pub fn new(store: Box<dyn Store>, key: String, rate: Rate, limit: Duration) -> Self {
        Pacer {
            store,
            fallback: None,
            failed: AtomicBool::new(false),
            key,
            rate,
            limit,
        }
    }

    /// Paces through `shared`, a fleet's store, until it fails, then through `fallback`.
    pub fn shared(
        shared: Arc<Redis>,
        fallback: std::result::Result<FileStore, String>,
        key: String,
        rate: Rate,
        limit: Duration,
    ) -> Self {
        let store = Box::new(RedisStore::new(Arc::clone(&shared)));
        Pacer {
            fallback: Some((shared, fallback)),
            ..Pacer::new(store, key, rate, limit)
        }
    }

    /// Reserves a slot and sleeps until it, with a notice first when the wait is worth one.
    pub fn wait_turn(&self, printer: &Printer) -> Turn {
        match self.ask(printer, |store| {
            store.reserve(&self.key, self.rate, self.limit)
        }) {
            Some(Ok(wait)) => {
                if wait >= NOTICEABLE {
                    printer.waiting(&format!(
                        "waiting {}s for a request slot ({})",
                        secs(wait),
                        self.rate
                    ));
                }
                sleep(wait);
                Turn::Go
            }
            Some(Err(wait)) => Turn::Refused(wait),
            None => Turn::Go,
        }
    }

    /// A 429 asked every client to wait `wait`.
    pub fn pause(&self, wait: Duration, printer: &Printer) {
        self.ask(printer, |store| store.pause(&self.key, wait));
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Runs `op` on the store in use. A shared store that fails hands over to this machine's
    /// file for the rest of the run, with one warning for the run (the store's), and `op` runs
    /// again there. `None` when no store answered: the attempt goes unpaced, for pacing is a
    /// courtesy to the server, never a reason for a run to fail.
    fn ask<T>(&self, printer: &Printer, op: impl Fn(&dyn Store) -> io::Result<T>) -> Option<T> {
        let Some((shared, fallback)) = &self.fallback else {
            return op(&*self.store).ok();
        };
        if !self.failed.load(Ordering::Acquire) {
            match op(&*self.store) {
                Ok(answer) => return Some(answer),
                Err(why) => {
                    self.failed.store(true, Ordering::Release);
                    shared.failed(&why, printer);
                }
            }
        }
        op(fallback.as_ref().ok()?).ok()
    }
}

/// What pacing comes to without the fleet's store, for a warning.
fn alone(local: &std::result::Result<FileStore, String>) -> String {
    match local {
        Ok(_) => "pacing on this machine alone".into(),
        Err(why) => format!("pacing is off ({why})"),
    }
}

/// What the pacing of a run is made of.
pub struct Pacing<'a> {
    /// `None`: pacing is off.
    pub rate: Option<Rate>,
    /// The longest wait accepted (`--max-retry-wait`).
    pub limit: Duration,
    /// Where this machine's state lives, if anywhere.
    pub state_dir: Option<&'a Path>,
    /// A fleet's store: the run's connection to it.
    pub store: Option<&'a Arc<Redis>>,
    /// The (origin, token) digest of [`key`].
    pub key: String,
}

/// The pacing of a run, unless it is off. Whatever falls short costs one warning, never the
/// run: an unusable state directory turns pacing off, and a fleet's store that cannot be
/// reached (or fails) leaves this machine's file to pace alone.
pub fn for_run(pacing: Pacing, printer: &Printer) -> Option<Pacer> {
    let Pacing {
        rate,
        limit,
        state_dir,
        store,
        key,
    } = pacing;
    let rate = rate?;
    let local = file::local(state_dir.map(|d| d.join("pace")).as_deref(), &key);
    if let Some(shared) = store {
        shared.falls_back(alone(&local));
        let shared = Arc::clone(shared);
        return Some(Pacer::shared(shared, local, key, rate, limit));
    }
    if let Err(why) = &local {
        printer.notice(&format!("warning: pacing is off ({why})"));
    }
    let store = local.ok()?;
    Some(Pacer::new(Box::new(store), key, rate, limit))
}

/// The error of a refused turn: exit 75 without sending anything.
pub fn refused(wait: Duration, rate: Rate) -> Error {
    Error::msg(
        Kind::RateLimited,
        format!(
            "the next request slot is {}s away ({rate}), longer than --max-retry-wait",
            secs(wait)
        ),
    )
    .with_hint("raise --max-retry-wait to wait for it, or run later")
    .with_json_type("pacing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_digests_that_hold_no_part_of_the_token() {
        let token = Secret::parse("tok-SECRET-123", "test").unwrap();
        let key = key("https://api.bluenexus.ai", &token);
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, super::key("http://127.0.0.1:8787", &token));
        assert!(!key.contains("123"));
    }
}
