//! Stopping a set of processes: every thread seized and interrupted, with a
//! guard that detaches them all (leaving them running) however the dump ends.

use std::collections::HashSet;
use std::path::Path;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::freezer::Freezer;
use crate::proc;
use crate::ptrace::{self, Stop};

pub struct FrozenProcess {
    /// Host pid.
    pub pid: i32,
    /// Host tids, the thread-group leader first.
    pub tids: Vec<i32>,
}

/// All threads of the given processes in a ptrace stop. Dropping it detaches
/// every thread, so a failed dump leaves the processes running.
pub struct Frozen {
    pub procs: Vec<FrozenProcess>,
    released: bool,
}

impl Frozen {
    /// Seizes and interrupts every thread of `pids`, repeating until no new
    /// thread appears (threads may be created until their creator is stopped).
    /// Seize, interrupt and wait are each one pass over the threads.
    pub fn freeze(pids: &[i32]) -> Result<Self> {
        let mut frozen = Frozen {
            procs: Vec::new(),
            released: false,
        };
        for &pid in &leaders_only(pids)? {
            // Zombies are recorded apart (crate::zombie), as children of the
            // frozen; one that exited just now is found there too.
            if crate::zombie::is_zombie(pid)? {
                continue;
            }
            frozen.procs.push(FrozenProcess {
                pid,
                tids: Vec::new(),
            });
            let idx = frozen.procs.len() - 1;
            let mut seen: HashSet<i32> = HashSet::new();
            loop {
                let tids = proc::tasks(pid)?;
                let new: Vec<i32> = tids.into_iter().filter(|t| !seen.contains(t)).collect();
                if new.is_empty() {
                    break;
                }
                let mut seized = Vec::with_capacity(new.len());
                for &tid in &new {
                    seen.insert(tid);
                    // SUSPEND_SECCOMP: the target's filters must not see our
                    // injected syscalls.
                    let r = seize_one(tid);
                    match r {
                        Ok(()) => seized.push(tid),
                        // The thread exited between listing and seizing.
                        Err(Error::Ptrace {
                            errno: Errno::ESRCH,
                            ..
                        }) => {}
                        Err(e) => return Err(e),
                    }
                }
                // Record before interrupting so that the guard detaches them on error.
                frozen.procs[idx].tids.extend(&seized);
                for &tid in &seized {
                    ptrace::interrupt(tid)?;
                }
                for &tid in &seized {
                    if !wait_interrupted(tid)? {
                        frozen.procs[idx].tids.retain(|&t| t != tid);
                    }
                }
            }
            let leader = frozen.procs[idx].tids.first().copied();
            if leader != Some(pid) {
                return Err(Error::Unsupported {
                    pid,
                    what: "a process whose thread-group leader has exited".into(),
                });
            }
        }
        Ok(frozen)
    }

    /// Like [`Frozen::freeze`], but with the processes' cgroup frozen first
    /// (v2 `cgroup.freeze` or v1 `freezer.state`), so that nothing forks or
    /// clones while the threads are seized: seize and interrupt everything
    /// while frozen, thaw, then collect every interrupt stop.
    pub fn freeze_cgroup(pids: &[i32], cgroup: &Path) -> Result<Self> {
        let mut frozen = Frozen {
            procs: Vec::new(),
            released: false,
        };
        let freezer = Freezer::at(cgroup)?;
        let thaw = freezer.frozen()?;
        // The caller listed the processes before the freeze: a short-lived
        // child (a shell's `sleep`) may have exited, or a new one been
        // forked, since. Frozen, the cgroup's membership holds still.
        let members = cgroup_members(cgroup)
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| pids.to_vec());
        // Zombies are recorded apart (crate::zombie), as children of the frozen.
        let members = crate::zombie::live_only(&members)?;
        for &pid in &leaders_only(&members)? {
            let mut tids = Vec::new();
            for tid in proc::tasks(pid)? {
                match seize_one(tid) {
                    Ok(()) => tids.push(tid),
                    Err(Error::Ptrace {
                        errno: Errno::ESRCH,
                        ..
                    }) => {}
                    Err(e) => {
                        frozen.procs.push(FrozenProcess { pid, tids });
                        return Err(e);
                    }
                }
            }
            frozen.procs.push(FrozenProcess { pid, tids });
        }
        for p in &frozen.procs {
            for &tid in &p.tids {
                ptrace::interrupt(tid)?;
            }
        }
        drop(thaw);
        for p in &mut frozen.procs {
            let mut alive = Vec::with_capacity(p.tids.len());
            for &tid in &p.tids {
                if wait_interrupted(tid)? {
                    alive.push(tid);
                }
            }
            p.tids = alive;
            if p.tids.first() != Some(&p.pid) {
                return Err(Error::Unsupported {
                    pid: p.pid,
                    what: "a process whose thread-group leader has exited".into(),
                });
            }
        }
        Ok(frozen)
    }

    /// Holds nothing (what a [`Frozen`] that was released or killed leaves).
    pub fn empty() -> Self {
        Frozen {
            procs: Vec::new(),
            released: true,
        }
    }

    pub fn thread_count(&self) -> usize {
        self.procs.iter().map(|p| p.tids.len()).sum()
    }

    /// Detaches every thread; the processes continue.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        let mut first_err = None;
        for p in &self.procs {
            for &tid in &p.tids {
                if let Err(e) = ptrace::detach(tid, 0) {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// SIGKILLs every process (call only once the image is durable). The
    /// threads die without running another instruction; as their tracer we
    /// reap each one (from a background thread of this process), or the
    /// traced zombies would keep the group alive.
    pub fn kill(mut self) {
        self.released = true;
        for p in &self.procs {
            // SAFETY: plain kill(2) of a pid we hold stopped.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        // All at once: a namespace's init waits for its traced children.
        // In the background: the dying tasks tear down their memory first
        // (0.1–0.6 s per GiB here) and the image is already durable. If the
        // caller exits sooner, the kernel releases the tracees itself.
        let all: Vec<i32> = self
            .procs
            .iter()
            .flat_map(|p| p.tids.iter().copied())
            .collect();
        std::thread::spawn(move || reap_killed(&all));
    }
}

/// Collects the exit of every (SIGKILLed) traced thread. Threads finish
/// dying in an order we do not control (the namespace's reaper thread waits
/// for all the others), so poll them all rather than wait on one.
pub(crate) fn reap_killed(tids: &[i32]) {
    let mut left: Vec<i32> = tids.to_vec();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        let before = left.len();
        left.retain(|&tid| match ptrace::try_wait(tid) {
            Ok(Some(Stop::Exited(_))) | Ok(Some(Stop::Killed(_))) | Err(_) => false,
            Ok(Some(_)) => {
                let _ = ptrace::cont(tid, 0);
                true
            }
            Ok(None) => true,
        });
        if left.len() == before {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    if !left.is_empty() {
        tracing::warn!(?left, "killed threads not reaped");
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.released {
            for p in &self.procs {
                for &tid in &p.tids {
                    let _ = ptrace::detach(tid, 0);
                }
            }
        }
    }
}

/// The processes among `ids`: a caller may pass thread ids too (e.g. from
/// cgroup.threads); those are covered by their thread group. Order kept.
/// The processes of `cgroup` and its descendants (what its freezer holds),
/// sorted.
fn cgroup_members(cgroup: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let procs = dir.join("cgroup.procs");
        let text = std::fs::read_to_string(&procs).map_err(|e| Error::io(&procs, e))?;
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for ent in entries.flatten() {
            if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(ent.path());
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn leaders_only(ids: &[i32]) -> Result<Vec<i32>> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let tgid = proc::Status::of_pid(id)?
            .ints("Tgid")?
            .first()
            .copied()
            .unwrap_or(0) as i32;
        if tgid == id && !out.contains(&id) {
            out.push(id);
        } else if tgid != id && !ids.contains(&tgid) {
            return Err(Error::Unsupported {
                pid: id,
                what: format!("a thread (of process {tgid}) without its process"),
            });
        }
    }
    Ok(out)
}

/// PTRACE_SEIZE with the dump's options (SUSPEND_SECCOMP when allowed).
fn seize_one(tid: i32) -> Result<()> {
    let with = ptrace::OPT_TRACESYSGOOD | ptrace::OPT_SUSPEND_SECCOMP;
    let r = match ptrace::seize(tid, with) {
        Err(Error::Ptrace {
            errno: Errno::EPERM,
            ..
        }) => ptrace::seize(tid, ptrace::OPT_TRACESYSGOOD),
        r => r,
    };
    // A thread already traced by someone else (a debugger): say so.
    if let Err(Error::Ptrace {
        errno: Errno::EPERM,
        ..
    }) = r
    {
        let tracer = proc::Status::read(format!("/proc/{tid}/status"))
            .and_then(|s| s.ints("TracerPid"))
            .ok()
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        if tracer != 0 {
            return Err(Error::Unsupported {
                pid: tid,
                what: format!("a thread already traced by pid {tracer}"),
            });
        }
    }
    r
}

/// Waits for the PTRACE_INTERRUPT stop of `tid`. A signal that was being
/// delivered is passed on (not lost) and we wait again. Returns false if the
/// thread exited.
fn wait_interrupted(tid: i32) -> Result<bool> {
    loop {
        match ptrace::wait(tid)? {
            Stop::Event { .. } => return Ok(true),
            Stop::Signal(sig) => ptrace::cont(tid, sig)?,
            Stop::Syscall => ptrace::cont(tid, 0)?,
            Stop::Exited(_) | Stop::Killed(_) => return Ok(false),
        }
    }
}
