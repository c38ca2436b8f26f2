//! godwit's runtime library: the runc-compatible verbs on youki's libcontainer,
//! used by the `godwit` binary and, in-process, by the containerd shim.

pub mod archive;
pub mod bundle;
pub mod cli;
pub mod console;
pub mod criu_compat;
pub mod dump_guard;
pub mod error;
pub mod executor;
pub mod logging;
pub mod migrate;
pub mod netns_state;
pub mod notify;
pub mod overlay;
pub mod requests;
pub mod restore_journal;
pub mod restore_policy;
pub mod restored;
pub mod rootfs_diff;
pub mod sealed;
pub mod signing;
pub mod store;
pub mod timens;
pub mod tmpfs;
pub mod verbs;

pub use error::{Result, RuntimeError};
