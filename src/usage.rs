//! Usage errors that clap finds while parsing the arguments, in `bnx`'s own form: one
//! `bnx: error:` line with clap's message, at most one hint, exit 2, and with `--json` the
//! failure document too.

use std::ffi::OsString;

use crate::error::{Error, Kind};

/// clap's error as ours: its message on one line, its first tip (else `--help`) as the hint.
pub fn from_clap(err: &clap::Error) -> Error {
    let rendered = err.render().to_string();
    let mut message: Vec<&str> = Vec::new();
    let mut tip = None;
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if let Some(text) = line.strip_prefix("tip: ") {
            tip = tip.or(Some(text));
        } else if let Some(text) = line.strip_prefix("error: ") {
            message.push(text);
        } else if !line.is_empty() {
            message.push(line);
        }
    }
    let message = match message.join(" ") {
        joined if joined.is_empty() => "invalid arguments".to_string(),
        joined => joined,
    };
    let hint = match unknown_shell(err) {
        Some(hint) => hint,
        None => tip.unwrap_or("bnx --help lists every option").to_string(),
    };
    Error::msg(Kind::Usage, message).with_hint(hint)
}

/// For a `--completions` shell that has no script, which shells have one. clap's tip names the
/// nearest value, which for a shell is another shell (`tcsh`: "a similar value exists: 'zsh'").
fn unknown_shell(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::ValueEnum;
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.as_str()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    if err.kind() != ErrorKind::InvalidValue || !arg.starts_with("--completions") {
        return None;
    }
    let shells: Vec<String> = clap_complete::Shell::value_variants()
        .iter()
        .filter_map(|shell| Some(shell.to_possible_value()?.get_name().to_string()))
        .collect();
    let (last, others) = shells.split_last()?;
    let value = text(ContextKind::InvalidValue).unwrap_or_default();
    Some(format!(
        "bnx writes completion scripts for {} and {last}, not for {value:?}",
        others.join(", ")
    ))
}

/// Whether `--json` is among `args` (the program name first), before any `--`.
pub fn wants_json(args: impl IntoIterator<Item = OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn refused(args: &[&str]) -> Error {
        from_clap(&Cli::try_parse_from(args).unwrap_err())
    }

    #[test]
    fn clap_errors_become_one_line_and_a_hint() {
        let err = refused(&["bnx", "--no-such-flag", "x"]);
        assert_eq!(err.kind, Kind::Usage);
        assert_eq!(err.line(), "unexpected argument '--no-such-flag' found");
        assert!(err.hint.is_some());
        let err = refused(&["bnx", "--jsn", "x"]);
        assert_eq!(
            err.hint.as_deref(),
            Some("a similar argument exists: '--json'")
        );
        let err = refused(&["bnx", "--temperature", "3"]);
        assert!(
            err.line()
                .starts_with("invalid value '3' for '--temperature <F>'"),
            "{}",
            err.line()
        );
        let err = refused(&["bnx", "-c", "--conversation", "a"]);
        assert!(!err.line().contains('\n'));
        assert_eq!(err.json()["type"], "usage");
    }

    #[test]
    fn an_unknown_shell_hints_at_the_shells_with_a_script_not_a_similar_one() {
        let err = refused(&["bnx", "--completions", "tcsh"]);
        assert_eq!(err.kind, Kind::Usage);
        assert_eq!(
            err.hint.as_deref(),
            Some("bnx writes completion scripts for bash, elvish, fish, powershell and zsh, not for \"tcsh\"")
        );
        let err = refused(&["bnx", "--temperature", "x"]);
        assert_eq!(err.hint.as_deref(), Some("bnx --help lists every option"));
    }

    #[test]
    fn json_is_wanted_when_given_before_any_double_dash() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(args(&["bnx", "--bogus", "--json"])));
        assert!(!wants_json(args(&["bnx", "--bogus", "--", "--json"])));
        assert!(!wants_json(args(&["--json", "x"])), "not the program name");
    }
}
