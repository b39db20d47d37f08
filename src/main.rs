//! `bnx`: one prompt in, one request, the answer out, and an exit code scripts can branch on.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use bnx::cli::Cli;
use bnx::config::{self, Action, Config, DEFAULT_AGENT};
use bnx::error::{Kind, Result};
use bnx::output::Output;
use bnx::printer::{Printer, Verbosity};
use bnx::report::Report;
use bnx::request::Request;
use bnx::transport::Transport;
use bnx::{prompt, response, state};
use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        clap_complete::generate(shell, &mut Cli::command(), "bnx", &mut io::stdout());
        return ExitCode::SUCCESS;
    }
    let json = cli.json;
    let printer = Printer::new(Verbosity::new(cli.quiet, cli.verbose));
    let mut report = Report::new(DEFAULT_AGENT, cli.stream);
    let mut out = Output::new(BufWriter::with_capacity(64 * 1024, stdout()));
    let result = run(cli, &mut report, &mut out, &printer);
    printer.stop_spinner();
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if err.kind == Kind::ClosedPipe {
        return ExitCode::SUCCESS;
    }
    if json && err.kind != Kind::LocalIo {
        let _ = out.failure(&err, &report.to_json());
    }
    printer.error(&err);
    ExitCode::from(err.kind.exit_code() as u8)
}

/// Standard output without std's line buffering under our own. `Output` is flushed once per
/// network read; std's `LineWriter` searched each flush for its last newline and wrote the
/// rest in a second `write` (3% of a fast stream's time, in `memrchr`). A stdout that is
/// closed cannot be duplicated: std's own handle treats it as a sink, as before.
fn stdout() -> Box<dyn Write> {
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(File::from(fd)),
        Err(_) => Box::new(io::stdout()),
    }
}

/// The pipeline. The report is put together here alone, from what each stage returns.
fn run(
    cli: Cli,
    report: &mut Report,
    out: &mut Output<impl Write>,
    printer: &Printer,
) -> Result<()> {
    let env = |name: &str| std::env::var_os(name);
    report.agent = config::agent(cli.agent.as_deref(), &env)?;
    let config = Config::resolve(cli, report.agent.clone(), env, io::stdin().is_terminal())?;
    let messages = prompt::messages(&config.prompt, &mut io::stdin().lock())?;
    let state_dir = config.state_dir.as_deref();
    let conversation =
        state::conversation_to_send(&config.chat.conversation, state_dir, &config.agent, printer);
    let request = Request::new(&config.url, &config.chat, messages, conversation);
    let Action::Send(token) = &config.action else {
        return out.dry_run(&request.describe());
    };
    if !config.chat.stream {
        printer.start_spinner();
    }
    let (attempts, response) = Transport::new(&config.network).send(&request, token, printer);
    printer.stop_spinner();
    report.attempts = attempts;
    let gave_up = report.attempts.gave_up.as_deref();
    let (reply, kept) = response::read(response?, gave_up, config.json, &config.network, out);
    if let (Some(used), Some(left)) = (&reply.credits_consumed, &reply.credits_remaining) {
        printer.verbose(&format!("credits consumed {used}, remaining {left}"));
    }
    report.reply = reply;
    let kept = kept?;
    if config.json {
        out.document(kept.as_deref(), &report.to_json())?;
    }
    if report.reply.finish_reason.as_deref() == Some("length") {
        printer.notice(match config.chat.max_tokens {
            Some(_) => "the answer was cut at --max-tokens",
            None => "the answer was cut at the agent's token limit",
        });
    }
    if let Some(id) = &report.reply.conversation_id {
        printer.verbose(&format!("conversation {id}"));
        state::remember(state_dir, &config.agent, id, printer);
    }
    Ok(())
}
