//! Finding the access token, and keeping it out of every output.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context;

use crate::duration::secs;
use crate::error::{Error, Kind, Result};
use crate::interrupt;

/// A token from any source larger than this is refused, never cut: it is not a token.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token command that has not finished by then is killed with its process group.
const TOKEN_COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// The access token. Its `Debug` and `Display` print `***`, so no log line or error message can
/// carry it by accident; `expose` is the one way to the value, used for the header alone.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Trims surrounding whitespace and refuses what cannot be sent as a header value intact.
    /// `source` names what held the token, as the subject of the error message: "token file
    /// PATH", "BLUENEXUS_TOKEN", "the output of the token command (--token-cmd)".
    pub(crate) fn parse(raw: &str, source: &str) -> Result<Secret> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(Error::msg(
                Kind::Config,
                format!(
                    "{source} is larger than {} KiB: refusing it rather than cutting it",
                    MAX_TOKEN_BYTES >> 10
                ),
            ));
        }
        let token = raw.trim();
        if token.is_empty() {
            return Err(Error::msg(Kind::Config, format!("{source} is empty")));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::msg(
                Kind::Config,
                format!("{source} contains whitespace, control or non-ASCII characters"),
            ));
        }
        Ok(Secret(token.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a token may come from, in the order they are tried.
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    pub command: Option<&'a str>,
    pub env_token: Option<OsString>,
    pub env_command: Option<OsString>,
    pub default_file: Option<PathBuf>,
}

/// The source a token will be taken from. A command is only named here: `read` runs it.
pub enum Source {
    File(PathBuf),
    Command { command: String, name: &'static str },
    Value(Secret),
}

impl Source {
    pub fn read(self) -> Result<Secret> {
        match self {
            Source::File(path) => read_file(&path),
            Source::Command { command, name } => run_command(&command, name),
            Source::Value(secret) => Ok(secret),
        }
    }

    /// What `--dry-run` learns about the token without side effects: a file is read and
    /// checked, a command is not run (it may ask a password manager, or a network).
    pub fn check(self) -> Result<()> {
        match self {
            Source::Command { .. } => Ok(()),
            source => source.read().map(drop),
        }
    }
}

pub fn pick(sources: Sources) -> Result<Source> {
    if let Some(path) = sources.file {
        return Ok(Source::File(path.to_owned()));
    }
    if let Some(command) = sources.command {
        return Ok(Source::Command {
            command: command.to_owned(),
            name: "the token command (--token-cmd)",
        });
    }
    if let Some(token) = sources.env_token {
        let token = token
            .into_string()
            .map_err(|_| Error::msg(Kind::Config, "BLUENEXUS_TOKEN is not valid UTF-8"))?;
        return Secret::parse(&token, "BLUENEXUS_TOKEN").map(Source::Value);
    }
    if let Some(command) = sources.env_command {
        let command = command
            .into_string()
            .map_err(|_| Error::msg(Kind::Config, "BLUENEXUS_TOKEN_CMD is not valid UTF-8"))?;
        return Ok(Source::Command {
            command,
            name: "the token command (BLUENEXUS_TOKEN_CMD)",
        });
    }
    match sources.default_file {
        Some(path) if path.exists() => Ok(Source::File(path)),
        default_file => Err(
            Error::msg(Kind::Config, "no access token").with_hint(format!(
                "give one with --token-file PATH, --token-cmd CMD, BLUENEXUS_TOKEN, \
             BLUENEXUS_TOKEN_CMD or the file {}",
                default_file.map_or_else(
                    || "$XDG_CONFIG_HOME/bluenexus/token".to_string(),
                    |p| p.display().to_string()
                )
            )),
        ),
    }
}

/// Reads a token file: a regular file that only its owner can read or write. A FIFO, a
/// directory or a device is refused before it is opened for reading, which could block forever.
fn read_file(path: &Path) -> Result<Secret> {
    let name = path.display();
    let cannot_read = |e: std::io::Error| {
        Error::new(
            Kind::Config,
            anyhow::Error::new(e).context(format!("cannot read token file {name}")),
        )
    };
    let before = fs::metadata(path).map_err(cannot_read)?;
    if let Some(what) = not_regular(&before) {
        return Err(Error::msg(
            Kind::Config,
            format!("token file {name} is {what}, not a regular file"),
        ));
    }
    // Non-blocking, so that a FIFO swapped in since the check cannot hang the open; then the
    // opened file must be the one checked.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot_read)?;
    let opened = file.metadata().map_err(cannot_read)?;
    if not_regular(&opened).is_some()
        || (opened.dev(), opened.ino()) != (before.dev(), before.ino())
    {
        return Err(Error::msg(
            Kind::Config,
            format!("token file {name} changed while it was being read"),
        ));
    }
    let mode = opened.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(Error::msg(
            Kind::Config,
            format!(
                "token file {name} is readable or writable by others (mode {:o})",
                mode & 0o777
            ),
        )
        .with_hint(format!("chmod 600 {name}")));
    }
    let mut raw = Vec::new();
    file.take(MAX_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(cannot_read)?;
    let source = format!("token file {name}");
    let raw = String::from_utf8(raw)
        .map_err(|_| Error::msg(Kind::Config, format!("{source} is not UTF-8 text")))?;
    Secret::parse(&raw, &source)
}

/// What a file that is not a regular file is, for a message.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    match () {
        _ if kind.is_file() => None,
        _ if kind.is_dir() => Some("a directory"),
        _ if kind.is_fifo() => Some("a FIFO"),
        _ if kind.is_socket() => Some("a socket"),
        _ if kind.is_char_device() || kind.is_block_device() => Some("a device"),
        _ => Some("not a file"),
    }
}

/// Runs `sh -c command` in a process group of its own, killed with all of it if it has not
/// finished within 30 s or if `bnx` is interrupted meanwhile. Its stdin is closed so it cannot
/// eat the prompt piped to us (nor prompt on the terminal: it runs in the background); its
/// stderr is passed through (a password manager's own message); its output is never shown.
/// `name` names the command in messages: "the token command (--token-cmd)".
fn run_command(command: &str, name: &str) -> Result<Secret> {
    run_command_within(command, name, TOKEN_COMMAND_LIMIT)
}

fn run_command_within(command: &str, name: &str, limit: Duration) -> Result<Secret> {
    let (mut child, _on_interrupt) = interrupt::started(|| {
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let group = Group(child.id() as libc::pid_t);
        Ok((child, move |_| group.kill()))
    })
    .with_context(|| format!("cannot run {name}"))
    .map_err(|e| Error::new(Kind::Config, e))?;
    let group = Group(child.id() as libc::pid_t);
    let stdout = child.stdout.take().expect("stdout is piped");
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let mut raw = Vec::new();
        let read = stdout
            .take(MAX_TOKEN_BYTES as u64 + 1)
            .read_to_end(&mut raw);
        // Past the limit the command is not waited for: it is killed below.
        let status = (raw.len() <= MAX_TOKEN_BYTES).then(|| child.wait());
        let _ = done.send((read, raw, status));
    });
    let Ok((read, raw, status)) = finished.recv_timeout(limit) else {
        group.kill();
        return Err(Error::msg(
            Kind::Config,
            format!(
                "{name} did not finish within {}s and was stopped",
                secs(limit)
            ),
        ));
    };
    let status = match status {
        Some(status) => status
            .with_context(|| format!("cannot run {name}"))
            .map_err(|e| Error::new(Kind::Config, e))?,
        None => {
            group.kill();
            return Err(Error::msg(
                Kind::Config,
                format!(
                    "{name} printed more than {} KiB: that is not a token",
                    MAX_TOKEN_BYTES >> 10
                ),
            ));
        }
    };
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "a signal".to_string(),
        };
        return Err(Error::msg(
            Kind::Config,
            format!("{name} failed with {how}"),
        ));
    }
    if read.is_err() {
        return Err(Error::msg(
            Kind::Config,
            format!("cannot read the output of {name}"),
        ));
    }
    let raw = String::from_utf8(raw).map_err(|_| {
        Error::msg(
            Kind::Config,
            format!("{name} printed something that is not UTF-8"),
        )
    })?;
    Secret::parse(&raw, &format!("the output of {name}"))
}

/// A token command's process group.
#[derive(Debug, Clone, Copy)]
struct Group(libc::pid_t);

impl Group {
    fn kill(self) {
        // SAFETY: kill(2) on the group of a child we started, which leads it (process_group(0)).
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Sources<'static> {
        Sources {
            file: None,
            command: None,
            env_token: None,
            env_command: None,
            default_file: None,
        }
    }

    fn resolve(sources: Sources) -> Result<Secret> {
        pick(sources)?.read()
    }

    #[test]
    fn secret_never_formats_its_value() {
        let secret = Secret::parse("  abc123 \n", "test").unwrap();
        assert_eq!(secret.expose(), "abc123");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }

    #[test]
    fn tokens_that_could_split_a_header_are_refused() {
        for bad in ["a b", "a\r\nX-Evil: 1", "a\tb", "tök", ""] {
            let err = Secret::parse(bad, "test").unwrap_err();
            assert_eq!(err.kind, Kind::Config, "{bad:?}");
            assert!(!err.line().contains("Evil"));
        }
    }

    #[test]
    fn precedence_is_flag_file_then_command_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        write_private(&file, "from-file");
        let resolved = |s: Sources| resolve(s).map(|t| t.expose().to_string());

        let mut all = sources();
        all.file = Some(&file);
        all.command = Some("echo from-cmd");
        all.env_token = Some("from-env".into());
        all.env_command = Some("echo from-env-cmd".into());
        assert_eq!(resolved(all).unwrap(), "from-file");

        let mut no_file = sources();
        no_file.command = Some("echo from-cmd");
        no_file.env_token = Some("from-env".into());
        assert_eq!(resolved(no_file).unwrap(), "from-cmd");

        let mut env = sources();
        env.env_token = Some("from-env".into());
        env.env_command = Some("echo from-env-cmd".into());
        env.default_file = Some(file.clone());
        assert_eq!(resolved(env).unwrap(), "from-env");

        let mut env_cmd = sources();
        env_cmd.env_command = Some("echo from-env-cmd".into());
        env_cmd.default_file = Some(file.clone());
        assert_eq!(resolved(env_cmd).unwrap(), "from-env-cmd");

        let mut default = sources();
        default.default_file = Some(file.clone());
        assert_eq!(resolved(default).unwrap(), "from-file");

        let err = resolve(sources()).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(err.hint.as_deref().unwrap().contains("--token-cmd"));
    }

    #[test]
    fn messages_name_the_source_once_and_read_as_sentences() {
        let err = run_command("true", "the token command (--token-cmd)").unwrap_err();
        assert_eq!(
            err.line(),
            "the output of the token command (--token-cmd) is empty"
        );
        let err = run_command("exit 4", "the token command (BLUENEXUS_TOKEN_CMD)").unwrap_err();
        assert_eq!(
            err.line(),
            "the token command (BLUENEXUS_TOKEN_CMD) failed with exit status 4"
        );
        let mut env = sources();
        env.env_token = Some(" ".into());
        assert_eq!(resolve(env).unwrap_err().line(), "BLUENEXUS_TOKEN is empty");
    }

    #[test]
    fn group_readable_token_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        write_private(&file, "secret-value");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_file(&file).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(err.hint.as_deref().unwrap().starts_with("chmod 600"));
        assert!(!err.line().contains("secret-value"));
    }

    #[test]
    fn failing_or_silent_token_command_is_a_config_error() {
        for cmd in ["exit 3", "true", "kill -9 $$"] {
            let err = run_command(cmd, "test").unwrap_err();
            assert_eq!(err.kind, Kind::Config, "{cmd}");
        }
        let err = run_command("echo leaked-secret; exit 1", "test").unwrap_err();
        assert!(!err.line().contains("leaked-secret"));
    }

    #[test]
    fn a_token_over_16_kib_is_refused_from_every_source_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big-token");
        let padded = format!("tok-{}junk", " ".repeat(70_000));
        write_private(&file, &padded);
        let err = read_file(&file).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(err.line().contains("larger than 16 KiB"), "{}", err.line());
        let huge = "x".repeat(16 * 1024 + 1);
        let mut env = sources();
        env.env_token = Some(huge.clone().into());
        assert!(resolve(env)
            .unwrap_err()
            .line()
            .contains("larger than 16 KiB"));
        let err = run_command(&format!("printf {huge}"), "test").unwrap_err();
        assert!(err.line().contains("more than 16 KiB"), "{}", err.line());
        let endless = run_command("yes tok", "test").unwrap_err();
        assert_eq!(endless.kind, Kind::Config);
        let just_fits = "y".repeat(16 * 1024);
        let mut env = sources();
        env.env_token = Some(just_fits.clone().into());
        assert_eq!(resolve(env).unwrap().expose(), just_fits);
    }

    #[test]
    fn only_a_regular_file_is_read_and_a_fifo_is_never_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let err = read_file(&fifo).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(
            err.line().contains("is a FIFO, not a regular file"),
            "{}",
            err.line()
        );
        let err = read_file(dir.path()).unwrap_err();
        assert!(err.line().contains("a directory"), "{}", err.line());
        let err = read_file(Path::new("/dev/null")).unwrap_err();
        assert!(err.line().contains("a device"), "{}", err.line());
    }

    #[test]
    fn a_token_command_past_its_limit_is_killed_with_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleeper.pid");
        let command = format!("sleep 100 & echo $! > '{}'; wait", pid_file.display());
        let started = std::time::Instant::now();
        let err = run_command_within(&command, "test", Duration::from_millis(500)).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(
            err.line().contains("did not finish within 0.5s"),
            "{}",
            err.line()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: libc::pid_t = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_running(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep {pid} still runs"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Alive and not a zombie waiting to be reaped.
    fn is_running(pid: libc::pid_t) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    fn write_private(path: &Path, content: &str) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
