//! File descriptors. A registry of fd kinds decides, in one place, how each
//! fd is dumped and restored; an fd of any other kind fails the dump with an
//! error naming pid, fd and kind.
//!
//! This module handles fds reopened by path (regular files, directories,
//! character devices such as /dev/null); `pipes` handles pipes.

use std::os::unix::fs::FileTypeExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipes::{self, PipeEnd};
use crate::proc;
use crate::ptrace::Injector;
use crate::sys::{self, Scratch};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// Reopened by path: regular file, directory, character device.
    Path {
        path: String,
        pos: u64,
    },
    Pipe(PipeEnd),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdImage {
    pub fd: i32,
    /// open(2) flags from fdinfo, without O_CLOEXEC.
    pub flags: i32,
    pub cloexec: bool,
    pub kind: FdKind,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesImage {
    pub fds: Vec<FdImage>,
    pub pipes: Vec<pipes::PipeImage>,
}

/// What dumping one fd needs to know.
pub struct FdCtx<'a> {
    pub pid: i32,
    pub fd: i32,
    /// readlink of /proc/PID/fd/FD.
    pub link: &'a str,
    pub meta: &'a std::fs::Metadata,
    pub pos: u64,
}

/// One kind of fd the dumper knows.
struct FdKindEntry {
    name: &'static str,
    matches: fn(&FdCtx) -> bool,
    dump: fn(&FdCtx, &mut FilesImage) -> Result<FdKind>,
}

/// The registry: adding a kind of fd is one entry here and one module.
const KINDS: &[FdKindEntry] = &[
    FdKindEntry {
        name: "path",
        matches: |c| {
            let t = c.meta.file_type();
            c.link.starts_with('/')
                && !c.link.ends_with(" (deleted)")
                && (t.is_file() || t.is_dir() || t.is_char_device())
        },
        dump: |c, _| {
            Ok(FdKind::Path {
                path: c.link.to_string(),
                pos: c.pos,
            })
        },
    },
    FdKindEntry {
        name: "pipe",
        matches: |c| c.link.starts_with("pipe:["),
        dump: pipes::dump_fd,
    },
];

/// Human name of an fd kind we do not support, for the error.
fn kind_name(link: &str, meta: &std::fs::Metadata) -> String {
    if let Some(rest) = link.strip_prefix("anon_inode:") {
        return rest.trim_matches(|c| c == '[' || c == ']').to_string();
    }
    if let Some((k, _)) = link.split_once(":[") {
        return k.to_string();
    }
    if link.ends_with(" (deleted)") {
        return format!("deleted file {link}");
    }
    let t = meta.file_type();
    let what = if t.is_block_device() {
        "block device"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else {
        "file"
    };
    format!("{what} {link}")
}

pub fn dump(pid: i32) -> Result<FilesImage> {
    let mut img = FilesImage::default();
    for fd in proc::fds(pid)? {
        let link_path = format!("/proc/{pid}/fd/{fd}");
        let link = proc::read_link(&link_path)?.to_string_lossy().into_owned();
        let meta = std::fs::metadata(&link_path).map_err(|e| Error::io(&link_path, e))?;
        let info = proc::fdinfo(pid, fd)?;
        let raw_flags = info.octal("flags")? as i32;
        let pos: u64 = info
            .get("pos")?
            .parse()
            .map_err(|_| Error::parse(&info.path, "pos"))?;
        let ctx = FdCtx {
            pid,
            fd,
            link: &link,
            meta: &meta,
            pos,
        };
        let entry =
            KINDS
                .iter()
                .find(|k| (k.matches)(&ctx))
                .ok_or_else(|| Error::UnsupportedFd {
                    pid,
                    fd,
                    kind: kind_name(&link, &meta),
                })?;
        tracing::debug!(pid, fd, kind = entry.name, "dump fd");
        let kind = (entry.dump)(&ctx, &mut img)?;
        img.fds.push(FdImage {
            fd,
            flags: raw_flags & !libc::O_CLOEXEC,
            cloexec: raw_flags & libc::O_CLOEXEC != 0,
            kind,
        });
    }
    Ok(img)
}

/// Recreates every fd at its number. The stub's own fds must be closed first.
pub fn restore(
    inj: &mut Injector,
    scratch: &Scratch,
    host_pid: i32,
    img: &FilesImage,
) -> Result<()> {
    let mut pipes = pipes::Restorer::new(host_pid, &img.pipes);
    // Numbers we still have to fill: a temporary fd must not sit on one.
    let mut pending: Vec<i32> = img.fds.iter().map(|f| f.fd).collect();
    for f in &img.fds {
        pending.retain(|&n| n != f.fd);
        match &f.kind {
            FdKind::Path { path, pos } => {
                let flags =
                    f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
                let tmp = sys::open_in(inj, scratch, path, flags | libc::O_CLOEXEC, 0)?;
                if *pos != 0 {
                    inj.syscall(
                        "lseek",
                        libc::SYS_lseek,
                        &[tmp, *pos, libc::SEEK_SET as u64],
                    )?;
                }
                sys::move_fd(inj, tmp, f.fd, f.cloexec)?;
            }
            FdKind::Pipe(end) => pipes.restore_fd(inj, scratch, f, end)?,
        }
    }
    pipes.finish(inj)
}
