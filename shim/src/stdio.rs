//! A process's stdio: containerd hands over fifo paths; the container gets
//! pipes (or a pty) and the shim copies between them, so that the fifos can be
//! reopened by a restarted containerd and stdin can be closed on request.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;

use crate::error::{Result, ShimError};

/// The fifo paths of one process, as containerd sent them ("" = none).
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The ends given to the container's process.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The shim's side before the process exists: what to copy once it runs.
pub struct PendingIo {
    stdin: Option<(String, OwnedFd)>,
    outputs: Vec<(OwnedFd, File)>,
}

/// The shim's side of a running process's stdio.
#[derive(Default)]
pub struct ProcessIo {
    /// Where containerd's stdin goes (pipe or pty master); None once closed.
    stdin: Arc<Mutex<Option<File>>>,
    /// Copiers of output still running, to let Delete wait for the last bytes.
    pending: Arc<(Mutex<usize>, Condvar)>,
    /// The pty master, for resize.
    pub console: Option<File>,
    /// The stdin fifo, to release a copier still waiting for a writer.
    stdin_path: Option<String>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::sys("create a stdio pipe", e))
}

fn dev_null(write: bool) -> Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(|e| ShimError::io("/dev/null", e))?;
    Ok(file.into())
}

/// Opens an output fifo read-write: never blocks, and the shim's own reader
/// keeps writes from failing with EPIPE while containerd is away.
fn open_output(path: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ShimError::io(path, e))
}

/// Pipes for a process without a terminal.
pub fn pipes(paths: &StdioPaths) -> Result<(ChildStdio, PendingIo)> {
    let mut pending = PendingIo {
        stdin: None,
        outputs: Vec::new(),
    };
    let stdin = if paths.stdin.is_empty() {
        dev_null(false)?
    } else {
        let (r, w) = pipe()?;
        pending.stdin = Some((paths.stdin.clone(), w));
        r
    };
    let mut output = |path: &str| -> Result<OwnedFd> {
        if path.is_empty() {
            return dev_null(true);
        }
        let fifo = open_output(path)?;
        let (r, w) = pipe()?;
        pending.outputs.push((r, fifo));
        Ok(w)
    };
    let stdout = output(&paths.stdout)?;
    let stderr = output(&paths.stderr)?;
    Ok((
        ChildStdio {
            stdin,
            stdout,
            stderr,
        },
        pending,
    ))
}

impl PendingIo {
    /// For a terminal: stdin → master, master → stdout fifo. Returns the
    /// copies to start and the master itself (kept for resize).
    pub fn terminal(paths: &StdioPaths, master: OwnedFd) -> Result<(PendingIo, File)> {
        let master = File::from(master);
        let dup = |f: &File| -> Result<OwnedFd> {
            Ok(f.try_clone()
                .map_err(|e| ShimError::io("pty master (dup)", e))?
                .into())
        };
        let mut pending = PendingIo {
            stdin: None,
            outputs: Vec::new(),
        };
        if !paths.stdin.is_empty() {
            pending.stdin = Some((paths.stdin.clone(), dup(&master)?));
        }
        if !paths.stdout.is_empty() {
            pending
                .outputs
                .push((dup(&master)?, open_output(&paths.stdout)?));
        }
        Ok((pending, master))
    }

    /// Starts the copy threads; `console` is kept for resize. `exited` is set
    /// once the process has exited (a pty master's EIO alone is not the end).
    pub fn start(self, name: &str, console: Option<File>, exited: Arc<AtomicBool>) -> ProcessIo {
        let terminal = console.is_some();
        let io = ProcessIo {
            console,
            ..ProcessIo::default()
        };
        let mut io = io;
        if let Some((path, writer)) = self.stdin {
            io.stdin_path = Some(path.clone());
            *lock(&io.stdin) = Some(File::from(writer));
            let target = io.stdin.clone();
            spawn(format!("stdin {name}"), move || copy_stdin(&path, &target));
        }
        for (reader, fifo) in self.outputs {
            *lock(&io.pending.0) += 1;
            let pending = io.pending.clone();
            let exited = terminal.then(|| exited.clone());
            spawn(format!("output {name}"), move || {
                copy_output(File::from(reader), fifo, exited);
                let (count, cond) = &*pending;
                *lock(count) -= 1;
                cond.notify_all();
            });
        }
        io
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.clone()).spawn(f) {
        log::error!("cannot start copy thread {name}: {e}");
    }
}

fn copy_stdin(path: &str, target: &Mutex<Option<File>>) {
    // Blocks until containerd's writer opens it, which is why it is here.
    let mut fifo = match File::open(Path::new(path)) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("open stdin fifo {path}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match fifo.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("read stdin fifo {path}: {e}");
                break;
            }
        };
        let mut guard = lock(target);
        match guard.as_mut() {
            Some(w) => {
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            None => return,
        }
    }
    // containerd closed its end: the process sees EOF.
    lock(target).take();
}

/// Copies until EOF. For a pty master (`exited` given), EIO means "no slave
/// open right now", seen both before the process has its terminal and while
/// its last output is still in flight: the copy ends only at an EIO after
/// the process has exited, with one last look for late bytes.
fn copy_output(mut reader: File, mut fifo: File, exited: Option<Arc<AtomicBool>>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut last_look = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) if n > 0 => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            _ => match &exited {
                Some(flag) if !flag.load(Ordering::Acquire) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Some(_) if !last_look => {
                    last_look = true;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                _ => return,
            },
        };
        if let Err(e) = fifo.write_all(&buf[..n]) {
            log::warn!("write output fifo: {e}");
            return;
        }
    }
}

impl ProcessIo {
    /// CloseIO: the process's stdin reaches EOF.
    pub fn close_stdin(&self) {
        lock(&self.stdin).take();
    }

    /// At delete: closes stdin and ends its copier, which may still be
    /// blocked opening the fifo if containerd never opened its side.
    pub fn close(&self) {
        self.close_stdin();
        if let Some(path) = &self.stdin_path {
            // Opening the write side completes the copier's open; closing it
            // gives the copier EOF. ENXIO means nobody waits: nothing to do.
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path);
        }
    }

    /// Waits (bounded) until every output copier reached EOF, so the
    /// process's last bytes are in the fifos before containerd closes them.
    pub fn wait_output(&self, timeout: Duration) {
        let (count, cond) = &*self.pending;
        let guard = lock(count);
        let _ = cond.wait_timeout_while(guard, timeout, |n| *n > 0);
    }
}

/// /dev/null for all three: a terminal process gets the pty from its console.
pub fn null() -> Result<ChildStdio> {
    Ok(ChildStdio {
        stdin: dev_null(false)?,
        stdout: dev_null(true)?,
        stderr: dev_null(true)?,
    })
}
