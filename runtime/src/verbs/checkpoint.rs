//! `godwit checkpoint`: the container's process tree written to an image
//! directory by the embedded dumper (crate `godwit-checkpoint`).

use libcgroups::common::CgroupManager;
use libcontainer::container::ContainerStatus;

use crate::error::{Result, RuntimeError};
use crate::requests::CheckpointRequest;
use crate::store::{cgroup_manager, recorded_spec, StateRoot};

/// File in the image directory holding the spec the container ran with.
pub const SPEC_DUMP: &str = "spec.dump";

/// Dumps a running container into `args.image_path`. Without
/// `leave_running` the container is gone afterwards (as with runc); a
/// failed dump leaves it running and removes the partial image.
pub fn checkpoint(
    root: &StateRoot,
    args: &CheckpointRequest,
) -> Result<godwit_checkpoint::DumpStats> {
    let id = args.id.as_str();
    let mut container = root.load(id)?;
    // A paused container can be checkpointed too (containerd pauses a task
    // before its Checkpoint call); it stays paused unless it is gone after.
    let paused = container.status() == ContainerStatus::Paused;
    if !paused && container.status() != ContainerStatus::Running {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "checkpoint",
            status: crate::verbs::state::status_name(container.status()),
            hint: "only a running or paused container can be checkpointed",
        });
    }
    // With --export and no --image-path, the image is a temporary directory
    // (under --work-path or next to the state), removed once the archive is written.
    let (image_buf, temp_image) = args.image_dir(root.path());
    let image = image_buf.as_path();
    if temp_image {
        let _ = std::fs::remove_dir_all(image);
    }
    let existed = image.exists();
    // An earlier checkpoint there is replaced (podman checkpoints into the
    // same directory again after --leave-running); anything else is refused.
    crate::criu_compat::prepare_image_dir(image)?;
    let manager = cgroup_manager(&container)?;
    let mut pids: Vec<i32> = manager
        .get_all_pids()
        .map_err(|e| RuntimeError::cgroup(id, e))?
        .iter()
        .map(|p| p.as_raw())
        .collect();
    pids.sort_unstable();
    let spec = recorded_spec(&container)?;
    crate::notify::check_opt_out(&spec, id)?;
    let init = container.pid().map(|p| p.as_raw()).unwrap_or(0);
    // A frozen workload could not act on the notification before the dump.
    if let Some((signal, delay)) = crate::notify::notification(&spec)?.filter(|_| !paused) {
        // Shortly before: the workload may flush or quiesce.
        crate::notify::send(init, signal)?;
        std::thread::sleep(delay);
    }
    let mut extra_files = extra_files(init, &spec)?;
    let freezer = freezer_dir(init);
    // A checkpoint process killed from here on leaves the container as it
    // found it, and no partial image or archive (crate::dump_guard).
    let mut guard = crate::dump_guard::DumpGuard::arm(crate::dump_guard::GuardPlan {
        id: id.to_string(),
        freezer: freezer.clone(),
        paused,
        image: (!existed).then(|| image.to_path_buf()),
        export: args.export.clone(),
    })?;

    // tmpfs contents are read with the container frozen, so that they match
    // the processes' state; the dumper's own freeze then finds it frozen.
    let scratch = crate::tmpfs::scratch_mounts(&spec);
    let pre_frozen = match (&freezer, scratch.is_empty() || paused) {
        (Some(cgroup), false) => {
            crate::tmpfs::set_frozen(cgroup, true)?;
            Some(cgroup.clone())
        }
        _ => None,
    };
    let thaw = |frozen: &Option<std::path::PathBuf>| {
        if let Some(cgroup) = frozen {
            let _ = crate::tmpfs::set_frozen(cgroup, false);
        }
    };
    if !scratch.is_empty() {
        match crate::tmpfs::capture(init, &scratch) {
            Ok(bytes) => extra_files.push((crate::tmpfs::TMPFS_DUMP.to_string(), bytes)),
            Err(e) => {
                thaw(&pre_frozen);
                return Err(e);
            }
        }
    }

    let held = godwit_checkpoint::dump_and_hold(
        &pids,
        image,
        &godwit_checkpoint::DumpOptions {
            leave_running: args.leave_running,
            extra_files,
            // The init's stdio belongs to whoever ran the container; restore
            // reconnects it to its own (as runc does with its descriptors).
            external_stdio: true,
            freeze_cgroup: freezer.clone(),
            keep_frozen: paused,
            // A terminal container's foreground process group travels.
            record_terminal: true,
            ..Default::default()
        },
    );
    // The dumper thaws the cgroup once every thread is seized (and, with
    // keep_frozen, freezes it again before releasing them): a paused
    // container behind a failed dump is frozen again here.
    let stays = held.is_err();
    if let (true, true, Some(cgroup)) = (paused, stays, &freezer) {
        if let Err(e) = crate::tmpfs::set_frozen(cgroup, true) {
            tracing::error!(
                id,
                "could not pause the container again after the checkpoint: {e}"
            );
        }
    }
    let dump_failed = |e| RuntimeError::Dump {
        id: id.to_string(),
        source: Box::new(e),
    };
    let held = match held {
        Ok(held) => held,
        Err(e) => {
            // Never leave the container frozen behind a failed dump.
            thaw(&pre_frozen);
            // The dumper left the processes running; leave no partial image.
            if !existed {
                let _ = std::fs::remove_dir_all(image);
            }
            return Err(dump_failed(e));
        }
    };
    // The process image is complete and durable. Left running, the tree
    // goes on now; otherwise it stays held until the rootfs changes and the
    // archive are written too, so that a failure there (a full disk) lets the
    // container run on as if nothing had happened.
    let mut stats = held.stats().clone();
    let mut held = Some(held);
    if args.leave_running {
        if let Some(tree) = held.take() {
            stats = tree.finish().map_err(dump_failed)?;
        }
    }
    // The rootfs changes go into the image directory (and from there to the
    // archive's top level), whether exported or not.
    let written = crate::criu_compat::write_marker(image)
        .and_then(|()| capture_rootfs(&container, &spec, image))
        .and_then(|captured| match &args.export {
            Some(file) => export(&container, &spec, image, file, &stats, &captured),
            None => Ok(()),
        });
    if let Err(e) = written {
        match held {
            Some(tree) => {
                let _ = tree.abort();
                thaw(&pre_frozen);
                if !existed {
                    let _ = std::fs::remove_dir_all(image);
                }
            }
            None if temp_image => {
                let _ = std::fs::remove_dir_all(image);
            }
            None => {
                tracing::error!(id, image = %image.display(), "rootfs capture or export failed; the process image is complete there");
            }
        }
        return Err(e);
    }
    if let Some(tree) = held {
        // The tree is killed now: from here on the image is all there is of
        // the workload, and a killed checkpoint keeps it.
        guard.keep_image();
        stats = tree.finish().map_err(dump_failed)?;
        let restored = crate::restored::Record::load(&container.root);
        crate::verbs::delete::delete_container(&mut container, id, true)?;
        restored.cleanup();
    }
    if temp_image {
        let _ = std::fs::remove_dir_all(image);
    }
    // podman reads the statistics from its work path (--print-stats) and
    // puts them in its archive (--export).
    if let Some(work) = &args.work_path {
        let bytes = crate::criu_compat::stats_dump_bytes(&stats);
        if let Err(e) =
            crate::criu_compat::write_stats(work, crate::criu_compat::STATS_DUMP, &bytes)
        {
            tracing::warn!(id, "checkpointed, but the statistics were not written: {e}");
        }
    }
    tracing::info!(id, image = %image.display(), processes = stats.processes, "checkpointed");
    Ok(stats)
}

/// The container's own files of an image, beside the dumper's: the spec it
/// ran with, its time namespace offsets, its terminal and its network
/// namespace's own state.
pub(crate) fn extra_files(
    init: i32,
    spec: &oci_spec::runtime::Spec,
) -> Result<Vec<(String, Vec<u8>)>> {
    let spec_bytes = serde_json::to_vec(spec).map_err(|e| RuntimeError::io(SPEC_DUMP, e.into()))?;
    let timens_bytes = serde_json::to_vec(&crate::timens::read(init)?)
        .map_err(|e| RuntimeError::io(crate::timens::TIMENS_DUMP, e.into()))?;
    let mut extra_files = vec![
        (SPEC_DUMP.to_string(), spec_bytes),
        (crate::timens::TIMENS_DUMP.to_string(), timens_bytes),
    ];
    if let Some(net) = crate::netns_state::capture(init)? {
        let bytes = serde_json::to_vec(&net)
            .map_err(|e| RuntimeError::io(crate::netns_state::NET_DUMP, e.into()))?;
        extra_files.push((crate::netns_state::NET_DUMP.to_string(), bytes));
    }
    Ok(extra_files)
}

/// The container's rootfs changes, written into the image directory.
pub(crate) fn capture_rootfs(
    container: &libcontainer::container::Container,
    spec: &oci_spec::runtime::Spec,
    image: &std::path::Path,
) -> Result<crate::rootfs_diff::Captured> {
    let rootfs = crate::bundle::rootfs(container.bundle(), spec);
    let since = container
        .created()
        .map(std::time::SystemTime::from)
        .unwrap_or(std::time::UNIX_EPOCH);
    crate::rootfs_diff::capture_into_image(&rootfs, since, image)
}

/// Writes the self-contained archive of CHECKPOINT.md for a dumped container.
fn export(
    container: &libcontainer::container::Container,
    spec: &oci_spec::runtime::Spec,
    image: &std::path::Path,
    file: &std::path::Path,
    stats: &godwit_checkpoint::DumpStats,
    captured: &crate::rootfs_diff::Captured,
) -> Result<()> {
    use crate::archive::ArchiveContents;
    let config = archive_config(container, spec, captured);
    let contents = ArchiveContents {
        image_dir: image.to_path_buf(),
        spec_dump: serde_json::to_vec(spec).map_err(|e| RuntimeError::io(file, e.into()))?,
        config,
        rootfs_diff: Some(captured.diff.clone()),
        deleted_files: captured.deleted.clone(),
        stats: stats_json(stats, captured.entries),
    };
    crate::archive::export(&contents, file).map_err(RuntimeError::from)
}

/// config.dump's record of a dumped container.
pub(crate) fn archive_config(
    container: &libcontainer::container::Container,
    spec: &oci_spec::runtime::Spec,
    captured: &crate::rootfs_diff::Captured,
) -> crate::archive::ArchiveConfig {
    let id = container.id();
    let mut config = crate::archive::ArchiveConfig::new(id);
    // A base overlay cannot name (a ':' or ',' in a path) is left out: such
    // an archive restores only onto a bundle given with --bundle.
    let nameable = captured
        .base
        .lowerdirs()
        .iter()
        .all(|d| crate::overlay::check_option_path(d).is_ok());
    if nameable {
        config.rootfs_base = Some(captured.base.clone());
    } else {
        tracing::warn!(id, base = ?captured.base, "rootfs base not recorded: overlay cannot name it; restore will need --bundle");
    }
    config.annotations = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    config.created = container.created();
    config
}

/// stats-dump: the dump's phase timings and sizes.
pub(crate) fn stats_json(
    stats: &godwit_checkpoint::DumpStats,
    entries: usize,
) -> serde_json::Value {
    serde_json::json!({
        "freeze_us": stats.freeze_us,
        "frozen_us": stats.frozen_us,
        "memdump_us": stats.memdump_us,
        "total_us": stats.total_us,
        "processes": stats.processes,
        "threads": stats.threads,
        "pages_written": stats.pages_written,
        "rootfs_diff_entries": entries,
    })
}

/// The freezer of `pid`'s cgroup: the v1 freezer hierarchy where there is one
/// (what `pause` uses on hybrid hosts like this one), else the v2 directory.
pub(crate) fn freezer_dir(pid: i32) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "freezer") {
            return Some(std::path::Path::new("/sys/fs/cgroup/freezer").join(rel));
        }
        if controllers.is_empty() {
            let base = if std::path::Path::new("/sys/fs/cgroup/unified").is_dir() {
                "/sys/fs/cgroup/unified"
            } else {
                "/sys/fs/cgroup"
            };
            v2 = Some(std::path::Path::new(base).join(rel));
        }
    }
    // cgroup v2 freezing needs cgroup.freeze (absent in the root cgroup).
    v2.filter(|d| d.join("cgroup.freeze").exists())
}
