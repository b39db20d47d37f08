//! What the items of a batch run came to: the counts of the progress bar and the summary, and
//! the run's exit code.

use super::credits::credits;
use super::items::Item;
use crate::error::{Error, Kind, Result};

/// What an item came to.
pub struct Finished {
    /// Its place in the list of items to run.
    pub index: usize,
    pub line: Vec<u8>,
    /// `None` when it succeeded.
    pub failure: Option<Failure>,
    pub consumed: f64,
}

/// How an item failed: enough to say so again when the batch ends.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub hint: Option<String>,
}

/// What the items of this run came to.
pub struct Tally {
    /// Per item to run: `None` until it finished, then its failure if any.
    finished: Vec<Option<Option<Failure>>>,
    /// How many have finished, and failed: counted as they come, for the progress bar.
    done_or_failed: usize,
    failed: usize,
    consumed: f64,
    /// A budget reached, the reason items were never started.
    pub reached: Option<Error>,
    /// The first failure to write a line.
    pub unwritten: Option<Error>,
}

impl Tally {
    pub fn new(items: usize) -> Self {
        Tally {
            finished: vec![None; items],
            done_or_failed: 0,
            failed: 0,
            consumed: 0.0,
            reached: None,
            unwritten: None,
        }
    }

    pub fn add(&mut self, result: &Finished) {
        self.finished[result.index] = Some(result.failure.clone());
        self.done_or_failed += 1;
        self.failed += usize::from(result.failure.is_some());
        self.consumed += result.consumed;
    }

    pub fn finished(&self) -> usize {
        self.done_or_failed
    }

    fn failed(&self) -> usize {
        self.failed
    }

    /// The progress bar's words.
    pub fn status(&self) -> String {
        format!("done, {} failed, {}", self.failed(), credits(self.consumed))
    }

    pub fn summary(&self, skipped: usize) -> String {
        let failed = self.failed();
        let done = self.finished() - failed;
        let not_started = self.finished.len() - self.finished();
        format!(
            "batch: {done} done, {failed} failed, {skipped} skipped (done before), \
             {not_started} not started; {} consumed",
            credits(self.consumed)
        )
    }

    /// The run's result: success when every item is done, else the failure of the first item
    /// in input order that failed or was never started.
    pub fn verdict(self, todo: &[&Item]) -> Result<()> {
        if let Some(err) = self.unwritten {
            return Err(err);
        }
        for (item, finished) in todo.iter().zip(&self.finished) {
            match finished {
                Some(None) => continue,
                Some(Some(failure)) => {
                    let err = Error::msg(
                        failure.kind,
                        format!(
                            "item {} (line {}) failed with exit {}; {} of {} items failed",
                            item.id,
                            item.line,
                            failure.kind.exit_code(),
                            self.failed(),
                            todo.len()
                        ),
                    );
                    return Err(match &failure.hint {
                        Some(hint) => err.with_hint(hint.clone()),
                        None => err,
                    });
                }
                // Items start in input order, so one never started follows every item that
                // failed: only a budget leaves it first.
                None => {
                    return Err(self.reached.unwrap_or_else(|| {
                        Error::msg(Kind::LocalIo, "the batch stopped before every item ran")
                    }))
                }
            }
        }
        Ok(())
    }
}
