//! This machine's pacing store: one small JSON file per (origin, token) key, read and replaced
//! under an exclusive lock, so every `bnx` process of the user shares it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rule::{self, ms, now_ms, reserve, Millis, Slots};
use super::Store;
use crate::duration::secs;
use crate::lock;
use crate::rate::Rate;

/// A state file holds at most `--rate-limit`'s N times; past this it is not ours to read.
const MAX_STATE: u64 = 1 << 20;

/// The longest wait for a state file's lock. A process holds it for one read and one write of
/// a small file, well under a millisecond; one that holds it longer is stopped (Ctrl-Z) or
/// stuck, and waiting for it would freeze every `bnx` of the same API and token with it.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// One small JSON file per key in a directory, read and replaced under an exclusive lock.
pub struct FileStore {
    dir: PathBuf,
    /// Why a state that could not be read was started afresh, until the pacer says so.
    reset: Mutex<Option<String>>,
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
            reset: Mutex::new(None),
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
        lock_within(&file, LOCK_WAIT)?;
        Ok(file)
    }

    /// Applies `change` to the slots of `key` while holding its file's lock.
    fn update<T>(&self, key: &str, change: impl FnOnce(&mut Slots) -> T) -> io::Result<T> {
        let mut file = self.locked(key)?;
        let now = now_ms();
        let slots = match read(&mut file) {
            Ok(slots) => slots,
            // Whatever cannot be read (torn by a crash mid-write, bytes that are not UTF-8,
            // too large, written by a future version, an I/O error) starts afresh and is
            // rewritten: the worst case is one window that is not paced, never pacing off.
            Err(why) => {
                let path = self.dir.join(key);
                *self.reset.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{}: {why}", path.display()));
                Slots::default()
            }
        };
        let mut slots = slots.as_of(now);
        let result = change(&mut slots);
        slots.written = now;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(&serde_json::to_vec(&slots).expect("slots serialize"))?;
        Ok(result)
    }

    /// The directory of the state files, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why a state that could not be read was started afresh since this was last asked, for
    /// the pacer's warning.
    pub fn take_reset(&self) -> Option<String> {
        self.reset.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Keeps a slot taken through a fleet's store `wait` from now, so that this file knows it
    /// should it take over.
    pub fn record(&self, key: &str, rate: Rate, wait: Duration) -> io::Result<()> {
        self.update(key, |slots| {
            rule::record(slots, now_ms().saturating_add(ms(wait)), rate)
        })
    }
}

/// Takes `file`'s exclusive lock, waiting at most `limit` for whoever holds it.
fn lock_within(file: &File, limit: Duration) -> io::Result<()> {
    if lock::until(
        file,
        Instant::now() + limit,
        Duration::from_millis(20),
        || {},
    )? {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "another process has held the pacing state's lock for over {}s",
            secs(limit)
        ),
    ))
}

/// The slots a state file holds: none when it is empty (just created).
fn read(file: &mut File) -> Result<Slots, String> {
    let mut bytes = Vec::new();
    file.take(MAX_STATE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_STATE {
        return Err(format!("larger than {} KiB", MAX_STATE >> 10));
    }
    if bytes.is_empty() {
        return Ok(Slots::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
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

    fn per_minute(requests: u32) -> Rate {
        Rate {
            requests,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_file_store_keeps_slots_between_openings() {
        let dir = tempfile::tempdir().unwrap();
        let rate = per_minute(2);
        let limit = Duration::from_secs(1);
        for _ in 0..2 {
            let store = FileStore::open(dir.path()).unwrap();
            assert!(store.reserve("k", rate, limit).unwrap().is_ok());
        }
        let store = FileStore::open(dir.path()).unwrap();
        assert!(store.reserve("k", rate, limit).unwrap().is_err());
        assert!(store.reserve("other", rate, limit).unwrap().is_ok());
        assert_eq!(store.take_reset(), None, "a new, empty file is no reset");
    }

    #[test]
    fn a_state_that_cannot_be_read_starts_afresh_and_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let rate = per_minute(1);
        let limit = Duration::from_secs(1);
        let store = FileStore::open(dir.path()).unwrap();
        let huge = vec![b' '; MAX_STATE as usize + 1];
        for (bad, why) in [
            (&b"torn{"[..], "line 1 column 2"),
            (
                &b"{\"taken\":[1],\"paused_until\":\xff}"[..],
                "line 1 column 29",
            ),
            (&b"\xff\xfe\x00garbage"[..], "line 1 column"),
            (&huge[..], "larger than 1024 KiB"),
        ] {
            fs::write(dir.path().join("k"), bad).unwrap();
            assert!(store.reserve("k", rate, limit).unwrap().is_ok());
            let reset = store.take_reset().unwrap();
            assert!(reset.contains(why), "{reset}");
            assert_eq!(store.take_reset(), None);
            // Rewritten: the slot just taken holds the next request back.
            assert!(store.reserve("k", rate, limit).unwrap().is_err());
            assert_eq!(store.take_reset(), None);
        }
    }

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_only_so_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let holder = File::create(&path).unwrap();
        holder.lock().unwrap();
        let other = File::open(&path).unwrap();
        let started = Instant::now();
        let err = lock_within(&other, Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
        holder.unlock().unwrap();
        lock_within(&other, Duration::from_millis(100)).unwrap();
    }
}
