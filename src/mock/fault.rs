//! `--fault SPEC`: one injected failure, consumed by the next request on the chat path (or
//! chosen by a scripted answer's `fault`). Every fault is one row of `TABLE` (its name, its
//! argument, its help line and the `Kind` it makes) and one arm of `inject`: adding a fault
//! touches this file only.

use std::fmt;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::str::FromStr;
use std::thread::sleep;
use std::time::Duration;

use super::answer::Content;
use super::http::{self, Request, CONTENT_TYPE, LOCATION};
use super::reply::{self, completion_body, error, no_credits, Answer, Next, Outcome};
use super::stream::{self, Ending};
use super::validate::{validate, Chat};
use super::Shared;
use crate::wire::{self, ErrorBody};

const HTML_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub const DEFAULT_REDIRECT: &str = "https://example.com/api/v1/agents/default/chat/completions";

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
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

/// A fault as given: what it does, and its spec written out in full (`429` is `429:1`), which
/// the log names.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: Kind,
    spec: String,
}

/// A fault's argument as written in the help, with its default.
#[derive(Debug, Clone, Copy)]
enum Param {
    None,
    Count(&'static str, u64),
    Secs(f64),
    Url(&'static str),
}

/// An argument as read.
enum Arg {
    None,
    Count(u64),
    Secs(Duration),
    Url(String),
}

impl Arg {
    fn count(&self) -> u64 {
        match self {
            Arg::Count(n) => *n,
            _ => 0,
        }
    }

    fn secs(&self) -> Duration {
        match self {
            Arg::Secs(d) => *d,
            _ => Duration::ZERO,
        }
    }
}

struct Row {
    name: &'static str,
    param: Param,
    /// Lines after the first are continued under it. Rows in a run with the same help share
    /// one line of the table.
    help: &'static str,
    make: fn(Arg) -> Kind,
}

const SERVER_ERROR: &str = "that status with a JSON error body";

const TABLE: &[Row] = &[
    Row {
        name: "429",
        param: Param::Count("SECS", 1),
        help: "429 with Retry-After SECS (default 1) and a JSON error",
        make: |a| Kind::RateLimited {
            retry_after: a.count(),
        },
    },
    Row {
        name: "402",
        param: Param::None,
        help: "402 with a JSON error, as when the credits run out",
        make: |_| Kind::Status(402),
    },
    Row {
        name: "500",
        param: Param::None,
        help: SERVER_ERROR,
        make: |_| Kind::Status(500),
    },
    Row {
        name: "502",
        param: Param::None,
        help: SERVER_ERROR,
        make: |_| Kind::Status(502),
    },
    Row {
        name: "503",
        param: Param::None,
        help: SERVER_ERROR,
        make: |_| Kind::Status(503),
    },
    Row {
        name: "504",
        param: Param::None,
        help: SERVER_ERROR,
        make: |_| Kind::Status(504),
    },
    Row {
        name: "drop",
        param: Param::None,
        help: "close the connection without a response",
        make: |_| Kind::Drop,
    },
    Row {
        name: "html",
        param: Param::None,
        help: "502 with an HTML page, as a proxy would send",
        make: |_| Kind::Html,
    },
    Row {
        name: "malformed",
        param: Param::None,
        help: "200 with broken JSON (streaming: a broken chunk after the first piece)",
        make: |_| Kind::Malformed,
    },
    Row {
        name: "cut",
        param: Param::Count("N", 1),
        help: "streaming: end the stream after N content chunks (default 1), no [DONE];\n\
               otherwise: close after half the promised body",
        make: |a| Kind::Cut {
            chunks: usize::try_from(a.count()).unwrap_or(usize::MAX),
        },
    },
    Row {
        name: "error-event",
        param: Param::None,
        help: "streaming: an SSE {\"error\": ...} event after the first piece;\n\
               otherwise: 200 with an {\"error\": ...} body",
        make: |_| Kind::ErrorEvent,
    },
    Row {
        name: "stall",
        param: Param::Secs(60.0),
        help: "send the headers, then nothing for SECS (default 60), then close",
        make: |a| Kind::Stall(a.secs()),
    },
    Row {
        name: "slow",
        param: Param::Secs(2.0),
        help: "wait SECS (default 2) before answering normally",
        make: |a| Kind::Slow(a.secs()),
    },
    Row {
        name: "redirect",
        param: Param::Url(DEFAULT_REDIRECT),
        help: "307 to URL (default https://example.com/api/v1/agents/default/chat/completions)",
        make: |a| match a {
            Arg::Url(url) => Kind::Redirect(url),
            _ => Kind::Redirect(DEFAULT_REDIRECT.into()),
        },
    },
];

/// The faults' part of `--help`: one line a row, rows with the same help on one line.
pub fn help() -> String {
    let mut text = String::from(
        "Faults (--fault SPEC, repeatable; each is used by the next request on the chat path, in \
         order,\nbefore auth and validation; then requests behave):",
    );
    let mut rows = TABLE.iter().peekable();
    while let Some(row) = rows.next() {
        let mut names = row.syntax();
        while let Some(same) = rows.next_if(|next| next.help == row.help) {
            names.push(' ');
            names.push_str(&same.syntax());
        }
        let mut lines = row.help.lines();
        text.push_str(&format!("\n  {names:<18}{}", lines.next().unwrap_or("")));
        for line in lines {
            text.push_str(&format!("\n  {:<18}{}", "", line.trim_start()));
        }
    }
    text
}

impl Row {
    /// How the help writes the fault: `429[:SECS]`.
    fn syntax(&self) -> String {
        match self.param {
            Param::None => self.name.to_string(),
            Param::Count(shown, _) => format!("{}[:{shown}]", self.name),
            Param::Secs(_) => format!("{}[:SECS]", self.name),
            Param::Url(_) => format!("{}[:URL]", self.name),
        }
    }

    fn read(&self, arg: Option<&str>) -> Result<(Arg, Option<String>), String> {
        let name = self.name;
        let read = match (self.param, arg) {
            (Param::None, None) => Arg::None,
            (Param::None, Some(_)) => return Err(format!("{name} takes no argument")),
            (Param::Count(_, default), None) => Arg::Count(default),
            (Param::Count(..), Some(a)) => Arg::Count(
                a.parse()
                    .map_err(|_| format!("{name}: {a:?} is not a whole number"))?,
            ),
            (Param::Secs(default), None) => Arg::Secs(Duration::from_secs_f64(default)),
            (Param::Secs(_), Some(a)) => Arg::Secs(seconds(a).map_err(|e| format!("{name}: {e}"))?),
            (Param::Url(default), a) => Arg::Url(a.unwrap_or(default).to_string()),
        };
        let shown = match &read {
            Arg::None => None,
            Arg::Count(n) => Some(n.to_string()),
            Arg::Secs(d) => Some(d.as_secs_f64().to_string()),
            Arg::Url(url) => Some(url.clone()),
        };
        Ok((read, shown))
    }
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
        let Some(row) = TABLE.iter().find(|row| row.name == name) else {
            let names: Vec<&str> = TABLE.iter().map(|row| row.name).collect();
            return Err(format!(
                "unknown fault {name:?}: expected one of {}",
                names.join(", ")
            ));
        };
        let (arg, shown) = row.read(arg)?;
        let spec = match shown {
            Some(shown) => format!("{name}:{shown}"),
            None => name.to_string(),
        };
        Ok(Fault {
            kind: (row.make)(arg),
            spec,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

/// A duration given in seconds, fractions allowed: fault arguments and the timeout options.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

/// What became of an injected fault.
pub enum Injected {
    /// The fault was the answer.
    Sent(Outcome),
    /// `slow`: the wait is over, the request is answered as it would have been.
    Delayed,
}

/// Applies `fault` to `request`. Faults come before validation, so the body is used only as
/// far as it is valid.
pub fn inject(
    fault: &Fault,
    request: &Request,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
) -> Injected {
    let chat = validate(&request.body).ok();
    let wants_stream = chat.as_ref().is_some_and(|chat| chat.stream);
    let broken_stream = match fault.kind {
        Kind::Malformed => Some(Ending::Malformed),
        Kind::Cut { chunks } => Some(Ending::Cut(chunks)),
        Kind::ErrorEvent => Some(Ending::ErrorEvent),
        _ => None,
    };
    if let Some(ending) = broken_stream.filter(|_| wants_stream) {
        let answer = broken_answer(chat.as_ref(), shared);
        return Injected::Sent(stream::echo(
            out,
            request.http10,
            answer,
            ending,
            &shared.options,
        ));
    }
    Injected::Sent(match &fault.kind {
        Kind::Slow(delay) => {
            sleep(*delay);
            return Injected::Delayed;
        }
        Kind::Drop => socket
            .shutdown(Shutdown::Both)
            .map(|()| (None, Next::Close)),
        Kind::Stall(silence) => stall(*silence, wants_stream, request, out, socket),
        Kind::Malformed | Kind::Cut { .. } | Kind::ErrorEvent => {
            broken_whole(&fault.kind, chat.as_ref(), out, shared)
        }
        kind => refuse(kind, out),
    })
}

/// The answer a broken stream or body starts from: the echo of the request, as far as it is
/// valid.
fn broken_answer(chat: Option<&Chat>, shared: &Shared) -> Answer {
    let echo = chat.map_or("", |chat| &chat.echo);
    Answer::echo(
        shared.next_id(),
        Content::answer(echo, 1, shared.options.answer_size),
    )
}

/// The faults that are a response of their own, sent whole.
fn refuse(kind: &Kind, out: &mut impl Write) -> Outcome {
    match kind {
        Kind::RateLimited { retry_after } => error(
            out,
            429,
            "rate_limit_error",
            "rate limit exceeded (injected fault)",
            None,
            vec![(wire::HEADER_RETRY_AFTER, retry_after.to_string())],
        ),
        Kind::Status(402) => no_credits(out, " (injected 402)"),
        Kind::Status(status) => {
            let message = format!("the service failed (injected {status})");
            error(out, *status, "server_error", &message, None, vec![])
        }
        Kind::Html => {
            let headers = [(CONTENT_TYPE, "text/html".to_string())];
            http::respond(out, 502, &headers, HTML_PAGE.as_bytes(), false)?;
            Ok((Some(502), Next::KeepAlive))
        }
        Kind::Redirect(location) => {
            let message = format!("moved to {location} (injected redirect)");
            let headers = vec![(LOCATION, location.clone())];
            error(out, 307, "redirect", &message, None, headers)
        }
        _ => unreachable!("the other faults are not a response of their own"),
    }
}

/// `malformed`, `cut` and `error-event` for a request that is not streamed.
fn broken_whole(
    kind: &Kind,
    chat: Option<&Chat>,
    out: &mut impl Write,
    shared: &Shared,
) -> Outcome {
    let json = [(CONTENT_TYPE, reply::JSON.to_string())];
    match kind {
        Kind::Malformed => {
            let id = shared.next_id();
            let body = format!("{{\"id\":\"{id}\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"trunc");
            http::respond(out, 200, &json, body.as_bytes(), false)?;
            Ok((Some(200), Next::KeepAlive))
        }
        Kind::Cut { .. } => {
            let body = completion_body(&broken_answer(chat, shared), "stop", 0);
            http::respond_short(out, &json, &body[..body.len() / 2], body.len())?;
            Ok((Some(200), Next::Close))
        }
        _ => {
            let message = "the agent failed (injected error body)";
            let body = ErrorBody::new("server_error", message, None);
            let body = serde_json::to_vec(&body).expect("serializes");
            http::respond(out, 200, &json, &body, false)?;
            Ok((Some(200), Next::KeepAlive))
        }
    }
}

/// The headers, then nothing for `silence`, then the connection closed.
fn stall(
    silence: Duration,
    wants_stream: bool,
    request: &Request,
    out: &mut impl Write,
    socket: &TcpStream,
) -> Outcome {
    let content_type = if wants_stream {
        stream::EVENT_STREAM
    } else {
        reply::JSON
    };
    let headers = [(CONTENT_TYPE, content_type.to_string())];
    http::Stream::start(out, 200, &headers, request.http10)?.flush()?;
    sleep(silence);
    socket.shutdown(Shutdown::Both)?;
    Ok((Some(200), Next::Close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_name_parses_and_round_trips() {
        let cases = [
            ("429", Kind::RateLimited { retry_after: 1 }),
            ("429:7", Kind::RateLimited { retry_after: 7 }),
            ("402", Kind::Status(402)),
            ("500", Kind::Status(500)),
            ("504", Kind::Status(504)),
            ("drop", Kind::Drop),
            ("html", Kind::Html),
            ("malformed", Kind::Malformed),
            ("cut", Kind::Cut { chunks: 1 }),
            ("cut:3", Kind::Cut { chunks: 3 }),
            ("error-event", Kind::ErrorEvent),
            ("stall", Kind::Stall(Duration::from_secs(60))),
            ("stall:0.5", Kind::Stall(Duration::from_millis(500))),
            ("slow:1", Kind::Slow(Duration::from_secs(1))),
            ("redirect", Kind::Redirect(DEFAULT_REDIRECT.into())),
            (
                "redirect:http://x:1/y",
                Kind::Redirect("http://x:1/y".into()),
            ),
        ];
        for (spec, kind) in cases {
            let fault: Fault = spec.parse().unwrap();
            assert_eq!(fault.kind, kind, "{spec}");
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault), "{spec}");
        }
        assert_eq!("429".parse::<Fault>().unwrap().to_string(), "429:1");
        assert_eq!(
            "stall:0.5".parse::<Fault>().unwrap().to_string(),
            "stall:0.5"
        );
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
        let unknown = "teapot".parse::<Fault>().unwrap_err();
        assert!(
            unknown.ends_with(
                "expected one of 429, 402, 500, 502, 503, 504, drop, html, \
                               malformed, cut, error-event, stall, slow, redirect"
            ),
            "{unknown}"
        );
    }

    #[test]
    fn the_help_table_is_aligned_and_names_every_fault() {
        let help = help();
        // Each line's description starts after the first run of two or more spaces.
        let columns: Vec<usize> = help
            .lines()
            .skip(2)
            .map(|line| {
                let gap = 2 + line[2..].find("  ").unwrap();
                line.len() - line[gap..].trim_start().len()
            })
            .collect();
        assert!(columns.iter().all(|&c| c == columns[0]), "{columns:?}");
        assert!(help.contains("\n  500 502 503 504   that status with a JSON error body\n"));
        for row in TABLE {
            assert!(help.contains(&row.syntax()), "{}", row.name);
        }
    }
}
