//! What the library's verbs are asked to do, independent of how the caller
//! spells it: the `godwit` command line converts its clap structs
//! (crate::cli) into these, refusing by name every flag it cannot honour,
//! and the containerd shim builds them from containerd's requests. No
//! library call takes a clap struct.

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// The runtime-wide settings a verb needs (the global flags that are not
/// about logging or the state root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Manage cgroups through systemd (refused where systemd is not PID 1).
    pub systemd_cgroup: bool,
}

/// A container to create from a bundle (`create`, and `run` before it starts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateRequest {
    pub id: String,
    /// Bundle directory holding config.json.
    pub bundle: PathBuf,
    /// Send the pty master of a terminal container to this socket.
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid (host's view) here.
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to enter the rootfs.
    pub no_pivot: bool,
    /// Pass fds 3 .. 3+N-1 to the container's process.
    pub preserve_fds: i32,
}

/// A container to create and start (`run`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRequest {
    pub create: CreateRequest,
    /// Return once it runs (else wait for it, as its subreaper).
    pub detach: bool,
    /// In the foreground: keep its state after it exits.
    pub keep: bool,
}

/// A new process in a running (or created) container (`exec`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub id: String,
    /// Send the pty master (with `tty`) to this socket.
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables, KEY=VALUE.
    pub env: Vec<String>,
    /// Allocate a pty.
    pub tty: bool,
    /// UID[:GID].
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    /// A runtime-spec `process` JSON file (instead of `command`).
    pub process: Option<PathBuf>,
    /// Return once the process runs.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// AppArmor profile.
    pub apparmor: Option<String>,
    pub no_new_privs: bool,
    /// Capabilities to add.
    pub cap: Vec<String>,
    /// Pass N extra fds.
    pub preserve_fds: i32,
    /// Existing sub-cgroups of the container to run in: PATH, or
    /// CONTROLLER[,CONTROLLER]:PATH (cgroup v1).
    pub cgroup: Vec<String>,
    /// Allow exec into a paused container.
    pub ignore_paused: bool,
    /// Command and arguments (unless `process`).
    pub command: Vec<String>,
}

/// `godwit process dump|restore`: the dumper on any process tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessRequest {
    Dump(ProcessDumpRequest),
    Restore(ProcessRestoreRequest),
}

/// A dump of the tree under `pid` into `image_path`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessDumpRequest {
    pub pid: i32,
    pub image_path: PathBuf,
    pub leave_running: bool,
    /// The root's stdio (and session) lie outside the tree: recorded as external.
    pub shell_job: bool,
    /// Print one JSON object instead of text.
    pub json: bool,
}

/// A restore of the tree in `image_path` with its original pids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessRestoreRequest {
    pub image_path: PathBuf,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Reconnect the stdio of a tree dumped with `shell_job` to ours.
    pub shell_job: bool,
    /// Print one JSON object instead of text.
    pub json: bool,
}

/// A checkpoint of a running (or paused) container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointRequest {
    pub id: String,
    /// Directory the image is written into; None: `./checkpoint`, or with
    /// `export` a temporary directory removed once the archive is written.
    pub image_path: Option<PathBuf>,
    /// Also write the self-contained archive to this file (`.tar`, or zstd
    /// when the name ends in `.zst`).
    pub export: Option<PathBuf>,
    /// Where work files go: the temporary image of an `export` without
    /// `image_path` is made here instead of next to the container's state.
    /// The dumper writes no logs.
    pub work_path: Option<PathBuf>,
    /// The container goes on running after the dump (else it is gone).
    pub leave_running: bool,
    /// Sign the exported archive with this Ed25519 private key (PEM).
    pub sign_key: Option<PathBuf>,
}

impl CheckpointRequest {
    /// A checkpoint of `id` into `image`, every option at its default.
    pub fn new(id: impl Into<String>, image: impl Into<PathBuf>) -> Self {
        CheckpointRequest {
            id: id.into(),
            image_path: Some(image.into()),
            ..Default::default()
        }
    }

    /// The image directory and whether it is a temporary one (an export
    /// without an image path), under the state root `state`.
    pub fn image_dir(&self, state: &Path) -> (PathBuf, bool) {
        let id = &self.id;
        match (&self.image_path, &self.export) {
            (Some(p), _) => (p.clone(), false),
            (None, Some(_)) => {
                let parent = self.work_path.as_deref().unwrap_or(state);
                (parent.join(format!(".{id}.export")), true)
            }
            (None, None) => (PathBuf::from("checkpoint"), false),
        }
    }
}

/// Where a restore takes its image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreSource {
    /// An image directory written by `checkpoint` (its rootfs changes beside it).
    Image(PathBuf),
    /// An archive written by `checkpoint --export`: checked whole, then
    /// extracted next to the state. For an archive already extracted
    /// (`verbs::restore::restore_imported`), the name it came from.
    Archive(PathBuf),
}

impl Default for RestoreSource {
    fn default() -> Self {
        RestoreSource::Image(PathBuf::from("checkpoint"))
    }
}

/// A restore of a checkpoint as a new container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    pub id: String,
    pub source: RestoreSource,
    /// Bundle whose rootfs the container runs on. None: the current
    /// directory for an image; for an archive, a bundle recreated from it
    /// under `work_path` (or the state root).
    pub bundle: Option<PathBuf>,
    /// Where a recreated bundle goes.
    pub work_path: Option<PathBuf>,
    /// Return once the container runs (else wait for it, as its subreaper).
    pub detach: bool,
    /// Write the restored init's pid (host's view) here.
    pub pid_file: Option<PathBuf>,
    /// Send the new pty's master of a terminal container to this socket.
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root to enter the rootfs.
    pub no_pivot: bool,
    /// How an archive is checked and bounded (ignored for an image).
    pub import: ImportOptions,
    /// Directories the rootfs base an archive records may be in, for a
    /// bundle recreated from it (empty: `bundle` is required).
    pub rootfs_base_dirs: Vec<PathBuf>,
}

/// The signature policy and bounds of an archive import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The Ed25519 public key (PEM) the archive's signature must verify with.
    pub verify_key: Option<PathBuf>,
    /// Refuse an archive without a valid signature.
    pub require_signature: bool,
    /// Largest total of the archive's entries (default 1 TiB).
    pub max_size: Option<u64>,
    /// Free space to leave on the state root's filesystem (default 256 MiB).
    pub reserve: Option<u64>,
}

impl RestoreRequest {
    /// A detached restore of the image `image` as `id` on `bundle`.
    pub fn detached(
        id: impl Into<String>,
        image: impl Into<PathBuf>,
        bundle: impl Into<PathBuf>,
    ) -> Self {
        RestoreRequest {
            id: id.into(),
            source: RestoreSource::Image(image.into()),
            bundle: Some(bundle.into()),
            detach: true,
            ..Default::default()
        }
    }
}

/// A flag the caller gave, and why godwit cannot honour it.
pub type Refusal = (&'static str, bool, &'static str);

/// The first flag of `refusals` that was given, as an error naming it and
/// telling to omit it.
pub fn refuse(refusals: &[Refusal]) -> Result<()> {
    match refusals.iter().find(|(_, given, _)| *given) {
        Some((flag, _, why)) => Err(RuntimeError::Unsupported {
            flag,
            reason: format!("{why}; omit the flag"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_dir_defaults_and_export_temp() {
        let state = Path::new("/run/godwit");
        let mut req = CheckpointRequest {
            id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(req.image_dir(state), (PathBuf::from("checkpoint"), false));
        req.export = Some("/tmp/c1.tar".into());
        assert_eq!(
            req.image_dir(state),
            (PathBuf::from("/run/godwit/.c1.export"), true)
        );
        req.work_path = Some("/var/work".into());
        assert_eq!(
            req.image_dir(state),
            (PathBuf::from("/var/work/.c1.export"), true)
        );
        req.image_path = Some("/img".into());
        assert_eq!(req.image_dir(state), (PathBuf::from("/img"), false));
    }

    #[test]
    fn refuse_names_the_first_given_flag() {
        assert!(refuse(&[("--a", false, "no")]).is_ok());
        let err = refuse(&[
            ("--a", false, "no a"),
            ("--b", true, "no b"),
            ("--c", true, "no c"),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "--b: no b; omit the flag");
    }
}
