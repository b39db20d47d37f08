//! The credit ledger (SPEC 9): every answer's `X-Credits-Consumed`, with its time, added to a
//! book of this (origin, token) that every `bnx` process of the user shares, and the fleet with
//! `--store`; the last `X-Credits-Remaining` with its time. Before each request `--budget` and
//! `--min-credits` are checked against it.
//!
//! The money rule: a ledger that cannot be read or written costs one warning when no limit
//! depends on it; with a limit, the request is refused (exit 4) saying why. A damaged book is
//! never replaced: runs with a limit refuse naming it, runs without one warn and record
//! nothing. A store that fails refuses runs with a limit; for the others it is the store's one
//! warning, and the answer is recorded on this machine only.
//!
//! `book` is the pure rule and the bytes, `file` this machine's books, `redis` the fleet's,
//! `check` what the limits make of a book's standing.

pub mod book;
pub mod check;
pub mod file;
pub mod redis;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::budget::{credits, Limits};
use crate::printer::Printer;
use crate::response::Reply;
use crate::store::Redis;
use book::{counted, Entry, InBudget, Query, Standing, MOST_CONSUMED, MOST_REMAINING};
use check::Refusal;
use file::FileLedger;
use redis::RedisLedger;

/// Why the ledger cannot say or record.
#[derive(Debug, Clone, PartialEq)]
pub enum Trouble {
    /// It cannot be read or written: no state directory, one that is read-only, a lock held
    /// too long.
    Unusable(String),
    /// The book is not one; it is never replaced silently.
    Damaged { path: PathBuf, why: String },
    /// The fleet's store failed: what the store's warning says.
    Store(String),
}

impl Trouble {
    /// A warning's words, for a run that no limit depends on.
    fn warning(&self) -> String {
        match self {
            Trouble::Damaged { path, why } => format!(
                "warning: the credit ledger {} is damaged ({why}); credits are not recorded \
                 until it is removed",
                path.display()
            ),
            Trouble::Unusable(why) | Trouble::Store(why) => {
                format!(
                    "warning: the credit ledger cannot be used ({why}); credits are not recorded"
                )
            }
        }
    }
}

/// Where the ledger of a run lives, and the limits checked against it.
pub struct Setup<'a> {
    pub state_dir: Option<&'a Path>,
    /// The run's connection to the fleet's store.
    pub store: Option<&'a Arc<Redis>>,
    /// The (origin, token) digest of [`crate::pace::key`].
    pub key: String,
    pub limits: Limits,
}

/// The ledger of a run.
pub struct Ledger {
    key: String,
    /// This machine's books; `Err` when there is no state directory.
    local: Result<FileLedger, Trouble>,
    /// The fleet's books, until the store fails.
    shared: Option<RedisLedger>,
    shared_failed: AtomicBool,
    limits: Limits,
    /// Proved once per run, with a limit: this machine's ledger can be written.
    writable: OnceLock<Result<(), Trouble>>,
    /// An answer that could not be recorded: with a limit, every later check refuses.
    unrecorded: Mutex<Option<Trouble>>,
    /// A ledger trouble was said (one warning a run).
    warned: AtomicBool,
}

impl Ledger {
    pub fn for_run(setup: Setup) -> Ledger {
        let local = match setup.state_dir {
            Some(dir) => Ok(FileLedger::new(dir.join("credits"), setup.key.clone())),
            None => Err(Trouble::Unusable(
                "neither BLUENEXUS_STATE_DIR, XDG_STATE_HOME nor HOME is set".into(),
            )),
        };
        let shared = setup.store.map(|redis| {
            // With a limit, a store that fails refuses the requests instead.
            if !setup.limits.any() {
                redis.falls_back("credits recorded on this machine only");
            }
            RedisLedger::new(Arc::clone(redis))
        });
        Ledger {
            key: setup.key,
            local,
            shared,
            shared_failed: AtomicBool::new(false),
            limits: setup.limits,
            writable: OnceLock::new(),
            unrecorded: Mutex::new(None),
            warned: AtomicBool::new(false),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Before a request (and each re-ask): whether the limits let it go, and, with a budget,
    /// what it stands at. Without a limit nothing is read.
    pub fn check(&self) -> Result<Option<InBudget>, Refusal> {
        if !self.limits.any() {
            return Ok(None);
        }
        let unchecked = |trouble: &Trouble| check::unchecked(&self.limits, trouble);
        if let Some(trouble) = &*self
            .unrecorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(unchecked(trouble));
        }
        let query = Query {
            periods: vec![],
            budget: self.limits.budget,
        };
        let standing = self.standing(&query).map_err(|t| unchecked(&t))?;
        check::verdict(&self.limits, &standing)?;
        Ok(standing.budget)
    }

    /// What the ledger says in answer to `query`: the fleet's with a store, else this
    /// machine's. With a limit on this machine, its ledger must also be writable, or the
    /// answer a request is about to cost could not be counted.
    pub fn standing(&self, query: &Query) -> Result<Standing, Trouble> {
        if let Some(shared) = &self.shared {
            if self.shared_failed.load(Ordering::Acquire) {
                return Err(Trouble::Store(
                    "the store failed earlier in this run".into(),
                ));
            }
            return shared
                .standing(&self.key, query)
                .map_err(|why| Trouble::Store(shared.redis().trouble(&why)));
        }
        let local = self.local.as_ref().map_err(Clone::clone)?;
        if self.limits.any() {
            self.writable
                .get_or_init(|| local.prove_writable())
                .clone()?;
        }
        let (book, now) = local.read()?;
        Ok(book.standing(now, query))
    }

    /// After an answer that arrived `age` ago: what it consumed and what remains, recorded;
    /// with a budget, what the period stands at now.
    pub fn record(&self, reply: &Reply, age: Duration, printer: &Printer) -> Option<InBudget> {
        let entry = entry(reply, age, printer)?;
        let query = Query {
            periods: vec![],
            budget: self.limits.budget,
        };
        if let Some(shared) = &self.shared {
            if !self.shared_failed.load(Ordering::Acquire) {
                match shared.record(&self.key, &entry, &query) {
                    Ok(standing) => return standing.budget,
                    Err(why) => {
                        self.shared_failed.store(true, Ordering::Release);
                        shared.redis().failed(&why, printer);
                    }
                }
            }
        }
        let recorded = self.local.as_ref().map_err(Clone::clone).and_then(|local| {
            local.update(|book, now| {
                book.record(&entry, now);
                book.standing(now, &query)
            })
        });
        match recorded {
            // Counted on this machine alone, it is not the fleet's budget.
            Ok(standing) => standing.budget.filter(|_| self.shared.is_none()),
            Err(trouble) => {
                self.unrecordable(trouble, printer);
                None
            }
        }
    }

    /// An answer that could not be recorded: one warning a run; with a limit, every later
    /// request is refused, since the ledger no longer counts what was spent.
    fn unrecordable(&self, trouble: Trouble, printer: &Printer) {
        if !self.warned.swap(true, Ordering::AcqRel) {
            printer.notice(&trouble.warning());
        }
        if self.limits.any() {
            let mut unrecorded = self
                .unrecorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            unrecorded.get_or_insert(trouble);
        }
    }
}

/// What `reply` tells the ledger, its headers checked; `None` when it tells nothing. A
/// header that is not a credible number is not counted, and `-v` says so.
fn entry(reply: &Reply, age: Duration, printer: &Printer) -> Option<Entry> {
    let take = |name: &str, header: &Option<String>, most: f64, negative: bool| {
        let header = header.as_deref()?;
        counted(header, most, negative)
            .map_err(|why| {
                printer.verbose(&format!(
                    "credits: {name} {header:?} {why}; not recorded in the ledger"
                ))
            })
            .ok()
    };
    let consumed = take(
        "X-Credits-Consumed",
        &reply.credits_consumed,
        MOST_CONSUMED,
        false,
    );
    let remaining = take(
        "X-Credits-Remaining",
        &reply.credits_remaining,
        MOST_REMAINING,
        true,
    );
    if consumed.is_none() && remaining.is_none() {
        return None;
    }
    Some(Entry {
        consumed,
        remaining,
        age,
    })
}

/// `-v`'s line about a budget after an answer: `credits: 12 consumed, 340 of 500 per 1d`.
pub fn budget_line(reply: &Reply, limits: &Limits, spent: Option<&InBudget>) -> Option<String> {
    let budget = limits.budget?;
    let spent = spent?;
    let this = reply
        .credits_consumed
        .as_deref()
        .and_then(|h| counted(h, MOST_CONSUMED, false).ok())
        .map(|c| format!("{} consumed, ", credits(c)))
        .unwrap_or_default();
    Some(format!(
        "credits: {this}{} of {budget}",
        credits(spent.consumed)
    ))
}
