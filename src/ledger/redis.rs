//! The fleet's ledger (`--store redis://...`): the book of every (origin, token) kept in Redis,
//! so that every machine naming the same server shares one budget.
//!
//! Each step is one Lua script run on the server, [`Book::standing`](super::book::Book)'s rule
//! line for line, so recording an answer and reading what the period comes to are one atomic
//! step, timed by the server's clock: machines whose clocks disagree still agree on the
//! minutes, since an answer travels as its age, not its time. Three keys per (origin, token),
//! under the digest of [`crate::pace::key`]: the per-minute sums (a hash), their minutes in
//! order (a sorted set) and the last balance (a hash); they expire a day after the 31 days they
//! keep.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::book::{ms, Balance, Entry, InBudget, Query, Standing};
use crate::store::{Redis, Script};

/// What every key starts with; the digest after it is in braces, a Redis Cluster hash tag, so
/// the keys of one (origin, token) always live on the same node.
pub const PREFIX: &str = "bnx:credits:";

/// Reads the server's clock, and what the rule needs of it: the minute under way and the first
/// minute that counts in a period (`book::first_counted`), and the minutes from one on with
/// their sums, oldest first, a minute after now's counted as now's (`Book::settle`).
const PRELUDE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local MINUTE, KEPT = 60000, 31 * 86400000
local current = math.floor(now / MINUTE)
local function num(x) return string.format('%.17g', x) end
local function first(period) return math.floor((now - period) / MINUTE) end
local function chunks(list, each)
  for i = 1, #list, 1000 do
    local part = {}
    for j = i, math.min(i + 999, #list) do part[#part + 1] = list[j] end
    each(part)
  end
end
local function minutes(from)
  local out = {}
  chunks(redis.call('ZRANGEBYSCORE', KEYS[2], from, '+inf'), function(part)
    local sums = redis.call('HMGET', KEYS[1], unpack(part))
    for j = 1, #part do
      out[#out + 1] = {math.min(tonumber(part[j]), current), tonumber(sums[j]) or 0}
    end
  end)
  return out
end
"#;

/// Records an answer: ARGV[3] credits consumed (or ''), ARGV[4] the balance (or ''), ARGV[5]
/// its age in ms. Then forgets the minutes no period can count, and keeps the keys a day past
/// the last one that can.
const RECORD: &str = r#"
local at = now - tonumber(ARGV[5])
if ARGV[3] ~= '' then
  local minute = math.floor(at / MINUTE)
  redis.call('HINCRBYFLOAT', KEYS[1], minute, ARGV[3])
  redis.call('ZADD', KEYS[2], minute, minute)
end
if ARGV[4] ~= '' and tonumber(redis.call('HGET', KEYS[3], 'at') or -1) <= at then
  redis.call('HSET', KEYS[3], 'credits', ARGV[4], 'at', num(at))
end
local gone = '(' .. first(KEPT)
chunks(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', gone), function(part)
  redis.call('HDEL', KEYS[1], unpack(part))
end)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', gone)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], KEPT + 86400000) end
"#;

/// What the book says (`Book::standing`): ARGV[1] the budget's limit (or ''), ARGV[2] its
/// period in ms, ARGV[6..] the periods asked. Returns the budget's consumption and the ms
/// until it frees (or ''), the balance and its time (or ''), and each period's consumption.
const STANDING: &str = r#"
local limit, period = ARGV[1], tonumber(ARGV[2])
local longest = period
for i = 6, #ARGV do longest = math.max(longest, tonumber(ARGV[i])) end
local all = minutes(first(longest))
local function consumed(p)
  local from, sum = first(p), 0
  for _, m in ipairs(all) do if m[1] >= from then sum = sum + m[2] end end
  return sum
end
local reply = {'', '', '', ''}
if limit ~= '' then
  limit = tonumber(limit)
  local sum = consumed(period)
  reply[1] = num(sum)
  if sum >= limit and limit > 0 then
    local from, left = first(period), sum
    for _, m in ipairs(all) do
      if m[1] >= from then
        left = left - m[2]
        if left < limit then
          reply[2] = num(math.max(0, (m[1] + 1) * MINUTE + period - now))
          break
        end
      end
    end
  end
end
local balance = redis.call('HMGET', KEYS[3], 'credits', 'at')
if balance[1] and balance[2] then
  reply[3], reply[4] = balance[1], num(math.min(tonumber(balance[2]), now))
end
for i = 6, #ARGV do reply[#reply + 1] = num(consumed(tonumber(ARGV[i]))) end
return reply
"#;

/// The books in the fleet's store.
pub struct RedisLedger {
    redis: Arc<Redis>,
    standing: Script,
    record: Script,
}

impl RedisLedger {
    /// Books kept through `redis`, the run's connection.
    pub fn new(redis: Arc<Redis>) -> RedisLedger {
        RedisLedger {
            redis,
            standing: Script::new(format!("{PRELUDE}{STANDING}")),
            record: Script::new(format!("{PRELUDE}{RECORD}{STANDING}")),
        }
    }

    pub fn redis(&self) -> &Arc<Redis> {
        &self.redis
    }

    /// What the book of `key` says in answer to `query`.
    pub fn standing(&self, key: &str, query: &Query) -> io::Result<Standing> {
        self.run(&self.standing, key, None, query)
    }

    /// Records `entry` in the book of `key`, and says what it comes to.
    pub fn record(&self, key: &str, entry: &Entry, query: &Query) -> io::Result<Standing> {
        self.run(&self.record, key, Some(entry), query)
    }

    fn run(
        &self,
        script: &Script,
        key: &str,
        entry: Option<&Entry>,
        query: &Query,
    ) -> io::Result<Standing> {
        let keys = ["minutes", "index", "balance"].map(|k| format!("{PREFIX}{{{key}}}:{k}"));
        let number = |n: Option<f64>| n.map(|n| n.to_string()).unwrap_or_default();
        let mut args = vec![
            number(query.budget.map(|b| b.limit)),
            query.budget.map_or(0, |b| ms(b.period)).to_string(),
            number(entry.and_then(|e| e.consumed)),
            number(entry.and_then(|e| e.remaining)),
            entry.map_or(0, |e| ms(e.age)).to_string(),
        ];
        args.extend(query.periods.iter().map(|&p| ms(p).to_string()));
        let reply: Vec<String> = self.redis.eval(script, &keys, &args)?;
        parse(&reply, query).ok_or_else(|| {
            io::Error::other(format!(
                "{}: unexpected answer {reply:?} to the ledger script",
                self.redis.url()
            ))
        })
    }
}

/// The script's reply, checked: a store that says a sum is negative, or a wait past what a
/// period can hold, is broken, and a limit must not be checked against it.
fn parse(reply: &[String], query: &Query) -> Option<Standing> {
    if reply.len() != 4 + query.periods.len() {
        return None;
    }
    let sum = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    let budget = match (query.budget, present(&reply[0])) {
        (Some(budget), Some(consumed)) => {
            let longest = ms(budget.period) + 60_000;
            let frees_in = match present(&reply[1]) {
                None => None,
                Some(wait) => Some(wait.parse::<u64>().ok().filter(|&w| w <= longest)?),
            };
            Some(InBudget {
                consumed: sum(consumed)?,
                frees_in: frees_in.map(Duration::from_millis),
            })
        }
        (None, None) => None,
        _ => return None,
    };
    let balance = match (present(&reply[2]), present(&reply[3])) {
        (Some(credits), Some(at)) => Some(Balance {
            credits: credits.parse::<f64>().ok().filter(|c| c.is_finite())?,
            at: at.parse().ok()?,
        }),
        (None, None) => None,
        _ => return None,
    };
    let consumed = reply[4..].iter().map(|c| sum(c)).collect::<Option<_>>()?;
    Some(Standing {
        consumed,
        budget,
        balance,
    })
}

/// A reply's field, unless it is empty: the script's "none".
fn present(text: &str) -> Option<&str> {
    Some(text).filter(|t| !t.is_empty())
}
