//! memfd file descriptors: name, size, seals, offset, and the content, in a
//! file of its own in the image (`memfd-PID-FD.img`, listed with its digest
//! among the inventory's extras). Restore uses the content when no process
//! of the tree maps the object (mapped content comes back with the mapping's
//! pages, and the fd then refers to that same object).

use std::io::Read;
use std::os::fd::AsRawFd;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::image::ImageReader;
use crate::ptrace::Injector;
use crate::sys::{self, Scratch};
use crate::threads::unhex;

/// Content of memfds is read whole at dump and restore: keep it small.
const MAX_UNMAPPED: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdImage {
    pub inode: u64,
    pub name: String,
    pub size: u64,
    pub seals: u32,
    pub pos: u64,
    /// Format 1: the whole content, hex. Never written by format 2.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// Format 2: the image file holding the whole content (absent when the
    /// memfd is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// The content between the dump and the write of the records (see
    /// [`take_blobs`]), and after [`load_blobs`] at restore.
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// The name of the blob file of fd `fd` of process `pid` (ns pid).
pub fn blob_name(pid: i32, fd: i32) -> String {
    format!("memfd-{pid}-{fd}.img")
}

/// Moves the memfd contents of process `pid`'s record out into blob files:
/// `(name, bytes)` to write as image files, each fd naming its own.
pub(crate) fn take_blobs(pid: i32, files: &mut FilesImage) -> Vec<(String, Vec<u8>)> {
    let mut blobs = Vec::new();
    for f in &mut files.fds {
        if let FdKind::Memfd(m) = &mut f.kind {
            if !m.content.is_empty() {
                let name = blob_name(pid, f.fd);
                m.blob = Some(name.clone());
                blobs.push((name, std::mem::take(&mut m.content)));
            }
        }
    }
    blobs
}

/// Puts every memfd's content into its record (from its blob file, checked
/// against the inventory's digest, or a format-1 record's hex), refusing a
/// content whose length is not the recorded size.
pub(crate) fn load_blobs(reader: &ImageReader, pid: i32, files: &mut FilesImage) -> Result<()> {
    for f in &mut files.fds {
        let FdKind::Memfd(m) = &mut f.kind else {
            continue;
        };
        let bad = |what: String| Error::image(reader.dir.join(format!("process-{pid}.json")), what);
        m.content = match (&m.blob, m.data.is_empty()) {
            (Some(name), _) => reader.extra(name)?.ok_or_else(|| {
                bad(format!(
                    "fd {}: memfd content {name:?} is not among the inventory's files",
                    f.fd
                ))
            })?,
            (None, false) => {
                unhex(&m.data).ok_or_else(|| bad(format!("fd {}: memfd data is not hex", f.fd)))?
            }
            (None, true) => Vec::new(),
        };
        if m.content.len() as u64 != m.size {
            return Err(bad(format!(
                "fd {}: memfd content of {} bytes, the record says {}",
                f.fd,
                m.content.len(),
                m.size
            )));
        }
    }
    Ok(())
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
        data: String::new(),
        blob: None,
        content: data,
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
            let data = &img.content;
            if !data.is_empty() {
                use std::os::unix::fs::FileExt;
                let path = format!("/proc/{host_pid}/fd/{fd}");
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                f.write_all_at(data, 0).map_err(|e| Error::io(&path, e))?;
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
