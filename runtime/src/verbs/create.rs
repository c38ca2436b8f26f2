use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use crate::bundle;

use crate::error::{Result, RuntimeError};
use crate::requests::{CreateRequest, RuntimeOptions};
use crate::store::{validate_id, StateRoot};
use oci_spec::runtime::Spec;

/// Refuses `--systemd-cgroup` where systemd does not manage the machine, rather
/// than failing later inside cgroup setup with a D-Bus error.
pub fn check_systemd(global: &RuntimeOptions) -> Result<()> {
    if global.systemd_cgroup && !Path::new("/run/systemd/system").is_dir() {
        return Err(RuntimeError::Unsupported {
            flag: "--systemd-cgroup",
            reason: "systemd is not running on this host (no /run/systemd/system); \
                     omit the flag to use the cgroupfs driver"
                .into(),
        });
    }
    Ok(())
}

/// Creates a container whose process waits for `start` (or, with `detach`
/// false, a foreground one for `run`). A failure leaves no state behind.
pub fn create(
    root: &StateRoot,
    global: &RuntimeOptions,
    opts: &CreateRequest,
    detach: bool,
) -> Result<Container> {
    let (bundle, spec) = bundle::load(&opts.bundle)?;
    create_from(root, global, opts, detach, &bundle, &spec)
}

/// Whether the spec asks for a terminal.
pub fn wants_terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// `create` for a bundle already loaded by `bundle::load`.
pub fn create_from(
    root: &StateRoot,
    global: &RuntimeOptions,
    opts: &CreateRequest,
    detach: bool,
    bundle: &Path,
    spec: &Spec,
) -> Result<Container> {
    let id = opts.id.as_str();
    validate_id(id)?;
    check_systemd(global)?;
    // What a restore of this id killed midway left goes first.
    crate::restore_journal::recover(root, id)?;
    if root.exists(id) || root.container_dir(id).exists() {
        return Err(RuntimeError::AlreadyExists {
            id: id.to_string(),
            root: root.path().to_path_buf(),
        });
    }
    let terminal = wants_terminal(spec);
    if detach && terminal && opts.console_socket.is_none() {
        return Err(RuntimeError::InvalidConfig {
            path: bundle.join("config.json"),
            field: "process.terminal".into(),
            reason: "true needs --console-socket to hand the pty to (or set it to false)".into(),
        });
    }
    if opts.console_socket.is_some() && !terminal {
        return Err(RuntimeError::InvalidConfig {
            path: bundle.join("config.json"),
            field: "process.terminal".into(),
            reason: "false, but --console-socket was given; set it to true or drop the flag".into(),
        });
    }

    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(crate::executor::GodwitExecutor::new(opts.preserve_fds))
        .with_pid_file(opts.pid_file.as_ref())
        .and_then(|b| b.with_root_path(root.path()))
        .map(|b| {
            b.with_console_socket(opts.console_socket.as_ref())
                .with_preserved_fds(opts.preserve_fds)
        })
        .and_then(|b| {
            b.as_init(bundle)
                .with_systemd(global.systemd_cgroup)
                .with_detach(detach)
                .with_no_pivot(opts.no_pivot)
                .build()
        });
    match built {
        Ok(container) => {
            crate::store::record_spec(&container, spec)?;
            tracing::info!(id, bundle = %bundle.display(), "created");
            Ok(container)
        }
        Err(e) => {
            // libcontainer removes what it made when the process fails to start,
            // but not when it fails earlier (console socket, config save).
            let dir = root.container_dir(id);
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(RuntimeError::lc("create", id, e))
        }
    }
}
