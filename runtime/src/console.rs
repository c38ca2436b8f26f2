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

/// File in the image holding the terminal's foreground process group.
pub const TERMINAL_DUMP: &str = "terminal.dump";

/// A terminal container's controlling-terminal state that travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalState {
    /// The terminal's foreground process group, as a pid in the container.
    pub foreground_pgrp: i32,
}

/// Fields of /proc/PID/stat after the command name.
fn stat_fields(pid: i32) -> Result<Vec<String>> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| RuntimeError::io(&path, e))?;
    let after = text.rfind(") ").map(|i| &text[i + 2..]).unwrap_or("");
    Ok(after.split(' ').map(str::to_string).collect())
}

/// The foreground process group of `init`'s controlling terminal, in the
/// container's pid namespace; `None` without a controlling terminal.
pub fn capture_terminal(init: i32) -> Result<Option<TerminalState>> {
    let f = stat_fields(init)?;
    // state ppid pgrp session tty_nr tpgid
    let tty_nr: i64 = f.get(4).and_then(|v| v.parse().ok()).unwrap_or(0);
    let tpgid: i32 = f.get(5).and_then(|v| v.parse().ok()).unwrap_or(-1);
    if tty_nr == 0 || tpgid <= 0 {
        return Ok(None);
    }
    // tpgid is a host pid here; the container knows it by its last NSpid.
    let status = format!("/proc/{tpgid}/status");
    let text = std::fs::read_to_string(&status).map_err(|e| RuntimeError::io(&status, e))?;
    let ns_pid = text
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| RuntimeError::InvalidConfig {
            path: status.into(),
            field: "NSpid".into(),
            reason: "missing".into(),
        })?;
    Ok(Some(TerminalState {
        foreground_pgrp: ns_pid,
    }))
}

/// Reads `terminal.dump` from an image (`None` if the container had no terminal).
pub fn read_terminal_dump(image: &Path) -> Result<Option<TerminalState>> {
    let path = image.join(TERMINAL_DUMP);
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::bundle::parse_json(&path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::io(&path, e)),
    }
}

/// Makes `state.foreground_pgrp` the foreground process group of the new
/// terminal of the restored `init` (host pid). The kernel takes TIOCSPGRP
/// only from a process of the terminal's session, so it runs inside the
/// init (a session leader holding the pty on fd 0, 1 or 2) as an injected
/// ioctl, the pgid written just below its stack's red zone and put back.
pub fn restore_terminal(init: i32, state: &TerminalState) -> Result<()> {
    use godwit_checkpoint::ptrace::{self, Gadget, Injector, Mem};
    // TIOCSCTTY made the init's group the foreground one: nothing to do
    // when it was (/proc's stat shows host pids; NSpgid the container's).
    let status = format!("/proc/{init}/status");
    let text = std::fs::read_to_string(&status).map_err(|e| RuntimeError::io(&status, e))?;
    let ns_pgid = text
        .lines()
        .find_map(|l| l.strip_prefix("NSpgid:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|p| p.parse::<i32>().ok());
    if ns_pgid == Some(state.foreground_pgrp) {
        return Ok(());
    }
    let Some(fd) = (0..3).find(|fd| {
        std::fs::read_link(format!("/proc/{init}/fd/{fd}"))
            .map(|l| l.to_string_lossy().contains("/pts/"))
            .unwrap_or(false)
    }) else {
        tracing::warn!(
            pid = init,
            "no pty on fd 0-2: the terminal's foreground group is the init's"
        );
        return Ok(());
    };
    let fail = |e: godwit_checkpoint::Error| RuntimeError::Restore {
        id: format!("(terminal of pid {init})"),
        source: Box::new(e),
    };
    // TRACESYSGOOD: the injector tells its syscall stops by it.
    ptrace::seize(init, ptrace::OPT_TRACESYSGOOD).map_err(fail)?;
    let result = (|| -> godwit_checkpoint::Result<i64> {
        ptrace::interrupt(init)?;
        loop {
            let stop = ptrace::wait(init)?;
            if stop.is_event_stop() {
                break;
            }
            ptrace::cont(init, 0)?;
        }
        let maps = godwit_checkpoint::proc::parse_maps(init)?;
        let insn = godwit_checkpoint::memory::vdso_syscall_insn(init, &maps)?;
        let mut inj = Injector::new(init, Gadget::Syscall(insn))?;
        let mem = Mem::open(init)?;
        let at = inj.saved_regs().rsp - 1024;
        let mut saved = [0u8; 4];
        mem.read(at, &mut saved)?;
        mem.write(at, &state.foreground_pgrp.to_ne_bytes())?;
        let r = inj.raw_syscall(libc::SYS_ioctl, &[fd as u64, libc::TIOCSPGRP, at]);
        mem.write(at, &saved)?;
        inj.finish()?;
        r
    })();
    let _ = ptrace::detach(init, 0);
    let r = result.map_err(fail)?;
    if r < 0 {
        // The group may be gone (its processes exited): not worth failing for.
        tracing::warn!(
            pid = init,
            pgrp = state.foreground_pgrp,
            errno = -r,
            "could not make the foreground group"
        );
    }
    Ok(())
}
