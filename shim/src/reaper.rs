//! Reaping of the shim's children. The shim is the subreaper and parent of
//! every container process, but libcontainer also forks (intermediate
//! processes, hooks) and waits for those by pid; a blind `waitpid(-1)` would
//! steal their statuses. So every runtime call that forks runs under
//! `FORK_LOCK`, and the reaper takes the same lock before it reaps: it only
//! ever sees processes libcontainer is done with. Registering a new pid
//! happens under the lock too, so no exit arrives for an unknown pid.

use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::SIGCHLD;
use signal_hook::iterator::Signals;

static FORK_LOCK: Mutex<()> = Mutex::new(());

/// Holds off the reaper; take it around anything that forks and waits.
pub fn fork_guard() -> MutexGuard<'static, ()> {
    // A panic while holding it poisons nothing we rely on.
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the reaper thread; `on_exit(pid, status)` gets 128+N for a signal N.
pub fn start(on_exit: impl Fn(Pid, i32) + Send + 'static) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGCHLD])?;
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            for _ in signals.forever() {
                let _guard = fork_guard();
                reap_all(&on_exit);
            }
        })?;
    Ok(())
}

fn reap_all(on_exit: &impl Fn(Pid, i32)) {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, 128 + signal as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("reaper: waitpid: {e}");
                return;
            }
        };
        // containerd-shim's own helpers (the rootfs mount child) wait on its monitor.
        if let Err(e) = containerd_shim::monitor::monitor_notify_by_pid(pid.as_raw(), status) {
            log::warn!("reaper: notify exit of {pid}: {e}");
        }
        on_exit(pid, status);
    }
}
