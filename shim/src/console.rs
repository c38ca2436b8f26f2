//! The pty of a terminal process: libcontainer's init sends the master over a
//! console socket (runc's protocol); the shim receives it here and resizes it.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::{Result, ShimError};

/// Directory of the shim's console sockets (short: socket paths are limited to 108 bytes).
const SOCKET_DIR: &str = "/run/godwit-shim";

pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(SOCKET_DIR).map_err(|e| ShimError::io(SOCKET_DIR, e))?;
        let path = Path::new(SOCKET_DIR).join(format!(
            "console-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| ShimError::io(&path, e))?;
        Ok(ConsoleSocket { path, listener })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master the container sent. The process is created by then, so the
    /// connection is already queued; the timeout only guards against a bug.
    pub fn receive(&self) -> Result<OwnedFd> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| ShimError::io(&self.path, e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(ShimError::io(&self.path, e));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(ShimError::io(&self.path, e)),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| ShimError::io(&self.path, e))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ShimError::sys(format!("receive pty master on {}", self.path.display()), e))?;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| ShimError::sys("read control message", e))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS just gave us this fd; nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(ShimError::invalid(
            "console socket",
            format!("{}: no fd received", self.path.display()),
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// TIOCSWINSZ on a pty master.
pub fn resize(master: &std::fs::File, width: u32, height: u32) -> Result<()> {
    let size = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(ShimError::io(
            "pty master (resize)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
