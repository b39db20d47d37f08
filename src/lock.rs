//! Waiting for an advisory lock (`flock`) for a bounded time, as every locked file of `bnx`
//! does (the pacing state, the credit ledger, a cache key's flight): a process stopped while
//! holding a lock must cost the others a bounded wait, never a freeze.

use std::fs::{File, TryLockError};
use std::io;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Locks `file`, trying until `deadline` with pauses that double from 1 ms up to `most`.
/// `true` once locked, `false` when the deadline passed first; `waiting` runs once, before
/// the first pause.
pub fn until(
    file: &File,
    deadline: Instant,
    most: Duration,
    mut waiting: impl FnMut(),
) -> io::Result<bool> {
    let mut pause = Duration::from_millis(1).min(most);
    let mut waited = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::Error(e)) => return Err(e),
            Err(TryLockError::WouldBlock) if Instant::now() >= deadline => return Ok(false),
            Err(TryLockError::WouldBlock) => {
                if !waited {
                    waiting();
                    waited = true;
                }
                sleep(pause);
                pause = (pause * 2).min(most);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_waited_for_until_the_deadline_and_a_free_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let holder = File::create(&path).unwrap();
        holder.lock().unwrap();
        let other = File::open(&path).unwrap();
        let mut waits = 0;
        let deadline = Instant::now() + Duration::from_millis(50);
        let most = Duration::from_millis(20);
        assert!(!until(&other, deadline, most, || waits += 1).unwrap());
        assert!(Instant::now() >= deadline);
        assert_eq!(waits, 1, "said once");
        drop(holder);
        assert!(until(&other, Instant::now(), most, || waits += 1).unwrap());
        assert_eq!(waits, 1, "a free lock is not waited for");
    }
}
