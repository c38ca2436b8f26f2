use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;
use libcontainer::container::ContainerStatus;

/// Freezes every process of the container (its cgroup's freezer).
pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let mut container = root.load(id)?;
    if container.status() != ContainerStatus::Running {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "pause",
            status: crate::verbs::state::status_name(container.status()),
            hint: "only a running container can be paused",
        });
    }
    container
        .pause()
        .map_err(|e| RuntimeError::lc("pause", id, e))
}

/// Thaws a paused container.
pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let mut container = root.load(id)?;
    if container.status() != ContainerStatus::Paused {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "resume",
            status: crate::verbs::state::status_name(container.status()),
            hint: "only a paused container can be resumed",
        });
    }
    container
        .resume()
        .map_err(|e| RuntimeError::lc("resume", id, e))
}
