//! `-o FILE`: the output goes to a temporary file in FILE's directory, which replaces FILE only
//! when the run succeeds. On any failure, Ctrl-C included, FILE keeps what it had and no
//! temporary file is left, so a cron job's last good answer survives a failed run.
//!
//! On Linux the temporary file has no name (`O_TMPFILE`) until the commit links it in and
//! renames it over FILE, so not even a SIGKILL leaves one behind. Where that is not possible (a
//! file system without `O_TMPFILE`, no `/proc` to link it through, another system), it is a
//! named file, removed when the run ends and on Ctrl-C.
//!
//! A FILE that is not a regular file (`/dev/null`, a FIFO, a terminal) cannot be replaced
//! without destroying it: it is written directly, as the shell's `>` would.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Kind, Result};
use crate::interrupt;

pub struct AtomicFile {
    file: Destination,
    /// FILE as given, for messages.
    name: String,
}

enum Destination {
    Replacing {
        file: BufWriter<Temporary>,
        /// The file to replace: FILE, or what it links to.
        target: PathBuf,
    },
    /// A device or a FIFO, written in place.
    Direct(BufWriter<File>),
}

impl AtomicFile {
    /// Creates the temporary file now, so that a directory that cannot be written fails the run
    /// before the request is sent.
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let name = path.display().to_string();
        let failed = |e: io::Error| Error::write(e, &name);
        // A symbolic link stays one: what it points to is replaced, or created.
        let target = followed(path).map_err(failed)?;
        let mode = match fs::metadata(&target) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::msg(Kind::LocalIo, format!("{name} is a directory")))
            }
            Ok(meta) if !meta.is_file() => {
                let file = File::options().write(true).open(&target).map_err(failed)?;
                return Ok(AtomicFile {
                    file: Destination::Direct(BufWriter::with_capacity(64 * 1024, file)),
                    name,
                });
            }
            Ok(meta) => {
                // `>` would refuse a file we may not write; a rename would not notice.
                File::options().write(true).open(&target).map_err(failed)?;
                Some(meta.permissions().mode() & 0o777)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(failed(e)),
        };
        let file_name = target
            .file_name()
            .ok_or_else(|| Error::msg(Kind::LocalIo, format!("{name} names no file")))?;
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // FILE's name may take all 255 bytes a name can have; the temporary one adds 12 to
        // what it keeps of it, so it keeps at most 200.
        let file_name = file_name.to_string_lossy();
        let kept = (0..=file_name.len().min(200))
            .rev()
            .find(|&at| file_name.is_char_boundary(at))
            .unwrap_or(0);
        let prefix = format!(".{}.", &file_name[..kept]);
        let file = Temporary::new(dir, &prefix).map_err(|e| failed(without_temporary_name(e)))?;
        // Created as any new file is, 0666 less the umask; an existing file's bits are copied
        // exactly (open(2) would have the umask narrow them).
        if let Some(mode) = mode {
            file.as_file()
                .set_permissions(Permissions::from_mode(mode))
                .map_err(failed)?;
        }
        Ok(AtomicFile {
            file: Destination::Replacing {
                file: BufWriter::with_capacity(64 * 1024, file),
                target,
            },
            name,
        })
    }

    /// Puts the output in place of FILE: flushed, synced to disk, then renamed over it, so
    /// that FILE is at every moment either the old content or all of the new.
    pub fn commit(self) -> Result<()> {
        let failed = |e: io::Error| Error::write(e, &self.name);
        match self.file {
            Destination::Replacing { file, target } => {
                let file = file.into_inner().map_err(|e| failed(e.into_error()))?;
                file.as_file().sync_all().map_err(failed)?;
                file.persist(&target).map_err(failed)?;
            }
            Destination::Direct(mut file) => file.flush().map_err(failed)?,
        }
        Ok(())
    }
}

/// Where the output waits for the commit: in FILE's directory, since a rename cannot cross
/// file systems.
enum Temporary {
    /// No name until the commit: whatever ends the run leaves nothing behind.
    #[cfg(target_os = "linux")]
    Unnamed {
        file: File,
        dir: PathBuf,
        /// The start of the name it gets at the commit, for the moment before the rename.
        prefix: String,
    },
    /// Removed when dropped, and by the clean-up if Ctrl-C comes first.
    Named {
        file: NamedTempFile,
        _on_interrupt: interrupt::Guard,
    },
}

impl Temporary {
    fn new(dir: &Path, prefix: &str) -> io::Result<Temporary> {
        #[cfg(target_os = "linux")]
        match unnamed(dir) {
            Ok(file) => {
                return Ok(Temporary::Unnamed {
                    file,
                    dir: dir.to_path_buf(),
                    prefix: prefix.to_string(),
                })
            }
            // The file system (or the kernel) has no O_TMPFILE: the named file is the way left.
            Err(e)
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                return Err(e)
            }
            Err(_) => {}
        }
        Temporary::named(dir, prefix)
    }

    fn named(dir: &Path, prefix: &str) -> io::Result<Temporary> {
        let (file, on_interrupt) = interrupt::started(|| {
            let file = tempfile::Builder::new()
                .prefix(prefix)
                .suffix(".tmp")
                .permissions(Permissions::from_mode(0o666))
                .tempfile_in(dir)?;
            let temporary = file.path().to_path_buf();
            Ok((file, move |_| {
                let _ = fs::remove_file(&temporary);
            }))
        })?;
        Ok(Temporary::Named {
            file,
            _on_interrupt: on_interrupt,
        })
    }

    fn as_file(&self) -> &File {
        match self {
            #[cfg(target_os = "linux")]
            Temporary::Unnamed { file, .. } => file,
            Temporary::Named { file, .. } => file.as_file(),
        }
    }

    /// Renames the file over `target`. An unnamed one is first linked in under a name of its
    /// own, which the rename then takes away: only a kill between the two can leave it.
    fn persist(self, target: &Path) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Temporary::Unnamed { file, dir, prefix } => {
                let (linked, _on_interrupt) = interrupt::started(|| {
                    let linked = link_in(&file, &dir, &prefix)?;
                    let temporary = linked.clone();
                    Ok((linked, move |_| {
                        let _ = fs::remove_file(&temporary);
                    }))
                })?;
                fs::rename(&linked, target).inspect_err(|_| {
                    let _ = fs::remove_file(&linked);
                })
            }
            Temporary::Named { file, .. } => file.persist(target).map(drop).map_err(|e| e.error),
        }
    }
}

/// Where an unnamed file is linked in from.
#[cfg(target_os = "linux")]
const PROC_FD: &str = "/proc/self/fd";

/// An `O_TMPFILE` in `dir`, created as any new file is (0666 less the umask).
#[cfg(target_os = "linux")]
fn unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Without /proc, linking it in needs a privilege (AT_EMPTY_PATH) a user rarely has.
    if !Path::new(PROC_FD).is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    File::options()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o666)
        .open(dir)
}

/// Gives the unnamed `file` a name in `dir` that no other file has: `PREFIX` and six random
/// characters, then `.tmp`.
#[cfg(target_os = "linux")]
fn link_in(file: &File, dir: &Path, prefix: &str) -> io::Result<PathBuf> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c_path = |path: &Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let from = c_path(&Path::new(PROC_FD).join(file.as_raw_fd().to_string()))?;
    loop {
        let path = dir.join(format!("{prefix}{}.tmp", random_letters()));
        let to = c_path(&path)?;
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        let linked = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if linked == 0 {
            return Ok(path);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err);
        }
    }
}

/// Six letters or digits, different at every call.
#[cfg(target_os = "linux")]
fn random_letters() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // Each RandomState has keys of its own: an empty hash under them is a random number.
    let mut n = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (0..6)
        .map(|_| {
            let letter = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            letter
        })
        .collect()
}

/// What `path` names once its symbolic links are followed, whether that exists or not: `>`
/// creates a dangling link's target.
fn followed(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    // As many links as Linux follows before ELOOP.
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&path)?;
                path = match path.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// tempfile's errors end in the temporary file's random name (`... at path "..."`); FILE's
/// name, which the message gives, is what the user knows.
fn without_temporary_name(err: io::Error) -> io::Error {
    match err.to_string().split_once(" at path ") {
        Some((reason, _)) => io::Error::new(err.kind(), reason.to_string()),
        None => err,
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Destination::Replacing { file, .. } => file.write(buf),
            Destination::Direct(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Destination::Replacing { file, .. } => file.flush(),
            Destination::Direct(file) => file.flush(),
        }
    }
}

impl Write for Temporary {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.as_file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.as_file().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn replaces_the_file_only_on_commit_keeping_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();

        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new\n").unwrap();
        file.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(entries(dir.path()), 1, "the temporary file has no name");
        file.commit().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(entries(dir.path()), 1);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);

        let mut dropped = AtomicFile::create(&path).unwrap();
        dropped.write_all(b"lost").unwrap();
        drop(dropped);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(entries(dir.path()), 1);
    }

    /// Where there is no O_TMPFILE, the named temporary file: beside FILE until the commit,
    /// which renames it over FILE, and removed when dropped.
    #[test]
    fn the_named_fallback_replaces_the_file_on_commit_and_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        fs::write(&path, "old\n").unwrap();
        let mut file = Temporary::named(dir.path(), ".out.txt.").unwrap();
        file.write_all(b"new\n").unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with(".out.txt.") && names[0].ends_with(".tmp"));
        file.persist(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(entries(dir.path()), 1);

        let mut dropped = Temporary::named(dir.path(), ".out.txt.").unwrap();
        dropped.write_all(b"lost").unwrap();
        assert_eq!(entries(dir.path()), 2);
        drop(dropped);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(entries(dir.path()), 1);
    }

    #[test]
    fn a_link_is_kept_and_its_target_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        let link = dir.path().join("link.txt");
        fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        let mut file = AtomicFile::create(&link).unwrap();
        file.write_all(b"new").unwrap();
        file.commit().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn a_directory_or_a_missing_directory_fails_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let err = AtomicFile::create(dir.path()).err().unwrap();
        assert_eq!(err.kind, Kind::LocalIo);
        assert!(err.line().ends_with("is a directory"), "{}", err.line());
        let err = AtomicFile::create(&dir.path().join("no/such/dir/f"))
            .err()
            .unwrap();
        assert_eq!(err.kind, Kind::LocalIo);
        assert!(
            err.line()
                .ends_with("no/such/dir/f: No such file or directory (os error 2)"),
            "{}",
            err.line()
        );
        assert_eq!(entries(dir.path()), 0);
    }
}
