//! The one scripted HTTP server, for what the mock will not do on purpose: echo the token,
//! send endless headers, drip bytes, hold its answer back, say nothing at all. A std socket on
//! 127.0.0.1 (port 0) that plays a script on each connection and records what it received.
//!
//! ```text
//! let server = Scripted::answering(|request| http("200 OK", "", "hi"));   // every request
//! let server = Scripted::replies(vec![vec![Step::Send(head), Step::Silence]]); // in order
//! let server = Scripted::start(|request| vec![Step::Send(..), Step::Sleep(..), ..]);
//! bnx.env("BLUENEXUS_BASE_URL", &server.origin);
//! server.requests() // what every connection made before this call sent
//! server.received() // the same, as one text
//! ```
//!
//! A connection carries one request: the script's steps end by closing it. The server reads
//! the whole request, head and body (by its Content-Length), before the script runs: closing
//! on unread bytes resets the connection, and a client may meet the reset before the answer
//! (earlier tests were flaky so). `Scripted::early` answers after the head, on purpose.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the server waits for the rest of a request, and `requests` for the server.
const PATIENCE: Duration = Duration::from_secs(10);
/// A request head longer than this is taken as it stands, the rest left unread.
const HEAD_LIMIT: usize = 64 * 1024;
/// What `requests` sends to learn that every earlier connection was read.
const SENTINEL: &str = "GET /scripted-sentinel HTTP/1.1\r\n\r\n";

/// A request as received: the head up to and with its blank line, and the body (empty when
/// the server answers early). A read that failed or timed out leaves what had arrived.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// One step of a reply. The steps run in order; one that finds the client gone ends them.
pub enum Step {
    /// Writes these bytes.
    Send(Vec<u8>),
    /// Waits this long.
    Sleep(Duration),
    /// Writes these bytes again and again until the client goes away.
    Repeat(Vec<u8>),
    /// Reads up to this many more bytes (of a body left unread) and drops them.
    Read(usize),
    /// Says on the channel that the steps before it were done.
    Notify(Sender<()>),
    /// Waits for a word on the channel; if its sender is dropped instead, ends the reply.
    Await(Receiver<()>),
    /// Answers nothing more and holds the connection until the client goes away.
    Silence,
    /// Shuts the connection down both ways.
    Close,
    /// Resets the connection (RST), as a close on unread bytes does.
    Reset,
}

type Script = dyn FnMut(&Request) -> Vec<Step> + Send;

/// A running scripted server; it serves until the test binary ends.
pub struct Scripted {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    log: Arc<Log>,
}

impl Scripted {
    /// Answers each request, once read whole, with the steps `script` gives for it.
    pub fn start(script: impl FnMut(&Request) -> Vec<Step> + Send + 'static) -> Scripted {
        Scripted::serve(true, Box::new(script))
    }

    /// As `start`, but the script runs once the head is read, the body left unread: for a
    /// server that refuses a large request before taking it.
    pub fn early(script: impl FnMut(&Request) -> Vec<Step> + Send + 'static) -> Scripted {
        Scripted::serve(false, Box::new(script))
    }

    /// Answers each request, once read whole, with the bytes `reply` gives for it.
    pub fn answering(mut reply: impl FnMut(&Request) -> Vec<u8> + Send + 'static) -> Scripted {
        Scripted::start(move |request| vec![Step::Send(reply(request))])
    }

    /// Plays the n-th reply on the n-th connection; one beyond them is closed unanswered.
    pub fn replies(replies: Vec<Vec<Step>>) -> Scripted {
        let mut replies = VecDeque::from(replies);
        Scripted::start(move |_| replies.pop_front().unwrap_or_default())
    }

    /// The requests of every connection made before this call, in the order they were made:
    /// a sentinel connection is made and waited for, as connections are accepted in order.
    pub fn requests(&self) -> Vec<Request> {
        let mut sentinel = TcpStream::connect(&self.addr).unwrap();
        sentinel.write_all(SENTINEL.as_bytes()).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut slots = self.log.slots.lock().unwrap();
        loop {
            let ours = slots.iter().position(|s| matches!(s, Slot::Sentinel));
            if let Some(at) = ours.filter(|&at| !slots[..at].contains(&Slot::Reading)) {
                slots[at] = Slot::Passed;
                return slots[..at]
                    .iter()
                    .filter_map(|slot| match slot {
                        Slot::Read(request) => Some(request.clone()),
                        _ => None,
                    })
                    .collect();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the server read no sentinel in {PATIENCE:?}"
            );
            slots = self.log.changed.wait_timeout(slots, left).unwrap().0;
        }
    }

    /// Every byte that the requests of `requests` carried, heads and bodies, as text.
    pub fn received(&self) -> String {
        let requests = self.requests();
        requests
            .iter()
            .map(|r| format!("{}{}", r.head, String::from_utf8_lossy(&r.body)))
            .collect()
    }

    fn serve(with_body: bool, script: Box<Script>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Log::default());
        let script = Arc::new(Mutex::new(script));
        let accepted = Arc::clone(&log);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                // The slot is taken in the order of acceptance, which `requests` relies on.
                let slot = accepted.take_slot();
                let (log, script) = (Arc::clone(&accepted), Arc::clone(&script));
                thread::spawn(move || serve_one(stream, with_body, slot, &log, &script));
            }
        });
        Scripted {
            origin: format!("http://{addr}"),
            addr,
            log,
        }
    }
}

/// What became of each connection, in the order they were accepted.
#[derive(Default)]
struct Log {
    slots: Mutex<Vec<Slot>>,
    changed: Condvar,
}

#[derive(PartialEq)]
enum Slot {
    Reading,
    Read(Request),
    /// A sentinel of `requests`, not yet seen by it.
    Sentinel,
    /// A sentinel seen.
    Passed,
}

impl Log {
    fn take_slot(&self) -> usize {
        let mut slots = self.slots.lock().unwrap();
        slots.push(Slot::Reading);
        slots.len() - 1
    }

    fn fill(&self, at: usize, slot: Slot) {
        self.slots.lock().unwrap()[at] = slot;
        self.changed.notify_all();
    }
}

fn serve_one(
    mut stream: TcpStream,
    with_body: bool,
    slot: usize,
    log: &Log,
    script: &Mutex<Box<Script>>,
) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    let request = read_request(&mut stream, with_body);
    if request.head == SENTINEL {
        return log.fill(slot, Slot::Sentinel);
    }
    log.fill(slot, Slot::Read(request.clone()));
    let steps = (*script.lock().unwrap())(&request);
    play(&mut stream, steps);
}

/// Reads the head a byte at a time, so that nothing past it is taken, then, `with_body`, the
/// body by its Content-Length.
fn read_request(stream: &mut TcpStream, with_body: bool) -> Request {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < HEAD_LIMIT {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let mut request = Request {
        head: String::from_utf8_lossy(&head).into_owned(),
        body: Vec::new(),
    };
    if with_body {
        let length = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let _ = (&mut *stream).take(length).read_to_end(&mut request.body);
    }
    request
}

fn play(stream: &mut TcpStream, steps: Vec<Step>) {
    for step in steps {
        let goes_on = match step {
            Step::Send(bytes) => stream.write_all(&bytes).is_ok(),
            Step::Sleep(pause) => {
                thread::sleep(pause);
                true
            }
            Step::Repeat(bytes) => {
                while stream.write_all(&bytes).is_ok() {}
                false
            }
            Step::Read(n) => {
                let _ = io::copy(&mut (&mut *stream).take(n as u64), &mut io::sink());
                true
            }
            Step::Notify(done) => {
                let _ = done.send(());
                true
            }
            Step::Await(word) => word.recv().is_ok(),
            Step::Silence => {
                let _ = stream.set_read_timeout(None);
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(1..)) {}
                false
            }
            Step::Close => {
                let _ = stream.shutdown(Shutdown::Both);
                false
            }
            Step::Reset => {
                // A zero linger makes the close that follows send RST at once.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt(2) on a socket this function holds, with a live `linger`
                // and its size.
                unsafe {
                    libc::setsockopt(
                        stream.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                false
            }
        };
        if !goes_on {
            return;
        }
    }
}

/// A whole HTTP/1.1 response that closes the connection.
pub fn http(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
