//! The check before every request, pure: whether `--budget` and `--min-credits` let it go,
//! given what the ledger says, and, when the ledger cannot say, the refusal that a limit which
//! cannot be checked calls for.

use std::path::Path;

use super::book::Standing;
use super::Trouble;
use crate::budget::{credits, Limits};
use crate::duration;
use crate::error::{Error, Kind};

/// A request the limits do not let go: exit 4, type `budget`.
#[derive(Debug)]
pub struct Refusal {
    pub error: Error,
    /// Seconds until the budget frees enough (`bnx.retry_after`), when it will.
    pub retry_after: Option<f64>,
    /// The credits consumed in the budget's period, when known.
    pub consumed: Option<f64>,
}

/// Whether `limits` let a request go, given `standing` (which holds the budget's consumption
/// when a budget is set).
pub fn verdict(limits: &Limits, standing: &Standing) -> Result<(), Refusal> {
    let consumed = standing.budget.map(|spent| spent.consumed);
    if let (Some(budget), Some(spent)) = (limits.budget, standing.budget) {
        if spent.consumed >= budget.limit {
            let hint = match spent.frees_in {
                Some(wait) => format!(
                    "enough of it frees up in {}; run again then, or raise --budget",
                    duration::approx(wait)
                ),
                None if budget.limit <= 0.0 => {
                    "--budget 0 refuses every request: raise it, or turn a budget set in the \
                     environment off with --budget off"
                        .into()
                }
                None => "raise --budget".into(),
            };
            return Err(Refusal {
                error: Error::msg(
                    Kind::Credits,
                    format!(
                        "credit budget reached: {} of {budget}",
                        credits(spent.consumed)
                    ),
                )
                .with_hint(hint),
                retry_after: spent.frees_in.map(|wait| wait.as_secs_f64()),
                consumed,
            });
        }
    }
    if let (Some(floor), Some(balance)) = (limits.floor, standing.balance) {
        if balance.credits < floor {
            return Err(Refusal {
                error: Error::msg(
                    Kind::Credits,
                    format!(
                        "{} credits remain, below --min-credits {}",
                        credits(balance.credits),
                        credits(floor)
                    ),
                )
                .with_hint("add credits to the account, or lower --min-credits"),
                retry_after: None,
                consumed,
            });
        }
    }
    Ok(())
}

/// The refusal of a request whose limits cannot be checked: a limit that silently stops
/// working is worse than none.
pub fn unchecked(limits: &Limits, trouble: &Trouble) -> Refusal {
    let what = limits.named();
    let error = match trouble {
        Trouble::Damaged { path, why } => Error::msg(
            Kind::Credits,
            format!(
                "cannot check {what}: the credit ledger {} is damaged ({why})",
                path.display()
            ),
        )
        .with_hint(removing(path)),
        Trouble::Unusable(why) => Error::msg(
            Kind::Credits,
            format!("cannot check {what}: the credit ledger cannot be used ({why})"),
        )
        .with_hint("make the state directory writable, or set BLUENEXUS_STATE_DIR to one that is"),
        Trouble::Store(why) => Error::msg(
            Kind::Credits,
            format!("cannot check the fleet's budget ({what}): {why}"),
        )
        .with_hint("the store keeps the fleet's ledger: nothing is sent while it cannot be used"),
    };
    Refusal {
        error,
        retry_after: None,
        consumed: None,
    }
}

/// What removing a damaged ledger does, for a hint.
pub fn removing(path: &Path) -> String {
    format!(
        "removing {} starts a new ledger, which forgets the credits consumed so far in the period",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use crate::ledger::book::{Balance, InBudget};
    use std::time::Duration;

    fn limits(budget: Option<(f64, u64)>, floor: Option<f64>) -> Limits {
        Limits {
            budget: budget.map(|(limit, secs)| Budget {
                limit,
                period: Duration::from_secs(secs),
            }),
            floor,
        }
    }

    fn standing(consumed: f64, frees_in: Option<u64>, balance: Option<f64>) -> Standing {
        Standing {
            consumed: vec![],
            budget: Some(InBudget {
                consumed,
                frees_in: frees_in.map(Duration::from_secs),
            }),
            balance: balance.map(|credits| Balance { credits, at: 0 }),
        }
    }

    #[test]
    fn a_budget_reached_refuses_saying_when_it_frees() {
        let day = limits(Some((500.0, 86_400)), None);
        assert!(verdict(&day, &standing(499.5, None, None)).is_ok());
        let refusal = verdict(&day, &standing(500.0, Some(3 * 3600 + 720), None)).unwrap_err();
        assert_eq!(refusal.error.kind.exit_code(), 4);
        assert_eq!(refusal.error.json_type, "budget");
        assert_eq!(
            refusal.error.line(),
            "credit budget reached: 500 of 500 per 1d"
        );
        assert_eq!(
            refusal.error.hint.as_deref(),
            Some("enough of it frees up in 3h 12m; run again then, or raise --budget")
        );
        assert_eq!(refusal.retry_after, Some(11_520.0));
        let zero = verdict(&limits(Some((0.0, 3600)), None), &standing(0.0, None, None));
        assert!(zero
            .unwrap_err()
            .error
            .hint
            .as_deref()
            .unwrap()
            .contains("--budget 0"));
    }

    #[test]
    fn a_balance_below_the_floor_refuses_saying_what_is_true_and_what_to_do() {
        let floor = limits(None, Some(4.0));
        assert!(verdict(&floor, &standing(0.0, None, Some(4.0))).is_ok());
        assert!(
            verdict(&floor, &standing(0.0, None, None)).is_ok(),
            "none seen: send"
        );
        let refusal = verdict(&floor, &standing(0.0, None, Some(3.0))).unwrap_err();
        assert_eq!(
            refusal.error.line(),
            "3 credits remain, below --min-credits 4"
        );
        assert_eq!(
            refusal.error.hint.as_deref(),
            Some("add credits to the account, or lower --min-credits")
        );
    }

    #[test]
    fn a_ledger_that_cannot_say_refuses_naming_why() {
        let both = limits(Some((5.0, 60)), Some(1.0));
        let damaged = Trouble::Damaged {
            path: "/s/credits/abc".into(),
            why: "its checksum does not match".into(),
        };
        let refusal = unchecked(&both, &damaged);
        assert_eq!(
            refusal.error.line(),
            "cannot check --budget and --min-credits: the credit ledger /s/credits/abc is \
             damaged (its checksum does not match)"
        );
        assert!(refusal
            .error
            .hint
            .as_deref()
            .unwrap()
            .contains("removing /s/credits/abc starts a new"));
        let store = unchecked(&both, &Trouble::Store("the store failed (x)".into()));
        assert!(store
            .error
            .line()
            .starts_with("cannot check the fleet's budget"));
        assert_eq!(store.error.kind.exit_code(), 4);
    }
}
