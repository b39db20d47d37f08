//! Assembling the request: the messages from the prompt words, `-f` files, standard input,
//! `--system` and `--messages`, and the agent, sampling and conversation, for a single request
//! and for each batch item alike, whose own fields override the command line's. What is read
//! is what is sent: nothing is trimmed, cut or replaced.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::config::{self, Config};
use crate::error::{Error, Kind, Result};
use crate::printer::Printer;
use crate::request::{self, Chat, Conversation, Request};
use crate::wire::Message;

/// Input larger than this, standard input, `-f` files and a messages file together, is refused
/// rather than truncated.
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// A batch item's own fields, which beat the command line's; a single request has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub prompt: Option<String>,
    pub messages: Option<Vec<Message>>,
    pub files: Option<Vec<PathBuf>>,
    pub system: Option<String>,
    pub agent: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub conversation: Option<String>,
}

/// Builds the requests of a run from the command line's prompt, whose inputs (`--messages`,
/// `-f` files, standard input) are read once, and the overrides of each request.
pub struct Composer<'a> {
    config: &'a Config,
    /// `--messages`, for the requests without messages of their own.
    history: Option<Vec<Message>>,
    /// The command line's `-f` files, as their parts of the user message.
    files: Vec<String>,
    /// Standard input, when it is part of the prompt.
    piped: Option<String>,
    /// What is left of the input limit for a request's own files.
    budget: u64,
    /// The endpoint of each agent a request may name, checked before anything is sent.
    endpoints: HashMap<String, String>,
    printer: &'a Printer,
}

impl<'a> Composer<'a> {
    /// Reads what the prompt takes in: `--messages`, the `-f` files, and standard input when it
    /// is not `taken` (by the items of `--batch -`).
    pub fn new(
        config: &'a Config,
        stdin: &mut dyn Read,
        taken: bool,
        printer: &'a Printer,
    ) -> Result<Self> {
        let sources = &config.prompt;
        let mut budget = MAX_INPUT;
        let messages_from_stdin = sources.messages.as_deref() == Some(Path::new("-"));
        let history = match &sources.messages {
            Some(_) if messages_from_stdin => {
                let name = "standard input";
                let text = read_text(&mut *stdin, name, &mut budget)?;
                Some(parse_messages(&text, name)?)
            }
            Some(path) => Some(history(path, &mut budget)?),
            None => None,
        };
        let before_files = budget;
        let files = sources
            .files
            .iter()
            .map(|path| file_part(path, &mut budget))
            .collect::<Result<_>>()?;
        let files_cost = before_files - budget;
        let piped = (sources.read_stdin && !messages_from_stdin && !taken)
            .then(|| read_text(&mut *stdin, "standard input", &mut budget))
            .transpose()?;
        Ok(Composer {
            config,
            history,
            files,
            piped,
            budget: budget + files_cost,
            endpoints: HashMap::from([(config.agent.clone(), config.url.clone())]),
            printer,
        })
    }

    /// Whether the command line gives a prompt of its own (words, piped text or `--messages`),
    /// so that a batch item may leave its prompt out.
    pub fn has_prompt(&self) -> bool {
        join_parts([self.config.prompt.words.join(" ")]).is_some()
            || self.piped.as_deref().is_some_and(|p| !p.trim().is_empty())
            || self.history.is_some()
    }

    /// Lets requests name `agent`, whose endpoint is checked now.
    pub fn add_agent(&mut self, agent: &str) -> Result<()> {
        if !self.endpoints.contains_key(agent) {
            let endpoint = config::endpoint(&self.config.base_url, agent)?;
            self.endpoints.insert(agent.to_string(), endpoint.url);
        }
        Ok(())
    }

    /// The agent a request with `overrides` goes to.
    pub fn agent<'o>(&'o self, overrides: &'o Overrides) -> &'o str {
        overrides.agent.as_deref().unwrap_or(&self.config.agent)
    }

    /// The request of `overrides`, its agent added first (see [`Composer::add_agent`]).
    pub fn request(&self, overrides: &Overrides) -> Result<Request> {
        let config = self.config;
        let agent = self.agent(overrides);
        let chat = Chat {
            stream: config.chat.stream,
            temperature: overrides.temperature.or(config.chat.temperature),
            max_tokens: overrides.max_tokens.or(config.chat.max_tokens),
            conversation: overrides
                .conversation
                .clone()
                .map_or_else(|| config.chat.conversation.clone(), Conversation::Id),
        };
        let messages = self.messages(overrides)?;
        let conversation = request::conversation_id(
            &chat.conversation,
            config.state_dir.as_deref(),
            &config.origin,
            agent,
            self.printer,
        );
        Ok(Request::new(
            &self.endpoints[agent],
            &chat,
            messages,
            conversation,
        ))
    }

    /// The system message, the history, then the user message: the prompt words, a batch
    /// item's prompt, the files, and piped text, each after a blank line.
    fn messages(&self, overrides: &Overrides) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        let system = overrides
            .system
            .as_ref()
            .or(self.config.prompt.system.as_ref());
        if let Some(system) = system {
            messages.push(Message::new("system", system.as_str()));
        }
        let history = overrides.messages.as_ref().or(self.history.as_ref());
        messages.extend(history.into_iter().flatten().cloned());
        let mut parts = vec![self.config.prompt.words.join(" ")];
        parts.extend(overrides.prompt.clone());
        match &overrides.files {
            Some(paths) => {
                let mut budget = self.budget;
                for path in paths {
                    parts.push(file_part(path, &mut budget)?);
                }
            }
            None => parts.extend(self.files.iter().cloned()),
        }
        parts.extend(self.piped.clone());
        match join_parts(parts) {
            Some(user) => messages.push(Message::new("user", user)),
            None if history.is_none() => {
                return Err(Error::msg(
                    Kind::Usage,
                    "no prompt: give PROMPT words, a file (-f) or pipe text to stdin",
                )
                .with_hint("bnx \"your question\", or: cat file | bnx \"what does this do?\""))
            }
            None => {}
        }
        if messages.iter().all(|m| m.role == "system") {
            return Err(Error::msg(
                Kind::Usage,
                "nothing to send: the messages hold no conversation and there is no prompt",
            ));
        }
        Ok(messages)
    }
}

/// The user message made of `parts` in order, joined by a blank line; a blank part counts as
/// absent (cron and CI often hand a program an empty stdin), and no part at all is no message.
pub fn join_parts(parts: impl IntoIterator<Item = String>) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.trim().is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// The messages of a `--messages` file (not `-`: stdin is read by [`messages`]), within what
/// is left of the input `budget`.
pub fn history(path: &Path, budget: &mut u64) -> Result<Vec<Message>> {
    let text = read_file(path, "messages file", budget)?;
    parse_messages(&text, &path.display().to_string())
}

/// The file at `path` as UTF-8 text, within what is left of the input `budget`; `what` names
/// it in errors ("file", "messages file"). Missing, unreadable or a directory is bad input.
pub fn read_file(path: &Path, what: &str, budget: &mut u64) -> Result<String> {
    let name = format!("{what} {}", path.display());
    let unreadable = |e: std::io::Error| {
        Error::new(
            Kind::Input,
            anyhow::Error::new(e).context(format!("cannot read {name}")),
        )
    };
    // Checked first: on Linux a directory opens, and only reading it fails.
    if path.metadata().map_err(unreadable)?.is_dir() {
        return Err(unreadable(std::io::Error::other("it is a directory")));
    }
    read_text(File::open(path).map_err(unreadable)?, &name, budget)
}

/// A `-f` file as its part of the user message: `<file name="PATH">`, the content less one
/// trailing newline (so the block never ends in a blank line), `</file>`. PATH is shown as
/// given, so the agent sees the name the user typed.
pub fn file_part(path: &Path, budget: &mut u64) -> Result<String> {
    let content = read_file(path, "file", budget)?;
    let content = content
        .strip_suffix("\r\n")
        .or_else(|| content.strip_suffix('\n'))
        .unwrap_or(&content);
    Ok(format!(
        "<file name=\"{}\">\n{content}\n</file>",
        path.display()
    ))
}

/// Reads all of `input` as UTF-8, refusing to go past what is left of the input `budget`.
pub fn read_text(input: impl Read, name: &str, budget: &mut u64) -> Result<String> {
    let mut bytes = Vec::new();
    input
        .take(*budget + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))
        .map_err(|e| Error::new(Kind::LocalIo, e))?;
    if bytes.len() as u64 > *budget {
        let mib = MAX_INPUT >> 20;
        return Err(Error::msg(
            Kind::Input,
            if *budget == MAX_INPUT {
                format!("{name} is larger than {mib} MiB; refusing to send it cut")
            } else {
                format!(
                    "{name} takes the input (files, stdin and --messages together) past {mib} \
                     MiB; refusing to send it cut"
                )
            },
        ));
    }
    *budget -= bytes.len() as u64;
    String::from_utf8(bytes).map_err(|e| {
        Error::msg(
            Kind::Input,
            format!(
                "{name} is not valid UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn parse_messages(text: &str, name: &str) -> Result<Vec<Message>> {
    let invalid = |why: String| {
        Error::msg(Kind::Input, format!("invalid messages in {name}: {why}"))
            .with_hint(r#"expected a JSON array like [{"role": "user", "content": "hi"}]"#)
    };
    // Read straight into messages, the one reading that sees a key given twice (a `Value`
    // keeps the last silently); on failure, read again for a message that names the element.
    let direct = match serde_json::from_str::<Vec<Message>>(text) {
        Ok(messages) => return Ok(messages),
        Err(e) => e,
    };
    let items: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(invalid("the top level is not an array".into())),
        Err(e) => return Err(invalid(e.to_string())),
    };
    for (i, item) in items.into_iter().enumerate() {
        serde_json::from_value::<Message>(item)
            .map_err(|e| invalid(format!("element {i}: {e}")))?;
    }
    Err(invalid(direct.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::config::PromptSources;
    use crate::printer::Verbosity;
    use clap::Parser;

    /// The messages a single request with `sources` sends.
    fn messages(sources: &PromptSources, stdin: &mut dyn Read) -> Result<Vec<Message>> {
        let cli = Cli::try_parse_from(["bnx", "--dry-run"]).unwrap();
        let mut config = Config::resolve(cli, "default".into(), |_| None, true).unwrap();
        config.prompt = sources.clone();
        let printer = Printer::new(Verbosity::Quiet);
        let composer = Composer::new(&config, stdin, false, &printer)?;
        Ok(composer.request(&Overrides::default())?.body.messages)
    }

    fn sources(words: &[&str], read_stdin: bool) -> PromptSources {
        PromptSources {
            words: words.iter().map(|w| w.to_string()).collect(),
            read_stdin,
            ..Default::default()
        }
    }

    fn user_text(sources: &PromptSources, stdin: &str) -> Result<String> {
        let msgs = messages(sources, &mut stdin.as_bytes())?;
        Ok(msgs.last().unwrap().content.clone())
    }

    #[test]
    fn words_are_joined_and_stdin_follows_after_a_blank_line() {
        assert_eq!(user_text(&sources(&["a", "b"], false), "").unwrap(), "a b");
        assert_eq!(
            user_text(&sources(&["sum", "up"], true), "x\n").unwrap(),
            "sum up\n\nx\n"
        );
        assert_eq!(
            user_text(&sources(&[], true), "  data\n").unwrap(),
            "  data\n"
        );
    }

    #[test]
    fn blank_stdin_counts_as_absent() {
        assert_eq!(user_text(&sources(&["q"], true), " \n\t\n").unwrap(), "q");
        let err = user_text(&sources(&[], true), "\n").unwrap_err();
        assert_eq!(err.kind, Kind::Usage);
        assert_eq!(
            user_text(&sources(&[""], false), "").unwrap_err().kind,
            Kind::Usage
        );
    }

    #[test]
    fn stdin_is_not_read_unless_asked() {
        assert_eq!(user_text(&sources(&["q"], false), "ignored").unwrap(), "q");
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let mut input: &[u8] = b"ok\xff";
        let err = messages(&sources(&[], true), &mut input).unwrap_err();
        assert_eq!(err.kind, Kind::Input);
        assert!(err.line().contains("offset 2"), "{}", err.line());
    }

    #[test]
    fn oversized_input_is_refused_not_cut() {
        let mut big = std::io::repeat(b'a').take(MAX_INPUT + 1);
        let err = messages(&sources(&[], true), &mut big).unwrap_err();
        assert_eq!(err.kind, Kind::Input);
    }

    #[test]
    fn files_come_between_the_words_and_stdin_each_in_its_block() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.rs");
        let b = dir.path().join("b.txt");
        std::fs::write(&a, "fn main() {}\n").unwrap();
        std::fs::write(&b, "two\n\n").unwrap();
        let mut s = sources(&["review", "these"], true);
        s.files = vec![a.clone(), b.clone()];
        let (a, b) = (a.display(), b.display());
        assert_eq!(
            user_text(&s, "piped\n").unwrap(),
            format!(
                "review these\n\n<file name=\"{a}\">\nfn main() {{}}\n</file>\n\n\
                 <file name=\"{b}\">\ntwo\n\n</file>\n\npiped\n"
            )
        );
        s.words.clear();
        s.read_stdin = false;
        s.files.truncate(1);
        assert_eq!(
            user_text(&s, "").unwrap(),
            format!("<file name=\"{a}\">\nfn main() {{}}\n</file>")
        );
    }

    #[test]
    fn a_missing_directory_or_binary_file_is_exit_65_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("bin");
        std::fs::write(&binary, b"ab\xff").unwrap();
        for (path, why) in [
            (dir.path().join("missing"), "No such file"),
            (dir.path().to_path_buf(), "is a directory"),
            (binary, "not valid UTF-8 (invalid byte at offset 2)"),
        ] {
            let mut s = sources(&["q"], false);
            s.files = vec![path.clone()];
            let err = user_text(&s, "").unwrap_err();
            assert_eq!(err.kind, Kind::Input, "{}", err.line());
            assert!(
                err.line().contains(&path.display().to_string()),
                "{}",
                err.line()
            );
            assert!(err.line().contains(why), "{}", err.line());
        }
    }

    #[test]
    fn files_and_stdin_share_one_input_limit() {
        let dir = tempfile::tempdir().unwrap();
        let half = dir.path().join("half");
        std::fs::File::create(&half)
            .unwrap()
            .set_len(MAX_INPUT / 2 + 1)
            .unwrap();
        let mut s = sources(&[], true);
        s.files = vec![half];
        let mut stdin = std::io::repeat(b'a').take(MAX_INPUT / 2);
        let err = messages(&s, &mut stdin).unwrap_err();
        assert_eq!(err.kind, Kind::Input);
        assert!(
            err.line().contains("standard input takes the input"),
            "{}",
            err.line()
        );
    }

    #[test]
    fn system_comes_first() {
        let mut s = sources(&["hi"], false);
        s.system = Some("be brief".into());
        let msgs = messages(&s, &mut &b""[..]).unwrap();
        assert_eq!(
            msgs,
            [
                Message::new("system", "be brief"),
                Message::new("user", "hi")
            ]
        );
    }

    #[test]
    fn messages_from_stdin_then_prompt_appended() {
        let mut s = sources(&["and", "now?"], true);
        s.messages = Some("-".into());
        let stdin = r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]"#;
        let msgs = messages(&s, &mut stdin.as_bytes()).unwrap();
        assert_eq!(
            msgs,
            [
                Message::new("user", "a"),
                Message::new("assistant", "b"),
                Message::new("user", "and now?")
            ]
        );
    }

    #[test]
    fn bad_messages_name_the_position() {
        let mut s = sources(&[], false);
        s.messages = Some("-".into());
        let cases = [
            ("[{\"role\":\"user\",\n \"content\": }]", "line 2 column"),
            (r#"{"role":"user"}"#, "not an array"),
            (
                r#"[{"role":"user","content":"a"},{"role":"user"}]"#,
                "element 1: missing field `content`",
            ),
            (
                r#"[{"role":"user","content":3}]"#,
                "element 0: invalid type",
            ),
            (
                r#"[{"role":"user","content":"a","x":1}]"#,
                "element 0: unknown field `x`",
            ),
        ];
        for (input, expected) in cases {
            let err = messages(&s, &mut input.as_bytes()).unwrap_err();
            assert_eq!(err.kind, Kind::Input, "{input}");
            assert!(err.line().contains(expected), "{input}: {}", err.line());
        }
        let err = messages(&s, &mut &b"[]"[..]).unwrap_err();
        assert_eq!(err.kind, Kind::Usage);
    }

    #[test]
    fn a_key_given_twice_is_refused_not_resolved() {
        let mut s = sources(&[], false);
        s.messages = Some("-".into());
        let input = r#"[{"role":"user","content":"a"},
            {"role":"user","content":"b","role":"system"}]"#;
        let err = messages(&s, &mut input.as_bytes()).unwrap_err();
        assert_eq!(err.kind, Kind::Input);
        assert!(
            err.line().contains("duplicate field `role` at line 2"),
            "{}",
            err.line()
        );
    }

    #[test]
    fn a_messages_directory_is_bad_input_like_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        for path in [dir.path().to_path_buf(), dir.path().join("missing")] {
            let mut s = sources(&[], false);
            s.messages = Some(path.clone());
            let err = messages(&s, &mut &b""[..]).unwrap_err();
            assert_eq!(err.kind, Kind::Input, "{}", path.display());
            assert!(err.line().contains(&path.display().to_string()));
        }
    }
}
