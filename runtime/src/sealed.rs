//! The runtime's binary cannot be overwritten from a container (CVE-2019-5736).
//!
//! A process of godwit's that enters a container (the container's init before
//! it execs the workload, `exec`'s process, restore's stub) runs godwit's own
//! binary for a moment. A hostile container can catch it there — a
//! `#!/proc/self/exe` target makes the kernel run that binary inside the
//! container — keep `/proc/PID/exe` open and write through it once the process
//! is gone. So before godwit does anything that puts a process into a
//! container, it re-executes itself from a copy the container cannot write:
//!
//! 1. a read-only bind mount of its binary, detached from every mount tree
//!    right after it was opened (reachable only through the fd that is
//!    executed: a write through `/proc/PID/exe` gets `EROFS`), costing a few
//!    syscalls; or, where mounting is not allowed,
//! 2. a memfd copy sealed against every write (`F_SEAL_WRITE|GROW|SHRINK|SEAL`).
//!
//! The environment variable [`SEALED_ENV`] marks the re-executed process and
//! is removed before anything else runs, so containers never see it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Set in the environment of the re-executed, protected process.
pub const SEALED_ENV: &str = "_GODWIT_SEALED_EXE";

/// Why the runtime could not protect its binary.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot open the runtime's own binary /proc/self/exe: {0}")]
    OpenSelf(#[source] std::io::Error),
    #[error("cannot make a sealed copy of the runtime's binary ({what}): {source}")]
    Memfd {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("an argument or environment variable holds a NUL byte")]
    Nul,
    #[error("cannot re-execute the runtime from its protected copy: {0}")]
    Exec(#[source] std::io::Error),
}

/// True when this process already runs from a protected copy: the marker is
/// set and the binary really is on a read-only mount or a write-sealed memfd
/// (the marker alone proves nothing). The marker is forgotten so that nothing
/// started from here inherits it.
pub fn is_sealed() -> bool {
    if std::env::var_os(SEALED_ENV).is_none() {
        return false;
    }
    // The process is still single-threaded here (called first in main).
    std::env::remove_var(SEALED_ENV);
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    let readonly = nix::sys::statvfs::fstatvfs(&exe)
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false);
    // SAFETY: fcntl(F_GET_SEALS) on a descriptor we own.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    readonly || (seals > 0 && seals & libc::F_SEAL_WRITE != 0)
}

/// Re-executes the current program, with the same arguments, from a copy of
/// its binary that no container can write. Returns only on failure (or at
/// once when the process already runs from such a copy).
pub fn reexec_protected() -> Result<(), SealError> {
    if is_sealed() {
        return Ok(());
    }
    let fd = match readonly_detached_binary() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(
                "read-only bind mount of the binary not possible ({e}); sealed memfd copy"
            );
            sealed_memfd_copy()?
        }
    };
    exec_fd(&fd)
}

/// Opens the running binary through a read-only bind mount that is detached
/// (lazily unmounted) before the fd is used: the file is then reachable only
/// through that fd, and its mount refuses every write.
fn readonly_detached_binary() -> std::io::Result<OwnedFd> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/run"));
    let target = unique_file(&dir)?;
    let result = (|| {
        mount(
            Some(Path::new("/proc/self/exe")),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        let remount = mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
        let opened = remount.map_err(std::io::Error::from).and_then(|_| {
            nix::fcntl::open(
                &target,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(std::io::Error::from)
        });
        // Detach whatever happened: from now on only the fd reaches the file.
        let _ = umount2(&target, MntFlags::MNT_DETACH);
        // SAFETY: open returned a fresh descriptor that nothing else owns.
        opened.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    })();
    let _ = std::fs::remove_file(&target);
    let fd = result.map_err(|e: std::io::Error| e)?;
    // The mount must really be read-only before we trust it.
    let st = nix::sys::statvfs::fstatvfs(&fd)?;
    if !st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Err(std::io::Error::other("bind mount did not become read-only"));
    }
    Ok(fd)
}

fn unique_file(dir: &Path) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    for n in 0..100u32 {
        let p = dir.join(format!(".godwit-exe.{pid}.{n}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "no free name for the bind-mount target",
    ))
}

/// A memfd holding a copy of the binary, sealed against every change.
fn sealed_memfd_copy() -> Result<OwnedFd, SealError> {
    let memfd = |what, e: nix::Error| SealError::Memfd {
        what,
        source: e.into(),
    };
    let src = std::fs::File::open("/proc/self/exe").map_err(SealError::OpenSelf)?;
    let len = src.metadata().map_err(SealError::OpenSelf)?.len();
    let fd = nix::sys::memfd::memfd_create(
        c"godwit-sealed",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC
            | nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| memfd("memfd_create", e))?;
    let mut done: u64 = 0;
    while done < len {
        let chunk = (len - done).min(1 << 30) as usize;
        match nix::sys::sendfile::sendfile64(&fd, &src, None, chunk) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(memfd("copy", e)),
        }
    }
    if done != len {
        return Err(SealError::Memfd {
            what: "copy",
            source: std::io::Error::other(format!("copied {done} of {len} bytes")),
        });
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(SealError::Memfd {
            what: "F_ADD_SEALS",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

fn exec_fd(fd: &OwnedFd) -> Result<(), SealError> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| SealError::Nul))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.as_bytes()).map_err(|_| SealError::Nul)
        })
        .collect::<Result<_, _>>()?;
    env.push(CString::new(format!("{SEALED_ENV}=1")).map_err(|_| SealError::Nul)?);
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call; the path is "" with
    // AT_EMPTY_PATH, so the descriptor itself is executed.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(SealError::Exec(std::io::Error::last_os_error()))
}
