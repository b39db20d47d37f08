//! What the mock remembers between requests: tokens with their scopes and credit balances, the
//! rolling rate-limit window of each token, and conversations.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

pub const DEFAULT_TOKEN: &str = "bnx-mock-token";
const CHAT_SCOPES: [&str; 2] = ["agents-all", "agents-use"];

/// `--token TOKEN[:SCOPE,...]`; without scopes a token has `agents-all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub token: String,
    pub scopes: Vec<String>,
}

impl FromStr for TokenSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (token, scopes) = match spec.split_once(':') {
            Some((token, scopes)) => (
                token,
                scopes
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            None => (spec, vec!["agents-all".to_string()]),
        };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is visible ASCII with no spaces".into());
        }
        Ok(TokenSpec {
            token: token.to_string(),
            scopes,
        })
    }
}

/// `--rate-limit N[/SECS]`: at most `requests` per rolling `window` per token; 0 for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: usize,
    pub window: Duration,
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (requests, secs) = spec.split_once('/').unwrap_or((spec, "60"));
        let requests = requests
            .parse()
            .map_err(|_| format!("{requests:?} is not a whole number of requests"))?;
        match secs.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(RateLimit {
                requests,
                window: Duration::from_secs(secs),
            }),
            _ => Err(format!("{secs:?} is not a whole number of seconds above 0")),
        }
    }
}

/// As `--rate-limit` and `bnx`'s `BLUENEXUS_RATE_LIMIT` take it.
impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.requests == 0 {
            return f.write_str("0");
        }
        write!(f, "{}/{}", self.requests, self.window.as_secs())
    }
}

#[derive(Debug)]
struct Account {
    scopes: Vec<String>,
    credits: u64,
    recent: VecDeque<Instant>,
}

#[derive(Debug)]
struct Conversation {
    token: String,
    agent: String,
    turns: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    UnknownToken,
    MissingScope,
    /// Over the rate limit: a slot frees in this many whole seconds.
    RateLimited(u64),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Charge {
    /// The answer may be sent.
    Granted(Granted),
    UnknownConversation,
    NoCredits,
}

/// What a paid answer tells its client: its conversation id, credits consumed and remaining.
#[derive(Debug, PartialEq, Eq)]
pub struct Granted {
    pub conversation: String,
    pub consumed: u64,
    pub remaining: u64,
}

/// The mock's price of an answer: 1 credit, and 1 more per 1000 completion tokens.
pub fn price(completion_tokens: u64) -> u64 {
    1 + completion_tokens / 1000
}

#[derive(Debug)]
pub struct Accounts {
    accounts: HashMap<String, Account>,
    conversations: HashMap<String, Conversation>,
    next_conversation: u64,
    rate_limit: RateLimit,
}

impl Accounts {
    pub fn new(tokens: &[TokenSpec], credits: u64, rate_limit: RateLimit) -> Self {
        let accounts = tokens
            .iter()
            .map(|spec| {
                let account = Account {
                    scopes: spec.scopes.clone(),
                    credits,
                    recent: VecDeque::new(),
                };
                (spec.token.clone(), account)
            })
            .collect();
        Accounts {
            accounts,
            conversations: HashMap::new(),
            next_conversation: 1,
            rate_limit,
        }
    }

    /// Checks the token and its scopes, then counts the request against its rate limit.
    pub fn admit(&mut self, token: &str, now: Instant) -> Admission {
        let Some(account) = self.accounts.get_mut(token) else {
            return Admission::UnknownToken;
        };
        if !account
            .scopes
            .iter()
            .any(|s| CHAT_SCOPES.contains(&s.as_str()))
        {
            return Admission::MissingScope;
        }
        let RateLimit { requests, window } = self.rate_limit;
        if requests == 0 {
            return Admission::Admitted;
        }
        while account
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            account.recent.pop_front();
        }
        if account.recent.len() >= requests {
            let oldest = *account.recent.front().expect("the window is full");
            let frees_in = window.saturating_sub(now.duration_since(oldest));
            return Admission::RateLimited(frees_in.as_secs_f64().ceil().max(1.0) as u64);
        }
        account.recent.push_back(now);
        Admission::Admitted
    }

    /// Opens or continues a conversation and charges `cost` for the answer. Call it under the
    /// same lock as `next_turn`, whose turn the answer shows.
    pub fn charge(
        &mut self,
        token: &str,
        agent: &str,
        conversation: Option<&str>,
        cost: u64,
    ) -> Charge {
        let id = match conversation {
            Some(id) => match self.conversations.get(id) {
                Some(c) if c.token == token && c.agent == agent => id.to_string(),
                _ => return Charge::UnknownConversation,
            },
            None => format!("conv-{:06}", self.next_conversation),
        };
        let account = self
            .accounts
            .get_mut(token)
            .expect("admitted before charged");
        if account.credits < cost {
            return Charge::NoCredits;
        }
        account.credits -= cost;
        let remaining = account.credits;
        if conversation.is_none() {
            self.next_conversation += 1;
        }
        let entry = self
            .conversations
            .entry(id.clone())
            .or_insert_with(|| Conversation {
                token: token.to_string(),
                agent: agent.to_string(),
                turns: 0,
            });
        entry.turns += 1;
        Charge::Granted(Granted {
            conversation: id,
            consumed: cost,
            remaining,
        })
    }

    /// Takes `cost` from the balance of `token` for an answer that opens no conversation of the
    /// mock's own (a recorded one); the credits remaining, or `None` when it cannot pay.
    pub fn pay(&mut self, token: &str, cost: u64) -> Option<u64> {
        let account = self.accounts.get_mut(token)?;
        account.credits = account.credits.checked_sub(cost)?;
        Some(account.credits)
    }

    /// Makes the conversation `id`, which a reply named, known to this caller as being at
    /// `turn`, so that the requests continuing it are accepted.
    pub fn register(&mut self, token: &str, agent: &str, id: &str, turn: u64) {
        self.conversations.insert(
            id.to_string(),
            Conversation {
                token: token.to_string(),
                agent: agent.to_string(),
                turns: turn,
            },
        );
    }

    /// The turn the next answer in `conversation` would have, if it exists for this caller.
    pub fn next_turn(&self, token: &str, agent: &str, conversation: Option<&str>) -> Option<u64> {
        match conversation {
            None => Some(1),
            Some(id) => self
                .conversations
                .get(id)
                .filter(|c| c.token == token && c.agent == agent)
                .map(|c| c.turns + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(requests: usize) -> Accounts {
        let tokens = [
            "good".parse().unwrap(),
            "reader:agents-read".parse().unwrap(),
            "user:agents-read,agents-use".parse().unwrap(),
        ];
        let rate_limit = RateLimit {
            requests,
            window: Duration::from_secs(60),
        };
        Accounts::new(&tokens, 3, rate_limit)
    }

    #[test]
    fn rate_limit_specs() {
        let parsed = |spec: &str| spec.parse::<RateLimit>().map(|r| (r.requests, r.window));
        assert_eq!(parsed("30"), Ok((30, Duration::from_secs(60))));
        assert_eq!(parsed("5/2"), Ok((5, Duration::from_secs(2))));
        assert_eq!(parsed("0"), Ok((0, Duration::from_secs(60))));
        for bad in ["", "x", "-1", "+1/", "3/0", "3/1.5", "3/x"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        for (spec, shown) in [("30", "30/60"), ("3/2", "3/2"), ("0/9", "0")] {
            assert_eq!(spec.parse::<RateLimit>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn scopes_decide_admission() {
        let mut a = accounts(0);
        let now = Instant::now();
        assert_eq!(a.admit("good", now), Admission::Admitted);
        assert_eq!(a.admit("user", now), Admission::Admitted);
        assert_eq!(a.admit("reader", now), Admission::MissingScope);
        assert_eq!(a.admit("nobody", now), Admission::UnknownToken);
    }

    #[test]
    fn rate_limit_is_a_rolling_minute_with_seconds_until_a_slot_frees() {
        let mut a = accounts(2);
        let t0 = Instant::now();
        assert_eq!(a.admit("good", t0), Admission::Admitted);
        assert_eq!(
            a.admit("good", t0 + Duration::from_secs(10)),
            Admission::Admitted
        );
        assert_eq!(
            a.admit("good", t0 + Duration::from_secs(20)),
            Admission::RateLimited(40)
        );
        assert_eq!(
            a.admit("user", t0 + Duration::from_secs(20)),
            Admission::Admitted
        );
        assert_eq!(
            a.admit("good", t0 + Duration::from_millis(59_500)),
            Admission::RateLimited(1)
        );
        assert_eq!(
            a.admit("good", t0 + Duration::from_secs(60)),
            Admission::Admitted
        );
    }

    #[test]
    fn conversations_count_turns_and_belong_to_their_caller() {
        let mut a = accounts(0);
        assert_eq!(a.next_turn("good", "default", None), Some(1));
        let Charge::Granted(Granted {
            conversation,
            consumed: 1,
            remaining: 2,
        }) = a.charge("good", "default", None, price(10))
        else {
            panic!()
        };
        assert_eq!(a.next_turn("good", "default", Some(&conversation)), Some(2));
        assert!(matches!(
            a.charge("good", "default", Some(&conversation), price(10)),
            Charge::Granted(Granted { remaining: 1, .. })
        ));
        assert_eq!(a.next_turn("good", "default", Some(&conversation)), Some(3));
        assert_eq!(
            a.charge("user", "default", Some(&conversation), 1),
            Charge::UnknownConversation
        );
        assert_eq!(
            a.charge("good", "other", Some(&conversation), 1),
            Charge::UnknownConversation
        );
        assert_eq!(
            a.charge("good", "default", Some("conv-nope"), 1),
            Charge::UnknownConversation
        );
        assert_eq!(
            a.charge("good", "default", None, price(5000)),
            Charge::NoCredits
        );
        assert_eq!((price(0), price(999), price(1000)), (1, 1, 2));
    }

    #[test]
    fn a_registered_conversation_continues_from_its_turn_and_pay_takes_credits() {
        let mut a = accounts(0);
        a.register("good", "default", "conv-rec", 2);
        assert_eq!(a.next_turn("good", "default", Some("conv-rec")), Some(3));
        assert_eq!(a.next_turn("user", "default", Some("conv-rec")), None);
        assert_eq!(a.pay("good", 2), Some(1));
        assert_eq!(a.pay("good", 2), None);
        assert_eq!(a.pay("good", 1), Some(0));
        assert_eq!(a.pay("nobody", 0), None);
    }
}
