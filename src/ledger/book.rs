//! The ledger's book, pure: the credits consumed per minute over the last 31 days and the last
//! balance seen; what it says of a period and of a budget; its bytes on disk. `redis.rs` holds
//! the Lua twin of [`Book::standing`], which a test keeps in step with this one.
//!
//! Money is the opposite of pacing: a book that forgets is the unsafe direction. So nothing
//! here forgets what a clock set back or forward would have it forget. A minute stamped after
//! now (the clock was set back) counts as now's, in every period, until it ages from now; and
//! the book's clock runs from the time it was last written by the boot clock, which no one sets
//! (`Book::clock`), so a clock set forward does not age it either.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::budget::Budget;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

const MINUTE: Millis = 60_000;

/// How far back the book keeps: the longest budget period.
pub const KEPT: Duration = Budget::LONGEST;

/// At most one entry a minute: each minute of the 31 days, and the one under way.
const MOST_MINUTES: usize = (KEPT.as_secs() / 60) as usize + 1;

/// The most one answer may say it consumed and still be counted. A larger
/// `X-Credits-Consumed` is a broken or hostile server, not a price: counted, it would refuse
/// every request of a budget for a month. Below it, sums of whole credits stay exact in an
/// `f64` (under 2^53) even at this price every minute for 31 days.
pub const MOST_CONSUMED: f64 = 1e9;

/// A balance further from zero than this is not one (`X-Credits-Remaining: 1e300`).
pub const MOST_REMAINING: f64 = 1e15;

/// The bytes of a book: a header, 12 bytes a minute, and a SHA-256 of all before it.
const MAGIC: &[u8; 8] = b"bnxledg\x01";
const HEADER: usize = 8 + 8 + 16 + 8 + 8 + 8 + 4;
const ENTRY: usize = 4 + 8;
const CHECKSUM: usize = 32;

/// The largest a book can be: 536 KB, under the 1 MiB SPEC 9 allows. A file larger than this
/// is not a book.
pub const MAX_BYTES: usize = HEADER + MOST_MINUTES * ENTRY + CHECKSUM;
const _: () = assert!(
    MAX_BYTES < 1 << 20,
    "SPEC 9: at most 1 MiB per origin and token"
);

/// The last balance seen, and when its answer arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub credits: f64,
    pub at: Millis,
}

/// A reading of the boot clock (`CLOCK_BOOTTIME`): the boot it belongs to, and the
/// milliseconds since that boot, suspended time included. Nobody sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    pub id: [u8; 16],
    pub clock: Millis,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Book {
    /// (minute since the epoch, credits consumed in it), oldest first, one entry a minute.
    pub minutes: Vec<(u32, f64)>,
    pub balance: Option<Balance>,
    /// When the book was written, by its own clock ([`Book::clock`]), and by the boot clock.
    pub written: Millis,
    pub boot: Option<Boot>,
}

/// What an answer told the ledger: `X-Credits-Consumed` and `X-Credits-Remaining`, as
/// numbers the ledger takes ([`counted`]), and how long ago the answer arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub consumed: Option<f64>,
    pub remaining: Option<f64>,
    pub age: Duration,
}

/// What the ledger is asked: the credits consumed in each of `periods`, and how a budget
/// stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub periods: Vec<Duration>,
    pub budget: Option<Budget>,
}

/// What the ledger answers to a [`Query`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// In the order of the query's periods.
    pub consumed: Vec<f64>,
    pub budget: Option<InBudget>,
    pub balance: Option<Balance>,
}

/// How a budget stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InBudget {
    /// The credits consumed in the budget's period.
    pub consumed: f64,
    /// When the budget is reached: how long until enough of the period has aged out of it for
    /// a request to go; `None` when it is not reached, or never frees (a budget of 0).
    pub frees_in: Option<Duration>,
}

/// A credits header as the ledger takes it: a number, finite, within `most` of zero (and, for
/// a consumption, not negative). `Err` says why not, for `-v`.
pub fn counted(header: &str, most: f64, negative: bool) -> Result<f64, String> {
    let value = header
        .trim()
        .parse::<f64>()
        .map_err(|_| "is not a number".to_string())?;
    if !value.is_finite() {
        return Err("is not a finite number".into());
    }
    if value.abs() > most {
        return Err(format!(
            "is not a credible number of credits (more than {most:e})"
        ));
    }
    if value < 0.0 && !negative {
        return Err("is negative".into());
    }
    Ok(value + 0.0)
}

impl Book {
    /// The book's clock: the time it was written plus the time the boot clock says has passed
    /// since, when it was written in this boot; else the wall clock `wall`. So within a boot a
    /// clock set forward does not age the book by a day and lift a budget, nor does one set
    /// back make it young; across a reboot only the wall clock is known, and [`Book::settle`]
    /// keeps what it can.
    pub fn clock(&self, wall: Millis, boot: Option<Boot>) -> Millis {
        match (self.boot, boot) {
            (Some(then), Some(now)) if then.id == now.id && now.clock >= then.clock => {
                self.written.saturating_add(now.clock - then.clock)
            }
            _ => wall,
        }
    }

    /// The book as it can stand at `now`: a minute stamped after now counts as now's, and a
    /// balance seen after now as seen now (a clock set back, across a reboot); minutes that no
    /// period can count any more are dropped.
    pub fn settle(&mut self, now: Millis) {
        let current = minute_of(now);
        let mut future = 0.0;
        self.minutes.retain(|&(minute, credits)| {
            future += if minute > current { credits } else { 0.0 };
            minute <= current
        });
        if future > 0.0 {
            self.add_to(current, future);
        }
        let oldest = first_counted(now, KEPT);
        self.minutes
            .retain(|&(minute, _)| i64::from(minute) >= oldest);
        if let Some(balance) = &mut self.balance {
            balance.at = balance.at.min(now);
        }
    }

    /// Adds what an answer told, at `now`. The balance is that of the answer that arrived
    /// last, whichever was recorded last.
    pub fn record(&mut self, entry: &Entry, now: Millis) {
        let at = now.saturating_sub(ms(entry.age));
        if let Some(credits) = entry.consumed {
            self.add_to(minute_of(at), credits);
        }
        if let Some(credits) = entry.remaining {
            if self.balance.is_none_or(|last| last.at <= at) {
                self.balance = Some(Balance { credits, at });
            }
        }
        self.settle(now);
    }

    fn add_to(&mut self, minute: u32, credits: f64) {
        match self.minutes.binary_search_by_key(&minute, |&(m, _)| m) {
            Ok(at) => self.minutes[at].1 += credits,
            Err(at) => self.minutes.insert(at, (minute, credits)),
        }
    }

    /// What the book says at `now` (a settled book) in answer to `query`.
    pub fn standing(&self, now: Millis, query: &Query) -> Standing {
        Standing {
            consumed: query
                .periods
                .iter()
                .map(|&period| self.counted(now, period).map(|(_, c)| c).sum())
                .collect(),
            budget: query.budget.map(|budget| self.in_budget(now, budget)),
            balance: self.balance,
        }
    }

    /// The minutes that count in the `period` ending at `now`: those whose end lies within it.
    fn counted(&self, now: Millis, period: Duration) -> impl Iterator<Item = &(u32, f64)> {
        let first = first_counted(now, period);
        self.minutes
            .iter()
            .filter(move |&&(minute, _)| i64::from(minute) >= first)
    }

    /// The budget's consumption, and, once it is reached, when the oldest minutes will have
    /// aged out of the period enough for the consumption to be below the limit: the end of
    /// the minute that does it, plus the period. The minute under way ends within a minute,
    /// so that is at most the period and a minute away.
    fn in_budget(&self, now: Millis, budget: Budget) -> InBudget {
        let consumed: f64 = self.counted(now, budget.period).map(|(_, c)| c).sum();
        if consumed < budget.limit || budget.limit <= 0.0 {
            return InBudget {
                consumed,
                frees_in: None,
            };
        }
        let mut left = consumed;
        let frees_in = self
            .counted(now, budget.period)
            .find_map(|&(minute, credits)| {
                left -= credits;
                let ends = (u64::from(minute) + 1) * MINUTE;
                let frees = ends.saturating_add(ms(budget.period));
                (left < budget.limit).then(|| Duration::from_millis(frees.saturating_sub(now)))
            });
        InBudget { consumed, frees_in }
    }

    /// The book's bytes: see [`MAGIC`] and the constants after it. All numbers little-endian;
    /// no balance is a NaN; no boot is sixteen zero bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER + self.minutes.len() * ENTRY + CHECKSUM);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.written.to_le_bytes());
        let boot = self.boot.unwrap_or(Boot {
            id: [0; 16],
            clock: 0,
        });
        bytes.extend_from_slice(&boot.id);
        bytes.extend_from_slice(&boot.clock.to_le_bytes());
        let balance = self.balance.unwrap_or(Balance {
            credits: f64::NAN,
            at: 0,
        });
        bytes.extend_from_slice(&balance.credits.to_le_bytes());
        bytes.extend_from_slice(&balance.at.to_le_bytes());
        let count = u32::try_from(self.minutes.len()).expect("a settled book is small");
        bytes.extend_from_slice(&count.to_le_bytes());
        for &(minute, credits) in &self.minutes {
            bytes.extend_from_slice(&minute.to_le_bytes());
            bytes.extend_from_slice(&credits.to_le_bytes());
        }
        let checksum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&checksum);
        bytes
    }

    /// A book from its bytes, or what is wrong with them. Whatever they hold, this reads no
    /// more than they are and cannot panic.
    pub fn decode(bytes: &[u8]) -> Result<Book, String> {
        if bytes.len() > MAX_BYTES {
            return Err(format!(
                "larger than a ledger can be ({} bytes)",
                bytes.len()
            ));
        }
        if bytes.len() < HEADER + CHECKSUM || !bytes.starts_with(&MAGIC[..7]) {
            return Err("not a bnx credit ledger".into());
        }
        if bytes[7] != MAGIC[7] {
            return Err("written by another version of bnx".into());
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
        if Sha256::digest(body).as_slice() != checksum {
            return Err("its checksum does not match: it was cut short or edited".into());
        }
        let mut read = Reader(&body[MAGIC.len()..]);
        let written = read.u64();
        let (id, clock) = (read.take::<16>(), read.u64());
        let (credits, at) = (read.f64(), read.u64());
        let count = read.u32() as usize;
        if read.0.len() != count * ENTRY || count > MOST_MINUTES {
            return Err(format!("its length does not match its {count} minutes"));
        }
        let minutes: Vec<(u32, f64)> = (0..count).map(|_| (read.u32(), read.f64())).collect();
        let ordered = minutes.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let sane = minutes.iter().all(|&(_, c)| c.is_finite() && c >= 0.0);
        if !ordered || !sane {
            return Err("its minutes are out of order or not numbers of credits".into());
        }
        if !(credits.is_nan() || credits.abs() <= MOST_REMAINING) {
            return Err("its balance is not a number of credits".into());
        }
        Ok(Book {
            minutes,
            balance: (!credits.is_nan()).then_some(Balance { credits, at }),
            written,
            boot: (id != [0; 16]).then_some(Boot { id, clock }),
        })
    }
}

/// Reads the fixed-size fields of a body whose length was checked first.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split at N")
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take())
    }
}

/// The minute since the epoch that `at` lies in.
fn minute_of(at: Millis) -> u32 {
    u32::try_from(at / MINUTE).unwrap_or(u32::MAX)
}

/// The first minute that counts in the `period` ending at `now`: a minute counts while its
/// end lies within the period, `(minute + 1) * 60 s > now - period`.
pub fn first_counted(now: Millis, period: Duration) -> i64 {
    let start = i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(ms(period)).unwrap_or(0);
    start.div_euclid(MINUTE as i64)
}

/// A duration in milliseconds, saturating.
pub fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;
    /// A time on a minute's boundary, well after the epoch.
    const NOW: Millis = 20_000 * DAY;

    fn budget(limit: f64, period_secs: u64) -> Budget {
        Budget {
            limit,
            period: Duration::from_secs(period_secs),
        }
    }

    fn spent(consumed: f64, age_ms: Millis) -> Entry {
        Entry {
            consumed: Some(consumed),
            remaining: None,
            age: Duration::from_millis(age_ms),
        }
    }

    fn book(entries: &[(f64, Millis)]) -> Book {
        let mut book = Book::default();
        for &(credits, age) in entries {
            book.record(&spent(credits, age), NOW);
        }
        book
    }

    fn consumed(book: &Book, now: Millis, period_secs: u64) -> f64 {
        let query = Query {
            periods: vec![Duration::from_secs(period_secs)],
            budget: None,
        };
        book.standing(now, &query).consumed[0]
    }

    #[test]
    fn answers_add_up_per_minute() {
        // NOW starts a minute: 10 s before it is the minute before, 61 s the one before that.
        let b = book(&[(3.0, 0), (2.5, 10_000), (1.0, 61_000), (4.0, 3_600_000)]);
        assert_eq!(b.minutes.len(), 4);
        assert_eq!(consumed(&b, NOW, 60), 5.5);
        assert_eq!(consumed(&b, NOW, 59 * 60), 6.5);
        assert_eq!(
            consumed(&b, NOW, 3600),
            10.5,
            "its minute ends 59 minutes ago"
        );
        assert_eq!(consumed(&b, NOW, 86_400), 10.5);
    }

    #[test]
    fn a_minute_counts_while_its_end_lies_within_the_period() {
        // Consumed in the minute [NOW - 60 s, NOW): it ends at NOW.
        let b = book(&[(7.0, 1)]);
        let hour = 3_600_000;
        assert_eq!(consumed(&b, NOW + hour - 1, 3600), 7.0);
        assert_eq!(consumed(&b, NOW + hour, 3600), 0.0);
    }

    #[test]
    fn a_reached_budget_frees_when_enough_minutes_age_out() {
        // 300 two hours ago, 200 one hour ago, 100 now: 600 of 500 per 1d.
        let b = book(&[(300.0, 7_200_000), (200.0, 3_600_000), (100.0, 0)]);
        let standing = b.standing(
            NOW,
            &Query {
                periods: vec![],
                budget: Some(budget(500.0, 86_400)),
            },
        );
        let in_budget = standing.budget.unwrap();
        assert_eq!(in_budget.consumed, 600.0);
        // The 300 ages out a day after its minute ends: 22 h and one minute from now.
        assert_eq!(
            in_budget.frees_in,
            Some(Duration::from_millis(DAY - 7_200_000 + 60_000))
        );
        let not_reached = b.in_budget(NOW, budget(601.0, 86_400));
        assert_eq!((not_reached.consumed, not_reached.frees_in), (600.0, None));
    }

    #[test]
    fn the_wait_is_at_most_the_period_and_a_minute() {
        for (age, limit) in [(0, 1.0), (59_999, 1.0), (1, 0.5)] {
            let b = book(&[(1.0, age)]);
            let wait = b
                .in_budget(NOW + 30_000, budget(limit, 60))
                .frees_in
                .unwrap();
            assert!(wait <= Duration::from_secs(120), "{wait:?}");
            assert!(wait > Duration::ZERO);
        }
    }

    #[test]
    fn a_budget_of_zero_is_reached_and_never_frees() {
        let b = Book::default();
        let standing = b.in_budget(NOW, budget(0.0, 3600));
        assert_eq!((standing.consumed, standing.frees_in), (0.0, None));
    }

    #[test]
    fn minutes_from_a_clock_set_back_count_as_now_and_are_kept() {
        // Written two hours "from now": a clock since set back, across a reboot.
        let mut b = Book::default();
        b.record(&spent(40.0, 0), NOW + 7_200_000);
        b.balance = Some(Balance {
            credits: 9.0,
            at: NOW + 7_200_000,
        });
        b.settle(NOW);
        assert_eq!(
            consumed(&b, NOW, 60),
            40.0,
            "counted in the shortest period"
        );
        assert_eq!(b.balance.unwrap().at, NOW);
        assert_eq!(b.minutes, [((NOW / MINUTE) as u32, 40.0)]);
    }

    #[test]
    fn within_a_boot_the_books_clock_is_the_boot_clocks() {
        let boot = |clock| Some(Boot { id: [7; 16], clock });
        let b = Book {
            written: NOW,
            boot: boot(5_000),
            ..Book::default()
        };
        // The wall clock set a day forward, or a day back: a minute has passed.
        assert_eq!(b.clock(NOW + DAY, boot(65_000)), NOW + 60_000);
        assert_eq!(b.clock(NOW - DAY, boot(65_000)), NOW + 60_000);
        // Another boot, or none known: the wall clock is all there is.
        let other = Some(Boot {
            id: [8; 16],
            clock: 65_000,
        });
        assert_eq!(b.clock(NOW + DAY, other), NOW + DAY);
        assert_eq!(b.clock(NOW + DAY, None), NOW + DAY);
    }

    #[test]
    fn what_no_period_can_count_is_dropped() {
        let mut b = book(&[(1.0, 0), (2.0, 20 * DAY)]);
        b.settle(NOW + 12 * DAY);
        assert_eq!(b.minutes.len(), 1);
        assert_eq!(consumed(&b, NOW + 12 * DAY, 31 * 86_400), 1.0);
    }

    #[test]
    fn the_last_balance_is_that_of_the_answer_that_arrived_last() {
        let mut b = Book::default();
        let balance = |credits, age| Entry {
            consumed: None,
            remaining: Some(credits),
            age: Duration::from_millis(age),
        };
        b.record(&balance(90.0, 1000), NOW);
        b.record(&balance(95.0, 5000), NOW);
        assert_eq!(b.balance.unwrap().credits, 90.0);
        b.record(&balance(80.0, 0), NOW);
        assert_eq!(b.balance.unwrap().credits, 80.0);
    }

    #[test]
    fn a_book_reads_back_as_written_and_a_full_one_stays_under_a_mebibyte() {
        let mut b = Book {
            balance: Some(Balance {
                credits: 12.5,
                at: NOW,
            }),
            written: NOW,
            boot: Some(Boot {
                id: [3; 16],
                clock: 42,
            }),
            ..Book::default()
        };
        for minute in 0..MOST_MINUTES as u64 {
            b.record(&spent(0.1, minute * MINUTE), NOW);
        }
        assert_eq!(b.minutes.len(), MOST_MINUTES);
        let bytes = b.encode();
        assert_eq!(bytes.len(), MAX_BYTES);
        assert_eq!(Book::decode(&bytes), Ok(b));
        assert_eq!(Book::decode(&Book::default().encode()), Ok(Book::default()));
    }

    #[test]
    fn damage_is_named_never_read_as_an_empty_book() {
        let good = book(&[(1.0, 0), (2.0, 120_000)]).encode();
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        let mut newer = good.clone();
        newer[7] = 2;
        for (bytes, why) in [
            (&good[..good.len() - 1], "checksum"),
            (&flipped[..], "checksum"),
            (&newer[..], "another version"),
            (&b""[..], "not a bnx credit ledger"),
            (&b"{\"taken\":[]}"[..], "not a bnx credit ledger"),
            (&vec![0; MAX_BYTES + 1][..], "larger than"),
        ] {
            let err = Book::decode(bytes).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn a_checksummed_book_with_impossible_contents_is_refused() {
        let reorder = |b: &mut Book| b.minutes.reverse();
        let negative = |b: &mut Book| b.minutes[0].1 = -1.0;
        let infinite = |b: &mut Book| b.minutes[0].1 = f64::INFINITY;
        for spoil in [reorder, negative, infinite] {
            let mut b = book(&[(1.0, 0), (2.0, 120_000)]);
            spoil(&mut b);
            assert!(Book::decode(&b.encode()).is_err());
        }
    }

    #[test]
    fn headers_count_only_as_credible_numbers() {
        assert_eq!(counted(" 3 ", MOST_CONSUMED, false), Ok(3.0));
        assert_eq!(counted("0.25", MOST_CONSUMED, false), Ok(0.25));
        assert_eq!(counted("-0", MOST_CONSUMED, false), Ok(0.0));
        assert_eq!(counted("-5", MOST_REMAINING, true), Ok(-5.0));
        for bad in ["lots", "", "NaN", "inf", "1e300", "1e10", "-1", "0x10"] {
            assert!(counted(bad, MOST_CONSUMED, false).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding says what is wrong or gives a book; it never panics.
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(0u8.., 0..200)) {
            let _ = Book::decode(&bytes);
        }
    }
}
