//! Pacing in the fleet's store (`--store redis://...`): the slots of every (origin, token) kept in
//! Redis, so that every machine naming the same server shares one budget.
//!
//! Each attempt is one Lua script run on the server, [`super::reserve`]'s rule line for line,
//! so the check and the take are one atomic step, and it reads the server's clock: machines
//! whose clocks disagree still agree on the slots, since only waits travel back. Keys are the
//! digests of [`super::key`] under a prefix, and expire by themselves once they cannot matter.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ::redis::FromRedisValue;

use super::rule::{margin, ms, FURTHEST};
use super::Store;
use crate::rate::Rate;
use crate::store::{Redis, Script};

/// What every key starts with; the digest after it is in braces, a Redis Cluster hash tag, so
/// the two keys of one (origin, token) always live on the same node.
pub const PREFIX: &str = "bnx:pace:";

/// Reads the server's clock, in Unix milliseconds, and gives numbers back to Redis as integers
/// (Redis would write a large Lua number in exponent form).
const PRELUDE: &str = r#"
-- Redis before 5 refuses writes after TIME unless the script's effects are replicated.
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function int(x) return string.format('%.0f', x) end
-- How long a key outlives the last moment it can matter, in ms.
local slack = 1000
"#;

/// `pace::reserve` on KEYS[1], the slots taken (a list, oldest first), and KEYS[2], the end of
/// a pause. ARGV: requests, window, margin and the longest wait accepted, in ms. Returns
/// {1, wait} for a slot taken, {0, wait} for a wait refused.
const RESERVE: &str = r#"
local n, window, margin, limit =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local at = math.max(now, tonumber(redis.call('GET', KEYS[2]) or 0))
local taken = redis.call('LLEN', KEYS[1])
if taken > 0 then
  at = math.max(at, tonumber(redis.call('LINDEX', KEYS[1], -1)))
end
if n > 0 and taken >= n then
  at = math.max(at, tonumber(redis.call('LINDEX', KEYS[1], -n)) + window + margin)
end
if at - now > limit + margin then
  return {0, at - now}
end
if n > 0 then
  redis.call('RPUSH', KEYS[1], int(at))
  redis.call('LTRIM', KEYS[1], -n, -1)
  -- After its last slot plus a window no slot can hold anyone back.
  redis.call('PEXPIRE', KEYS[1], int(at - now + window + margin + slack))
else
  redis.call('DEL', KEYS[1])
end
return {1, at - now}
"#;

/// `Store::pause` on KEYS[2]: every machine waits ARGV[1] ms from now, unless a longer pause
/// already holds it.
const PAUSE: &str = r#"
local resume = now + tonumber(ARGV[1])
if resume > tonumber(redis.call('GET', KEYS[2]) or 0) then
  redis.call('SET', KEYS[2], int(resume), 'PX', int(resume - now + slack))
end
return 1
"#;

/// A pacing script: the prelude, then `body`.
fn script(body: &str) -> Script {
    Script::new(format!("{PRELUDE}{body}"))
}

/// Slots in the fleet's store.
pub struct RedisStore {
    redis: Arc<Redis>,
    reserve: Script,
    pause: Script,
}

impl RedisStore {
    /// Slots kept through `redis`, the run's connection.
    pub fn new(redis: Arc<Redis>) -> RedisStore {
        RedisStore {
            redis,
            reserve: script(RESERVE),
            pause: script(PAUSE),
        }
    }

    /// The run's connection, which says when it failed.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Runs `script` on the two keys of `key`.
    fn run<T: FromRedisValue>(&self, script: &Script, key: &str, args: &[u64]) -> io::Result<T> {
        let keys = [
            format!("{PREFIX}{{{key}}}:slots"),
            format!("{PREFIX}{{{key}}}:paused"),
        ];
        self.redis.eval(script, &keys, args)
    }
}

impl Store for RedisStore {
    fn reserve(
        &self,
        key: &str,
        rate: Rate,
        limit: Duration,
    ) -> io::Result<Result<Duration, Duration>> {
        let window = ms(rate.window);
        let args = [
            u64::from(rate.requests),
            window,
            margin(rate.window),
            ms(limit),
        ];
        let longest = i64::try_from(args[3]).unwrap_or(i64::MAX);
        // A pause is at most a day, and the last slot no further: a store that says it is
        // longer is broken, and would refuse every request for as long.
        let possible = i64::try_from(ms(FURTHEST) + window + args[2]).unwrap_or(i64::MAX);
        let wait = |millis: i64| Duration::from_millis(millis.unsigned_abs());
        // A wait past the limit from a server is not slept: it is a broken store.
        match self.run::<(i64, i64)>(&self.reserve, key, &args)? {
            (1, millis) if (0..=longest).contains(&millis) => Ok(Ok(wait(millis))),
            (0, millis) if (1..=possible).contains(&millis) => Ok(Err(wait(millis))),
            reply => Err(io::Error::other(format!(
                "{}: unexpected answer {reply:?} to the pacing script",
                self.redis.url()
            ))),
        }
    }

    fn pause(&self, key: &str, wait: Duration) -> io::Result<()> {
        self.run::<i64>(&self.pause, key, &[ms(wait)]).map(drop)
    }
}
