use libcontainer::container::ContainerStatus;

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
    container
        .delete(force)
        .map_err(|e| RuntimeError::lc("delete", id, e))?;
    restored.cleanup();
    tracing::info!(id, "deleted");
    Ok(())
}
