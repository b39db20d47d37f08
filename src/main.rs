//! `bnx`: one prompt in, one request, the answer out, and an exit code scripts can branch on.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use bnx::atomic::AtomicFile;
use bnx::cli::Cli;
use bnx::config::{self, Action, Config, DEFAULT_AGENT};
use bnx::error::{Error, Kind, Result};
use bnx::output::Output;
use bnx::printer::{Printer, Verbosity};
use bnx::report::{self, Report};
use bnx::request::Request;
use bnx::transport::Transport;
use bnx::{batch, exit, pace, prompt, state};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::refused_arguments(&err),
    };
    if let Some(shell) = cli.completions {
        return exit::completions(shell);
    }
    // A batch's stdout is its item lines: a failure document would break them.
    let json = cli.json && cli.batch.is_none();
    let to_file = cli.output.is_some();
    let verbosity = Verbosity::new(cli.quiet, cli.verbose);
    let printer = match cli.batch {
        Some(_) => Printer::for_batch(verbosity),
        None => Printer::new(verbosity),
    };
    let mut report = Report::new(DEFAULT_AGENT, cli.stream);
    let mut out = Output::new(BufWriter::with_capacity(
        64 * 1024,
        printer.stdout(stdout()),
    ));
    let result = run(cli, &mut report, &mut out, &printer);
    printer.stop_spinner();
    exit::finish(result, json, to_file, &report, &mut out, &printer)
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
    // An empty variable is an unset one: CI systems set a secret they do not have to "".
    let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    report.agent = config::agent(cli.agent.as_deref(), &env)?;
    let config = Config::resolve(cli, report.agent.clone(), env, io::stdin().is_terminal())?;
    if let Action::Send(token) = &config.action {
        // From here on, whatever a server echoes is shown with the token masked.
        printer.redact(token);
        out.redact(token);
    }
    if let Some(options) = &config.batch {
        let (mut stdin, mut stdout) = (io::stdin().lock(), io::stdout().lock());
        return batch::run(&config, options, printer, &mut stdin, &mut stdout);
    }
    let Some(path) = &config.delivery.file else {
        return ask(&config, report, out, printer);
    };
    // What stdout would get goes to the file, which replaces FILE only if all went well.
    let mut file = Output::to(AtomicFile::create(path)?, path.display().to_string());
    if let Action::Send(token) = &config.action {
        file.redact(token);
    }
    ask(&config, report, &mut file, printer)?;
    file.into_inner().commit()
}

/// From the configuration to the answer, written to `out`.
fn ask(
    config: &Config,
    report: &mut Report,
    out: &mut Output<impl Write>,
    printer: &Printer,
) -> Result<()> {
    out.extract(config.delivery.extract);
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
    let transport = Transport::new(&config.network).paced(pace::for_run(config, token, printer));
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
    let cut = report.reply.cut(config.chat.max_tokens);
    if let (Some(cut), true) = (&cut, config.delivery.fail_on_length) {
        return Err(Error::msg(
            Kind::Unexpected,
            format!("{cut} (--fail-on-length)"),
        ));
    }
    if config.json {
        out.document(kept.as_deref(), &report.to_json())?;
    }
    if let Some(held) = &report.reply.no_text {
        printer.notice(&format!("the answer has no text: {held}"));
    }
    if let Some(cut) = cut {
        printer.notice(&cut);
    }
    if let Some(id) = &report.reply.conversation_id {
        printer.verbose(&format!("conversation {id}"));
        state::remember(state_dir, &config.origin, &config.agent, id, printer);
    }
    Ok(())
}
