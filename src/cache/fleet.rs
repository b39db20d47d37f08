//! The cache a fleet shares (`--store redis://...`): entries of up to [`MAX_SHARED`] bytes are
//! also kept in Redis under `bnx:cache:{KEY}`, for 30 days, so a CI runner reuses what another
//! runner paid for. The bytes are an entry's file, checked as a file is when read back.
//!
//! The connection is made the first time the local cache misses, so a hit never waits for the
//! network. A store that fails costs one warning, and the local cache goes on alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use ::redis::cmd;

use crate::printer::Printer;
use crate::store::{Redis, StoreUrl};

/// What every key starts with; the digest after it is in braces, as the pacing keys are.
pub const PREFIX: &str = "bnx:cache:";

/// The largest entry kept in the store.
pub const MAX_SHARED: usize = 1 << 20;

/// How long the store keeps an entry: past any DURATION worth sharing.
const EXPIRY_SECS: u64 = 30 * 24 * 60 * 60;

pub struct Fleet {
    url: StoreUrl,
    redis: OnceLock<Option<Redis>>,
    /// A warning was given: the store is not asked again.
    failed: AtomicBool,
}

impl Fleet {
    pub fn new(url: &StoreUrl) -> Fleet {
        Fleet {
            url: url.clone(),
            redis: OnceLock::new(),
            failed: AtomicBool::new(false),
        }
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// The entry the store holds for `key`, if any.
    pub fn get(&self, key: &str, printer: &Printer) -> Option<Vec<u8>> {
        let redis = self.redis(printer)?;
        // A bulk reply's own framing comes on top of the entry.
        let bound = MAX_SHARED as u64 + 64;
        let got = redis.query::<Option<Vec<u8>>>(cmd("GET").arg(name(key)), bound);
        got.map_err(|why| self.warn(&why.to_string(), printer))
            .ok()
            .flatten()
    }

    /// Keeps `bytes` as `key`'s entry, when they are small enough to share.
    pub fn set(&self, key: &str, bytes: &[u8], printer: &Printer) {
        if bytes.len() > MAX_SHARED {
            return;
        }
        let Some(redis) = self.redis(printer) else {
            return;
        };
        let mut set = cmd("SET");
        set.arg(name(key)).arg(bytes).arg("EX").arg(EXPIRY_SECS);
        if let Err(why) = redis.query::<()>(&set, crate::store::MAX_REPLY) {
            self.warn(&why.to_string(), printer);
        }
    }

    fn redis(&self, printer: &Printer) -> Option<&Redis> {
        if self.failed.load(Ordering::Acquire) {
            return None;
        }
        let redis = self.redis.get_or_init(|| {
            connect(&self.url)
                .map_err(|why| self.warn(&format!("cannot be reached ({why})"), printer))
                .ok()
        });
        redis
            .as_ref()
            .filter(|_| !self.failed.load(Ordering::Acquire))
    }

    /// One warning for the run, whichever worker meets the failure first.
    fn warn(&self, why: &str, printer: &Printer) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            printer.notice(&format!(
                "warning: the cache store {} failed: {why}; answers are cached on this machine alone",
                self.url
            ));
        }
    }
}

/// The connection to the fleet's store: the one place the cache makes it, so that it can
/// become the connection the run shares with pacing and the ledger.
fn connect(url: &StoreUrl) -> Result<Redis, String> {
    Redis::connect(url)
}

/// The store's key of an entry.
pub fn name(key: &str) -> String {
    format!("{PREFIX}{{{key}}}")
}
