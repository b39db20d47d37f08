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
