//! The pacing rule, pure: which slot a request may take given the slots already taken, so that
//! every rolling window stays under the rate. `redis.rs` holds its Lua twin, which a test keeps
//! in step with this one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::rate::Rate;

/// Milliseconds since the Unix epoch: the clock every process on the machine agrees on.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, ms)
}

/// A duration in milliseconds, saturating.
pub fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// What a store keeps for one (origin, token): the last slots taken, oldest first, and the end
/// of a pause a 429 asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    pub taken: Vec<Millis>,
    pub paused_until: Millis,
    /// When the slots were last written: a time after now means the clock was set back.
    #[serde(default)]
    pub written: Millis,
}

/// No slot or pause is further away than this: a state that says otherwise was written by a
/// clock that has since been set back, or by hand.
pub const FURTHEST: Duration = Duration::from_secs(24 * 60 * 60);

impl Slots {
    /// The slots as they can stand at `now`: forgotten when they were written after now (the
    /// clock was set back, and every time in them is that far off) or reach past [`FURTHEST`],
    /// rather than holding every request back for as long.
    pub fn as_of(self, now: Millis) -> Slots {
        let furthest = now.saturating_add(ms(FURTHEST));
        let impossible = self.written > now.saturating_add(1000)
            || self.paused_until > furthest
            || self.taken.last().is_some_and(|&last| last > furthest);
        if impossible {
            Slots::default()
        } else {
            self
        }
    }
}

/// A request's arrival at the server drifts from its slot by the connection's latency; this
/// margin keeps two requests N slots apart a little more than a window apart when they arrive.
pub fn margin(window: Duration) -> Millis {
    (ms(window) / 20).min(250)
}

/// The earliest slot at or after `now` that keeps every rolling window under `rate`, given the
/// slots already taken (in the order they were taken, which is time order). Slots are only ever
/// appended at or after the last one, so the window ending at the new slot is the only one it
/// can fill: it must start after the slot taken N places before.
pub fn next_slot(slots: &Slots, now: Millis, rate: Rate) -> Millis {
    let n = rate.requests as usize;
    let mut at = now.max(slots.paused_until);
    if let Some(&last) = slots.taken.last() {
        at = at.max(last);
    }
    if n > 0 && slots.taken.len() >= n {
        let nth_before = slots.taken[slots.taken.len() - n];
        at = at.max(nth_before.saturating_add(ms(rate.window) + margin(rate.window)));
    }
    at
}

/// Takes the slot [`next_slot`] gives, unless it is later than `now + limit`; keeps only the
/// slots the rule can still need. Returns the slot, or the wait that was refused.
pub fn reserve(
    slots: &mut Slots,
    now: Millis,
    rate: Rate,
    limit: Duration,
) -> std::result::Result<Millis, Millis> {
    let at = next_slot(slots, now, rate);
    // The margin is ours, not a wait the account asks for: with the default 30/60 and a
    // --max-retry-wait of 60 s, counting it would refuse what a patient caller accepts.
    if at - now > ms(limit).saturating_add(margin(rate.window)) {
        return Err(at - now);
    }
    slots.taken.push(at);
    trim(slots, rate);
    Ok(at)
}

/// Forgets all but the last N slots: the rule never looks further back.
fn trim(slots: &mut Slots, rate: Rate) {
    let keep = rate.requests as usize;
    if slots.taken.len() > keep {
        slots.taken.drain(..slots.taken.len() - keep);
    }
}

/// Keeps `at`, a slot taken elsewhere (through a fleet's store), among `slots`, in time order,
/// with only the slots the rule can still need: so that this machine's file, if it has to take
/// over, knows what this machine has sent.
pub fn record(slots: &mut Slots, at: Millis, rate: Rate) {
    let place = slots.taken.partition_point(|&taken| taken <= at);
    slots.taken.insert(place, at);
    trim(slots, rate);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIX_PER_3S: Rate = Rate {
        requests: 6,
        window: Duration::from_secs(3),
    };

    #[test]
    fn the_first_n_slots_are_now_then_each_waits_a_window_after_the_nth_before() {
        let mut slots = Slots::default();
        let m = margin(SIX_PER_3S.window);
        for _ in 0..6 {
            assert_eq!(
                reserve(&mut slots, 1000, SIX_PER_3S, Duration::MAX),
                Ok(1000)
            );
        }
        assert_eq!(
            reserve(&mut slots, 1000, SIX_PER_3S, Duration::MAX),
            Ok(4000 + m)
        );
        assert_eq!(
            reserve(&mut slots, 1500, SIX_PER_3S, Duration::MAX),
            Ok(4000 + m)
        );
        assert_eq!(slots.taken.len(), 6, "only the last N slots are kept");
    }

    #[test]
    fn any_sequence_of_reservations_keeps_every_window_under_the_limit() {
        let rate = Rate {
            requests: 3,
            window: Duration::from_millis(1000),
        };
        let mut slots = Slots::default();
        let mut all = Vec::new();
        let mut now = 0;
        for step in 0..200u64 {
            now += (step * 7919) % 450;
            let at = reserve(&mut slots, now, rate, Duration::MAX).unwrap();
            assert!(at >= now);
            all.push(at);
        }
        for (i, &start) in all.iter().enumerate() {
            let inside = all[i..].iter().take_while(|&&t| t < start + 1000).count();
            assert!(inside <= 3, "{inside} slots in the window from {start}");
        }
    }

    #[test]
    fn a_wait_longer_than_the_limit_is_refused_and_reserves_nothing() {
        let mut slots = Slots::default();
        for _ in 0..6 {
            reserve(&mut slots, 0, SIX_PER_3S, Duration::ZERO).unwrap();
        }
        let before = slots.clone();
        let wait = reserve(&mut slots, 0, SIX_PER_3S, Duration::from_secs(1)).unwrap_err();
        assert_eq!(wait, 3000 + margin(SIX_PER_3S.window));
        assert_eq!(slots, before);
    }

    #[test]
    fn the_margin_is_not_counted_against_the_longest_wait() {
        // The default rate and --max-retry-wait: the 31st request in a fast burst waits a
        // window plus the margin, and a caller who accepts a window's wait takes it.
        let mut slots = Slots::default();
        let limit = Duration::from_secs(60);
        for _ in 0..30 {
            reserve(&mut slots, 0, Rate::DEFAULT, limit).unwrap();
        }
        assert_eq!(
            reserve(&mut slots, 0, Rate::DEFAULT, limit),
            Ok(60_000 + margin(Rate::DEFAULT.window))
        );
    }

    #[test]
    fn slots_from_a_clock_set_back_or_too_far_ahead_are_forgotten() {
        let day = ms(FURTHEST);
        let now = 10 * day;
        let slots = |taken: Vec<Millis>, paused_until, written| Slots {
            taken,
            paused_until,
            written,
        };
        let sane = slots(vec![now - 5, now + 60_000], now + 2000, now - 5);
        assert_eq!(sane.clone().as_of(now), sane);
        for bad in [
            slots(vec![now + 7_200_000], 0, now + 7_200_000),
            slots(vec![], Millis::MAX, 0),
            slots(vec![now + day + 1], 0, now),
        ] {
            assert_eq!(bad.as_of(now), Slots::default());
        }
    }

    #[test]
    fn recorded_slots_keep_time_order_and_count_for_the_next_reservation() {
        let mut slots = Slots::default();
        for at in [1000, 3000, 2000, 1500, 2500, 500, 2800] {
            record(&mut slots, at, SIX_PER_3S);
        }
        assert_eq!(slots.taken, [1000, 1500, 2000, 2500, 2800, 3000]);
        // Six slots taken elsewhere fill the window as six taken here would.
        let m = margin(SIX_PER_3S.window);
        assert_eq!(
            reserve(&mut slots, 3000, SIX_PER_3S, Duration::MAX),
            Ok(4000 + m)
        );
    }

    #[test]
    fn a_pause_holds_every_slot_until_it_ends() {
        let mut slots = Slots {
            paused_until: 9000,
            ..Slots::default()
        };
        assert_eq!(
            reserve(&mut slots, 1000, SIX_PER_3S, Duration::MAX),
            Ok(9000)
        );
        assert_eq!(
            reserve(&mut slots, 9500, SIX_PER_3S, Duration::MAX),
            Ok(9500)
        );
    }
}
