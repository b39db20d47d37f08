//! The completion scripts committed in `completions/` must match what `bnx --completions`
//! prints, so a new or renamed flag cannot ship with stale completions.

use crate::util::*;

const SHELLS: [(&str, &str); 5] = [
    ("bash", "bnx.bash"),
    ("zsh", "_bnx"),
    ("fish", "bnx.fish"),
    ("elvish", "bnx.elv"),
    ("powershell", "_bnx.ps1"),
];

fn check(shell: &str) {
    let (_, file) = SHELLS.iter().find(|(s, _)| *s == shell).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = bnx_in(dir.path())
        .args(["--completions", shell])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let path = format!("{}/completions/{file}", env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == output.stdout,
        "completions/{file} is stale; regenerate it with:\n  cargo run --bin bnx -- --completions {shell} > completions/{file}"
    );
}

#[test]
fn bash_completions_are_current() {
    check("bash");
}

#[test]
fn zsh_completions_are_current() {
    check("zsh");
}

#[test]
fn fish_completions_are_current() {
    check("fish");
}

#[test]
fn elvish_completions_are_current() {
    check("elvish");
}

#[test]
fn powershell_completions_are_current() {
    check("powershell");
}

/// A shell without a script is a usage error whose hint says which shells have one, not which
/// other shell is spelled alike (`tcsh` is not `zsh`).
#[test]
fn a_shell_without_a_script_names_the_shells_that_have_one() {
    let dir = tempfile::tempdir().unwrap();
    bnx_in(dir.path())
        .args(["--completions", "tcsh"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "bnx: error: invalid value 'tcsh' for '--completions <SHELL>' [possible values: \
             bash, elvish, fish, powershell, zsh]\n\
             hint: bnx writes completion scripts for bash, elvish, fish, powershell and zsh, \
             not for \"tcsh\"\n",
        );
}
