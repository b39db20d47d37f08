//! Pacing: at most N requests per rolling window, shared by every `bnx` process of this user for
//! the same API origin and token, so that `xargs -P 8`, overlapping cron jobs and parallel CI
//! steps stay under the account's limit instead of each meeting it as a 429.
//!
//! Each attempt reserves a slot: the earliest time at which it keeps every window under the
//! limit, and sleeps until then. Reserving (rather than polling for a free slot) gives each
//! waiting process its own time, so they do not wake together and fight for one slot. The rule
//! is [`next_slot`], a pure function; where the slots are kept is a [`Store`]: a small locked
//! file here, Redis for a fleet ([`redis`]), with the file taking over when Redis fails.

pub mod redis;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::printer::Printer;
use crate::retry::secs;
use crate::state;
use crate::token::Secret;
use redis::RedisStore;

/// `--rate-limit N[/SECS]`: N requests per rolling SECS seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub requests: u32,
    pub window: Duration,
}

impl Rate {
    /// The documented limit of the API.
    pub const DEFAULT: Rate = Rate {
        requests: 30,
        window: Duration::from_secs(60),
    };
}

impl FromStr for Rate {
    type Err = String;

    /// `0` requests turns pacing off: the caller's choice, not a parse error.
    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("expected N or N/SECS, such as 30/60, not {s:?}");
        let (n, window) = match s.split_once('/') {
            Some((n, secs)) => {
                let secs = secs.trim().parse::<f64>().map_err(|_| bad())?;
                let window = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|w| !w.is_zero() && *w <= Duration::from_secs(86_400))
                    .ok_or_else(bad)?;
                (n, window)
            }
            None => (s, Rate::DEFAULT.window),
        };
        let requests = n.trim().parse::<u32>().map_err(|_| bad())?;
        Ok(Rate { requests, window })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}s", self.requests, secs(self.window))
    }
}

/// Milliseconds since the Unix epoch: the clock every process on the machine agrees on.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, ms)
}

/// A duration in milliseconds, saturating.
fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// What a store keeps for one (origin, token): the last slots taken, oldest first, and the end
/// of a pause a 429 asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    pub taken: Vec<Millis>,
    pub paused_until: Millis,
    /// When the slots were last written: a time after now means the clock was set back.
    #[serde(default)]
    pub written: Millis,
}

/// A state file holds at most `--rate-limit`'s N times; past this it is not ours to read.
const MAX_STATE: u64 = 1 << 20;

/// No slot or pause is further away than this: a state that says otherwise was written by a
/// clock that has since been set back, or by hand.
pub const FURTHEST: Duration = Duration::from_secs(24 * 60 * 60);

impl Slots {
    /// The slots as they can stand at `now`: forgotten when they were written after now (the
    /// clock was set back, and every time in them is that far off) or reach past [`FURTHEST`],
    /// rather than holding every request back for as long.
    pub fn as_of(self, now: Millis) -> Slots {
        let furthest = now.saturating_add(ms(FURTHEST));
        let impossible = self.written > now.saturating_add(1000)
            || self.paused_until > furthest
            || self.taken.last().is_some_and(|&last| last > furthest);
        if impossible {
            Slots::default()
        } else {
            self
        }
    }
}

/// A request's arrival at the server drifts from its slot by the connection's latency; this
/// margin keeps two requests N slots apart a little more than a window apart when they arrive.
pub fn margin(window: Duration) -> Millis {
    (ms(window) / 20).min(250)
}

/// The earliest slot at or after `now` that keeps every rolling window under `rate`, given the
/// slots already taken (in the order they were taken, which is time order). Slots are only ever
/// appended at or after the last one, so the window ending at the new slot is the only one it
/// can fill: it must start after the slot taken N places before.
pub fn next_slot(slots: &Slots, now: Millis, rate: Rate) -> Millis {
    let n = rate.requests as usize;
    let mut at = now.max(slots.paused_until);
    if let Some(&last) = slots.taken.last() {
        at = at.max(last);
    }
    if n > 0 && slots.taken.len() >= n {
        let nth_before = slots.taken[slots.taken.len() - n];
        at = at.max(nth_before.saturating_add(ms(rate.window) + margin(rate.window)));
    }
    at
}

/// Takes the slot [`next_slot`] gives, unless it is later than `now + limit`; keeps only the
/// slots the rule can still need. Returns the slot, or the wait that was refused.
pub fn reserve(
    slots: &mut Slots,
    now: Millis,
    rate: Rate,
    limit: Duration,
) -> std::result::Result<Millis, Millis> {
    let at = next_slot(slots, now, rate);
    // The margin is ours, not a wait the account asks for: with the default 30/60 and a
    // --max-retry-wait of 60 s, counting it would refuse what a patient caller accepts.
    if at - now > ms(limit).saturating_add(margin(rate.window)) {
        return Err(at - now);
    }
    slots.taken.push(at);
    let keep = rate.requests as usize;
    if slots.taken.len() > keep {
        slots.taken.drain(..slots.taken.len() - keep);
    }
    Ok(at)
}

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

/// One small JSON file per key in a directory, read and replaced under an exclusive lock.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Creates the directory; only the user may enter it.
    pub fn open(dir: &Path) -> io::Result<FileStore> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The state file of `key`, locked. Whatever else stands at its path (a link, a FIFO, a
    /// device) is refused rather than followed, waited on or read without end.
    fn locked(&self, key: &str) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.dir.join(key))?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("the pacing state is not a regular file"));
        }
        file.lock()?;
        Ok(file)
    }

    /// Applies `change` to the slots of `key` while holding its file's lock.
    fn update<T>(&self, key: &str, change: impl FnOnce(&mut Slots) -> T) -> io::Result<T> {
        let mut file = self.locked(key)?;
        let mut text = String::new();
        (&mut file).take(MAX_STATE).read_to_string(&mut text)?;
        // A file torn by a crash mid-write, or written by a future version, starts afresh:
        // the worst case is one window that is not paced.
        let now = now_ms();
        let mut slots = serde_json::from_str::<Slots>(&text)
            .unwrap_or_default()
            .as_of(now);
        let result = change(&mut slots);
        slots.written = now;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(&serde_json::to_vec(&slots).expect("slots serialize"))?;
        Ok(result)
    }
}

impl Store for FileStore {
    fn reserve(
        &self,
        key: &str,
        rate: Rate,
        limit: Duration,
    ) -> io::Result<std::result::Result<Duration, Duration>> {
        self.update(key, |slots| {
            let now = now_ms();
            let wait = |at: Millis| Duration::from_millis(at - now);
            reserve(slots, now, rate, limit)
                .map(wait)
                .map_err(Duration::from_millis)
        })
    }

    fn pause(&self, key: &str, wait: Duration) -> io::Result<()> {
        self.update(key, |slots| {
            let until = now_ms().saturating_add(ms(wait));
            slots.paused_until = slots.paused_until.max(until);
        })
    }
}

/// The key of an (origin, token) pair: a SHA-256 digest, so that neither the token nor a part
/// of it is ever a file name or a Redis key.
pub fn key(origin: &str, token: &Secret) -> String {
    state::digest(&[origin.as_bytes(), &[0], token.expose().as_bytes()])
}

/// A wait shorter than this is not worth a notice.
const NOTICEABLE: Duration = Duration::from_millis(100);

/// Paces the attempts of one (origin, token) through a store.
pub struct Pacer {
    store: Box<dyn Store>,
    /// With a fleet's shared store: this machine's file, or why it cannot be used, which takes
    /// over for the rest of the run once the shared store fails.
    fallback: Option<std::result::Result<FileStore, String>>,
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
        shared: Box<dyn Store>,
        fallback: std::result::Result<FileStore, String>,
        key: String,
        rate: Rate,
        limit: Duration,
    ) -> Self {
        Pacer {
            fallback: Some(fallback),
            ..Pacer::new(shared, key, rate, limit)
        }
    }

    /// Reserves a slot and sleeps until it, with a notice first when the wait is worth one.
    pub fn wait_turn(&self, printer: &Printer) -> Turn {
        match self.ask(printer, |store| {
            store.reserve(&self.key, self.rate, self.limit)
        }) {
            Some(Ok(wait)) => {
                if wait >= NOTICEABLE {
                    printer.waiting(wait, self.rate);
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
    /// file for the rest of the run, with one warning, and `op` runs again there. `None` when
    /// no store answered: the attempt goes unpaced, for pacing is a courtesy to the server,
    /// never a reason for a run to fail.
    fn ask<T>(&self, printer: &Printer, op: impl Fn(&dyn Store) -> io::Result<T>) -> Option<T> {
        let Some(fallback) = &self.fallback else {
            return op(&*self.store).ok();
        };
        if !self.failed.load(Ordering::Acquire) {
            match op(&*self.store) {
                Ok(answer) => return Some(answer),
                // Workers of a batch may fail together; one of them says so.
                Err(why) if !self.failed.swap(true, Ordering::AcqRel) => printer.notice(&format!(
                    "warning: the rate store failed ({why}); {}",
                    alone(fallback)
                )),
                Err(_) => {}
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

/// The pacing of a run, unless it is off. Whatever falls short costs one warning, never the
/// run: an unusable state directory turns pacing off, and a fleet's store that cannot be
/// reached leaves this machine's file to pace alone.
pub fn for_run(config: &Config, token: &Secret, printer: &Printer) -> Option<Pacer> {
    let rate = config.network.pace?;
    let key = key(&config.origin, token);
    let limit = config.network.retry.max_wait;
    let dir = config.state_dir.as_ref().map(|d| d.join("pace"));
    let local = local(dir.as_deref(), &key);
    if let Some(url) = &config.network.rate_store {
        match RedisStore::connect(url) {
            Ok(shared) => return Some(Pacer::shared(Box::new(shared), local, key, rate, limit)),
            Err(why) => printer.notice(&format!(
                "warning: the rate store {url} cannot be reached ({why}); {}",
                alone(&local)
            )),
        }
    } else if let Err(why) = &local {
        printer.notice(&format!("warning: pacing is off ({why})"));
    }
    let store = local.ok()?;
    Some(Pacer::new(Box::new(store), key, rate, limit))
}

/// This machine's store for `key`: a state file under `pace_dir`. `Err` says why it cannot be
/// used, for a warning.
pub fn local(pace_dir: Option<&Path>, key: &str) -> std::result::Result<FileStore, String> {
    let dir = pace_dir.ok_or("neither XDG_STATE_HOME nor HOME is set")?;
    FileStore::open(dir)
        // Opening and locking the state file proves, before it matters, that it can be used.
        .and_then(|store| store.locked(key).map(|_| store))
        .map_err(|e| format!("{}: {e}", dir.display()))
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

    const SIX_PER_3S: Rate = Rate {
        requests: 6,
        window: Duration::from_secs(3),
    };

    #[test]
    fn rates_parse_with_and_without_a_window() {
        assert_eq!("30/60".parse(), Ok(Rate::DEFAULT));
        assert_eq!("30".parse(), Ok(Rate::DEFAULT));
        assert_eq!(
            "6/0.5".parse(),
            Ok(Rate {
                requests: 6,
                window: Duration::from_millis(500)
            })
        );
        assert_eq!("0".parse::<Rate>().unwrap().requests, 0);
        for bad in ["", "x", "-1", "6/0", "6/-3", "6/x", "1.5/3", "6/1e9"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(Rate::DEFAULT.to_string(), "30 per 60s");
    }

    #[test]
    fn the_first_n_slots_are_now_then_each_waits_a_window_after_the_nth_before() {
        let mut slots = Slots::default();
        let m = margin(SIX_PER_3S.window);
        for _ in 0..6 {
            assert_eq!(
                reserve(&mut slots, 1000, SIX_PER_3S, Duration::MAX),
                Ok(1000)
            );
        }
        assert_eq!(
            reserve(&mut slots, 1000, SIX_PER_3S, Duration::MAX),
            Ok(4000 + m)
        );
        assert_eq!(
            reserve(&mut slots, 1500, SIX_PER_3S, Duration::MAX),
            Ok(4000 + m)
        );
        assert_eq!(slots.taken.len(), 6, "only the last N slots are kept");
    }

    #[test]
    fn any_sequence_of_reservations_keeps_every_window_under_the_limit() {
        let rate = Rate {
            requests: 3,
            window: Duration::from_millis(1000),
        };
        let mut slots = Slots::default();
        let mut all = Vec::new();
        let mut now = 0;
        for step in 0..200u64 {
            now += (step * 7919) % 450;
            let at = reserve(&mut slots, now, rate, Duration::MAX).unwrap();
            assert!(at >= now);
            all.push(at);
        }
        for (i, &start) in all.iter().enumerate() {
            let inside = all[i..].iter().take_while(|&&t| t < start + 1000).count();
            assert!(inside <= 3, "{inside} slots in the window from {start}");
        }
    }

    #[test]
    fn a_wait_longer_than_the_limit_is_refused_and_reserves_nothing() {
        let mut slots = Slots::default();
        for _ in 0..6 {
            reserve(&mut slots, 0, SIX_PER_3S, Duration::ZERO).unwrap();
        }
        let before = slots.clone();
        let wait = reserve(&mut slots, 0, SIX_PER_3S, Duration::from_secs(1)).unwrap_err();
        assert_eq!(wait, 3000 + margin(SIX_PER_3S.window));
        assert_eq!(slots, before);
    }

    #[test]
    fn the_margin_is_not_counted_against_the_longest_wait() {
        // The default rate and --max-retry-wait: the 31st request in a fast burst waits a
        // window plus the margin, and a caller who accepts a window's wait takes it.
        let mut slots = Slots::default();
        let limit = Duration::from_secs(60);
        for _ in 0..30 {
            reserve(&mut slots, 0, Rate::DEFAULT, limit).unwrap();
        }
        assert_eq!(
            reserve(&mut slots, 0, Rate::DEFAULT, limit),
            Ok(60_000 + margin(Rate::DEFAULT.window))
        );
    }

    #[test]
    fn slots_from_a_clock_set_back_or_too_far_ahead_are_forgotten() {
        let day = ms(FURTHEST);
        let now = 10 * day;
        let slots = |taken: Vec<Millis>, paused_until, written| Slots {
            taken,
            paused_until,
            written,
        };
        let sane = slots(vec![now - 5, now + 60_000], now + 2000, now - 5);
        assert_eq!(sane.clone().as_of(now), sane);
        for bad in [
            slots(vec![now + 7_200_000], 0, now + 7_200_000),
            slots(vec![], Millis::MAX, 0),
            slots(vec![now + day + 1], 0, now),
        ] {
            assert_eq!(bad.as_of(now), Slots::default());
        }
    }

    #[test]
    fn a_pause_holds_every_slot_until_it_ends() {
        let mut slots = Slots {
            paused_until: 9000,
            ..Slots::default()
        };
        assert_eq!(
            reserve(&mut slots, 1000, SIX_PER_3S, Duration::MAX),
            Ok(9000)
        );
        assert_eq!(
            reserve(&mut slots, 9500, SIX_PER_3S, Duration::MAX),
            Ok(9500)
        );
    }

    #[test]
    fn keys_are_digests_that_hold_no_part_of_the_token() {
        let token = Secret::parse("tok-SECRET-123", "test").unwrap();
        let key = key("https://api.bluenexus.ai", &token);
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, super::key("http://127.0.0.1:8787", &token));
        assert!(!key.contains("123"));
    }

    #[test]
    fn the_file_store_keeps_slots_between_openings() {
        let dir = tempfile::tempdir().unwrap();
        let rate = Rate {
            requests: 2,
            window: Duration::from_secs(60),
        };
        let limit = Duration::from_secs(1);
        for _ in 0..2 {
            let store = FileStore::open(dir.path()).unwrap();
            assert!(store.reserve("k", rate, limit).unwrap().is_ok());
        }
        let store = FileStore::open(dir.path()).unwrap();
        assert!(store.reserve("k", rate, limit).unwrap().is_err());
        assert!(store.reserve("other", rate, limit).unwrap().is_ok());
        fs::write(dir.path().join("k"), "torn{").unwrap();
        assert!(store.reserve("k", rate, limit).unwrap().is_ok());
    }
}
