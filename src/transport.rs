//! Sending the request with ureq: timeouts, no redirects, proxies, the platform's trust store,
//! and the retry loop, whose rules are `retry::decide`. It returns the final response, whatever
//! its status; reading it is `response.rs`'s job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::{Agent, Body, Timeout};

use crate::config::Network;
use crate::duration::secs;
use crate::error::{Error, Kind, Result};
use crate::pace::{self, Pacer, Turn};
use crate::printer::Printer;
use crate::request::{Request, USER_AGENT};
use crate::retry::{self, Decision, Outcome, Policy};
use crate::token::Secret;
use crate::upload;
use crate::url::Url;

/// Response headers past this size are a hostile or broken server, not an answer.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What the attempts learned, whether or not a response came of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempts {
    pub count: u32,
    /// Seconds the last 429 asked us to wait, when it said.
    pub retry_after: Option<f64>,
    /// Why a retry was refused, when one was.
    pub gave_up: Option<String>,
}

pub struct Transport {
    agent: Agent,
    timeout: Duration,
    policy: Policy,
    pacer: Option<Pacer>,
    /// The proxy, as messages name it.
    proxy: Option<String>,
    /// Set when a batch stops: an attempt still waiting for its turn or its retry is not sent.
    halted: AtomicBool,
}

impl Transport {
    /// The transport of a run whose requests ask for a stream when `stream`.
    pub fn new(network: &Network, stream: bool) -> Self {
        let builder = Agent::config_builder()
            .http_status_as_error(false)
            // A POST has no business being redirected, and the token must not follow one.
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .accept_encoding("identity")
            .max_response_header_size(MAX_HEADER_BYTES)
            .proxy(network.proxy.as_ref().map(|chosen| chosen.proxy.clone()))
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_resolve(Some(network.connect_timeout))
            .timeout_connect(Some(network.connect_timeout))
            .timeout_recv_response(Some(network.timeout))
            .timeout_per_write(Some(network.timeout));
        // ureq's body timeouts are budgets for the whole body, which would cut a healthy long
        // stream; a per-read timeout is the "longest silence" the streaming contract asks for.
        let builder = if stream {
            builder.timeout_per_read(Some(network.timeout))
        } else {
            builder.timeout_per_call(Some(network.timeout))
        };
        Transport {
            agent: Agent::with_parts(
                builder.build(),
                upload::connector(),
                DefaultResolver::default(),
            ),
            timeout: network.timeout,
            policy: network.retry,
            pacer: None,
            proxy: network.proxy.as_ref().map(|chosen| chosen.shown.clone()),
            halted: AtomicBool::new(false),
        }
    }

    /// Sends nothing more: a batch's budget is reached while other items wait for a pacing
    /// slot or a retry, which would otherwise be sent and paid for when their wait ends.
    pub fn halt(&self) {
        self.halted.store(true, Ordering::Release);
    }

    pub fn halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// Every attempt, retries included, first waits for its turn from `pacer`.
    pub fn paced(self, pacer: Option<Pacer>) -> Self {
        Transport { pacer, ..self }
    }

    /// Sends `request` until an attempt's result is final: a response of any status, or a
    /// failure that is not retried.
    pub fn send(
        &self,
        request: &Request,
        token: &Secret,
        printer: &Printer,
    ) -> (Attempts, Result<Response<Body>>) {
        let body = request.body_bytes();
        let peer = Peer::of(&request.url);
        let mut attempts = Attempts::default();
        // The result of the attempt a retry would follow.
        let mut last = None;
        loop {
            match self.turn(&mut attempts, printer) {
                // The answer being retried lets its connection go before the next one opens.
                Ok(true) => drop(last.take()),
                Ok(false) => {
                    let Some(last) = last else {
                        return (attempts, Err(not_sent()));
                    };
                    attempts.gave_up = Some("not retried: the batch stopped".into());
                    return (attempts, last);
                }
                Err(refused) => return (attempts, Err(refused)),
            }
            let attempt = attempts.count;
            attempts.count += 1;
            let result = self.post(request, &body, token, &peer, attempts.count, printer);
            let outcome = match &result {
                Ok(response) => self.answered(response, &mut attempts, printer),
                Err((retryable, _)) => Outcome::Failed {
                    retryable: *retryable,
                },
            };
            let wait = match retry::decide(attempt, outcome, &self.policy, retry::jitter()) {
                Decision::Retry(wait) => wait,
                Decision::Done => return (attempts, result.map_err(|(_, e)| e)),
                Decision::GiveUp(why) => {
                    attempts.gave_up = Some(why);
                    return (attempts, result.map_err(|(_, e)| e));
                }
            };
            let failure = match &result {
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err((_, err)) => err.line(),
            };
            printer.notice(&format!(
                "{failure}; retrying in {}s (attempt {} of {})",
                secs(wait),
                attempts.count + 1,
                self.policy.retries + 1
            ));
            sleep(wait);
            last = Some(result.map_err(|(_, e)| e));
        }
    }

    /// Waits for the pacer's slot. `Ok(false)` when the transport is halted, before the wait
    /// or during it: the attempt is not sent. `Err` (exit 75, nothing sent) when the slot is
    /// further away than the caller accepts.
    fn turn(&self, attempts: &mut Attempts, printer: &Printer) -> Result<bool> {
        if self.halted() {
            return Ok(false);
        }
        if let Some(pacer) = &self.pacer {
            if let Turn::Refused(wait) = pacer.wait_turn(printer) {
                attempts.retry_after = Some(wait.as_secs_f64());
                return Err(pace::refused(wait, pacer.rate()));
            }
        }
        Ok(!self.halted())
    }

    /// One attempt: the POST, said with `-v`; a failure comes with whether it may be retried.
    fn post(
        &self,
        request: &Request,
        body: &[u8],
        token: &Secret,
        peer: &Peer,
        attempt: u32,
        printer: &Printer,
    ) -> std::result::Result<Response<Body>, (bool, Error)> {
        printer.verbose(&format!("POST {} (attempt {attempt})", request.url));
        printer.verbose("authorization: Bearer ***");
        if attempt == 1 {
            printer.verbose_body("request body", body);
        }
        let sent_at = Instant::now();
        upload::start();
        let response = self
            .agent
            .post(&request.url)
            .header("Authorization", format!("Bearer {}", token.expose()))
            .header("Content-Type", "application/json")
            .header("Accept", request.accept)
            .send(body)
            .map_err(|e| {
                if upload::was_cut() {
                    (false, cut_while_sending(body.len(), peer))
                } else {
                    (is_retryable(&e), self.error(&e, peer))
                }
            })?;
        let status = response.status();
        printer.verbose(&format!(
            "HTTP {} {} after {} ms",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            sent_at.elapsed().as_millis()
        ));
        Ok(response)
    }

    /// What a response means for retrying. A 429's wait is reported, and shared with every
    /// process that paces through the same store.
    fn answered(
        &self,
        response: &Response<Body>,
        attempts: &mut Attempts,
        printer: &Printer,
    ) -> Outcome {
        let status = response.status().as_u16();
        let asked = asked_wait(response);
        if status == 429 {
            attempts.retry_after = asked;
            if let (Some(pacer), Some(asked)) = (&self.pacer, asked) {
                pacer.pause(shared_pause(asked), printer);
            }
        }
        Outcome::Answered { status, asked }
    }

    /// A failure before any response, in words, naming where the request went: `peer`.
    fn error(&self, err: &ureq::Error, peer: &Peer) -> Error {
        let via = self
            .proxy
            .as_ref()
            .map(|proxy| format!(" through the proxy {proxy}"))
            .unwrap_or_default();
        let network = |what: String| Error::msg(Kind::Unavailable, what).with_json_type("network");
        match err {
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => Error::msg(
                Kind::Unavailable,
                format!("timed out connecting to {peer}{via} (--connect-timeout)"),
            )
            .with_json_type("timeout"),
            ureq::Error::Timeout(_) => Error::msg(
                Kind::Unavailable,
                format!(
                    "no answer from {peer}{via} within {}s (--timeout)",
                    secs(self.timeout)
                ),
            )
            .with_json_type("timeout"),
            ureq::Error::HostNotFound => network(self.unresolved(&peer.host, None)),
            ureq::Error::Io(e) if is_resolve_failure(e) => {
                let detail = e.to_string();
                let detail = detail.rsplit(": ").next().filter(|d| *d != detail);
                network(self.unresolved(&peer.host, detail))
            }
            ureq::Error::ConnectionFailed => network(format!("cannot connect to {peer}{via}")),
            ureq::Error::Io(e) => network(format!(
                "connection to {peer}{via} failed before an answer: {e}"
            )),
            ureq::Error::ConnectProxyFailed(why) => network(format!(
                "the proxy {} refused: {why}",
                self.proxy.as_deref().unwrap_or("")
            )),
            ureq::Error::Protocol(e) => Error::msg(
                Kind::Protocol,
                format!("the answer of {peer} is not valid HTTP: {e}"),
            ),
            ureq::Error::LargeResponseHeader(..) => Error::msg(
                Kind::Protocol,
                format!(
                    "the response headers of {peer} exceed {} KiB",
                    MAX_HEADER_BYTES >> 10
                ),
            ),
            other => network(format!("request to {peer}{via} failed: {other}")),
        }
    }
}

impl Transport {
    /// A DNS failure, naming the host (and the proxy's, which may be the one that failed).
    fn unresolved(&self, host: &str, detail: Option<&str>) -> String {
        let mut message = format!("cannot resolve the host name {host}");
        if let Some(proxy) = &self.proxy {
            message.push_str(&format!(" or that of the proxy {proxy}"));
        }
        if let Some(detail) = detail {
            message.push_str(&format!(" ({detail})"));
        }
        message
    }
}

/// Where a request goes, as messages name it: the host and the port, never user information
/// (a base URL that holds any is refused before anything is sent).
struct Peer {
    host: String,
    port: Option<u16>,
}

impl Peer {
    fn of(url: &str) -> Peer {
        match Url::parse(url) {
            Ok(url) => Peer {
                port: url.port_or_default(),
                host: url.host,
            },
            Err(_) => Peer {
                host: "the server".into(),
                port: None,
            },
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A lookup that failed: ureq reports it as std's `getaddrinfo` error rather than
/// `HostNotFound`, which it keeps for a lookup that found no address.
fn is_resolve_failure(err: &std::io::Error) -> bool {
    err.to_string()
        .starts_with("failed to lookup address information")
}

/// What an attempt that was halted before it was first sent comes to; a batch counts its item
/// as never started.
fn not_sent() -> Error {
    Error::msg(Kind::Unavailable, "not sent: the batch stopped")
}

/// The server stopped reading the request and closed, and no answer could be read: retrying
/// would only send it again.
fn cut_while_sending(size: usize, peer: &Peer) -> Error {
    Error::msg(
        Kind::Unavailable,
        format!(
            "the server closed the connection while the request ({}) was being sent to {peer}",
            bytes(size)
        ),
    )
    .with_json_type("network")
    .with_hint("the server may refuse requests this large: try a shorter prompt")
}

/// A size for a message: bytes, KiB or MiB.
fn bytes(n: usize) -> String {
    match n {
        0..1024 => format!("{n} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Whether a failure before any response byte is worth another attempt.
fn is_retryable(err: &ureq::Error) -> bool {
    matches!(
        err,
        ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Io(_)
            | ureq::Error::ConnectProxyFailed(_)
    )
}

/// What a 429's wait holds every process to: at most a day, so that a wait too long for any
/// clock (`Retry-After: 1e300`) stops this run but does not refuse every later one forever.
fn shared_pause(asked_secs: f64) -> Duration {
    Duration::from_secs_f64(asked_secs.min(pace::FURTHEST.as_secs_f64()))
}

/// The wait a response asked for, in seconds, if it asked.
fn asked_wait(response: &Response<Body>) -> Option<f64> {
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
    retry::server_wait(
        header("retry-after-ms"),
        header("retry-after"),
        SystemTime::now(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_pause_is_the_wait_asked_up_to_a_day() {
        assert_eq!(shared_pause(1.5), Duration::from_millis(1500));
        assert_eq!(shared_pause(86_400.0), Duration::from_secs(86_400));
        for huge in [86_401.0, 1e20, 1e300, f64::MAX] {
            assert_eq!(shared_pause(huge), Duration::from_secs(86_400), "{huge}");
        }
    }

    #[test]
    fn a_peer_is_named_by_host_and_port_the_default_one_too() {
        let named = |url| Peer::of(url).to_string();
        assert_eq!(
            named("https://api.example.com/api/v1/x"),
            "api.example.com:443"
        );
        assert_eq!(named("http://127.0.0.1:8080/gw/api/v1/x"), "127.0.0.1:8080");
        assert_eq!(named("http://[::1]/api/v1/x"), "[::1]:80");
    }

    #[test]
    fn sizes_read_in_the_unit_that_fits() {
        assert_eq!(bytes(900), "900 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(32 * 1024 * 1024 + 48), "32.0 MiB");
    }
}
