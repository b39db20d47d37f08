//! The stream floor: a server that answers every request with one pre-built SSE response, kept
//! in memory (the page cache of a temporary file) and sent in large writes. Serving it costs
//! little and the same for every client, so a client's time against it is the client's own;
//! against the mock, the mock's event generation sets the pace of fast clients and slow ones
//! alike.
//!
//! The events are those `bnx-mock` sends, recorded once. Their framing is not: the mock sends
//! each event as its own HTTP chunk, this server 64 KiB chunks, as a server does that writes
//! from a buffer. curl's chunk decoding costs more per chunk than ureq's, so with the mock's
//! framing the floor measured curl's chunk parser more than the network.
//!
//! The response never passes through this process's memory: the peak RSS that `wait4` reports
//! for a child cannot read below its parent's own peak, and ours must stay small.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bnx::mock::http::read_request;

const CHUNK: u64 = 64 * 1024;
/// What `send` writes at a time: large, yet small enough to leave the harness's peak RSS (and so
/// every child's reading) alone. 1 and 4 MiB writes did not move a bare reader's time.
const WRITE: usize = 256 * 1024;

pub struct Floor {
    origin: String,
    /// The whole response as it crosses the wire: head, chunked framing and events.
    response: PathBuf,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl Floor {
    /// Records the events that the server at `url` streams for a POST of `body`, and serves
    /// them on a new port.
    pub fn record(url: &str, token: &str, body: &str) -> Floor {
        let response = response_path("stream");
        write_response(url, token, body, &response).expect("the recording succeeds");
        Floor::serve(response)
    }

    /// Serves a whole (not streamed) answer whose message content is `content`.
    pub fn whole(content: &str) -> Floor {
        let body = serde_json::json!({"object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})
        .to_string();
        let response = response_path("whole");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        std::fs::write(&response, head + &body).expect("the answer is written");
        Floor::serve(response)
    }

    fn serve(response: PathBuf) -> Floor {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (response, stop) = (response.clone(), stop.clone());
            std::thread::spawn(move || {
                for socket in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(socket) = socket else { continue };
                    let response = response.clone();
                    std::thread::spawn(move || answer(socket, &response));
                }
            })
        };
        Floor {
            origin,
            response,
            stop,
            server: Some(server),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Bytes on the wire for one answer, HTTP head and framing included.
    pub fn wire_bytes(&self) -> u64 {
        std::fs::metadata(&self.response).map_or(0, |m| m.len())
    }
}

fn response_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "bnx-bench-floor-{what}-{}.http",
        std::process::id()
    ))
}

/// Asks the server at `url` for its stream, writing it to `path` as one chunked response,
/// 64 KiB at a time.
fn write_response(url: &str, token: &str, body: &str, path: &Path) -> io::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
    let mut events = agent
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(io::Error::other)?
        .into_body()
        .into_reader();
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        if events.by_ref().take(CHUNK).read_to_end(&mut chunk)? == 0 {
            break;
        }
        write!(out, "{:x}\r\n", chunk.len())?;
        out.write_all(&chunk)?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

/// Reads the request, so that closing does not reset the connection under unread bytes, then
/// sends the whole response.
fn answer(socket: TcpStream, response: &Path) {
    let mut input = BufReader::new(&socket);
    if read_request(&mut input).is_some() {
        // A client may close as soon as it has what it wants ([DONE]): a failed send is fine.
        let _ = send(response, &socket);
    }
    let _ = socket.shutdown(Shutdown::Write);
}

/// Writes the file at `response` to `socket`, from the page cache through a small buffer. Not
/// `io::copy`, which would `sendfile`: the receiving end then copies out of page-cache pages
/// rather than the buffers a `write` fills, and a stream cost bnx 52% more CPU and curl 27% more
/// (20 interleaved runs each), a cost no real server's client pays.
fn send(response: &Path, mut socket: &TcpStream) -> io::Result<()> {
    let mut file = File::open(response)?;
    let mut buf = vec![0; WRITE];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        socket.write_all(&buf[..n])?;
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the server thread sees `stop`.
        let _ = TcpStream::connect(self.origin.trim_start_matches("http://"));
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        let _ = std::fs::remove_file(&self.response);
    }
}
