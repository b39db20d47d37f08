//! bnx: a command-line client for the BlueNexus Agent Chat Completions API, and `bnx-mock`, an
//! offline stand-in for that API.
//!
//! The client's flow, one module per step: `cli` (arguments) -> `config` (flags, env and files
//! into a validated `Config`, the output `mode` decided once) -> `prompt` (every request
//! composed, a batch item's fields as overrides) -> `request` -> `client` (one exchange, the
//! same for a single request and a batch item: the `ledger`'s check of `--budget` and
//! `--min-credits`; `pace` inside `transport`, whose retries `retry` decides; `response`, whole
//! or `sse` streamed; the `ledger` told what each answer cost; the `contract` of `-x`,
//! `--expect-json` and `--schema`, whose JSON Schema `schema` compiles and checks, and the
//! re-asks of `--reask` that `reask` builds) -> `output` (stdout, as the mode says) -> `exit`
//! (the exit code of `error`'s table). `single` and `batch` drive the client for one request or
//! many, `spent` reads the ledger for `--spent`; `report` puts together the `bnx` object;
//! `printer` owns stderr.
//!
//! Value types are leaves that import no behaviour: `rate`, `budget`, `duration`, `store_url`, `digest`,
//! `endpoint`, `mode`, `url`, `timestamp`, `wire` (the API's types, shared with `mock`). Beside the flow:
//! `chunk` (the common shape of a stream chunk, read fast), `extract` (taking an answer
//! apart), `atomic` (the file of `-o`), `proxy`, `upload` (an early answer to a large
//! request), `redact` (the token masked in whatever a server echoes), `state` (saved
//! conversations), `store` (the fleet's Redis connection), `token`, `interrupt`, `usage`
//! (clap's errors in `bnx`'s form).

pub mod atomic;
pub mod batch;
pub mod budget;
pub mod cache;
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
pub mod ledger;
pub mod lock;
pub mod mock;
pub mod mode;
pub mod output;
pub mod pace;
pub mod printer;
pub mod prompt;
pub mod proxy;
pub mod rate;
pub mod reask;
pub mod redact;
pub mod report;
pub mod request;
pub mod response;
pub mod retry;
pub mod schema;
pub mod single;
pub mod spent;
pub mod sse;
pub mod state;
pub mod store;
pub mod store_url;
pub mod timestamp;
pub mod token;
pub mod transport;
pub mod upload;
pub mod url;
pub mod usage;
pub mod wire;
