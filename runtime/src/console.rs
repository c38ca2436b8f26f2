//! A pty for a foreground container with `process.terminal: true`, as runc
//! gives one: godwit asks libcontainer for the pty master over a console
//! socket of its own, puts its terminal in raw mode and copies bytes both ways.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Result, RuntimeError};

/// The listening end of a console socket.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens at `path` (removed again on drop).
    pub fn listen(path: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|e| RuntimeError::io(path, e))?;
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives the pty master that the container's init sent (it was queued
    /// on the socket while the container was created).
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| RuntimeError::io(&self.path, e))?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| {
            RuntimeError::sys(format!("receive pty master on {}", self.path.display()), e)
        })?;
        let cmsgs = msg
            .cmsgs()
            .map_err(|e| RuntimeError::sys("read control messages", e))?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the fd was just received and nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(RuntimeError::Unsupported {
            flag: "process.terminal",
            reason: "the container sent no pty master over the console socket".into(),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies stdin → master and master → stdout while the container runs; our
/// own terminal (if stdin is one) is raw meanwhile and restored on drop.
pub struct PtyProxy {
    master: File,
    saved: Option<Termios>,
    output: Option<std::thread::JoinHandle<()>>,
}

impl PtyProxy {
    pub fn start(master: OwnedFd) -> Result<Self> {
        let master = File::from(master);
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        let mut proxy = PtyProxy {
            master,
            saved,
            output: None,
        };
        proxy.resize();
        let mut to_master = proxy
            .master
            .try_clone()
            .map_err(|e| RuntimeError::io("pty", e))?;
        // Reads of our stdin block; this thread simply ends with the process.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || to_master.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let mut from_master = proxy
            .master
            .try_clone()
            .map_err(|e| RuntimeError::io("pty", e))?;
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdout = std::io::stdout();
            // EIO once every holder of the pty's other end is gone.
            while let Ok(n) = from_master.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        });
        proxy.output = Some(output);
        Ok(proxy)
    }

    /// Gives the pty our terminal's size (at start and on SIGWINCH).
    pub fn resize(&self) {
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write a winsize we own.
        unsafe {
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut size) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size);
            }
        }
    }

    /// Waits (briefly) for the output the container wrote before it exited.
    pub fn finish(mut self) {
        if let Some(output) = self.output.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !output.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

impl Drop for PtyProxy {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}
