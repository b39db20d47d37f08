//! The man pages, rendered from the clap definitions with clap_mangen. Shared by the generator
//! (`cargo run --example man`) and the test that keeps the committed pages current.

use clap::{ArgAction, CommandFactory};
use roff::{bold, italic, roman, Inline, Roff};

/// Each page's file name under `man/`, and its text.
pub fn pages() -> [(&'static str, Vec<u8>); 2] {
    [
        ("bnx.1", page(bnx::cli::Cli::command())),
        ("bnx-mock.1", page(bnx::mock::cli::MockCli::command())),
    ]
}

fn page(command: clap::Command) -> Vec<u8> {
    // The plain version: one naming the commit would make the page stale at every commit.
    let command = command
        .version(env!("CARGO_PKG_VERSION"))
        .long_version(None::<&str>);
    let after_help = command.get_after_help().map(|text| text.to_string());
    let synopsis = synopsis(command.clone());
    let man = clap_mangen::Man::new(command);
    let mut text = Vec::new();
    let rendered = (|| {
        man.render_title(&mut text)?;
        man.render_name_section(&mut text)?;
        synopsis.to_writer(&mut text)?;
        man.render_description_section(&mut text)?;
        man.render_options_section(&mut text)?;
        if let Some(after_help) = &after_help {
            sections(after_help).to_writer(&mut text)?;
        }
        man.render_version_section(&mut text)
    })();
    rendered.expect("rendering into memory cannot fail");
    text
}

/// `bnx [-a|--agent ID] [-s|--stream] ... [PROMPT]...`: every option with the value it takes
/// (clap_mangen's synopsis leaves the values out), `...` after one that may be repeated.
fn synopsis(mut command: clap::Command) -> Roff {
    command.build();
    let mut line = vec![bold(command.get_name()), roman(" ")];
    let shown = command.get_arguments().filter(|arg| !arg.is_hide_set());
    let (positionals, options): (Vec<_>, Vec<_>) = shown.partition(|arg| arg.is_positional());
    for arg in options {
        let names = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => {
                vec![
                    bold(format!("-{short}")),
                    roman("|"),
                    bold(format!("--{long}")),
                ]
            }
            (Some(short), None) => vec![bold(format!("-{short}"))],
            (None, Some(long)) => vec![bold(format!("--{long}"))],
            (None, None) => continue,
        };
        line.push(roman("["));
        line.extend(names);
        if arg.get_action().takes_values() {
            line.extend(value(arg, " "));
        }
        line.push(roman("]"));
        line.extend(repeated(arg));
        line.push(roman(" "));
    }
    // As `--help` has them: `[PROMPT]...`, and `[-- COMMAND...]` for what follows a `--`.
    for arg in positionals {
        line.push(roman(if arg.is_last_set() { "[-- " } else { "[" }));
        line.extend(value(arg, ""));
        if arg.is_last_set() {
            line.extend(repeated(arg));
            line.push(roman("]"));
        } else {
            line.push(roman("]"));
            line.extend(repeated(arg));
        }
        line.push(roman(" "));
    }
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    roff.text(line);
    roff
}

/// What `arg` takes, in italics, after `space`.
fn value(arg: &clap::Arg, space: &str) -> Vec<Inline> {
    let names = arg
        .get_value_names()
        .map(|names| names.join(" "))
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    vec![roman(space), italic(names)]
}

/// `...` when `arg` may be given more than once, or take more than one value.
fn repeated(arg: &clap::Arg) -> Option<Inline> {
    let many = matches!(arg.get_action(), ArgAction::Append | ArgAction::Count)
        || arg.get_num_args().is_some_and(|n| n.max_values() > 1);
    many.then(|| roman("..."))
}

/// The text after `--help`'s options as sections of their own, kept as laid out (clap_mangen
/// would run its aligned lines together). A block whose first line is a short title ending in
/// a colon (`Files:`) starts a section; other blocks continue the current one. `Exit codes:`
/// is the section man pages call EXIT STATUS.
fn sections(after_help: &str) -> Roff {
    let mut roff = Roff::new();
    let mut in_section = false;
    for block in after_help.split("\n\n") {
        let (first, rest) = block.split_once('\n').unwrap_or((block, ""));
        let title = first
            .strip_suffix(':')
            .filter(|title| title.split(' ').count() <= 3);
        let lines = match title {
            Some(title) => {
                let title = match title {
                    "Exit codes" => "EXIT STATUS".to_string(),
                    title => title.to_uppercase(),
                };
                roff.control("SH", [title.as_str()]);
                rest
            }
            None if in_section => {
                roff.control("PP", []);
                block
            }
            None => {
                roff.control("SH", ["DETAILS"]);
                block
            }
        };
        in_section = true;
        roff.control("nf", []);
        for line in lines.lines() {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    roff
}
