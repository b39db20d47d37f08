//! Sending the request with ureq: timeouts, no redirects, proxies, the platform's trust store,
//! and the retry loop of SPEC section 5. It returns the final response, whatever its status;
//! reading it is `response.rs`'s job.

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body, Proxy, Timeout};

use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::output::{Meta, Notices};
use crate::request::{Request, USER_AGENT};
use crate::retry;
use crate::token::Secret;

/// Response headers past this size are a hostile or broken server, not an answer.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The final response, and why it was not retried when a retry was refused.
pub struct Sent {
    pub response: Response<Body>,
    pub gave_up: Option<String>,
}

pub struct Transport {
    agent: Agent,
    timeout: Duration,
    retries: u32,
    max_retry_wait: Duration,
}

impl Transport {
    pub fn new(config: &Config) -> Self {
        let builder = Agent::config_builder()
            .http_status_as_error(false)
            // A POST has no business being redirected, and the token must not follow one.
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .accept_encoding("identity")
            .max_response_header_size(MAX_HEADER_BYTES)
            .proxy(if config.env_proxy {
                Proxy::try_from_env()
            } else {
                None
            })
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_resolve(Some(config.connect_timeout))
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.timeout))
            .timeout_per_write(Some(config.timeout));
        // ureq's body timeouts are budgets for the whole body, which would cut a healthy long
        // stream; a per-read timeout is the "longest silence" the streaming contract asks for.
        let builder = if config.stream {
            builder.timeout_per_read(Some(config.timeout))
        } else {
            builder.timeout_per_call(Some(config.timeout))
        };
        Transport {
            agent: builder.build().into(),
            timeout: config.timeout,
            retries: config.retries,
            max_retry_wait: config.max_retry_wait,
        }
    }

    pub fn send(
        &self,
        request: &Request,
        token: &Secret,
        meta: &mut Meta,
        notices: &Notices,
    ) -> Result<Sent> {
        let body = serde_json::to_vec(&request.body).expect("a request always serializes");
        let mut attempt = 0;
        loop {
            meta.attempts = attempt + 1;
            notices.verbose(&format!("POST {} (attempt {})", request.url, attempt + 1));
            notices.verbose("authorization: Bearer ***");
            let sent_at = Instant::now();
            let result = self
                .agent
                .post(&request.url)
                .header("Authorization", format!("Bearer {}", token.expose()))
                .header("Content-Type", "application/json")
                .header("Accept", request.accept)
                .send(&body[..]);
            let last = attempt >= self.retries;
            let wait = match result {
                Ok(response) => {
                    let status = response.status();
                    notices.verbose(&format!(
                        "HTTP {} {} after {} ms",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or(""),
                        sent_at.elapsed().as_millis()
                    ));
                    meta.status = Some(status.as_u16());
                    if !retry::is_retryable_status(status.as_u16()) {
                        return Ok(Sent {
                            response,
                            gave_up: None,
                        });
                    }
                    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
                    let asked = retry::server_wait(
                        header("retry-after-ms"),
                        header("retry-after"),
                        SystemTime::now(),
                    );
                    if status.as_u16() == 429 {
                        meta.retry_after = asked.map(|d| d.as_secs_f64());
                    }
                    if last {
                        return Ok(Sent {
                            response,
                            gave_up: None,
                        });
                    }
                    if let Some(asked) = asked.filter(|a| *a > self.max_retry_wait) {
                        let gave_up = format!(
                            "the server asked to wait {}s, longer than --max-retry-wait {}s",
                            secs(asked),
                            secs(self.max_retry_wait)
                        );
                        return Ok(Sent {
                            response,
                            gave_up: Some(gave_up),
                        });
                    }
                    let wait = asked.unwrap_or_else(|| self.backoff(attempt));
                    notices.notice(&format!(
                        "HTTP {}; retrying in {}s (attempt {} of {})",
                        status.as_u16(),
                        secs(wait),
                        attempt + 2,
                        self.retries + 1
                    ));
                    wait
                }
                Err(err) => {
                    let (error, retryable) = self.classify(err);
                    if !retryable || last {
                        return Err(error);
                    }
                    let wait = self.backoff(attempt);
                    notices.notice(&format!(
                        "{}; retrying in {}s (attempt {} of {})",
                        error.line(),
                        secs(wait),
                        attempt + 2,
                        self.retries + 1
                    ));
                    wait
                }
            };
            sleep(wait);
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        retry::backoff(attempt, retry::jitter()).min(self.max_retry_wait)
    }

    /// The failure, and whether it happened before any response byte in a way worth retrying.
    fn classify(&self, err: ureq::Error) -> (Error, bool) {
        let network = |what: String| Error::msg(Kind::Unavailable, what).with_json_type("network");
        match err {
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => (
                Error::msg(
                    Kind::Unavailable,
                    "timed out connecting (--connect-timeout)",
                )
                .with_json_type("timeout"),
                true,
            ),
            ureq::Error::Timeout(_) => (
                Error::msg(
                    Kind::Unavailable,
                    format!("no answer within {}s (--timeout)", secs(self.timeout)),
                )
                .with_json_type("timeout"),
                true,
            ),
            ureq::Error::HostNotFound => (network("cannot resolve the API host".into()), true),
            ureq::Error::ConnectionFailed => {
                (network("cannot connect to the API host".into()), true)
            }
            ureq::Error::Io(e) => (
                network(format!("connection failed before an answer: {e}")),
                true,
            ),
            ureq::Error::ConnectProxyFailed(why) => {
                (network(format!("proxy refused: {why}")), true)
            }
            ureq::Error::Protocol(e) => (
                Error::msg(
                    Kind::Protocol,
                    format!("the server's answer is not valid HTTP: {e}"),
                ),
                false,
            ),
            ureq::Error::LargeResponseHeader(..) => (
                Error::msg(
                    Kind::Protocol,
                    format!(
                        "the server's response headers exceed {} KiB",
                        MAX_HEADER_BYTES >> 10
                    ),
                ),
                false,
            ),
            other => (network(format!("request failed: {other}")), false),
        }
    }
}

/// Seconds for a message: whole when whole, else one decimal.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}
