//! `--record FILE --upstream URL`: the mock as a recording proxy (SPEC section 11). Each chat
//! request goes to the upstream as it came (path, body, `Authorization`), its answer comes back
//! to the client as it arrives, read by read and flushed, and one rule is appended to FILE when
//! the answer is complete, with the client's token masked wherever the upstream echoed it.
//!
//! Memory stays flat whatever the upstream does: a stream's events go to an unnamed temporary
//! file until the answer is complete, whole bodies are held within the mock's bound on bodies
//! in flight, and an event, a head or a silence past its bound ends the recording (or the
//! exchange) with one line on stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::Map;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::answers::MAX_LINE;
use super::api::Trace;
use super::http::{self, Canonical, Request, Reservation, CONTENT_TYPE, MAX_BODY};
use super::reply::{self, Next, Outcome};
use super::scrub::{Events, Scrub};
use super::stream::EVENT_STREAM;
use super::{lock, Shared};
use crate::sse::{Decoder, EventTooLarge};
use crate::wire;

/// A single event of a recorded stream, at most.
pub const MAX_EVENT: usize = 1 << 20;
/// The upstream's response head, at most (as `bnx` allows).
const MAX_HEAD: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The headers passed back to the client and recorded, those present.
const PASSED: [&str; 6] = [
    CONTENT_TYPE,
    wire::HEADER_CREDITS_CONSUMED,
    wire::HEADER_CREDITS_REMAINING,
    wire::HEADER_CONVERSATION_ID,
    wire::HEADER_RETRY_AFTER,
    wire::HEADER_RETRY_AFTER_MS,
];

pub struct Recorder {
    /// The upstream's origin and path prefix, as `--base-url` takes it.
    upstream: String,
    agent: Agent,
    file: Mutex<File>,
    /// Exchanges in flight, so that the mock does not end while one is being recorded.
    active: (Mutex<usize>, Condvar),
}

/// One exchange in flight, counted until dropped (even when its thread panics).
struct Active<'a>(&'a (Mutex<usize>, Condvar));

impl<'a> Active<'a> {
    fn enter(active: &'a (Mutex<usize>, Condvar)) -> Self {
        *lock(&active.0) += 1;
        Active(active)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        *lock(&self.0 .0) -= 1;
        self.0 .1.notify_all();
    }
}

impl Recorder {
    /// Opens `path` to append to (0600 when created: it holds prompts and answers). `timeout`
    /// bounds the upstream's silence: before its head, and between two reads of its body.
    pub fn open(
        path: &Path,
        upstream: &str,
        loopback: bool,
        timeout: Duration,
    ) -> io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("bnx-mock/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .max_response_header_size(MAX_HEAD)
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout));
        // A loopback upstream is never reached through a proxy; another one may be, as the
        // environment's HTTPS_PROXY and NO_PROXY say.
        let config = if loopback { config.proxy(None) } else { config };
        Ok(Recorder {
            upstream: upstream.to_string(),
            agent: config.build().into(),
            file: Mutex::new(file),
            active: (Mutex::new(0), Condvar::new()),
        })
    }

    /// Waits, at most `patience`, for the exchanges in flight to end: COMMAND has exited, and
    /// an answer it stopped reading at `[DONE]` may still be coming from the upstream, to be
    /// recorded.
    pub fn settle(&self, patience: Duration) {
        let (count, ended) = &self.active;
        let deadline = Instant::now() + patience;
        let mut count = lock(count);
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            count = ended
                .wait_timeout(count, left)
                .map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
        }
    }

    /// Passes `request` on, and its answer back; records both when the answer is complete.
    pub fn proxy(
        &self,
        request: &Request,
        agent: &str,
        out: &mut impl Write,
        shared: &Shared,
        trace: &mut Trace,
    ) -> Outcome {
        let _active = Active::enter(&self.active);
        let secret = credential(request);
        trace.secret = secret.map(str::to_string);
        let scrub = Scrub::new(secret);
        let response = match self.forward(request) {
            Ok(response) => response,
            Err(why) => {
                let message = format!("the upstream {} cannot be reached: {why}", self.upstream);
                let message = scrub.text(&message).into_owned();
                trace.reason = Some(message.clone());
                return reply::error(out, 502, "upstream_error", &message, None, vec![]);
            }
        };
        let status = response.status().as_u16();
        let headers: Vec<(&str, String)> = PASSED
            .iter()
            .filter_map(|&name| {
                let value = response.headers().get(name)?.to_str().ok()?;
                Some((name, value.to_string()))
            })
            .collect();
        let recording = Recording::start(request, agent, status, &headers, &scrub, shared);
        let recording = recording.map_err(|why| notice(request, &why)).ok();
        let mut body = http::Stream::start(out, status, &headers, request.http10)?;
        let (complete, recording) = pump(response, &mut body, recording, request)?;
        if let Err(why) = complete {
            let why = format!("the upstream's answer was cut short: {why}");
            notice(request, &why);
            trace.reason = Some(why);
            return Ok((Some(status), Next::Close));
        }
        // The rule is appended before the client's answer ends: a client that has its answer
        // (a test reading FILE next, COMMAND exiting, and the mock with it) finds it recorded.
        if let Some(recording) = recording {
            if let Err(why) = recording.finish(self) {
                notice(request, &why);
            }
        }
        body.finish()?;
        let next = if request.http10 {
            Next::Close
        } else {
            Next::KeepAlive
        };
        Ok((Some(status), next))
    }

    fn forward(&self, request: &Request) -> Result<Response<Body>, String> {
        let url = format!("{}{}", self.upstream, request.path);
        let mut outgoing = ureq::http::Request::post(url);
        for name in ["authorization", CONTENT_TYPE, "accept"] {
            if let Some(value) = request.header(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let outgoing = outgoing
            .body(&request.body[..])
            .map_err(|err| err.to_string())?;
        self.agent.run(outgoing).map_err(|err| err.to_string())
    }

    /// Appends one line to the recording and flushes it, under the lock, so that lines of
    /// answers completing together never mix.
    fn append(&self, parts: &mut [&mut dyn Read]) -> io::Result<()> {
        let mut file = lock(&self.file);
        for part in parts {
            io::copy(part, &mut *file)?;
        }
        file.flush()
    }
}

/// Moves the upstream's body to the client, read by read, each read flushed; feeds the
/// recording as it goes. A failed write to the client ends the exchange (`Err`); a failed
/// read from the upstream is the answer cut short (`Ok(Err)`).
fn pump<'s, W: Write>(
    response: Response<Body>,
    body: &mut http::Stream<'_, W>,
    mut recording: Option<Recording<'s>>,
    request: &Request,
) -> io::Result<(Result<(), io::Error>, Option<Recording<'s>>)> {
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok((Ok(()), recording)),
            Ok(n) => n,
            Err(err) => return Ok((Err(err), recording)),
        };
        body.send(&[&buf[..n]])?;
        body.flush()?;
        if let Some(Err(why)) = recording.as_mut().map(|r| r.feed(&buf[..n])) {
            notice(request, &why);
            recording = None;
        }
    }
}

/// The credential of the request's `Authorization`, whatever its scheme.
fn credential(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?.trim();
    let credential = value.split_once(' ').map_or(value, |(_, c)| c.trim());
    Some(credential).filter(|c| !c.is_empty())
}

/// One line on stderr, in one write: a request whose answer is passed on but not recorded.
fn notice(request: &Request, why: &str) {
    let line = format!("bnx-mock: not recorded: POST {}: {why}\n", request.path);
    let _ = io::stderr().write_all(line.as_bytes());
}

/// One rule being recorded.
struct Recording<'s> {
    scrub: Scrub,
    /// The line up to the reply's body or events.
    head: String,
    capture: Capture<'s>,
}

enum Capture<'s> {
    /// A whole body, held within the bound on bodies in flight.
    Body(Vec<u8>, Reservation<'s>),
    Events {
        decoder: Decoder,
        events: Events,
        spool: BufWriter<File>,
        /// Bytes of the line so far.
        size: usize,
        count: usize,
    },
}

impl<'s> Recording<'s> {
    fn start(
        request: &Request,
        agent: &str,
        status: u16,
        headers: &[(&str, String)],
        scrub: &Scrub,
        shared: &'s Shared,
    ) -> Result<Recording<'s>, String> {
        let body = String::from_utf8_lossy(&request.body);
        let body = scrub.text(&body).replace(['\r', '\n'], " ");
        let body = RawValue::from_string(body)
            .ok()
            .filter(|raw| raw.get().starts_with('{'))
            .ok_or("the request body is not a JSON object")?;
        let mut recorded = Map::new();
        for (name, value) in headers {
            let value = scrub.text(value).into_owned();
            recorded.insert(Canonical(name).to_string(), value.into());
        }
        let head = format!(
            r#"{{"match":{{"agent":{},"body":{}}},"reply":{{"status":{status},"headers":{},"#,
            serde_json::to_string(&scrub.text(agent)).expect("serializes"),
            body.get(),
            serde_json::Value::Object(recorded),
        );
        let streamed = headers
            .iter()
            .any(|(name, value)| *name == CONTENT_TYPE && value.starts_with(EVENT_STREAM));
        let capture = if streamed {
            let spool = tempfile::tempfile().map_err(|err| format!("no temporary file: {err}"))?;
            Capture::Events {
                decoder: Decoder::new(MAX_EVENT),
                events: Events::new(scrub.clone()),
                spool: BufWriter::new(spool),
                size: head.len(),
                count: 0,
            }
        } else {
            let held = shared.bodies.reserve(0).expect("nothing is always left");
            Capture::Body(Vec::new(), held)
        };
        Ok(Recording {
            scrub: scrub.clone(),
            head,
            capture,
        })
    }

    /// Takes the next bytes of the upstream's body; `Err` says why the answer cannot be
    /// recorded.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.capture {
            Capture::Body(body, held) => {
                if body.len() + bytes.len() > MAX_BODY {
                    return Err(format!("a whole answer is at most {} MiB", MAX_BODY >> 20));
                }
                if !held.grow(bytes.len()) {
                    return Err("the bodies in flight are at their bound".into());
                }
                body.extend_from_slice(bytes);
                Ok(())
            }
            Capture::Events {
                decoder,
                events,
                spool,
                size,
                count,
            } => {
                let mut spooled = Ok(());
                let mut write = |event: String| {
                    if spooled.is_ok() {
                        spooled = spool_event(spool, event, size, count);
                    }
                };
                let decoded = decoder.feed(bytes, &mut |data: &[u8]| {
                    events.push(&String::from_utf8_lossy(data), &mut write);
                    Ok::<_, EventTooLarge>(())
                });
                decoded.map_err(|err| err.to_string())?;
                spooled
            }
        }
    }

    /// Appends the rule to the recording.
    fn finish(self, recorder: &Recorder) -> Result<(), String> {
        let written = match self.capture {
            Capture::Body(body, _held) => {
                let text = String::from_utf8_lossy(&body);
                let text = self.scrub.text(&text);
                let body = match RawValue::from_string(text.replace(['\r', '\n'], " ")) {
                    Ok(json) => json.get().to_string(),
                    Err(_) => serde_json::to_string(&text).expect("serializes"),
                };
                let line = format!("{}\"body\":{body}}},\"times\":1}}\n", self.head);
                recorder.append(&mut [&mut line.as_bytes()])
            }
            Capture::Events {
                mut decoder,
                events,
                mut spool,
                mut size,
                mut count,
            } => {
                let mut pending = Vec::new();
                let _ = decoder.finish(&mut |data: &[u8]| {
                    pending.push(String::from_utf8_lossy(data).into_owned());
                    Ok::<_, EventTooLarge>(())
                });
                let mut events = events;
                let mut spooled = Ok(());
                let mut write = |event: String| {
                    if spooled.is_ok() {
                        spooled = spool_event(&mut spool, event, &mut size, &mut count);
                    }
                };
                for data in pending {
                    events.push(&data, &mut write);
                }
                events.finish(&mut write);
                spooled?;
                let file = spool.into_inner().map_err(|err| err.to_string())?;
                let mut file = file;
                file.rewind().map_err(|err| err.to_string())?;
                let head = format!("{}\"events\":[", self.head);
                let tail = "]},\"times\":1}\n";
                recorder.append(&mut [&mut head.as_bytes(), &mut file, &mut tail.as_bytes()])
            }
        };
        written.map_err(|err| format!("cannot write the recording: {err}"))
    }
}

/// Writes one event to the spool, after a comma unless it is the first.
fn spool_event(
    spool: &mut BufWriter<File>,
    event: String,
    size: &mut usize,
    count: &mut usize,
) -> Result<(), String> {
    let json = serde_json::to_string(&event).expect("serializes");
    *size += json.len() + 1;
    if *size > MAX_LINE {
        return Err(format!("a recorded rule is at most {} MiB", MAX_LINE >> 20));
    }
    let comma: &[u8] = if *count == 0 { b"" } else { b"," };
    *count += 1;
    spool
        .write_all(comma)
        .and_then(|()| spool.write_all(json.as_bytes()))
        .map_err(|err| format!("cannot write the temporary file: {err}"))
}
