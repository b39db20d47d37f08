//! `bnx`: one prompt in, one request, the answer out, and an exit code scripts can branch on.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use bnx::cli::Cli;
use bnx::config::{self, Action, Config, DEFAULT_AGENT};
use bnx::error::{Error, Kind, Result};
use bnx::output::Output;
use bnx::pace;
use bnx::printer::{Printer, Verbosity};
use bnx::report::{self, Report};
use bnx::request::Request;
use bnx::transport::Transport;
use bnx::{batch, prompt, state, usage};
use clap::{CommandFactory, Parser};
use clap_complete::Shell;

fn main() -> ExitCode {
    let mut out = Output::new(BufWriter::with_capacity(64 * 1024, io::stdout().lock()));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return refused_arguments(&err, &mut out),
    };
    if let Some(shell) = cli.completions {
        let printer = Printer::new(Verbosity::Normal);
        let report = Report::new(DEFAULT_AGENT, false);
        return finish(
            completions(shell, &mut out),
            false,
            &report,
            &mut out,
            &printer,
        );
    }
    // A batch's stdout is its item lines: a failure document would break them.
    let json = cli.json && cli.batch.is_none();
    let verbosity = Verbosity::new(cli.quiet, cli.verbose);
    let printer = match cli.batch {
        Some(_) => Printer::for_batch(verbosity),
        None => Printer::new(verbosity),
    };
    let mut report = Report::new(DEFAULT_AGENT, cli.stream);
    let result = run(cli, &mut report, &mut out, &printer);
    printer.stop_spinner();
    finish(result, json, &report, &mut out, &printer)
}

/// How a run ends: quietly on success or a closed stdout; otherwise the error on stderr (and
/// with `--json` the failure document on stdout), and the exit code of its kind.
fn finish(
    result: Result<()>,
    json: bool,
    report: &Report,
    out: &mut Output<impl Write>,
    printer: &Printer,
) -> ExitCode {
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

/// What clap stopped at: `--help` or `--version` (printed, and a failure to print them is
/// exit 74), or a usage error in `bnx`'s own form, with the failure document under `--json`.
fn refused_arguments(err: &clap::Error, out: &mut Output<impl Write>) -> ExitCode {
    let printer = Printer::new(Verbosity::Normal);
    let result = if err.use_stderr() {
        Err(usage::from_clap(err))
    } else {
        err.print().map_err(Error::output)
    };
    let json = usage::wants_json(std::env::args_os());
    finish(
        result,
        json,
        &Report::new(DEFAULT_AGENT, false),
        out,
        &printer,
    )
}

/// `--completions SHELL`: the script on stdout, where a failed write is exit 74 like any other.
fn completions(shell: Shell, out: &mut Output<impl Write>) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bnx", &mut script);
    out.text(&String::from_utf8_lossy(&script))?;
    out.flush()
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
    if let Action::Send(token) = &config.action {
        // From here on, whatever a server echoes is shown with the token masked.
        printer.redact(token);
        out.redact(token);
    }
    if let Some(options) = &config.batch {
        let mut stdout = io::stdout().lock();
        return batch::run(
            &config,
            options,
            printer,
            &mut io::stdin().lock(),
            &mut stdout,
        );
    }
    let messages = prompt::messages(&config.prompt, &mut io::stdin().lock())?;
    let state_dir = config.state_dir.as_deref();
    let conversation = state::conversation_to_send(
        &config.chat.conversation,
        state_dir,
        &config.origin,
        &config.agent,
        printer,
    );
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
    if let Some(held) = &report.reply.no_text {
        printer.notice(&format!("the answer has no text: {held}"));
    }
    if report.reply.finish_reason.as_deref() == Some("length") {
        printer.notice(match config.chat.max_tokens {
            Some(_) => "the answer was cut at --max-tokens",
            None => "the answer was cut at the agent's token limit",
        });
    }
    if let Some(id) = &report.reply.conversation_id {
        printer.verbose(&format!("conversation {id}"));
        state::remember(state_dir, &config.origin, &config.agent, id, printer);
    }
    Ok(())
}
