//! How a run ends: quietly on success or a closed stdout; otherwise the error on stderr, the
//! `--json` failure document on stdout, and the exit code of the README's table. Also the runs
//! that end before the pipeline starts: clap's `--help`, `--version` and usage errors, and
//! `--completions`.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::config::DEFAULT_AGENT;
use crate::error::{Error, Kind, Result};
use crate::interrupt;
use crate::mode::Mode;
use crate::output::Output;
use crate::printer::{Printer, Verbosity};
use crate::report::Report;
use crate::usage;

/// How a run ends: quietly on success or a closed stdout; otherwise the error on stderr and,
/// with `--json`, the failure document on stdout unless stdout is what failed (with -o, a
/// failure to write is the file's: stdout can still take the document); and the exit code.
pub fn finish(
    result: Result<()>,
    mode: Mode,
    to_file: bool,
    report: &Report,
    out: &mut Output<impl Write>,
    printer: &Printer,
) -> ExitCode {
    interrupt::hold_if_interrupted();
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if err.kind == Kind::ClosedPipe {
        return ExitCode::SUCCESS;
    }
    if mode.documents() && (err.kind != Kind::LocalIo || to_file) {
        let _ = out.failure(&err, &report.to_json());
    }
    printer.error(&err);
    ExitCode::from(err.kind.exit_code() as u8)
}

/// Standard output and stderr for what ends before a run starts.
fn plain(mode: Mode) -> (Output<impl Write>, Printer) {
    let out = Output::new(BufWriter::new(io::stdout().lock()), mode);
    (out, Printer::new(Verbosity::Normal))
}

/// What clap stopped at: `--help` or `--version` (printed, and a failure to print them is
/// exit 74), or a usage error in `bnx`'s own form, with the failure document under `--json`.
pub fn refused_arguments(err: &clap::Error) -> ExitCode {
    let mode = match usage::wants_json(std::env::args_os()) {
        true => Mode::Json,
        false => Mode::Text,
    };
    let (mut out, printer) = plain(mode);
    let result = if err.use_stderr() {
        Err(usage::from_clap(err))
    } else {
        err.print().map_err(|e| Error::write(e, "standard output"))
    };
    let report = Report::new(DEFAULT_AGENT, false);
    finish(result, mode, false, &report, &mut out, &printer)
}

/// `--completions SHELL`: the script on stdout, where a failed write is exit 74 like any other.
pub fn completions(shell: Shell) -> ExitCode {
    let (mut out, printer) = plain(Mode::Text);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bnx", &mut script);
    let result = out
        .text(&String::from_utf8_lossy(&script))
        .and_then(|()| out.flush());
    let report = Report::new(DEFAULT_AGENT, false);
    finish(result, Mode::Text, false, &report, &mut out, &printer)
}
