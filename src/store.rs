//! The fleet's store (`--store redis://...`): one connection to Redis per run, shared by the
//! threads of a run and by what machines share through it: the pacing slots, the credit ledger,
//! the answer cache.
//!
//! Whatever the server does, nothing here takes longer than [`LIMIT`] or reads more than
//! [`MAX_REPLY`] bytes of a reply: a store that is slow, gone, broken or hostile is an error for
//! the caller to fall back on, never a hang or a memory blow-up. Its failure is one warning
//! for the run, whoever meets it first, saying what each of its users falls back to.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use ::redis::{
    cmd, Cmd, ErrorKind, FromRedisValue, Parser, RedisResult, ServerErrorKind, ToRedisArgs,
};

use crate::printer::Printer;
pub use crate::store_url::StoreUrl;

/// The longest the store may take to connect, or to run one command, its reply read whole.
pub const LIMIT: Duration = Duration::from_secs(2);

/// The most of a reply that is read: ours are a few numbers, or an error's line.
const MAX_REPLY: u64 = 64 * 1024;

/// A Lua script, with the SHA-1 that EVALSHA names it by.
pub struct Script {
    code: String,
    sha: String,
}

impl Script {
    pub fn new(code: String) -> Script {
        let sha = ::redis::Script::new(&code).get_hash().to_string();
        Script { code, sha }
    }
}

/// One connection to the store, shared by pacing, the ledger and the cache of a run.
pub struct Redis {
    url: StoreUrl,
    /// `Err` once a command has failed, or when the connection could not be made: a
    /// connection in an unknown state is not used again, and the callers that queue behind a
    /// failure fail at once instead of waiting in turn.
    link: Mutex<Result<Link, Down>>,
    /// What each user of the store does without it, for the one warning of its failure.
    fallbacks: Mutex<Vec<String>>,
    warned: AtomicBool,
}

/// Why the connection is not used.
enum Down {
    /// It could not be made: why.
    Unreachable(String),
    Failed,
}

impl Redis {
    /// Connects and sees the server answer, within [`LIMIT`] whatever the network does: the
    /// connection is made on a thread of its own, since resolving a host name has no timeout.
    /// A store that cannot be reached is not an error yet: each command fails, saying why, and
    /// each user of the store decides what that costs.
    pub fn connect(url: &StoreUrl) -> Redis {
        let (sender, receiver) = mpsc::channel();
        let to = url.clone();
        thread::spawn(move || sender.send(Link::open(&to)));
        let link = match receiver.recv_timeout(LIMIT) {
            Ok(result) => result.map_err(|e| Down::Unreachable(url.shown(e))),
            Err(_) => Err(Down::Unreachable(url.shown(too_slow()))),
        };
        Redis {
            url: url.clone(),
            link: Mutex::new(link),
            fallbacks: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        }
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// `what` is what a user of the store does without it (`pacing on this machine alone`):
    /// said in the warning of [`Redis::failed`].
    pub fn falls_back(&self, what: impl Into<String>) {
        self.fallbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(what.into());
    }

    /// A user of the store met `why` and stops using it for the rest of the run; so does every
    /// other, and one warning says so for all of them, whoever met the failure first.
    pub fn failed(&self, why: &io::Error, printer: &Printer) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if link.is_ok() {
            *link = Err(Down::Failed);
        }
        drop(link);
        if self.warned.swap(true, Ordering::AcqRel) {
            return;
        }
        let fallbacks = self
            .fallbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut warning = format!("warning: {}", self.trouble(why));
        if !fallbacks.is_empty() {
            warning = format!("{warning}; {}", fallbacks.join(", "));
        }
        printer.notice(&warning);
    }

    /// `why`, a command's failure, as a sentence about the store: `the store URL cannot be
    /// reached (...)`, or `the store failed (URL: ...)`.
    pub fn trouble(&self, why: &io::Error) -> String {
        match &*self.link.lock().unwrap_or_else(PoisonError::into_inner) {
            Err(Down::Unreachable(_)) => format!("the store {}", why),
            _ => format!("the store failed ({why})"),
        }
    }

    /// Runs `script` on `keys` by its SHA-1, and by its code when the server does not have it
    /// (a restart, a failover, `SCRIPT FLUSH`), which also caches it again. Both within
    /// [`LIMIT`] in all.
    pub fn eval<T: FromRedisValue, A: ToRedisArgs>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[A],
    ) -> io::Result<T> {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = |why: String| io::Error::other(format!("{}: {}", self.url, why));
        let redis = match link.as_mut() {
            Ok(redis) => redis,
            Err(Down::Unreachable(why)) => {
                return Err(io::Error::other(format!(
                    "{} cannot be reached ({why})",
                    self.url
                )))
            }
            Err(Down::Failed) => return Err(failed("the connection failed earlier".into())),
        };
        let deadline = Instant::now() + LIMIT;
        let mut eval = |command: &str, script: &str| {
            let mut eval = cmd(command);
            eval.arg(script).arg(keys.len()).arg(keys).arg(args);
            redis.query(&eval, deadline)
        };
        let result = match eval("EVALSHA", &script.sha) {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                eval("EVAL", &script.code)
            }
            result => result,
        };
        result.map_err(|e| {
            *link = Err(Down::Failed);
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
