//! The command line of `bnx-mock`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::accounts::{RateLimit, TokenSpec};
use super::fault::{self, seconds, Fault};

const EXAMPLES: &str = "\
Examples:
  bnx-mock -- bnx \"hi\"                        run one command against a fresh mock
  bnx-mock --fault 503 --fault 429:2 -- ./pipeline.sh
  bnx-mock --listen 127.0.0.1:0 --log requests.jsonl   serve until Ctrl-C
  bnx-mock --rate-limit 3/2 --credits 10 -- ./pacing-test.sh
  bnx-mock --answer-size 50000000 --chunks 100000      large streams for benchmarks
  bnx-mock --answers tests/answers.jsonl --strict -- ./pipeline.sh
  bnx-mock --record tests/answers.jsonl --upstream https://api.bluenexus.ai -- ./pipeline.sh

Answers are deterministic: \"[turn N] \" followed by the last user message, padded with
filler to --answer-size, cut at max_tokens (4 bytes a token). Any OpenAI-compatible client
works with base_url http://127.0.0.1:PORT/api/v1/agents/default.

Scripted answers (--answers FILE): one JSON rule a line, the first that matches and is not
used up answers; no match is the echo, or with --strict a 400 (no_matching_answer).
  {\"match\": {\"prompt\": \"weather\"}, \"reply\": {\"content\": \"Sunny.\"}}
  {\"match\": {}, \"reply\": {\"status\": 429, \"error\": {\"message\": \"busy\"},
   \"headers\": {\"Retry-After\": \"1\"}}, \"times\": 1}
  {\"reply\": {\"fault\": \"cut:3\"}}        {\"reply\": {\"tool_calls\": [...]}}
match: agent, prompt, prompt_regex, system, turn, stream, body (a JSON object the request
holds). reply: content [finish_reason, tool_calls, chunks, credits, delay_ms]; status with
headers and body or events (recorded); status with error; fault. Tokens, validation, rate
limit, credits and conversations apply first. At most 100000 rules and 512 MiB in all, a
line at most 256 MiB.

Recording (--record FILE --upstream URL): a proxy to the real API passing each client's own
token on; every answer (errors too) is passed back as it arrives and appended to FILE as one
rule with \"times\": 1, the token replaced by *** wherever the upstream echoed it. FILE holds
your prompts and the answers: read it before committing it. Replay it with --answers FILE
--strict. An upstream that cannot be reached is a 502 (upstream_error).

Environment of COMMAND: BLUENEXUS_BASE_URL, BLUENEXUS_TOKEN and BLUENEXUS_RATE_LIMIT match the
mock (while recording, only the URL: the token and the pacing are the caller's own);
BLUENEXUS_STATE_DIR and BLUENEXUS_CACHE_DIR a temporary directory removed at exit, unless set.

Limits: a request head over 16 KiB is 431, a body over 8 MiB is 413, and bodies in flight
over 64 MiB in total are 503. Exit codes: COMMAND's own with -- COMMAND; 2 usage error (a bad
rule names its file and line); 71 cannot listen on the address; 74 cannot write the log or
the recording.";

fn after_help() -> String {
    format!("{}\n\n{EXAMPLES}", fault::help())
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
    /// Address to listen on, HOST:PORT (port 0: any free port). With COMMAND: 127.0.0.1:0
    #[arg(long, value_name = "ADDR", value_parser = listen_address)]
    pub listen: Option<String>,

    /// Accepted token, optionally with scopes (default scope agents-all); repeatable
    /// [default: bnx-mock-token]
    #[arg(long = "token", value_name = "TOKEN[:SCOPE,...]")]
    pub tokens: Vec<TokenSpec>,

    /// Requests per rolling SECS seconds per token; 0 for no limit
    #[arg(long, value_name = "N[/SECS]", default_value = "30/60")]
    pub rate_limit: RateLimit,

    /// Starting credit balance of each token; an answer it cannot pay for is 402
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub credits: u64,

    /// Fail the next request this way (see Faults below); repeatable, used in order
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<Fault>,

    /// Write one JSON line per request, refused ones too, to FILE (created anew; tokens
    /// redacted)
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

    /// Open connections at most; one more gets 503 and is closed
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Seconds a request head may take to arrive in full
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = timeout)]
    pub header_timeout: Duration,

    /// Seconds a connection may wait between requests before it is closed
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = timeout)]
    pub idle_timeout: Duration,

    /// Seconds a client may send no byte of its body, or read no byte of the answer, before
    /// it is dropped
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = timeout)]
    pub progress_timeout: Duration,

    /// Answer requests from the rules in FILE, one JSON rule a line (see Scripted answers
    /// below); repeatable, read in order
    #[arg(long = "answers", value_name = "FILE")]
    pub answers: Vec<PathBuf>,

    /// Answer a request no rule matches with a 400 (no_matching_answer), not the echo
    #[arg(long)]
    pub strict: bool,

    /// Record every chat request and its answer from --upstream as rules appended to FILE
    /// (tokens masked): the mock becomes a proxy
    #[arg(long, value_name = "FILE", requires = "upstream",
          conflicts_with_all = ["answers", "strict", "faults"])]
    pub record: Option<PathBuf>,

    /// The API that --record passes requests to: https://, or http:// for a loopback host
    #[arg(long, value_name = "URL", requires = "record", value_parser = upstream)]
    pub upstream: Option<Upstream>,

    /// Seconds the upstream may stay silent: before its answer starts, and between two reads
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = timeout)]
    pub upstream_timeout: Duration,

    /// Run COMMAND against the mock (BLUENEXUS_* set, see Environment below), then exit with
    /// its exit code
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// HOST:PORT, the host a name (`localhost`) or an address (`[::1]`); the name is resolved when
/// the mock listens, and an address it cannot listen on is exit 71, not a usage error.
fn listen_address(text: &str) -> Result<String, String> {
    let bad = || format!("expected HOST:PORT, such as 127.0.0.1:8787, not {text:?}");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.to_string())
}

/// `--upstream`: the origin (and path prefix) requests are passed to, checked as `bnx` checks
/// its `--base-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub origin: String,
    pub loopback: bool,
}

fn upstream(text: &str) -> Result<Upstream, String> {
    let endpoint = crate::config::endpoint(text, "default").map_err(|err| err.to_string())?;
    Ok(Upstream {
        origin: endpoint.origin,
        loopback: endpoint.loopback,
    })
}

/// A timeout option: seconds above 0 (a zero timeout would mean none for the socket).
fn timeout(text: &str) -> Result<Duration, String> {
    let secs = seconds(text)?;
    if secs.is_zero() {
        return Err("a timeout must be above 0 seconds".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::fault::Kind;
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
        let kinds: Vec<&Kind> = cli.faults.iter().map(|f| &f.kind).collect();
        assert_eq!(kinds, [&Kind::Status(503), &Kind::Cut { chunks: 2 }]);
        assert_eq!(cli.tokens[1].scopes, ["agents-read"]);
        assert_eq!(cli.command, ["sh", "-c", "exit 3"]);
        assert!(MockCli::try_parse_from(["bnx-mock", "--fault", "teapot"]).is_err());
        for bad in [
            ["--header-timeout", "-1"],
            ["--idle-timeout", "0"],
            ["--progress-timeout", "1e400"],
            ["--max-connections", "0"],
        ] {
            assert!(MockCli::try_parse_from(["bnx-mock", bad[0], bad[1]]).is_err());
        }
    }
}
