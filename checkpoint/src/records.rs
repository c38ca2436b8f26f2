//! The record types of an image, one per kernel object, for callers that
//! read an image (see docs/image-format.md). Read-only: how they are dumped
//! and restored stays inside the dumper.

pub use crate::dump::ProcessImage;
pub use crate::epoll::{EpollImage, EpollTarget};
pub use crate::eventfd::EventFdImage;
pub use crate::files::{FdImage, FdKind, FilesImage};
pub use crate::memfd::MemfdImage;
pub use crate::memory::{MemoryImage, MmFields, PageRun, VdsoPlace, Vma, VmaKind};
pub use crate::pipes::{PipeEnd, PipeImage};
pub use crate::seccomp::{Filter, SeccompImage};
pub use crate::signalfd::SignalFdImage;
pub use crate::signals::{SigAction, SignalImage};
pub use crate::sockets::SocketImage;
pub use crate::task::{Creds, Rlimit, TaskImage};
pub use crate::terminal::ForegroundGroup;
pub use crate::threads::{AltStack, ThreadImage};
pub use crate::timerfd::TimerFdImage;
pub use crate::timers::{Itimer, PosixTimer, TimersImage};
pub use crate::zombie::ZombieEntry;
