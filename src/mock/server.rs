//! Accepting connections, one thread each, bounded in number and in time, and the exec mode
//! that runs a command against the mock.

use std::ffi::OsString;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::api;
use super::http::{self, Arrival, Head, Refusal};
use super::log::Exchange;
use super::reply::{self, Next};
use super::{lock, Shared};
use crate::interrupt;

/// What a client may cost: connections, and how long it may keep one busy without progress.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Past this many open connections, a new one gets 503 and is closed.
    pub max_connections: usize,
    /// A request head must be complete this long after the server began waiting for it.
    pub header_timeout: Duration,
    /// A connection that sends no byte of its next request for this long is closed.
    pub idle_timeout: Duration,
    /// A client that sends no byte of its body, or reads no byte of its answer, for this long
    /// is dropped.
    pub progress_timeout: Duration,
}

pub fn serve(listener: TcpListener, shared: Arc<Shared>, limits: Limits) {
    widen_backlog(&listener);
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // Out of file descriptors, most likely: accepting again at once would spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let accepted = Instant::now();
        // Only this thread adds to `open`, so the check cannot race past the cap.
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            refuse_connection(stream, &shared, limits.max_connections);
            continue;
        }
        let slot = Slot::take(&open);
        let shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _slot = slot;
                let _ = connection(&stream, &shared, limits, accepted);
                let _ = stream.shutdown(Shutdown::Both);
            });
    }
}

/// The queue of connections the kernel completes before they are accepted, as long as the
/// system allows (std asks for 128). Past it, a client's handshake waits for a retransmission,
/// a second or more, which its deadlines would then seem to lose: hundreds of clients
/// connecting at once must each get their full time.
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket this listener owns, already listening; on failure the
    // backlog stays as it was.
    unsafe { libc::listen(listener.as_raw_fd(), libc::SOMAXCONN) };
}

/// One open connection, counted until dropped, even if its thread panics.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::SeqCst);
        Slot(Arc::clone(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Over the connection cap: a 503 from the accepting thread, which must never wait on a client.
fn refuse_connection(stream: TcpStream, shared: &Shared, max: usize) {
    let arrived = Arrival::now();
    let _ = stream.set_nonblocking(true);
    // What the client has sent already is read, so that closing sends FIN rather than a reset
    // that could discard the 503 before the client reads it.
    let _ = (&stream).read(&mut [0; 16 * 1024]);
    let refusal = Refusal {
        status: Some(503),
        reason: format!("more than {max} connections are open"),
        arrived,
        request: None,
    };
    refuse(&mut BufWriter::new(&stream), refusal, shared);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Serves the requests of one connection, the first one's deadlines counted from `accepted`.
fn connection(
    stream: &TcpStream,
    shared: &Shared,
    limits: Limits,
    accepted: Instant,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut input = BufReader::new(Timed {
        socket: stream,
        first_byte_by: None,
        head_by: None,
    });
    let mut out = BufWriter::with_capacity(64 * 1024, Drained::new(stream, limits));
    let mut since = accepted;
    loop {
        input.get_mut().await_request(limits, since);
        let (request, length) = match http::read_head(&mut input)? {
            Head::Closed => return Ok(()),
            Head::Refused(refusal) => {
                refuse(&mut out, refusal, shared);
                return Ok(());
            }
            Head::Request(request, length) => (request, length),
        };
        input.get_mut().await_body(limits)?;
        let (request, _reservation) =
            match http::read_body(&mut input, &mut out, request, length, &shared.bodies) {
                Ok(read) => read,
                Err(refusal) => {
                    refuse(&mut out, refusal, shared);
                    return Ok(());
                }
            };
        if api::handle(&request, &mut out, stream, shared) == Next::Close {
            return Ok(());
        }
        since = Instant::now();
    }
}

/// The socket's writes, within the progress deadline: a client that takes no byte of its
/// answer for `progress_timeout` is dropped. Taking bytes is what the kernel says of them: its
/// count of bytes sent and not yet acknowledged (`SIOCOUTQ`) going down, or reaching zero. A
/// write that merely waits its timeout out is not progress: while the client reads nothing,
/// the kernel still grows the send buffer now and then, to megabytes, and each time a write
/// that timed out returns with some bytes taken. Counting that as progress let a client that
/// read nothing hold its connection for several timeouts.
struct Drained<'a> {
    socket: &'a TcpStream,
    timeout: Duration,
    /// What the kernel held unacknowledged just after the last write.
    queued: usize,
    /// When the client last took bytes, or had taken them all.
    progress: Instant,
    /// A write missed the deadline: every later one fails at once, so that flushing what is
    /// left on the way out does not wait a whole timeout more.
    stalled: bool,
}

impl<'a> Drained<'a> {
    fn new(socket: &'a TcpStream, limits: Limits) -> Self {
        Drained {
            socket,
            timeout: limits.progress_timeout,
            queued: 0,
            progress: Instant::now(),
            stalled: false,
        }
    }
}

impl Write for Drained<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stalled {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let now = Instant::now();
        let unacked = unacknowledged(self.socket);
        // Without the kernel's count, a write that did not have to wait is progress.
        if unacked.is_none_or(|n| n == 0 || n < self.queued) {
            self.progress = now;
        }
        let left = self
            .progress
            .checked_add(self.timeout)
            .map_or(self.timeout, |deadline| {
                deadline.saturating_duration_since(now)
            });
        if left.is_zero() {
            self.stalled = true;
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.socket.set_write_timeout(Some(left))?;
        match (&mut &*self.socket).write(buf) {
            Ok(n) => {
                self.queued = unacked.unwrap_or(0) + n;
                if unacked.is_none() && now.elapsed() >= left {
                    self.stalled = true;
                }
                Ok(n)
            }
            // A socket write timeout surfaces as WouldBlock on Unix.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.stalled = true;
                Err(io::ErrorKind::TimedOut.into())
            }
            Err(err) => Err(err),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes sent on `socket` that its peer has not yet acknowledged.
#[cfg(target_os = "linux")]
fn unacknowledged(socket: &TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points to one.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (done == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_socket: &TcpStream) -> Option<usize> {
    None
}

/// Answers a request this server will not serve, logs it, and leaves the connection to close.
fn refuse(out: &mut impl Write, refusal: Refusal, shared: &Shared) {
    if let Some(status) = refusal.status {
        let kind = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        // A reason may quote the request (a bad Content-Length), whatever the client put there.
        let reason = shared.secrets.redact(&refusal.reason);
        let body = crate::wire::ErrorBody::new(kind, reason.as_ref(), None);
        let body = serde_json::to_vec(&body).expect("serializes");
        let headers = [(http::CONTENT_TYPE, reply::JSON.to_string())];
        let _ = http::respond(out, status, &headers, &body, true);
    }
    if let Some(log) = &shared.log {
        log.record(&Exchange {
            arrived: refusal.arrived,
            request: refusal.request.as_deref(),
            status: refusal.status,
            reason: Some(refusal.reason),
            fault: None,
            rule: None,
            secret: None,
        });
    }
}

/// The socket's reads, within deadlines. While a request is awaited, its first byte must come
/// before `first_byte_by` and its whole head before `head_by`, so a client dripping a byte a
/// second cannot hold a thread; otherwise each read must make progress within the socket's
/// read timeout. A missed deadline is `TimedOut`.
struct Timed<'a> {
    socket: &'a TcpStream,
    first_byte_by: Option<Instant>,
    head_by: Option<Instant>,
}

impl Timed<'_> {
    /// Deadlines for the next request, counted from `since`: when the connection was accepted,
    /// or when the last answer was sent.
    fn await_request(&mut self, limits: Limits, since: Instant) {
        // A timeout too large for the clock is no deadline.
        self.first_byte_by = since.checked_add(limits.idle_timeout);
        self.head_by = since.checked_add(limits.header_timeout);
    }

    fn await_body(&mut self, limits: Limits) -> io::Result<()> {
        (self.first_byte_by, self.head_by) = (None, None);
        self.socket.set_read_timeout(Some(limits.progress_timeout))
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.first_byte_by.into_iter().chain(self.head_by).min() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.socket.set_read_timeout(Some(left))?;
        }
        match (&mut self.socket).read(buf) {
            // A socket read timeout surfaces as WouldBlock on Unix.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                Err(io::ErrorKind::TimedOut.into())
            }
            Ok(n) => {
                if n > 0 {
                    self.first_byte_by = None;
                }
                Ok(n)
            }
            Err(err) => Err(err),
        }
    }
}

/// The address a client on this machine uses to reach `addr`: a wildcard address is reached
/// through the loopback address of its family.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Runs `command` with `vars` in its environment, and BLUENEXUS_STATE_DIR and
/// BLUENEXUS_CACHE_DIR in a fresh temporary directory (unless the caller set them), removed when
/// it exits; its exit code, or 128+N when a signal ended it.
pub fn run_command(command: &[OsString], vars: &[(&str, String)]) -> i32 {
    let scratch = match Scratch::new() {
        Ok(scratch) => scratch,
        Err(err) => {
            eprintln!("bnx-mock: error: cannot make a temporary directory for COMMAND: {err}");
            return 74;
        }
    };
    let state = Arc::new((Mutex::new(Child::Running), Condvar::new()));
    let started = interrupt::started(|| {
        let child = Command::new(&command[0])
            .args(&command[1..])
            .envs(vars.iter().map(|(name, value)| (name, value)))
            .envs(scratch.vars())
            .spawn()?;
        let pid = child.id() as libc::pid_t;
        let state = Arc::clone(&state);
        // A SIGTERM for the mock alone (a CI runner cancelling a job, `kill`) is passed on, so
        // that COMMAND does not run on against a server that is gone. Not a SIGINT: Ctrl-C
        // reaches COMMAND from the terminal already, and a second one could cut its clean-up.
        // Either way the mock serves on until COMMAND has exited and its directory is gone.
        Ok((child, move |signal| {
            let (child, ended) = &*state;
            let mut child = lock(child);
            if signal == libc::SIGTERM && *child == Child::Running {
                // SAFETY: kill(2) only, of a child not yet reaped: its pid is still its own.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            while *child != Child::Gone {
                child = ended.wait(child).unwrap_or_else(|p| p.into_inner());
            }
        }))
    });
    let status = match started {
        Ok((mut child, guard)) => {
            let status = child.wait();
            set(&state, Child::Reaped);
            drop(scratch);
            set(&state, Child::Gone);
            drop(guard);
            status
        }
        Err(err) => Err(err),
    };
    interrupt::hold_if_interrupted();
    match status {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(1),
        Err(err) => {
            eprintln!("bnx-mock: error: cannot run {:?}: {err}", command[0]);
            if err.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            }
        }
    }
}

/// Where COMMAND is, for a signal that comes while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Running,
    Reaped,
    /// Reaped, and its directory removed: the mock may end.
    Gone,
}

fn set(state: &(Mutex<Child>, Condvar), to: Child) {
    *lock(&state.0) = to;
    state.1.notify_all();
}

/// COMMAND's own state and cache directories, so that a test run neither reads nor leaves the
/// user's: a temporary directory, removed when this is dropped.
struct Scratch {
    /// Held for its removal on drop.
    _dir: Option<tempfile::TempDir>,
    vars: Vec<(&'static str, std::path::PathBuf)>,
}

impl Scratch {
    const VARS: [(&'static str, &'static str); 2] = [
        ("BLUENEXUS_STATE_DIR", "state"),
        ("BLUENEXUS_CACHE_DIR", "cache"),
    ];

    fn new() -> io::Result<Scratch> {
        let unset: Vec<_> = Self::VARS
            .into_iter()
            .filter(|(name, _)| std::env::var_os(name).is_none())
            .collect();
        if unset.is_empty() {
            return Ok(Scratch {
                _dir: None,
                vars: vec![],
            });
        }
        let dir = tempfile::Builder::new().prefix("bnx-mock-").tempdir()?;
        let mut vars = Vec::new();
        for (name, sub) in unset {
            let path = dir.path().join(sub);
            // 0700, as the directory around it: a cache holds answers.
            std::fs::DirBuilder::new().mode(0o700).create(&path)?;
            vars.push((name, path));
        }
        Ok(Scratch {
            _dir: Some(dir),
            vars,
        })
    }

    fn vars(&self) -> impl Iterator<Item = (&str, &std::path::Path)> {
        self.vars.iter().map(|(name, path)| (*name, path.as_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_reached_through_loopback() {
        let reach = |addr: &str| reachable(addr.parse().unwrap()).to_string();
        assert_eq!(reach("0.0.0.0:80"), "127.0.0.1:80");
        assert_eq!(reach("[::]:80"), "[::1]:80");
        assert_eq!(reach("192.0.2.1:80"), "192.0.2.1:80");
    }
}
