//! `bnx-mock`: an offline stand-in for the Agent Chat Completions API, faithful to its
//! contract, with injectable faults, for tests, demos and users' own CI.
//!
//! `cli` (arguments) -> `server` (sockets, threads, exec mode) -> `http` (framing) -> `api`
//! (the endpoint), which uses `accounts` (tokens, rate limits, credits, conversations),
//! `answer` (deterministic content), `fault` and `log`.

pub mod accounts;
pub mod answer;
pub mod api;
pub mod cli;
pub mod fault;
pub mod http;
pub mod log;
pub mod server;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::{Accounts, TokenSpec, DEFAULT_TOKEN};
use api::{AnswerOptions, Shared};
use cli::MockCli;

const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// Runs the mock as its command line says; returns the process exit code.
pub fn run(cli: MockCli) -> i32 {
    let tokens = if cli.tokens.is_empty() {
        vec![DEFAULT_TOKEN
            .parse::<TokenSpec>()
            .expect("the default token is valid")]
    } else {
        cli.tokens
    };
    let log = match cli.log.as_deref().map(log::Log::create).transpose() {
        Ok(log) => log,
        Err(err) => {
            eprintln!("bnx-mock: error: cannot write the log file: {err}");
            return 74;
        }
    };
    let exec = !cli.command.is_empty();
    let listen = cli.listen.unwrap_or_else(|| {
        let default = if exec { "127.0.0.1:0" } else { DEFAULT_LISTEN };
        default.parse::<SocketAddr>().expect("valid address")
    });
    let listener = match TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("bnx-mock: error: cannot listen on {listen}: {err}");
            return 69;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    let shared = Arc::new(Shared {
        accounts: Mutex::new(Accounts::new(&tokens, cli.credits, cli.rate_limit)),
        faults: Mutex::new(VecDeque::from(cli.faults)),
        log,
        options: AnswerOptions {
            answer_size: cli.answer_size,
            chunks: cli.chunks.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            chunk_delay: Duration::from_millis(cli.chunk_delay),
        },
        completions: AtomicU64::new(0),
    });
    if exec {
        std::thread::spawn(move || server::serve(listener, shared));
        return server::run_command(&cli.command, addr, &tokens[0].token);
    }
    eprintln!("bnx-mock: listening on http://{addr}");
    server::serve(listener, shared);
    0
}
