//! The stream floor: a server that answers every request with one pre-built SSE response, kept
//! in memory and sent in large writes. Serving it costs almost nothing and the same for every
//! client, so a client's time against it is the client's own; against the mock, the mock's event
//! generation sets the pace of fast clients and slow ones alike.
//!
//! The events are those `bnx-mock` sends, recorded once. Their framing is not: the mock sends
//! each event as its own HTTP chunk, this server 64 KiB chunks, as a server does that writes
//! from a buffer. curl's chunk decoding costs more per chunk than ureq's, so with the mock's
//! framing the floor measured curl's chunk parser more than the network.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bnx::mock::http::{read_request, Incoming};

const CHUNK: usize = 64 * 1024;

pub struct Floor {
    origin: String,
    /// The whole response as it crosses the wire: head, chunked framing and events.
    response: Arc<[u8]>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl Floor {
    /// Records the events that the server at `url` streams for a POST of `body`, and serves
    /// them from memory on a new port.
    pub fn record(url: &str, token: &str, body: &str) -> Floor {
        let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
        let events = agent
            .post(url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("the recording succeeds")
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .expect("the recording succeeds");
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
            Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
        for chunk in events.chunks(CHUNK) {
            write!(response, "{:x}\r\n", chunk.len()).unwrap();
            response.extend_from_slice(chunk);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        Floor::serve(response.into())
    }

    fn serve(response: Arc<[u8]>) -> Floor {
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
    pub fn wire_bytes(&self) -> usize {
        self.response.len()
    }
}

/// Reads the request, so that closing does not reset the connection under unread bytes, then
/// hands the whole response to the kernel in one `write_all`.
fn answer(socket: TcpStream, response: &[u8]) {
    let mut input = BufReader::new(&socket);
    if let Ok(Incoming::Request(_)) = read_request(&mut input, &mut std::io::sink()) {
        // A client may close as soon as it has what it wants ([DONE]): a failed write is fine.
        let _ = (&socket).write_all(response);
    }
    let _ = socket.shutdown(Shutdown::Write);
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the server thread sees `stop`.
        let _ = TcpStream::connect(self.origin.trim_start_matches("http://"));
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}
