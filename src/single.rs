//! A single request: composed from the prompt, shown (`--dry-run`) or asked through the
//! client, then the `--json` document and the notices the answer calls for.

use std::io::{Read, Write};

use crate::client::Client;
use crate::config::{Action, Config};
use crate::error::Result;
use crate::output::Output;
use crate::printer::Printer;
use crate::prompt::{Composer, Overrides};
use crate::report::Report;
use crate::state;

/// From the configuration to the answer, written to `out`.
pub fn run(
    config: &Config,
    report: &mut Report,
    out: &mut Output<impl Write>,
    printer: &Printer,
    stdin: &mut dyn Read,
) -> Result<()> {
    let composer = Composer::new(config, stdin, false, printer)?;
    let request = composer.request(&Overrides::default())?;
    let token = match &config.action {
        Action::Send(token) => token,
        Action::DryRun { no_token } => {
            if let Some(why) = no_token {
                printer.notice(&format!("the request would not be sent: {why}"));
            }
            return out.dry_run(&request.describe(no_token.is_none()));
        }
    };
    // It runs until the first byte of the answer is written (`Printer::stdout`), or the end.
    printer.start_spinner();
    let answer =
        Client::new(config, token, printer).ask(&request, &config.delivery, out, report)?;
    out.document(answer.body.as_deref(), &report.to_json())?;
    let reply = &report.reply;
    if let Some(held) = reply.no_text.as_ref().filter(|_| out.writes_text()) {
        printer.notice(&format!("the answer has no text: {held}"));
    }
    if let Some(cut) = reply.cut(request.body.max_tokens) {
        printer.notice(&cut);
    }
    if let Some(id) = &reply.conversation_id {
        printer.verbose(&format!("conversation {id}"));
        state::remember(
            config.state_dir.as_deref(),
            &config.origin,
            &config.agent,
            id,
            printer,
        );
    }
    Ok(())
}
