use std::time::{Duration, Instant};

use libcontainer::container::{Container, ContainerStatus};

use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;

/// Deletes a stopped (or created) container; with `force`, kills a running one
/// first, and a missing container is not an error (as runc).
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    let mut container = match root.load(id) {
        Ok(c) => c,
        Err(RuntimeError::NotFound { .. }) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    if !force
        && matches!(
            container.status(),
            ContainerStatus::Running | ContainerStatus::Paused
        )
    {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "delete",
            status: crate::verbs::state::status_name(container.status()),
            hint: "stop it first, or pass --force",
        });
    }
    // A restored container may own a bundle recreated from its archive.
    let restored = crate::restored::Record::load(&container.root);
    delete_container(&mut container, id, force)?;
    restored.cleanup();
    tracing::info!(id, "deleted");
    Ok(())
}

/// libcontainer's delete, again while it fails for up to 5 s: a killed
/// process takes a while to exit (freeing a GiB takes ~0.5 s), and meanwhile
/// its cgroup dirs refuse rmdir (EBUSY) and /proc/PID/stat may vanish under
/// libcontainer's status read. The state stays until a delete succeeds.
pub fn delete_container(container: &mut Container, id: &str, force: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match container.delete(force) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(RuntimeError::lc("delete", id, e)),
            Err(e) => {
                tracing::debug!(id, "delete: {e}; again");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
