//! This machine's pacing store: one small JSON file per (origin, token) key, read and replaced
//! under an exclusive lock, so every `bnx` process of the user shares it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rule::{ms, now_ms, reserve, Millis, Slots};
use super::Store;
use crate::rate::Rate;

/// A state file holds at most `--rate-limit`'s N times; past this it is not ours to read.
const MAX_STATE: u64 = 1 << 20;

/// One small JSON file per key in a directory, read and replaced under an exclusive lock.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Creates the directory; only the user may enter it.
    pub fn open(dir: &Path) -> io::Result<FileStore> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The state file of `key`, locked. Whatever else stands at its path (a link, a FIFO, a
    /// device) is refused rather than followed, waited on or read without end.
    fn locked(&self, key: &str) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.dir.join(key))?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("the pacing state is not a regular file"));
        }
        file.lock()?;
        Ok(file)
    }

    /// Applies `change` to the slots of `key` while holding its file's lock.
    fn update<T>(&self, key: &str, change: impl FnOnce(&mut Slots) -> T) -> io::Result<T> {
        let mut file = self.locked(key)?;
        let mut text = String::new();
        (&mut file).take(MAX_STATE).read_to_string(&mut text)?;
        // A file torn by a crash mid-write, or written by a future version, starts afresh:
        // the worst case is one window that is not paced.
        let now = now_ms();
        let mut slots = serde_json::from_str::<Slots>(&text)
            .unwrap_or_default()
            .as_of(now);
        let result = change(&mut slots);
        slots.written = now;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(&serde_json::to_vec(&slots).expect("slots serialize"))?;
        Ok(result)
    }
}

impl Store for FileStore {
    fn reserve(
        &self,
        key: &str,
        rate: Rate,
        limit: Duration,
    ) -> io::Result<std::result::Result<Duration, Duration>> {
        self.update(key, |slots| {
            let now = now_ms();
            let wait = |at: Millis| Duration::from_millis(at - now);
            reserve(slots, now, rate, limit)
                .map(wait)
                .map_err(Duration::from_millis)
        })
    }

    fn pause(&self, key: &str, wait: Duration) -> io::Result<()> {
        self.update(key, |slots| {
            let until = now_ms().saturating_add(ms(wait));
            slots.paused_until = slots.paused_until.max(until);
        })
    }
}

/// This machine's store for `key`: a state file under `pace_dir`. `Err` says why it cannot be
/// used, for a warning.
pub fn local(pace_dir: Option<&Path>, key: &str) -> std::result::Result<FileStore, String> {
    let dir = pace_dir.ok_or("neither XDG_STATE_HOME nor HOME is set")?;
    FileStore::open(dir)
        // Opening and locking the state file proves, before it matters, that it can be used.
        .and_then(|store| store.locked(key).map(|_| store))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_store_keeps_slots_between_openings() {
        let dir = tempfile::tempdir().unwrap();
        let rate = Rate {
            requests: 2,
            window: Duration::from_secs(60),
        };
        let limit = Duration::from_secs(1);
        for _ in 0..2 {
            let store = FileStore::open(dir.path()).unwrap();
            assert!(store.reserve("k", rate, limit).unwrap().is_ok());
        }
        let store = FileStore::open(dir.path()).unwrap();
        assert!(store.reserve("k", rate, limit).unwrap().is_err());
        assert!(store.reserve("other", rate, limit).unwrap().is_ok());
        fs::write(dir.path().join("k"), "torn{").unwrap();
        assert!(store.reserve("k", rate, limit).unwrap().is_ok());
    }
}
