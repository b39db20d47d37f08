//! `bnx`: one prompt in, one request, the answer out, and an exit code scripts can branch on.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use bnx::cli::Cli;
use bnx::config::{self, Config, DEFAULT_AGENT};
use bnx::error::{Kind, Result};
use bnx::output::{Meta, Notices, Output};
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
    let mut notices = Notices::new(cli.quiet, cli.verbose);
    // Known before the rest of the configuration, so a failure document can name it.
    let agent = config::agent(cli.agent.clone(), &|name| std::env::var_os(name));
    let mut meta = Meta::new(agent.as_deref().unwrap_or(DEFAULT_AGENT), cli.stream);
    let mut out = Output::new(BufWriter::with_capacity(64 * 1024, io::stdout().lock()));
    let Err(err) = run(cli, &mut meta, &mut out, &mut notices) else {
        return ExitCode::SUCCESS;
    };
    notices.stop_spinner();
    if err.kind == Kind::ClosedPipe {
        return ExitCode::SUCCESS;
    }
    if json && err.kind != Kind::LocalIo {
        let _ = out.failure(&err, &meta);
    }
    notices.error(&err);
    ExitCode::from(err.kind.exit_code() as u8)
}

fn run(
    cli: Cli,
    meta: &mut Meta,
    out: &mut Output<impl Write>,
    notices: &mut Notices,
) -> Result<()> {
    let config = Config::resolve(
        cli,
        |name| std::env::var_os(name),
        io::stdin().is_terminal(),
    )?;
    meta.agent = config.agent.clone();
    let messages = prompt::messages(&config.prompt, &mut io::stdin().lock())?;
    let conversation = state::conversation_to_send(&config, notices);
    let request = Request::new(&config, messages, conversation);
    if config.dry_run {
        return out.dry_run(&request.describe());
    }
    let token = config.token.as_ref().expect("resolved unless --dry-run");
    if !config.stream {
        notices.start_spinner();
    }
    let sent = Transport::new(&config).send(&request, token, meta, notices)?;
    response::handle(sent, &config, meta, out, notices)?;
    state::remember(&config, meta.conversation_id.as_deref(), notices);
    Ok(())
}
