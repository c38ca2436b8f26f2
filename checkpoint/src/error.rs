//! One error type for the crate. Every variant names what failed: the pid/tid,
//! the file, the image field, so a failed dump or restore can be acted on.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ptrace {op} on tid {tid}: {errno}")]
    Ptrace {
        op: &'static str,
        tid: i32,
        errno: Errno,
    },
    #[error("waitpid on tid {tid}: {errno}")]
    Wait { tid: i32, errno: Errno },
    #[error("tid {tid}: {what}")]
    UnexpectedStop { tid: i32, what: String },
    #[error("injected syscall {name} in tid {tid} failed: {errno}")]
    Syscall {
        tid: i32,
        name: &'static str,
        errno: Errno,
    },
    #[error("memory of pid {pid} at {addr:#x}: {source}")]
    Memory {
        pid: i32,
        addr: u64,
        source: io::Error,
    },
    // Not `source`: thiserror would make it the error's source too, and a
    // chain printed whole (`{e:#}`) would name the errno twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
    #[error("pid {pid} fd {fd}: file descriptor of kind {kind} is not supported by the dumper")]
    UnsupportedFd { pid: i32, fd: i32, kind: String },
    #[error("pid {pid}: {what} is not supported by the dumper")]
    Unsupported { pid: i32, what: String },
    #[error("image {}: {what}", file.display())]
    Image { file: PathBuf, what: String },
    #[error("image {}: format version {found_major}.{found_minor} is not readable by this build (reads majors 1 to {supported})", file.display())]
    Version {
        file: PathBuf,
        found_major: u32,
        found_minor: u32,
        supported: u32,
    },
    #[error("cgroup freezer {}: {what}", dir.display())]
    Freezer { dir: PathBuf, what: String },
    #[error("vDSO: {0}")]
    Vdso(String),
    #[error("restore of pid {pid}: {what}")]
    Restore { pid: i32, what: String },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    /// A caller's [`crate::Sink`] failed (e.g. the network of a migration).
    #[error("writing the image")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
    pub(crate) fn parse(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Parse {
            path: path.into(),
            what: what.into(),
        }
    }
    pub(crate) fn image(file: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Image {
            file: file.into(),
            what: what.into(),
        }
    }
    pub(crate) fn restore(pid: i32, what: impl Into<String>) -> Self {
        Error::Restore {
            pid,
            what: what.into(),
        }
    }
    pub(crate) fn sys(what: impl Into<String>, errno: Errno) -> Self {
        Error::Sys {
            what: what.into(),
            errno,
        }
    }
}
