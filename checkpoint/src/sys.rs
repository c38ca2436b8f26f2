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

/// Where the `struct open_how` of [`open_image_path`] goes in the scratch area.
const OPEN_HOW_OFF: u64 = 1536;

/// Opens a path taken from an image inside the target, resolved with the
/// target's root directory as the root (openat2 `RESOLVE_IN_ROOT`: `..` and
/// absolute symlinks stay inside it) and without magic links
/// (`RESOLVE_NO_MAGICLINKS`: no `/proc/self/exe`, `/proc/PID/root`,
/// `/proc/PID/fd/N`), so that no path an image names reaches a host file.
/// `what` names the path's role in errors ("executable", "mapped file" ...).
pub fn open_image_path(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    what: &str,
    path: &str,
    flags: i32,
    mode: u32,
) -> Result<u64> {
    check_image_path(path).map_err(|why| {
        Error::restore(
            ns_pid,
            format!("{what} {path:?} in the image is refused: {why}"),
        )
    })?;
    let root = open_in(
        inj,
        scratch,
        "/",
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )?;
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let r = openat2_in(inj, scratch, ns_pid, what, root, path, flags, mode, resolve);
    inj.syscall("close", libc::SYS_close, &[root])?;
    r
}

/// A relative path from an image (a unix socket bound by a relative name),
/// opened inside the target beneath its working directory
/// (`RESOLVE_BENEATH`), without magic links.
pub fn open_image_path_beneath_cwd(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    what: &str,
    path: &str,
    flags: i32,
) -> Result<u64> {
    if path.contains('\0') || path.len() >= libc::PATH_MAX as usize {
        return Err(Error::restore(
            ns_pid,
            format!("{what} {path:?} in the image is refused: not a path"),
        ));
    }
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let cwd = libc::AT_FDCWD as i64 as u64;
    openat2_in(inj, scratch, ns_pid, what, cwd, path, flags, 0, resolve)
}

#[allow(clippy::too_many_arguments)]
fn openat2_in(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    what: &str,
    dirfd: u64,
    path: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<u64> {
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how: Vec<u8> = [flags as u32 as u64, mode as u64, resolve]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    let h = scratch.put(OPEN_HOW_OFF, &how)?;
    let p = scratch.put_cstr(PATH_OFF, path)?;
    let r = inj.raw_syscall(libc::SYS_openat2, &[dirfd, p, h, how.len() as u64])?;
    if (-4095..0).contains(&r) {
        let errno = nix::errno::Errno::from_raw(-r as i32);
        return Err(Error::restore(
            ns_pid,
            format!(
                "{what} {path:?} from the image cannot be opened inside the container's root: {}",
                why_not_below(errno)
            ),
        ));
    }
    Ok(r as u64)
}

/// The shape every path an image names must have: absolute, no NUL byte,
/// at most PATH_MAX bytes. Where it leads is decided by [`open_image_path`].
pub fn check_image_path(path: &str) -> std::result::Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("not an absolute path");
    }
    if path.contains('\0') {
        return Err("it contains a NUL byte");
    }
    if path.len() >= libc::PATH_MAX as usize {
        return Err("longer than PATH_MAX");
    }
    Ok(())
}

/// openat2 from this process below `root` (a directory fd, e.g. of
/// /proc/PID/root) with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: where a
/// path from an image leads inside a container, seen from outside it.
pub fn open_below(
    root: &std::fs::File,
    path: &str,
    flags: nix::fcntl::OFlag,
) -> std::result::Result<std::fs::File, nix::errno::Errno> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let how = nix::fcntl::OpenHow::new()
        .flags(if flags.contains(nix::fcntl::OFlag::O_PATH) {
            flags | nix::fcntl::OFlag::O_CLOEXEC
        } else {
            flags | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOCTTY
        })
        .resolve(
            nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT
                | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let fd = nix::fcntl::openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this descriptor, owned by no one else.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Why an [`open_below`] failed, in words for an error message.
pub fn why_not_below(e: nix::errno::Errno) -> String {
    match e {
        nix::errno::Errno::ELOOP | nix::errno::Errno::EXDEV => format!(
            "it goes through a /proc magic link or out of the container's root ({e}): refused"
        ),
        nix::errno::Errno::ENOENT => "it is not in the container's rootfs".into(),
        e => format!("cannot be opened in the container's root: {e}"),
    }
}
