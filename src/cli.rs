//! The command line of `bnx`, as clap sees it. Values are checked here; how they combine with the
//! environment and files is `config.rs`'s business.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use clap_complete::Shell;

use crate::budget::Setting;
use crate::error::EXIT_CODES;
use crate::rate::Rate;

const ENVIRONMENT: &str = "\
Environment:
  BLUENEXUS_TOKEN       access token (prefer a token file or command: see Token)
  BLUENEXUS_TOKEN_CMD   command printing the token, as --token-cmd
  BLUENEXUS_AGENT       agent id, as --agent
  BLUENEXUS_BASE_URL    API origin, as --base-url
  BLUENEXUS_RATE_LIMIT  request pacing, as --rate-limit
  BLUENEXUS_STORE       Redis that a fleet of machines shares pacing and credits through, as
                        --store (BLUENEXUS_RATE_STORE, its older name, still works)
  BLUENEXUS_BUDGET      credit budget, as --budget
  HTTPS_PROXY, ALL_PROXY, NO_PROXY   proxy settings
  SSL_CERT_FILE         extra CA bundle (the platform store is always used)
  BLUENEXUS_STATE_DIR   where conversations, pacing and the credit ledger live
                        [default: $XDG_STATE_HOME/bluenexus]
  XDG_CONFIG_HOME, XDG_STATE_HOME    where the token file and the state directory live

Token (first found wins): --token-file, --token-cmd, BLUENEXUS_TOKEN, BLUENEXUS_TOKEN_CMD,
  $XDG_CONFIG_HOME/bluenexus/token (else ~/.config/bluenexus/token). Token files must not be
  readable by group or others (chmod 600). No flag takes the token itself: argv is public.";

const FILES: &str = "\
Files:
  ~/.config/bluenexus/token   the access token, when no flag or variable gives one (mode 600)
  ~/.local/state/bluenexus/   conversations-by-api/, the last conversation of each API and agent
                              (for -c), and pace/, the pacing every bnx of this user shares
  $XDG_CONFIG_HOME and $XDG_STATE_HOME, when set, take the place of ~/.config and ~/.local/state;
  BLUENEXUS_STATE_DIR, when set, that of the whole state directory.";

const BATCHES: &str = "\
Batches:
  --batch FILE (\"-\" for stdin) reads one JSON object a line: \"prompt\" and/or \"messages\",
  and optionally \"id\" (default: the line number), \"files\", \"system\", \"agent\",
  \"temperature\", \"max_tokens\", \"conversation\" and \"schema\" (a path or an object, as
  --schema); an item's fields beat the options. The
  whole file is checked before anything is sent (a bad line or a repeated id: exit 65). Each
  finished item is one JSON line, {\"id\", \"content\", \"bnx\"} or {\"id\", \"error\", \"bnx\"},
  with bnx.exit_code; -o FILE appends them, and a rerun skips the items done. Exit 0 when every
  item is done, else the code of the first item, in input order, that failed or never started.";

const SCHEMAS: &str = "\
Schemas:
  --schema FILE, or the schema itself ('{...}'), reads the answer as --expect-json does and
  checks it against that JSON Schema (draft 2020-12 unless its \"$schema\" names 2019-09, 7, 6
  or 4). A schema that is not valid, or refers ($ref) to anything outside itself, is exit 2
  before anything is sent: nothing is fetched. An answer that does not match is exit 3, naming
  the first failure by its JSON Pointer. --reask N asks again, up to N times, saying what was
  wrong: each re-ask is a request of its own, paced, retried and paid for.";

const EXAMPLES: &str = "\
Examples:
  git diff | bnx \"write a commit message for this diff\"
  bnx -f src/main.rs -f Cargo.toml \"why does this not build?\"
  bnx -x -o count.sh \"a shell one-liner that counts lines of Rust\"   # no block: exit 3, no file
  bnx --expect-json \"three risks as a JSON array of strings\" | jq -r '.[]'
  bnx --schema person.json --reask 2 \"the author of Dune, as JSON\" | jq -r .name
  bnx -q -o ~/today.txt \"Summarize my calendar for today\"   # cron: keeps the old file on failure
  while read -r f; do bnx -n -f \"$f\" \"summarize this\"; done < list.txt
  bnx --json \"What meetings do I have today?\" | jq -r '.choices[0].message.content'
  bnx -s --system \"Answer in one line\" \"What is SSE?\"
  bnx -c \"and the one after that?\"
  bnx --spent --json | jq .consumed          # credits consumed: last hour, day, 7 and 30 days
  bnx-mock -- bnx \"hi\"          # offline, no account";

fn after_help() -> String {
    format!("{ENVIRONMENT}\n\n{FILES}\n\n{BATCHES}\n\n{SCHEMAS}\n\n{EXIT_CODES}\n\n{EXAMPLES}")
}

#[derive(Debug, Parser)]
#[command(
    name = "bnx",
    version,
    long_version = env!("BNX_LONG_VERSION"),
    about = "Ask a BlueNexus agent from the shell: prompt in, answer out, exit codes scripts can trust",
    after_help = after_help(),
    max_term_width = 100,
    // An option given twice (an alias adding to a script's flags): the last one counts.
    args_override_self = true
)]
pub struct Cli {
    /// The prompt; words are joined with spaces. Files (-f) and then piped stdin follow, each
    /// after a blank line.
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,

    /// Agent to chat with [env: BLUENEXUS_AGENT] [default: default]
    #[arg(short, long, value_name = "ID", value_parser = parse_agent)]
    pub agent: Option<String>,

    /// API origin; plain http:// only for loopback [env: BLUENEXUS_BASE_URL]
    /// [default: https://api.bluenexus.ai]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// File holding the access token (mode 600)
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Shell command that prints the token, e.g. a password manager [env: BLUENEXUS_TOKEN_CMD]
    #[arg(long, value_name = "CMD")]
    pub token_cmd: Option<String>,

    /// Stream the answer, writing each piece as it arrives
    #[arg(short, long)]
    pub stream: bool,

    /// Write JSON: the response plus a "bnx" key; with --stream, one line per event
    #[arg(long)]
    pub json: bool,

    /// Sampling temperature, 0.0 to 2.0 [default: the agent's own]
    #[arg(long, value_name = "F", value_parser = parse_temperature, allow_negative_numbers = true)]
    pub temperature: Option<f64>,

    /// Longest answer, in tokens [default: the agent's own]
    #[arg(long, value_name = "N", value_parser = parse_positive, allow_negative_numbers = true)]
    pub max_tokens: Option<u64>,

    /// Continue the conversation with this id
    #[arg(long, value_name = "ID", conflicts_with = "continue_")]
    pub conversation: Option<String>,

    /// Continue this agent's last conversation
    #[arg(short = 'c', long = "continue")]
    pub continue_: bool,

    /// Seconds to wait for the answer to start (and, non-streaming, to finish); streaming, the
    /// longest silence allowed between two events
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs, allow_negative_numbers = true)]
    pub timeout: Duration,

    /// Seconds allowed for TCP and TLS connect
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs, allow_negative_numbers = true)]
    pub connect_timeout: Duration,

    /// Retries on connect errors, timeouts, 429, 500, 502, 503 and 504 (0 to 100)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_retries, allow_negative_numbers = true)]
    pub retries: u32,

    /// Longest single wait before a retry; a longer Retry-After fails at once
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_wait, allow_negative_numbers = true)]
    pub max_retry_wait: Duration,

    /// Pace requests to N per rolling SECS seconds, shared by every bnx process of this user for
    /// the same API and token; 0 turns pacing off [env: BLUENEXUS_RATE_LIMIT] [default: 30/60]
    #[arg(long, value_name = "N[/SECS]", allow_negative_numbers = true)]
    pub rate_limit: Option<Rate>,

    /// Share pacing and the credit ledger with every machine that names the same Redis
    /// server, redis://HOST:PORT[/DB]; unreachable or failing, it costs a warning and this
    /// machine paces and counts alone, except that --budget and --min-credits refuse to send.
    /// Empty: this machine alone [env: BLUENEXUS_STORE]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// The older name of --store; --store wins when both are given [env: BLUENEXUS_RATE_STORE]
    #[arg(long, value_name = "URL")]
    pub rate_store: Option<String>,

    /// Credits that all bnx processes of this user (or the fleet, with --store) may consume
    /// per rolling PERIOD for this API and token, PERIOD 60s to 31d as 3600, 90m, 12h, 1d or
    /// 7d; past it, requests are refused with exit 4. "off" turns off BLUENEXUS_BUDGET
    /// [env: BLUENEXUS_BUDGET] [default PERIOD: 1d]
    #[arg(long, value_name = "N[/PERIOD]", allow_negative_numbers = true)]
    pub budget: Option<Setting>,

    /// Send no request (a batch: start no new item) once the last X-Credits-Remaining seen
    /// for this API and token, by any bnx process of this user (or the fleet), is below N
    #[arg(long, value_name = "N", value_parser = parse_credits, allow_negative_numbers = true)]
    pub min_credits: Option<f64>,

    /// Print the credits consumed for this API and token in the last hour, day, 7 and 30 days,
    /// the last balance seen and the budget; send nothing (with --json, one document)
    #[arg(long, conflicts_with_all = ["prompt", "batch", "dry_run", "messages", "files", "extract", "expect_json", "output"])]
    pub spent: bool,

    /// Run every line of a JSONL file as its own request ("-" for stdin); see "Batches"
    /// below
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,

    /// With --batch: requests in flight at once, 1 to 64
    #[arg(short, long, value_name = "N", default_value_t = 4, requires = "batch",
          value_parser = parse_jobs, allow_negative_numbers = true)]
    pub jobs: u16,

    /// With --batch: start no new item once the credits this run consumed reach N, or the items
    /// in flight could pass it; 0 sends nothing
    #[arg(long, value_name = "N", requires = "batch", value_parser = parse_credits,
          allow_negative_numbers = true)]
    pub max_credits: Option<f64>,

    /// Never read standard input (for `while read` loops, as `ssh -n`)
    #[arg(short = 'n', long)]
    pub no_stdin: bool,

    /// JSON array of {"role","content"} messages to send ("-" for stdin)
    #[arg(long, value_name = "FILE")]
    pub messages: Option<PathBuf>,

    /// System message put before the conversation
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// Add a file to the prompt, as <file name="PATH">...</file>, after the PROMPT words and
    /// before stdin; repeatable
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,

    /// Write to FILE instead of stdout, replacing it only when the run succeeds (the file's
    /// mode is kept); "-" is stdout. With --batch: append the item lines to FILE, and on a
    /// rerun skip the items it records as done
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write only the content of the answer's first fenced code block; none is exit 3
    #[arg(short = 'x', long, conflicts_with_all = ["json", "expect_json", "schema"])]
    pub extract: bool,

    /// The answer must be one JSON value (one surrounding ``` fence is removed); it is written
    /// compact on one line, else exit 3
    #[arg(long, conflicts_with = "json")]
    pub expect_json: bool,

    /// As --expect-json, and the value must be valid against this JSON Schema: a file, or the
    /// schema itself when it starts with "{" (drafts 2020-12, 2019-09, 7, 6, 4; nothing is
    /// fetched); else exit 3. See "Schemas" below
    #[arg(long, value_name = "SCHEMA", conflicts_with = "json")]
    pub schema: Option<String>,

    /// When the answer is not what -x, --expect-json or --schema asked for, ask again up to N
    /// times (0 to 5), saying what was wrong; each re-ask is a request of its own
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_reask,
          allow_negative_numbers = true)]
    pub reask: u8,

    /// Exit 3 when the answer was cut at the token limit, instead of a notice
    #[arg(long)]
    pub fail_on_length: bool,

    /// Print the request as JSON (token redacted) and send nothing; needs no token, runs no
    /// token command
    #[arg(long)]
    pub dry_run: bool,

    /// No notices on stderr (errors still print)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Request, status, timing, credits, conversation and retries on stderr
    #[arg(short, long, action = ArgAction::SetTrue)]
    pub verbose: bool,

    /// Print the completion script for SHELL and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<Shell>,
}

fn parse_agent(s: &str) -> Result<String, String> {
    crate::endpoint::check_agent(s)
        .map(|()| s.to_string())
        .map_err(str::to_string)
}

fn parse_temperature(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if crate::wire::TEMPERATURE.contains(&t) => Ok(t),
        _ => Err("must be between 0 and 2".into()),
    }
}

fn parse_positive(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a positive whole number".into()),
    }
}

fn parse_retries(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err("must be a whole number from 0 to 100".into()),
    }
}

/// A number of credits: zero or more, fractions allowed.
fn parse_credits(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err("must be a number of credits, 0 or more, such as 100".into()),
    }
}

fn parse_reask(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(n) if n <= 5 => Ok(n),
        _ => Err("must be a whole number from 0 to 5".into()),
    }
}

fn parse_jobs(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err("must be a whole number from 1 to 64".into()),
    }
}

/// A positive number of seconds, fractions allowed.
fn parse_secs(s: &str) -> Result<Duration, String> {
    match parse_wait(s)? {
        d if d.is_zero() => Err("expected a number of seconds greater than 0".into()),
        d => Ok(d),
    }
}

/// A number of seconds, zero included.
fn parse_wait(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| *d <= Duration::from_secs(86_400 * 365))
        .ok_or_else(|| "expected a number of seconds, such as 30 or 0.5".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_app() {
        Cli::command().debug_assert();
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(parse_temperature("2"), Ok(2.0));
        assert!(parse_temperature("2.01").is_err());
        assert!(parse_temperature("nan").is_err());
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("inf").is_err());
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        assert_eq!(parse_positive("1"), Ok(1));
        assert!(parse_positive("0").is_err());
        assert!(parse_positive("1.5").is_err());
        assert_eq!(parse_retries("100"), Ok(100));
        assert!(parse_retries("101").is_err());
    }

    #[test]
    fn negative_numbers_are_values_so_their_check_speaks() {
        for (flag, message) in [
            ("--temperature", "must be between 0 and 2"),
            ("--max-tokens", "must be a positive whole number"),
            ("--retries", "must be a whole number from 0 to 100"),
            ("--timeout", "expected a number of seconds"),
        ] {
            let err = Cli::try_parse_from(["bnx", flag, "-1", "x"]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(message), "{flag}: {text}");
            assert!(!text.contains("-- -1"), "{flag}: {text}");
        }
    }

    #[test]
    fn extract_expect_json_and_json_exclude_each_other() {
        for pair in [
            ["-x", "--json"],
            ["-x", "--expect-json"],
            ["--expect-json", "--json"],
        ] {
            let err = Cli::try_parse_from(["bnx", pair[0], pair[1], "q"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
        let cli = Cli::try_parse_from(["bnx", "-f", "a", "--file", "b", "-n", "-x", "q"]).unwrap();
        assert_eq!(cli.files, [PathBuf::from("a"), PathBuf::from("b")]);
        assert!(cli.no_stdin && cli.extract);
    }

    #[test]
    fn an_option_given_twice_counts_once_with_its_last_value() {
        let cli = Cli::try_parse_from([
            "bnx",
            "-v",
            "-v",
            "--json",
            "--json",
            "-a",
            "x",
            "-a",
            "y",
            "--retries",
            "5",
            "--retries",
            "1",
            "q",
        ])
        .unwrap();
        assert!(cli.verbose && cli.json);
        assert_eq!((cli.agent.as_deref(), cli.retries), (Some("y"), 1));
        assert!(Cli::try_parse_from(["bnx", "-vv", "q"]).unwrap().verbose);
    }

    #[test]
    fn prompt_words_and_flags_mix() {
        let cli = Cli::try_parse_from(["bnx", "-s", "hello", "world", "--json"]).unwrap();
        assert_eq!(cli.prompt, ["hello", "world"]);
        assert!(cli.stream && cli.json);
        assert!(Cli::try_parse_from(["bnx", "-c", "--conversation", "x"]).is_err());
    }
}
