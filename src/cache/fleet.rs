//! The cache a fleet shares (`--store redis://...`): entries of up to [`MAX_SHARED`] bytes are
//! also kept in Redis under `bnx:cache:{KEY}`, for 30 days, so a CI runner reuses what another
//! runner paid for. The bytes are an entry's file, checked as a file is when read back.
//!
//! The connection is the run's, shared with pacing and the ledger, and made at its first
//! command, so a hit on this machine never waits for the network. A store that fails is the
//! store's one warning for the run, and the local cache goes on alone.

use std::sync::Arc;

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
    redis: Arc<Redis>,
}

impl Fleet {
    pub fn new(redis: &Arc<Redis>) -> Fleet {
        redis.falls_back("answers cached on this machine alone");
        Fleet {
            redis: Arc::clone(redis),
        }
    }

    pub fn url(&self) -> &StoreUrl {
        self.redis.url()
    }

    /// The entry the store holds for `key`, if any.
    pub fn get(&self, key: &str, printer: &Printer) -> Option<Vec<u8>> {
        // A bulk reply's own framing comes on top of the entry.
        let bound = MAX_SHARED as u64 + 64;
        let got = self
            .redis
            .query::<Option<Vec<u8>>>(cmd("GET").arg(name(key)), bound);
        got.map_err(|why| self.redis.failed(&why, printer))
            .ok()
            .flatten()
    }

    /// Keeps `bytes` as `key`'s entry, when they are small enough to share.
    pub fn set(&self, key: &str, bytes: &[u8], printer: &Printer) {
        if bytes.len() > MAX_SHARED {
            return;
        }
        let mut set = cmd("SET");
        set.arg(name(key)).arg(bytes).arg("EX").arg(EXPIRY_SECS);
        if let Err(why) = self.redis.query::<()>(&set, crate::store::MAX_REPLY) {
            self.redis.failed(&why, printer);
        }
    }
}

/// The store's key of an entry.
pub fn name(key: &str) -> String {
    format!("{PREFIX}{{{key}}}")
}
