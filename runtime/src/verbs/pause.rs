//! `pause` and `resume`: the container's cgroup frozen and thawed through
//! the one freezer godwit has (`godwit_checkpoint::freezer`, also the
//! checkpoint's), which returns only once the kernel reports the cgroup
//! frozen, on cgroup v1 and v2.

use godwit_checkpoint::freezer::Freezer;
use libcontainer::container::{Container, ContainerStatus};

use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;

/// The freezer of a container's cgroup (found from its init).
fn freezer(container: &Container, id: &str, op: &'static str) -> Result<Freezer> {
    let init = container.pid().map(|p| p.as_raw()).unwrap_or(0);
    Freezer::of_pid(init).ok_or_else(|| RuntimeError::Unsupported {
        flag: op,
        reason: format!(
            "container {id}: no freezer for the cgroup of its init (pid {init}): \
             neither a v1 freezer nor a v2 cgroup.freeze"
        ),
    })
}

/// Checks that `id` is in `want` before `op`.
fn check_status(
    container: &Container,
    id: &str,
    op: &'static str,
    want: ContainerStatus,
    hint: &'static str,
) -> Result<()> {
    if container.status() != want {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op,
            status: crate::verbs::state::status_name(container.status()),
            hint,
        });
    }
    Ok(())
}

/// Freezes every process of the container (its cgroup's freezer).
pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let mut container = root.load(id)?;
    check_status(
        &container,
        id,
        "pause",
        ContainerStatus::Running,
        "only a running container can be paused",
    )?;
    freezer(&container, id, "pause")?
        .freeze()
        .map_err(|e| RuntimeError::freezer(id, e))?;
    container
        .set_status(ContainerStatus::Paused)
        .save()
        .map_err(|e| RuntimeError::lc("pause", id, e))
}

/// Thaws a paused container.
pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let mut container = root.load(id)?;
    check_status(
        &container,
        id,
        "resume",
        ContainerStatus::Paused,
        "only a paused container can be resumed",
    )?;
    freezer(&container, id, "resume")?
        .thaw()
        .map_err(|e| RuntimeError::freezer(id, e))?;
    container
        .set_status(ContainerStatus::Running)
        .save()
        .map_err(|e| RuntimeError::lc("resume", id, e))
}
