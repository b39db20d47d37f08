//! `--batch ... -o FILE`: the output file is also the record of what is done, so a rerun after
//! a crash, a kill or a 75 resumes where the last one stopped and never pays twice for an item
//! that finished.
//!
//! Lines are only ever appended, each in one write, so a crash can tear only the last one; it
//! is removed before anything is added. The file is locked while a batch writes it, so two
//! runs cannot interleave their lines. A device or a FIFO is only written to.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use super::line::Line;
use crate::error::{Error, Kind, Result};

pub struct Journal {
    file: File,
    /// The length of the file's whole lines: what a failed append is cut back to.
    len: u64,
    /// Ids (as text) whose last line says `exit_code` 0, with the digest of the request that
    /// line says it sent, if it says.
    pub done: HashMap<String, Option<String>>,
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal> {
        let io_error = |e: io::Error| {
            Error::new(
                Kind::LocalIo,
                anyhow::Error::new(e).context(format!("cannot use {}", path.display())),
            )
        };
        // A device or a FIFO (`-o /dev/null`, `-o >(gzip > log.gz)`) takes the lines as `>>`
        // would, and as a single request's `-o` writes to one: it holds no record to resume
        // from, and reading a FIFO would take what its reader waits for.
        if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io_error)?;
            return Ok(Journal {
                file,
                len: 0,
                done: HashMap::new(),
            });
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error)?;
        if file.try_lock().is_err() {
            return Err(Error::msg(
                Kind::LocalIo,
                format!("{} is being written by another bnx batch", path.display()),
            ));
        }
        let (last, kept) = read(&mut file).map_err(io_error)?;
        file.set_len(kept).map_err(io_error)?;
        let done = last
            .into_iter()
            .filter(|(_, (code, _))| *code == 0)
            .map(|(id, (_, request))| (id, request))
            .collect();
        Ok(Journal {
            file,
            len: kept,
            done,
        })
    }

    /// Appends one line (which holds no newline) and its newline, whole or not at all: a write
    /// cut short (the disk full) is taken back, so the lines appended after it, once there is
    /// room again, are not fused to a torn one.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let mut whole = Vec::with_capacity(line.len() + 1);
        whole.extend_from_slice(line);
        whole.push(b'\n');
        match self.file.write_all(&whole) {
            Ok(()) => {
                self.len += whole.len() as u64;
                Ok(())
            }
            Err(err) => {
                // Best effort: if even this fails, the next run removes the torn last line.
                let _ = self.file.set_len(self.len);
                Err(err)
            }
        }
    }
}

/// The last `exit_code` and request of each id, and the length of the file without a torn
/// last line. A line that is not an item's record (edited by hand, say) is passed over.
fn read(file: &mut File) -> io::Result<(HashMap<String, Record>, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(file);
    let mut last = HashMap::new();
    let mut line = Vec::new();
    let mut kept = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok((last, kept));
        }
        kept += n as u64;
        if let Some((id, code)) = record(&line) {
            last.insert(id, code);
        }
    }
}

/// What a line says of its item: the exit code, and the digest of the request it sent.
type Record = (i64, Option<String>);

/// The id (as text) and record of one output line.
fn record(line: &[u8]) -> Option<(String, Record)> {
    let line: Line = serde_json::from_slice(line).ok()?;
    let request = line.request().map(str::to_string);
    Some((super::items::key(line.id)?, (line.exit_code()?, request)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_each_id_decides_and_a_torn_line_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"id\":\"a\",\"bnx\":{\"exit_code\":75}}\n",
                "{\"id\":\"a\",\"bnx\":{\"exit_code\":0}}\n",
                "{\"id\":2,\"bnx\":{\"exit_code\":0,\"request\":\"r1\"}}\n",
                "{\"id\":2,\"bnx\":{\"exit_code\":0,\"request\":\"r2\"}}\n",
                "{\"id\":\"b\",\"bnx\":{\"exit_code\":0}}\n",
                "{\"id\":\"b\",\"bnx\":{\"exit_code\":69}}\n",
                "not a record\n",
                "{\"id\":\"c\",\"bnx\":{\"exit_co",
            ),
        )
        .unwrap();
        let mut journal = Journal::open(&path).unwrap();
        let mut done: Vec<(&str, Option<&str>)> = journal
            .done
            .iter()
            .map(|(id, request)| (id.as_str(), request.as_deref()))
            .collect();
        done.sort();
        assert_eq!(done, [("2", Some("r2")), ("a", None)]);
        journal.append(b"{\"id\":\"c\"}").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("not a record\n{\"id\":\"c\"}\n"), "{text}");
    }

    #[test]
    fn a_second_batch_cannot_write_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let _first = Journal::open(&path).unwrap();
        let err = Journal::open(&path).err().unwrap();
        assert_eq!(err.kind, Kind::LocalIo);
        assert!(err.line().contains("another bnx batch"));
    }
}
