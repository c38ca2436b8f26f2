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

pub fn kill(root: &StateRoot, id: &str, signal: &str, all: bool) -> Result<()> {
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
    container
        .kill(signal, all)
        .map_err(|e| RuntimeError::lc("kill", id, e))?;
    tracing::info!(id, all, "signalled");
    Ok(())
}
