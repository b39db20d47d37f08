//! A fleet's store (`--rate-store redis://...`): the slots of every (origin, token) kept in
//! Redis, so that every machine naming the same server shares one budget.
//!
//! Each attempt is one Lua script run on the server, [`super::reserve`]'s rule line for line,
//! so the check and the take are one atomic step, and it reads the server's clock: machines
//! whose clocks disagree still agree on the slots, since only waits travel back. Keys are the
//! digests of [`super::key`] under a prefix, and expire by themselves once they cannot matter.
//!
//! Whatever the server does, nothing here takes longer than [`LIMIT`] or reads more than
//! [`MAX_REPLY`] bytes of a reply: a store that is slow, gone, broken or hostile is an error for
//! the caller to fall back on, never a hang or a memory blow-up.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{mpsc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use ::redis::{cmd, Cmd, ErrorKind, FromRedisValue, Parser, RedisResult, Script, ServerErrorKind};
use percent_encoding::percent_decode_str;
use ureq::http::Uri;

use super::{margin, ms, Rate, Store, FURTHEST};

/// The longest the store may take to connect, or to run one pacing step, its reply read whole.
pub const LIMIT: Duration = Duration::from_secs(2);

/// The most of a reply that is read: ours are two numbers, or an error's line.
const MAX_REPLY: u64 = 64 * 1024;

/// The longest a store's error may be in a warning.
const MAX_SHOWN: usize = 300;

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

/// A script, with the SHA-1 that EVALSHA names it by.
struct Lua {
    code: String,
    sha: String,
}

impl Lua {
    fn new(body: &str) -> Lua {
        let code = format!("{PRELUDE}{body}");
        let sha = Script::new(&code).get_hash().to_string();
        Lua { code, sha }
    }
}

/// `--rate-store`: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, checked. Shown (and debugged)
/// without the user information, which may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    host: String,
    port: u16,
    db: u32,
    username: Option<String>,
    password: Option<String>,
}

impl FromStr for StoreUrl {
    type Err = String;

    /// Says what is wrong without quoting the URL: it may hold a password.
    fn from_str(s: &str) -> Result<StoreUrl, String> {
        let uri: Uri = s
            .parse()
            .map_err(|_| "not a URL (expected redis://HOST:PORT[/DB])".to_string())?;
        match uri.scheme_str() {
            Some("redis") => {}
            Some("rediss") => {
                return Err(
                    "rediss:// (TLS) is not supported: use redis:// on a private \
                            network, or a TLS tunnel to the server"
                        .into(),
                )
            }
            _ => return Err("the scheme must be redis://".into()),
        }
        let authority = uri.authority().ok_or("no host")?;
        if uri.query().is_some() || s.contains('#') {
            return Err("a query or fragment has no place in it".into());
        }
        let (userinfo, hostport) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority.as_str()),
        };
        let host = authority.host();
        if host.is_empty() {
            return Err("no host".into());
        }
        // The URI parser lets a port out of range or not a number pass as no port.
        let port = match hostport[host.len()..].strip_prefix(':') {
            None => 6379,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port > 0)
                .ok_or("the port must be a number from 1 to 65535")?,
        };
        let db = match uri.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| "the path must be a database number, such as /0".to_string())?,
        };
        let decode = |part: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|p| p.into_owned())
                .map_err(|_| "the user information is not valid UTF-8".to_string())
        };
        let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((user, password)) => (
                Some(decode(user)?).filter(|u| !u.is_empty()),
                Some(decode(password)?).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        // Without a password there is no AUTH: a user alone would silently log in as default.
        if username.is_some() && password.is_none() {
            return Err("a user name needs a password: redis://USER:PASSWORD@HOST".into());
        }
        Ok(StoreUrl {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            db,
            username,
            password,
        })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.username.is_some() || self.password.is_some() {
            "***@"
        } else {
            ""
        };
        match self.host.contains(':') {
            true => write!(f, "redis://{auth}[{}]:{}/{}", self.host, self.port, self.db),
            false => write!(f, "redis://{auth}{}:{}/{}", self.host, self.port, self.db),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl StoreUrl {
    /// What went wrong, as a warning may show it: on one line (a server's text may hold line
    /// breaks, or control characters for the terminal), not too long, and with the password,
    /// should a server or library ever echo it, replaced by `***`.
    fn shown(&self, why: impl fmt::Display) -> String {
        let mut text = why.to_string();
        if let Some(password) = &self.password {
            text = text.replace(password.as_str(), "***");
        }
        let text = text.replace(|c: char| c.is_control(), " ");
        let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some((cut, _)) = text.char_indices().nth(MAX_SHOWN) {
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }
}

/// Slots in Redis, through one connection shared by the threads of a run.
pub struct RedisStore {
    url: StoreUrl,
    /// `None` once a command has failed: a connection in an unknown state is not used again,
    /// and the callers that queue behind a failure fail at once instead of waiting in turn.
    link: Mutex<Option<Link>>,
    reserve: Lua,
    pause: Lua,
}

impl RedisStore {
    /// Connects and sees the server answer, within [`LIMIT`] whatever the network does: the
    /// connection is made on a thread of its own, since resolving a host name has no timeout.
    pub fn connect(url: &StoreUrl) -> Result<RedisStore, String> {
        let (sender, receiver) = mpsc::channel();
        let to = url.clone();
        thread::spawn(move || sender.send(Link::open(&to)));
        let link = match receiver.recv_timeout(LIMIT) {
            Ok(result) => result.map_err(|e| url.shown(e))?,
            Err(_) => return Err(url.shown(too_slow())),
        };
        Ok(RedisStore {
            url: url.clone(),
            link: Mutex::new(Some(link)),
            reserve: Lua::new(RESERVE),
            pause: Lua::new(PAUSE),
        })
    }

    /// Runs `script` on the two keys of `key` by its SHA-1, and by its code when the server
    /// does not have it (a restart, a failover, `SCRIPT FLUSH`), which also caches it again.
    /// Both within [`LIMIT`] in all.
    fn run<T: FromRedisValue>(&self, script: &Lua, key: &str, args: &[u64]) -> io::Result<T> {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = |why: String| io::Error::other(format!("{}: {}", self.url, why));
        let Some(redis) = link.as_mut() else {
            return Err(failed("the connection failed earlier".into()));
        };
        let keys = [
            format!("{PREFIX}{{{key}}}:slots"),
            format!("{PREFIX}{{{key}}}:paused"),
        ];
        let deadline = Instant::now() + LIMIT;
        let mut eval = |command: &str, script: &str| {
            let mut eval = cmd(command);
            eval.arg(script).arg(keys.len()).arg(&keys).arg(args);
            redis.query(&eval, deadline)
        };
        let result = match eval("EVALSHA", &script.sha) {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                eval("EVAL", &script.code)
            }
            result => result,
        };
        result.map_err(|e| {
            *link = None;
            failed(self.url.shown(e))
        })
    }
}

/// A connection to the server that bounds every command: in time, to a deadline, however the
/// server drips its reply; in memory, to [`MAX_REPLY`] bytes, whatever size a reply announces
/// (`$2000000000`). The redis crate's own connection bounds neither (its timeouts are per read,
/// and it reads as much as a reply says it holds), so the crate packs the commands and parses
/// the replies, and the socket is held here.
struct Link(TcpStream);

impl Link {
    /// Connects, logs in and selects the database, or else sees the server answer a PING.
    fn open(url: &StoreUrl) -> RedisResult<Link> {
        let deadline = Instant::now() + LIMIT;
        let mut refused = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        let mut stream = None;
        for address in (url.host.as_str(), url.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&address, LIMIT) {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(e) => refused = e,
            }
        }
        let stream = stream.ok_or(refused)?;
        stream.set_nodelay(true)?;
        let mut link = Link(stream);
        if let Some(password) = &url.password {
            let mut auth = cmd("AUTH");
            auth.arg(url.username.as_deref()).arg(password);
            link.query::<()>(&auth, deadline)?;
        }
        if url.db != 0 {
            link.query::<()>(cmd("SELECT").arg(url.db), deadline)?;
        }
        if url.password.is_none() && url.db == 0 {
            link.query::<()>(&cmd("PING"), deadline)?;
        }
        Ok(link)
    }

    /// Sends `command` and reads its reply, both by `deadline`.
    fn query<T: FromRedisValue>(&mut self, command: &Cmd, deadline: Instant) -> RedisResult<T> {
        let mut socket = Deadline {
            stream: &self.0,
            deadline,
        };
        socket.write_all(&command.get_packed_command())?;
        let mut reply = socket.take(MAX_REPLY);
        let value = Parser::new().parse_value(&mut reply);
        if value.is_err() && reply.limit() == 0 {
            let why = format!("a reply larger than {} KiB", MAX_REPLY >> 10);
            return Err(io::Error::other(why).into());
        }
        Ok(T::from_redis_value(value?.extract_error()?)?)
    }
}

/// The socket, each read and write given what is left of the time until `deadline`.
struct Deadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(too_slow());
        }
        Ok(left)
    }
}

/// A read or write that timed out, as a warning says it.
fn too_slow() -> io::Error {
    let why = format!("no answer within {}s", LIMIT.as_secs());
    io::Error::new(io::ErrorKind::TimedOut, why)
}

/// Linux says a socket timeout with `WouldBlock`, other systems with `TimedOut`.
fn timed<T>(result: io::Result<T>) -> io::Result<T> {
    result.map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => too_slow(),
        _ => e,
    })
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        timed(self.stream.read(buf))
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        timed(self.stream.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
                self.url
            ))),
        }
    }

    fn pause(&self, key: &str, wait: Duration) -> io::Result<()> {
        self.run::<i64>(&self.pause, key, &[ms(wait)]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<StoreUrl, String> {
        s.parse()
    }

    #[test]
    fn urls_name_a_host_an_optional_port_and_database() {
        let u = url("redis://10.0.0.5:6380/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("10.0.0.5", 6380, 2));
        assert_eq!(u.to_string(), "redis://10.0.0.5:6380/2");
        assert_eq!(
            url("redis://cache.internal").unwrap().to_string(),
            "redis://cache.internal:6379/0"
        );
        assert_eq!(
            url("redis://[::1]:7000/").unwrap().to_string(),
            "redis://[::1]:7000/0"
        );
    }

    #[test]
    fn a_password_is_kept_for_the_server_and_never_shown() {
        let u = url("redis://:s%40cret@h:1/0").unwrap();
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.username, None);
        assert_eq!(u.to_string(), "redis://***@h:1/0");
        assert!(!format!("{u:?}").contains("cret"));
        assert_eq!(u.shown("WRONGPASS s@cret"), "WRONGPASS ***");
        let u = url("redis://ci:pw@h").unwrap();
        assert_eq!(u.username.as_deref(), Some("ci"));
        assert_eq!(u.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_stores_error_is_shown_on_one_short_line() {
        let u = url("redis://h").unwrap();
        assert_eq!(
            u.shown("Parse error:\r\n  Unexpected `x`\n\tExpected `\\r\\n`\u{1b}[31m"),
            "Parse error: Unexpected `x` Expected `\\r\\n` [31m"
        );
        let long = u.shown("é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_SHOWN + 3);
        assert!(long.ends_with("é..."));
    }

    #[test]
    fn bad_urls_say_why_without_quoting_them() {
        for (bad, why) in [
            ("", "not a URL"),
            ("localhost:6379", "scheme"),
            ("http://h:1", "scheme"),
            ("rediss://h:1", "TLS"),
            ("redis://h:0", "port"),
            ("redis://h:/0", "port"),
            ("redis://h:99999", "port"),
            ("redis://h:x", "port"),
            ("redis://h:1/x", "database number"),
            ("redis://h:1/0/1", "database number"),
            ("redis://h:1/0?x=1", "query"),
            ("redis://h:1/0#f", "fragment"),
            ("redis://:pw@:1", "host"),
            ("redis://ci@h:1", "needs a password"),
            ("redis://ci:@h:1", "needs a password"),
        ] {
            let err = url(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains("pw"), "{bad:?}: {err}");
        }
    }
}
