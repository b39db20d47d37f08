//! `--max-credits` of one batch run, and the other reasons to start no new item: a budget
//! reached (the client's `--budget` and `--min-credits` refused a request), or a failure every
//! other item would meet too.
//!
//! An answer's cost is known only once it arrives. So `--max-credits N` counts every item in
//! flight at the largest cost seen so far in this run, and starts a new item only while the
//! credits consumed plus that estimate, the new item included, stay within N; until a cost is
//! seen, one item runs alone. The overshoot is then at most what the items in flight cost
//! beyond the estimate, and `-j 8` cannot spend eight answers past the cap.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::config::Batch;
use crate::error::{Error, Kind};
use crate::report::Report;

/// `--max-credits`, what the items consumed, and the first budget reached.
pub struct Budget {
    max_credits: Option<f64>,
    /// Whether a rerun skips the items done (`-o`), for the hint.
    resumable: bool,
    state: Mutex<BudgetState>,
    /// Signalled when an item finishes or the batch stops: an item waiting to start looks again.
    changed: Condvar,
}

#[derive(Default)]
struct BudgetState {
    consumed: f64,
    /// The largest `X-Credits-Consumed` of one answer in this run.
    largest: Option<f64>,
    in_flight: usize,
    /// No new item starts: a budget is reached, or every other item would fail the same way.
    stopped: bool,
    reached: Option<Reached>,
}

/// A budget reached: the reason the items never started give.
enum Reached {
    /// `--max-credits`: its error is made when the batch ends, to give every credit consumed,
    /// the items that were in flight included.
    Max,
    /// The client refused an item before sending it: why.
    Refused(Error),
}

/// Whether a new item may start under `--max-credits`.
#[derive(Debug, PartialEq)]
enum Room {
    Go,
    /// Not until an item in flight has finished.
    Wait,
    /// Not at all: the cap is reached, or the next item could pass it with nothing in flight.
    Full,
}

/// The rule of `--max-credits max`, given the credits `consumed`, the items `in_flight` and
/// the `largest` cost seen.
fn room(max: f64, consumed: f64, in_flight: usize, largest: Option<f64>) -> Room {
    if consumed >= max {
        return Room::Full;
    }
    let fits = match largest {
        Some(cost) => consumed + (in_flight + 1) as f64 * cost <= max,
        None => in_flight == 0,
    };
    match (fits, in_flight) {
        (true, _) => Room::Go,
        (false, 0) => Room::Full,
        (false, _) => Room::Wait,
    }
}

/// An item started: counted in flight until dropped.
pub struct Started<'a>(&'a Budget);

impl Drop for Started<'_> {
    fn drop(&mut self) {
        self.0.state().in_flight -= 1;
        self.0.changed.notify_all();
    }
}

impl Budget {
    pub fn new(batch: &Batch) -> Self {
        Budget {
            max_credits: batch.max_credits,
            resumable: batch.output.is_some(),
            state: Mutex::new(BudgetState::default()),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a new item may start, and counts it in flight; `None` when none may.
    pub fn admit(&self) -> Option<Started<'_>> {
        let mut state = self.state();
        loop {
            if state.stopped {
                return None;
            }
            let room = self.max_credits.map_or(Room::Go, |max| {
                room(max, state.consumed, state.in_flight, state.largest)
            });
            match room {
                Room::Go => {
                    state.in_flight += 1;
                    return Some(Started(self));
                }
                Room::Wait => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                }
                Room::Full => {
                    state.reached.get_or_insert(Reached::Max);
                    state.stopped = true;
                    self.changed.notify_all();
                    return None;
                }
            }
        }
    }

    /// Counts what `report` consumed, and says whether the batch must stop after an item that
    /// ended in `failure`: a budget is reached, or every other item would fail the same way
    /// (77, 78, 4).
    pub fn settle(&self, failure: Option<&Error>, report: &Report) -> (f64, bool) {
        let cost = number(report.reply.credits_consumed.as_deref());
        let consumed = cost.unwrap_or(0.0);
        let mut state = self.state();
        state.consumed += consumed;
        if let Some(cost) = cost {
            state.largest = Some(state.largest.map_or(cost, |largest| largest.max(cost)));
        }
        let stop = self.stops(&mut state, failure);
        state.stopped |= stop;
        self.changed.notify_all();
        (consumed, stop)
    }

    fn stops(&self, state: &mut BudgetState, failure: Option<&Error>) -> bool {
        if state.reached.is_some() {
            return true;
        }
        if failure.is_some_and(|e| matches!(e.kind, Kind::Auth | Kind::Config | Kind::Credits)) {
            return true;
        }
        if self.max_credits.is_some_and(|max| state.consumed >= max) {
            state.reached = Some(Reached::Max);
        }
        state.reached.is_some()
    }

    /// The client refused an item before sending it (`--budget`, `--min-credits`): as with
    /// `--max-credits`, it and the items after it are not started, and `refusal` is why.
    pub fn refused(&self, refusal: Error) {
        let mut state = self.state();
        state.reached.get_or_insert(Reached::Refused(refusal));
        state.stopped = true;
        self.changed.notify_all();
    }

    /// The budget reached, if one was: the error the items never started give. Asked once
    /// every item has finished, so that it gives the credits actually consumed.
    pub fn reached(&self) -> Option<Error> {
        let mut state = self.state();
        let consumed = state.consumed;
        let largest = state.largest;
        match state.reached.take()? {
            Reached::Refused(err) => Some(err),
            Reached::Max => {
                let max = self.max_credits?;
                let mut why = format!("this run consumed {}", credits(consumed));
                if let (true, Some(cost)) = (consumed < max, largest) {
                    why.push_str(&format!(", and another item could cost {}", credits(cost)));
                }
                let hint = if self.resumable {
                    "raise --max-credits and rerun with the same -o: the items done are skipped"
                } else {
                    "raise --max-credits; with -o FILE, a rerun skips the items done"
                };
                let message = format!("--max-credits {max} reached: {why}");
                Some(Error::msg(Kind::Credits, message).with_hint(hint))
            }
        }
    }
}

/// An amount of credits in words: `1 credit`, `0 credits`, `2.5 credits`.
pub fn credits(amount: f64) -> String {
    if amount == 1.0 {
        "1 credit".into()
    } else {
        format!("{amount} credits")
    }
}

fn number(header: Option<&str>) -> Option<f64> {
    header?.trim().parse().ok().filter(|n: &f64| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_starts_at_a_cap_of_zero_or_once_the_cap_is_reached() {
        assert_eq!(room(0.0, 0.0, 0, None), Room::Full);
        assert_eq!(room(5.0, 5.0, 0, Some(1.0)), Room::Full);
        assert_eq!(room(5.0, 6.0, 2, Some(1.0)), Room::Full);
    }

    #[test]
    fn until_a_cost_is_seen_one_item_runs_alone() {
        assert_eq!(room(5.0, 0.0, 0, None), Room::Go);
        assert_eq!(room(5.0, 0.0, 1, None), Room::Wait);
        // A failure that said nothing of its cost leaves the next item alone too.
        assert_eq!(room(5.0, 0.0, 0, None), Room::Go);
    }

    #[test]
    fn items_in_flight_count_at_the_largest_cost_seen_and_the_new_one_too() {
        // -j 8 and a cap of 5 at one credit an answer: four more after the first, never more.
        assert_eq!(room(5.0, 1.0, 3, Some(1.0)), Room::Go);
        assert_eq!(room(5.0, 1.0, 4, Some(1.0)), Room::Wait);
        // Three an answer and a cap of 10: 3 + 2 x 3 fits, 3 + 3 x 3 does not.
        assert_eq!(room(10.0, 3.0, 1, Some(3.0)), Room::Go);
        assert_eq!(room(10.0, 3.0, 2, Some(3.0)), Room::Wait);
        // 9 consumed and nothing in flight: the next could pass 10, and nothing will change.
        assert_eq!(room(10.0, 9.0, 0, Some(3.0)), Room::Full);
        assert_eq!(room(10.0, 7.0, 0, Some(3.0)), Room::Go);
    }

    #[test]
    fn amounts_of_one_credit_are_singular() {
        assert_eq!(credits(1.0), "1 credit");
        assert_eq!(credits(0.0), "0 credits");
        assert_eq!(credits(12.0), "12 credits");
        assert_eq!(credits(1.5), "1.5 credits");
    }
}
