//! `--batch FILE`: every line of a JSONL file as its own request, up to `--jobs` in flight
//! under the shared pacing, one JSON line per item written and flushed as it finishes. With
//! `-o FILE` the output is also the record of what is done, so a rerun resumes (`journal`).
//!
//! Each item goes through the client as a single request does (`workers`); `items` checks the
//! file before anything is sent, `line` is the output line, `credits` the caps of
//! `--max-credits` and `--min-credits`, and `tally` adds up the items and decides the exit
//! code. Memory holds the items and one answer per worker, whatever the number of items.

pub mod credits;
pub mod items;
pub mod journal;
pub mod line;
pub mod tally;
pub mod workers;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::client::Client;
use crate::config::{Action, Batch, Config};
use crate::error::{Error, Kind, Result};
use crate::printer::Printer;
use crate::prompt::{self, Composer};
use credits::Budget;
use items::Item;
use journal::Journal;
use workers::Workers;

/// Runs the batch `batch` with the options of `config`; `stdin` is read only for `--batch -`.
pub fn run(
    config: &Config,
    batch: &Batch,
    printer: &Printer,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<()> {
    let from_stdin = batch.file == Path::new("-");
    if let Some(output) = &batch.output {
        if !from_stdin && same_file(&batch.file, output) {
            return Err(Error::msg(
                Kind::Usage,
                format!("-o {} is the batch file itself", output.display()),
            )
            .with_hint("write the answers to another file"));
        }
    }
    let (text, name) = if from_stdin {
        let name = "standard input";
        (
            prompt::read_text(&mut *stdin, name, &mut { prompt::MAX_INPUT })?,
            name.to_string(),
        )
    } else {
        let text = prompt::read_file(&batch.file, "batch file", &mut { prompt::MAX_INPUT })?;
        (text, batch.file.display().to_string())
    };
    // Piped data, when the items are not what is piped, is every item's: the last part of its
    // prompt, as stdin is of a single request's.
    let mut composer = Composer::new(config, stdin, from_stdin, printer)?;
    let items = items::parse(&text, &name, composer.has_prompt())?;
    drop(text);
    preflight(&mut composer, &items, &name)?;
    let token = match &config.action {
        Action::Send(token) => token,
        Action::DryRun { no_token } => {
            return dry_run(&composer, &items, no_token.is_none(), stdout)
        }
    };
    let mut journal = batch.output.as_deref().map(Journal::open).transpose()?;
    let done_before = journal
        .as_mut()
        .map(|j| std::mem::take(&mut j.done))
        .unwrap_or_default();
    let todo = to_run(&items, &done_before, &composer, &config.origin, printer);
    drop(done_before);
    let client = Client::new(config, token, printer);
    let workers = Workers {
        config,
        composer: &composer,
        client: &client,
        token,
        budget: Budget::new(batch),
    };
    let mut sink = |line: &[u8]| -> io::Result<()> {
        match journal.as_mut() {
            Some(journal) => journal.append(line),
            None => printer.suspend(|| {
                stdout.write_all(line)?;
                stdout.write_all(b"\n")?;
                stdout.flush()
            }),
        }
    };
    printer.start_progress(todo.len() as u64);
    printer.summary_on_interrupt(items.len() - todo.len(), batch.output.is_some());
    let tally = workers.run(&todo, batch.jobs, printer, &mut sink);
    printer.finish_progress();
    printer.notice(&tally.summary(items.len() - todo.len()));
    tally.verdict(&todo)
}

/// The items to run: all but those whose last line says they were done, with the request
/// they would send now to `origin`, or with no word of their request (a line of an older
/// `bnx`). Those done before that changed since run again, said in one notice. An item whose
/// request cannot be composed now runs, and its line says why it failed. The requests are
/// composed one at a time and dropped, so memory stays that of one item.
fn to_run<'i>(
    items: &'i [Item],
    done: &HashMap<String, Option<String>>,
    composer: &Composer,
    origin: &str,
    printer: &Printer,
) -> Vec<&'i Item> {
    let same = |item: &Item, was: &str| {
        let agent = composer.agent(&item.ask);
        composer
            .request(&item.ask)
            .is_ok_and(|request| line::request_digest(origin, agent, &request) == was)
    };
    let mut changed = 0;
    let todo: Vec<&Item> = items
        .iter()
        .filter(|item| match done.get(&item.key) {
            None => true,
            Some(None) => false,
            Some(Some(was)) => {
                let again = !same(item, was);
                changed += usize::from(again);
                again
            }
        })
        .collect();
    if changed > 0 {
        let items = if changed == 1 { "item" } else { "items" };
        printer.notice(&format!(
            "batch: {changed} {items} done before changed since (prompt, files or options): \
             running them again"
        ));
    }
    todo
}

/// What can be checked of the items before anything is sent, so that a mistake on line 900
/// costs nothing: the agents they name, and that their files are there to read.
fn preflight(composer: &mut Composer, items: &[Item], name: &str) -> Result<()> {
    for item in items {
        let bad =
            |why: String| Error::msg(Kind::Input, format!("{name}, line {}: {why}", item.line));
        for path in item.ask.files.iter().flatten() {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    return Err(bad(format!("{} is a directory", path.display())))
                }
                Ok(_) => {}
                Err(e) => return Err(bad(format!("cannot read file {}: {e}", path.display()))),
            }
        }
        if let Some(agent) = &item.ask.agent {
            composer.add_agent(agent).map_err(|e| bad(e.line()))?;
        }
    }
    Ok(())
}

/// Whether two paths name one file, as the file system sees it (links and `./` included).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// `--dry-run --batch`: each item's request, one line each, nothing sent.
fn dry_run(
    composer: &Composer,
    items: &[Item],
    has_token: bool,
    stdout: &mut dyn Write,
) -> Result<()> {
    let failed = |e| Error::write(e, "standard output");
    for item in items {
        let request = composer.request(&item.ask)?;
        let line = serde_json::json!({"id": item.id, "request": request.describe(has_token)});
        writeln!(stdout, "{line}").map_err(failed)?;
    }
    stdout.flush().map_err(failed)
}
