//! The mock's one endpoint, `POST /api/v1/agents/{id}/chat/completions`, as the API document
//! describes it.
//!
//! Order of checks, as a client sees them: a queued fault; the route (404) and method (405);
//! the bearer token (401) and its scopes (403); the rate limit (429); the body (400); the
//! conversation (404); the credits (402); then the answer, whole or streamed.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

use percent_encoding::percent_decode_str;

use super::accounts::{price, Admission, Charge};
use super::answer::{tokens, Content};
use super::answers::Query;
use super::fault::{self, Fault, Injected};
use super::http::{self, Request, ALLOW};
use super::log::Exchange;
use super::replay::{self, Replayed};
use super::reply::{self, error, no_conversation, no_credits, Answer, Asked, Next, Outcome};
use super::stream::{self, Ending};
use super::validate::{validate, Chat, Invalid};
use super::{lock, Shared};
use crate::wire::{self, ErrorBody};

/// Answers one request; logs it when done.
pub fn handle(
    request: &Request,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
) -> Next {
    if request.method == "HEAD" {
        return exchange(request, &mut http::HeadOnly::new(out), socket, shared);
    }
    exchange(request, out, socket, shared)
}

/// What the log says of an exchange besides its request and status.
#[derive(Default)]
pub struct Trace {
    pub fault: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// The client's own credential, masked in the log of a recording mock.
    pub secret: Option<String>,
}

fn exchange(request: &Request, out: &mut impl Write, socket: &TcpStream, shared: &Shared) -> Next {
    let agent = route(&request.path);
    let mut trace = Trace::default();
    let outcome = match (&shared.recorder, agent) {
        (Some(recorder), Some(agent)) if request.method == "POST" => {
            recorder.proxy(request, &agent, out, shared, &mut trace)
        }
        (_, agent) => {
            let fault = agent
                .as_ref()
                .filter(|_| shared.recorder.is_none())
                .and_then(|_| lock(&shared.faults).pop_front());
            trace.fault = fault.as_ref().map(Fault::to_string);
            let injected = match &fault {
                Some(fault) => fault::inject(fault, request, out, socket, shared),
                None => Injected::Delayed,
            };
            match injected {
                Injected::Sent(outcome) => outcome,
                Injected::Delayed => answer(request, agent, out, socket, shared, &mut trace),
            }
        }
    };
    let (status, next) = match outcome {
        Ok((status, next)) => (status, next),
        Err(err) => {
            trace.reason = Some(undelivered(&err));
            (None, Next::Close)
        }
    };
    if let Some(log) = &shared.log {
        log.record(&Exchange {
            arrived: request.arrived,
            request: Some(request),
            status,
            reason: trace.reason,
            fault: trace.fault,
            rule: trace.rule,
            secret: trace.secret.as_deref(),
        });
    }
    if request.close {
        Next::Close
    } else {
        next
    }
}

/// Why an answer did not reach the client, for the log.
fn undelivered(err: &io::Error) -> String {
    match err.kind() {
        // The socket's write timeout: no byte moved for that long.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "the client stopped reading the answer".into()
        }
        _ => format!("the answer was cut short: {err}"),
    }
}

/// The agent id of a chat path.
pub fn route(path: &str) -> Option<String> {
    let agent = path
        .strip_prefix("/api/v1/agents/")?
        .strip_suffix("/chat/completions")?;
    if agent.is_empty() || agent.contains('/') {
        return None;
    }
    Some(percent_decode_str(agent).decode_utf8_lossy().into_owned())
}

/// A request that passed every check before its answer.
struct Admitted<'r> {
    agent: String,
    token: &'r str,
    chat: Chat<'r>,
}

fn answer(
    request: &Request,
    agent: Option<String>,
    out: &mut impl Write,
    socket: &TcpStream,
    shared: &Shared,
    trace: &mut Trace,
) -> Outcome {
    let admitted = match admit(request, agent, shared) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.send(out, shared),
    };
    let asked = Asked {
        request,
        agent: &admitted.agent,
        token: admitted.token,
        chat: &admitted.chat,
    };
    let Some(answers) = &shared.answers else {
        return echo(&asked, out, shared);
    };
    let conversation = asked.chat.conversation_id.as_deref();
    let turn = lock(&shared.accounts).next_turn(asked.token, asked.agent, conversation);
    let Some(turn) = turn else {
        return no_conversation(out, asked.chat, &shared.secrets);
    };
    let query = Query::new(asked.agent, asked.chat, turn, &request.body);
    if let Some(rule) = answers.choose(&query) {
        trace.rule = Some(rule.origin.clone());
        return match replay::send(rule, &asked, turn, out, socket, shared) {
            Replayed::Sent(outcome) => outcome,
            Replayed::Echo => echo(&asked, out, shared),
        };
    }
    let unmatched = unmatched(&query, shared);
    if answers.strict {
        trace.reason = Some(unmatched.clone());
        let mut body = ErrorBody::new("invalid_request_error", unmatched, None);
        body.error.code = Some("no_matching_answer".into());
        return reply::error_body(out, 400, &body, vec![]);
    }
    trace.reason = Some(format!("{unmatched}: the echo answer"));
    echo(&asked, out, shared)
}

/// Which request no scripted answer matched: its agent and the start of its last user message.
fn unmatched(query: &Query, shared: &Shared) -> String {
    let prompt = query.prompt().unwrap_or("");
    let mut start: String = prompt.chars().take(40).collect();
    if start.len() < prompt.len() {
        start.push_str("...");
    }
    let message = format!(
        "no scripted answer matches this request: agent {:?}, last user message {start:?}",
        query.agent
    );
    shared.secrets.redact(&message).into_owned()
}

/// Why a request gets no answer: the error response it gets instead.
enum Refusal<'r> {
    NoRoute(&'r Request),
    Method(&'r Request),
    NoToken,
    Admission(Admission),
    Invalid(Invalid),
}

impl Refusal<'_> {
    fn send(self, out: &mut impl Write, shared: &Shared) -> Outcome {
        match self {
            Refusal::NoRoute(request) => {
                let message = format!("no such endpoint: {} {}", request.method, request.path);
                let message = shared.secrets.redact(&message);
                error(out, 404, "not_found_error", &message, None, vec![])
            }
            Refusal::Method(request) => {
                let message = format!("{} is not allowed here; use POST", request.method);
                let message = shared.secrets.redact(&message);
                let allow = vec![(ALLOW, "POST".into())];
                error(out, 405, "invalid_request_error", &message, None, allow)
            }
            Refusal::NoToken => {
                let message = "missing bearer token: send Authorization: Bearer ACCESS_TOKEN";
                error(out, 401, "authentication_error", message, None, vec![])
            }
            Refusal::Admission(Admission::MissingScope) => {
                let message = "the token lacks the agents-all or agents-use scope";
                error(out, 403, "permission_error", message, None, vec![])
            }
            Refusal::Admission(Admission::RateLimited(secs)) => {
                let message = "rate limit exceeded: too many requests for this token";
                let retry_after = vec![(wire::HEADER_RETRY_AFTER, secs.to_string())];
                error(out, 429, "rate_limit_error", message, None, retry_after)
            }
            Refusal::Admission(_) => {
                let message = "invalid or expired access token";
                error(out, 401, "authentication_error", message, None, vec![])
            }
            Refusal::Invalid(Invalid { message, param }) => error(
                out,
                400,
                "invalid_request_error",
                &message,
                param.as_deref(),
                vec![],
            ),
        }
    }
}

/// The checks before an answer, in the order a client sees them.
fn admit<'r>(
    request: &'r Request,
    agent: Option<String>,
    shared: &Shared,
) -> Result<Admitted<'r>, Refusal<'r>> {
    let agent = agent.ok_or(Refusal::NoRoute(request))?;
    if request.method != "POST" {
        return Err(Refusal::Method(request));
    }
    let token = bearer(request).ok_or(Refusal::NoToken)?;
    match lock(&shared.accounts).admit(token, Instant::now()) {
        Admission::Admitted => {}
        refused => return Err(Refusal::Admission(refused)),
    }
    let chat = validate(&request.body).map_err(Refusal::Invalid)?;
    Ok(Admitted { agent, token, chat })
}

/// The deterministic answer: the conversation's turn and the last user message, charged by
/// its length.
fn echo(asked: &Asked, out: &mut impl Write, shared: &Shared) -> Outcome {
    let Asked {
        agent, token, chat, ..
    } = asked;
    let conversation = chat.conversation_id.as_deref();
    // One lock: the turn is part of the answer, whose length sets the charge.
    let charged = {
        let mut accounts = lock(&shared.accounts);
        accounts.next_turn(token, agent, conversation).map(|turn| {
            let mut content = Content::answer(&chat.echo, turn, shared.options.answer_size);
            let cut = chat.max_tokens.is_some_and(|max| content.limit_tokens(max));
            let cost = price(tokens(content.len()));
            let charge = accounts.charge(token, agent, conversation, cost);
            (content, if cut { "length" } else { "stop" }, charge)
        })
    };
    let Some((content, finish_reason, charge)) = charged else {
        return no_conversation(out, chat, &shared.secrets);
    };
    let headers = match charge {
        Charge::Granted(granted) => reply::charged(granted),
        Charge::NoCredits => return no_credits(out, ""),
        Charge::UnknownConversation => return no_conversation(out, chat, &shared.secrets),
    };
    let answer = Answer {
        headers,
        ..Answer::echo(shared.next_id(), content)
    };
    let prompt_tokens = tokens(chat.prompt_bytes);
    if chat.stream {
        let ending = Ending::done(
            finish_reason,
            chat.include_usage,
            prompt_tokens,
            &answer.content,
        );
        stream::echo(out, asked.request.http10, answer, ending, &shared.options)
    } else {
        reply::whole(out, answer, finish_reason, prompt_tokens)
    }
}

pub fn bearer(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_the_chat_path() {
        assert_eq!(
            route("/api/v1/agents/default/chat/completions").as_deref(),
            Some("default")
        );
        assert_eq!(
            route("/api/v1/agents/a%2Fb/chat/completions").as_deref(),
            Some("a/b")
        );
        for other in [
            "/",
            "/api/v1/agents//chat/completions",
            "/api/v1/agents/a/b/chat/completions",
            "/api/v1/agents/a/chat",
        ] {
            assert_eq!(route(other), None, "{other}");
        }
    }
}
