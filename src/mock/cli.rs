//! The command line of `bnx-mock`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::accounts::TokenSpec;
use super::fault::{Fault, FAULT_HELP};

const EXAMPLES: &str = "\
Examples:
  bnx-mock -- bnx \"hi\"                        run one command against a fresh mock
  bnx-mock --fault 503 --fault 429:2 -- ./pipeline.sh
  bnx-mock --listen 127.0.0.1:0 --log requests.jsonl   serve until Ctrl-C
  bnx-mock --answer-size 50000000 --chunks 100000      large streams for benchmarks

Answers are deterministic: \"[turn N] \" followed by the last user message, padded with
filler to --answer-size, cut at max_tokens (4 bytes a token). Any OpenAI-compatible client
works with base_url http://127.0.0.1:PORT/api/v1/agents/default.";

fn after_help() -> String {
    format!("{FAULT_HELP}\n\n{EXAMPLES}")
}

#[derive(Debug, Parser)]
#[command(
    name = "bnx-mock",
    version,
    about = "An offline stand-in for the BlueNexus Agent Chat Completions API",
    after_help = after_help(),
    max_term_width = 100
)]
pub struct MockCli {
    /// Address to listen on (port 0: any free port). With COMMAND: 127.0.0.1:0
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Accepted token, optionally with scopes (default scope agents-all); repeatable
    /// [default: bnx-mock-token]
    #[arg(long = "token", value_name = "TOKEN[:SCOPE,...]")]
    pub tokens: Vec<TokenSpec>,

    /// Requests per rolling minute per token; 0 for no limit
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub rate_limit: usize,

    /// Starting credit balance of each token
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub credits: u64,

    /// Fail the next request this way (see Faults below); repeatable, used in order
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<Fault>,

    /// Append one JSON line per request (token redacted) to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Pad every answer to at least BYTES
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub answer_size: usize,

    /// Stream N content chunks per answer [default: one per word]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunks: Option<u64>,

    /// Milliseconds to wait before each streamed content chunk
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub chunk_delay: u64,

    /// Run COMMAND against the mock (BLUENEXUS_BASE_URL and BLUENEXUS_TOKEN set), then exit
    /// with its exit code
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_app() {
        MockCli::command().debug_assert();
    }

    #[test]
    fn parses_repeated_options_and_command() {
        let cli = MockCli::try_parse_from([
            "bnx-mock",
            "--fault",
            "503",
            "--fault",
            "cut:2",
            "--token",
            "a",
            "--token",
            "b:agents-read",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        assert_eq!(cli.faults, [Fault::Status(503), Fault::Cut { chunks: 2 }]);
        assert_eq!(cli.tokens[1].scopes, ["agents-read"]);
        assert_eq!(cli.command, ["sh", "-c", "exit 3"]);
        assert!(MockCli::try_parse_from(["bnx-mock", "--fault", "teapot"]).is_err());
    }
}
