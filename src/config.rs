//! Flags, environment and files resolved, in one place, into a validated `Config` that the rest
//! of the program uses. Flags beat the environment; the environment beats files.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{Limits, Setting};
use crate::cli::Cli;
use crate::contract::Contract;
use crate::endpoint::{self, Endpoint, DEFAULT_BASE_URL};
use crate::error::{Error, Kind, Result};
use crate::mode::Mode;
use crate::proxy;
use crate::rate::Rate;
use crate::request::{Chat, Conversation};
use crate::retry::Policy;
use crate::schema::Schema;
use crate::store::StoreUrl;
use crate::token::{self, Secret};

pub const DEFAULT_AGENT: &str = "default";

/// Where the prompt comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptSources {
    pub words: Vec<String>,
    pub read_stdin: bool,
    /// `--messages`: a path, or `-` for stdin.
    pub messages: Option<PathBuf>,
    pub system: Option<String>,
    /// `-f`: files added to the user message, in order.
    pub files: Vec<PathBuf>,
}

/// What the run does once the request is built. Only sending needs a token, so only sending
/// has one: `--dry-run` works on a machine with no token at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `no_token` says why no token was found, if none was: the dry run shows `<no token>`
    /// rather than a header that would not be sent. A token command is not run for it.
    DryRun {
        no_token: Option<String>,
    },
    Send(Secret),
}

/// What is written, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// `-o`: a file replaced on success, instead of stdout.
    pub file: Option<PathBuf>,
    /// `-x`, `--expect-json` or `--schema`.
    pub contract: Option<Contract>,
    /// `--reask`: how many more times to ask when an answer breaks the contract.
    pub reask: u8,
    /// `--fail-on-length`: a cut answer is exit 3.
    pub fail_on_length: bool,
}

/// How the request travels: timeouts, retries, proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: Policy,
    /// The proxy from `HTTPS_PROXY`/`ALL_PROXY`, when one applies (`proxy.rs`).
    pub proxy: Option<proxy::Chosen>,
    /// Requests per rolling window for this origin and token; `None` when pacing is off.
    pub pace: Option<Rate>,
    /// The Redis a fleet shares its pacing and ledger through; `None`: this machine's files.
    pub store: Option<StoreUrl>,
}

/// `--batch` and the options that only make sense with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The JSONL file of items, `-` for stdin.
    pub file: PathBuf,
    pub jobs: usize,
    pub max_credits: Option<f64>,
    /// Where the item lines go (appended, and read back to resume); stdout without it.
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub agent: String,
    /// The API origin, normalised (`Endpoint::origin`): with the token, what pacing is shared
    /// by; with the agent, what a saved conversation belongs to.
    pub origin: String,
    /// The base URL as given, for the endpoints of other agents (a batch item's).
    pub base_url: String,
    /// The full URL of the chat endpoint.
    pub url: String,
    pub action: Action,
    pub chat: Chat,
    pub network: Network,
    pub mode: Mode,
    pub delivery: Delivery,
    pub prompt: PromptSources,
    /// `BLUENEXUS_STATE_DIR`, else `$XDG_STATE_HOME/bluenexus`, if there is anywhere to keep
    /// state: conversations, pacing, the credit ledger.
    pub state_dir: Option<PathBuf>,
    pub batch: Option<Batch>,
    /// `--budget` and `--min-credits`, checked before every request.
    pub limits: Limits,
    /// `--spent`: say what the ledger holds, send nothing.
    pub spent: bool,
}

impl Config {
    /// `agent` comes from [`agent`], resolved first so that a failure document can name it
    /// whatever fails here; `env` looks up an environment variable; `stdin_is_terminal` decides
    /// whether stdin is read.
    pub fn resolve(
        cli: Cli,
        agent: String,
        env: impl Fn(&str) -> Option<OsString>,
        stdin_is_terminal: bool,
    ) -> Result<Config> {
        let base_url = flag_or_env(cli.base_url.clone(), &env, "BLUENEXUS_BASE_URL")?
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let endpoint = endpoint(&base_url, &agent)?;
        let mode = mode(&cli);
        let proxy = proxy::choose(&env, &endpoint.host, endpoint.loopback)?;
        refuse_conflicts(&cli)?;
        let contract = contract(&cli)?;
        let action = action(&cli, &env)?;
        let network = network(&cli, &env, proxy)?;
        let limits = Limits {
            budget: match flag_or_env(cli.budget, &env, "BLUENEXUS_BUDGET")? {
                Some(Setting::On(budget)) => Some(budget),
                Some(Setting::Off) | None => None,
            },
            floor: cli.min_credits,
        };
        let conversation = match (cli.conversation, cli.continue_) {
            (Some(id), _) => Conversation::Id(id),
            (None, true) => Conversation::Continue,
            (None, false) => Conversation::New,
        };
        // As for curl, `-o -` is stdout.
        let output = cli.output.filter(|path| path.as_os_str() != "-");
        let batch = cli.batch.map(|file| Batch {
            file,
            jobs: usize::from(cli.jobs),
            max_credits: cli.max_credits,
            output: output.clone(),
        });
        Ok(Config {
            agent,
            origin: endpoint.origin,
            base_url,
            url: endpoint.url,
            action,
            chat: Chat {
                stream: cli.stream,
                temperature: cli.temperature,
                max_tokens: cli.max_tokens,
                conversation,
            },
            network,
            mode,
            delivery: Delivery {
                // A batch appends to its output instead: see `batch`.
                file: output.filter(|_| batch.is_none()),
                contract,
                reask: cli.reask,
                fail_on_length: cli.fail_on_length,
            },
            prompt: PromptSources {
                words: cli.prompt,
                read_stdin: !cli.no_stdin && !stdin_is_terminal,
                messages: cli.messages,
                system: cli.system,
                files: cli.files,
            },
            state_dir: app_dir(
                &env,
                "BLUENEXUS_STATE_DIR",
                "XDG_STATE_HOME",
                ".local/state",
            ),
            batch,
            limits,
            spent: cli.spent,
        })
    }
}

/// The output mode, which a failure document needs even when the configuration fails.
pub fn mode(cli: &Cli) -> Mode {
    Mode::new(cli.json, cli.batch.is_some())
}

/// The endpoint of `agent`; what it refuses is a configuration error (exit 78).
pub fn endpoint(base_url: &str, agent: &str) -> Result<Endpoint> {
    endpoint::endpoint(base_url, agent).map_err(|refused| {
        let err = Error::msg(Kind::Config, refused.message);
        match refused.hint {
            Some(hint) => err.with_hint(hint),
            None => err,
        }
    })
}

/// Combinations of options that clap's rules cannot refuse by themselves.
fn refuse_conflicts(cli: &Cli) -> Result<()> {
    let stdin = Some(std::path::Path::new("-"));
    for (option, path) in [("--messages", &cli.messages), ("--batch", &cli.batch)] {
        if cli.no_stdin && path.as_deref() == stdin {
            return Err(Error::msg(
                Kind::Usage,
                format!("{option} - reads standard input, which --no-stdin forbids"),
            ));
        }
    }
    if cli.batch.is_some() && cli.messages.as_deref() == stdin {
        return Err(Error::msg(
            Kind::Usage,
            "--messages - cannot be used with --batch: give each item its messages",
        ));
    }
    if cli.dry_run && cli.batch.is_some() && cli.output.is_some() {
        return Err(Error::msg(
            Kind::Usage,
            "--dry-run writes a batch's requests to stdout; -o is for its answers",
        )
        .with_hint("leave out -o, or --dry-run"));
    }
    Ok(())
}

/// What the answer must be: `--schema` (read and checked now, so a bad schema costs nothing),
/// `-x` or `--expect-json`. `--reask` without one has nothing to ask again about.
fn contract(cli: &Cli) -> Result<Option<Contract>> {
    let contract = match (&cli.schema, cli.extract, cli.expect_json) {
        (Some(arg), ..) => {
            let schema = Schema::from_arg(arg)
                .map_err(|why| Error::msg(Kind::Usage, format!("--schema: {why}")))?;
            Some(Contract::Schema(Arc::new(schema)))
        }
        (None, true, _) => Some(Contract::CodeBlock),
        (None, false, true) => Some(Contract::Json),
        (None, false, false) => None,
    };
    if cli.reask > 0 && contract.is_none() {
        return Err(Error::msg(
            Kind::Usage,
            "--reask asks again when an answer is not what -x, --expect-json or --schema asked              for: give one of them",
        ));
    }
    Ok(contract)
}

/// Sending needs the token; a dry run only says whether there is one.
fn action(cli: &Cli, env: &impl Fn(&str) -> Option<OsString>) -> Result<Action> {
    let token = token::pick(token::Sources {
        file: cli.token_file.as_deref(),
        command: cli.token_cmd.as_deref(),
        env_token: env("BLUENEXUS_TOKEN"),
        env_command: env("BLUENEXUS_TOKEN_CMD").filter(|c| !c.is_empty()),
        default_file: base_dir(env, "XDG_CONFIG_HOME", ".config")
            .map(|d| d.join("bluenexus").join("token")),
    });
    Ok(match (cli.dry_run, token) {
        (true, token) => Action::DryRun {
            no_token: token.and_then(token::Source::check).err().map(|e| e.line()),
        },
        (false, token) => Action::Send(token?.read()?),
    })
}

fn network(
    cli: &Cli,
    env: &impl Fn(&str) -> Option<OsString>,
    proxy: Option<proxy::Chosen>,
) -> Result<Network> {
    let pace = flag_or_env(cli.rate_limit, env, "BLUENEXUS_RATE_LIMIT")?.unwrap_or(Rate::DEFAULT);
    // The new name beats the old one, and a flag beats either variable.
    let flag = cli.store.clone().or_else(|| cli.rate_store.clone());
    let variable = match env("BLUENEXUS_STORE") {
        Some(_) => "BLUENEXUS_STORE",
        None => "BLUENEXUS_RATE_STORE",
    };
    let store = flag_or_env(flag, env, variable)?
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<StoreUrl>().map_err(|why| {
                Error::msg(Kind::Config, format!("bad store URL: {why}"))
                    .with_hint("use redis://HOST:PORT[/DB], such as redis://10.0.0.5:6379/0")
            })
        })
        .transpose()?;
    Ok(Network {
        timeout: cli.timeout,
        connect_timeout: cli.connect_timeout,
        retry: Policy {
            retries: cli.retries,
            max_wait: cli.max_retry_wait,
        },
        proxy,
        pace: Some(pace).filter(|rate| rate.requests > 0),
        store,
    })
}

/// The agent id: the flag, else `BLUENEXUS_AGENT`, else `default`.
pub fn agent(flag: Option<&str>, env: &impl Fn(&str) -> Option<OsString>) -> Result<String> {
    match flag {
        Some(agent) => Ok(agent.to_string()),
        None => Ok(env_string(env, "BLUENEXUS_AGENT")?.unwrap_or_else(|| DEFAULT_AGENT.into())),
    }
}

/// The flag's value, else the environment variable `name`'s, parsed: a variable that does not
/// parse is a configuration error that names it (a flag was already checked by clap).
fn flag_or_env<T: FromStr<Err: fmt::Display>>(
    flag: Option<T>,
    env: &impl Fn(&str) -> Option<OsString>,
    name: &str,
) -> Result<Option<T>> {
    if flag.is_some() {
        return Ok(flag);
    }
    env_string(env, name)?
        .map(|value| {
            value
                .parse()
                .map_err(|why| Error::msg(Kind::Config, format!("{name}: {why}")))
        })
        .transpose()
}

fn env_string(env: &impl Fn(&str) -> Option<OsString>, name: &str) -> Result<Option<String>> {
    env(name)
        .map(|v| {
            v.into_string()
                .map_err(|_| Error::msg(Kind::Config, format!("{name} is not valid UTF-8")))
        })
        .transpose()
}

/// `$OWN` as given, else `bluenexus` in the XDG base directory of [`base_dir`].
fn app_dir(
    env: &impl Fn(&str) -> Option<OsString>,
    own: &str,
    xdg_var: &str,
    fallback: &str,
) -> Option<PathBuf> {
    env(own)
        .map(PathBuf::from)
        .or_else(|| base_dir(env, xdg_var, fallback).map(|d| d.join("bluenexus")))
}

/// `$XDG_VAR` when it is an absolute path (as the XDG spec requires), else `$HOME/fallback`.
fn base_dir(
    env: &impl Fn(&str) -> Option<OsString>,
    xdg_var: &str,
    fallback: &str,
) -> Option<PathBuf> {
    env(xdg_var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(fallback))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        let cli = Cli::try_parse_from(std::iter::once("bnx").chain(args.iter().copied())).unwrap();
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let lookup = |name: &str| env.get(name).cloned();
        let agent = agent(cli.agent.as_deref(), &lookup)?;
        Config::resolve(cli, agent, lookup, true)
    }

    #[test]
    fn flags_beat_env_beat_defaults() {
        let env = [
            ("BLUENEXUS_AGENT", "env-agent"),
            ("BLUENEXUS_BASE_URL", "http://127.0.0.1:9"),
            ("BLUENEXUS_TOKEN", "env-token"),
        ];
        let c = resolve(
            &["--agent", "flag-agent", "--base-url", "http://localhost:1"],
            &env,
        )
        .unwrap();
        assert_eq!(
            c.url,
            "http://localhost:1/api/v1/agents/flag-agent/chat/completions"
        );
        let c = resolve(&[], &env).unwrap();
        assert_eq!(
            c.url,
            "http://127.0.0.1:9/api/v1/agents/env-agent/chat/completions"
        );
        let Action::Send(token) = c.action else {
            panic!("a token was given")
        };
        assert_eq!(token.expose(), "env-token");
        let c = resolve(&[], &[("BLUENEXUS_TOKEN", "t")]).unwrap();
        assert_eq!(
            c.url,
            "https://api.bluenexus.ai/api/v1/agents/default/chat/completions"
        );
    }

    #[test]
    fn a_refused_endpoint_is_a_configuration_error_with_its_hint() {
        let env = [("BLUENEXUS_BASE_URL", "https://h/api/v1")];
        let err = resolve(&["--dry-run"], &env).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert_eq!(err.hint.as_deref(), Some("use the origin https://h"));
        assert_eq!(endpoint("https://h", "..").unwrap_err().kind, Kind::Config);
    }

    #[test]
    fn state_and_token_paths_follow_xdg_then_home() {
        let c = resolve(&["--dry-run"], &[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            c.state_dir.unwrap(),
            PathBuf::from("/home/u/.local/state/bluenexus")
        );
        let c = resolve(
            &["--dry-run"],
            &[("HOME", "/home/u"), ("XDG_STATE_HOME", "/s")],
        )
        .unwrap();
        assert_eq!(c.state_dir.unwrap(), PathBuf::from("/s/bluenexus"));
        let c = resolve(
            &["--dry-run"],
            &[("HOME", "/home/u"), ("XDG_STATE_HOME", "rel")],
        )
        .unwrap();
        assert_eq!(
            c.state_dir.unwrap(),
            PathBuf::from("/home/u/.local/state/bluenexus")
        );
        let c = resolve(
            &["--dry-run"],
            &[("XDG_STATE_HOME", "/s"), ("BLUENEXUS_STATE_DIR", "/mine")],
        )
        .unwrap();
        assert_eq!(c.state_dir.unwrap(), PathBuf::from("/mine"));
        let err = resolve(&[], &[("HOME", "/nonexistent-home")]).unwrap_err();
        assert!(err
            .hint
            .as_deref()
            .unwrap()
            .contains("/nonexistent-home/.config/bluenexus/token"));
    }

    #[test]
    fn proxies_only_for_https_and_never_http_proxy_alone() {
        let proxied = |env: &[(&str, &str)]| resolve(&[], env).unwrap().network.proxy.is_some();
        assert!(proxied(&[
            ("BLUENEXUS_TOKEN", "t"),
            ("HTTPS_PROXY", "http://proxy:3128"),
        ]));
        assert!(proxied(&[
            ("BLUENEXUS_TOKEN", "t"),
            ("all_proxy", "socks5h://proxy:1080"),
        ]));
        assert!(!proxied(&[
            ("BLUENEXUS_TOKEN", "t"),
            ("HTTP_PROXY", "http://proxy:3128"),
        ]));
        assert!(!proxied(&[
            ("BLUENEXUS_TOKEN", "t"),
            ("ALL_PROXY", "http://proxy:3128"),
            ("BLUENEXUS_BASE_URL", "http://127.0.0.1:1"),
        ]));
        assert!(
            !proxied(&[
                ("BLUENEXUS_TOKEN", "t"),
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("BLUENEXUS_BASE_URL", "https://127.0.0.1:8443"),
            ]),
            "https to loopback is never proxied either"
        );
        let bad = [
            ("BLUENEXUS_TOKEN", "t"),
            ("ALL_PROXY", "socks5://proxy:99999"),
        ];
        assert_eq!(resolve(&[], &bad).unwrap_err().kind, Kind::Config);
    }

    #[test]
    fn the_rate_store_comes_from_the_flag_then_the_env_and_empty_is_none() {
        let env = [("BLUENEXUS_RATE_STORE", "redis://env-host:7000/1")];
        let store = |args: &[&str], env: &[(&str, &str)]| {
            let args = [&["--dry-run"], args].concat();
            resolve(&args, env).map(|c| c.network.store.map(|u| u.to_string()))
        };
        assert_eq!(
            store(&[], &env).unwrap().unwrap(),
            "redis://env-host:7000/1"
        );
        assert_eq!(
            store(&["--rate-store", "redis://flag-host"], &env)
                .unwrap()
                .unwrap(),
            "redis://flag-host:6379/0"
        );
        assert_eq!(store(&["--rate-store", ""], &env).unwrap(), None);
        assert_eq!(store(&[], &[("BLUENEXUS_RATE_STORE", "")]).unwrap(), None);
        assert_eq!(store(&[], &[]).unwrap(), None);
        let err = store(&[], &[("BLUENEXUS_RATE_STORE", "redis://:hunter2@h:x")]).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(err.line().starts_with("bad store URL: "), "{}", err.line());
        assert!(!err.line().contains("hunter2"));
    }

    #[test]
    fn the_store_is_named_store_and_the_new_name_wins_over_the_old() {
        let store = |args: &[&str], env: &[(&str, &str)]| {
            let args = [&["--dry-run"], args].concat();
            let config = resolve(&args, env).unwrap();
            config.network.store.map(|u| u.to_string())
        };
        let both = [
            ("BLUENEXUS_STORE", "redis://new:1"),
            ("BLUENEXUS_RATE_STORE", "redis://old:1"),
        ];
        assert_eq!(store(&[], &both).as_deref(), Some("redis://new:1/0"));
        assert_eq!(
            store(&[], &both[1..]).as_deref(),
            Some("redis://old:1/0"),
            "the older name alone still works"
        );
        let flags = [
            "--store",
            "redis://f-new:2",
            "--rate-store",
            "redis://f-old:2",
        ];
        assert_eq!(store(&flags, &both).as_deref(), Some("redis://f-new:2/0"));
        assert_eq!(
            store(&flags[2..], &both).as_deref(),
            Some("redis://f-old:2/0"),
            "a flag, even the older one, beats the environment"
        );
        assert_eq!(store(&["--store", ""], &both), None);
        let err = resolve(&["--dry-run"], &[("BLUENEXUS_STORE", "http://x")]).unwrap_err();
        assert_eq!(
            (err.kind, err.line().contains("bad store URL")),
            (Kind::Config, true)
        );
    }

    #[test]
    fn the_budget_comes_from_the_flag_then_the_env_and_off_turns_it_off() {
        let limits = |args: &[&str], env: &[(&str, &str)]| {
            let args = [&["--dry-run"], args].concat();
            resolve(&args, env).map(|c| c.limits)
        };
        let env = [("BLUENEXUS_BUDGET", "500/1d")];
        let budget = limits(&[], &env).unwrap().budget.unwrap();
        assert_eq!((budget.limit, budget.period.as_secs()), (500.0, 86_400));
        let budget = limits(&["--budget", "2.5/90m"], &env).unwrap().budget;
        assert_eq!(budget.unwrap().period.as_secs(), 5400);
        assert_eq!(limits(&["--budget", "off"], &env).unwrap().budget, None);
        assert_eq!(limits(&[], &[]).unwrap(), Limits::default());
        let floor = limits(&["--min-credits", "4"], &[]).unwrap();
        assert_eq!((floor.budget, floor.floor), (None, Some(4.0)));
        let err = limits(&[], &[("BLUENEXUS_BUDGET", "5/1w")]).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(
            err.line().starts_with("BLUENEXUS_BUDGET: "),
            "{}",
            err.line()
        );
    }

    #[test]
    fn dry_run_needs_no_token_and_stdin_follows_terminal_and_flag() {
        let c = resolve(&["--dry-run", "hi"], &[]).unwrap();
        assert_eq!(
            c.action,
            Action::DryRun {
                no_token: Some("no access token".into())
            }
        );
        let c = resolve(&["--dry-run", "hi"], &[("BLUENEXUS_TOKEN", "t")]).unwrap();
        assert_eq!(c.action, Action::DryRun { no_token: None });
        assert!(!c.prompt.read_stdin, "a terminal stdin is never read");
        let reads_stdin = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let config = Config::resolve(cli, DEFAULT_AGENT.into(), |_| None, false).unwrap();
            config.prompt.read_stdin
        };
        assert!(reads_stdin(&["bnx", "--dry-run"]));
        assert!(!reads_stdin(&["bnx", "--dry-run", "--no-stdin"]));
        assert!(!reads_stdin(&["bnx", "--dry-run", "-n"]));
    }

    #[test]
    fn no_stdin_with_messages_from_stdin_is_a_usage_error() {
        let err = resolve(&["--dry-run", "-n", "--messages", "-"], &[]).unwrap_err();
        assert_eq!(err.kind, Kind::Usage);
        assert!(resolve(&["--dry-run", "-n", "--messages", "m.json"], &[]).is_ok());
    }

    #[test]
    fn contract_and_output_options_reach_the_delivery() {
        let c = resolve(&["--dry-run", "-x", "-o", "out.txt", "q"], &[]).unwrap();
        assert_eq!(
            c.delivery,
            Delivery {
                file: Some("out.txt".into()),
                contract: Some(Contract::CodeBlock),
                reask: 0,
                fail_on_length: false
            }
        );
        let c = resolve(&["--dry-run", "-o", "-", "q"], &[]).unwrap();
        assert_eq!(c.delivery.file, None, "-o - is stdout");
        let c = resolve(
            &["--dry-run", "--expect-json", "--fail-on-length", "q"],
            &[],
        )
        .unwrap();
        assert_eq!(c.delivery.contract, Some(Contract::Json));
        assert!(c.delivery.fail_on_length);
    }

    #[test]
    fn a_schema_is_read_before_anything_else_and_reask_needs_a_contract() {
        let c = resolve(
            &[
                "--dry-run",
                "--schema",
                "{\"type\": \"object\"}",
                "--reask",
                "2",
                "q",
            ],
            &[],
        )
        .unwrap();
        assert!(matches!(c.delivery.contract, Some(Contract::Schema(_))));
        assert_eq!(c.delivery.reask, 2);
        let c = resolve(&["--dry-run", "--expect-json", "--schema", "{}", "q"], &[]).unwrap();
        assert!(
            matches!(c.delivery.contract, Some(Contract::Schema(_))),
            "--schema implies --expect-json, and wins"
        );
        for args in [
            &["--dry-run", "--schema", "{\"type\": 12}", "q"][..],
            &["--dry-run", "--schema", "no-such-schema.json", "q"],
            &["--dry-run", "--reask", "1", "q"],
        ] {
            let err = resolve(args, &[]).unwrap_err();
            assert_eq!(err.kind, Kind::Usage, "{args:?}: {}", err.line());
        }
        assert!(resolve(&["--dry-run", "-x", "--reask", "5", "q"], &[]).is_ok());
    }
}
