//! `--batch FILE`: every line of a JSONL file as its own request, up to `--jobs` in flight
//! under the shared pacing, one JSON line per item written and flushed as it finishes. With
//! `-o FILE` the output is also the record of what is done, so a rerun resumes (`journal`).
//!
//! Workers take items in input order and return what each one came to; the caller writes the
//! lines, adds up the counts and decides the exit code. Memory holds the items and one answer
//! per worker, whatever the number of items.

pub mod items;
pub mod journal;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{self, Action, Batch, Chat, Config, Conversation};
use crate::error::{Error, Kind, Result};
use crate::extract::{self, Extract};
use crate::output::Output;
use crate::printer::Printer;
use crate::report::{self, Report};
use crate::request::Request;
use crate::token::Secret;
use crate::transport::Transport;
use crate::wire::{ChatChunk, ChatCompletion, Message};
use crate::{pace, prompt, redact, state};
use items::Item;
use journal::Journal;

/// Runs the batch `batch` with the options of `config`; `stdin` is read only for `--batch -`.
pub fn run(
    config: &Config,
    batch: &Batch,
    printer: &Printer,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<()> {
    let from_stdin = batch.file == Path::new("-");
    if let Some(output) = &batch.output {
        if !from_stdin && same_file(&batch.file, output) {
            return Err(Error::msg(
                Kind::Usage,
                format!("-o {} is the batch file itself", output.display()),
            )
            .with_hint("write the answers to another file"));
        }
    }
    let (text, name) = if from_stdin {
        let name = "standard input";
        (
            prompt::read_text(&mut *stdin, name, &mut { prompt::MAX_INPUT })?,
            name.to_string(),
        )
    } else {
        let text = prompt::read_file(&batch.file, "batch file", &mut { prompt::MAX_INPUT })?;
        (text, batch.file.display().to_string())
    };
    // Piped data, when the items are not what is piped, is every item's: the last part of its
    // prompt, as stdin is of a single request's.
    let piped = if config.prompt.read_stdin && !from_stdin {
        Some(prompt::read_text(stdin, "standard input", &mut {
            prompt::MAX_INPUT
        })?)
    } else {
        None
    };
    let has_prompt = prompt::join_parts([config.prompt.words.join(" ")]).is_some()
        || piped.as_deref().is_some_and(|p| !p.trim().is_empty())
        || config.prompt.messages.is_some();
    let items = items::parse(&text, &name, has_prompt)?;
    drop(text);
    let endpoints = preflight(config, &items, &name)?;
    let history = match &config.prompt.messages {
        Some(path) => Some(prompt::history(path, &mut { prompt::MAX_INPUT })?),
        None => None,
    };
    let requests = Requests {
        config,
        endpoints,
        history,
        piped,
        printer,
    };
    let token = match &config.action {
        Action::Send(token) => token,
        Action::DryRun { no_token } => {
            return dry_run(&requests, &items, no_token.is_none(), stdout)
        }
    };
    let mut journal = batch.output.as_deref().map(Journal::open).transpose()?;
    let done_before = journal
        .as_mut()
        .map(|j| std::mem::take(&mut j.done))
        .unwrap_or_default();
    let todo: Vec<&Item> = items
        .iter()
        .filter(|item| !done_before.contains(&item.key))
        .collect();
    let transport = Transport::new(&config.network).paced(pace::for_run(config, token, printer));
    let workers = Workers {
        requests: &requests,
        transport: &transport,
        token,
        budget: Budget::new(batch),
    };
    let mut sink = |line: &[u8]| -> io::Result<()> {
        match journal.as_mut() {
            Some(journal) => journal.append(line),
            None => printer.suspend(|| {
                stdout.write_all(line)?;
                stdout.write_all(b"\n")?;
                stdout.flush()
            }),
        }
    };
    printer.start_progress(todo.len() as u64);
    let tally = workers.run(&todo, batch.jobs, printer, &mut sink);
    printer.finish_progress();
    printer.notice(&tally.summary(items.len() - todo.len()));
    tally.verdict(&todo)
}

/// What can be checked of the items before anything is sent, so that a mistake on line 900
/// costs nothing: the agents they name (their endpoints are returned), and that their files
/// are there to read.
fn preflight(config: &Config, items: &[Item], name: &str) -> Result<HashMap<String, String>> {
    let mut endpoints = HashMap::from([(config.agent.clone(), config.url.clone())]);
    for item in items {
        let bad =
            |why: String| Error::msg(Kind::Input, format!("{name}, line {}: {why}", item.line));
        for path in item.files.iter().flatten() {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    return Err(bad(format!("{} is a directory", path.display())))
                }
                Ok(_) => {}
                Err(e) => return Err(bad(format!("cannot read file {}: {e}", path.display()))),
            }
        }
        let Some(agent) = &item.agent else { continue };
        if !endpoints.contains_key(agent) {
            let endpoint = config::endpoint(&config.base_url, agent).map_err(|e| bad(e.line()))?;
            endpoints.insert(agent.clone(), endpoint.url);
        }
    }
    Ok(endpoints)
}

/// Whether two paths name one file, as the file system sees it (links and `./` included).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Builds each item's request from its own fields and, where it has none, the command line's.
struct Requests<'a> {
    config: &'a Config,
    endpoints: HashMap<String, String>,
    /// `--messages`, for the items without messages of their own.
    history: Option<Vec<Message>>,
    /// Standard input, when it is not the items.
    piped: Option<String>,
    printer: &'a Printer,
}

impl Requests<'_> {
    fn agent<'i>(&'i self, item: &'i Item) -> &'i str {
        item.agent.as_deref().unwrap_or(&self.config.agent)
    }

    fn request(&self, item: &Item) -> Result<Request> {
        let config = self.config;
        let agent = self.agent(item);
        let chat = Chat {
            stream: config.chat.stream,
            temperature: item.temperature.or(config.chat.temperature),
            max_tokens: item.max_tokens.or(config.chat.max_tokens),
            conversation: item
                .conversation
                .clone()
                .map_or_else(|| config.chat.conversation.clone(), Conversation::Id),
        };
        let state_dir = config.state_dir.as_deref();
        let conversation = state::conversation_to_send(
            &chat.conversation,
            state_dir,
            &config.origin,
            agent,
            self.printer,
        );
        let mut messages = Vec::new();
        if let Some(system) = item.system.as_ref().or(config.prompt.system.as_ref()) {
            messages.push(Message::new("system", system.as_str()));
        }
        messages.extend(
            item.messages
                .as_ref()
                .or(self.history.as_ref())
                .into_iter()
                .flatten()
                .cloned(),
        );
        let mut parts = vec![config.prompt.words.join(" ")];
        parts.extend(item.prompt.clone());
        // An item's files, or else the command line's, within the input limit of one prompt.
        let mut budget = prompt::MAX_INPUT;
        for path in item.files.as_ref().unwrap_or(&config.prompt.files) {
            parts.push(prompt::file_part(path, &mut budget)?);
        }
        parts.extend(self.piped.clone());
        messages.extend(prompt::join_parts(parts).map(|user| Message::new("user", user)));
        if messages.iter().all(|m| m.role == "system") {
            return Err(Error::msg(Kind::Input, "nothing to send: no prompt"));
        }
        Ok(Request::new(
            &self.endpoints[agent],
            &chat,
            messages,
            conversation,
        ))
    }
}

/// `--dry-run --batch`: each item's request, one line each, nothing sent.
fn dry_run(
    requests: &Requests,
    items: &[Item],
    has_token: bool,
    stdout: &mut dyn Write,
) -> Result<()> {
    let failed = |e| Error::write(e, "standard output");
    for item in items {
        let request = requests.request(item)?;
        let line = serde_json::json!({"id": item.id, "request": request.describe(has_token)});
        writeln!(stdout, "{line}").map_err(failed)?;
    }
    stdout.flush().map_err(failed)
}

/// What an item came to.
struct Finished {
    /// Its place in the list of items to run.
    index: usize,
    line: Vec<u8>,
    /// `None` when it succeeded.
    failure: Option<Failure>,
    consumed: f64,
}

/// How an item failed: enough to say so again when the batch ends.
#[derive(Debug, Clone)]
struct Failure {
    kind: Kind,
    hint: Option<String>,
}

/// `--max-credits` and `--min-credits`, and the first budget reached.
struct Budget {
    max_credits: Option<f64>,
    min_credits: Option<f64>,
    state: Mutex<BudgetState>,
}

#[derive(Default)]
struct BudgetState {
    consumed: f64,
    /// A budget reached: the reason the items never started give.
    reached: Option<Error>,
}

impl Budget {
    fn new(batch: &Batch) -> Self {
        Budget {
            max_credits: batch.max_credits,
            min_credits: batch.min_credits,
            state: Mutex::new(BudgetState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts what `report` consumed, and says whether the batch must stop after an item that
    /// ended in `failure`: a budget is reached, or every other item would fail the same way
    /// (77, 78, 4).
    fn settle(&self, failure: Option<&Error>, report: &Report) -> (f64, bool) {
        let consumed = number(report.reply.credits_consumed.as_deref()).unwrap_or(0.0);
        let remaining = number(report.reply.credits_remaining.as_deref());
        let mut state = self.state();
        state.consumed += consumed;
        if state.reached.is_some() {
            return (consumed, true);
        }
        if failure.is_some_and(|e| matches!(e.kind, Kind::Auth | Kind::Config | Kind::Credits)) {
            return (consumed, true);
        }
        let credits_hint = "add credits, or raise the budget, then rerun: items done are skipped";
        state.reached = match (self.max_credits, self.min_credits, remaining) {
            (Some(max), _, _) if state.consumed >= max => Some(
                Error::msg(
                    Kind::Credits,
                    format!(
                        "--max-credits {max} reached: this run consumed {}",
                        state.consumed
                    ),
                )
                .with_hint(credits_hint),
            ),
            (_, Some(min), Some(left)) if left < min => Some(
                Error::msg(
                    Kind::Credits,
                    format!("--min-credits {min} reached: {left} credits remain"),
                )
                .with_hint(credits_hint),
            ),
            _ => None,
        };
        (consumed, state.reached.is_some())
    }
}

fn number(header: Option<&str>) -> Option<f64> {
    header?.trim().parse().ok()
}

struct Workers<'a> {
    requests: &'a Requests<'a>,
    transport: &'a Transport,
    token: &'a Secret,
    budget: Budget,
}

impl Workers<'_> {
    /// Runs `todo` with `jobs` workers, handing each finished item's line to `sink` as it
    /// comes, and adds up what they came to.
    fn run(
        &self,
        todo: &[&Item],
        jobs: usize,
        printer: &Printer,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Tally {
        let next = AtomicUsize::new(0);
        let (finished, results) = mpsc::channel();
        let mut tally = Tally::new(todo.len());
        thread::scope(|scope| {
            for _ in 0..jobs.min(todo.len()) {
                let finished = finished.clone();
                let next = &next;
                scope.spawn(move || {
                    while !self.transport.halted() {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = todo.get(index) else { break };
                        // An item halted before it was sent is never started: no line.
                        let Some(result) = self.item(index, item, printer) else {
                            continue;
                        };
                        if finished.send(result).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(finished);
            for result in results {
                if let Err(err) = sink(&result.line) {
                    tally
                        .unwritten
                        .get_or_insert(Error::write(err, "the batch output"));
                    self.transport.halt();
                }
                tally.add(&result);
                printer.progress(tally.finished() as u64, tally.status());
            }
        });
        tally.reached = self.budget.state().reached.take();
        tally
    }

    fn item(&self, index: usize, item: &Item, printer: &Printer) -> Option<Finished> {
        let requests = self.requests;
        let config = requests.config;
        let mut report = Report::new(requests.agent(item), config.chat.stream);
        let mut out = Output::new(Vec::new());
        let kept = requests.request(item).and_then(|request| {
            report::exchange(
                self.transport,
                &request,
                self.token,
                &config.network,
                true,
                &mut out,
                printer,
                &mut report,
            )
        });
        if report.attempts.count == 0 && self.transport.halted() {
            return None;
        }
        let answer = kept
            .and_then(|kept| answer(kept, &out.into_inner(), self.token))
            .and_then(|(text, response)| {
                let content = deliver(&text, &report, config)?;
                Ok((content, response))
            });
        let failure = answer.as_ref().err();
        let (consumed, stop) = self.budget.settle(failure, &report);
        if stop {
            self.transport.halt();
        }
        let code = failure.map_or(0, |e| e.kind.exit_code());
        let mut meta = report.to_json();
        meta["exit_code"] = code.into();
        meta["finish_reason"] = report.reply.finish_reason.clone().into();
        // What the server said of itself may echo the token; the answer is kept as received.
        redact::value(Some(self.token), &mut meta);
        let line = match &answer {
            Ok((content, response)) => Line {
                id: &item.id,
                content: Some(content.as_ref()),
                response: config.json.then_some(response.as_ref()),
                error: None,
                bnx: meta,
            },
            Err(err) => Line {
                id: &item.id,
                content: None,
                response: None,
                error: Some(err.json()).map(|mut error| {
                    redact::value(Some(self.token), &mut error);
                    error
                }),
                bnx: meta,
            },
        };
        Some(Finished {
            index,
            line: serde_json::to_vec(&line).expect("a line serializes"),
            failure: failure.map(|e| Failure {
                kind: e.kind,
                hint: e.hint.clone(),
            }),
            consumed,
        })
    }
}

/// What an item's `content` is: its text, unless `--fail-on-length` refuses a cut answer, or
/// `-x`/`--expect-json` ask for a code block (a string) or a JSON value.
fn deliver(text: &str, report: &Report, config: &Config) -> Result<Box<RawValue>> {
    if let (Some(cut), true) = (
        report.reply.cut(config.chat.max_tokens),
        config.delivery.fail_on_length,
    ) {
        return Err(Error::msg(
            Kind::Unexpected,
            format!("{cut} (--fail-on-length)"),
        ));
    }
    let raw = |value: &str| serde_json::value::to_raw_value(value).expect("a string serializes");
    match config.delivery.extract {
        None => Ok(raw(text)),
        Some(Extract::CodeBlock) => Ok(raw(&Extract::CodeBlock.apply(text)?)),
        Some(Extract::Json) => {
            let json = Extract::Json.apply(text)?;
            Ok(RawValue::from_string(json).expect("compact_json writes JSON"))
        }
    }
}

/// One output line.
#[derive(Serialize)]
struct Line<'a> {
    id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    bnx: Value,
}

/// The answer's text and the response as received: a whole answer's body (`kept`), or a
/// stream's events, one JSON line each in `streamed`, with the token masked in them as in the
/// lines of `--json --stream` (the text, like a whole answer's content, is kept as received).
fn answer(
    kept: Option<Vec<u8>>,
    streamed: &[u8],
    token: &Secret,
) -> Result<(String, Box<RawValue>)> {
    let protocol = |e: serde_json::Error| Error::msg(Kind::Protocol, e.to_string());
    match kept {
        Some(body) => {
            let completion: ChatCompletion = serde_json::from_slice(&body).map_err(protocol)?;
            let content = completion
                .choices
                .first()
                .and_then(|c| c.message.content.as_ref())
                .map_or_else(String::new, |c| c.as_str().to_string());
            let body = std::str::from_utf8(&body)
                .map_err(|e| Error::msg(Kind::Protocol, format!("the answer is not UTF-8: {e}")))?;
            // The content is the answer, as received; the response is masked as any --json is.
            Ok((content, compact(&redact::json(Some(token), body))?))
        }
        None => {
            let text = std::str::from_utf8(streamed).map_err(|e| {
                Error::msg(Kind::Protocol, format!("a stream event is not UTF-8: {e}"))
            })?;
            let mut content = String::new();
            for line in text.lines() {
                let chunk: ChatChunk = serde_json::from_str(line).map_err(protocol)?;
                if let Some(piece) = chunk.choices.first().and_then(|c| c.delta.content.as_ref()) {
                    content.push_str(piece.as_str());
                }
            }
            let events: Vec<_> = text
                .lines()
                .map(|line| redact::json(Some(token), line))
                .collect();
            let events = format!("[{}]", events.join(","));
            Ok((content, RawValue::from_string(events).map_err(protocol)?))
        }
    }
}

/// A body as one line: as received when it is one already, else without the whitespace between
/// its tokens (number text kept, as `--json --stream` keeps it).
fn compact(text: &str) -> Result<Box<RawValue>> {
    let protocol = |e: serde_json::Error| Error::msg(Kind::Protocol, e.to_string());
    let line = if text.contains(['\n', '\r']) {
        extract::compact_json(text).map_err(protocol)?
    } else {
        text.trim().to_string()
    };
    RawValue::from_string(line).map_err(protocol)
}

/// What the items of this run came to.
struct Tally {
    /// Per item to run: `None` until it finished, then its failure if any.
    finished: Vec<Option<Option<Failure>>>,
    /// How many have finished, and failed: counted as they come, for the progress bar.
    done_or_failed: usize,
    failed: usize,
    consumed: f64,
    /// A budget reached, the reason items were never started.
    reached: Option<Error>,
    /// The first failure to write a line.
    unwritten: Option<Error>,
}

impl Tally {
    fn new(items: usize) -> Self {
        Tally {
            finished: vec![None; items],
            done_or_failed: 0,
            failed: 0,
            consumed: 0.0,
            reached: None,
            unwritten: None,
        }
    }

    fn add(&mut self, result: &Finished) {
        self.finished[result.index] = Some(result.failure.clone());
        self.done_or_failed += 1;
        self.failed += usize::from(result.failure.is_some());
        self.consumed += result.consumed;
    }

    fn finished(&self) -> usize {
        self.done_or_failed
    }

    fn failed(&self) -> usize {
        self.failed
    }

    /// The progress bar's words.
    fn status(&self) -> String {
        format!("done, {} failed, {} credits", self.failed(), self.consumed)
    }

    fn summary(&self, skipped: usize) -> String {
        let failed = self.failed();
        let done = self.finished() - failed;
        let not_started = self.finished.len() - self.finished();
        format!(
            "batch: {done} done, {failed} failed, {skipped} skipped (done before), \
             {not_started} not started; {} credits consumed",
            self.consumed
        )
    }

    /// The run's result: success when every item is done, else the failure of the first item
    /// in input order that failed or was never started.
    fn verdict(self, todo: &[&Item]) -> Result<()> {
        if let Some(err) = self.unwritten {
            return Err(err);
        }
        for (item, finished) in todo.iter().zip(&self.finished) {
            match finished {
                Some(None) => continue,
                Some(Some(failure)) => {
                    let err = Error::msg(
                        failure.kind,
                        format!(
                            "item {} (line {}) failed with exit {}; {} of {} items failed",
                            item.id,
                            item.line,
                            failure.kind.exit_code(),
                            self.failed(),
                            todo.len()
                        ),
                    );
                    return Err(match &failure.hint {
                        Some(hint) => err.with_hint(hint.clone()),
                        None => err,
                    });
                }
                // Items start in input order, so one never started follows every item that
                // failed: only a budget leaves it first.
                None => {
                    return Err(self.reached.unwrap_or_else(|| {
                        Error::msg(Kind::LocalIo, "the batch stopped before every item ran")
                    }))
                }
            }
        }
        Ok(())
    }
}
