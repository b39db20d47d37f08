//! The cache on this machine: `answers/` in the cache directory, one file per key named by its
//! digest, and beside each the key's lock (`KEY.lock`). Only the user may enter the directory,
//! and only the user may read its files: answers are private.
//!
//! Whatever stands at an entry's path is read without following a link and without waiting on
//! a FIFO, and only up to [`MAX_ENTRY`] bytes; what is not a regular file is no entry. A new
//! entry is written to a temporary file in the same directory, synced and renamed over the old
//! one, so a reader (or a run killed while storing) sees the old entry or the new one, whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::entry::MAX_ENTRY;
use crate::interrupt;

/// The `answers/` directory of a cache directory.
pub struct Answers {
    dir: PathBuf,
}

impl Answers {
    /// The answers directory under `cache_dir`, made (0700) if need be. `Err` says why it
    /// cannot be used: it cannot be made, or it is another user's or open to group or others,
    /// as ssh refuses such a key directory.
    pub fn open(cache_dir: &Path) -> Result<Answers, String> {
        let dir = cache_dir.join("answers");
        let shown = dir.display();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{shown}: {e}"))?;
        let meta = fs::metadata(&dir).map_err(|e| format!("{shown}: {e}"))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            return Err(format!("{shown} is not a directory"));
        }
        if meta.uid() != me {
            return Err(format!("{shown} belongs to another user"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} is open to group or others (mode {mode:o}; chmod 700 {shown})"
            ));
        }
        Ok(Answers { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bytes of `key`'s entry, if a regular file of a possible size stands there.
    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        let file = open_plain(&self.dir.join(key), false).ok()?;
        let size = file.metadata().ok()?.len();
        if size > MAX_ENTRY as u64 {
            return None;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_ENTRY as u64 + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        (bytes.len() <= MAX_ENTRY).then_some(bytes)
    }

    /// Makes `bytes` the entry of `key`, replacing whatever stood at its path. On any failure
    /// (a full disk) the old entry stays and no temporary file is left; so too on Ctrl-C.
    pub fn write(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let (mut file, _on_interrupt) = interrupt::started(|| {
            let file = tempfile::Builder::new()
                .prefix(".")
                .suffix(".tmp")
                .tempfile_in(&self.dir)?;
            let temporary = file.path().to_path_buf();
            Ok((file, move |_| {
                let _ = fs::remove_file(&temporary);
            }))
        })?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        let target = self.dir.join(key);
        match file.persist(&target) {
            Ok(_) => Ok(()),
            // A directory where the entry goes cannot be renamed over: it is no entry.
            Err(e) if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) => {
                fs::remove_dir_all(&target)?;
                e.file.persist(&target).map(drop).map_err(|e| e.error)
            }
            Err(e) => Err(e.error),
        }
    }

    /// `key`'s lock file, opened (and made, empty, 0600) for `flock`.
    pub fn lock_file(&self, key: &str) -> io::Result<File> {
        open_plain(&self.dir.join(format!("{key}.lock")), true)
    }
}

/// Opens the regular file at `path`, never following a link nor blocking on a FIFO; with
/// `create`, for writing, made 0600 if missing.
fn open_plain(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_private_and_whatever_else_stands_there_is_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let answers = Answers::open(dir.path()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(answers.dir()), 0o700);
        answers.write("k", b"one").unwrap();
        assert_eq!(answers.read("k").unwrap(), b"one");
        assert_eq!(mode(&answers.dir().join("k")), 0o600);
        answers.write("k", b"two").unwrap();
        assert_eq!(answers.read("k").unwrap(), b"two");

        let path = answers.dir().join("link");
        std::os::unix::fs::symlink(answers.dir().join("k"), &path).unwrap();
        assert_eq!(answers.read("link"), None, "a link is not followed");
        let fifo = answers.dir().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(answers.read("fifo"), None, "a FIFO is not waited on");
        fs::create_dir_all(answers.dir().join("d/e")).unwrap();
        assert_eq!(answers.read("d"), None);
        for key in ["link", "fifo", "d"] {
            answers.write(key, b"new").unwrap();
            assert_eq!(answers.read(key).unwrap(), b"new", "{key} is replaced");
        }
        let names: Vec<_> = fs::read_dir(answers.dir()).unwrap().collect();
        assert_eq!(names.len(), 4, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Answers::open(dir.path()).unwrap();
        let answers = dir.path().join("answers");
        fs::set_permissions(&answers, fs::Permissions::from_mode(0o750)).unwrap();
        let err = Answers::open(dir.path()).err().unwrap();
        assert!(err.contains("open to group or others (mode 750"), "{err}");
    }
}
