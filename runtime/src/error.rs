//! The runtime library's errors. Each names the container, file or flag it is
//! about and, where there is one, the fix.

use std::path::{Path, PathBuf};

use libcontainer::error::LibcontainerError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id} does not exist (no state in {root}); `godwit --root {root} list` shows the containers there")]
    NotFound { id: String, root: PathBuf },
    /// The caller may not read (or create) the state root: not "no such
    /// container", which would send them looking for the wrong thing.
    #[error("state root {root}: permission denied for uid {uid}{owner}; run godwit as the user who created the container (root: sudo), or pass --root with a directory you own")]
    StateRootDenied {
        root: PathBuf,
        uid: u32,
        /// ", which belongs to uid N (mode 0700)" when the root could be stat'ed.
        owner: String,
    },
    #[error("container {id} already exists in {root}; delete it first or choose another id")]
    AlreadyExists { id: String, root: PathBuf },
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("cannot {op} container {id}: its status is {status} ({hint})")]
    WrongStatus {
        id: String,
        op: &'static str,
        status: &'static str,
        hint: &'static str,
    },
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("{path}: {field}: {reason}")]
    InvalidConfig {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{flag}: {reason}")]
    Unsupported { flag: &'static str, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("{op} container {id}")]
    Libcontainer {
        op: &'static str,
        id: String,
        // Boxed: libcontainer's error is large, and most results never hold it.
        #[source]
        source: Box<LibcontainerError>,
    },
    #[error("checkpoint of container {id}")]
    Dump {
        id: String,
        #[source]
        source: Box<godwit_checkpoint::Error>,
    },
    #[error("freezer of container {id}")]
    Freezer {
        id: String,
        #[source]
        source: Box<godwit_checkpoint::Error>,
    },
    /// A checkpoint asks for more than the destination allows.
    #[error("restore of container {id} refused: {reason}")]
    Refused { id: String, reason: String },
    #[error("restore of container {id}")]
    Restore {
        id: String,
        #[source]
        source: Box<godwit_checkpoint::Error>,
    },
    /// The migration stream with `peer` failed or was refused.
    #[error("migration {role} {peer}: {reason}")]
    Migrate {
        role: &'static str,
        peer: String,
        reason: String,
    },
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Key(#[from] crate::signing::KeyError),
    #[error("cgroup of container {id}")]
    Cgroup {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// ", which belongs to uid N (mode 0NNN)" for a denied state root.
pub fn denied_owner(uid: u32, mode: u32) -> String {
    format!(", which belongs to uid {uid} (mode {:04o})", mode & 0o7777)
}

impl RuntimeError {
    /// `source` on `path` in the state root `root`: a permission error names
    /// the root, its owner and the fix; anything else stays an I/O error.
    pub fn state_root(root: &Path, path: &Path, source: std::io::Error) -> Self {
        if source.kind() != std::io::ErrorKind::PermissionDenied {
            return RuntimeError::io(path, source);
        }
        use std::os::unix::fs::MetadataExt;
        // The nearest existing directory at or above the root says who owns it.
        let owner = root
            .ancestors()
            .find_map(|dir| std::fs::metadata(dir).ok())
            .map(|m| denied_owner(m.uid(), m.mode()))
            .unwrap_or_default();
        RuntimeError::StateRootDenied {
            root: root.to_path_buf(),
            uid: nix::unistd::geteuid().as_raw(),
            owner,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        RuntimeError::Sys {
            what: what.into(),
            source,
        }
    }

    pub fn lc(op: &'static str, id: &str, source: LibcontainerError) -> Self {
        RuntimeError::Libcontainer {
            op,
            id: id.to_string(),
            source: Box::new(source),
        }
    }

    pub fn freezer(id: &str, source: godwit_checkpoint::Error) -> Self {
        RuntimeError::Freezer {
            id: id.to_string(),
            source: Box::new(source),
        }
    }

    pub fn cgroup(id: &str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        RuntimeError::Cgroup {
            id: id.to_string(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_owner_names_uid_and_mode() {
        assert_eq!(
            denied_owner(0, 0o40700),
            ", which belongs to uid 0 (mode 0700)"
        );
        assert_eq!(
            denied_owner(1000, 0o41777),
            ", which belongs to uid 1000 (mode 1777)"
        );
    }

    #[test]
    fn state_root_errors_other_than_denied_stay_io_errors() {
        let e = RuntimeError::state_root(
            Path::new("/run/godwit"),
            Path::new("/run/godwit/x/state.json"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(matches!(e, RuntimeError::Io { .. }));
        let e = RuntimeError::state_root(
            Path::new("/"),
            Path::new("/x"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("state root /: permission denied for uid "),
            "{text}"
        );
        assert!(text.contains("which belongs to uid 0"), "{text}");
    }
}
