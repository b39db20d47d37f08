//! The last conversation of each agent, kept so that `--continue` can pick it up.
//!
//! One small file per agent under the state directory, replaced atomically (write a temporary
//! file, then rename), so a reader never sees half an id and two runs never interleave.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::config::Conversation;
use crate::printer::Printer;

/// A conversation id longer than this, or with characters other than visible ASCII, is not an
/// id this program will store and send back.
const MAX_ID_LEN: usize = 256;

fn path(state_dir: &Path, agent: &str) -> PathBuf {
    let name = utf8_percent_encode(agent, NON_ALPHANUMERIC).to_string();
    state_dir.join("conversations").join(name)
}

pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The conversation id to send, if any.
pub fn conversation_to_send(
    conversation: &Conversation,
    state_dir: Option<&Path>,
    agent: &str,
    printer: &Printer,
) -> Option<String> {
    match conversation {
        Conversation::New => None,
        Conversation::Id(id) => Some(id.clone()),
        Conversation::Continue => {
            let last = state_dir.and_then(|dir| load(dir, agent));
            if last.is_none() {
                printer.notice(&format!(
                    "no saved conversation for agent {agent:?}: starting a new one"
                ));
            }
            last
        }
    }
}

/// Remembers the conversation of a successful answer; failing to is only a warning.
pub fn remember(state_dir: Option<&Path>, agent: &str, id: &str, printer: &Printer) {
    let saved = match state_dir {
        Some(dir) => save(dir, agent, id).map_err(|e| format!("{}: {e}", dir.display())),
        None => Err("neither XDG_STATE_HOME nor HOME is set".to_string()),
    };
    if let Err(why) = saved {
        printer.notice(&format!(
            "warning: cannot save the conversation for --continue ({why})"
        ));
    }
}

/// The agent's last conversation id, if one was saved and is still readable.
pub fn load(state_dir: &Path, agent: &str) -> Option<String> {
    let id = fs::read_to_string(path(state_dir, agent)).ok()?;
    let id = id.trim();
    is_valid_id(id).then(|| id.to_string())
}

pub fn save(state_dir: &Path, agent: &str, id: &str) -> io::Result<()> {
    let target = path(state_dir, agent);
    let dir = target.parent().expect("the path has a parent");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("conversation"),
        std::process::id()
    ));
    let result = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(id.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_per_agent() {
        let dir = std::env::temp_dir().join(format!("bnx-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(load(&dir, "a/b"), None);
        save(&dir, "a/b", "conv-1").unwrap();
        save(&dir, "other", "conv-2").unwrap();
        save(&dir, "a/b", "conv-3").unwrap();
        assert_eq!(load(&dir, "a/b").as_deref(), Some("conv-3"));
        assert_eq!(load(&dir, "other").as_deref(), Some("conv-2"));
        let names: Vec<_> = fs::read_dir(dir.join("conversations")).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary files left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_ids_are_not_valid() {
        assert!(is_valid_id("conv-xyz"));
        for bad in ["", "a b", "a\nb", &"x".repeat(257)] {
            assert!(!is_valid_id(bad));
        }
    }
}
