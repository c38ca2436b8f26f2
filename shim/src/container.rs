//! Creating a container's init and exec'ing into it through libcontainer, with
//! the stdio the shim prepared. The CLI's verbs inherit the caller's stdio; the
//! shim needs explicit fds, so it drives the builder itself over the same
//! state root and bundle checks as `godwit create`.

use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

use godwit_runtime::store::{validate_id, StateRoot, RECORDED_SPEC};
use godwit_runtime::RuntimeError;

use crate::error::{Result, ShimError};
use crate::stdio::ChildStdio;

pub struct InitOptions<'a> {
    pub bundle: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub systemd: bool,
}

/// Creates the container; its init waits for start. Call under the fork guard.
pub fn create(
    root: &StateRoot,
    id: &str,
    opts: &InitOptions,
    stdio: ChildStdio,
) -> Result<Container> {
    validate_id(id).map_err(|e| ShimError::runtime(id, e))?;
    if root.container_dir(id).exists() {
        return Err(ShimError::runtime(
            id,
            RuntimeError::AlreadyExists {
                id: id.to_string(),
                root: root.path().to_path_buf(),
            },
        ));
    }
    let (bundle, spec) =
        godwit_runtime::bundle::load(opts.bundle).map_err(|e| ShimError::runtime(id, e))?;
    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(godwit_runtime::executor::GodwitExecutor::default())
        .with_root_path(root.path())
        .map(|b| {
            b.with_console_socket(opts.console_socket)
                .with_stdin(stdio.stdin)
                .with_stdout(stdio.stdout)
                .with_stderr(stdio.stderr)
                .as_init(&bundle)
                .with_systemd(opts.systemd)
                .with_detach(true)
                .with_no_pivot(opts.no_pivot)
        })
        .and_then(|b| b.build());
    match built {
        Ok(container) => {
            // `godwit state` and checkpoint read the spec recorded at create.
            let path = container.root.join(RECORDED_SPEC);
            let text = serde_json::to_vec(&spec).map_err(|e| ShimError::io(&path, e.into()))?;
            std::fs::write(&path, text).map_err(|e| ShimError::io(&path, e))?;
            Ok(container)
        }
        Err(e) => {
            // libcontainer leaves its state dir behind when it fails early.
            let dir = root.container_dir(id);
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(ShimError::runtime(id, RuntimeError::lc("create", id, e)))
        }
    }
}

/// Starts `process` (an OCI process document) in the running container `id`.
/// Call under the fork guard.
pub fn exec(
    root: &StateRoot,
    id: &str,
    process: &Path,
    console_socket: Option<&Path>,
    stdio: ChildStdio,
) -> Result<Pid> {
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(godwit_runtime::executor::GodwitExecutor::default())
        .with_root_path(root.path())
        .map(|b| {
            b.with_console_socket(console_socket)
                .with_stdin(stdio.stdin)
                .with_stdout(stdio.stdout)
                .with_stderr(stdio.stderr)
                .as_tenant()
                .with_detach(true)
                .with_process(Some(process))
        })
        .and_then(|b| b.build())
        .map_err(|e| ShimError::runtime(id, RuntimeError::lc("exec into", id, e)))
}
