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
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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
    /// A fleet's store, used until it fails.
    shared: Option<RedisStore>,
    /// This machine's file, or why it cannot be used. It paces alone without a fleet's store,
    /// or once that fails; until then it keeps a copy of the slots this machine takes through
    /// the fleet's, so that taking over starts from what this machine has really sent.
    local: std::result::Result<FileStore, String>,
    /// Which store is asked: [`SHARED`], [`LOCAL`] or [`OFF`]. It only ever moves forward.
    stage: AtomicU8,
    /// Whether the slots taken through the fleet's store are still copied into the file: not
    /// once that failed, so that a stuck lock costs its wait once, not on every attempt.
    mirror: AtomicBool,
    key: String,
    rate: Rate,
    /// The longest wait accepted (`--max-retry-wait`).
    limit: Duration,
}

const SHARED: u8 = 0;
const LOCAL: u8 = 1;
const OFF: u8 = 2;

/// Why an attempt may go now, or may not.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// The slot is now (the caller has waited for it).
    Go,
    /// The next slot is further away than the caller accepts.
    Refused(Duration),
}

impl Pacer {
    /// Paces through `shared`, a fleet's store, while it works, else through `local`.
    fn new(
        shared: Option<RedisStore>,
        local: std::result::Result<FileStore, String>,
        key: String,
        rate: Rate,
        limit: Duration,
    ) -> Self {
        Pacer {
            stage: AtomicU8::new(if shared.is_some() { SHARED } else { LOCAL }),
            shared,
            local,
            mirror: AtomicBool::new(true),
            key,
            rate,
            limit,
        }
    }

    /// Reserves a slot and sleeps until it, with a notice first when the wait is worth one.
    pub fn wait_turn(&self, printer: &Printer) -> Turn {
        let reserve = |store: &dyn Store| store.reserve(&self.key, self.rate, self.limit);
        let mirror = |local: &FileStore, reserved: &std::result::Result<Duration, Duration>| {
            match reserved {
                Ok(wait) => local.record(&self.key, self.rate, *wait),
                Err(_) => Ok(()),
            }
        };
        match self.ask(printer, reserve, mirror) {
            Some(Ok(wait)) => {
                if wait >= NOTICEABLE {
                    let message =
                        format!("waiting {}s for a request slot ({})", secs(wait), self.rate);
                    printer.waiting(&message, wait, self.rate);
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
        let pause = |store: &dyn Store| store.pause(&self.key, wait);
        self.ask(printer, pause, |local, ()| local.pause(&self.key, wait));
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Runs `op` on the store in use, and `mirror` on this machine's file after the fleet's
    /// store answered. A store that fails hands over to the next for the rest of the run, with
    /// one warning: the fleet's to this machine's file, which runs `op` again, and the file to
    /// none. `None` when no store answered: the attempt goes unpaced, for pacing is a courtesy
    /// to the server, never a reason for a run to fail.
    fn ask<T>(
        &self,
        printer: &Printer,
        op: impl Fn(&dyn Store) -> io::Result<T>,
        mirror: impl Fn(&FileStore, &T) -> io::Result<()>,
    ) -> Option<T> {
        if let (SHARED, Some(shared)) = (self.stage.load(Ordering::Acquire), &self.shared) {
            match op(shared) {
                Ok(answer) => {
                    self.copy(printer, |local| mirror(local, &answer));
                    return Some(answer);
                }
                // The store's one warning for the run names what pacing falls back to.
                Err(why) => {
                    let next = if self.local.is_ok() { LOCAL } else { OFF };
                    self.leave(SHARED, next);
                    shared.redis().failed(&why, printer);
                }
            }
        }
        let local = self.local.as_ref().ok()?;
        if self.stage.load(Ordering::Acquire) != LOCAL {
            return None;
        }
        let answer = op(local);
        self.tell_reset(local, printer);
        match answer {
            Ok(answer) => Some(answer),
            Err(why) => {
                if self.leave(LOCAL, OFF) {
                    let dir = local.dir().display();
                    printer.notice(&format!("warning: pacing is off ({dir}: {why})"));
                }
                None
            }
        }
    }

    /// Runs `mirror` on this machine's file, unless copying has failed before.
    fn copy(&self, printer: &Printer, mirror: impl FnOnce(&FileStore) -> io::Result<()>) {
        let Ok(local) = &self.local else { return };
        if self.mirror.load(Ordering::Acquire) {
            // The fleet's store paces this attempt; a copy that fails is not worth a warning
            // until the file has to take over, and then the file says why itself.
            if mirror(local).is_err() {
                self.mirror.store(false, Ordering::Release);
            }
            self.tell_reset(local, printer);
        }
    }

    /// Moves from stage `from` to `to`; `true` for the one caller that made the move.
    fn leave(&self, from: u8, to: u8) -> bool {
        self.stage
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Warns when `local` had to start a state it could not read afresh.
    fn tell_reset(&self, local: &FileStore, printer: &Printer) {
        if let Some(why) = local.take_reset() {
            printer.notice(&format!(
                "warning: the pacing state could not be read ({why}); it starts afresh"
            ));
        }
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
    let shared = match store {
        Some(shared) => {
            shared.falls_back(alone(&local));
            Some(RedisStore::new(Arc::clone(shared)))
        }
        None => {
            if let Err(why) = &local {
                printer.notice(&format!("warning: pacing is off ({why})"));
            }
            local.as_ref().ok()?;
            None
        }
    };
    Some(Pacer::new(shared, local, key, rate, limit))
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
