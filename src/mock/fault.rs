//! `--fault SPEC`: one injected failure, consumed by the next request on the chat path.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub const FAULT_HELP: &str = "\
Faults (--fault SPEC, repeatable; each is used by the next request on the chat path, in order,
before auth and validation; then requests behave):
  429[:SECS]        429 with Retry-After SECS (default 1) and a JSON error
  402               402 with a JSON error, as when the credits run out
  500 502 503 504   that status with a JSON error body
  drop              close the connection without a response
  html              502 with an HTML page, as a proxy would send
  malformed         200 with broken JSON (streaming: a broken chunk after the first piece)
  cut[:N]           streaming: end the stream after N content chunks (default 1), no [DONE];
                    otherwise: close after half the promised body
  error-event       streaming: an SSE {\"error\": ...} event after the first piece;
                    otherwise: 200 with an {\"error\": ...} body
  stall[:SECS]      send the headers, then nothing for SECS (default 60), then close
  slow[:SECS]       wait SECS (default 2) before answering normally
  redirect[:URL]    307 to URL (default https://example.com/api/v1/agents/default/chat/completions)";

pub const DEFAULT_REDIRECT: &str = "https://example.com/api/v1/agents/default/chat/completions";

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    RateLimited { retry_after: u64 },
    Status(u16),
    Drop,
    Html,
    Malformed,
    Cut { chunks: usize },
    ErrorEvent,
    Stall(Duration),
    Slow(Duration),
    Redirect(String),
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match spec.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (spec, None),
        };
        // A control character would end up in a response header (a redirect's Location).
        if arg.is_some_and(|a| a.chars().any(char::is_control)) {
            return Err(format!("{name}: the argument has a control character"));
        }
        let number = |default: u64| -> Result<u64, String> {
            arg.map_or(Ok(default), |a| {
                a.parse()
                    .map_err(|_| format!("{name}: {a:?} is not a whole number"))
            })
        };
        let secs_or = |default: f64| -> Result<Duration, String> {
            arg.map_or(Ok(Duration::from_secs_f64(default)), |a| {
                seconds(a).map_err(|e| format!("{name}: {e}"))
            })
        };
        let no_arg = |fault: Fault| match arg {
            None => Ok(fault),
            Some(_) => Err(format!("{name} takes no argument")),
        };
        match name {
            "429" => Ok(Fault::RateLimited {
                retry_after: number(1)?,
            }),
            "402" | "500" | "502" | "503" | "504" => {
                no_arg(Fault::Status(name.parse().expect("digits")))
            }
            "drop" => no_arg(Fault::Drop),
            "html" => no_arg(Fault::Html),
            "malformed" => no_arg(Fault::Malformed),
            "cut" => Ok(Fault::Cut {
                chunks: number(1)? as usize,
            }),
            "error-event" => no_arg(Fault::ErrorEvent),
            "stall" => Ok(Fault::Stall(secs_or(60.0)?)),
            "slow" => Ok(Fault::Slow(secs_or(2.0)?)),
            "redirect" => Ok(Fault::Redirect(arg.unwrap_or(DEFAULT_REDIRECT).to_string())),
            _ => Err(format!(
                "unknown fault {name:?}: expected one of 429, 402, 500, 502, 503, 504, drop, \
                 html, malformed, cut, error-event, stall, slow, redirect"
            )),
        }
    }
}

/// A duration given in seconds, fractions allowed: fault arguments and the timeout options.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::RateLimited { retry_after } => write!(f, "429:{retry_after}"),
            Fault::Status(code) => write!(f, "{code}"),
            Fault::Drop => f.write_str("drop"),
            Fault::Html => f.write_str("html"),
            Fault::Malformed => f.write_str("malformed"),
            Fault::Cut { chunks } => write!(f, "cut:{chunks}"),
            Fault::ErrorEvent => f.write_str("error-event"),
            Fault::Stall(d) => write!(f, "stall:{}", d.as_secs_f64()),
            Fault::Slow(d) => write!(f, "slow:{}", d.as_secs_f64()),
            Fault::Redirect(url) => write!(f, "redirect:{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_name_parses_and_round_trips() {
        let cases = [
            ("429", Fault::RateLimited { retry_after: 1 }),
            ("429:7", Fault::RateLimited { retry_after: 7 }),
            ("402", Fault::Status(402)),
            ("500", Fault::Status(500)),
            ("504", Fault::Status(504)),
            ("drop", Fault::Drop),
            ("html", Fault::Html),
            ("malformed", Fault::Malformed),
            ("cut", Fault::Cut { chunks: 1 }),
            ("cut:3", Fault::Cut { chunks: 3 }),
            ("error-event", Fault::ErrorEvent),
            ("stall", Fault::Stall(Duration::from_secs(60))),
            ("stall:0.5", Fault::Stall(Duration::from_millis(500))),
            ("slow:1", Fault::Slow(Duration::from_secs(1))),
            ("redirect", Fault::Redirect(DEFAULT_REDIRECT.into())),
            (
                "redirect:http://x:1/y",
                Fault::Redirect("http://x:1/y".into()),
            ),
        ];
        for (spec, fault) in cases {
            assert_eq!(spec.parse::<Fault>(), Ok(fault.clone()), "{spec}");
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault), "{spec}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "404",
            "501",
            "cut:x",
            "slow:-1",
            "drop:1",
            "",
            "429:1.5",
            "stall:nan",
            "redirect:http://x/\r\nX-Injected: yes",
            "redirect:http://x/\u{7f}",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_help_table_is_aligned() {
        // Each line's description starts after the first run of two or more spaces.
        let columns: Vec<usize> = FAULT_HELP
            .lines()
            .skip(2)
            .map(|line| {
                let gap = 2 + line[2..].find("  ").unwrap();
                line.len() - line[gap..].trim_start().len()
            })
            .collect();
        assert!(columns.iter().all(|&c| c == columns[0]), "{columns:?}");
    }
}
