//! Injected-syscall helpers that need memory in the target: a scratch area
//! for strings and structs, and wrappers over common calls.

use crate::error::{Error, Result};
use crate::ptrace::{Injector, Mem};

/// A small area of the target's memory that the tracer fills with syscall
/// arguments and reads results from.
pub struct Scratch {
    pub addr: u64,
    pub size: u64,
    pub mem: Mem,
}

impl Scratch {
    /// Writes `bytes` at `offset` into the area; returns their target address.
    pub fn put(&self, offset: u64, bytes: &[u8]) -> Result<u64> {
        if offset + bytes.len() as u64 > self.size {
            return Err(Error::Unsupported {
                pid: 0,
                what: format!(
                    "an argument of {} bytes (scratch area is {})",
                    bytes.len(),
                    self.size
                ),
            });
        }
        self.mem.write(self.addr + offset, bytes)?;
        Ok(self.addr + offset)
    }

    pub fn get(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.mem.read(self.addr + offset, &mut v)?;
        Ok(v)
    }

    pub fn get_u64(&self, offset: u64) -> Result<u64> {
        self.mem.read_u64(self.addr + offset)
    }

    /// A NUL-terminated copy of `s` at `offset`.
    pub fn put_cstr(&self, offset: u64, s: &str) -> Result<u64> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.put(offset, &b)
    }
}

/// Offset in the scratch area where paths go (after room for structs).
pub const PATH_OFF: u64 = 2048;

/// openat(AT_FDCWD, path, flags, mode) inside the target.
pub fn open_in(
    inj: &mut Injector,
    scratch: &Scratch,
    path: &str,
    flags: i32,
    mode: u32,
) -> Result<u64> {
    let p = scratch.put_cstr(PATH_OFF, path)?;
    inj.syscall(
        "openat",
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, p, flags as u64, mode as u64],
    )
}

/// Moves fd `from` to number `to` (dup3 with O_CLOEXEC as asked), closing `from`.
pub fn move_fd(inj: &mut Injector, from: u64, to: i32, cloexec: bool) -> Result<()> {
    if from == to as u64 {
        if !cloexec {
            inj.syscall(
                "fcntl(F_SETFD)",
                libc::SYS_fcntl,
                &[from, libc::F_SETFD as u64, 0],
            )?;
        }
        return Ok(());
    }
    let fl = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
    inj.syscall("dup3", libc::SYS_dup3, &[from, to as u64, fl])?;
    inj.syscall("close", libc::SYS_close, &[from])?;
    Ok(())
}

/// A new fd (CLOEXEC, lowest free number) in the injected process `me`
/// for fd `fd` of process `owner` (both ns pids): dup within a process,
/// pidfd_getfd across processes — the open file description is shared.
pub fn get_fd(inj: &mut Injector, me: i32, owner: i32, fd: u64) -> Result<u64> {
    if me == owner {
        return inj.syscall(
            "fcntl(F_DUPFD_CLOEXEC)",
            libc::SYS_fcntl,
            &[fd, libc::F_DUPFD_CLOEXEC as u64, 0],
        );
    }
    let pidfd = inj.syscall("pidfd_open", libc::SYS_pidfd_open, &[owner as u64, 0])?;
    let r = inj.syscall("pidfd_getfd", libc::SYS_pidfd_getfd, &[pidfd, fd, 0]);
    inj.syscall("close", libc::SYS_close, &[pidfd])?;
    r
}
