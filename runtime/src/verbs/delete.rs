use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::{Container, ContainerStatus};

use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;

/// Deletes a stopped (or created) container; with `force`, kills a running one
/// first, and a missing container is not an error (as runc).
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<()> {
    crate::store::validate_id(id)?;
    // A restore of this id killed midway: its half-made container and work
    // directories go (restore_journal).
    let recovered = crate::restore_journal::recover(root, id)?;
    let mut container = match root.load(id) {
        Ok(c) => c,
        Err(RuntimeError::NotFound { .. }) if force || recovered => return Ok(()),
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
                // libcontainer removes only the container's own cgroup dirs:
                // sub-cgroups (`exec --cgroup`, or made by the workload) keep
                // them busy, and its processes are dead by now.
                if let Ok(config) = container.spec() {
                    remove_sub_cgroups(&config.cgroup_path);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Removes every sub-cgroup (deepest first) of the cgroup `path` in each
/// hierarchy under /sys/fs/cgroup (v1's controllers, the hybrid unified one,
/// or a pure v2 root). Processes still in one make its rmdir fail (EBUSY);
/// the caller tries again after they are gone.
fn remove_sub_cgroups(path: &Path) {
    let relative = path.to_string_lossy();
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() || relative.contains(':') {
        return; // the root, or a systemd unit: not ours to walk
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut bases = vec![root.join(relative), root.join("unified").join(relative)];
    if let Ok(entries) = std::fs::read_dir(root) {
        bases.extend(entries.flatten().map(|e| e.path().join(relative)));
    }
    for base in bases.iter().filter(|b| b.is_dir()) {
        remove_children(base);
    }
}

fn remove_children(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let child = entry.path();
            remove_children(&child);
            if let Err(e) = std::fs::remove_dir(&child) {
                tracing::debug!(path = %child.display(), "remove sub-cgroup: {e}");
            }
        }
    }
}
