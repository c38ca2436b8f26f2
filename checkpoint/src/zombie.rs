//! Zombies: children that exited and that their parent has not reaped yet
//! (a daemonizing server leaves one for its parent). They have no memory,
//! files or threads left, only ids and an exit status, which the parent's
//! wait() will return. Dump records them in the inventory; restore forks
//! each one from its restored parent with its old pid, puts it in its
//! session and process group, and makes it exit with the same status once
//! every live process is in place (a zombie may lead a group that live
//! processes belong to).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proc::{self, Stat, Status};
use crate::ptrace::{self, Injector, Stop};
use crate::sys::Scratch;

/// A zombie of the dumped tree (ids in the dumped pid namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieEntry {
    pub pid: i32,
    /// A live process of the image.
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// The status wait() returns for it (exit code << 8, or the signal).
    pub exit_status: i32,
    /// The signal its parent got when it exited (SIGCHLD unless clone(2)
    /// said otherwise).
    pub exit_signal: i32,
}

/// How a zombie ended, from its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

/// The wait status `status` as exit or signal; `None` for one no process
/// can end with (a stop, or a signal number out of range).
pub fn ending(status: i32) -> Option<Ending> {
    // A wait status has 16 bits.
    if !(0..=0xffff).contains(&status) {
        return None;
    }
    let sig = status & 0x7f;
    if sig == 0 {
        return Some(Ending::Exited((status >> 8) & 0xff));
    }
    // 0x7f is a stopped child; 32 and above are never fatal by default
    // except the real-time ones (up to 64).
    if sig == 0x7f || sig > 64 {
        return None;
    }
    // A stop or ignore-by-default signal cannot have ended a process.
    let never_fatal = [
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGURG,
        libc::SIGWINCH,
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ];
    if never_fatal.contains(&sig) {
        return None;
    }
    Some(Ending::Signaled(sig))
}

/// Whether host pid `pid` is a zombie.
pub fn is_zombie(pid: i32) -> Result<bool> {
    let st = proc::read_string(format!("/proc/{pid}/stat"))?;
    let state = st
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    Ok(state == Some('Z'))
}

/// `pids` without its zombies.
pub fn live_only(pids: &[i32]) -> Result<Vec<i32>> {
    let mut out = Vec::with_capacity(pids.len());
    for &pid in pids {
        match is_zombie(pid) {
            Ok(false) => out.push(pid),
            Ok(true) => {}
            // Exited and reaped since the caller listed it (a shell's
            // short-lived child): neither live nor a zombie, nothing to dump.
            Err(crate::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The zombie children of the (frozen, so not reaping) processes `parents`,
/// host pids; found through each one's children list, so a caller that
/// listed only live processes (a cgroup v2 `cgroup.procs`) loses none.
pub fn children_of(parents: &[i32]) -> Result<Vec<i32>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &p in parents {
        for child in proc::children(p)? {
            if seen.insert(child) && is_zombie(child)? {
                out.push(child);
            }
        }
    }
    Ok(out)
}

/// The record of zombie `pid` (host pid), read while its parent is frozen.
pub fn dump(pid: i32) -> Result<ZombieEntry> {
    let status = Status::of_pid(pid)?;
    let ns_last = |k: &str| -> Result<i32> {
        status
            .ints(k)?
            .last()
            .map(|&v| v as i32)
            .ok_or_else(|| Error::parse(&status.path, k.to_string()))
    };
    let host_ppid = status.ints("PPid")?.first().copied().unwrap_or(0) as i32;
    let ppid = Status::of_pid(host_ppid)?.ns_pid()?;
    let stat = Stat::read(pid)?;
    // proc(5): field 38 exit_signal, field 52 exit_code (the wait status).
    let exit_signal = stat.field(38)? as i32;
    let exit_status = stat.field(52)? as i32;
    if ending(exit_status).is_none() {
        return Err(Error::Unsupported {
            pid,
            what: format!("a zombie with wait status {exit_status:#x}"),
        });
    }
    Ok(ZombieEntry {
        pid: ns_last("NSpid")?,
        ppid,
        pgid: ns_last("NSpgid")?,
        sid: ns_last("NSsid")?,
        exit_status,
        exit_signal,
    })
}

/// Ends the (restored, held) zombie `inj` as the record says: exit_group
/// with its code, or death by its signal (made non-dumpable first, so that
/// no core file or core_pattern helper runs on the destination). Consumes
/// the injector: the task is gone. The tracer's wait releases it to its
/// parent, for which it is a zombie like the dumped one.
pub fn finish(mut inj: Injector, scratch: &Scratch, z: &ZombieEntry) -> Result<()> {
    let host = inj.tid();
    let ending = ending(z.exit_status).ok_or_else(|| {
        Error::restore(
            z.pid,
            format!("zombie wait status {:#x} is not an exit", z.exit_status),
        )
    })?;
    let expected = match ending {
        Ending::Exited(code) => {
            inj.start_noreturn(libc::SYS_exit_group, &[code as u64])?;
            Stop::Exited(code)
        }
        Ending::Signaled(sig) => {
            inj.syscall(
                "prctl(PR_SET_DUMPABLE)",
                libc::SYS_prctl,
                &[libc::PR_SET_DUMPABLE as u64, 0],
            )?;
            // The default action (the task was forked before its parent's
            // handlers were restored, but may have inherited the stub's):
            // struct k_sigaction all zero is SIG_DFL, no flags, empty mask.
            let act = scratch.put(0, &[0u8; 32])?;
            inj.syscall(
                "rt_sigaction(SIG_DFL)",
                libc::SYS_rt_sigaction,
                &[sig as u64, act, 0, 8],
            )?;
            inj.forget();
            // Unblocked and pending: delivered as it resumes.
            ptrace::set_sigmask(host, 0)?;
            // SAFETY: kill(2) of a task we created and hold stopped.
            unsafe { libc::kill(host, sig) };
            ptrace::cont(host, 0)?;
            Stop::Killed(sig)
        }
    };
    loop {
        match ptrace::wait(host)? {
            s @ (Stop::Exited(_) | Stop::Killed(_)) if s == expected => return Ok(()),
            Stop::Exited(_) | Stop::Killed(_) => {
                return Err(Error::restore(
                    z.pid,
                    format!(
                        "the zombie ended otherwise than its status {:#x}",
                        z.exit_status
                    ),
                ))
            }
            Stop::Signal(s) => ptrace::cont(host, s)?,
            _ => ptrace::cont(host, 0)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode() {
        assert_eq!(ending(7 << 8), Some(Ending::Exited(7)));
        assert_eq!(ending(0), Some(Ending::Exited(0)));
        assert_eq!(ending(libc::SIGTERM), Some(Ending::Signaled(libc::SIGTERM)));
        // core-dumped flag kept out of the signal number
        assert_eq!(
            ending(libc::SIGSEGV | 0x80),
            Some(Ending::Signaled(libc::SIGSEGV))
        );
    }

    #[test]
    fn impossible_statuses_are_refused() {
        assert_eq!(ending(0x7f | (libc::SIGSTOP << 8)), None); // stopped
        assert_eq!(ending(libc::SIGCHLD), None);
        assert_eq!(ending(libc::SIGSTOP), None);
        assert_eq!(ending(1 << 20), None);
        assert_eq!(ending(-1), None);
    }
}
