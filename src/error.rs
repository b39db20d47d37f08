//! The failure kinds scripts branch on, and the exit-code table (the README's "Exit codes").

use std::fmt;
use std::io;
use std::ops::Deref;

use serde_json::Value;

/// What went wrong, as far as a calling script needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request was refused or failed in a way not listed below (400, 404, 3xx, an SSE
    /// error event).
    Refused,
    Usage,
    /// The answer arrived but is not what was asked for (no code block for `-x`, no JSON for
    /// `--expect-json`, JSON the schema of `--schema` refuses, cut with `--fail-on-length`).
    Unexpected,
    /// Out of credits (402), or a credit limit reached (`--budget`, `--min-credits`,
    /// `--max-credits`), or one that cannot be checked.
    Credits,
    Input,
    Unavailable,
    LocalIo,
    RateLimited,
    Protocol,
    Auth,
    Config,
    /// Whoever read our output went away: not a failure of ours.
    ClosedPipe,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::ClosedPipe,
        Kind::Refused,
        Kind::Usage,
        Kind::Unexpected,
        Kind::Credits,
        Kind::Input,
        Kind::Unavailable,
        Kind::LocalIo,
        Kind::RateLimited,
        Kind::Protocol,
        Kind::Auth,
        Kind::Config,
    ];

    pub fn exit_code(self) -> i32 {
        match self {
            Kind::ClosedPipe => 0,
            Kind::Refused => 1,
            Kind::Usage => 2,
            Kind::Unexpected => 3,
            Kind::Credits => 4,
            Kind::Input => 65,
            Kind::Unavailable => 69,
            Kind::LocalIo => 74,
            Kind::RateLimited => 75,
            Kind::Protocol => 76,
            Kind::Auth => 77,
            Kind::Config => 78,
        }
    }

    /// The kind of a final HTTP error status (after any retries).
    pub fn for_status(status: u16) -> Kind {
        match status {
            401 | 403 => Kind::Auth,
            402 => Kind::Credits,
            429 => Kind::RateLimited,
            500..=599 => Kind::Unavailable,
            _ => Kind::Refused,
        }
    }

    /// The `type` of the `error` object in `--json` output when the server sent none.
    fn json_type(self) -> &'static str {
        match self {
            Kind::Refused | Kind::RateLimited | Kind::Auth => "http",
            Kind::Usage => "usage",
            Kind::Input => "input",
            Kind::Unexpected => "answer",
            Kind::Credits => "budget",
            Kind::Unavailable | Kind::LocalIo | Kind::ClosedPipe => "network",
            Kind::Protocol => "protocol",
            Kind::Config => "config",
        }
    }
}

/// The exit-code table as printed in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success (also --dry-run, and a closed stdout such as `| head -1`)
  1   request refused or failed: 400, 404, other 4xx, a redirect, an SSE error event
  2   usage error: unknown flag, bad value, no prompt
  3   the answer arrived but is not what was asked for (-x, --expect-json, --schema,
      --fail-on-length), after any re-asks of --reask
  4   out of credits (402), or a credit limit reached: --budget or --min-credits refused a
      request, --max-credits stopped a batch
  65  bad input data: stdin not UTF-8 or over 64 MiB, --messages not valid
  69  service unavailable: connect/DNS/TLS failure, timeout, 5xx after retries
  74  local I/O error: writing stdout or the --output file failed
  75  rate limited (429) after retries; try again later
  76  protocol error: the answer is not the documented API, or it was cut off
  77  authentication or permission refused (401, 403)
  78  configuration error: no token, token file readable by others, bad base or store URL
  130 interrupted (SIGINT)";

/// A failure: its kind decides the exit code, its message is the one line on stderr. Boxed,
/// so that the `Result`s on every path stay one pointer wide.
#[derive(Debug)]
pub struct Error(Box<Details>);

#[derive(Debug)]
pub struct Details {
    pub kind: Kind,
    message: anyhow::Error,
    pub hint: Option<String>,
    /// The `type` of the error object in `--json` output.
    pub json_type: &'static str,
    /// The server's own error object, when it sent one.
    pub server_error: Option<Value>,
    /// More members of our own error object (a schema's `errors`).
    fields: serde_json::Map<String, Value>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<anyhow::Error>) -> Self {
        Error(Box::new(Details {
            kind,
            message: message.into(),
            hint: None,
            json_type: kind.json_type(),
            server_error: None,
            fields: serde_json::Map::new(),
        }))
    }

    pub fn msg(kind: Kind, message: impl fmt::Display) -> Self {
        Error::new(kind, anyhow::anyhow!("{message}"))
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    pub fn with_json_type(mut self, json_type: &'static str) -> Self {
        self.0.json_type = json_type;
        self
    }

    /// Adds `key` to the error object of `--json` output and batch lines.
    pub fn with_field(mut self, key: &str, value: Value) -> Self {
        self.0.fields.insert(key.to_string(), value);
        self
    }

    pub fn with_server_error(mut self, error: Value) -> Self {
        self.0.server_error = Some(error);
        self
    }

    /// Writing our output to `to` (standard output, or the file of `-o`) failed: a closed pipe
    /// is a quiet success, anything else exit 74.
    pub fn write(err: io::Error, to: &str) -> Self {
        let kind = if err.kind() == io::ErrorKind::BrokenPipe {
            Kind::ClosedPipe
        } else {
            Kind::LocalIo
        };
        Error::new(
            kind,
            anyhow::Error::new(err).context(format!("cannot write to {to}")),
        )
    }

    /// The message as one line: the context chain joined with `: `, control characters from a
    /// server's text made visible rather than allowed to break the line or drive the terminal.
    pub fn line(&self) -> String {
        format!("{:#}", self.message)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }

    /// The `error` object of the `--json` failure document: the server's own, given a
    /// `message` if it has none, so that `.error.message` always works.
    pub fn json(&self) -> Value {
        match &self.server_error {
            Some(Value::Object(error)) => {
                let mut error = error.clone();
                if !error.get("message").is_some_and(Value::is_string) {
                    error.insert("message".into(), Value::String(self.line()));
                }
                Value::Object(error)
            }
            _ => {
                let mut error = serde_json::Map::new();
                error.insert("message".into(), Value::String(self.line()));
                error.insert("type".into(), Value::String(self.json_type.into()));
                error.extend(self.fields.clone());
                Value::Object(error)
            }
        }
    }
}

impl Deref for Error {
    type Target = Details;

    fn deref(&self) -> &Details {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_spec_table() {
        let table: [(Kind, i32); Kind::ALL.len()] = [
            (Kind::ClosedPipe, 0),
            (Kind::Refused, 1),
            (Kind::Usage, 2),
            (Kind::Unexpected, 3),
            (Kind::Credits, 4),
            (Kind::Input, 65),
            (Kind::Unavailable, 69),
            (Kind::LocalIo, 74),
            (Kind::RateLimited, 75),
            (Kind::Protocol, 76),
            (Kind::Auth, 77),
            (Kind::Config, 78),
        ];
        for (kind, code) in table {
            assert_eq!(kind.exit_code(), code, "{kind:?}");
            assert!(
                code == 0 || EXIT_CODES.contains(&format!("\n  {code} ")),
                "{code} missing from the help table"
            );
        }
    }

    /// The README's table is what users read: it must list exactly the codes `bnx` exits with
    /// (130, the signal's, included), so a new kind cannot ship undocumented.
    #[test]
    fn the_readme_table_lists_every_exit_code() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .expect("the README has an Exit codes section");
        let documented: Vec<i32> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                l.trim_start_matches('|')
                    .split('|')
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect();
        let mut codes: Vec<i32> = Kind::ALL.iter().map(|k| k.exit_code()).collect();
        codes.push(130);
        assert_eq!(
            documented, codes,
            "README.md's exit-code table is out of step with Kind"
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(Kind::for_status(400), Kind::Refused);
        assert_eq!(Kind::for_status(402), Kind::Credits);
        assert_eq!(Kind::for_status(404), Kind::Refused);
        assert_eq!(Kind::for_status(307), Kind::Refused);
        assert_eq!(Kind::for_status(401), Kind::Auth);
        assert_eq!(Kind::for_status(403), Kind::Auth);
        assert_eq!(Kind::for_status(429), Kind::RateLimited);
        assert_eq!(Kind::for_status(502), Kind::Unavailable);
    }

    #[test]
    fn closed_pipe_is_quiet_success() {
        let err = Error::write(
            io::Error::from(io::ErrorKind::BrokenPipe),
            "standard output",
        );
        assert_eq!(err.kind.exit_code(), 0);
        let err = Error::write(io::Error::from(io::ErrorKind::StorageFull), "out.txt");
        assert_eq!(err.kind.exit_code(), 74);
    }

    #[test]
    fn the_json_error_always_has_a_message() {
        let err = Error::msg(Kind::Refused, "HTTP 400 Bad Request")
            .with_server_error(serde_json::json!({"code": 7}));
        assert_eq!(
            err.json(),
            serde_json::json!({"code": 7, "message": "HTTP 400 Bad Request"})
        );
        let err = Error::msg(Kind::Refused, "x")
            .with_server_error(serde_json::json!({"message": "own", "type": "t"}));
        assert_eq!(
            err.json(),
            serde_json::json!({"message": "own", "type": "t"})
        );
    }

    #[test]
    fn message_is_one_line() {
        let err = Error::msg(Kind::Refused, "bad\nthing\x1b[31m");
        assert_eq!(err.line(), "bad thing [31m");
    }
}
