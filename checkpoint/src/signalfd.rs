//! signalfd: the signal mask it reads.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::Scratch;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalFdImage {
    pub mask: u64,
}

pub fn dump_fd(c: &FdCtx, _: &mut FilesImage) -> Result<FdKind> {
    Ok(FdKind::SignalFd(SignalFdImage {
        mask: c.info.hex("sigmask")?,
    }))
}

pub fn restore(inj: &mut Injector, scratch: &Scratch, img: &SignalFdImage) -> Result<u64> {
    let a = scratch.put(0, &img.mask.to_ne_bytes())?;
    inj.syscall(
        "signalfd4",
        libc::SYS_signalfd4,
        &[u64::MAX, a, 8, libc::SFD_CLOEXEC as u64],
    )
}
