//! `bnx-mock`: an offline stand-in for the Agent Chat Completions API, faithful to its
//! contract, with injectable faults, for tests, demos and users' own CI.
//!
//! `cli` (arguments) -> `server` (sockets, threads, limits, exec mode) -> `http` (framing) ->
//! `api` (the endpoint and its order of checks), which uses `accounts` (tokens, rate limits,
//! credits, conversations), `validate` (the request body), `fault` (injected failures),
//! `answer` (deterministic content), `reply` (errors and whole answers), `stream` (SSE) and
//! `log`.

pub mod accounts;
pub mod answer;
pub mod api;
pub mod cli;
pub mod fault;
pub mod http;
pub mod log;
pub mod reply;
pub mod server;
pub mod stream;
pub mod validate;

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::{Accounts, RateLimit, TokenSpec, DEFAULT_TOKEN};
use cli::MockCli;
use fault::Fault;
use server::Limits;

/// How answers are shaped, from the command line.
#[derive(Debug, Clone, Default)]
pub struct AnswerOptions {
    /// Pad every answer to at least this many bytes.
    pub answer_size: usize,
    /// Stream this many content chunks instead of one per word.
    pub chunks: Option<usize>,
    /// Pause before each streamed content chunk.
    pub chunk_delay: Duration,
}

/// What all connections share.
pub struct Shared {
    pub accounts: Mutex<Accounts>,
    pub faults: Mutex<VecDeque<Fault>>,
    pub log: Option<log::Log>,
    /// What error messages that quote the client must mask.
    pub secrets: log::Secrets,
    pub options: AnswerOptions,
    pub completions: AtomicU64,
    /// Request bodies held across all connections.
    pub bodies: http::Budget,
}

impl Shared {
    /// A completion id, new for every answer.
    pub fn next_id(&self) -> String {
        let n = self.completions.fetch_add(1, Ordering::Relaxed) + 1;
        format!("chatcmpl-mock-{n}")
    }
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// The address cannot be listened on: a code `bnx` never uses, so a script tells "the mock did
/// not start" from "bnx failed".
const EXIT_CANNOT_LISTEN: i32 = 71;
const EXIT_CANNOT_LOG: i32 = 74;

/// Runs the mock as its command line says; returns the process exit code.
pub fn run(cli: MockCli) -> i32 {
    let tokens = if cli.tokens.is_empty() {
        vec![DEFAULT_TOKEN
            .parse::<TokenSpec>()
            .expect("the default token is valid")]
    } else {
        cli.tokens
    };
    let secrets = tokens.iter().map(|spec| spec.token.clone());
    let log = match cli
        .log
        .as_deref()
        .map(|path| log::Log::create(path, secrets))
    {
        None => None,
        Some(Ok(log)) => Some(log),
        Some(Err(err)) => {
            let path = cli.log.as_deref().unwrap_or(Path::new("")).display();
            eprintln!("bnx-mock: error: cannot write the log file {path}: {err}");
            return EXIT_CANNOT_LOG;
        }
    };
    let exec = !cli.command.is_empty();
    let listen = cli.listen.unwrap_or_else(|| {
        let default = if exec { "127.0.0.1:0" } else { DEFAULT_LISTEN };
        default.to_string()
    });
    let listener = match TcpListener::bind(listen.as_str()) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("bnx-mock: error: cannot listen on {listen}: {err}");
            return EXIT_CANNOT_LISTEN;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    let shared = Arc::new(Shared {
        accounts: Mutex::new(Accounts::new(&tokens, cli.credits, cli.rate_limit)),
        faults: Mutex::new(VecDeque::from(cli.faults)),
        log,
        secrets: log::Secrets::new(tokens.iter().map(|spec| spec.token.clone())),
        options: AnswerOptions {
            answer_size: cli.answer_size,
            chunks: cli.chunks.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            chunk_delay: Duration::from_millis(cli.chunk_delay),
        },
        completions: AtomicU64::new(0),
        bodies: http::Budget::new(http::MAX_BODIES_IN_FLIGHT),
    });
    let limits = Limits {
        max_connections: usize::try_from(cli.max_connections).unwrap_or(usize::MAX),
        header_timeout: cli.header_timeout,
        idle_timeout: cli.idle_timeout,
        progress_timeout: cli.progress_timeout,
    };
    let exported = exported(addr, &tokens, cli.rate_limit);
    if exec {
        std::thread::spawn(move || server::serve(listener, shared, limits));
        return server::run_command(&cli.command, &exported);
    }
    // One write: a reader that takes only the first line (tests parse it) gets all of it at once.
    let _ = std::io::stderr().write_all(startup(addr, &tokens, &exported).as_bytes());
    server::serve(listener, shared, limits);
    0
}

/// What a client of the mock is given in its environment: the URL, the token, and the rate
/// limit to pace to.
fn exported(
    addr: SocketAddr,
    tokens: &[TokenSpec],
    rate: RateLimit,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "BLUENEXUS_BASE_URL",
            format!("http://{}", server::reachable(addr)),
        ),
        ("BLUENEXUS_TOKEN", tokens[0].token.clone()),
        ("BLUENEXUS_RATE_LIMIT", rate.to_string()),
    ]
}

/// What a user needs to point a client at a standalone mock. The first line's form is parsed by
/// scripts and tests: keep it.
fn startup(addr: SocketAddr, tokens: &[TokenSpec], exported: &[(&str, String)]) -> String {
    let mut text = format!("bnx-mock: listening on http://{addr}\n");
    for spec in tokens {
        let scopes = spec.scopes.join(",");
        text.push_str(&format!("bnx-mock: token {} ({scopes})\n", spec.token));
    }
    let line: Vec<String> = exported
        .iter()
        .map(|(name, value)| format!("{name}={}", shell_quoted(value)))
        .collect();
    text.push_str(&format!("export {}\n", line.join(" ")));
    text
}

/// `text` as one shell word: bare when it has only characters no shell treats specially.
fn shell_quoted(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:/@%+=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_names_url_tokens_and_the_line_to_paste() {
        let tokens = [
            "bnx-mock-token".parse().unwrap(),
            "it's$:agents-read".parse().unwrap(),
        ];
        let addr = "0.0.0.0:8787".parse().unwrap();
        let rate = "3/2".parse().unwrap();
        let text = startup(addr, &tokens, &exported(addr, &tokens, rate));
        assert_eq!(
            text,
            "bnx-mock: listening on http://0.0.0.0:8787\n\
             bnx-mock: token bnx-mock-token (agents-all)\n\
             bnx-mock: token it's$ (agents-read)\n\
             export BLUENEXUS_BASE_URL=http://127.0.0.1:8787 BLUENEXUS_TOKEN=bnx-mock-token \
             BLUENEXUS_RATE_LIMIT=3/2\n"
        );
        assert_eq!(shell_quoted("it's$"), r"'it'\''s$'");
    }
}
