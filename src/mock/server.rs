//! Accepting connections, one thread each, and the exec mode that runs a command against the
//! mock.

use std::io::{self, BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::api::{self, Next, Shared};
use super::http::{self, Incoming};

/// Past this many open connections, new ones get 503 and are closed: a flood of clients costs
/// threads, not the process.
const MAX_CONNECTIONS: usize = 512;
/// A connection silent this long between requests (or mid-request) is closed.
const IDLE: Duration = Duration::from_secs(30);

pub fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = refuse(&stream, 503, "too many connections");
            continue;
        }
        let shared = Arc::clone(&shared);
        let counter = Arc::clone(&open);
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = connection(stream, &shared);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut input = BufReader::new(stream.try_clone()?);
    let mut out = BufWriter::with_capacity(64 * 1024, stream.try_clone()?);
    loop {
        match http::read_request(&mut input, &mut out)? {
            Incoming::Closed => break,
            Incoming::Refused(status, why) => {
                refuse(&stream, status, &why)?;
                break;
            }
            Incoming::Request(request) => {
                if api::handle(&request, &mut out, &stream, shared) == Next::Close {
                    break;
                }
            }
        }
    }
    stream.shutdown(std::net::Shutdown::Both)
}

fn refuse(stream: &TcpStream, status: u16, why: &str) -> io::Result<()> {
    let body = serde_json::to_vec(&crate::wire::ErrorBody::new(
        "invalid_request_error",
        why,
        None,
    ))
    .expect("serializes");
    let headers = [("Content-Type", "application/json".to_string())];
    http::respond(&mut BufWriter::new(stream), status, &headers, &body, true)
}

/// Runs `command` with the mock's URL and token in its environment; its exit code, or 128+N
/// when a signal ended it.
pub fn run_command(command: &[std::ffi::OsString], addr: SocketAddr, token: &str) -> i32 {
    let status = Command::new(&command[0])
        .args(&command[1..])
        .env("BLUENEXUS_BASE_URL", format!("http://{addr}"))
        .env("BLUENEXUS_TOKEN", token)
        .status();
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
