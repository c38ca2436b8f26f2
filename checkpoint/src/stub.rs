//! Stub processes to restore into: a child in a new pid + mount namespace
//! (pid 1 there), stopped, waiting to be rebuilt by [`crate::restore`].

use crate::error::{Error, Result};

/// A stopped child of the calling process. Killed on drop unless released.
pub struct Stub {
    pub pid: i32,
    keep: bool,
}

impl Stub {
    /// clone(CLONE_NEWPID | CLONE_NEWNS) like fork: the child only pauses
    /// (async-signal-safe) until the parent has it stopped with SIGSTOP —
    /// a namespace's pid 1 cannot stop itself.
    pub fn spawn() -> Result<Stub> {
        Self::spawn_with(0)
    }

    /// Like [`Stub::spawn`] with more namespaces (e.g. `CLONE_NEWNET`,
    /// `CLONE_NEWUTS`, `CLONE_NEWIPC`) for the caller to set up first.
    pub fn spawn_with(extra_clone_flags: i32) -> Result<Stub> {
        let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::SIGCHLD | extra_clone_flags;
        // SAFETY: fork-like clone (no new stack); the child calls pause() only.
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags as u64, 0u64, 0u64, 0u64, 0u64) };
        if pid < 0 {
            return Err(Error::sys(
                "clone(CLONE_NEWPID|CLONE_NEWNS)",
                nix::errno::Errno::last(),
            ));
        }
        if pid == 0 {
            loop {
                // SAFETY: pause(2) in the child.
                unsafe { libc::pause() };
            }
        }
        let pid = pid as i32;
        let stub = Stub { pid, keep: false };
        // SAFETY: kill/waitpid of our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let mut status = 0;
        // SAFETY: as above.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        if r != pid || !libc::WIFSTOPPED(status) {
            return Err(Error::sys(
                format!("waiting for stub {pid} to stop"),
                nix::errno::Errno::last(),
            ));
        }
        Ok(stub)
    }

    /// Keeps the process alive when the Stub is dropped (it is restored now).
    pub fn release(mut self) -> i32 {
        self.keep = true;
        self.pid
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if !self.keep {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}
