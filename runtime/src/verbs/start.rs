use libcontainer::container::ContainerStatus;

use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;

pub fn start(root: &StateRoot, id: &str) -> Result<()> {
    let mut container = root.load(id)?;
    if container.status() != ContainerStatus::Created {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "start",
            status: crate::verbs::state::status_name(container.status()),
            hint: "only a created container can be started; `godwit run` creates and starts",
        });
    }
    container
        .start()
        .map_err(|e| RuntimeError::lc("start", id, e))?;
    tracing::info!(id, "started");
    Ok(())
}
