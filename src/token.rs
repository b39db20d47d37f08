//! Finding the access token, and keeping it out of every output.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::error::{Error, Kind, Result};

/// A token file or command printing more than this is not printing a token.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

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

pub fn resolve(sources: Sources) -> Result<Secret> {
    if let Some(path) = sources.file {
        return read_file(path);
    }
    if let Some(command) = sources.command {
        return run_command(command, "the token command (--token-cmd)");
    }
    if let Some(token) = sources.env_token {
        let token = token
            .into_string()
            .map_err(|_| Error::msg(Kind::Config, "BLUENEXUS_TOKEN is not valid UTF-8"))?;
        return Secret::parse(&token, "BLUENEXUS_TOKEN");
    }
    if let Some(command) = sources.env_command {
        let command = command
            .into_string()
            .map_err(|_| Error::msg(Kind::Config, "BLUENEXUS_TOKEN_CMD is not valid UTF-8"))?;
        return run_command(&command, "the token command (BLUENEXUS_TOKEN_CMD)");
    }
    match sources.default_file {
        Some(path) if path.exists() => read_file(&path),
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

fn read_file(path: &Path) -> Result<Secret> {
    let config_error = |e: anyhow::Error| Error::new(Kind::Config, e);
    let file = File::open(path)
        .with_context(|| format!("cannot read token file {}", path.display()))
        .map_err(config_error)?;
    let mode = file
        .metadata()
        .with_context(|| format!("cannot read token file {}", path.display()))
        .map_err(config_error)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::msg(
            Kind::Config,
            format!(
                "token file {} is readable or writable by others (mode {:o})",
                path.display(),
                mode & 0o777
            ),
        )
        .with_hint(format!("chmod 600 {}", path.display())));
    }
    let mut raw = String::new();
    file.take(MAX_TOKEN_BYTES)
        .read_to_string(&mut raw)
        .with_context(|| format!("cannot read token file {} as UTF-8 text", path.display()))
        .map_err(config_error)?;
    Secret::parse(&raw, &format!("token file {}", path.display()))
}

/// Runs `sh -c command`. Its stdin is closed so it cannot eat the prompt piped to us; its
/// stderr is passed through (a password manager's own message); its output is never shown.
/// `name` names the command in messages: "the token command (--token-cmd)".
fn run_command(command: &str, name: &str) -> Result<Secret> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {name}"))
        .map_err(|e| Error::new(Kind::Config, e))?;
    let mut raw = Vec::new();
    let read = child
        .stdout
        .take()
        .map(|out| out.take(MAX_TOKEN_BYTES).read_to_end(&mut raw));
    let status = child
        .wait()
        .with_context(|| format!("cannot run {name}"))
        .map_err(|e| Error::new(Kind::Config, e))?;
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
    if !matches!(read, Some(Ok(_))) {
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
        let dir = tempdir();
        let file = dir.join("token");
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
    fn group_readable_token_file_is_refused_with_the_fix() {
        let dir = tempdir();
        let file = dir.join("token");
        write_private(&file, "secret-value");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_file(&file).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(err.hint.as_deref().unwrap().starts_with("chmod 600"));
        assert!(!err.line().contains("secret-value"));
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
    fn failing_or_silent_token_command_is_a_config_error() {
        for cmd in ["exit 3", "true", "kill -9 $$"] {
            let err = run_command(cmd, "test").unwrap_err();
            assert_eq!(err.kind, Kind::Config, "{cmd}");
        }
        let err = run_command("echo leaked-secret; exit 1", "test").unwrap_err();
        assert!(!err.line().contains("leaked-secret"));
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bnx-token-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_private(path: &Path, content: &str) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
