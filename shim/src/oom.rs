//! OOM notification for a task: on cgroup v1, an eventfd registered on the
//! memory cgroup's `memory.oom_control` (cgroup.event_control); on v2, the
//! `oom_kill` count of `memory.events`, sampled. Each OOM calls `on_oom`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Result, ShimError};

/// The memory cgroup of `pid`, and whether it is a v2 (unified) one.
fn memory_cgroup(pid: i32) -> Result<(PathBuf, bool)> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|e| ShimError::io(&path, e))?;
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, dir) = (parts.next(), parts.next(), parts.next());
        let dir = dir.unwrap_or("/").trim_start_matches('/');
        if controllers.is_some_and(|c| c.split(',').any(|c| c == "memory")) {
            return Ok((Path::new("/sys/fs/cgroup/memory").join(dir), false));
        }
        if id == Some("0") && controllers == Some("") {
            unified = Some(Path::new("/sys/fs/cgroup").join(dir));
        }
    }
    // Pure v2 only: on a hybrid host memory is always a v1 controller.
    match unified {
        Some(dir) if dir.join("memory.events").exists() => Ok((dir, true)),
        _ => Err(ShimError::invalid(
            path,
            "no memory cgroup: OOM events will not be reported",
        )),
    }
}

/// Starts watching the memory cgroup of `pid` until the cgroup is removed.
pub fn watch(pid: i32, on_oom: impl Fn() + Send + 'static) -> Result<()> {
    let (dir, v2) = memory_cgroup(pid)?;
    if v2 {
        return spawn(move || watch_v2(&dir, on_oom));
    }
    let control = dir.join("memory.oom_control");
    let oom_control = File::open(&control).map_err(|e| ShimError::io(&control, e))?;
    // SAFETY: eventfd(2) returns a new fd (or -1), owned by the File below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(ShimError::io("eventfd", std::io::Error::last_os_error()));
    }
    // SAFETY: raw is a fresh, valid fd that nothing else owns.
    let mut event = unsafe { File::from_raw_fd(raw) };
    let register = dir.join("cgroup.event_control");
    std::fs::write(
        &register,
        format!("{} {}", event.as_raw_fd(), oom_control.as_raw_fd()),
    )
    .map_err(|e| ShimError::io(&register, e))?;
    spawn(move || {
        let _keep = oom_control;
        let mut count = [0u8; 8];
        // The eventfd also fires when the cgroup is removed: then stop.
        while event.read_exact(&mut count).is_ok() && control.exists() {
            on_oom();
        }
    })
}

fn watch_v2(dir: &Path, on_oom: impl Fn()) {
    let events = dir.join("memory.events");
    let oom_kills = || -> Option<u64> {
        let text = std::fs::read_to_string(&events).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    };
    let mut seen = oom_kills().unwrap_or(0);
    while let Some(now) = oom_kills() {
        if now > seen {
            seen = now;
            on_oom();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("oom".into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| ShimError::io("oom watcher thread", e))
}
