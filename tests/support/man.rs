//! The man pages, rendered from the clap definitions with clap_mangen. Shared by the generator
//! (`cargo run --example man`) and the test that keeps the committed pages current.

use clap::CommandFactory;
use roff::{roman, Roff};

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
    let man = clap_mangen::Man::new(command);
    let mut text = Vec::new();
    let rendered = (|| {
        man.render_title(&mut text)?;
        man.render_name_section(&mut text)?;
        man.render_synopsis_section(&mut text)?;
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

/// The text after `--help`'s options as sections of their own, kept as laid out (clap_mangen
/// would run its aligned lines together). A block whose first line is a short title ending in
/// a colon (`Exit codes:`) starts a section; other blocks continue the current one.
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
                roff.control("SH", [title.to_uppercase().as_str()]);
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
