//! A guard process for `godwit checkpoint`, forked before the container is
//! frozen: if the checkpoint process dies (SIGKILL, the OOM killer) before it
//! says it is done, the guard puts back what the dump had changed.
//!
//! The kernel detaches a dead tracer's tracees and lets them run on (the
//! dumper keeps its injections out of the long page copy, so they run on their
//! own registers; see docs/dumper.md). What the kernel does not
//! undo is ours: the container's freezer state, the partial image directory
//! and the partial archive. The guard waits on a pipe whose write end only
//! the checkpoint process holds; end of file without the word "done" means
//! it died.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::{ForkResult, Pid};

use crate::error::{Result, RuntimeError};

/// Sent once the image is the only copy of the workload (the tree is about
/// to be killed): from then on a complete image is kept, whatever happens.
const KEEP_IMAGE: u8 = b'K';
/// Sent when the checkpoint is over, succeeded or failed by itself.
const DONE: u8 = b'X';

/// What the guard puts back if the checkpoint process dies.
#[derive(Clone, Debug, Default)]
pub struct GuardPlan {
    /// The container id, for the guard's message.
    pub id: String,
    /// The container's freezer (v1 freezer dir or v2 cgroup dir) and whether
    /// the container was paused before: it is frozen or thawed accordingly.
    pub freezer: Option<PathBuf>,
    pub paused: bool,
    /// The image directory, when this checkpoint creates it: removed, unless
    /// the tree was being killed and the image is complete.
    pub image: Option<PathBuf>,
    /// The archive being written: its temporary files beside it
    /// (`.NAME.PID.*.tmp`, see archive::export) are removed.
    pub export: Option<PathBuf>,
}

/// The checkpoint process's end of the guard: dropping it says "done".
pub struct DumpGuard {
    tell: Option<std::fs::File>,
    guard: Pid,
}

impl DumpGuard {
    /// Forks the guard. Call it before anything of the container changes.
    pub fn arm(plan: GuardPlan) -> Result<DumpGuard> {
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RuntimeError::io("dump guard pipe", e.into()))?;
        let me = std::process::id() as i32;
        // A pidfd of ours, to wait until we are gone altogether: the kernel
        // closes our files before it detaches our tracees.
        // SAFETY: pidfd_open(2) of our own pid, no pointers.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, me, 0) };
        if raw < 0 {
            return Err(RuntimeError::io(
                format!("pidfd_open({me}) for the dump guard"),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a fresh fd returned by pidfd_open, owned from here on.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // SAFETY: the child runs only `guard_main` (syscalls, and allocation,
        // which glibc keeps usable after fork; no lock another thread may
        // have held) and never returns.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                drop(write_end);
                guard_main(read_end, pidfd, &plan, me)
            }
            Ok(ForkResult::Parent { child }) => Ok(DumpGuard {
                tell: Some(std::fs::File::from(write_end)),
                guard: child,
            }),
            Err(e) => Err(RuntimeError::io("fork of the dump guard", e.into())),
        }
    }

    /// The tree is about to be killed: the image must be kept from now on.
    pub fn keep_image(&mut self) {
        self.say(KEEP_IMAGE);
    }

    fn say(&mut self, word: u8) {
        if let Some(tell) = &mut self.tell {
            if let Err(e) = std::io::Write::write_all(tell, &[word]) {
                tracing::warn!("cannot reach the dump guard {}: {e}", self.guard);
            }
        }
    }
}

impl Drop for DumpGuard {
    fn drop(&mut self) {
        self.say(DONE);
        self.tell = None;
        let _ = nix::sys::wait::waitpid(self.guard, None);
    }
}

/// The guard process: waits, and puts things back if its parent died.
fn guard_main(read_end: OwnedFd, parent: OwnedFd, plan: &GuardPlan, parent_pid: i32) -> ! {
    // Out of the caller's session: a ^C to the checkpoint must not end the
    // guard too. Its stdout/stdin are not ours to hold open.
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
    let mut keep_image = false;
    let mut pipe = std::fs::File::from(read_end);
    let mut word = [0u8; 1];
    loop {
        match pipe.read(&mut word) {
            Ok(1) if word[0] == DONE => exit(),
            Ok(1) if word[0] == KEEP_IMAGE => keep_image = true,
            Ok(1) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // End of file: the checkpoint process died without a word.
            _ => break,
        }
    }
    let mut poll = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&parent),
        nix::poll::PollFlags::POLLIN,
    )];
    let _ = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(10_000u16));
    let mut done = Vec::new();
    if let Some(freezer) = &plan.freezer {
        let state =
            godwit_checkpoint::freezer::Freezer::at(freezer).and_then(|f| f.set(plan.paused));
        done.push(match (state, plan.paused) {
            (Ok(()), true) => "paused the container again".to_string(),
            (Ok(()), false) => "thawed the container".to_string(),
            (Err(e), _) => format!("could not restore its freezer state: {e}"),
        });
    }
    if let Some(image) = &plan.image {
        let complete = image.join("inventory.json").exists();
        if keep_image && complete {
            done.push(format!("kept the complete image {}", image.display()));
        } else if std::fs::remove_dir_all(image).is_ok() {
            done.push(format!("removed the partial image {}", image.display()));
        }
    }
    if let Some(archive) = &plan.export {
        for tmp in archive_temporaries(archive, parent_pid) {
            if std::fs::remove_file(&tmp).is_ok() {
                done.push(format!("removed the partial archive {}", tmp.display()));
            }
        }
    }
    // A raw write(2): in a multi-threaded caller (the shim) std's stderr
    // lock may have been held by another thread at the fork.
    let message = format!(
        "godwit: the checkpoint of container {} (pid {parent_pid}) died before it ended; {}\n",
        plan.id,
        done.join(", ")
    );
    // SAFETY: write(2) of a buffer we own to fd 2.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
    exit()
}

/// The temporary files archive::export writes for `archive` in process `pid`.
fn archive_temporaries(archive: &Path, pid: i32) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (archive.parent(), archive.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.to_string_lossy();
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| crate::archive::is_temporary(&n, &name, pid))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn exit() -> ! {
    // Not std::process::exit: nothing of the parent's (atexit handlers,
    // buffered output) is the guard's to run.
    // SAFETY: _exit(2) ends this process only.
    unsafe { libc::_exit(0) }
}
