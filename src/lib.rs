//! bnx: a command-line client for the BlueNexus Agent Chat Completions API, and `bnx-mock`, an
//! offline stand-in for that API.
//!
//! The client's flow, one module per step: `cli` (arguments) -> `config` (flags, env and files
//! into a validated `Config`) -> `prompt` (the messages) -> `request` -> `transport` (HTTP,
//! with `retry` deciding) -> `response` (whole or `sse` streamed) -> `output` (stdout) ->
//! `error` (exit codes). `report` puts together the `bnx` object of `--json` from what the
//! stages return; `printer` owns stderr. `wire` holds the API's types, shared with `mock`;
//! `chunk` reads the common shape of a stream chunk without them.
//! `extract` takes apart a complete answer for `-x` and `--expect-json`; `atomic` is the file
//! of `-o`, replaced only on success. Beside the flow: `url` and `proxy` (where a request may
//! go), `upload` (an early answer to a large request), `redact` (the token masked in whatever a
//! server echoes), `state` (saved conversations), `usage` (clap's errors in `bnx`'s form),
//! `exit` (how a run ends: the error, the failure document, the exit code).

pub mod atomic;
pub mod batch;
pub mod chunk;
pub mod cli;
pub mod client;
pub mod config;
pub mod contract;
pub mod digest;
pub mod duration;
pub mod endpoint;
pub mod error;
pub mod exit;
pub mod extract;
pub mod interrupt;
pub mod mock;
pub mod mode;
pub mod output;
pub mod pace;
pub mod printer;
pub mod prompt;
pub mod proxy;
pub mod rate;
pub mod redact;
pub mod report;
pub mod request;
pub mod response;
pub mod retry;
pub mod single;
pub mod sse;
pub mod state;
pub mod store;
pub mod store_url;
pub mod token;
pub mod transport;
pub mod upload;
pub mod url;
pub mod usage;
pub mod wire;
