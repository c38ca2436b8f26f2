//! Pipes: both ends, their buffered bytes (read at dump with tee(2) on a
//! second reader, so nothing is consumed) and their capacity.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::{self, Scratch};
use crate::threads::{hex, unhex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEnd {
    pub inode: u64,
    pub write_end: bool,
    /// A FIFO (named pipe): its path, reopened at restore.
    #[serde(default)]
    pub fifo: Option<String>,
    /// Opened O_RDWR (possible for FIFOs).
    #[serde(default)]
    pub read_write: bool,
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
    Ok(FdKind::Pipe(PipeEnd {
        inode,
        write_end,
        fifo: None,
        read_write: false,
    }))
}

/// A FIFO: like a pipe end, plus its path.
pub fn dump_fifo(c: &FdCtx, img: &mut FilesImage) -> Result<FdKind> {
    use std::os::unix::fs::MetadataExt;
    let inode = c.meta.ino();
    let flags = c.info.octal("flags")? as i32;
    if !img.pipes.iter().any(|p| p.inode == inode) {
        let (capacity, data) = peek(c.pid, c.fd)?;
        img.pipes.push(PipeImage {
            inode,
            capacity,
            data: hex(&data),
        });
    }
    Ok(FdKind::Pipe(PipeEnd {
        inode,
        write_end: flags & libc::O_ACCMODE == libc::O_WRONLY,
        fifo: Some(c.link.to_string()),
        read_write: flags & libc::O_ACCMODE == libc::O_RDWR,
    }))
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

/// Pipes recreated so far in the whole tree: the first end needed creates
/// the pipe (pipe2, refilled with its bytes) in that process; both ends wait
/// there in spare fds until taken, by dup or by pidfd_getfd from elsewhere.
pub struct PipeTable<'a> {
    images: Vec<&'a PipeImage>,
    /// inode → (ns pid of the creator, read spare fd, write spare fd).
    made: HashMap<u64, (i32, u64, u64)>,
    /// Lowest spare fd: above every fd number still to be restored.
    spare_min: u64,
}

impl<'a> PipeTable<'a> {
    pub fn new(images: Vec<&'a PipeImage>, spare_min: u64) -> Self {
        PipeTable {
            images,
            made: HashMap::new(),
            spare_min,
        }
    }

    /// A new fd (at a temporary number) for one end of the pipe, in the
    /// process `ns_pid` being restored.
    pub fn end(
        &mut self,
        inj: &mut Injector,
        scratch: &Scratch,
        ns_pid: i32,
        host_pid: i32,
        fd: i32,
        end: &PipeEnd,
    ) -> Result<u64> {
        if let Some(path) = &end.fifo {
            return self.fifo_end(inj, scratch, ns_pid, host_pid, fd, end, path);
        }
        if !self.made.contains_key(&end.inode) {
            let img = self
                .images
                .iter()
                .find(|p| p.inode == end.inode)
                .ok_or_else(|| {
                    Error::restore(ns_pid, format!("fd {fd}: no record of pipe {}", end.inode))
                })?;
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
                    &[fd, libc::F_DUPFD_CLOEXEC as u64, self.spare_min],
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
            let data = unhex(&img.data).ok_or_else(|| Error::restore(ns_pid, "bad pipe data"))?;
            if !data.is_empty() {
                let path = format!("/proc/{host_pid}/fd/{}", hi[1]);
                let mut w = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                w.write_all(&data).map_err(|e| Error::io(&path, e))?;
            }
            self.made.insert(end.inode, (ns_pid, hi[0], hi[1]));
        }
        let &(creator, r, w) = self
            .made
            .get(&end.inode)
            .ok_or_else(|| Error::restore(ns_pid, "pipe"))?;
        let spare = if end.write_end { w } else { r };
        sys::get_fd(inj, ns_pid, creator, spare)
    }

    /// A FIFO end: the first one opens the FIFO O_RDWR in a spare fd (so
    /// that no open blocks and the buffer lives) and refills it; every end is
    /// then opened by path with its own access mode.
    #[allow(clippy::too_many_arguments)]
    fn fifo_end(
        &mut self,
        inj: &mut Injector,
        scratch: &Scratch,
        ns_pid: i32,
        host_pid: i32,
        fd: i32,
        end: &PipeEnd,
        path: &str,
    ) -> Result<u64> {
        if !self.made.contains_key(&end.inode) {
            let img = self
                .images
                .iter()
                .find(|p| p.inode == end.inode)
                .ok_or_else(|| {
                    Error::restore(ns_pid, format!("fd {fd}: no record of FIFO {path}"))
                })?;
            let rw = sys::open_image_path(
                inj,
                scratch,
                ns_pid,
                &format!("FIFO (fd {fd})"),
                path,
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
                0,
            )?;
            let spare = inj.syscall(
                "fcntl(F_DUPFD_CLOEXEC)",
                libc::SYS_fcntl,
                &[rw, libc::F_DUPFD_CLOEXEC as u64, self.spare_min],
            )?;
            inj.syscall("close", libc::SYS_close, &[rw])?;
            if img.capacity > 0 {
                inj.syscall(
                    "fcntl(F_SETPIPE_SZ)",
                    libc::SYS_fcntl,
                    &[spare, libc::F_SETPIPE_SZ as u64, img.capacity],
                )?;
            }
            let data = unhex(&img.data).ok_or_else(|| Error::restore(ns_pid, "bad FIFO data"))?;
            if !data.is_empty() {
                let p = format!("/proc/{host_pid}/fd/{spare}");
                let mut w = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&p)
                    .map_err(|e| Error::io(&p, e))?;
                w.write_all(&data).map_err(|e| Error::io(&p, e))?;
            }
            self.made.insert(end.inode, (ns_pid, spare, spare));
        }
        let mode = if end.read_write {
            libc::O_RDWR
        } else if end.write_end {
            libc::O_WRONLY
        } else {
            libc::O_RDONLY
        };
        // Non-blocking open: the spare holds both ends, nothing waits.
        sys::open_image_path(
            inj,
            scratch,
            ns_pid,
            &format!("FIFO (fd {fd})"),
            path,
            mode | libc::O_NONBLOCK | libc::O_CLOEXEC,
            0,
        )
    }

    /// Creators whose spare fds must be closed once every process has its fds.
    pub fn spares(&self) -> Vec<(i32, u64)> {
        let mut v: Vec<(i32, u64)> = self
            .made
            .values()
            .flat_map(|&(p, r, w)| [(p, r), (p, w)])
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
