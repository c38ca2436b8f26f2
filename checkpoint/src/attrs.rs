//! Per-task attributes that no other record carries: prctl flags (child
//! subreaper, parent-death signal, THP disable, dumpable, timer slack),
//! oom_score_adj, and per thread the robust futex list, scheduling policy,
//! nice value and I/O priority.
//!
//! Order at restore: the prctl flags before the credentials (none needs a
//! privilege), the dumpable flag and the parent-death signal after them
//! (the kernel resets both when credentials change), robust lists in each
//! thread, scheduling and I/O priority from outside at the end. A real-time
//! policy or a raised priority is applied only when the record's own
//! effective capabilities (checked against the container's spec before
//! restore) include CAP_SYS_NICE; otherwise it is a warning.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proc;
use crate::ptrace::Injector;
use crate::sys::Scratch;

/// Of the process (read in its leader).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessAttrs {
    pub child_subreaper: bool,
    /// Signal on parent death (0: none).
    pub pdeath_signal: i32,
    pub thp_disable: bool,
    /// PR_GET_DUMPABLE (0, 1 or 2); `None` in images that did not record it.
    pub dumpable: Option<u32>,
    /// PR_GET_TIMERSLACK in ns; 0: not recorded.
    pub timer_slack_ns: u64,
    /// /proc/PID/oom_score_adj.
    pub oom_score_adj: Option<i32>,
}

/// Of one thread, read from outside.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadAttrs {
    /// set_robust_list(head, len): glibc registers one per thread.
    pub robust_list: Option<(u64, u64)>,
    /// sched_getscheduler (without SCHED_RESET_ON_FORK) and its priority.
    pub sched_policy: i32,
    pub sched_priority: i32,
    pub reset_on_fork: bool,
    /// getpriority(PRIO_PROCESS, tid).
    pub nice: i32,
    /// ioprio_get(IOPRIO_WHO_PROCESS, tid).
    pub ioprio: Option<i32>,
}

const IOPRIO_WHO_PROCESS: u64 = 1;

/// The leader's flags, by injected prctl calls (`scratch` takes the ints
/// PR_GET_CHILD_SUBREAPER and PR_GET_PDEATHSIG write).
pub fn dump_process(pid: i32, inj: &mut Injector, scratch: &Scratch) -> Result<ProcessAttrs> {
    let int_at = |inj: &mut Injector, name, op: i32| -> Result<i32> {
        let addr = scratch.put(0, &[0u8; 4])?;
        inj.syscall(name, libc::SYS_prctl, &[op as u64, addr])?;
        let b = scratch.get(0, 4)?;
        Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let child_subreaper = int_at(
        inj,
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::PR_GET_CHILD_SUBREAPER,
    )? != 0;
    let pdeath_signal = int_at(inj, "prctl(PR_GET_PDEATHSIG)", libc::PR_GET_PDEATHSIG)?;
    let get = |inj: &mut Injector, name, op: i32| {
        inj.syscall(name, libc::SYS_prctl, &[op as u64, 0, 0, 0, 0])
    };
    let thp_disable = get(inj, "prctl(PR_GET_THP_DISABLE)", libc::PR_GET_THP_DISABLE)? != 0;
    let dumpable = get(inj, "prctl(PR_GET_DUMPABLE)", libc::PR_GET_DUMPABLE)? as u32;
    let timer_slack_ns = get(inj, "prctl(PR_GET_TIMERSLACK)", libc::PR_GET_TIMERSLACK)?;
    let path = format!("/proc/{pid}/oom_score_adj");
    let oom_score_adj = proc::read_string(&path)?
        .trim()
        .parse()
        .map_err(|_| Error::parse(&path, "not an integer"))?;
    Ok(ProcessAttrs {
        child_subreaper,
        pdeath_signal,
        thp_disable,
        dumpable: Some(dumpable),
        timer_slack_ns,
        oom_score_adj: Some(oom_score_adj),
    })
}

/// What a thread's attributes are, read from outside (`host_tid` stopped).
pub fn dump_thread(host_tid: i32) -> Result<ThreadAttrs> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: get_robust_list writes a pointer and a size_t to our locals.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            host_tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if r != 0 {
        return Err(Error::sys("get_robust_list", nix::errno::Errno::last()));
    }
    // SAFETY: plain queries of a thread's scheduling by tid.
    let policy = unsafe { libc::sched_getscheduler(host_tid) };
    if policy < 0 {
        return Err(Error::sys("sched_getscheduler", nix::errno::Errno::last()));
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: writes one sched_param.
    if unsafe { libc::sched_getparam(host_tid, &mut param) } != 0 {
        return Err(Error::sys("sched_getparam", nix::errno::Errno::last()));
    }
    nix::errno::Errno::clear();
    // SAFETY: getpriority has no memory arguments; -1 is a valid result,
    // told from an error by errno.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, host_tid as libc::id_t) };
    if nice == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(Error::sys("getpriority", nix::errno::Errno::last()));
    }
    // SAFETY: no memory arguments.
    let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, host_tid) };
    Ok(ThreadAttrs {
        robust_list: (head != 0).then_some((head, len as u64)),
        sched_policy: policy & !libc::SCHED_RESET_ON_FORK,
        sched_priority: param.sched_priority,
        reset_on_fork: policy & libc::SCHED_RESET_ON_FORK != 0,
        nice,
        ioprio: (ioprio >= 0).then_some(ioprio as i32),
    })
}

/// The flags that credentials do not reset, in the process (before creds).
pub fn restore_before_creds(inj: &mut Injector, a: &ProcessAttrs) -> Result<()> {
    let mut set = |name, op: i32, v: u64| {
        inj.syscall(name, libc::SYS_prctl, &[op as u64, v, 0, 0, 0])
            .map(|_| ())
    };
    if a.child_subreaper {
        set(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            libc::PR_SET_CHILD_SUBREAPER,
            1,
        )?;
    }
    if a.thp_disable {
        set("prctl(PR_SET_THP_DISABLE)", libc::PR_SET_THP_DISABLE, 1)?;
    }
    if a.timer_slack_ns != 0 {
        set(
            "prctl(PR_SET_TIMERSLACK)",
            libc::PR_SET_TIMERSLACK,
            a.timer_slack_ns,
        )?;
    }
    Ok(())
}

/// The flags a change of credentials resets, in the process (after creds).
/// The root's parent-death signal is not set again: its parent is not the
/// one it was dumped with (the restorer, which exits), and the signal
/// would fire as soon as the restorer is gone.
pub fn restore_after_creds(inj: &mut Injector, a: &ProcessAttrs, is_root: bool) -> Result<()> {
    if let Some(d) = a.dumpable {
        // 2 (suid_dumpable "suidsafe") cannot be set by prctl: it is the
        // kernel's own choice after a credential change, kept as it is.
        if d <= 1 {
            inj.syscall(
                "prctl(PR_SET_DUMPABLE)",
                libc::SYS_prctl,
                &[libc::PR_SET_DUMPABLE as u64, d as u64, 0, 0, 0],
            )?;
        }
    }
    if a.pdeath_signal != 0 && !is_root {
        inj.syscall(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            &[
                libc::PR_SET_PDEATHSIG as u64,
                a.pdeath_signal as u64,
                0,
                0,
                0,
            ],
        )?;
    }
    Ok(())
}

/// The thread's robust futex list, in the thread.
pub fn restore_in_thread(inj: &mut Injector, a: &ThreadAttrs) -> Result<()> {
    if let Some((head, len)) = a.robust_list {
        inj.syscall("set_robust_list", libc::SYS_set_robust_list, &[head, len])?;
    }
    Ok(())
}

/// What a thread's scheduling may be set to, given whether its process
/// holds CAP_SYS_NICE: (policy, priority, nice) or why not.
pub fn allowed_sched(
    a: &ThreadAttrs,
    sys_nice: bool,
    current_nice: i32,
) -> std::result::Result<(i32, i32, i32), String> {
    let realtime = matches!(a.sched_policy, libc::SCHED_FIFO | libc::SCHED_RR);
    if realtime && !sys_nice {
        return Err(format!(
            "real-time policy {} (priority {}) without CAP_SYS_NICE",
            a.sched_policy, a.sched_priority
        ));
    }
    if a.nice < current_nice && !sys_nice {
        return Err(format!(
            "nice {} below {current_nice} without CAP_SYS_NICE",
            a.nice
        ));
    }
    if !(-20..=19).contains(&a.nice) || !(0..=99).contains(&a.sched_priority) {
        return Err(format!(
            "nice {} / priority {} out of range",
            a.nice, a.sched_priority
        ));
    }
    Ok((a.sched_policy, a.sched_priority, a.nice))
}

/// Scheduling policy, nice value and I/O priority of the (stopped)
/// restored thread `host_tid`, from outside; what could not be applied is
/// returned as a warning.
pub fn restore_outside(
    host_tid: i32,
    ns_tid: i32,
    a: &ThreadAttrs,
    sys_nice: bool,
) -> Option<String> {
    nix::errno::Errno::clear();
    // SAFETY: no memory arguments.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, host_tid as libc::id_t) };
    let (policy, priority, nice) = match allowed_sched(a, sys_nice, current) {
        Ok(v) => v,
        Err(why) => return Some(format!("thread {ns_tid}: scheduling not restored: {why}")),
    };
    let mut problems = Vec::new();
    let flags = if a.reset_on_fork {
        libc::SCHED_RESET_ON_FORK
    } else {
        0
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: reads one sched_param.
    if unsafe { libc::sched_setscheduler(host_tid, policy | flags, &param) } != 0 {
        problems.push(format!("policy {policy}: {}", nix::errno::Errno::last()));
    }
    if nice != current {
        // SAFETY: no memory arguments.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, host_tid as libc::id_t, nice) } != 0 {
            problems.push(format!("nice {nice}: {}", nix::errno::Errno::last()));
        }
    }
    if let Some(io) = a.ioprio {
        // SAFETY: no memory arguments.
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, host_tid, io) };
        if r != 0 {
            problems.push(format!(
                "I/O priority {io:#x}: {}",
                nix::errno::Errno::last()
            ));
        }
    }
    (!problems.is_empty()).then(|| format!("thread {ns_tid}: {}", problems.join(", ")))
}

/// oom_score_adj of the (restored) process `host_pid`: raised from outside;
/// one below the current value needs CAP_SYS_RESOURCE, which a restorer may
/// lack: then a warning.
pub fn restore_oom_score_adj(host_pid: i32, ns_pid: i32, a: &ProcessAttrs) -> Option<String> {
    let want = a.oom_score_adj?;
    if !(-1000..=1000).contains(&want) {
        return Some(format!("pid {ns_pid}: oom_score_adj {want} out of range"));
    }
    let path = format!("/proc/{host_pid}/oom_score_adj");
    let now: i32 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
    if now == want {
        return None;
    }
    std::fs::write(&path, want.to_string())
        .err()
        .map(|e| format!("pid {ns_pid}: oom_score_adj {want} not restored (it is {now}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(policy: i32, prio: i32, nice: i32) -> ThreadAttrs {
        ThreadAttrs {
            sched_policy: policy,
            sched_priority: prio,
            nice,
            ..Default::default()
        }
    }

    #[test]
    fn realtime_and_raised_priority_need_cap_sys_nice() {
        assert!(allowed_sched(&t(libc::SCHED_FIFO, 10, 0), false, 0).is_err());
        assert_eq!(
            allowed_sched(&t(libc::SCHED_FIFO, 10, 0), true, 0),
            Ok((libc::SCHED_FIFO, 10, 0))
        );
        assert!(allowed_sched(&t(libc::SCHED_OTHER, 0, -5), false, 0).is_err());
        assert_eq!(
            allowed_sched(&t(libc::SCHED_OTHER, 0, 5), false, 0),
            Ok((libc::SCHED_OTHER, 0, 5))
        );
        assert_eq!(
            allowed_sched(&t(libc::SCHED_BATCH, 0, 0), false, 0),
            Ok((libc::SCHED_BATCH, 0, 0))
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(allowed_sched(&t(libc::SCHED_OTHER, 0, 40), true, 0).is_err());
        assert!(allowed_sched(&t(libc::SCHED_FIFO, 1000, 0), true, 0).is_err());
    }
}
