//! Sending the request with ureq: timeouts, no redirects, proxies, the platform's trust store,
//! and the retry loop, whose rules are `retry::decide`. It returns the final response, whatever
//! its status; reading it is `response.rs`'s job.

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body, Proxy, Timeout};

use crate::config::Network;
use crate::error::{Error, Kind, Result};
use crate::pace::{self, Pacer, Turn};
use crate::printer::Printer;
use crate::request::{Request, USER_AGENT};
use crate::retry::{self, secs, Decision, Outcome, Policy};
use crate::token::Secret;

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
}

impl Transport {
    pub fn new(network: &Network) -> Self {
        let builder = Agent::config_builder()
            .http_status_as_error(false)
            // A POST has no business being redirected, and the token must not follow one.
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .accept_encoding("identity")
            .max_response_header_size(MAX_HEADER_BYTES)
            .proxy(if network.env_proxy {
                Proxy::try_from_env()
            } else {
                None
            })
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
        let builder = if network.stream {
            builder.timeout_per_read(Some(network.timeout))
        } else {
            builder.timeout_per_call(Some(network.timeout))
        };
        Transport {
            agent: builder.build().into(),
            timeout: network.timeout,
            policy: network.retry,
            pacer: None,
        }
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
        let body = serde_json::to_vec(&request.body).expect("a request always serializes");
        let mut attempts = Attempts::default();
        loop {
            if let Some(pacer) = &self.pacer {
                if let Turn::Refused(wait) = pacer.wait_turn(printer) {
                    attempts.retry_after = Some(wait.as_secs_f64());
                    return (attempts, Err(pace::refused(wait, pacer.rate())));
                }
            }
            let attempt = attempts.count;
            attempts.count += 1;
            printer.verbose(&format!(
                "POST {} (attempt {})",
                request.url, attempts.count
            ));
            printer.verbose("authorization: Bearer ***");
            if attempt == 0 {
                printer.verbose_body("request body", &body);
            }
            let sent_at = Instant::now();
            let result = self
                .agent
                .post(&request.url)
                .header("Authorization", format!("Bearer {}", token.expose()))
                .header("Content-Type", "application/json")
                .header("Accept", request.accept)
                .send(&body[..])
                .map_err(|e| (is_retryable(&e), self.error(&e)));
            let outcome = match &result {
                Ok(response) => {
                    let status = response.status();
                    printer.verbose(&format!(
                        "HTTP {} {} after {} ms",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or(""),
                        sent_at.elapsed().as_millis()
                    ));
                    let asked = asked_wait(response);
                    if status.as_u16() == 429 {
                        attempts.retry_after = asked.map(|d| d.as_secs_f64());
                        if let (Some(pacer), Some(asked)) = (&self.pacer, asked) {
                            pacer.pause(asked, printer);
                        }
                    }
                    Outcome::Answered {
                        status: status.as_u16(),
                        asked,
                    }
                }
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
        }
    }

    /// A failure before any response, in words.
    fn error(&self, err: &ureq::Error) -> Error {
        let network = |what: String| Error::msg(Kind::Unavailable, what).with_json_type("network");
        match err {
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => Error::msg(
                Kind::Unavailable,
                "timed out connecting (--connect-timeout)",
            )
            .with_json_type("timeout"),
            ureq::Error::Timeout(_) => Error::msg(
                Kind::Unavailable,
                format!("no answer within {}s (--timeout)", secs(self.timeout)),
            )
            .with_json_type("timeout"),
            ureq::Error::HostNotFound => network("cannot resolve the API host".into()),
            ureq::Error::ConnectionFailed => network("cannot connect to the API host".into()),
            ureq::Error::Io(e) => network(format!("connection failed before an answer: {e}")),
            ureq::Error::ConnectProxyFailed(why) => network(format!("proxy refused: {why}")),
            ureq::Error::Protocol(e) => Error::msg(
                Kind::Protocol,
                format!("the server's answer is not valid HTTP: {e}"),
            ),
            ureq::Error::LargeResponseHeader(..) => Error::msg(
                Kind::Protocol,
                format!(
                    "the server's response headers exceed {} KiB",
                    MAX_HEADER_BYTES >> 10
                ),
            ),
            other => network(format!("request failed: {other}")),
        }
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

/// The wait a response asked for, if it asked.
fn asked_wait(response: &Response<Body>) -> Option<Duration> {
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
    retry::server_wait(
        header("retry-after-ms"),
        header("retry-after"),
        SystemTime::now(),
    )
}
