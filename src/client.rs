//! The client: one exchange with the API, the same for a single request and a batch item.
//!
//! `ask` runs the steps around every request in one place. First the cache (`--cache`): a
//! stored answer is replayed and nothing is sent; else the request is sent (`fresh`) and its
//! answer stored. Before the send: pacing (inside the transport, before each attempt). The
//! send: the transport, with its retries. After it: the response read into the output, then
//! the delivery check (the contract of `-x` or `--expect-json`, and `--fail-on-length`), the
//! same for a live answer and a stored one (`settle`).

use std::io::Write;
use std::time::Duration;

use crate::cache::{self, Cache, Hit};
use crate::config::{Config, Delivery};
use crate::error::{Error, Kind, Result};
use crate::output::Output;
use crate::pace::{self, Pacing};
use crate::printer::Printer;
use crate::redact;
use crate::report::Report;
use crate::request::Request;
use crate::response::{self, Reading, Received};
use crate::token::Secret;
use crate::transport::{Attempts, Transport};

/// What a successful exchange left for the caller to write.
#[derive(Debug, Default)]
pub struct Answer {
    /// A whole answer's body as received; `None` after a stream.
    pub body: Option<Vec<u8>>,
    /// A stream's events as received, when the output recorded them.
    pub events: Vec<String>,
    /// What the run delivers when the output held the text: the contract's result, else the
    /// text itself.
    pub content: Option<String>,
}

pub struct Client<'a> {
    transport: Transport,
    cache: Option<Cache>,
    token: &'a Secret,
    printer: &'a Printer,
    /// A stream's longest silence (`--timeout`).
    timeout: Duration,
}

impl<'a> Client<'a> {
    /// The client of a run: its transport, paced as the configuration says.
    pub fn new(config: &Config, token: &'a Secret, printer: &'a Printer) -> Self {
        let network = &config.network;
        let pacing = Pacing {
            rate: network.pace,
            limit: network.retry.max_wait,
            state_dir: config.state_dir.as_deref(),
            store: network.store.as_ref(),
            key: pace::key(&config.origin, token),
        };
        let transport =
            Transport::new(network, config.chat.stream).paced(pace::for_run(pacing, printer));
        Client {
            transport,
            cache: Cache::for_run(config, token, printer),
            token,
            printer,
            timeout: network.timeout,
        }
    }

    /// Sends nothing more: see [`Transport::halt`].
    pub fn halt(&self) {
        self.transport.halt();
    }

    pub fn halted(&self) -> bool {
        self.transport.halted()
    }

    /// One exchange: `request` answered from the cache, or sent, its answer read into `out`
    /// and checked against `delivery`. `report` learns what each step found, for the `bnx`
    /// object of a success or of a failure alike.
    pub fn ask<W: Write>(
        &self,
        request: &Request,
        delivery: &Delivery,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<Answer> {
        let Some(cache) = &self.cache else {
            return self.fresh(request, delivery, out, report);
        };
        let Some(key) = cache.key(&report.agent, request) else {
            self.printer
                .verbose("a request that continues a conversation is not cached");
            return self.fresh(request, delivery, out, report);
        };
        let printer = self.printer;
        if let Some(hit) = cache.lookup(&key, delivery.contract, printer) {
            return self.replay(hit, request, delivery, out, report);
        }
        // Another process (or worker) sending the same request: its answer, once stored.
        let flight = cache.flight(&key, self.timeout, printer);
        if flight.waited {
            if let Some(hit) = cache.lookup(&key, delivery.contract, printer) {
                return self.replay(hit, request, delivery, out, report);
            }
        }
        out.record_up_to(cache::MAX_ANSWER);
        let answer = self.fresh(request, delivery, out, report)?;
        let received = match &answer.body {
            Some(body) => Some(Received::Body(body)),
            None => out
                .recorded_whole()
                .then_some(Received::Events(&answer.events)),
        };
        cache.store(&key, received, &report.reply, printer);
        drop(flight);
        Ok(answer)
    }

    /// The request sent, its answer read into `out` and settled.
    fn fresh<W: Write>(
        &self,
        request: &Request,
        delivery: &Delivery,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<Answer> {
        if delivery.contract.is_some() {
            out.hold();
        }
        let body = self.exchange(request, out, report)?;
        self.settle(request, delivery, out, report, body)
    }

    /// A stored answer written as the live one was, then settled: nothing is sent.
    fn replay<W: Write>(
        &self,
        hit: Hit,
        request: &Request,
        delivery: &Delivery,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<Answer> {
        self.printer.verbose(&hit.said());
        report.cached_at = Some(hit.stored_at());
        report.asks = 0;
        report.attempts = Attempts::default();
        if delivery.contract.is_some() {
            out.hold();
        }
        let (reply, replayed) = response::replay(hit.entry.received(), hit.reply(), out);
        report.reply = reply;
        replayed?;
        self.settle(request, delivery, out, report, hit.body())
    }

    /// The end of a complete answer, live or stored: the contract checked, the result
    /// delivered, `--fail-on-length`.
    fn settle<W: Write>(
        &self,
        request: &Request,
        delivery: &Delivery,
        out: &mut Output<W>,
        report: &mut Report,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let held = out.take_held();
        let content = match (delivery.contract, held) {
            (Some(contract), held) => Some(contract.check(held.as_deref().unwrap_or(""))?),
            (None, held) => held,
        };
        let has_text = report.reply.no_text.is_none();
        out.deliver(
            content.as_deref().filter(|_| delivery.contract.is_some()),
            has_text,
        )?;
        let cut = report.reply.cut(request.body.max_tokens);
        if let (Some(cut), true) = (cut, delivery.fail_on_length) {
            return Err(Error::msg(
                Kind::Unexpected,
                format!("{cut} (--fail-on-length)"),
            ));
        }
        Ok(Answer {
            body,
            events: out.take_events(),
            content,
        })
    }

    /// The send and the read: the response's facts go to `report`, the answer to `out`; a
    /// whole answer's body is returned.
    fn exchange<W: Write>(
        &self,
        request: &Request,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<Option<Vec<u8>>> {
        let (attempts, response) = self.transport.send(request, self.token, self.printer);
        report.asks += u32::from(attempts.count > 0);
        report.attempts = attempts;
        let reading = Reading {
            stream: request.streams(),
            timeout: self.timeout,
            gave_up: report.attempts.gave_up.as_deref(),
        };
        let (reply, body) = response::read(response?, reading, out);
        if let Some(body) = &reply.error_body {
            self.printer.verbose_body("error body", body);
        }
        if let (Some(used), Some(left)) = (&reply.credits_consumed, &reply.credits_remaining) {
            self.printer
                .verbose(&format!("credits consumed {used}, remaining {left}"));
        }
        report.reply = reply;
        // An id that echoes the token is not kept: it would be written into the state file.
        report.reply.conversation_id = report
            .reply
            .conversation_id
            .take()
            .filter(|id| !redact::contains(self.token, id));
        body
    }
}
