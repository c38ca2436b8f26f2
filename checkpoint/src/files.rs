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
use std::collections::HashMap;

use crate::ptrace::Injector;
use crate::sys::{self, Scratch};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// Reopened by path: regular file, directory, character device.
    Path {
        path: String,
        pos: u64,
        /// Size and modification time of a regular file at the dump, so that
        /// a restore onto the same machine can tell the file changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime_ns: Option<i128>,
    },
    Pipe(PipeEnd),
    EventFd(crate::eventfd::EventFdImage),
    TimerFd(crate::timerfd::TimerFdImage),
    SignalFd(crate::signalfd::SignalFdImage),
    Epoll(crate::epoll::EpollImage),
    Socket(crate::sockets::SocketImage),
    Memfd(crate::memfd::MemfdImage),
    /// Stdio that came from outside the dumped tree (the caller's pipe, fifo
    /// or pty): not carried; at restore it is reconnected to the restorer's
    /// stdio number `stdio` (0, 1 or 2).
    External {
        stdio: i32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdImage {
    pub fd: i32,
    /// Open file description: fds (in any process of the image) with the
    /// same id share offset, flags and the file itself.
    #[serde(default)]
    pub ofd: u64,
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
    /// /proc/PID/fdinfo/FD.
    pub info: &'a proc::Status,
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
        name: "memfd",
        matches: |c| crate::memfd::is_memfd(c.link),
        dump: crate::memfd::dump_fd,
    },
    FdKindEntry {
        name: "path",
        matches: |c| {
            let t = c.meta.file_type();
            c.link.starts_with('/')
                && !c.link.ends_with(" (deleted)")
                && (t.is_file() || t.is_dir() || t.is_char_device())
        },
        dump: |c, _| {
            use std::os::unix::fs::MetadataExt;
            let regular = c.meta.file_type().is_file();
            Ok(FdKind::Path {
                path: c.link.to_string(),
                pos: c.pos,
                size: regular.then_some(c.meta.len()),
                mtime_ns: regular
                    .then(|| c.meta.mtime() as i128 * 1_000_000_000 + c.meta.mtime_nsec() as i128),
            })
        },
    },
    FdKindEntry {
        name: "fifo",
        matches: |c| {
            c.link.starts_with('/')
                && !c.link.ends_with(" (deleted)")
                && c.meta.file_type().is_fifo()
        },
        dump: pipes::dump_fifo,
    },
    FdKindEntry {
        name: "pipe",
        matches: |c| c.link.starts_with("pipe:["),
        dump: pipes::dump_fd,
    },
    FdKindEntry {
        name: "eventfd",
        matches: |c| c.link == "anon_inode:[eventfd]",
        dump: crate::eventfd::dump_fd,
    },
    FdKindEntry {
        name: "timerfd",
        matches: |c| c.link == "anon_inode:[timerfd]",
        dump: crate::timerfd::dump_fd,
    },
    FdKindEntry {
        name: "signalfd",
        matches: |c| c.link == "anon_inode:[signalfd]",
        dump: crate::signalfd::dump_fd,
    },
    FdKindEntry {
        name: "epoll",
        matches: |c| c.link == "anon_inode:[eventpoll]",
        dump: crate::epoll::dump_fd,
    },
    FdKindEntry {
        name: "socket",
        matches: |c| c.link.starts_with("socket:["),
        dump: crate::sockets::dump_fd,
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

/// Which fds of each process share an open file description with the root's
/// stdio (fd 0, 1 or 2): those are external and map to that stdio number.
pub fn external_stdio(root: i32, pids: &[i32]) -> Result<HashMap<i32, HashMap<i32, i32>>> {
    let mut out: HashMap<i32, HashMap<i32, i32>> = HashMap::new();
    let root_fds = proc::fds(root)?;
    for stdio in 0..3 {
        if !root_fds.contains(&stdio) {
            continue;
        }
        for &pid in pids {
            for fd in proc::fds(pid)? {
                // SAFETY: kcmp(2) with integer arguments.
                let same = unsafe {
                    libc::syscall(libc::SYS_kcmp, root, pid, 0 /* KCMP_FILE */, stdio, fd)
                } == 0;
                if same {
                    out.entry(pid).or_default().entry(fd).or_insert(stdio);
                }
            }
        }
    }
    Ok(out)
}

/// Dumps every fd of `pid`; those in `external` (fd → stdio number) are
/// recorded as external stdio whatever their kind.
pub fn dump(pid: i32, external: Option<&HashMap<i32, i32>>) -> Result<FilesImage> {
    let mut img = FilesImage::default();
    for fd in proc::fds(pid)? {
        if let Some(&stdio) = external.and_then(|e| e.get(&fd)) {
            let info = proc::fdinfo(pid, fd)?;
            let raw_flags = info.octal("flags")? as i32;
            img.fds.push(FdImage {
                fd,
                ofd: 0,
                flags: raw_flags & !libc::O_CLOEXEC,
                cloexec: raw_flags & libc::O_CLOEXEC != 0,
                kind: FdKind::External { stdio },
            });
            continue;
        }
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
            info: &info,
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
            ofd: 0,
            flags: raw_flags & !libc::O_CLOEXEC,
            cloexec: raw_flags & libc::O_CLOEXEC != 0,
            kind,
        });
    }
    Ok(img)
}

/// Numbers the open file descriptions of all dumped processes: fds with the
/// same target are compared with kcmp(KCMP_FILE), equal ones share an id.
pub fn assign_ofds(procs: &mut [(i32, &mut FilesImage)]) -> Result<()> {
    // (process index, fd index, link key)
    let mut all: Vec<(usize, usize, String)> = Vec::new();
    for (pi, (pid, img)) in procs.iter().enumerate() {
        for (fi, f) in img.fds.iter().enumerate() {
            let link = proc::read_link(format!("/proc/{pid}/fd/{}", f.fd))?;
            all.push((pi, fi, link.to_string_lossy().into_owned()));
        }
    }
    let mut ids: Vec<u64> = vec![0; all.len()];
    let mut next = 1u64;
    for i in 0..all.len() {
        if ids[i] != 0 {
            continue;
        }
        ids[i] = next;
        let (pi, fi, ref key) = all[i];
        let (pid_i, fd_i) = (procs[pi].0, procs[pi].1.fds[fi].fd);
        for j in i + 1..all.len() {
            if ids[j] != 0 || all[j].2 != *key {
                continue;
            }
            let (pid_j, fd_j) = (procs[all[j].0].0, procs[all[j].0].1.fds[all[j].1].fd);
            // SAFETY: kcmp(2) with integer arguments.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_kcmp,
                    pid_i,
                    pid_j,
                    0, /* KCMP_FILE */
                    fd_i,
                    fd_j,
                )
            };
            if r == 0 {
                ids[j] = next;
            } else if r < 0 {
                return Err(Error::sys(
                    format!("kcmp(pid {pid_i} fd {fd_i}, pid {pid_j} fd {fd_j})"),
                    nix::errno::Errno::last(),
                ));
            }
        }
        next += 1;
    }
    for (k, &(pi, fi, _)) in all.iter().enumerate() {
        procs[pi].1.fds[fi].ofd = ids[k];
    }
    Ok(())
}

/// Restore-wide table of open file descriptions already recreated, so that
/// a shared one is shared again: dup'd within a process, fetched with
/// pidfd_getfd from its owner by any other process of the tree.
pub struct FileTable<'a> {
    /// Where the stub kept the restorer's stdio (fds N, N+1, N+2), if asked to.
    pub stdio: Option<i32>,
    /// ofd id → (ns pid, fd) holding it.
    owners: std::collections::HashMap<u64, (i32, i32)>,
    pub pipes: pipes::PipeTable<'a>,
    pub pairs: crate::sockets::PairTable,
}

impl<'a> FileTable<'a> {
    /// `spare_min`: the lowest fd number where objects created for several
    /// fds may wait, above every fd number of the image.
    pub fn new(pipe_images: Vec<&'a pipes::PipeImage>, spare_min: u64) -> Self {
        FileTable {
            stdio: None,
            owners: std::collections::HashMap::new(),
            pipes: pipes::PipeTable::new(pipe_images, spare_min),
            pairs: crate::sockets::PairTable::new(spare_min),
        }
    }

    /// Recreates every fd of one process at its number. The process must
    /// have no fds of its own (the stub's were closed).
    pub fn restore(
        &mut self,
        inj: &mut Injector,
        scratch: &Scratch,
        ns_pid: i32,
        host_pid: i32,
        img: &FilesImage,
        shm: &crate::memory::ShmTable,
    ) -> Result<()> {
        let mut epolls: Vec<&FdImage> = Vec::new();
        for f in &img.fds {
            if let Some(&(owner, ofd_fd)) = self.owners.get(&f.ofd).filter(|_| f.ofd != 0) {
                let tmp = sys::get_fd(inj, ns_pid, owner, ofd_fd as u64)?;
                sys::move_fd(inj, tmp, f.fd, f.cloexec)?;
                continue;
            }
            match &f.kind {
                FdKind::External { stdio } => {
                    let held = self.stdio.ok_or_else(|| {
                        Error::restore(
                            ns_pid,
                            format!(
                                "fd {} was stdio from outside the dumped tree; restore it with \
                                 the restorer's stdio (RestoreOptions::inherit_stdio)",
                                f.fd
                            ),
                        )
                    })?;
                    let tmp = inj.syscall(
                        "fcntl(F_DUPFD_CLOEXEC)",
                        libc::SYS_fcntl,
                        &[(held + stdio) as u64, libc::F_DUPFD_CLOEXEC as u64, 3],
                    )?;
                    sys::move_fd(inj, tmp, f.fd, f.cloexec)?;
                }
                FdKind::Path { path, pos, .. } => {
                    let flags =
                        f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
                    // Never blocks (a FIFO named as a plain path); the
                    // recorded status flags are set again below.
                    let tmp = sys::open_image_path(
                        inj,
                        scratch,
                        ns_pid,
                        &format!("open file (fd {})", f.fd),
                        path,
                        flags | libc::O_CLOEXEC | libc::O_NONBLOCK,
                        0,
                    )?;
                    if flags & libc::O_NONBLOCK == 0 {
                        let fl = flags & (libc::O_APPEND | libc::O_NOATIME | libc::O_DIRECT);
                        inj.syscall(
                            "fcntl(F_SETFL)",
                            libc::SYS_fcntl,
                            &[tmp, libc::F_SETFL as u64, fl as u64],
                        )?;
                    }
                    if *pos != 0 {
                        inj.syscall(
                            "lseek",
                            libc::SYS_lseek,
                            &[tmp, *pos, libc::SEEK_SET as u64],
                        )?;
                    }
                    sys::move_fd(inj, tmp, f.fd, f.cloexec)?;
                }
                FdKind::EventFd(e) => {
                    let tmp = crate::eventfd::restore(inj, scratch, e)?;
                    finish_new(inj, tmp, f)?;
                }
                FdKind::TimerFd(t) => {
                    let tmp = crate::timerfd::restore(inj, scratch, t)?;
                    finish_new(inj, tmp, f)?;
                }
                FdKind::SignalFd(t) => {
                    let tmp = crate::signalfd::restore(inj, scratch, t)?;
                    finish_new(inj, tmp, f)?;
                }
                FdKind::Epoll(_) => {
                    let tmp = crate::epoll::create(inj)?;
                    finish_new(inj, tmp, f)?;
                    epolls.push(f);
                }
                FdKind::Memfd(m) => {
                    let tmp = crate::memfd::restore(
                        inj,
                        scratch,
                        ns_pid,
                        host_pid,
                        shm.object(m.inode),
                        m,
                    )?;
                    finish_new(inj, tmp, f)?;
                }
                FdKind::Socket(sock @ crate::sockets::SocketImage::UnixPair { .. }) => {
                    let tmp = self.pairs.end(inj, scratch, ns_pid, host_pid, sock)?;
                    finish_new(inj, tmp, f)?;
                }
                FdKind::Socket(sock) => {
                    let tmp = crate::sockets::restore_bound(inj, scratch, ns_pid, sock)?;
                    finish_new(inj, tmp, f)?;
                }
                FdKind::Pipe(end) => {
                    let tmp = self.pipes.end(inj, scratch, ns_pid, host_pid, f.fd, end)?;
                    sys::move_fd(inj, tmp, f.fd, f.cloexec)?;
                    let fl = f.flags & (libc::O_NONBLOCK | libc::O_APPEND);
                    inj.syscall(
                        "fcntl(F_SETFL)",
                        libc::SYS_fcntl,
                        &[f.fd as u64, libc::F_SETFL as u64, fl as u64],
                    )?;
                }
            }
            self.owners.insert(f.ofd, (ns_pid, f.fd));
        }
        // Interest lists last: their targets exist now.
        for f in epolls {
            if let FdKind::Epoll(e) = &f.kind {
                crate::epoll::add_targets(inj, scratch, f.fd, e)?;
            }
        }
        Ok(())
    }
}

/// Places a newly created fd at its number with its status flags.
fn finish_new(inj: &mut Injector, tmp: u64, f: &FdImage) -> Result<()> {
    sys::move_fd(inj, tmp, f.fd, f.cloexec)?;
    let fl = f.flags & (libc::O_NONBLOCK | libc::O_APPEND);
    if fl != 0 {
        inj.syscall(
            "fcntl(F_SETFL)",
            libc::SYS_fcntl,
            &[f.fd as u64, libc::F_SETFL as u64, fl as u64],
        )?;
    }
    Ok(())
}
