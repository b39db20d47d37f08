//! `--max-credits` of one batch run, and the other reasons to start no new item: a budget
//! reached (the client's `--budget` and `--min-credits` refused a request), or a failure every
//! other item would meet too.

use std::sync::{Mutex, MutexGuard};

use crate::config::Batch;
use crate::error::{Error, Kind};
use crate::report::Report;

/// `--max-credits`, and the first budget reached.
pub struct Budget {
    max_credits: Option<f64>,
    state: Mutex<BudgetState>,
}

#[derive(Default)]
pub struct BudgetState {
    pub consumed: f64,
    /// A budget reached: the reason the items never started give.
    pub reached: Option<Error>,
}

impl Budget {
    pub fn new(batch: &Batch) -> Self {
        Budget {
            max_credits: batch.max_credits,
            state: Mutex::new(BudgetState::default()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts what `report` consumed, and says whether the batch must stop after an item that
    /// ended in `failure`: a budget is reached, or every other item would fail the same way
    /// (77, 78, 4).
    pub fn settle(&self, failure: Option<&Error>, report: &Report) -> (f64, bool) {
        let consumed = number(report.reply.credits_consumed.as_deref()).unwrap_or(0.0);
        let mut state = self.state();
        state.consumed += consumed;
        if state.reached.is_some() {
            return (consumed, true);
        }
        if failure.is_some_and(|e| matches!(e.kind, Kind::Auth | Kind::Config | Kind::Credits)) {
            return (consumed, true);
        }
        let credits_hint = "add credits, or raise the budget, then rerun: items done are skipped";
        state.reached = match self.max_credits {
            Some(max) if state.consumed >= max => Some(
                Error::msg(
                    Kind::Credits,
                    format!(
                        "--max-credits {max} reached: this run consumed {}",
                        state.consumed
                    ),
                )
                .with_hint(credits_hint),
            ),
            _ => None,
        };
        (consumed, state.reached.is_some())
    }

    /// The client refused an item before sending it (`--budget`, `--min-credits`): as with
    /// `--max-credits`, it and the items after it are not started, and `refusal` is why.
    pub fn refused(&self, refusal: Error) {
        self.state().reached.get_or_insert(refusal);
    }
}

fn number(header: Option<&str>) -> Option<f64> {
    header?.trim().parse().ok()
}
