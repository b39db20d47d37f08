//! Flags, environment and files resolved, in one place, into a validated `Config` that the rest
//! of the program uses. Flags beat the environment; the environment beats files.

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ureq::http::Uri;

use crate::cli::Cli;
use crate::error::{Error, Kind, Result};
use crate::extract::Extract;
use crate::pace::redis::StoreUrl;
use crate::pace::Rate;
use crate::proxy;
use crate::retry::Policy;
use crate::token::{self, Secret};
use crate::url::{self, Url};
use crate::wire;

pub const DEFAULT_BASE_URL: &str = "https://api.bluenexus.ai";
pub const DEFAULT_AGENT: &str = "default";

/// Everything but RFC 3986's unreserved characters is encoded, `/` included, so an agent id is
/// always exactly one path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Conversation {
    #[default]
    New,
    Id(String),
    /// The agent's last conversation, if one was saved.
    Continue,
}

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
    /// `-x` or `--expect-json`.
    pub extract: Option<Extract>,
    /// `--fail-on-length`: a cut answer is exit 3.
    pub fail_on_length: bool,
}

/// What the request asks of the agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chat {
    pub stream: bool,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub conversation: Conversation,
}

/// How the request travels: timeouts, retries, proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: Policy,
    /// The proxy from `HTTPS_PROXY`/`ALL_PROXY`, when one applies (`proxy.rs`).
    pub proxy: Option<proxy::Chosen>,
    /// A streamed answer: `timeout` bounds the silence between reads, not the whole body.
    pub stream: bool,
    /// Requests per rolling window for this origin and token; `None` when pacing is off.
    pub pace: Option<Rate>,
    /// The Redis a fleet shares its pacing through; `None`: this machine's file.
    pub rate_store: Option<StoreUrl>,
}

/// `--batch` and the options that only make sense with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The JSONL file of items, `-` for stdin.
    pub file: PathBuf,
    pub jobs: usize,
    pub max_credits: Option<f64>,
    pub min_credits: Option<f64>,
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
    pub json: bool,
    pub delivery: Delivery,
    pub prompt: PromptSources,
    /// `$XDG_STATE_HOME/bluenexus`, if there is anywhere to keep state.
    pub state_dir: Option<PathBuf>,
    pub batch: Option<Batch>,
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
        let proxy = proxy::choose(&env, &endpoint.host, endpoint.loopback)?;
        refuse_conflicts(&cli)?;
        let action = action(&cli, &env)?;
        let network = network(&cli, &env, proxy)?;
        let extract = match (cli.extract, cli.expect_json) {
            (true, _) => Some(Extract::CodeBlock),
            (false, true) => Some(Extract::Json),
            (false, false) => None,
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
            min_credits: cli.min_credits,
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
            json: cli.json,
            delivery: Delivery {
                // A batch appends to its output instead: see `batch`.
                file: output.filter(|_| batch.is_none()),
                extract,
                fail_on_length: cli.fail_on_length,
            },
            prompt: PromptSources {
                words: cli.prompt,
                read_stdin: !cli.no_stdin && !stdin_is_terminal,
                messages: cli.messages,
                system: cli.system,
                files: cli.files,
            },
            state_dir: base_dir(&env, "XDG_STATE_HOME", ".local/state")
                .map(|d| d.join("bluenexus")),
            batch,
        })
    }
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
    let rate_store = flag_or_env(cli.rate_store.clone(), env, "BLUENEXUS_RATE_STORE")?
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<StoreUrl>().map_err(|why| {
                Error::msg(Kind::Config, format!("bad rate store URL: {why}"))
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
        stream: cli.stream,
        pace: Some(pace).filter(|rate| rate.requests > 0),
        rate_store,
    })
}

/// An agent id is one path segment: never empty, `.` or `..`, nor holding a control character.
pub fn check_agent(agent: &str) -> std::result::Result<(), &'static str> {
    match agent {
        "" => Err("it is empty"),
        "." | ".." => Err("it would name another path"),
        _ if agent.chars().any(char::is_control) => Err("it holds a control character"),
        _ => Ok(()),
    }
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

/// The chat endpoint's URL, and whether its host is loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// The API origin, normalised (`scheme://host[:port][/prefix]`, the port only when it is not
    /// the scheme's default): what tells one API from another.
    pub origin: String,
    pub host: String,
    pub loopback: bool,
}

/// The chat endpoint for `agent` under the API origin `base_url` (SPEC "Base URL").
pub fn endpoint(base_url: &str, agent: &str) -> Result<Endpoint> {
    let bad_url = |why: &str| {
        Error::msg(
            Kind::Config,
            format!("bad base URL {:?}: {why}", url::masked(base_url)),
        )
        .with_hint("use the API origin, such as https://api.bluenexus.ai")
    };
    let parsed = Url::parse(base_url).map_err(|why| bad_url(&why))?;
    if parsed.userinfo.is_some() {
        return Err(bad_url(
            "a user name or password does not belong in it (the token is sent as a header)",
        ));
    }
    if parsed.query.is_some() || parsed.fragment.is_some() {
        return Err(bad_url(
            "a query or fragment has no place in the API origin",
        ));
    }
    let loopback = is_loopback(&parsed.host);
    match parsed.scheme.as_str() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(Error::msg(
                Kind::Config,
                format!(
                    "refusing plain http:// to {}: the token would cross the network unencrypted",
                    parsed.host
                ),
            )
            .with_hint("use https://, or http:// only for 127.0.0.1, [::1] or localhost"))
        }
        _ => return Err(bad_url("the scheme must be https")),
    }
    let prefix = parsed.path.trim_end_matches('/');
    let origin = format!("{}{prefix}", parsed.origin());
    if let Some(before) = api_path_start(prefix) {
        return Err(
            bad_url("the path already holds /api/v1, which bnx adds").with_hint(format!(
                "use the origin {}{}",
                parsed.origin(),
                &prefix[..before]
            )),
        );
    }
    if let Err(why) = check_agent(agent) {
        return Err(Error::msg(
            Kind::Config,
            format!("bad agent id {agent:?}: {why}"),
        ));
    }
    let agent = utf8_percent_encode(agent, PATH_SEGMENT).to_string();
    let port = parsed.port.map(|p| format!(":{p}")).unwrap_or_default();
    let url = format!(
        "{}://{}{port}{prefix}{}",
        parsed.scheme,
        parsed.host,
        wire::chat_path(&agent)
    );
    // The HTTP stack reads the URL again: it must find the same host and port, or the token
    // could go where no check above looked.
    let uri: Uri = url.parse().map_err(|_| bad_url("not a URL"))?;
    if uri.host() != Some(parsed.host.as_str()) || uri.port_u16() != parsed.port {
        return Err(bad_url("the host or port is ambiguous"));
    }
    Ok(Endpoint {
        url,
        origin,
        host: parsed.bare_host().to_string(),
        loopback,
    })
}

/// Where `/api/v1` starts in `path`, if it holds it as whole segments, in any case and even
/// percent-encoded (`/%61pi/v1`, which a server reads as `/api/v1`).
fn api_path_start(path: &str) -> Option<usize> {
    let is = |segment: &str, name: &str| {
        percent_decode_str(segment)
            .decode_utf8_lossy()
            .eq_ignore_ascii_case(name)
    };
    let mut starts = path.match_indices('/').map(|(at, _)| at).peekable();
    let mut segments = path.split('/').skip(1).peekable();
    while let (Some(at), Some(segment)) = (starts.next(), segments.next()) {
        if is(segment, "api") && segments.peek().is_some_and(|next| is(next, "v1")) {
            return Some(at);
        }
    }
    None
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
    fn agent_is_one_encoded_path_segment() {
        assert_eq!(
            endpoint("https://h", "a/b c?d#é").unwrap().url,
            "https://h/api/v1/agents/a%2Fb%20c%3Fd%23%C3%A9/chat/completions"
        );
        assert_eq!(endpoint("https://h", "..").unwrap_err().kind, Kind::Config);
        assert_eq!(endpoint("https://h", "").unwrap_err().kind, Kind::Config);
    }

    #[test]
    fn base_url_rules() {
        assert_eq!(
            endpoint("https://h.example/prefix/", "x").unwrap().url,
            "https://h.example/prefix/api/v1/agents/x/chat/completions"
        );
        for ok in [
            "http://127.0.0.1:8787",
            "http://[::1]:1",
            "http://LOCALHOST",
            "http://127.3.4.5",
        ] {
            assert!(endpoint(ok, "x").unwrap().loopback, "{ok}");
        }
        assert!(endpoint("https://localhost:8443", "x").unwrap().loopback);
        assert!(!endpoint("https://api.bluenexus.ai", "x").unwrap().loopback);
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "ftp://h",
            "h.example",
            "https://user:pw@h",
            "https://h/?q=1",
            "https://h/#f",
            "",
        ] {
            assert_eq!(endpoint(bad, "x").unwrap_err().kind, Kind::Config, "{bad}");
        }
    }

    #[test]
    fn a_path_holding_api_v1_in_any_spelling_is_refused_with_the_origin_to_use() {
        for (pasted, origin) in [
            ("https://h/api/v1", "https://h"),
            ("https://h/t%20m/API/V1/agents/x", "https://h/t%20m"),
            ("https://h/team/%61pi/v%31/", "https://h/team"),
        ] {
            let err = endpoint(pasted, "x").unwrap_err();
            assert!(err.line().contains("already holds /api/v1"), "{pasted}");
            assert_eq!(
                err.hint.as_deref(),
                Some(format!("use the origin {origin}").as_str())
            );
        }
        for fine in [
            "https://h/apiv1",
            "https://h/api/v10",
            "https://h/my-api/v1",
            "https://h/v1/api",
        ] {
            assert!(endpoint(fine, "x").is_ok(), "{fine}");
        }
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
            resolve(&args, env).map(|c| c.network.rate_store.map(|u| u.to_string()))
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
        assert!(
            err.line().starts_with("bad rate store URL: "),
            "{}",
            err.line()
        );
        assert!(!err.line().contains("hunter2"));
    }

    #[test]
    fn agent_with_control_characters_is_refused() {
        assert_eq!(
            endpoint("https://h", "a\r\nX-Evil: 1").unwrap_err().kind,
            Kind::Config
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
    fn extract_and_output_options_reach_the_delivery() {
        let c = resolve(&["--dry-run", "-x", "-o", "out.txt", "q"], &[]).unwrap();
        assert_eq!(
            c.delivery,
            Delivery {
                file: Some("out.txt".into()),
                extract: Some(Extract::CodeBlock),
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
        assert_eq!(c.delivery.extract, Some(Extract::Json));
        assert!(c.delivery.fail_on_length);
    }
}
