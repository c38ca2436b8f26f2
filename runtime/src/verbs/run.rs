use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SigSet;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cli::{GlobalOpts, Run};
use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;
use crate::verbs::create::create;

/// Creates and starts a container. Detached, returns 0 once it runs; in the
/// foreground, waits for it, forwarding signals, and returns its exit status
/// (128 + signal number when a signal ended it, as a shell reports it).
pub fn run(root: &StateRoot, global: &GlobalOpts, args: &Run) -> Result<i32> {
    let id = args.container_id.as_str();
    // Block signals before the init exists so none is lost between its start
    // and our wait; they are forwarded to it below.
    let signals = SigSet::all();
    if !args.detach {
        signals
            .thread_block()
            .map_err(|e| RuntimeError::sys("block signals", e))?;
        // Be the subreaper so the init (forked by libcontainer's intermediate
        // process) is our child to wait for.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| RuntimeError::sys("become child subreaper", e))?;
    }
    let mut container = create(root, global, &args.opts, id, args.detach)?;
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(RuntimeError::lc("start", id, e));
    }
    if args.detach {
        return Ok(0);
    }
    let init = container.pid().ok_or_else(|| RuntimeError::Unsupported {
        flag: "run",
        reason: format!("container {id} has no init pid after start"),
    })?;
    let status = wait_forwarding(init, &signals);
    if !args.keep {
        container
            .delete(true)
            .map_err(|e| RuntimeError::lc("delete", id, e))?;
    }
    status
}

pub fn wait_forwarding(init: Pid, signals: &SigSet) -> Result<i32> {
    loop {
        let signal = signals
            .wait()
            .map_err(|e| RuntimeError::sys("wait for signals", e))?;
        match signal {
            Signal::SIGCHLD => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(code),
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                        return Ok(128 + sig as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                    Ok(_) => {}
                    Err(e) => return Err(RuntimeError::sys(format!("wait for pid {init}"), e)),
                }
            },
            // Go runtimes use SIGURG internally; the terminal size is the pty's business.
            Signal::SIGURG | Signal::SIGWINCH => {}
            other => {
                if let Err(e) = kill(init, other) {
                    tracing::warn!(pid = init.as_raw(), signal = ?other, "forward signal: {e}");
                }
            }
        }
    }
}
