//! `bnx`: one prompt in, one request, the answer out, and an exit code scripts can branch on.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use bnx::cli::Cli;
use bnx::config::{self, Action, Config, DEFAULT_AGENT};
use bnx::error::{Kind, Result};
use bnx::output::Output;
use bnx::pace;
use bnx::printer::{Printer, Verbosity};
use bnx::report::{self, Report};
use bnx::request::Request;
use bnx::transport::Transport;
use bnx::{prompt, state};
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
    let mut out = Output::new(BufWriter::with_capacity(64 * 1024, io::stdout().lock()));
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
    let transport = Transport::new(&config.network).paced(pace::for_run(&config, token, printer));
    let network = &config.network;
    let kept = report::exchange(
        &transport,
        &request,
        token,
        network,
        config.json,
        out,
        printer,
        report,
    )?;
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
