//! The integration tests, one binary with a module per behaviour, as a newcomer would look for
//! them: the real `bnx` and `bnx-mock` binaries over real HTTP on 127.0.0.1, asserting stdout,
//! stderr, exit codes, files on disk and what the server received.
//!
//! `cargo test --test integration MODULE` runs one module, e.g. `secrecy`.

mod base_url;
mod batch;
mod bench;
mod caching;
mod completions;
mod conversations;
mod credits;
mod exit_codes;
mod fleets;
mod hostile;
mod manpages;
mod mock;
mod mock_hostile;
mod mock_interop;
mod output;
mod pacing;
mod pipeline;
mod prompt;
mod proxies;
mod recording;
mod retries;
mod schemas;
mod scripted_answers;
mod secrecy;
mod soak;
mod terminal;
mod tokens;
mod uploads;
mod util;

#[path = "../support/mod.rs"]
mod support;
