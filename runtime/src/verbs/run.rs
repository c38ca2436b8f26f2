use libcontainer::container::Container;
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SigSet;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::console::{ConsoleSocket, PtyProxy};
use crate::error::{Result, RuntimeError};
use crate::requests::{RunRequest, RuntimeOptions};
use crate::store::StateRoot;
use crate::verbs::create::{create_from, wants_terminal};

/// Creates and starts a container. Detached, returns 0 once it runs; in the
/// foreground, waits for it, forwarding signals, and returns its exit status
/// (128 + signal number when a signal ended it, as a shell reports it).
pub fn run(root: &StateRoot, global: &RuntimeOptions, args: &RunRequest) -> Result<i32> {
    let id = args.create.id.as_str();
    let signals = prepare_foreground(args.detach)?;
    let (bundle, spec) = crate::bundle::load(&args.create.bundle)?;
    // A foreground terminal container gets a pty of ours, as with runc: the
    // master comes over a console socket (which libcontainer only accepts
    // for a detached create; the waiting below is ours either way).
    let console = if !args.detach && wants_terminal(&spec) && args.create.console_socket.is_none() {
        Some(ConsoleSocket::listen(
            &root.path().join(format!("{id}.console")),
        )?)
    } else {
        None
    };
    let mut opts = args.create.clone();
    if let Some(console) = &console {
        opts.console_socket = Some(console.path().to_path_buf());
    }
    let detach = args.detach || console.is_some();
    let mut container = create_from(root, global, &opts, detach, &bundle, &spec)?;
    let proxy = proxy_terminal(console.as_ref(), &mut container)?;
    if let Err(e) = container.start() {
        let _ = crate::verbs::delete::delete_container(&mut container, id, true);
        return Err(RuntimeError::lc("start", id, e));
    }
    if args.detach {
        return Ok(0);
    }
    let init = container.pid().ok_or_else(|| RuntimeError::Unsupported {
        flag: "run",
        reason: format!("container {id} has no init pid after start"),
    })?;
    let status = wait_forwarding(init, &signals, proxy.as_ref());
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    if !args.keep {
        crate::verbs::delete::delete_container(&mut container, id, true)?;
    }
    status
}

/// Readies godwit to wait for a process it is about to start in the
/// foreground: signals are blocked before it exists, so that none is lost
/// between its start and our wait (they are forwarded to it), and godwit is
/// the subreaper, so that a process forked by libcontainer's intermediate
/// process is our child to wait for. Detached, nothing changes.
pub fn prepare_foreground(detach: bool) -> Result<SigSet> {
    let signals = SigSet::all();
    if !detach {
        signals
            .thread_block()
            .map_err(|e| RuntimeError::sys("block signals", e))?;
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| RuntimeError::sys("become child subreaper", e))?;
    }
    Ok(signals)
}

/// A foreground terminal container: its pty master, received over our own
/// console socket, proxied to our stdio. A failure deletes the container.
pub fn proxy_terminal(
    console: Option<&ConsoleSocket>,
    container: &mut Container,
) -> Result<Option<PtyProxy>> {
    let Some(console) = console else {
        return Ok(None);
    };
    match console.receive_master().and_then(PtyProxy::start) {
        Ok(proxy) => Ok(Some(proxy)),
        Err(e) => {
            let id = container.id().to_string();
            let _ = crate::verbs::delete::delete_container(container, &id, true);
            Err(e)
        }
    }
}

pub fn wait_forwarding(init: Pid, signals: &SigSet, pty: Option<&PtyProxy>) -> Result<i32> {
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
            Signal::SIGWINCH => {
                if let Some(pty) = pty {
                    pty.resize();
                }
            }
            // Go runtimes use SIGURG internally.
            Signal::SIGURG => {}
            other => {
                if let Err(e) = kill(init, other) {
                    tracing::warn!(pid = init.as_raw(), signal = ?other, "forward signal: {e}");
                }
            }
        }
    }
}
