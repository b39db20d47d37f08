//! `bnx-mock`: an offline stand-in for the Agent Chat Completions API, faithful to its
//! contract, with injectable faults, for tests, demos and users' own CI.
//!
//! `cli` (arguments) -> `server` (sockets, threads, limits, exec mode) -> `http` (framing) ->
//! `api` (the endpoint and its order of checks), which uses `accounts` (tokens, rate limits,
//! credits, conversations), `validate` (the request body), `fault` (injected failures),
//! `answer` (deterministic content), `reply` (errors and whole answers), `stream` (SSE) and
//! `log`. Scripted answers (`--answers`) are read and chosen by `answers` and sent by `replay`;
//! `record` is the recording proxy of `--record`, and `scrub` keeps the token out of what it
//! records.

pub mod accounts;
pub mod answer;
pub mod answers;
pub mod api;
pub mod cli;
pub mod fault;
pub mod http;
pub mod log;
pub mod record;
pub mod replay;
pub mod reply;
pub mod scrub;
pub mod server;
pub mod stream;
pub mod validate;

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::{Accounts, TokenSpec, DEFAULT_TOKEN};
use answers::Answers;
use cli::MockCli;
use fault::Fault;
use record::Recorder;
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
    /// `--answers` (or `--strict` alone).
    pub answers: Option<Answers>,
    /// `--record`: requests go to the upstream, and are recorded.
    pub recorder: Option<Recorder>,
}

/// A mutex's value, even if a thread panicked holding it: the mock's state stays usable.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
/// The log or the recording cannot be written.
const EXIT_CANNOT_WRITE: i32 = 74;
const EXIT_USAGE: i32 = 2;
/// How long a recording mock waits, once COMMAND has exited, for answers still coming from the
/// upstream to be recorded.
const SETTLE: Duration = Duration::from_secs(5);

/// Runs the mock as its command line says; returns the process exit code.
pub fn run(cli: MockCli) -> i32 {
    match start(cli) {
        Ok(code) => code,
        Err(Failed(code, why)) => {
            let _ = std::io::stderr().write_all(format!("bnx-mock: error: {why}\n").as_bytes());
            code
        }
    }
}

/// Why the mock could not start, and its exit code.
struct Failed(i32, String);

fn start(cli: MockCli) -> Result<i32, Failed> {
    let tokens = if cli.tokens.is_empty() {
        vec![DEFAULT_TOKEN
            .parse::<TokenSpec>()
            .expect("the default token is valid")]
    } else {
        cli.tokens.clone()
    };
    let Files {
        log,
        answers,
        recorder,
    } = Files::open(&cli, &tokens)?;
    let exec = !cli.command.is_empty();
    let listen = cli.listen.clone().unwrap_or_else(|| {
        let default = if exec { "127.0.0.1:0" } else { DEFAULT_LISTEN };
        default.to_string()
    });
    let listener = TcpListener::bind(listen.as_str()).map_err(|err| {
        Failed(
            EXIT_CANNOT_LISTEN,
            format!("cannot listen on {listen}: {err}"),
        )
    })?;
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    let shared = Arc::new(Shared {
        accounts: Mutex::new(Accounts::new(&tokens, cli.credits, cli.rate_limit)),
        faults: Mutex::new(VecDeque::from(cli.faults.clone())),
        log,
        secrets: log::Secrets::new(tokens.iter().map(|spec| spec.token.clone())),
        options: AnswerOptions {
            answer_size: cli.answer_size,
            chunks: cli.chunks.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            chunk_delay: Duration::from_millis(cli.chunk_delay),
        },
        completions: AtomicU64::new(0),
        bodies: http::Budget::new(http::MAX_BODIES_IN_FLIGHT),
        answers,
        recorder,
    });
    let limits = Limits {
        max_connections: usize::try_from(cli.max_connections).unwrap_or(usize::MAX),
        header_timeout: cli.header_timeout,
        idle_timeout: cli.idle_timeout,
        progress_timeout: cli.progress_timeout,
    };
    let exported = exported(addr, &cli, &tokens);
    if exec {
        let served = Arc::clone(&shared);
        std::thread::spawn(move || server::serve(listener, served, limits));
        let code = server::run_command(&cli.command, &exported);
        if let Some(recorder) = &shared.recorder {
            recorder.settle(SETTLE);
        }
        return Ok(code);
    }
    // One write: a reader that takes only the first line (tests parse it) gets all of it at once.
    let text = startup(addr, &cli, &tokens, shared.answers.as_ref(), &exported);
    let _ = std::io::stderr().write_all(text.as_bytes());
    server::serve(listener, shared, limits);
    Ok(0)
}

/// The files the command line names, read or opened for writing before the mock listens.
struct Files {
    log: Option<log::Log>,
    answers: Option<Answers>,
    recorder: Option<Recorder>,
}

impl Files {
    fn open(cli: &MockCli, tokens: &[TokenSpec]) -> Result<Files, Failed> {
        let log = match &cli.log {
            None => None,
            Some(path) => Some(
                log::Log::create(path, tokens.iter().map(|spec| spec.token.clone())).map_err(
                    |err| {
                        let why = format!("cannot write the log file {}: {err}", path.display());
                        Failed(EXIT_CANNOT_WRITE, why)
                    },
                )?,
            ),
        };
        let answers = (!cli.answers.is_empty() || cli.strict)
            .then(|| Answers::load(&cli.answers, cli.strict))
            .transpose()
            .map_err(|why| Failed(EXIT_USAGE, why))?;
        let recorder = match (&cli.record, &cli.upstream) {
            (Some(path), Some(upstream)) => Some(
                Recorder::open(
                    path,
                    &upstream.origin,
                    upstream.loopback,
                    cli.upstream_timeout,
                )
                .map_err(|err| {
                    let why = format!("cannot write the recording {}: {err}", path.display());
                    Failed(EXIT_CANNOT_WRITE, why)
                })?,
            ),
            _ => None,
        };
        Ok(Files {
            log,
            answers,
            recorder,
        })
    }
}

/// What a client of the mock is given in its environment: the URL, and unless the mock is
/// recording (when the client's own token and the real API's limit apply), the token and the
/// rate limit to pace to.
fn exported(addr: SocketAddr, cli: &MockCli, tokens: &[TokenSpec]) -> Vec<(&'static str, String)> {
    let mut vars = vec![(
        "BLUENEXUS_BASE_URL",
        format!("http://{}", server::reachable(addr)),
    )];
    if cli.record.is_none() {
        vars.push(("BLUENEXUS_TOKEN", tokens[0].token.clone()));
        vars.push(("BLUENEXUS_RATE_LIMIT", cli.rate_limit.to_string()));
    }
    vars
}

/// What a user needs to point a client at a standalone mock. The first line's form is parsed by
/// scripts and tests: keep it.
fn startup(
    addr: SocketAddr,
    cli: &MockCli,
    tokens: &[TokenSpec],
    answers: Option<&Answers>,
    exported: &[(&str, String)],
) -> String {
    let mut text = format!("bnx-mock: listening on http://{addr}\n");
    match (&cli.record, &cli.upstream) {
        (Some(path), Some(upstream)) => text.push_str(&format!(
            "bnx-mock: recording to {} from {}; each client's own token is passed on\n",
            path.display(),
            upstream.origin
        )),
        _ => {
            for spec in tokens {
                let scopes = spec.scopes.join(",");
                text.push_str(&format!("bnx-mock: token {} ({scopes})\n", spec.token));
            }
        }
    }
    if let Some(answers) = answers {
        let files: Vec<String> = cli
            .answers
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let strict = if answers.strict { ", --strict" } else { "" };
        text.push_str(&format!(
            "bnx-mock: {} scripted answers from {}{strict}\n",
            answers.len(),
            if files.is_empty() {
                "no file".into()
            } else {
                files.join(", ")
            }
        ));
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
    use clap::Parser;

    #[test]
    fn startup_names_url_tokens_and_the_line_to_paste() {
        let tokens = [
            "bnx-mock-token".parse().unwrap(),
            "it's$:agents-read".parse().unwrap(),
        ];
        let addr = "0.0.0.0:8787".parse().unwrap();
        let cli = MockCli::try_parse_from(["bnx-mock", "--rate-limit", "3/2"]).unwrap();
        let text = startup(addr, &cli, &tokens, None, &exported(addr, &cli, &tokens));
        assert_eq!(
            text,
            "bnx-mock: listening on http://0.0.0.0:8787\n\
             bnx-mock: token bnx-mock-token (agents-all)\n\
             bnx-mock: token it's$ (agents-read)\n\
             export BLUENEXUS_BASE_URL=http://127.0.0.1:8787 BLUENEXUS_TOKEN=bnx-mock-token \
             BLUENEXUS_RATE_LIMIT=3/2\n"
        );
        assert_eq!(shell_quoted("it's$"), r"'it'\''s$'");
        let answers = Answers::load(&[] as &[&str], true).unwrap();
        let text = startup(addr, &cli, &tokens, Some(&answers), &[]);
        assert!(text.contains("\nbnx-mock: 0 scripted answers from no file, --strict\n"));
    }

    #[test]
    fn recording_exports_the_url_alone_and_says_where_it_records() {
        let tokens = ["bnx-mock-token".parse().unwrap()];
        let addr = "127.0.0.1:8787".parse().unwrap();
        let cli = MockCli::try_parse_from([
            "bnx-mock",
            "--record",
            "a.jsonl",
            "--upstream",
            "https://api.example.test/prefix/",
        ])
        .unwrap();
        let text = startup(addr, &cli, &tokens, None, &exported(addr, &cli, &tokens));
        assert_eq!(
            text,
            "bnx-mock: listening on http://127.0.0.1:8787\n\
             bnx-mock: recording to a.jsonl from https://api.example.test/prefix; each \
             client's own token is passed on\n\
             export BLUENEXUS_BASE_URL=http://127.0.0.1:8787\n"
        );
    }
}
