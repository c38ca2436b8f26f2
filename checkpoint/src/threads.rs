//! Per-thread state: registers (fs/gs base included), XSAVE area, signal mask,
//! rseq registration, clear_child_tid, sigaltstack, comm, pending signals.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ptrace::{self, Injector, Regs, RseqConfig};
use crate::sys::{Scratch, PATH_OFF};

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadImage {
    /// Thread id inside the pid namespace.
    pub tid: i32,
    /// Registers as they must be on resume: syscall restart already applied.
    pub regs: Regs,
    /// XSAVE area, hex.
    pub xstate: String,
    /// Full length of the XSAVE area; `xstate` has its trailing zero bytes
    /// (unused AVX-512 state, mostly) cut off.
    #[serde(default)]
    pub xstate_len: usize,
    pub sigmask: u64,
    pub rseq: Option<RseqConfig>,
    pub clear_child_tid: u64,
    pub altstack: AltStack,
    pub comm: String,
    /// Pending thread-directed signals: raw siginfo, hex.
    pub pending: Vec<String>,
    /// Robust futex list, scheduling, I/O priority (format 2.2).
    #[serde(default)]
    pub attrs: crate::attrs::ThreadAttrs,
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Applies the kernel's syscall-restart rules to registers of a thread that
/// stopped inside a syscall, so that it resumes correctly with orig_rax = -1.
pub fn apply_restart(regs: &mut Regs) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match -(regs.rax as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip -= 2;
        }
        // The restart block cannot be carried. A relative sleep that asked
        // for the remaining time has it in `rem` already: sleep that long
        // again (nanosleep(rem, rem)); anything else gets EINTR.
        ERESTART_RESTARTBLOCK => {
            let nr = regs.orig_rax as i64;
            if nr == libc::SYS_nanosleep && regs.rsi != 0 {
                regs.rdi = regs.rsi;
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            } else if nr == libc::SYS_clock_nanosleep
                && regs.rsi & libc::TIMER_ABSTIME as u64 == 0
                && regs.r10 != 0
            {
                regs.rdx = regs.r10;
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            } else {
                regs.rax = (-libc::EINTR as i64) as u64;
            }
        }
        _ => {}
    }
    regs.orig_rax = u64::MAX;
}

/// Dumps one stopped thread. `inj` was created on it (its saved registers and
/// mask are the thread's own); `scratch` is memory in the same process.
pub fn dump(
    pid: i32,
    host_tid: i32,
    ns_tid: i32,
    inj: &mut Injector,
    scratch: &Scratch,
) -> Result<ThreadImage> {
    let xstate = ptrace::get_xstate(host_tid)?;
    let mut regs = *inj.saved_regs();
    let rseq = match ptrace::get_rseq(host_tid)? {
        c if c.rseq_abi_pointer == 0 => None,
        c => Some(c),
    };
    if let Some(c) = &rseq {
        abort_rseq_cs(&scratch.mem, c, &mut regs)?;
    }
    apply_restart(&mut regs);

    inj.syscall(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[libc::PR_GET_TID_ADDRESS as u64, scratch.addr],
    )?;
    let clear_child_tid = scratch.get_u64(0)?;
    inj.syscall(
        "sigaltstack",
        libc::SYS_sigaltstack,
        &[0, scratch.addr + 64],
    )?;
    let ss = scratch.get(64, 24)?;
    let word = |i: usize| u64::from_ne_bytes(ss[i..i + 8].try_into().unwrap_or([0; 8]));
    let altstack = AltStack {
        sp: word(0),
        flags: word(8) as i32,
        size: word(16),
    };
    let comm_path = format!("/proc/{pid}/task/{host_tid}/comm");
    let comm = crate::proc::read_string(&comm_path)?
        .trim_end_matches('\n')
        .to_string();
    let pending = ptrace::peek_siginfo(host_tid, false)?
        .iter()
        .map(|s| hex(s))
        .collect();
    Ok(ThreadImage {
        tid: ns_tid,
        regs,
        xstate: hex(&xstate[..xstate.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)]),
        xstate_len: xstate.len(),
        sigmask: inj.saved_mask(),
        rseq,
        clear_child_tid,
        altstack,
        comm,
        pending,
        attrs: crate::attrs::dump_thread(host_tid)?,
    })
}

/// A thread stopped inside an rseq critical section resumes at its abort handler.
fn abort_rseq_cs(mem: &crate::ptrace::Mem, c: &RseqConfig, regs: &mut Regs) -> Result<()> {
    let cs = mem.read_u64(c.rseq_abi_pointer + 8)?;
    if cs == 0 {
        return Ok(());
    }
    let mut d = [0u8; 32];
    mem.read(cs, &mut d)?;
    let w = |i: usize| u64::from_ne_bytes(d[i..i + 8].try_into().unwrap_or([0; 8]));
    let (start, post_commit, abort) = (w(8), w(16), w(24));
    if regs.rip >= start && regs.rip < start.wrapping_add(post_commit) {
        regs.rip = abort;
    }
    Ok(())
}

/// Per-thread state only the thread itself can set: clear_child_tid, rseq,
/// robust futex list, sigaltstack, comm, its pending signals. Runs by
/// injection in that thread.
pub fn restore_in_thread(
    inj: &mut Injector,
    scratch: &Scratch,
    tgid: i32,
    t: &ThreadImage,
) -> Result<()> {
    inj.syscall(
        "set_tid_address",
        libc::SYS_set_tid_address,
        &[t.clear_child_tid],
    )?;
    crate::attrs::restore_in_thread(inj, &t.attrs)?;
    if let Some(c) = &t.rseq {
        inj.syscall(
            "rseq(register)",
            libc::SYS_rseq,
            &[
                c.rseq_abi_pointer,
                c.rseq_abi_size as u64,
                0,
                c.signature as u64,
            ],
        )?;
    }
    if t.altstack.flags & libc::SS_DISABLE == 0 {
        let mut ss = Vec::with_capacity(24);
        ss.extend_from_slice(&t.altstack.sp.to_ne_bytes());
        // SS_ONSTACK is a report, not a request.
        ss.extend_from_slice(&((t.altstack.flags & !libc::SS_ONSTACK) as u64).to_ne_bytes());
        ss.extend_from_slice(&t.altstack.size.to_ne_bytes());
        let a = scratch.put(64, &ss)?;
        inj.syscall("sigaltstack", libc::SYS_sigaltstack, &[a, 0])?;
    }
    let name = scratch.put_cstr(PATH_OFF, &t.comm)?;
    inj.syscall(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, name],
    )?;
    for s in &t.pending {
        let info = unhex(s)
            .ok_or_else(|| Error::restore(tgid, format!("thread {}: bad siginfo", t.tid)))?;
        let sig = i32::from_ne_bytes(info[0..4].try_into().unwrap_or([0; 4]));
        let a = scratch.put(128, &info)?;
        inj.syscall(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            &[tgid as u64, t.tid as u64, sig as u64, a],
        )?;
    }
    Ok(())
}

/// Final state set from outside, just before detaching.
pub fn set_final_state(host_tid: i32, t: &ThreadImage) -> Result<()> {
    let mut xstate = unhex(&t.xstate)
        .ok_or_else(|| Error::restore(host_tid, format!("thread {}: bad xstate", t.tid)))?;
    if xstate.len() < t.xstate_len {
        xstate.resize(t.xstate_len, 0);
    }
    ptrace::set_xstate(host_tid, &xstate)?;
    let mut regs = t.regs;
    regs.orig_rax = u64::MAX;
    ptrace::set_regs(host_tid, &regs)?;
    ptrace::set_sigmask(host_tid, t.sigmask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_rules() {
        let mut r = Regs {
            orig_rax: 35,
            rax: (-ERESTART_RESTARTBLOCK) as u64,
            rip: 0x1002,
            ..Default::default()
        };
        apply_restart(&mut r);
        assert_eq!(r.rax as i64, -libc::EINTR as i64);
        assert_eq!(r.rip, 0x1002);
        // nanosleep(req, rem) interrupted: resumes as nanosleep(rem, rem).
        let mut r = Regs {
            orig_rax: 35,
            rax: (-ERESTART_RESTARTBLOCK) as u64,
            rip: 0x1002,
            rdi: 0x100,
            rsi: 0x200,
            ..Default::default()
        };
        apply_restart(&mut r);
        assert_eq!((r.rax, r.rdi, r.rsi, r.rip), (35, 0x200, 0x200, 0x1000));
        // clock_nanosleep(TIMER_ABSTIME) is restarted by the kernel rules, not here.
        let mut r = Regs {
            orig_rax: 230,
            rax: (-ERESTART_RESTARTBLOCK) as u64,
            rsi: libc::TIMER_ABSTIME as u64,
            rip: 0x1002,
            ..Default::default()
        };
        apply_restart(&mut r);
        assert_eq!(r.rax as i64, -libc::EINTR as i64);
        let mut r = Regs {
            orig_rax: 0,
            rax: (-ERESTARTSYS) as u64,
            rip: 0x1002,
            ..Default::default()
        };
        apply_restart(&mut r);
        assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1000, u64::MAX));
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])).unwrap(),
            vec![0, 1, 0xab, 0xff]
        );
    }
}
