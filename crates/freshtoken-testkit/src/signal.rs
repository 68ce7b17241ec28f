//! Signals to the processes a test started, as an operator (`kill`) or a supervisor
//! (systemd's SIGTERM) sends them.

use std::process::Child;

/// Sends `signal` (`libc::SIGTERM`, …) to the process `pid`; fails the test when it cannot
/// be delivered (the process is already gone and reaped).
#[track_caller]
pub fn send_signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("a pid fits in pid_t");
    // SAFETY: kill has no memory preconditions; the pid is one this test spawned.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        sent,
        0,
        "signal {signal} to {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// SIGTERM to `child`: how the daemons are asked to drain and exit 0.
#[track_caller]
pub fn terminate(child: &Child) {
    send_signal(child.id(), libc::SIGTERM);
}
