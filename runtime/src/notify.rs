//! Migration notifications, asked for by OCI annotations on the container:
//!
//! - `org.godwit.checkpoint.notify-signal`: a signal (name like `SIGUSR1` or
//!   `USR1`, or a number) sent to the container's init shortly before it is
//!   checkpointed and again right after it is restored;
//! - `org.godwit.checkpoint.notify-delay-ms`: how long checkpoint waits after
//!   that signal before freezing (default 100);
//! - `org.godwit.checkpoint.opt-out`: `true` refuses checkpointing; the
//!   container runs on.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

pub const NOTIFY_SIGNAL: &str = "org.godwit.checkpoint.notify-signal";
pub const NOTIFY_DELAY: &str = "org.godwit.checkpoint.notify-delay-ms";
pub const OPT_OUT: &str = "org.godwit.checkpoint.opt-out";

const DEFAULT_DELAY: Duration = Duration::from_millis(100);

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Refuses a checkpoint of a container that opted out.
pub fn check_opt_out(spec: &Spec, id: &str) -> Result<()> {
    match annotation(spec, OPT_OUT) {
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Err(RuntimeError::Unsupported {
            flag: "checkpoint",
            reason: format!(
                "container {id} opted out of checkpointing (annotation {OPT_OUT}={v}); \
                 it keeps running"
            ),
        }),
        _ => Ok(()),
    }
}

/// The notification signal and delay the container asked for, if any.
pub fn notification(spec: &Spec) -> Result<Option<(Signal, Duration)>> {
    let Some(text) = annotation(spec, NOTIFY_SIGNAL) else {
        return Ok(None);
    };
    let invalid = |what: &'static str, value: &str, reason: &str| RuntimeError::InvalidValue {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let signal = match text.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&name).ok()
        }
    }
    .ok_or_else(|| {
        invalid(
            "annotation org.godwit.checkpoint.notify-signal",
            text,
            "not a signal (e.g. SIGUSR1 or 10)",
        )
    })?;
    let delay = match annotation(spec, NOTIFY_DELAY) {
        None => DEFAULT_DELAY,
        Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
            invalid(
                "annotation org.godwit.checkpoint.notify-delay-ms",
                ms,
                "expected milliseconds",
            )
        })?),
    };
    Ok(Some((signal, delay)))
}

/// Sends the notification signal to the container's init.
pub fn send(pid: i32, signal: Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .map_err(|e| RuntimeError::sys(format!("send {signal} to pid {pid}"), e))
}
