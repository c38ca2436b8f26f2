//! The shim's errors. Each names the task, process, path or field it is
//! about; `into_ttrpc` maps them onto the gRPC codes containerd's errdefs read
//! (NotFound, FailedPrecondition…), with the whole cause chain in the message.

use std::path::PathBuf;

use containerd_shim::protos::ttrpc::{self, Code};
use godwit_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("task {id}: no process {exec_id:?} in this shim")]
    NotFound { id: String, exec_id: String },
    #[error("task {id} already exists in this shim")]
    AlreadyExists { id: String },
    #[error("task {id}, process {exec_id:?}: cannot {op}: {reason}")]
    WrongState {
        id: String,
        exec_id: String,
        op: &'static str,
        reason: String,
    },
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("task {id}")]
    Runtime {
        id: String,
        #[source]
        source: RuntimeError,
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
    #[error("{what}")]
    Shim {
        what: String,
        #[source]
        source: containerd_shim::Error,
    },
}

pub type Result<T> = std::result::Result<T, ShimError>;

impl ShimError {
    pub fn runtime(id: &str, source: RuntimeError) -> Self {
        ShimError::Runtime {
            id: id.to_string(),
            source,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShimError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        ShimError::Sys {
            what: what.into(),
            source,
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ShimError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn code(&self) -> Code {
        match self {
            ShimError::NotFound { .. } => Code::NOT_FOUND,
            ShimError::AlreadyExists { .. } => Code::ALREADY_EXISTS,
            ShimError::WrongState { .. } => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument { .. } => Code::INVALID_ARGUMENT,
            ShimError::Runtime {
                source: RuntimeError::NotFound { .. },
                ..
            } => Code::NOT_FOUND,
            ShimError::Runtime {
                source: RuntimeError::WrongStatus { .. },
                ..
            } => Code::FAILED_PRECONDITION,
            ShimError::Runtime {
                source:
                    RuntimeError::InvalidConfig { .. }
                    | RuntimeError::Bundle { .. }
                    | RuntimeError::InvalidId { .. }
                    | RuntimeError::InvalidValue { .. },
                ..
            } => Code::INVALID_ARGUMENT,
            _ => Code::UNKNOWN,
        }
    }

    /// The message with every cause, as one line ("a: b: c").
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    pub fn into_ttrpc(self) -> ttrpc::Error {
        let text = self.chain();
        log::warn!("{text}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), text))
    }
}
