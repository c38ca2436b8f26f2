use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;

/// Parses a signal as runc does: a number, or a name with or without "SIG".
pub fn parse_signal(text: &str) -> Result<Signal> {
    let invalid = |reason: &str| RuntimeError::InvalidValue {
        what: "signal",
        value: text.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| invalid("no such signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::try_from(name.as_str())
        .map_err(|_| invalid("no such signal name (e.g. TERM, SIGKILL, 9)"))
}

/// Whether `text` names signal 0, which checks that the process exists.
fn is_signal_zero(text: &str) -> bool {
    text.parse::<i32>() == Ok(0)
}

pub fn kill(root: &StateRoot, id: &str, signal: &str, all: bool) -> Result<()> {
    if is_signal_zero(signal) {
        return probe(root, id);
    }
    let signal = parse_signal(signal)?;
    let mut container = root.load(id)?;
    if matches!(
        container.status(),
        ContainerStatus::Stopped | ContainerStatus::Creating
    ) && !all
    {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "kill",
            status: crate::verbs::state::status_name(container.status()),
            hint: "its process is not running",
        });
    }
    if let Err(e) = container.kill(signal, all) {
        // libcontainer saves the state after signalling; a foreground `run`
        // whose init this signal ended may have removed the container in
        // between. The signal was delivered: that is a successful kill.
        if !root.container_dir(id).join("state.json").exists() {
            tracing::info!(
                id,
                "the container ended and was removed as it was signalled"
            );
            return Ok(());
        }
        return Err(RuntimeError::lc("kill", id, e));
    }
    tracing::info!(id, all, "signalled");
    Ok(())
}

/// `kill ID 0` (runc's check that the container's init is alive): succeeds
/// when it runs (or waits in `created`, or is paused), fails otherwise.
fn probe(root: &StateRoot, id: &str) -> Result<()> {
    let container = root.load(id)?;
    let alive = matches!(
        container.status(),
        ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
    );
    let not_running = || RuntimeError::WrongStatus {
        id: id.to_string(),
        op: "signal",
        status: crate::verbs::state::status_name(container.status()),
        hint: "its process is not running",
    };
    let pid = container.pid().filter(|_| alive).ok_or_else(not_running)?;
    nix::sys::signal::kill(pid, None)
        .map_err(|e| RuntimeError::sys(format!("signal 0 to pid {pid} of container {id}"), e))
}
