//! HTTP/1.1 framing for the mock: request heads parsed by `httparse`, bodies by Content-Length,
//! responses written whole or as a chunked stream that is flushed event by event.
//!
//! Why not tiny_http: its 0.12 reads a header line without any bound (a hostile client grows
//! memory without limit), cannot close a connection without answering (the `drop` fault), and
//! buffers a chunked body 8 KiB at a time (an SSE event would wait for the next ones). Those are
//! exactly the behaviours a fault-injecting stand-in must control, so the mock owns its sockets
//! and leaves only the parsing to a crate.

use std::io::{self, BufRead, Write};

/// A request head larger than this gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A request body larger than this gets 413.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

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
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Request(Request),
    /// The client closed the connection between requests.
    Closed,
    /// A request this server will not read: answer with this status and close.
    Refused(u16, String),
}

/// Reads one request. `out` is needed to answer `Expect: 100-continue` before the body.
pub fn read_request(input: &mut impl BufRead, out: &mut impl Write) -> io::Result<Incoming> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(if head.is_empty() {
                Incoming::Closed
            } else {
                Incoming::Refused(400, "the request head ended early".into())
            });
        }
        let searched_from = head.len().saturating_sub(3);
        let room = MAX_HEAD + 1 - head.len();
        let take = available.len().min(room);
        head.extend_from_slice(&available[..take]);
        if let Some(end) = find(&head[searched_from..], b"\r\n\r\n") {
            let head_len = searched_from + end + 4;
            input.consume(take - (head.len() - head_len));
            head.truncate(head_len);
            break;
        }
        input.consume(take);
        if head.len() > MAX_HEAD {
            return Ok(Incoming::Refused(
                431,
                format!("the request head exceeds {MAX_HEAD} bytes"),
            ));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Ok(Incoming::Refused(
                431,
                format!("more than {MAX_HEADERS} headers"),
            ))
        }
        Ok(httparse::Status::Partial) | Err(_) => {
            return Ok(Incoming::Refused(
                400,
                "the request is not valid HTTP/1.1".into(),
            ))
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
        return Ok(Incoming::Refused(
            411,
            "send the body with a Content-Length".into(),
        ));
    }
    let length = match request
        .header("content-length")
        .map(|v| v.trim().parse::<usize>())
    {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Ok(Incoming::Refused(400, "bad Content-Length".into())),
    };
    if length > MAX_BODY {
        return Ok(Incoming::Refused(
            413,
            format!("the body exceeds {MAX_BODY} bytes"),
        ));
    }
    if length > 0
        && request
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    request.body = vec![0; length];
    input.read_exact(&mut request.body)?;
    Ok(Incoming::Request(request))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
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
        write!(out, "{name}: {value}\r\n")?;
    }
    if let Some(framing) = framing {
        write!(out, "{framing}\r\n")?;
    }
    let connection = if close { "close" } else { "keep-alive" };
    write!(out, "Connection: {connection}\r\n\r\n")
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

/// A streamed body: chunked for HTTP/1.1, delimited by closing the connection for HTTP/1.0.
pub struct Stream<'a, W: Write> {
    out: &'a mut W,
    chunked: bool,
}

impl<'a, W: Write> Stream<'a, W> {
    pub fn start(out: &'a mut W, headers: &[(&str, String)], http10: bool) -> io::Result<Self> {
        let framing = (!http10).then_some("Transfer-Encoding: chunked");
        write_head(out, 200, headers, framing, http10)?;
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

    fn read(raw: &[u8]) -> (Incoming, Vec<u8>) {
        let mut out = Vec::new();
        let mut input = BufReader::with_capacity(7, raw);
        (read_request(&mut input, &mut out).unwrap(), out)
    }

    #[test]
    fn reads_a_request_split_across_small_reads() {
        let raw =
            b"POST /a?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Y: z\r\n\r\nhelloEXTRA";
        let (incoming, _) = read(raw);
        let Incoming::Request(req) = incoming else {
            panic!("{incoming:?}")
        };
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/a");
        assert_eq!(req.header("x-y"), Some("z"));
        assert_eq!(req.body, b"hello");
        assert!(!req.close);
    }

    #[test]
    fn keeps_reading_the_next_request_on_the_connection() {
        let raw = b"GET / HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut input = BufReader::with_capacity(5, &raw[..]);
        let mut out = Vec::new();
        let Incoming::Request(first) = read_request(&mut input, &mut out).unwrap() else {
            panic!()
        };
        let Incoming::Request(second) = read_request(&mut input, &mut out).unwrap() else {
            panic!()
        };
        assert_eq!((first.path.as_str(), second.path.as_str()), ("/", "/two"));
        assert!(second.close);
        assert_eq!(
            read_request(&mut input, &mut out).unwrap(),
            Incoming::Closed
        );
    }

    #[test]
    fn hostile_requests_are_refused_with_bounded_reads() {
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 100_000));
        assert!(matches!(read(&huge).0, Incoming::Refused(431, _)));
        let many: String = (0..100).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(read(raw.as_bytes()).0, Incoming::Refused(431, _)));
        assert!(matches!(
            read(b"\x00\x01garbage\r\n\r\n").0,
            Incoming::Refused(400, _)
        ));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(read(big.as_bytes()).0, Incoming::Refused(413, _)));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(read(chunked).0, Incoming::Refused(411, _)));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost").0,
            Incoming::Refused(400, _)
        ));
    }

    #[test]
    fn answers_expect_continue_before_the_body() {
        let raw = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi";
        let (incoming, out) = read(raw);
        assert!(matches!(incoming, Incoming::Request(_)));
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn chunked_stream_framing() {
        let mut out = Vec::new();
        let mut stream = Stream::start(&mut out, &[("A", "b".into())], false).unwrap();
        stream.send(&[b"data: x", b"\n\n"]).unwrap();
        stream.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nA: b\r\nTransfer-Encoding: chunked\r\n"));
        assert!(text.ends_with("\r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n"));
    }
}
