//! godwit's embedded process dumper: freeze a process tree, write its state
//! to an image directory, and rebuild it into a stub process — with ptrace,
//! /proc and injected syscalls (no CRIU, no parasite blob).
//!
//! Entry points: [`dump`] and [`restore`]; [`stub::Stub`] makes a process to
//! restore into.
//!
//! ```no_run
//! use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, RestoreOptions};
//! # fn main() -> godwit_checkpoint::Result<()> {
//! # let root_pid = 1234;
//! let dir = std::path::Path::new("/run/img");
//! // Every process of the tree (host pids); the root is the one whose
//! // parent is not in the set. Killed once the image is durable.
//! let pids = godwit_checkpoint::proc::tree(root_pid)?;
//! let stats = dump(&pids, dir, &DumpOptions {
//!     freeze_cgroup: None, // Some(cgroup dir) to freeze it while seizing
//!     ..Default::default()
//! })?;
//! // Later: a stopped process that is pid 1 of a new pid namespace becomes
//! // the root again; its children and threads get their old ids.
//! let stub = Stub::spawn()?;
//! let restored = restore(dir, stub.pid, &RestoreOptions::default())?;
//! let pid = stub.release();
//! # let _ = (stats, restored, pid);
//! # Ok(())
//! # }
//! ```

pub mod boost;
pub mod digest;
pub mod epoll;
pub mod error;
pub mod eventfd;
pub mod files;
pub mod freeze;
pub mod image;
pub mod limits;
pub mod memfd;
pub mod memory;
pub mod pipes;
pub mod proc;
pub mod ptrace;
pub mod seccomp;
pub mod signalfd;
pub mod signals;
pub mod sockets;
pub mod stream;
pub mod stub;
pub mod sys;
pub mod task;
pub mod threads;
pub mod timerfd;
pub mod timers;

mod dump;
mod restore;

pub use dump::{dump, dump_and_hold, dump_and_hold_to, DumpOptions, DumpStats, Held, ProcessImage};
pub use error::{Error, Result};
pub use restore::{restore, verify_image, RestoreOptions, RestoreStats};
pub use stream::{DirSink, Sink};

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}
