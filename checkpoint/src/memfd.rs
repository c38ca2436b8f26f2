//! memfd file descriptors: name, size, seals, offset, and the content when
//! no process of the tree maps the object (mapped content comes back with
//! the mapping's pages, and the fd then refers to that same object).

use std::io::Read;
use std::os::fd::AsRawFd;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::{self, Scratch};
use crate::threads::{hex, unhex};

/// Content of unmapped memfds is kept in the record: keep it small.
const MAX_UNMAPPED: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdImage {
    pub inode: u64,
    pub name: String,
    pub size: u64,
    pub seals: u32,
    pub pos: u64,
    /// Whole content, hex (empty when size is 0).
    pub data: String,
}

pub fn is_memfd(link: &str) -> bool {
    link.starts_with("/memfd:")
}

pub fn dump_fd(c: &FdCtx, _: &mut FilesImage) -> Result<FdKind> {
    use std::os::unix::fs::MetadataExt;
    let name = c
        .link
        .strip_prefix("/memfd:")
        .map(|n| n.strip_suffix(" (deleted)").unwrap_or(n))
        .unwrap_or("")
        .to_string();
    let size = c.meta.len();
    if size > MAX_UNMAPPED {
        return Err(Error::UnsupportedFd {
            pid: c.pid,
            fd: c.fd,
            kind: format!("memfd larger than {MAX_UNMAPPED} bytes"),
        });
    }
    let path = format!("/proc/{}/fd/{}", c.pid, c.fd);
    let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    // SAFETY: fcntl on our own fd.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) }.max(0) as u32;
    let mut data = Vec::with_capacity(size as usize);
    f.read_to_end(&mut data).map_err(|e| Error::io(&path, e))?;
    Ok(FdKind::Memfd(MemfdImage {
        inode: c.meta.ino(),
        name,
        size,
        seals,
        pos: c.pos,
        data: hex(&data),
    }))
}

/// A new fd for the memfd: the mapped object if a process maps it, else a
/// fresh memfd filled with the dumped content.
pub fn restore(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    host_pid: i32,
    mapped: Option<(i32, u64)>,
    img: &MemfdImage,
) -> Result<u64> {
    let fd = match mapped {
        Some((owner, fd)) => sys::get_fd(inj, ns_pid, owner, fd)?,
        None => {
            let p = scratch.put_cstr(sys::PATH_OFF, &img.name)?;
            let fd = inj.syscall(
                "memfd_create",
                libc::SYS_memfd_create,
                &[p, (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as u64],
            )?;
            inj.syscall("ftruncate", libc::SYS_ftruncate, &[fd, img.size])?;
            let data = unhex(&img.data).ok_or_else(|| Error::restore(ns_pid, "bad memfd data"))?;
            if !data.is_empty() {
                use std::os::unix::fs::FileExt;
                let path = format!("/proc/{host_pid}/fd/{fd}");
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                f.write_all_at(&data, 0).map_err(|e| Error::io(&path, e))?;
            }
            fd
        }
    };
    if img.seals != 0 {
        inj.syscall(
            "fcntl(F_ADD_SEALS)",
            libc::SYS_fcntl,
            &[fd, libc::F_ADD_SEALS as u64, img.seals as u64],
        )?;
    }
    if img.pos != 0 {
        inj.syscall(
            "lseek",
            libc::SYS_lseek,
            &[fd, img.pos, libc::SEEK_SET as u64],
        )?;
    }
    Ok(fd)
}
