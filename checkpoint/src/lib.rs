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
//! let pids = godwit_checkpoint::host::tree(root_pid)?;
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

// The public API: dump, restore, the image format and its records, a stub to
// restore into, what a caller reads about live processes, the terminal record,
// the cgroup freezer.
pub mod digest;
pub mod error;
pub mod freezer;
pub mod host;
pub mod image;
pub mod records;
pub mod stub;
pub mod terminal;

// One module per kernel object (record type, dump and restore side by side),
// and the plumbing they share; private to the dumper.
mod boost;
mod dump;
mod epoll;
mod eventfd;
mod files;
mod freeze;
mod limits;
mod memfd;
mod memory;
mod pipes;
mod proc;
mod ptrace;
mod restore;
mod seccomp;
mod signalfd;
mod signals;
mod sockets;
mod stream;
mod sys;
mod task;
mod threads;
mod timerfd;
mod timers;
mod zombie;

pub use dump::{dump, dump_and_hold, dump_and_hold_to, DumpOptions, DumpStats, Held, ProcessImage};
pub use error::{Error, Result};
pub use restore::{restore, verify_image, RestoreOptions, RestoreStats};
pub use stream::{DirSink, Sink};

/// Refuses an image whose process `img` maps files that changed since the
/// dump (size or content), are missing or are not regular files, looked up
/// inside `root` (a directory opened where restore will open them) without
/// magic links, before anything is touched.
pub fn check_mapped_files(root: &std::fs::File, img: &ProcessImage) -> Result<()> {
    memory::check_files(root, img.pid, &img.memory)
}

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
