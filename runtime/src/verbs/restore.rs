//! `godwit restore`: a container rebuilt from a checkpoint image.
//!
//! libcontainer (0.7) has no restore of its own, and its executor runs in the
//! container's init only after the user switch, capability drop and seccomp.
//! So the container is created from the destination's spec (the bundle's
//! config.json, compared with the checkpointed one) widened for a stub
//! (root, full capabilities, no seccomp, no no_new_privs); its executor parks
//! in pause(); godwit stops and seizes it and the dumper rebuilds the process
//! tree in it, applying the workload's own creds and seccomp filters last.

use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{kill, Signal};
use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder, Spec};

use crate::console::ConsoleSocket;
use crate::error::{Result, RuntimeError};
use crate::requests::{RestoreRequest, RestoreSource, RuntimeOptions};
use crate::restored::RecreatedBundle;
use crate::store::{validate_id, StateRoot};
use crate::verbs::checkpoint::SPEC_DUMP;
use crate::verbs::run::{prepare_foreground, proxy_terminal, wait_forwarding};

/// The init's workload during a restore: wait to be stopped and rebuilt.
#[derive(Clone)]
struct StubExecutor;

impl Executor for StubExecutor {
    fn exec(&self, _spec: &Spec) -> std::result::Result<(), ExecutorError> {
        // The dumper restores the handlers that were caught or ignored and
        // takes every other one to be the default, as after an exec; this
        // process never exec'd and inherited godwit's (Rust ignores SIGPIPE;
        // a caller may have left 32 and 33 ignored).
        crate::executor::reset_dispositions();
        loop {
            // SAFETY: pause(2) has no preconditions; godwit stops us from outside
            // (a pid namespace's init cannot stop itself).
            unsafe { libc::pause() };
        }
    }

    fn validate(&self, _spec: &Spec) -> std::result::Result<(), ExecutorValidationError> {
        Ok(())
    }
}

/// The spec widened for the stub: see the module comment.
fn stub_spec(spec: &Spec, rootfs: &Path, terminal: bool) -> Result<Spec> {
    let mut spec = spec.clone();
    let mut process = spec.process().clone().unwrap_or_default();
    let mut user = process.user().clone();
    user.set_uid(0);
    user.set_gid(0);
    user.set_additional_gids(None);
    process.set_user(user);
    // Every capability godwit itself may hold (this host's root lacks
    // CAP_SYS_RESOURCE, and asking for it would fail the stub's setup).
    let held = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all());
    let all: std::collections::HashSet<Capability> = held
        .iter()
        .filter_map(|c| c.to_string().trim_start_matches("CAP_").parse().ok())
        .collect();
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(all.clone())
        .effective(all.clone())
        .permitted(all.clone())
        .inheritable(all.clone())
        .ambient(all)
        .build()
        .map_err(|e| RuntimeError::InvalidValue {
            what: "stub capabilities",
            value: String::new(),
            reason: e.to_string(),
        })?;
    process.set_capabilities(Some(caps));
    process.set_no_new_privileges(Some(false));
    // A terminal container's stub gets a new pty from libcontainer (its
    // stdio and controlling terminal), which the restored tree inherits.
    process.set_terminal(Some(terminal));
    process.set_args(Some(vec!["/godwit-restore-stub".into()]));
    spec.set_process(Some(process));
    if let Some(mut linux) = spec.linux().clone() {
        linux.set_seccomp(None);
        spec.set_linux(Some(linux));
    }
    // Hooks ran when the container was first created; a restore is not a new start.
    spec.set_hooks(None);
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs.to_path_buf());
    spec.set_root(Some(root));
    Ok(spec)
}

/// Waits until `pid` is in a stop state (after our SIGSTOP).
fn wait_stopped(pid: i32) -> Result<()> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(&path).map_err(|e| RuntimeError::io(&path, e))?;
        // The state letter follows the ") " that ends the command name.
        let state = stat.rfind(") ").and_then(|i| stat[i + 2..].chars().next());
        if state == Some('T') {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(RuntimeError::Unsupported {
                flag: "restore",
                reason: format!("the stub (pid {pid}) did not stop within 5 s (state {state:?})"),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The stdio the stub (and so, through `RestoreOptions::inherit_stdio`, the
/// restored workload) gets instead of the caller's: the containerd shim
/// passes the pipes it copies to the task's fifos.
pub struct StubStdio {
    pub stdin: std::os::fd::OwnedFd,
    pub stdout: std::os::fd::OwnedFd,
    pub stderr: std::os::fd::OwnedFd,
}

/// The rootfs changes a checkpoint carried: the diff tar and the deletions.
struct RootfsChanges {
    diff: Option<PathBuf>,
    deleted: Vec<String>,
}

/// Where the restored container's bundle comes from.
enum BundleSource {
    /// `--bundle DIR` (or the current directory): the changes are applied to its rootfs.
    Given(PathBuf),
    /// Recreated from the archive (the changes are already in its overlay).
    Recreated(RecreatedBundle),
}

/// Restores the image (or archive) `args.source` as container `args.id`. A failure leaves no container behind.
pub fn restore(root: &StateRoot, global: &RuntimeOptions, args: &RestoreRequest) -> Result<i32> {
    restore_with_stdio(root, global, args, None)
}

/// [`restore`], the workload's stdio being `stdio` instead of the caller's.
pub fn restore_with_stdio(
    root: &StateRoot,
    global: &RuntimeOptions,
    args: &RestoreRequest,
    stdio: Option<StubStdio>,
) -> Result<i32> {
    crate::verbs::create::check_systemd(global)?;
    let id = args.id.as_str();
    validate_id(id)?;
    // What a restore of this id killed midway left goes first.
    crate::restore_journal::recover(root, id)?;
    if root.exists(id) || root.container_dir(id).exists() {
        return Err(RuntimeError::AlreadyExists {
            id: id.to_string(),
            root: root.path().to_path_buf(),
        });
    }
    // Checked before anything is written (a bad key changes nothing).
    let (limits, trust) = import_policy(args)?;
    let recreated = match (&args.source, &args.bundle) {
        (RestoreSource::Archive(_), None) => Some(crate::restore_journal::recreated_bundle(
            root,
            id,
            args.work_path.as_deref(),
        )),
        _ => None,
    };
    // Until the container runs (or this restore cleaned up after itself),
    // the journal says what to remove if this process is killed.
    let _journal = crate::restore_journal::begin(root, id, recreated, global.systemd_cgroup)?;
    match &args.source {
        RestoreSource::Archive(file) => {
            // The archive is checked whole before anything is extracted, and
            // extracted next to the state; gone again whatever happens.
            let dest = crate::restore_journal::import_dir(root, id);
            let _ = std::fs::remove_dir_all(&dest);
            let _cleanup = RemoveOnDrop(dest.clone());
            let imported = crate::archive::import_trusted(file, &dest, &limits, &trust)?;
            warn_unauthenticated(id, file, &imported.signature);
            crate::restore_journal::test_pause("after-import");
            restore_imported(root, global, args, &imported, stdio)
        }
        RestoreSource::Image(image) => {
            if !image.is_dir() {
                return Err(RuntimeError::InvalidValue {
                    what: "--image-path",
                    value: image.display().to_string(),
                    reason: "no such directory: give the directory `godwit checkpoint \
                             --image-path` wrote, or --import an archive"
                        .into(),
                });
            }
            // Checkpoint leaves the rootfs changes in the image directory.
            let diff = image.join(crate::archive::ROOTFS_DIFF);
            let changes = RootfsChanges {
                diff: diff.is_file().then_some(diff),
                deleted: crate::rootfs_diff::read_deleted(image)?,
            };
            let bundle = args.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
            restore_image(
                root,
                global,
                args,
                image,
                BundleSource::Given(bundle),
                &changes,
                stdio,
            )
        }
    }
}

/// The bounds and the signature policy of `restore --import`, from its
/// flags (or their environment variables).
pub fn import_policy(
    args: &RestoreRequest,
) -> Result<(crate::archive::ImportLimits, crate::archive::Trust)> {
    let opts = &args.import;
    let mut limits = crate::archive::ImportLimits::default();
    if let Some(max) = opts.max_size {
        limits.max_total_size = max;
        limits.max_entry_size = limits.max_entry_size.min(max);
    }
    if let Some(reserve) = opts.reserve {
        limits.reserve_bytes = reserve;
    }
    let verify_key = opts
        .verify_key
        .as_deref()
        .map(crate::signing::load_verifying_key)
        .transpose()?;
    if opts.require_signature && verify_key.is_none() {
        return Err(RuntimeError::InvalidValue {
            what: "--require-signature",
            value: String::new(),
            reason: format!(
                "a signature can only be checked with a key: give --verify-key PUB.pem (or {})",
                crate::signing::VERIFY_KEY_ENV
            ),
        });
    }
    let trust = crate::archive::Trust {
        verify_key,
        require_signature: opts.require_signature,
    };
    Ok((limits, trust))
}

/// An archive restored without a checked signature: said on stderr.
fn warn_unauthenticated(id: &str, file: &Path, status: &crate::archive::SignatureStatus) {
    use crate::archive::SignatureStatus as S;
    let msg = match status {
        S::Verified { public_key } => {
            tracing::info!(id, archive = %file.display(), key = %public_key, "archive signature verified");
            return;
        }
        S::Unsigned => format!(
            "archive {} is unauthenticated (not signed): its digests show it is whole, not who made it; \
             sign it with `checkpoint --sign-key` and restore with --verify-key (or {}=1 to refuse unsigned archives)",
            file.display(),
            crate::signing::REQUIRE_ENV
        ),
        S::NotChecked { public_key } => format!(
            "archive {} is signed (key {public_key}) but its signature was not checked: no --verify-key \
             (or {}) was given, so it is unauthenticated",
            file.display(),
            crate::signing::VERIFY_KEY_ENV
        ),
    };
    tracing::warn!(id, "{msg}");
    eprintln!("godwit: warning: {msg}");
}

/// Restores an archive already checked whole and extracted (by
/// `archive::import`, or received by `godwit receive` under the same checks)
/// as container `args.id`: onto `args.bundle`, or a bundle recreated
/// from the archive. A failure leaves no container behind.
pub fn restore_imported(
    root: &StateRoot,
    global: &RuntimeOptions,
    args: &RestoreRequest,
    imported: &crate::archive::Imported,
    stdio: Option<StubStdio>,
) -> Result<i32> {
    let changes = RootfsChanges {
        diff: imported.rootfs_diff.clone(),
        deleted: imported.deleted_files.clone(),
    };
    let source = match args.bundle.clone() {
        Some(bundle) => BundleSource::Given(bundle),
        None => BundleSource::Recreated(recreate_bundle(root, args, imported, &changes)?),
    };
    crate::restore_journal::test_pause("after-bundle");
    restore_image(
        root,
        global,
        args,
        &imported.image_dir,
        source,
        &changes,
        stdio,
    )
}

/// `restore --import` without `--bundle`: the bundle is made again from the
/// archive under `--work-path` (or the state root): the checkpointed spec,
/// and the recorded rootfs base with the changes stacked on it as an overlay.
fn recreate_bundle(
    root: &StateRoot,
    args: &RestoreRequest,
    imported: &crate::archive::Imported,
    changes: &RootfsChanges,
) -> Result<RecreatedBundle> {
    let id = args.id.as_str();
    let archive = match &args.source {
        RestoreSource::Archive(file) => file.clone(),
        RestoreSource::Image(dir) => dir.clone(),
    };
    let base = imported
        .config
        .rootfs_base
        .as_ref()
        .ok_or_else(|| RuntimeError::Bundle {
            path: archive.clone(),
            reason: "the archive does not record the container's rootfs base (written by an older godwit); \
                     give --bundle DIR with a copy of the container's bundle"
                .into(),
        })?;
    let base = allowed_base(id, base, &args.rootfs_base_dirs)?;
    let spec_text = std::fs::read_to_string(&imported.spec_dump)
        .map_err(|e| RuntimeError::io(&imported.spec_dump, e))?;
    let spec: Spec = crate::bundle::parse_json(&imported.spec_dump, &spec_text)?;
    check_archive_spec(id, &spec, &base.lowerdirs())?;
    let parent = args
        .work_path
        .clone()
        .unwrap_or_else(|| root.path().to_path_buf());
    let dir = std::path::absolute(parent.join(format!(".{id}.bundle")))
        .map_err(|e| RuntimeError::io(&parent, e))?;
    let made = RecreatedBundle::create(
        &dir,
        &base,
        &spec,
        changes.diff.as_deref(),
        &changes.deleted,
    )?;
    tracing::info!(id, bundle = %made.path().display(), "recreated the bundle from the archive");
    Ok(made)
}

/// The archive's rootfs base with each directory canonical, if every one is
/// in a directory the operator allows (see `restore_policy::check_rootfs_base`).
fn allowed_base(
    id: &str,
    base: &crate::archive::RootfsBase,
    given: &[PathBuf],
) -> Result<crate::archive::RootfsBase> {
    use crate::archive::RootfsBase;
    let refused = |reason: String| RuntimeError::Refused {
        id: id.to_string(),
        reason: format!("the archive's rootfs base: {reason}"),
    };
    // Allowed directories that exist, canonical (a symlink counts where it leads).
    let allowed: Vec<PathBuf> = given
        .iter()
        .filter_map(|d| match std::fs::canonicalize(d) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %d.display(), "allowed rootfs base directory ignored: {e}");
                None
            }
        })
        .collect();
    // As given too, for the first, lexical check (the archive names the base
    // as the source host saw it, maybe through the same symlink).
    let mut named: Vec<PathBuf> = Vec::new();
    for d in given.iter().filter(|d| d.is_absolute()).chain(&allowed) {
        if !named.contains(d) {
            named.push(d.clone());
        }
    }
    let mut lowers = Vec::new();
    for lower in base.lowerdirs() {
        // Checked lexically first: no need to resolve a path never allowed.
        crate::restore_policy::check_rootfs_base(&lower, &named).map_err(refused)?;
        let canonical = match std::fs::canonicalize(&lower) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::Bundle {
                    path: lower.clone(),
                    reason: "the rootfs base the archive records (the container's image on the source host) \
                             is not on this host at that path; give --bundle DIR with a copy of the container's bundle, \
                             or make the image available at that path"
                        .into(),
                })
            }
            Err(e) => return Err(RuntimeError::io(&lower, e)),
        };
        // And where it leads: a symlink out of the allowed directory is refused.
        crate::restore_policy::check_rootfs_base(&canonical, &allowed)
            .map_err(|r| refused(format!("{} leads to {r}", lower.display())))?;
        lowers.push(canonical);
    }
    Ok(match base {
        RootfsBase::Overlay { .. } => RootfsBase::Overlay { lowerdirs: lowers },
        RootfsBase::Directory { .. } => RootfsBase::Directory {
            path: lowers.into_iter().next().unwrap_or_default(),
        },
    })
}

/// The archive's spec against the policy for a bundle recreated from it
/// (`restore_policy::check_archive_spec`), bind sources resolved: one that
/// leads out of the rootfs base is refused too.
fn check_archive_spec(id: &str, spec: &Spec, bases: &[PathBuf]) -> Result<()> {
    let refused = |what: String| RuntimeError::Refused {
        id: id.to_string(),
        reason: format!(
            "{what}; a bundle recreated from an archive takes only what a default container has: \
             give --bundle DIR with the container's own config.json to restore it as it was"
        ),
    };
    crate::restore_policy::check_archive_spec(spec, bases).map_err(|e| refused(e.to_string()))?;
    for m in spec.mounts().iter().flatten() {
        let Some(source) = m.source() else { continue };
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
        if !bind {
            continue;
        }
        let resolved = std::fs::canonicalize(source).map_err(|e| {
            refused(format!(
                "the archive's spec binds {} at {}, which cannot be resolved: {e}",
                source.display(),
                m.destination().display()
            ))
        })?;
        if !bases.iter().any(|b| resolved.starts_with(b)) {
            return Err(refused(format!(
                "the archive's spec binds {} at {}, which leads to {} outside the rootfs base",
                source.display(),
                m.destination().display(),
                resolved.display()
            )));
        }
    }
    Ok(())
}

/// A terminal container's console: the socket libcontainer sends the new
/// pty's master to (the caller's, or godwit's own for a foreground restore).
fn console_for(
    root: &StateRoot,
    args: &RestoreRequest,
    spec: &Spec,
) -> Result<(Option<PathBuf>, Option<ConsoleSocket>)> {
    let id = args.id.as_str();
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    match (terminal, &args.console_socket) {
        (false, Some(_)) => Err(RuntimeError::Unsupported {
            flag: "--console-socket",
            reason: format!(
                "the checkpointed container {id} has no terminal (process.terminal is false); omit the flag"
            ),
        }),
        (false, None) => Ok((None, None)),
        (true, Some(sock)) => Ok((Some(sock.clone()), None)),
        (true, None) if args.detach => Err(RuntimeError::Unsupported {
            flag: "--detach",
            reason: "the container has a terminal (process.terminal): a detached restore needs \
                     --console-socket SOCKET to receive the new pty's master"
                .into(),
        }),
        (true, None) => {
            let own = ConsoleSocket::listen(&root.path().join(format!("{id}.console")))?;
            Ok((Some(own.path().to_path_buf()), Some(own)))
        }
    }
}

fn restore_image(
    root: &StateRoot,
    global: &RuntimeOptions,
    args: &RestoreRequest,
    image: &Path,
    source: BundleSource,
    changes: &RootfsChanges,
    stdio: Option<StubStdio>,
) -> Result<i32> {
    let id = args.id.as_str();
    // Check the image before anything is created.
    let reader =
        godwit_checkpoint::image::ImageReader::open(image).map_err(|e| RuntimeError::Restore {
            id: id.to_string(),
            source: Box::new(e),
        })?;
    let previous_offsets = crate::timens::read_dump(image)?;
    let net_state = crate::netns_state::read_dump(image)?;
    let spec_path = image.join(SPEC_DUMP);
    let spec_text = std::fs::read_to_string(&spec_path).map_err(|e| RuntimeError::Bundle {
        path: image.to_path_buf(),
        reason: format!("{SPEC_DUMP}: {e} (not an image written by `godwit checkpoint`)"),
    })?;
    let archive_spec: Spec = crate::bundle::parse_json(&spec_path, &spec_text)?;
    let bundle_dir = match &source {
        BundleSource::Given(dir) => dir.clone(),
        BundleSource::Recreated(made) => made.path().to_path_buf(),
    };
    // The destination decides the container: the bundle's config.json is the
    // spec it runs with; the checkpoint's is only compared with it.
    let (bundle, spec) = crate::bundle::load(&bundle_dir)?;
    crate::restore_policy::check_compatible(&archive_spec, &spec).map_err(|e| {
        RuntimeError::Refused {
            id: id.to_string(),
            reason: format!(
                "{e}; the restored processes depend on it. The container runs with {}'s config.json: \
                 give a bundle whose config.json has what the checkpointed container had",
                bundle.display()
            ),
        }
    })?;
    check_image_creds(id, &reader, &spec)?;
    let rootfs = crate::bundle::rootfs(&bundle, &spec);
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| RuntimeError::io(&rootfs, e))?;
    let (console_path, own_console) = console_for(root, args, &spec)?;

    if let BundleSource::Given(_) = &source {
        // An image directory (not an archive, verified whole at import) is
        // checked whole before its diff touches the bundle's rootfs.
        if matches!(args.source, RestoreSource::Image(_)) {
            godwit_checkpoint::verify_image(image, true).map_err(|e| RuntimeError::Restore {
                id: id.to_string(),
                source: Box::new(e),
            })?;
            crate::rootfs_diff::verify_manifest(image)?;
        }
        if let Some(diff) = &changes.diff {
            let n = crate::rootfs_diff::apply(diff, &rootfs)?;
            tracing::info!(id, entries = n, rootfs = %rootfs.display(), "applied rootfs changes");
        }
        let n = crate::rootfs_diff::remove_deleted(&rootfs, &changes.deleted)?;
        tracing::info!(id, removed = n, "applied rootfs deletions");
    }

    // libcontainer reads config.json from a bundle directory: the stub's
    // widened spec gets one of its own, next to the state directory.
    let stub_bundle = crate::restore_journal::stub_bundle(root, id);
    let _ = std::fs::remove_dir_all(&stub_bundle);
    std::fs::create_dir_all(&stub_bundle).map_err(|e| RuntimeError::io(&stub_bundle, e))?;
    let cleanup_bundle = RemoveOnDrop(stub_bundle.clone());
    let mut stub = stub_spec(&spec, &rootfs, console_path.is_some())?;
    // Computed last, just before the container is created: the clocks go on
    // from the dump's readings (the blackout is not seen by the workload).
    let offsets = crate::timens::offsets_for_restore(&reader.inventory.clocks, previous_offsets)?;
    crate::timens::apply(&mut stub, offsets)?;
    let config = stub_bundle.join("config.json");
    let text = serde_json::to_vec(&stub).map_err(|e| RuntimeError::io(&config, e.into()))?;
    std::fs::write(&config, text).map_err(|e| RuntimeError::io(&config, e))?;

    let signals = prepare_foreground(args.detach)?;
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(StubExecutor)
        .with_root_path(root.path())
        .and_then(|b| {
            b.with_console_socket(console_path.as_ref())
                .with_pid_file(None::<PathBuf>)
        })
        .map(|b| match stdio {
            Some(s) => b
                .with_stdin(s.stdin)
                .with_stdout(s.stdout)
                .with_stderr(s.stderr),
            None => b,
        })
        .and_then(|b| {
            b.as_init(&stub_bundle)
                .with_systemd(global.systemd_cgroup)
                .with_detach(true)
                .with_no_pivot(args.no_pivot)
                .build()
        })
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(root.container_dir(id));
            RuntimeError::lc("create (for restore)", id, e)
        })?;
    // A foreground terminal restore: the new pty is proxied to our stdio.
    let proxy = proxy_terminal(own_console.as_ref(), &mut container)?;
    let (shown, recreated) = match source {
        BundleSource::Given(_) => (bundle.clone(), None),
        BundleSource::Recreated(made) => (bundle.clone(), Some(made)),
    };
    let restored = rebuild(
        &mut container,
        image,
        id,
        &spec,
        &rootfs,
        net_state.as_ref(),
    );
    drop(cleanup_bundle);
    let stats = match restored {
        Ok(stats) => stats,
        Err(e) => {
            let _ = crate::verbs::delete::delete_container(&mut container, id, true);
            return Err(e);
        }
    };
    // podman reads the statistics from its work path (--print-stats).
    if let Some(work) = &args.work_path {
        let bytes = crate::criu_compat::stats_restore_bytes(&stats);
        if let Err(e) =
            crate::criu_compat::write_stats(work, crate::criu_compat::STATS_RESTORE, &bytes)
        {
            tracing::warn!(id, "restored, but the statistics were not written: {e}");
        }
    }
    // From here the container owns a recreated bundle (delete removes it).
    let record = crate::restored::Record {
        bundle: Some(shown),
        recreated: recreated.map(RecreatedBundle::keep),
    };
    if let Err(e) = record.save(&container.root) {
        let _ = crate::verbs::delete::delete_container(&mut container, id, true);
        record.cleanup();
        return Err(e);
    }
    // Restored: the container is no debris if this process dies now.
    crate::restore_journal::end(root, id);
    if let Some(pid_file) = &args.pid_file {
        let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
        std::fs::write(pid_file, pid.to_string()).map_err(|e| RuntimeError::io(pid_file, e))?;
    }
    tracing::info!(id, image = %image.display(), "restored");
    if args.detach {
        return Ok(0);
    }
    let init = container.pid().ok_or_else(|| RuntimeError::Unsupported {
        flag: "restore",
        reason: format!("container {id} has no init pid"),
    })?;
    let status = wait_forwarding(init, &signals, proxy.as_ref());
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    let _ = crate::verbs::delete::delete_container(&mut container, id, true);
    record.cleanup();
    status
}

/// No process gets more than the destination's spec allows: every process
/// record's credentials and seccomp filters are checked against `spec`
/// before anything is created (see `restore_policy::check_creds`).
fn check_image_creds(
    id: &str,
    reader: &godwit_checkpoint::image::ImageReader,
    spec: &Spec,
) -> Result<()> {
    use crate::restore_policy::{check_creds, compile_seccomp, Allowed};
    let refused = |reason: String| RuntimeError::Refused {
        id: id.to_string(),
        reason,
    };
    let seccomp = compile_seccomp(spec).map_err(refused)?;
    let allowed = Allowed::from_spec(spec, seccomp);
    for entry in &reader.inventory.processes {
        let img: godwit_checkpoint::records::ProcessImage = reader
            .read_json(&entry.record)
            .map_err(|e| RuntimeError::Restore {
                id: id.to_string(),
                source: Box::new(e),
            })?;
        // A program that is not hex matches nothing (and the restorer refuses it).
        let filters: Vec<Vec<u8>> = img
            .seccomp
            .filters
            .iter()
            .map(|f| unhex(&f.prog).unwrap_or_default())
            .collect();
        check_creds(
            entry.pid,
            &img.task.creds,
            &img.task.rlimits,
            &filters,
            &allowed,
        )
        .map_err(|e| {
            refused(format!(
                "{e}; a process may not get more than the spec gives it (the image was altered, \
                 or checkpointed under another spec): restore with the container's own config.json"
            ))
        })?;
    }
    Ok(())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Starts the stub, stops it, and lets the dumper rebuild the tree in it;
/// then records the spec (rootfs by absolute path) and the runtime bundle
/// (see crate::restored) in the container's state.
fn rebuild(
    container: &mut Container,
    image: &Path,
    id: &str,
    spec: &Spec,
    rootfs: &Path,
    net_state: Option<&crate::netns_state::NetState>,
) -> Result<godwit_checkpoint::RestoreStats> {
    container
        .start()
        .map_err(|e| RuntimeError::lc("start the restore stub of", id, e))?;
    let pid = container.pid().ok_or_else(|| RuntimeError::Unsupported {
        flag: "restore",
        reason: format!("container {id} has no init pid"),
    })?;
    kill(pid, Signal::SIGSTOP).map_err(|e| RuntimeError::sys(format!("stop stub {pid}"), e))?;
    wait_stopped(pid.as_raw())?;
    crate::restore_journal::test_pause("after-create");
    // The stub's tmpfs mounts are fresh: refill them before the processes,
    // which may hold files there open, are rebuilt.
    let tmpfs = image.join(crate::tmpfs::TMPFS_DUMP);
    match std::fs::read(&tmpfs) {
        Ok(bytes) => {
            crate::tmpfs::restore(pid.as_raw(), bytes, &crate::tmpfs::scratch_mounts(spec))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RuntimeError::io(&tmpfs, e)),
    }
    // The namespace's own interfaces, before a restored server listens again.
    if let Some(state) = net_state {
        crate::netns_state::restore(pid.as_raw(), state)?;
    }
    let opts = godwit_checkpoint::RestoreOptions {
        // The stub inherited our stdio (or, for a terminal container, has
        // the new pty's slave as its stdio and controlling terminal): the
        // workload's stdio becomes that.
        inherit_stdio: true,
        // A terminal container's foreground process group, if the image
        // recorded one: the workload runs already, so a group that could
        // not be set is a warning, not a failed restore.
        restore_terminal: true,
    };
    let stats = godwit_checkpoint::restore(image, pid.as_raw(), &opts).map_err(|e| {
        RuntimeError::Restore {
            id: id.to_string(),
            source: Box::new(e),
        }
    })?;
    crate::restore_journal::test_pause("after-rebuild");
    for w in &stats.warnings {
        tracing::warn!(id, "{w}");
        eprintln!("godwit: warning: {w}");
    }
    let mut recorded = spec.clone();
    let mut root = recorded.root().clone().unwrap_or_default();
    root.set_path(rootfs.to_path_buf());
    recorded.set_root(Some(root));
    container.state.bundle = crate::restored::write_runtime_bundle(&container.root, &recorded)?;
    container
        .save()
        .map_err(|e| RuntimeError::lc("save state of", id, e))?;
    if let Some((signal, _)) = crate::notify::notification(spec)? {
        // Right after: the workload may reconnect or re-read its environment.
        crate::notify::send(pid.as_raw(), signal)?;
    }
    crate::store::record_spec(container, &recorded)?;
    Ok(stats)
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
