//! `--spent`: what the credit ledger of this API and token says, with nothing sent: the credits
//! consumed in the last hour, day, 7 and 30 days, the last balance seen, and the budget if one
//! is set. The token finds the ledger (by its digest) and is never shown.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::budget::{credits, Limits};
use crate::config::{Action, Config};
use crate::error::{Error, Kind, Result};
use crate::ledger::book::{Query, Standing};
use crate::ledger::{check, Ledger, Setup, Trouble};
use crate::mode::Mode;
use crate::output::Output;
use crate::pace;
use crate::report::{budget_json, credits_json};
use crate::store::Redis;
use crate::timestamp::rfc3339;

/// The periods shown, as `--json` names them and as the text does.
const PERIODS: [(&str, &str, u64); 4] = [
    ("1h", "last hour", 3600),
    ("1d", "last day", 86_400),
    ("7d", "last 7 days", 7 * 86_400),
    ("30d", "last 30 days", 30 * 86_400),
];

pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    let Action::Send(token) = &config.action else {
        return Err(Error::msg(
            Kind::Usage,
            "--spent sends nothing: leave out --dry-run",
        ));
    };
    let store = config
        .network
        .store
        .as_ref()
        .map(|url| Arc::new(Redis::connect(url)));
    let ledger = Ledger::for_run(Setup {
        state_dir: config.state_dir.as_deref(),
        store: store.as_ref(),
        key: pace::key(&config.origin, token),
        // Only read: no limit depends on what `--spent` finds.
        limits: Limits::default(),
    });
    let query = Query {
        periods: PERIODS
            .iter()
            .map(|&(_, _, secs)| Duration::from_secs(secs))
            .collect(),
        budget: config.limits.budget,
    };
    let standing = ledger.standing(&query).map_err(unreadable)?;
    if config.mode == Mode::Json {
        out.json(&document(&config.origin, &config.limits, &standing))?;
    } else {
        out.text(&text(&config.origin, &config.limits, &standing))?;
    }
    out.flush()
}

/// `{"origin", "consumed": {"1h", "1d", "7d", "30d"}, "remaining", "remaining_at", "budget"}`.
fn document(origin: &str, limits: &Limits, standing: &Standing) -> Value {
    let consumed: Map<String, Value> = PERIODS
        .iter()
        .zip(&standing.consumed)
        .map(|(&(name, _, _), &c)| (name.to_string(), credits_json(c)))
        .collect();
    let balance = standing.balance;
    json!({
        "origin": origin,
        "consumed": consumed,
        "remaining": balance.map(|b| credits_json(b.credits)),
        "remaining_at": balance.map(|b| rfc3339(UNIX_EPOCH + Duration::from_millis(b.at))),
        "budget": limits.budget.map(|budget| {
            budget_json(&budget, standing.budget.map(|spent| spent.consumed))
        }),
    })
}

/// The same, for a person.
fn text(origin: &str, limits: &Limits, standing: &Standing) -> String {
    let mut text = format!("credits consumed for {origin}\n");
    for (&(_, name, _), &consumed) in PERIODS.iter().zip(&standing.consumed) {
        text.push_str(&format!("  {name:<14}{}\n", credits(consumed)));
    }
    text.push_str(&match standing.balance {
        Some(b) => format!(
            "last balance    {} credits, seen {}\n",
            credits(b.credits),
            rfc3339(UNIX_EPOCH + Duration::from_millis(b.at))
        ),
        None => "last balance    none seen yet\n".into(),
    });
    if let (Some(budget), Some(spent)) = (limits.budget, standing.budget) {
        text.push_str(&format!(
            "budget          {} of {budget}\n",
            credits(spent.consumed)
        ));
    }
    text
}

/// A ledger `--spent` cannot read: its own failure, since there is nothing to show. A damaged
/// book is bad input data (65); a ledger that cannot be read at all is the machine's
/// configuration (78).
fn unreadable(trouble: Trouble) -> Error {
    match trouble {
        Trouble::Damaged { path, why } => Error::msg(
            Kind::Input,
            format!("the credit ledger {} is damaged ({why})", path.display()),
        )
        .with_hint(check::removing(&path)),
        Trouble::Unusable(why) => Error::msg(
            Kind::Config,
            format!("cannot read the credit ledger ({why})"),
        ),
        Trouble::Store(why) => Error::msg(
            Kind::Unavailable,
            format!("cannot read the fleet's ledger: {why}"),
        )
        .with_json_type("network"),
    }
}
