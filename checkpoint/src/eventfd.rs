//! eventfd: counter and semaphore mode from fdinfo; recreated with eventfd2.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::Scratch;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFdImage {
    pub count: u64,
    pub semaphore: bool,
}

pub fn dump_fd(c: &FdCtx, _: &mut FilesImage) -> Result<FdKind> {
    let count = c.info.get("eventfd-count")?;
    let count = u64::from_str_radix(count.trim(), 16)
        .map_err(|_| Error::parse(&c.info.path, "eventfd-count"))?;
    let semaphore = c
        .info
        .get("eventfd-semaphore")
        .map(|v| v == "1")
        .unwrap_or(false);
    Ok(FdKind::EventFd(EventFdImage { count, semaphore }))
}

/// A new eventfd (CLOEXEC) holding the dumped count.
pub fn restore(inj: &mut Injector, scratch: &Scratch, img: &EventFdImage) -> Result<u64> {
    let mut flags = libc::EFD_CLOEXEC as u64;
    if img.semaphore {
        flags |= libc::EFD_SEMAPHORE as u64;
    }
    let init = img.count.min(u32::MAX as u64);
    let fd = inj.syscall("eventfd2", libc::SYS_eventfd2, &[init, flags])?;
    if img.count > init {
        let a = scratch.put(0, &(img.count - init).to_ne_bytes())?;
        inj.syscall("write(eventfd)", libc::SYS_write, &[fd, a, 8])?;
    }
    Ok(fd)
}
