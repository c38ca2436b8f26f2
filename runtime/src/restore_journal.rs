//! A killed `godwit restore` leaves nothing for long: before it creates
//! anything, restore writes a journal `.ID.restoring` in the state root
//! naming its pid (and that pid's start time) and every place it may fill —
//! the import directory, the stub's bundle, a recreated bundle with its
//! overlay mount, the console socket, the container's state (with its
//! cgroup and processes). The journal goes once the container is fully
//! restored, or once a failed restore has cleaned up after itself.
//!
//! The next godwit call for that id (`restore`, `create`, `run`, `delete`)
//! finds the journal; if its writer is gone (no process with that pid and
//! start time), the restore was killed midway, and [`recover`] removes
//! its debris — kills and deletes the half-made container, its cgroups,
//! unmounts and removes the recreated bundle, removes the work directories —
//! so the id is usable again. A restore still running is left alone (the
//! call fails, naming its pid).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::store::StateRoot;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Journal {
    pid: i32,
    /// /proc/PID/stat field 22: tells the restorer from a later process
    /// that got its pid.
    start_time: u64,
    import_dir: PathBuf,
    stub_bundle: PathBuf,
    recreated_bundle: Option<PathBuf>,
    console: PathBuf,
    systemd_cgroup: bool,
}

fn journal_path(root: &StateRoot, id: &str) -> PathBuf {
    root.path().join(format!(".{id}.restoring"))
}

/// The import directory of a restore of `id`.
pub fn import_dir(root: &StateRoot, id: &str) -> PathBuf {
    root.path().join(format!(".{id}.import"))
}

/// The stub's bundle directory of a restore of `id`.
pub fn stub_bundle(root: &StateRoot, id: &str) -> PathBuf {
    root.path().join(format!(".{id}.restore"))
}

/// Where a restore of `id` recreates its bundle (`--work-path` or the state root).
pub fn recreated_bundle(root: &StateRoot, id: &str, work_path: Option<&Path>) -> PathBuf {
    let parent = work_path.unwrap_or(root.path());
    let dir = parent.join(format!(".{id}.bundle"));
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A process's start time (clock ticks since boot), if it exists.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(") ")? + 2..];
    // After the command: state is field 3, start time field 22.
    rest.split(' ').nth(19)?.parse().ok()
}

/// The journal of a restore in progress; dropping it (or [`Self::finish`])
/// removes the journal file.
pub struct Active {
    path: PathBuf,
}

impl Active {
    /// The restore is complete, or cleaned up after itself.
    pub fn finish(self) {}
}

impl Drop for Active {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The restore of `id` is complete: the container is its own now.
pub fn end(root: &StateRoot, id: &str) {
    let _ = std::fs::remove_file(journal_path(root, id));
}

/// Test hook (documented in docs/runtime.md): with
/// `GODWIT_TEST_PAUSE_AT=POINT:FILE` in the environment, a restore reaching
/// `POINT` writes its pid to FILE and stops there for good, for a test to
/// SIGKILL it at a known place. Points: `after-import`, `after-bundle`,
/// `after-create`, `after-rebuild`.
pub fn test_pause(point: &str) {
    let Ok(spec) = std::env::var("GODWIT_TEST_PAUSE_AT") else {
        return;
    };
    let Some((at, file)) = spec.split_once(':') else {
        return;
    };
    if at != point {
        return;
    }
    let _ = std::fs::write(file, format!("{}\n", std::process::id()));
    loop {
        // SAFETY: pause(2) has no preconditions; only a signal ends this.
        unsafe { libc::pause() };
    }
}

/// Writes the journal of a restore of `id` about to begin (after
/// [`recover`]). The recreated bundle is `Some` for an archive restored
/// without `--bundle`.
pub fn begin(
    root: &StateRoot,
    id: &str,
    recreated: Option<PathBuf>,
    systemd_cgroup: bool,
) -> Result<Active> {
    let pid = std::process::id() as i32;
    let journal = Journal {
        pid,
        start_time: start_time(pid).unwrap_or(0),
        import_dir: import_dir(root, id),
        stub_bundle: stub_bundle(root, id),
        recreated_bundle: recreated,
        console: root.path().join(format!("{id}.console")),
        systemd_cgroup,
    };
    let path = journal_path(root, id);
    let text = serde_json::to_vec(&journal).map_err(|e| RuntimeError::io(&path, e.into()))?;
    // Written whole under a temporary name: a journal is never half there.
    let tmp = root.path().join(format!(".{id}.restoring.{pid}"));
    std::fs::write(&tmp, text).map_err(|e| RuntimeError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| RuntimeError::io(&path, e))?;
    Ok(Active { path })
}

/// Removes what a killed restore of `id` left (see the module comment).
/// Returns whether there was any; fails if that restore still runs.
pub fn recover(root: &StateRoot, id: &str) -> Result<bool> {
    let path = journal_path(root, id);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(RuntimeError::io(&path, e)),
    };
    let Ok(journal) = serde_json::from_slice::<Journal>(&text) else {
        // Not ours to interpret: only the fixed names are cleaned.
        tracing::warn!(id, journal = %path.display(), "unreadable restore journal; removing the standard work directories");
        remove_fixed(root, id);
        let _ = std::fs::remove_file(&path);
        return Ok(true);
    };
    if journal.pid != std::process::id() as i32
        && start_time(journal.pid).is_some_and(|t| t == journal.start_time)
    {
        return Err(RuntimeError::InvalidValue {
            what: "container id",
            value: id.to_string(),
            reason: format!(
                "a restore of {id} is in progress (godwit pid {}); wait for it, or kill it and try again",
                journal.pid
            ),
        });
    }
    tracing::warn!(
        id,
        pid = journal.pid,
        "a restore of this id was killed midway; removing what it left"
    );
    eprintln!(
        "godwit: warning: a restore of {id} (pid {}) was killed midway; removing what it left",
        journal.pid
    );
    // The half-made container first: its processes may hold the bundle busy.
    remove_container(root, id, &journal);
    if let Some(dir) = &journal.recreated_bundle {
        if let Err(e) = crate::overlay::unmount(&dir.join("rootfs")) {
            tracing::warn!(id, "unmounting {}: {e}", dir.display());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    for dir in [&journal.import_dir, &journal.stub_bundle] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(&journal.console);
    remove_fixed(root, id);
    std::fs::remove_file(&path).map_err(|e| RuntimeError::io(&path, e))?;
    Ok(true)
}

fn remove_fixed(root: &StateRoot, id: &str) {
    let _ = std::fs::remove_dir_all(import_dir(root, id));
    let _ = std::fs::remove_dir_all(stub_bundle(root, id));
}

/// Kills and deletes the container a killed restore was making: through
/// libcontainer when its state was saved, else by its cgroup (named by the
/// stub's config.json, as libcontainer derives it).
fn remove_container(root: &StateRoot, id: &str, journal: &Journal) {
    let dir = root.container_dir(id);
    if !dir.exists() {
        return;
    }
    match root.load(id) {
        Ok(mut container) => {
            if let Err(e) = crate::verbs::delete::delete_container(&mut container, id, true) {
                tracing::warn!(id, "deleting the half-restored container: {e}");
            }
        }
        Err(_) => {
            let config = journal.stub_bundle.join("config.json");
            let cgroups_path = std::fs::read(&config)
                .ok()
                .and_then(|t| serde_json::from_slice::<oci_spec::runtime::Spec>(&t).ok())
                .and_then(|s| s.linux().as_ref().and_then(|l| l.cgroups_path().clone()));
            let cgroup_path =
                libcontainer::utils::get_cgroup_path_for(&cgroups_path, id, journal.systemd_cgroup);
            kill_cgroup(id, cgroup_path, journal.systemd_cgroup);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn kill_cgroup(id: &str, cgroup_path: PathBuf, systemd: bool) {
    use libcgroups::common::{CgroupConfig, CgroupManager};
    let Ok(manager) = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path,
        systemd_cgroup: systemd,
        container_name: id.to_string(),
    }) else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let pids = manager.get_all_pids().unwrap_or_default();
        if pids.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = manager.remove();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_tells_a_live_process() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert_eq!(start_time(i32::MAX), None);
    }

    #[test]
    fn a_journal_of_a_dead_restorer_is_recovered_and_a_live_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::open(tmp.path()).unwrap();
        let id = "c1";
        // Ours, alive: refused... unless it is this very process (a restore
        // that recovers before it begins).
        let active = begin(&root, id, None, false).unwrap();
        std::fs::create_dir_all(import_dir(&root, id).join("checkpoint")).unwrap();
        std::fs::create_dir_all(stub_bundle(&root, id)).unwrap();
        std::mem::forget(active);
        // A live other process: the journal names our parent.
        let parent = nix::unistd::getppid().as_raw();
        let mut j: Journal =
            serde_json::from_slice(&std::fs::read(journal_path(&root, id)).unwrap()).unwrap();
        j.pid = parent;
        j.start_time = start_time(parent).unwrap();
        std::fs::write(journal_path(&root, id), serde_json::to_vec(&j).unwrap()).unwrap();
        let e = recover(&root, id).unwrap_err().to_string();
        assert!(e.contains("in progress"), "{e}");
        assert!(import_dir(&root, id).exists());
        // Dead (same pid, another start time): recovered.
        j.start_time += 1;
        std::fs::write(journal_path(&root, id), serde_json::to_vec(&j).unwrap()).unwrap();
        assert!(recover(&root, id).unwrap());
        assert!(!import_dir(&root, id).exists());
        assert!(!stub_bundle(&root, id).exists());
        assert!(!journal_path(&root, id).exists());
        assert!(!recover(&root, id).unwrap());
    }
}
