//! `-o FILE`: the output goes to a temporary file in FILE's directory, which replaces FILE only
//! when the run succeeds. On any failure, Ctrl-C included, FILE keeps what it had and the
//! temporary file is removed, so a cron job's last good answer survives a failed run.
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
        file: BufWriter<NamedTempFile>,
        /// The file to replace: FILE, or what it links to.
        target: PathBuf,
        _on_interrupt: interrupt::Guard,
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
        // Created as any new file is, 0666 less the umask; an existing file's bits are copied
        // exactly below (open(2) would have the umask narrow them).
        let (file, on_interrupt) = interrupt::started(|| {
            let file = tempfile::Builder::new()
                .prefix(&format!(".{}.", &file_name[..kept]))
                .suffix(".tmp")
                .permissions(Permissions::from_mode(0o666))
                .tempfile_in(dir)?;
            let temporary = file.path().to_path_buf();
            Ok((file, move |_| {
                let _ = fs::remove_file(&temporary);
            }))
        })
        .map_err(|e| failed(without_temporary_name(e)))?;
        if let Some(mode) = mode {
            file.as_file()
                .set_permissions(Permissions::from_mode(mode))
                .map_err(failed)?;
        }
        Ok(AtomicFile {
            file: Destination::Replacing {
                file: BufWriter::with_capacity(64 * 1024, file),
                target,
                _on_interrupt: on_interrupt,
            },
            name,
        })
    }

    /// Puts the output in place of FILE: flushed, synced to disk, then renamed over it, so
    /// that FILE is at every moment either the old content or all of the new.
    pub fn commit(self) -> Result<()> {
        let failed = |e: io::Error| Error::write(e, &self.name);
        match self.file {
            Destination::Replacing { file, target, .. } => {
                let file = file.into_inner().map_err(|e| failed(e.into_error()))?;
                file.as_file().sync_all().map_err(failed)?;
                file.persist(&target).map_err(|e| failed(e.error))?;
            }
            Destination::Direct(mut file) => file.flush().map_err(failed)?,
        }
        Ok(())
    }
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
        assert_eq!(entries(dir.path()), 2, "the temporary file sits beside it");
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
