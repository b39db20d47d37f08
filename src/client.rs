//! The client: one exchange with the API, the same for a single request and a batch item.
//!
//! `ask` runs the steps around every request in one place. Before the send: the credit
//! limits (`ledger`), then pacing (inside the transport, before each attempt). The send: the
//! transport, with its retries. After it: the response read into the output, the ledger told
//! what it cost, then the delivery check (the contract of `-x`, `--expect-json` or
//! `--schema`, with the re-asks of `--reask`, and `--fail-on-length`). Every request, a
//! re-ask's too, goes through `exchange`: the one place that checks the limits, sends and
//! records.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Delivery};
use crate::contract::Contract;
use crate::error::{Error, Kind, Result};
use crate::ledger::{self, Ledger, Setup};
use crate::output::Output;
use crate::pace::{self, Pacing};
use crate::printer::Printer;
use crate::reask;
use crate::redact;
use crate::report::Report;
use crate::request::Request;
use crate::response::{self, Reading};
use crate::store::Redis;
use crate::token::Secret;
use crate::transport::Transport;

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
    token: &'a Secret,
    printer: &'a Printer,
    /// A stream's longest silence (`--timeout`).
    timeout: Duration,
    ledger: Ledger,
}

impl<'a> Client<'a> {
    /// The client of a run: its transport, paced as the configuration says, and its ledger.
    /// A fleet's store is one connection, shared by both.
    pub fn new(config: &Config, token: &'a Secret, printer: &'a Printer) -> Self {
        let network = &config.network;
        let key = pace::key(&config.origin, token);
        let store = network
            .store
            .as_ref()
            .map(|url| Arc::new(Redis::connect(url)));
        let pacing = Pacing {
            rate: network.pace,
            limit: network.retry.max_wait,
            state_dir: config.state_dir.as_deref(),
            store: store.as_ref(),
            key: key.clone(),
        };
        let transport =
            Transport::new(network, config.chat.stream).paced(pace::for_run(pacing, printer));
        let ledger = Ledger::for_run(Setup {
            state_dir: config.state_dir.as_deref(),
            store: store.as_ref(),
            key,
            limits: config.limits,
        });
        Client {
            transport,
            token,
            printer,
            timeout: network.timeout,
            ledger,
        }
    }

    /// Sends nothing more: see [`Transport::halt`].
    pub fn halt(&self) {
        self.transport.halt();
    }

    pub fn halted(&self) -> bool {
        self.transport.halted()
    }

    /// One exchange: `request` sent, its answer read into `out` and checked against
    /// `delivery`, asking again as `--reask` allows. `report` learns what each step found, for
    /// the `bnx` object of a success or of a failure alike.
    pub fn ask<W: Write>(
        &self,
        request: &Request,
        delivery: &Delivery,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<Answer> {
        let (body, content) = match &delivery.contract {
            Some(contract) => {
                out.hold();
                let (body, content) =
                    self.until_met(request, contract, delivery.reask, out, report)?;
                (body, Some(content))
            }
            None => (self.exchange(request, out, report)?, out.take_held()),
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

    /// Asks until an answer meets `contract`, at most `reask` times after the first: each
    /// re-ask a whole exchange of its own (paced, retried, counted), continuing this one. The
    /// last answer's body and what the contract made of it; a failure ends the asking.
    fn until_met<W: Write>(
        &self,
        request: &Request,
        contract: &Contract,
        reask: u8,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<(Option<Vec<u8>>, String)> {
        let mut asking = Cow::Borrowed(request);
        let mut asked = 0;
        loop {
            let body = self.exchange(&asking, out, report);
            report.add_earlier_credits();
            let body = body?;
            let answer = out.take_held().unwrap_or_default();
            let broken = match contract.check(&answer) {
                Ok(content) => return Ok((body, content)),
                Err(broken) => broken,
            };
            if asked == reask {
                return Err(broken.error(contract));
            }
            asked += 1;
            self.printer.notice(&format!(
                "{}; asking again ({asked} of {reask})",
                broken.what()
            ));
            let conversation = report.reply.conversation_id.clone();
            let conversation = conversation.or_else(|| asking.body.conversation_id.clone());
            asking = Cow::Owned(reask::request(
                &asking,
                &answer,
                conversation,
                contract,
                &broken,
            ));
            report.next_ask(asking.streams());
            // The answer written is the last one: an earlier answer's events are not its.
            out.take_events();
        }
    }

    /// The send and the read: the response's facts go to `report`, the answer to `out`; a
    /// whole answer's body is returned. Every request comes here, each re-ask included, so
    /// each is checked against the credit limits before it is sent and counted in the ledger
    /// after. (An answer from the cache never comes here: it costs nothing, and is served
    /// even past the budget.)
    fn exchange<W: Write>(
        &self,
        request: &Request,
        out: &mut Output<W>,
        report: &mut Report,
    ) -> Result<Option<Vec<u8>>> {
        let limits = self.ledger.limits();
        match self.ledger.check() {
            Ok(spent) => report.budget = limits.budget.map(|b| (b, spent.map(|s| s.consumed))),
            Err(refused) => {
                report.attempts.retry_after = refused.retry_after;
                report.budget = limits.budget.map(|b| (b, refused.consumed));
                return Err(refused.error);
            }
        }
        let (attempts, response) = self.transport.send(request, self.token, self.printer);
        let arrived = Instant::now();
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
        let spent = self.ledger.record(&reply, arrived.elapsed(), self.printer);
        if let Some(line) = ledger::budget_line(&reply, limits, spent.as_ref()) {
            self.printer.verbose(&line);
        }
        if let Some(budget) = limits.budget {
            report.budget = Some((budget, spent.map(|s| s.consumed)));
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
