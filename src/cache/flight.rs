//! One flight per question: while one `bnx` of this user sends a request with `--cache`, the
//! others with the same key wait for it and then use the answer it stored, instead of each
//! paying for its own. The lock is `flock` on the key's lock file: the kernel lets it go when
//! its holder ends, however it ends, so a SIGKILLed sender never holds the others up for long.
//! `flock` locks belong to an open file, not a process, so two workers of one batch asking the
//! same thing are one flight too.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use crate::duration::secs;
use crate::lock;
use crate::printer::Printer;

/// The longest pause between two looks at a lock held by another.
const MOST_BETWEEN_LOOKS: Duration = Duration::from_millis(25);

/// The lock of a request in flight, held until dropped.
pub struct Flight {
    _held: Option<File>,
    /// Another process held the lock first: it may have stored the answer meanwhile.
    pub waited: bool,
}

/// Takes the lock of `lock` (a key's lock file), waiting up to `patience` for another process
/// that holds it. Past that, or when the lock cannot be used, the caller sends without it.
pub fn take(lock: io::Result<File>, patience: Duration, printer: &Printer) -> Flight {
    let file = match lock {
        Ok(file) => file,
        Err(why) => {
            printer.verbose(&format!("the cache's lock cannot be used ({why})"));
            return Flight {
                _held: None,
                waited: false,
            };
        }
    };
    let mut waited = false;
    let deadline = Instant::now() + patience;
    let locked = lock::until(&file, deadline, MOST_BETWEEN_LOOKS, || {
        printer.verbose("waiting for another bnx asking the same thing");
        waited = true;
    });
    match locked {
        Ok(true) => Flight {
            _held: Some(file),
            waited,
        },
        Ok(false) => {
            printer.notice(&format!(
                "waited {}s (--timeout) for another bnx asking the same thing; sending it too",
                secs(patience)
            ));
            Flight {
                _held: None,
                waited: true,
            }
        }
        Err(why) => {
            printer.verbose(&format!("the cache's lock cannot be used ({why})"));
            Flight {
                _held: None,
                waited,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::Verbosity;

    #[test]
    fn a_second_opening_waits_for_the_first_and_gives_up_after_its_patience() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let open = || {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        };
        let printer = Printer::new(Verbosity::Quiet);
        let first = take(open(), Duration::from_secs(1), &printer);
        assert!(!first.waited);
        let second = take(open(), Duration::from_millis(30), &printer);
        assert!(second.waited && second._held.is_none(), "gave up");
        drop(first);
        let third = take(open(), Duration::from_millis(30), &printer);
        assert!(!third.waited && third._held.is_some());
    }
}
