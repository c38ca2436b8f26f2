//! `godwit checkpoint`: the container's process tree written to an image
//! directory by the embedded dumper (crate `godwit-checkpoint`).
//!
//! The passes, in the order of docs/architecture.md ("A checkpoint, pass by
//! pass"): [`read_target`] (status, pids, spec, opt-out), the image
//! directory checked, [`notify_before`], the dump guard armed,
//! [`capture_scratch`] (tmpfs read with the cgroup frozen), [`dump`] (the
//! dumper writes the process image and holds the tree), the rootfs changes
//! and the archive written ([`write_rest`]), and the end: the tree killed and
//! the container removed ([`remove_dumped`]), or let run on.

use godwit_checkpoint::freezer::Freezer;
use libcgroups::common::CgroupManager;
use libcontainer::container::{Container, ContainerStatus};
use oci_spec::runtime::Spec;

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
    // A bad key fails the checkpoint before anything is frozen.
    let sign_key = args
        .sign_key
        .as_deref()
        .map(crate::signing::load_signing_key)
        .transpose()?;
    let id = args.id.as_str();
    let mut target = read_target(root, id, "checkpoint")?;
    // With --export and no --image-path, the image is a temporary directory
    // (under --work-path or next to the state), removed once the archive is written.
    let (image_buf, temp_image) = args.image_dir(root.path());
    let image = image_buf.as_path();
    let created_image = prepare_image_dir(image, temp_image)?;
    notify_before(&target)?;
    let mut extra_files = extra_files(target.init, &target.spec)?;
    // A checkpoint process killed from here on leaves the container as it
    // found it, and no partial image or archive (crate::dump_guard).
    let mut guard = crate::dump_guard::DumpGuard::arm(crate::dump_guard::GuardPlan {
        id: id.to_string(),
        freezer: target.freezer_dir(),
        paused: target.paused,
        image: created_image.then(|| image.to_path_buf()),
        export: args.export.clone(),
    })?;
    let scratch = capture_scratch(&target, &mut extra_files)?;
    let options = godwit_checkpoint::DumpOptions {
        leave_running: args.leave_running,
        extra_files,
        // The init's stdio belongs to whoever ran the container; restore
        // reconnects it to its own (as runc does with its descriptors).
        external_stdio: true,
        freeze_cgroup: target.freezer_dir(),
        keep_frozen: target.paused,
        // A terminal container's foreground process group travels.
        record_terminal: true,
        ..Default::default()
    };
    let held = dump(&target, options, |opts| {
        godwit_checkpoint::dump_and_hold(&target.pids, image, opts).map_err(|e| dump_error(id, e))
    })
    .inspect_err(|_| {
        // Never leave the container frozen behind a failed dump, nor a
        // partial image (the dumper left the processes running).
        scratch.thaw(id);
        if created_image {
            let _ = std::fs::remove_dir_all(image);
        }
    })?;
    // The process image is complete and durable. Left running, the tree
    // goes on now; otherwise it stays held until the rootfs changes and the
    // archive are written too, so that a failure there (a full disk) lets the
    // container run on as if nothing had happened.
    let mut stats = held.stats().clone();
    let mut held = Some(held);
    if args.leave_running {
        if let Some(tree) = held.take() {
            stats = tree.finish().map_err(|e| dump_error(id, e))?;
        }
    }
    if let Err(e) = write_rest(
        &target,
        image,
        args.export.as_deref(),
        &stats,
        sign_key.as_ref(),
    ) {
        let tree_held = held.is_some();
        if let Some(tree) = held {
            let _ = tree.abort();
            scratch.thaw(id);
        }
        match after_write_failure(tree_held, created_image, temp_image) {
            WriteFailure::RemoveImage => {
                let _ = std::fs::remove_dir_all(image);
            }
            WriteFailure::KeepImage => {
                tracing::error!(id, image = %image.display(), "rootfs capture or export failed; the process image is complete there");
            }
            WriteFailure::Nothing => {}
        }
        return Err(e);
    }
    if let Some(tree) = held {
        // The tree is killed now: from here on the image is all there is of
        // the workload, and a killed checkpoint keeps it.
        guard.keep_image();
        stats = tree.finish().map_err(|e| dump_error(id, e))?;
        remove_dumped(&mut target.container, id)?;
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

/// What a checkpoint (or migration) dumps: the container, the spec it ran
/// with, its init and every pid of its cgroup, and its freezer.
pub(crate) struct Target {
    pub container: Container,
    pub spec: Spec,
    /// Paused before: it stays paused unless it is gone after.
    pub paused: bool,
    /// The init's host pid (0 if libcontainer has none).
    pub init: i32,
    /// Every process of the container's cgroup, sorted.
    pub pids: Vec<i32>,
    pub freezer: Option<Freezer>,
}

impl Target {
    /// The freezer's directory, as the dumper and the dump guard take it.
    pub fn freezer_dir(&self) -> Option<std::path::PathBuf> {
        self.freezer.as_ref().map(|f| f.dir().to_path_buf())
    }
}

/// Whether a container of `status` can be dumped (by `op`), and whether it
/// is paused. A paused container can be checkpointed too (containerd pauses
/// a task before its Checkpoint call).
pub(crate) fn dumpable(id: &str, op: &'static str, status: ContainerStatus) -> Result<bool> {
    match status {
        ContainerStatus::Running => Ok(false),
        ContainerStatus::Paused => Ok(true),
        other => Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op,
            status: crate::verbs::state::status_name(other),
            hint: match op {
                "migrate" => "only a running or paused container can be migrated",
                _ => "only a running or paused container can be checkpointed",
            },
        }),
    }
}

/// Pass 1: the container `id`, checked dumpable, with its pids, recorded
/// spec (a container that opted out is refused here) and freezer.
pub(crate) fn read_target(root: &StateRoot, id: &str, op: &'static str) -> Result<Target> {
    let container = root.load(id)?;
    let paused = dumpable(id, op, container.status())?;
    let spec = recorded_spec(&container)?;
    crate::notify::check_opt_out(&spec, id)?;
    let manager = cgroup_manager(&container)?;
    let mut pids: Vec<i32> = manager
        .get_all_pids()
        .map_err(|e| RuntimeError::cgroup(id, e))?
        .iter()
        .map(|p| p.as_raw())
        .collect();
    pids.sort_unstable();
    let init = container.pid().map(|p| p.as_raw()).unwrap_or(0);
    let freezer = Freezer::of_pid(init);
    Ok(Target {
        container,
        spec,
        paused,
        init,
        pids,
        freezer,
    })
}

/// The image directory must not hold anything. A temporary image left by an
/// earlier killed export is removed first. Returns whether this checkpoint
/// creates it (and so removes it on failure).
fn prepare_image_dir(image: &std::path::Path, temp_image: bool) -> Result<bool> {
    if temp_image {
        let _ = std::fs::remove_dir_all(image);
    }
    let existed = image.exists();
    // An earlier checkpoint there is replaced (podman checkpoints into the
    // same directory again after --leave-running); anything else is refused.
    crate::criu_compat::prepare_image_dir(image)?;
    Ok(!existed)
}

/// The spec's pre-checkpoint signal, sent shortly before the dump so that
/// the workload may flush or quiesce. A frozen workload could not act on it.
pub(crate) fn notify_before(target: &Target) -> Result<()> {
    let notification = crate::notify::notification(&target.spec)?;
    if let Some((signal, delay)) = notification.filter(|_| !target.paused) {
        crate::notify::send(target.init, signal)?;
        std::thread::sleep(delay);
    }
    Ok(())
}

/// Whether the runtime itself freezes the cgroup before the dump: to read
/// tmpfs contents that match the processes' state, when there are any and
/// the container is not frozen already.
pub(crate) fn freeze_for_scratch(has_freezer: bool, has_scratch: bool, paused: bool) -> bool {
    has_freezer && has_scratch && !paused
}

/// The cgroup frozen by [`capture_scratch`] (the dumper's own freeze then
/// finds it frozen and thaws it once every thread is seized).
#[must_use]
pub(crate) struct ScratchFreeze(Option<Freezer>);

impl ScratchFreeze {
    /// Thaws what [`capture_scratch`] froze (a failure is logged: the caller
    /// is already reporting one).
    pub fn thaw(&self, id: &str) {
        if let Some(f) = &self.0 {
            if let Err(e) = f.thaw() {
                tracing::error!(id, "could not thaw the container: {e}");
            }
        }
    }
}

/// Pass: the contents of the container's tmpfs mounts, read with the
/// cgroup frozen, added to `extra_files`.
pub(crate) fn capture_scratch(
    target: &Target,
    extra_files: &mut Vec<(String, Vec<u8>)>,
) -> Result<ScratchFreeze> {
    let scratch = crate::tmpfs::scratch_mounts(&target.spec);
    let id = target.container.id();
    let frozen = match &target.freezer {
        Some(f) if freeze_for_scratch(true, !scratch.is_empty(), target.paused) => {
            f.freeze().map_err(|e| RuntimeError::freezer(id, e))?;
            ScratchFreeze(Some(f.clone()))
        }
        _ => ScratchFreeze(None),
    };
    if !scratch.is_empty() {
        match crate::tmpfs::capture(target.init, &scratch) {
            Ok(bytes) => extra_files.push((crate::tmpfs::TMPFS_DUMP.to_string(), bytes)),
            Err(e) => {
                frozen.thaw(id);
                return Err(e);
            }
        }
    }
    Ok(frozen)
}

pub(crate) fn dump_error(id: &str, e: godwit_checkpoint::Error) -> RuntimeError {
    RuntimeError::Dump {
        id: id.to_string(),
        source: Box::new(e),
    }
}

/// Pass: the dumper (`run`, given `options`) writes the process image and
/// holds the tree. It thaws the cgroup once every thread is seized (and,
/// with keep_frozen, freezes it again before releasing them): a paused
/// container behind a failed dump is frozen again here.
pub(crate) fn dump<T>(
    target: &Target,
    options: godwit_checkpoint::DumpOptions,
    run: impl FnOnce(&godwit_checkpoint::DumpOptions) -> Result<T>,
) -> Result<T> {
    let held = run(&options);
    if let (true, Err(_), Some(f)) = (target.paused, &held, &target.freezer) {
        if let Err(e) = f.freeze() {
            tracing::error!(
                id = target.container.id(),
                "could not pause the container again after the checkpoint: {e}"
            );
        }
    }
    held
}

/// Pass: the container's rootfs changes into the image directory (and
/// from there to the archive's top level), and with `export_to` the archive.
fn write_rest(
    target: &Target,
    image: &std::path::Path,
    export_to: Option<&std::path::Path>,
    stats: &godwit_checkpoint::DumpStats,
    sign_key: Option<&ed25519_dalek::SigningKey>,
) -> Result<()> {
    // The image is complete: the marker podman looks for goes beside it.
    crate::criu_compat::write_marker(image)?;
    let captured = capture_rootfs(&target.container, &target.spec, image)?;
    match export_to {
        Some(file) => export(
            &target.container,
            &target.spec,
            image,
            file,
            stats,
            &captured,
            sign_key,
        ),
        None => Ok(()),
    }
}

/// What a failure to write the rootfs changes or the archive leaves.
#[derive(Debug, PartialEq, Eq)]
enum WriteFailure {
    /// Remove the image: the tree runs on (it was held) and the directory
    /// is ours, or the image was only a temporary one for the archive.
    RemoveImage,
    /// The tree was already let go (`--leave-running`): the process image
    /// is complete and stays, only the rest failed.
    KeepImage,
    /// The image directory was the caller's and the tree runs on: leave it.
    Nothing,
}

fn after_write_failure(tree_held: bool, created_image: bool, temp_image: bool) -> WriteFailure {
    match (tree_held, created_image, temp_image) {
        (true, true, _) => WriteFailure::RemoveImage,
        (true, false, _) => WriteFailure::Nothing,
        (false, _, true) => WriteFailure::RemoveImage,
        (false, _, false) => WriteFailure::KeepImage,
    }
}

/// The end of a dumped container whose tree was killed: its state,
/// cgroups and (for a restored one) recreated bundle removed.
pub(crate) fn remove_dumped(container: &mut Container, id: &str) -> Result<()> {
    let restored = crate::restored::Record::load(&container.root);
    crate::verbs::delete::delete_container(container, id, true)?;
    restored.cleanup();
    Ok(())
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
    sign_key: Option<&ed25519_dalek::SigningKey>,
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
    crate::archive::export_signed(&contents, file, sign_key).map_err(RuntimeError::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_or_paused_containers_are_dumped() {
        assert!(!dumpable("c", "checkpoint", ContainerStatus::Running).unwrap());
        assert!(dumpable("c", "checkpoint", ContainerStatus::Paused).unwrap());
        for status in [
            ContainerStatus::Created,
            ContainerStatus::Stopped,
            ContainerStatus::Creating,
        ] {
            let e = dumpable("c", "migrate", status).unwrap_err().to_string();
            assert!(e.contains("cannot migrate container c"), "{e}");
            assert!(e.contains("can be migrated"), "{e}");
        }
    }

    #[test]
    fn scratch_freeze_only_when_needed() {
        assert!(freeze_for_scratch(true, true, false));
        assert!(!freeze_for_scratch(true, true, true), "already frozen");
        assert!(!freeze_for_scratch(true, false, false), "nothing to read");
        assert!(!freeze_for_scratch(false, true, false), "no freezer");
    }

    #[test]
    fn a_failed_write_removes_only_what_is_ours_to_remove() {
        use WriteFailure::*;
        assert_eq!(after_write_failure(true, true, false), RemoveImage);
        assert_eq!(after_write_failure(true, true, true), RemoveImage);
        assert_eq!(after_write_failure(true, false, false), Nothing);
        assert_eq!(after_write_failure(false, true, true), RemoveImage);
        assert_eq!(after_write_failure(false, false, true), RemoveImage);
        assert_eq!(after_write_failure(false, true, false), KeepImage);
    }

    #[test]
    fn stats_json_names_every_phase() {
        let stats = godwit_checkpoint::DumpStats {
            freeze_us: 1,
            processes: 2,
            ..Default::default()
        };
        let v = stats_json(&stats, 7);
        assert_eq!(v["freeze_us"], 1);
        assert_eq!(v["processes"], 2);
        assert_eq!(v["rootfs_diff_entries"], 7);
    }
}
