//! The runtime library's errors. Each names the container, file or flag it is
//! about and, where there is one, the fix.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id} does not exist (no state in {root}); `godwit --root {root} list` shows the containers there")]
    NotFound { id: String, root: PathBuf },
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

impl RuntimeError {
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
