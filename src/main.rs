//! `bnx`: one prompt in, one request, the answer out, and an exit code scripts can branch on.

use std::io::{self, BufWriter, IsTerminal, Write};
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
use bnx::{batch, pace, prompt, state};
use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        clap_complete::generate(shell, &mut Cli::command(), "bnx", &mut io::stdout());
        return ExitCode::SUCCESS;
    }
    // A batch's stdout is its item lines: a failure document would break them.
    let json = cli.json && cli.batch.is_none();
    // With -o, a failure to write is the file's: stdout can still take the failure document.
    let to_file = cli.output.is_some();
    let verbosity = Verbosity::new(cli.quiet, cli.verbose);
    let printer = match cli.batch {
        Some(_) => Printer::for_batch(verbosity),
        None => Printer::new(verbosity),
    };
    let mut report = Report::new(DEFAULT_AGENT, cli.stream);
    let mut out = Output::new(BufWriter::with_capacity(
        64 * 1024,
        printer.stdout(io::stdout().lock()),
    ));
    let result = run(cli, &mut report, &mut out, &printer);
    printer.stop_spinner();
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if err.kind == Kind::ClosedPipe {
        return ExitCode::SUCCESS;
    }
    if json && (err.kind != Kind::LocalIo || to_file) {
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
    if let Some(options) = &config.batch {
        let (mut stdin, mut stdout) = (io::stdin().lock(), io::stdout().lock());
        return batch::run(&config, options, printer, &mut stdin, &mut stdout);
    }
    let Some(path) = &config.delivery.file else {
        return ask(&config, report, out, printer);
    };
    // What stdout would get goes to the file, which replaces FILE only if all went well.
    let mut file = Output::to(AtomicFile::create(path)?, path.display().to_string());
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
    let conversation =
        state::conversation_to_send(&config.chat.conversation, state_dir, &config.agent, printer);
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
    if let Some(cut) = cut {
        printer.notice(&cut);
    }
    if let Some(id) = &report.reply.conversation_id {
        printer.verbose(&format!("conversation {id}"));
        state::remember(state_dir, &config.agent, id, printer);
    }
    Ok(())
}
