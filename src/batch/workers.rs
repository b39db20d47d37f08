//! The workers of a batch: up to `--jobs` threads take items in input order, run each through
//! the client (as a single request is run), and return its line; the caller writes the lines
//! and adds them up.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use super::credits::Budget;
use super::items::Item;
use super::line::{request_digest, Delivered, Line};
use super::tally::{Failure, Finished, Tally};
use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::mode::Mode;
use crate::output::Output;
use crate::printer::Printer;
use crate::prompt::Composer;
use crate::redact;
use crate::report::Report;
use crate::token::Secret;

pub struct Workers<'a> {
    pub config: &'a Config,
    pub composer: &'a Composer<'a>,
    pub client: &'a Client<'a>,
    pub token: &'a Secret,
    pub budget: Budget,
}

impl Workers<'_> {
    /// Runs `todo` with `jobs` workers, handing each finished item's line to `sink` as it
    /// comes, and adds up what they came to.
    pub fn run(
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
                    while !self.client.halted() {
                        // Counted in flight by the budget until the item has finished.
                        let Some(_started) = self.budget.admit() else {
                            break;
                        };
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = todo.get(index) else { break };
                        // An item halted before it was sent is never started: no line.
                        let Some(result) = self.item(index, item) else {
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
                    self.client.halt();
                }
                tally.add(&result);
                printer.progress(tally.finished() as u64, tally.status());
            }
        });
        tally.reached = self.budget.reached();
        tally
    }

    /// Runs one item; `None` when it was never sent because the batch stopped first.
    fn item(&self, index: usize, item: &Item) -> Option<Finished> {
        let config = self.config;
        let mut report = Report::new(self.composer.agent(&item.ask), config.chat.stream);
        let response = config.mode == Mode::Lines { response: true };
        let mut out = Output::new(io::sink(), config.mode);
        if response {
            out.record();
        }
        let delivery = item.delivery(&config.delivery);
        let request = self.composer.request(&item.ask);
        let digest = request
            .as_ref()
            .ok()
            .map(|request| request_digest(&config.origin, &report.agent, request));
        let answer =
            request.and_then(|request| self.client.ask(&request, &delivery, &mut out, &mut report));
        match answer {
            // Refused before anything was sent (the client's credit limits): the batch stops
            // as --max-credits stops it, the item not started.
            Err(refusal) if report.asks == 0 && refusal.kind == Kind::Credits => {
                self.budget.refused(refusal);
                self.client.halt();
                return None;
            }
            _ if report.attempts.count == 0 && self.client.halted() => return None,
            _ => {}
        }
        let delivered = answer.and_then(|answer| {
            Delivered::new(answer, delivery.contract.as_ref(), response, self.token)
        });
        let failure = delivered.as_ref().err();
        let (consumed, stop) = self.budget.settle(failure, &report);
        if stop {
            self.client.halt();
        }
        Some(Finished {
            index,
            line: self.line(item, &delivered, &report, digest),
            failure: failure.map(|e| Failure {
                kind: e.kind,
                hint: e.hint.clone(),
            }),
            consumed,
        })
    }

    /// The item's line: what it delivered or its error, and the `bnx` object, which says
    /// what request was sent (`request`, when one was composed) for a rerun to compare.
    fn line(
        &self,
        item: &Item,
        delivered: &Result<Delivered>,
        report: &Report,
        request: Option<String>,
    ) -> Vec<u8> {
        let code = delivered.as_ref().err().map_or(0, |e| e.kind.exit_code());
        let mut meta = report.to_json();
        meta["exit_code"] = code.into();
        meta["finish_reason"] = report.reply.finish_reason.clone().into();
        if let Some(request) = request {
            meta["request"] = request.into();
        }
        // What the server said of itself may echo the token; the answer is kept as received.
        redact::value(Some(self.token), &mut meta);
        let line = match delivered {
            Ok(delivered) => Line {
                id: &item.id,
                content: Some(&delivered.content),
                response: delivered.response.as_deref(),
                error: None,
                bnx: meta,
            },
            Err(err) => {
                let mut error = err.json();
                redact::value(Some(self.token), &mut error);
                Line {
                    id: &item.id,
                    content: None,
                    response: None,
                    error: Some(error),
                    bnx: meta,
                }
            }
        };
        serde_json::to_vec(&line).expect("a line serializes")
    }
}
