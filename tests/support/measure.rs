//! Running a process and reading what it cost from `wait4`: exit code, wall time, CPU time and
//! peak RSS. Shared by the benchmark harness and the tests that bound memory.
//!
//! The peak RSS cannot read below the caller's own peak resident size: the child starts in the
//! caller's memory (vfork), and exec keeps that memory's high-water mark. Callers never hold
//! large buffers, not even before they measure.

use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// The exit code, or 128 + the signal that ended it.
    pub code: Option<i32>,
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Starts `cmd` and waits for it; its stdio is whatever `cmd` was given.
#[allow(clippy::zombie_processes)] // waited for by wait4, which std cannot see
pub fn run(cmd: &mut Command) -> Cost {
    let started = Instant::now();
    let child = cmd.spawn().expect("the command starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child's pid, waited for exactly once, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Cost {
        code,
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    }
}
