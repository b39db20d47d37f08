//! HTTP/1.1 framing for the mock: request heads parsed by `httparse`, bodies by Content-Length,
//! responses written whole or as a chunked stream that is flushed event by event.
//!
//! Why not tiny_http: its 0.12 reads a header line without any bound (a hostile client grows
//! memory without limit), cannot close a connection without answering (the `drop` fault), and
//! buffers a chunked body 8 KiB at a time (an SSE event would wait for the next ones). Those are
//! exactly the behaviours a fault-injecting stand-in must control, so the mock owns its sockets
//! and leaves only the parsing to a crate.

use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

/// A request head larger than this gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A request body larger than this gets 413.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Request bodies held at once, across all connections; past this a request gets 503.
pub const MAX_BODIES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// Header names of HTTP itself, in lower case as `wire` gives the API's own.
pub const CONTENT_TYPE: &str = "content-type";
pub const CACHE_CONTROL: &str = "cache-control";
pub const ALLOW: &str = "allow";
pub const LOCATION: &str = "location";

/// When the first byte of a request arrived: the wall clock for the log, the monotonic one for
/// its duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub time: SystemTime,
    pub instant: Instant,
}

impl Arrival {
    pub fn now() -> Arrival {
        Arrival {
            time: SystemTime::now(),
            instant: Instant::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client wants the connection closed after this exchange.
    pub close: bool,
    pub http10: bool,
    pub arrived: Arrival,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request this server will not read further: answered with `status` (none: the connection
/// is just closed) and logged with `reason`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: Option<u16>,
    pub reason: String,
    pub arrived: Arrival,
    /// The head, when it could be parsed.
    pub request: Option<Box<Request>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A parsed head, and the length of the body that follows it.
    Request(Request, usize),
    /// The client closed the connection, or sent nothing in time, between requests.
    Closed,
    Refused(Refusal),
}

/// Reads one request head. A read that fails with `TimedOut` is the caller's deadline: before
/// any byte it closes the connection quietly, after some it is a 408.
pub fn read_head(input: &mut impl BufRead) -> io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut arrived = None;
    let refuse = |status, reason: String, arrived| {
        Ok(Head::Refused(Refusal {
            status: Some(status),
            reason,
            arrived,
            request: None,
        }))
    };
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                return match arrived {
                    None => Ok(Head::Closed),
                    Some(arrived) => {
                        refuse(408, "the request head arrived too slowly".into(), arrived)
                    }
                };
            }
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return match arrived {
                None => Ok(Head::Closed),
                Some(arrived) => refuse(400, "the request head ended early".into(), arrived),
            };
        }
        let arrived = *arrived.get_or_insert_with(Arrival::now);
        let searched_from = head.len().saturating_sub(2);
        let room = MAX_HEAD + 1 - head.len();
        let take = available.len().min(room);
        head.extend_from_slice(&available[..take]);
        if let Some(head_len) = head_end(&head, searched_from) {
            input.consume(take - (head.len() - head_len));
            head.truncate(head_len);
            return Ok(parse_head(&head, arrived));
        }
        input.consume(take);
        if head.len() > MAX_HEAD {
            let reason = format!("the request head exceeds {MAX_HEAD} bytes");
            return refuse(431, reason, arrived);
        }
    }
}

/// The length of the head in `bytes` if it is complete: up to the empty line that ends it, with
/// CRLF or bare LF line endings (RFC 9112 lets a server accept both).
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len())
        .filter(|&i| bytes[i] == b'\n')
        .find_map(|i| match bytes[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        })
}

fn parse_head(head: &[u8], arrived: Arrival) -> Head {
    let refuse = |status, reason: String, request| {
        Head::Refused(Refusal {
            status: Some(status),
            reason,
            arrived,
            request,
        })
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(431, format!("more than {MAX_HEADERS} headers"), None)
        }
        Ok(httparse::Status::Partial) | Err(_) => {
            return refuse(400, "the request is not valid HTTP/1.1".into(), None)
        }
    }
    let http10 = parsed.version == Some(0);
    let mut request = Request {
        method: parsed.method.unwrap_or("").to_string(),
        path: parsed
            .path
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap_or("/")
            .to_string(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect(),
        body: Vec::new(),
        close: http10,
        http10,
        arrived,
    };
    if let Some(connection) = request.header("connection") {
        let connection = connection.to_ascii_lowercase();
        if connection.contains("close") {
            request.close = true;
        } else if connection.contains("keep-alive") {
            request.close = false;
        }
    }
    if request.header("transfer-encoding").is_some() {
        let reason = "send the body with a Content-Length".into();
        return refuse(411, reason, Some(Box::new(request)));
    }
    match content_length(&request) {
        Err(reason) => refuse(400, reason, Some(Box::new(request))),
        Ok(length) if length > MAX_BODY => {
            let reason = format!("the body exceeds {MAX_BODY} bytes");
            refuse(413, reason, Some(Box::new(request)))
        }
        Ok(length) => Head::Request(request, length),
    }
}

/// The body length: digits only (no sign, as Rust's own parser would allow), and every
/// Content-Length the same, since two framings of one message are how requests get smuggled.
fn content_length(request: &Request) -> Result<usize, String> {
    let mut length = None;
    let values = request
        .headers
        .iter()
        .filter(|(name, _)| name == "content-length")
        .flat_map(|(_, value)| value.split(','));
    for value in values {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad Content-Length {value:?}"));
        }
        // All digits: too many of them is merely too large (413).
        let n = value.parse().unwrap_or(usize::MAX);
        if length.is_some_and(|length| length != n) {
            return Err("conflicting Content-Length values".into());
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

/// The bytes that request bodies may hold at once, across all connections.
#[derive(Debug)]
pub struct Budget(AtomicUsize);

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget(AtomicUsize::new(bytes))
    }

    /// Takes `bytes` until the reservation is dropped; `None` when they are not left.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation<'_>> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(bytes)
            })
            .ok()
            .map(|_| Reservation {
                budget: self,
                bytes,
            })
    }
}

#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Reservation<'_> {
    /// Takes `more` bytes besides, if they are left.
    pub fn grow(&mut self, more: usize) -> bool {
        let taken = self
            .budget
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(more)
            })
            .is_ok();
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.0.fetch_add(self.bytes, Ordering::SeqCst);
    }
}

/// Reads one whole request with no limit but the mock's own head and body sizes: for servers
/// that serve one trusted client, such as the benchmark's.
pub fn read_request(input: &mut impl BufRead) -> Option<Request> {
    let Ok(Head::Request(request, length)) = read_head(input) else {
        return None;
    };
    let budget = Budget::new(length);
    let (request, _) = read_body(input, &mut io::sink(), request, length, &budget).ok()?;
    Some(request)
}

/// Reads the `length` bytes of `request`'s body, within `budget`; `out` answers
/// `Expect: 100-continue` first. The body's memory grows as its bytes arrive, so a client that
/// announces a large body and sends little costs little. Every failure is a refusal, logged
/// like any request.
pub fn read_body<'b>(
    input: &mut impl BufRead,
    out: &mut impl Write,
    mut request: Request,
    length: usize,
    budget: &'b Budget,
) -> Result<(Request, Reservation<'b>), Refusal> {
    let arrived = request.arrived;
    let Some(reservation) = budget.reserve(length) else {
        return Err(Refusal {
            status: Some(503),
            reason: format!("request bodies in flight would exceed {MAX_BODIES_IN_FLIGHT} bytes"),
            arrived,
            request: Some(Box::new(request)),
        });
    };
    let continued = if length > 0
        && request
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|()| out.flush())
    } else {
        Ok(())
    };
    let mut body = Vec::with_capacity(length);
    let read = continued
        .and_then(|()| input.take(length as u64).read_to_end(&mut body))
        .and_then(|n| {
            if n == length {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        });
    match read {
        Ok(()) => {
            request.body = body;
            Ok((request, reservation))
        }
        Err(err) => {
            let (status, reason) = match err.kind() {
                io::ErrorKind::TimedOut => (Some(408), "the request body stopped arriving".into()),
                _ => (None, format!("the request body was cut short: {err}")),
            };
            Err(Refusal {
                status,
                reason,
                arrived,
                request: Some(Box::new(request)),
            })
        }
    }
}

/// The reason phrase of a status line.
pub fn reason(status: u16) -> &'static str {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Unknown")
}

fn write_head(
    out: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    framing: Option<&str>,
    close: bool,
) -> io::Result<()> {
    write!(out, "HTTP/1.1 {status} {}\r\n", reason(status))?;
    for (name, value) in headers {
        write!(out, "{}: {value}\r\n", Canonical(name))?;
    }
    if let Some(framing) = framing {
        write!(out, "{framing}\r\n")?;
    }
    let connection = if close { "close" } else { "keep-alive" };
    write!(out, "Connection: {connection}\r\n\r\n")
}

/// A header name as most servers write it, each word capitalised (`X-Credits-Consumed`),
/// whatever its case in the code.
pub struct Canonical<'a>(pub &'a str);

impl std::fmt::Display for Canonical<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, word) in self.0.split('-').enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                write!(
                    f,
                    "{}{}",
                    first.to_ascii_uppercase(),
                    chars.as_str().to_ascii_lowercase()
                )?;
            }
        }
        Ok(())
    }
}

/// A whole response, `body` sent with its length.
pub fn respond(
    out: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let framing = format!("Content-Length: {}", body.len());
    write_head(out, status, headers, Some(&framing), close)?;
    out.write_all(body)?;
    out.flush()
}

/// A response whose head promises `promised` bytes but sends only `body`: a connection that
/// breaks mid-answer.
pub fn respond_short(
    out: &mut impl Write,
    headers: &[(&str, String)],
    body: &[u8],
    promised: usize,
) -> io::Result<()> {
    write_head(
        out,
        200,
        headers,
        Some(&format!("Content-Length: {promised}")),
        true,
    )?;
    out.write_all(body)?;
    out.flush()
}

/// The response to a HEAD request: the head of what would be sent, without its body, which
/// the client would otherwise read as the start of the next response on the connection.
pub struct HeadOnly<'a, W: Write> {
    out: &'a mut W,
    /// How much of the blank line that ends the head has passed: 4 once it has.
    ended: usize,
}

impl<'a, W: Write> HeadOnly<'a, W> {
    pub fn new(out: &'a mut W) -> Self {
        HeadOnly { out, ended: 0 }
    }
}

impl<W: Write> Write for HeadOnly<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut passed = 0;
        while self.ended < 4 && passed < buf.len() {
            let byte = buf[passed];
            self.ended = match (self.ended, byte) {
                (0 | 2, b'\r') => self.ended + 1,
                (1 | 3, b'\n') => self.ended + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            passed += 1;
        }
        self.out.write_all(&buf[..passed])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A streamed body: chunked for HTTP/1.1, delimited by closing the connection for HTTP/1.0.
pub struct Stream<'a, W: Write> {
    out: &'a mut W,
    chunked: bool,
}

impl<'a, W: Write> Stream<'a, W> {
    pub fn start(
        out: &'a mut W,
        status: u16,
        headers: &[(&str, String)],
        http10: bool,
    ) -> io::Result<Self> {
        let framing = (!http10).then_some("Transfer-Encoding: chunked");
        write_head(out, status, headers, framing, http10)?;
        Ok(Stream {
            out,
            chunked: !http10,
        })
    }

    /// Sends `parts` as one chunk. Not flushed: call `flush` before waiting.
    pub fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if self.chunked {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            write!(self.out, "{len:x}\r\n")?;
        }
        for part in parts {
            self.out.write_all(part)?;
        }
        if self.chunked {
            self.out.write_all(b"\r\n")?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Ends the body properly (the zero-length chunk).
    pub fn finish(self) -> io::Result<()> {
        if self.chunked {
            self.out.write_all(b"0\r\n\r\n")?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// Reads one whole request from `raw`, in reads of 7 bytes at most.
    fn read(raw: &[u8]) -> (Result<Request, Refusal>, Vec<u8>) {
        let mut out = Vec::new();
        let mut input = BufReader::with_capacity(7, raw);
        let budget = Budget::new(MAX_BODIES_IN_FLIGHT);
        let read = match read_head(&mut input).unwrap() {
            Head::Request(request, length) => {
                read_body(&mut input, &mut out, request, length, &budget).map(|(r, _)| r)
            }
            Head::Refused(refusal) => Err(refusal),
            Head::Closed => panic!("closed"),
        };
        (read, out)
    }

    fn status(raw: &[u8]) -> Option<u16> {
        match read(raw).0 {
            Ok(_) => Some(200),
            Err(refusal) => refusal.status,
        }
    }

    #[test]
    fn reads_a_request_split_across_small_reads() {
        let raw =
            b"POST /a?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Y: z\r\n\r\nhelloEXTRA";
        let req = read(raw).0.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/a");
        assert_eq!(req.header("x-y"), Some("z"));
        assert_eq!(req.body, b"hello");
        assert!(!req.close);
    }

    #[test]
    fn accepts_bare_lf_line_endings() {
        for raw in [
            &b"POST /lf HTTP/1.1\nContent-Length: 2\n\nhi"[..],
            b"POST /lf HTTP/1.1\r\nContent-Length: 2\n\r\nhi",
            b"POST /lf HTTP/1.1\nContent-Length: 2\r\n\r\nhi",
        ] {
            let req = read(raw).0.unwrap();
            assert_eq!((req.path.as_str(), &req.body[..]), ("/lf", &b"hi"[..]));
        }
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        let with = |lengths: &str| {
            let headers: String = lengths
                .split('|')
                .map(|l| format!("Content-Length: {l}\r\n"))
                .collect();
            status(format!("POST / HTTP/1.1\r\n{headers}\r\n12").as_bytes())
        };
        assert_eq!(with("2"), Some(200));
        assert_eq!(with("2|2"), Some(200));
        assert_eq!(with("2, 2"), Some(200));
        for bad in ["+2", "-2", "0x2", "2|3", "2, 3", "", " ", "2 2"] {
            assert_eq!(with(bad), Some(400), "{bad:?}");
        }
        assert_eq!(with("99999999999999999999999999"), Some(413));
    }

    #[test]
    fn keeps_reading_the_next_request_on_the_connection() {
        let raw = b"GET / HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut input = BufReader::with_capacity(5, &raw[..]);
        let Head::Request(first, 0) = read_head(&mut input).unwrap() else {
            panic!()
        };
        let Head::Request(second, 0) = read_head(&mut input).unwrap() else {
            panic!()
        };
        assert_eq!((first.path.as_str(), second.path.as_str()), ("/", "/two"));
        assert!(second.close);
        assert_eq!(read_head(&mut input).unwrap(), Head::Closed);
    }

    #[test]
    fn hostile_requests_are_refused_with_bounded_reads() {
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 100_000));
        assert_eq!(status(&huge), Some(431));
        let many: String = (0..100).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(status(raw.as_bytes()), Some(431));
        assert_eq!(status(b"\x00\x01garbage\r\n\r\n"), Some(400));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(status(big.as_bytes()), Some(413));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(chunked), Some(411));
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost"), Some(400));
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhi"),
            None
        );
    }

    #[test]
    fn refusals_keep_the_parsed_head_for_the_log() {
        let Err(refusal) = read(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").0 else {
            panic!()
        };
        assert_eq!(refusal.request.unwrap().path, "/p");
        let Err(refusal) = read(b"\x00\r\n\r\n").0 else {
            panic!()
        };
        assert_eq!(refusal.request, None);
    }

    /// A reader that times out, as the server's socket reader does at a deadline.
    struct Stalls<'a>(&'a [u8]);

    impl Read for Stalls<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let n = self.0.read(buf)?;
            Ok(n)
        }
    }

    #[test]
    fn a_deadline_closes_quietly_before_a_request_and_is_408_within_one() {
        let mut idle = BufReader::new(Stalls(b""));
        assert_eq!(read_head(&mut idle).unwrap(), Head::Closed);
        let mut dripping = BufReader::new(Stalls(b"GET / HTTP/1.1\r\nX-Slow: "));
        let Head::Refused(refusal) = read_head(&mut dripping).unwrap() else {
            panic!()
        };
        assert_eq!(refusal.status, Some(408));
        let mut body = BufReader::new(Stalls(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nhi"));
        let Head::Request(request, 9) = read_head(&mut body).unwrap() else {
            panic!()
        };
        let budget = Budget::new(9);
        let refusal = read_body(&mut body, &mut Vec::new(), request, 9, &budget).unwrap_err();
        assert_eq!(refusal.status, Some(408));
    }

    #[test]
    fn bodies_in_flight_are_bounded_and_released() {
        let budget = Budget::new(10);
        let first = budget.reserve(6).unwrap();
        assert!(budget.reserve(5).is_none());
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let mut input = BufReader::new(&raw[..]);
        let Head::Request(request, 5) = read_head(&mut input).unwrap() else {
            panic!()
        };
        let refusal = read_body(&mut input, &mut Vec::new(), request, 5, &budget).unwrap_err();
        assert_eq!(refusal.status, Some(503));
        drop(first);
        let mut growing = budget.reserve(4).unwrap();
        assert!(growing.grow(6) && !growing.grow(1));
        drop(growing);
        assert!(budget.reserve(10).is_some());
    }

    #[test]
    fn answers_expect_continue_before_the_body() {
        let raw = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi";
        let (read, out) = read(raw);
        assert!(read.is_ok());
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn header_names_are_written_in_their_usual_case() {
        let canonical = |name| Canonical(name).to_string();
        assert_eq!(canonical("x-credits-consumed"), "X-Credits-Consumed");
        assert_eq!(canonical("CONTENT-type"), "Content-Type");
        assert_eq!(canonical("retry-after-ms"), "Retry-After-Ms");
        assert_eq!(canonical("a--b-"), "A--B-");
    }

    #[test]
    fn reason_phrases_come_from_the_http_crate() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(599), "Unknown");
    }

    #[test]
    fn head_only_passes_the_head_and_drops_the_body() {
        let mut out = Vec::new();
        let mut head = HeadOnly::new(&mut out);
        respond(
            &mut head,
            405,
            &[("A", "b".into())],
            b"{\"body\":1}\r\n\r\nmore",
            false,
        )
        .unwrap();
        write!(head, "later").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nA: b\r\nContent-Length: 18\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn chunked_stream_framing() {
        let mut out = Vec::new();
        let mut stream = Stream::start(&mut out, 200, &[("a", "b".into())], false).unwrap();
        stream.send(&[b"data: x", b"\n\n"]).unwrap();
        stream.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nA: b\r\nTransfer-Encoding: chunked\r\n"));
        assert!(text.ends_with("\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n"));
    }
}
