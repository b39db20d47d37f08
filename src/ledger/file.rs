//! This machine's ledger: one book per (origin, token) key under `$STATE_DIR/credits/`, named
//! by the key (a digest). Each change is made under the lock of the book's file and written to
//! a temporary file renamed over it, so a reader, who takes no lock, sees a whole book or the
//! one before it, and a run killed mid-write leaves the last book whole.
//!
//! A lock taken on a file that a rename has since replaced locks nothing: the lock is taken,
//! then the path is seen to still name the file locked, or it is taken again (the classic
//! lock-then-check). The first lock creates an empty file, which is therefore an empty book:
//! no book of ours is ever empty, since every one is written whole by a rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::book::{self, Book, Boot, Millis, MAX_BYTES};
use super::Trouble;
use crate::lock;

/// The longest a change waits for another process to let go of the lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

pub struct FileLedger {
    dir: PathBuf,
    key: String,
}

impl FileLedger {
    /// The ledger of `key` in `dir`; nothing is touched until it is used.
    pub fn new(dir: PathBuf, key: String) -> FileLedger {
        FileLedger { dir, key }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.key)
    }

    /// The book as it stands now, and the book's clock ([`Book::clock`]); an empty book when
    /// there is none yet.
    pub fn read(&self) -> Result<(Book, Millis), Trouble> {
        let mut book = self.load(&self.path())?;
        let now = book.clock(wall(), boot());
        book.settle(now);
        Ok((book, now))
    }

    /// Proves, before a limit depends on it, that the book can be written: its directory made,
    /// and a file made in it, as a change's rename needs.
    pub fn prove_writable(&self) -> Result<(), Trouble> {
        self.make_dir()
            .and_then(|()| tempfile::tempfile_in(&self.dir))
            .map(drop)
            .map_err(|e| self.unusable(e))
    }

    fn unusable(&self, e: io::Error) -> Trouble {
        Trouble::Unusable(format!("{}: {e}", self.dir.display()))
    }

    /// Applies `change` to the book at the book's clock, under the lock, and writes it back.
    pub fn update<T>(&self, change: impl FnOnce(&mut Book, Millis) -> T) -> Result<T, Trouble> {
        let unusable = |e: io::Error| self.unusable(e);
        // Damage is found before anything is made or locked, and never written over.
        self.read()?;
        self.make_dir().map_err(unusable)?;
        let _lock = self.lock().map_err(unusable)?;
        let (mut book, now) = self.read()?;
        let result = change(&mut book, now);
        book.written = now;
        book.boot = boot();
        // `.tmpXXXXXX`: a short name that says nothing of the key.
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(unusable)?;
        file.write_all(&book.encode()).map_err(unusable)?;
        file.persist(self.path()).map_err(|e| unusable(e.error))?;
        Ok(result)
    }

    /// The book at `path`, empty when there is none. Whatever else stands there (a link, a
    /// FIFO, a device, a file too large to be a book) is damage, named, rather than followed,
    /// waited on or read without end.
    fn load(&self, path: &Path) -> Result<Book, Trouble> {
        let damaged = |why: String| Trouble::Damaged {
            path: path.to_path_buf(),
            why,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Book::default()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(damaged("it is a symbolic link".into()))
            }
            Err(e) => return Err(Trouble::Unusable(format!("{}: {e}", path.display()))),
        };
        let unreadable = |e: io::Error| Trouble::Unusable(format!("{}: {e}", path.display()));
        if !file.metadata().map_err(unreadable)?.is_file() {
            return Err(damaged("it is not a regular file".into()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.is_empty() {
            // Made by a first lock, before its book was written (see the module's comment).
            return Ok(Book::default());
        }
        Book::decode(&bytes).map_err(damaged)
    }

    /// The lock of every change to the book, held until the file is dropped; waited for at most
    /// [`LOCK_WAIT`], so that a process stopped while holding it cannot freeze every other.
    fn lock(&self) -> io::Result<File> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(self.path())?;
            if !lock::until(&file, deadline, Duration::from_millis(20), || {})? {
                return Err(io::Error::other(format!(
                    "another process has held its lock for over {}s",
                    LOCK_WAIT.as_secs()
                )));
            }
            // Still the book, not one a rename replaced while this waited for it.
            if same_file(&file, &self.path())? {
                return Ok(file);
            }
        }
    }

    /// The directory of the books; only the user may enter it.
    fn make_dir(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }
}

/// Whether `path` still names `file`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let (held, named) = (file.metadata()?, fs::symlink_metadata(path)?);
    Ok((held.dev(), held.ino()) == (named.dev(), named.ino()))
}

/// The wall clock, in Unix milliseconds.
fn wall() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, book::ms)
}

/// The boot clock now, where the system has one (Linux): see [`Boot`].
pub fn boot() -> Option<Boot> {
    static ID: OnceLock<Option<[u8; 16]>> = OnceLock::new();
    let id = (*ID.get_or_init(boot_id))?;
    boot_clock().map(|clock| Boot { id, clock })
}

/// This boot's id, from the kernel: 32 hex digits and dashes.
fn boot_id() -> Option<[u8; 16]> {
    let text = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let digits: Vec<u8> = text.trim().bytes().filter(|&b| b != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(digits.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(id).filter(|id| *id != [0; 16])
}

#[cfg(target_os = "linux")]
fn boot_clock() -> Option<Millis> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the timespec it is given, which lives here.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let millis = u64::try_from(now.tv_nsec).ok()? / 1_000_000;
    secs.checked_mul(1000)?.checked_add(millis)
}

#[cfg(not(target_os = "linux"))]
fn boot_clock() -> Option<Millis> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::book::{Entry, Query};

    #[test]
    fn changes_are_kept_between_openings_and_damage_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry {
            consumed: Some(2.5),
            remaining: Some(10.0),
            age: Duration::ZERO,
        };
        for _ in 0..2 {
            let ledger = FileLedger::new(dir.path().join("credits"), "k".into());
            ledger.update(|book, now| book.record(&entry, now)).unwrap();
        }
        let ledger = FileLedger::new(dir.path().join("credits"), "k".into());
        let (book, now) = ledger.read().unwrap();
        let query = Query {
            periods: vec![Duration::from_secs(60)],
            budget: None,
        };
        assert_eq!(book.standing(now, &query).consumed, [5.0]);
        fs::write(ledger.path(), b"torn").unwrap();
        assert!(matches!(ledger.read(), Err(Trouble::Damaged { .. })));
        assert!(matches!(
            ledger.update(|book, now| book.record(&entry, now)),
            Err(Trouble::Damaged { .. })
        ));
        assert_eq!(fs::read(ledger.path()).unwrap(), b"torn");
    }

    #[test]
    fn the_boot_clock_is_read_where_there_is_one() {
        if cfg!(target_os = "linux") {
            let (first, second) = (boot().unwrap(), boot().unwrap());
            assert_eq!(first.id, second.id);
            assert!(second.clock >= first.clock);
        }
    }
}
