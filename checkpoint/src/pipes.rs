//! Pipes: both ends, their buffered bytes (read at dump with tee(2) on a
//! second reader, so nothing is consumed) and their capacity.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdImage, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::{self, Scratch};
use crate::threads::{hex, unhex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEnd {
    pub inode: u64,
    pub write_end: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeImage {
    pub inode: u64,
    pub capacity: u64,
    /// Bytes in the pipe at dump time, hex.
    pub data: String,
}

fn inode_of(link: &str) -> Option<u64> {
    link.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

pub fn dump_fd(c: &FdCtx, img: &mut FilesImage) -> Result<FdKind> {
    let inode = inode_of(c.link)
        .ok_or_else(|| Error::parse(format!("/proc/{}/fd/{}", c.pid, c.fd), c.link))?;
    let info = crate::proc::fdinfo(c.pid, c.fd)?;
    let flags = info.octal("flags")? as i32;
    let write_end = flags & libc::O_ACCMODE == libc::O_WRONLY;
    if !img.pipes.iter().any(|p| p.inode == inode) {
        let (capacity, data) = peek(c.pid, c.fd)?;
        img.pipes.push(PipeImage {
            inode,
            capacity,
            data: hex(&data),
        });
    }
    Ok(FdKind::Pipe(PipeEnd { inode, write_end }))
}

/// Copies a pipe's buffered bytes without consuming them: open a second
/// reader through /proc, tee(2) into a pipe of ours, read that.
fn peek(pid: i32, fd: i32) -> Result<(u64, Vec<u8>)> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let src = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: fcntl on an fd we own.
    let cap = unsafe { libc::fcntl(src.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if cap < 0 {
        return Err(Error::io(&path, std::io::Error::last_os_error()));
    }
    let (r, w) = nix::unistd::pipe().map_err(|e| Error::sys("pipe", e))?;
    // SAFETY: as above.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, cap) };
    // SAFETY: tee between two pipe fds we own.
    let n = unsafe {
        libc::tee(
            src.as_raw_fd(),
            w.as_raw_fd(),
            cap as usize,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    drop(w);
    let mut data = Vec::new();
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(Error::io(&path, e));
        }
    } else {
        let mut f = std::fs::File::from(r);
        f.read_to_end(&mut data).map_err(|e| Error::io(&path, e))?;
    }
    Ok((cap as u64, data))
}

/// Restores pipe ends: the first end of a pipe seen creates it with pipe2 in
/// the target and refills it; the other end is kept in a spare fd until used.
pub struct Restorer<'a> {
    host_pid: i32,
    images: &'a [PipeImage],
    /// inode → (read fd, write fd) in the target not yet placed.
    spare: HashMap<u64, (Option<u64>, Option<u64>)>,
    /// (inode, write end, fd number) already in place.
    placed: Vec<(u64, bool, i32)>,
}

impl<'a> Restorer<'a> {
    pub fn new(host_pid: i32, images: &'a [PipeImage]) -> Self {
        Restorer {
            host_pid,
            images,
            spare: HashMap::new(),
            placed: Vec::new(),
        }
    }

    pub fn restore_fd(
        &mut self,
        inj: &mut Injector,
        scratch: &Scratch,
        f: &FdImage,
        end: &PipeEnd,
    ) -> Result<()> {
        if !self.spare.contains_key(&end.inode) {
            let img = self
                .images
                .iter()
                .find(|p| p.inode == end.inode)
                .ok_or_else(|| {
                    Error::restore(
                        self.host_pid,
                        format!("fd {}: no record of pipe {}", f.fd, end.inode),
                    )
                })?;
            // High fds so they never sit on a number still to be restored.
            let a = scratch.put(0, &[0u8; 8])?;
            inj.syscall("pipe2", libc::SYS_pipe2, &[a, libc::O_CLOEXEC as u64])?;
            let b = scratch.get(0, 8)?;
            let rfd = i32::from_ne_bytes(b[0..4].try_into().unwrap_or([0; 4])) as u64;
            let wfd = i32::from_ne_bytes(b[4..8].try_into().unwrap_or([0; 4])) as u64;
            let mut hi = [0u64; 2];
            for (i, fd) in [rfd, wfd].into_iter().enumerate() {
                hi[i] = inj.syscall(
                    "fcntl(F_DUPFD_CLOEXEC)",
                    libc::SYS_fcntl,
                    &[fd, libc::F_DUPFD_CLOEXEC as u64, 10000],
                )?;
                inj.syscall("close", libc::SYS_close, &[fd])?;
            }
            if img.capacity > 0 {
                inj.syscall(
                    "fcntl(F_SETPIPE_SZ)",
                    libc::SYS_fcntl,
                    &[hi[1], libc::F_SETPIPE_SZ as u64, img.capacity],
                )?;
            }
            let data =
                unhex(&img.data).ok_or_else(|| Error::restore(self.host_pid, "bad pipe data"))?;
            if !data.is_empty() {
                let path = format!("/proc/{}/fd/{}", self.host_pid, hi[1]);
                let mut w = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                w.write_all(&data).map_err(|e| Error::io(&path, e))?;
            }
            self.spare.insert(end.inode, (Some(hi[0]), Some(hi[1])));
        }
        let slot = self
            .spare
            .get_mut(&end.inode)
            .ok_or_else(|| Error::restore(self.host_pid, "pipe"))?;
        let have = if end.write_end {
            &mut slot.1
        } else {
            &mut slot.0
        };
        let from = match have.take() {
            Some(fd) => fd,
            // A second fd for the same end: duplicate the one already placed.
            None => {
                let placed = self
                    .placed
                    .iter()
                    .find(|p| p.0 == end.inode && p.1 == end.write_end)
                    .map(|p| p.2)
                    .ok_or_else(|| {
                        Error::restore(self.host_pid, format!("fd {}: pipe end lost", f.fd))
                    })?;
                inj.syscall(
                    "fcntl(F_DUPFD_CLOEXEC)",
                    libc::SYS_fcntl,
                    &[placed as u64, libc::F_DUPFD_CLOEXEC as u64, 10000],
                )?
            }
        };
        sys::move_fd(inj, from, f.fd, f.cloexec)?;
        let fl = f.flags & (libc::O_NONBLOCK | libc::O_APPEND);
        inj.syscall(
            "fcntl(F_SETFL)",
            libc::SYS_fcntl,
            &[f.fd as u64, libc::F_SETFL as u64, fl as u64],
        )?;
        self.placed.push((end.inode, end.write_end, f.fd));
        Ok(())
    }

    /// Closes ends the process did not hold.
    pub fn finish(self, inj: &mut Injector) -> Result<()> {
        for (r, w) in self.spare.values() {
            for fd in [r, w].into_iter().flatten() {
                inj.syscall("close", libc::SYS_close, &[*fd])?;
            }
        }
        Ok(())
    }
}
