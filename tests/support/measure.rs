//! Running a process and reading what it cost from `wait4`: exit code, wall time, CPU time and
//! peak RSS. Shared by the benchmark harness and the tests that bound memory.
//!
//! `wait4`'s peak RSS cannot read below the caller's own peak resident size: the child starts
//! in the caller's memory (vfork), and the kernel keeps that memory's high-water mark across
//! exec. A test binary running many tests at once can have a large peak of its own, so when
//! `wait4`'s figure is no larger than the caller's peak, the child's own high-water mark
//! (`VmHWM`, which exec starts afresh), sampled until it exits, is the figure instead.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
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
    let pid = child.id() as libc::pid_t;
    let sampled = Arc::new(AtomicU64::new(0));
    let exited = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (sampled, exited) = (Arc::clone(&sampled), Arc::clone(&exited));
        thread::spawn(move || {
            while !exited.load(Ordering::Acquire) {
                if let Some(kib) = high_water_kib(pid) {
                    sampled.fetch_max(kib, Ordering::AcqRel);
                }
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Waits for the exit without reaping, so the pid the sampler reads stays the child's.
    // SAFETY: an all-zero siginfo is a valid value for waitid to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: our own child, with a valid out-pointer; WNOWAIT leaves it to wait4 below.
    let waited = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(waited, 0, "waitid failed");
    exited.store(true, Ordering::Release);
    sampler.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child's pid, waited for exactly once, with valid out-pointers.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(reaped, pid, "wait4 failed");
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
        max_rss_kib: child_peak(usage.ru_maxrss as u64, sampled.load(Ordering::Acquire)),
    }
}

/// The child's peak RSS from `wait4`'s figure, unless that may be the caller's own peak: then
/// the largest `VmHWM` sampled, which can miss only a rise in the child's last moments (a child
/// gone before its first sample keeps `wait4`'s figure, an upper bound).
fn child_peak(waited_kib: u64, sampled_kib: u64) -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut own: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut own) };
    if waited_kib > own.ru_maxrss as u64 || sampled_kib == 0 {
        waited_kib
    } else {
        sampled_kib
    }
}

/// The `VmHWM` of a running process, in KiB.
fn high_water_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
