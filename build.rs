//! `bnx --version` names the target and, when built from a git checkout, the commit:
//! `0.1.0 (x86_64-unknown-linux-gnu, commit 1a2b3c4)`. Without git (a source tarball, a
//! `git` that refuses the directory, a copy inside another repository) the commit is left out, silently. It is computed here,
//! once per build, so start-up pays nothing for it.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let mut version = format!("{} ({target}", env!("CARGO_PKG_VERSION"));
    // Only this project's own checkout: a copy vendored into another repository has no commit
    // of its own to name.
    let own_checkout = git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| {
        Path::new(&top).canonicalize().ok()
            == Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().ok()
    });
    let commit = own_checkout
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten();
    if let Some(commit) = commit {
        version.push_str(&format!(", commit {commit}"));
        // A new commit or a checkout changes these files, and so the version.
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = ["HEAD", "packed-refs"]
            .into_iter()
            .map(str::to_string)
            .chain(head_ref);
        for name in watched {
            if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
                if Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
    version.push(')');
    println!("cargo:rustc-env=BNX_LONG_VERSION={version}");
}

/// What `git ARGS` prints, trimmed, when it succeeds with something to say.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_string())
}
