//! The last conversation of each (API origin, agent) pair, kept so that `--continue` can pick
//! it up, and so that a run against another server (a local `bnx-mock` in CI, a staging
//! gateway) never reads or replaces the one kept for the real API.
//!
//! One small file per pair, named by a SHA-256 digest of the pair: a name is never too long
//! (an agent id may be hundreds of characters) and never carries what a user typed. It is
//! replaced atomically (a temporary file in the same directory, then rename), so a reader
//! never sees half an id and two runs never interleave.
//!
//! Before conversations were kept per origin they were kept per agent, in `conversations/`;
//! for the default origin, such a file is still read.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest;
use crate::endpoint::DEFAULT_BASE_URL;
use crate::printer::Printer;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// A conversation id longer than this, or with characters other than visible ASCII, is not an
/// id this program will store and send back.
const MAX_ID_LEN: usize = 256;

const DIR: &str = "conversations-by-api";
const LEGACY_DIR: &str = "conversations";

fn path(state_dir: &Path, origin: &str, agent: &str) -> PathBuf {
    state_dir
        .join(DIR)
        .join(digest::hex(&[origin.as_bytes(), b"\n", agent.as_bytes()]))
}

/// Where the agent's conversation was kept before origins were told apart.
fn legacy_path(state_dir: &Path, agent: &str) -> PathBuf {
    let name = utf8_percent_encode(agent, NON_ALPHANUMERIC).to_string();
    state_dir.join(LEGACY_DIR).join(name)
}

pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Remembers the conversation of a successful answer; failing to is only a warning.
pub fn remember(state_dir: Option<&Path>, origin: &str, agent: &str, id: &str, printer: &Printer) {
    let saved = match state_dir {
        Some(dir) => save(dir, origin, agent, id).map_err(|e| format!("{}: {e}", dir.display())),
        None => Err("neither XDG_STATE_HOME nor HOME is set".to_string()),
    };
    if let Err(why) = saved {
        printer.notice(&format!(
            "warning: cannot save the conversation for --continue ({why})"
        ));
    }
}

/// The last conversation id with `agent` at `origin`, if one was saved and is still readable.
pub fn load(state_dir: &Path, origin: &str, agent: &str) -> Option<String> {
    let read = |path: PathBuf| fs::read_to_string(path).ok();
    let id = read(path(state_dir, origin, agent)).or_else(|| {
        (origin == DEFAULT_BASE_URL)
            .then(|| read(legacy_path(state_dir, agent)))
            .flatten()
    })?;
    let id = id.trim();
    is_valid_id(id).then(|| id.to_string())
}

pub fn save(state_dir: &Path, origin: &str, agent: &str, id: &str) -> io::Result<()> {
    let target = path(state_dir, origin, agent);
    let dir = target.parent().expect("the path has a parent");
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(id.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_per_origin_and_agent() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let (real, mock) = (DEFAULT_BASE_URL, "http://127.0.0.1:8787");
        assert_eq!(load(dir, real, "a/b"), None);
        save(dir, real, "a/b", "conv-1").unwrap();
        save(dir, real, "other", "conv-2").unwrap();
        save(dir, mock, "a/b", "conv-mock").unwrap();
        save(dir, real, "a/b", "conv-3").unwrap();
        assert_eq!(load(dir, real, "a/b").as_deref(), Some("conv-3"));
        assert_eq!(load(dir, real, "other").as_deref(), Some("conv-2"));
        assert_eq!(load(dir, mock, "a/b").as_deref(), Some("conv-mock"));
        assert_eq!(load(dir, mock, "other"), None);
        let names: Vec<String> = fs::read_dir(dir.join(DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "no temporary files left behind: {names:?}");
        assert!(names.iter().all(|n| n.len() == 64), "{names:?}");
    }

    #[test]
    fn a_long_agent_id_saves() {
        let dir = tempfile::tempdir().unwrap();
        let agent = "é".repeat(250);
        save(dir.path(), DEFAULT_BASE_URL, &agent, "conv-long").unwrap();
        assert_eq!(
            load(dir.path(), DEFAULT_BASE_URL, &agent).as_deref(),
            Some("conv-long")
        );
    }

    #[test]
    fn the_file_of_an_older_version_is_read_for_the_default_origin_only() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        fs::create_dir_all(dir.join(LEGACY_DIR)).unwrap();
        fs::write(dir.join(LEGACY_DIR).join("my%2Dbot"), "conv-old\n").unwrap();
        assert_eq!(
            load(dir, DEFAULT_BASE_URL, "my-bot").as_deref(),
            Some("conv-old")
        );
        assert_eq!(load(dir, "http://127.0.0.1:1", "my-bot"), None);
        save(dir, DEFAULT_BASE_URL, "my-bot", "conv-new").unwrap();
        assert_eq!(
            load(dir, DEFAULT_BASE_URL, "my-bot").as_deref(),
            Some("conv-new")
        );
    }

    #[test]
    fn hostile_ids_are_not_valid() {
        assert!(is_valid_id("conv-xyz"));
        for bad in ["", "a b", "a\nb", &"x".repeat(257)] {
            assert!(!is_valid_id(bad));
        }
    }
}
