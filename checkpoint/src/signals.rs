//! Signal dispositions (read and set by injected rt_sigaction: no other
//! interface exposes them) and process-wide pending signals.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proc::Status;
use crate::ptrace::{self, Injector};
use crate::sys::Scratch;
use crate::threads::{hex, unhex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub sig: i32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalImage {
    /// Only signals that are caught or ignored; the rest are SIG_DFL.
    pub actions: Vec<SigAction>,
    /// Process-wide pending signals: raw siginfo, hex.
    pub pending_shared: Vec<String>,
}

pub fn dump(pid: i32, leader: i32, inj: &mut Injector, scratch: &Scratch) -> Result<SignalImage> {
    let st = Status::of_pid(pid)?;
    let interesting = st.hex("SigCgt")? | st.hex("SigIgn")?;
    let mut actions = Vec::new();
    for sig in 1..=64 {
        if interesting & (1u64 << (sig - 1)) == 0 || sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        inj.syscall(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            &[sig as u64, 0, scratch.addr, 8],
        )?;
        let b = scratch.get(0, 32)?;
        let w = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        actions.push(SigAction {
            sig,
            handler: w(0),
            flags: w(8),
            restorer: w(16),
            mask: w(24),
        });
    }
    let pending_shared = ptrace::peek_siginfo(leader, true)?
        .iter()
        .map(|s| hex(s))
        .collect();
    Ok(SignalImage {
        actions,
        pending_shared,
    })
}

/// Sets dispositions, then queues the process-wide pending signals (from
/// inside the leader, so si_code >= 0 is accepted).
pub fn restore(
    inj: &mut Injector,
    scratch: &Scratch,
    tgid: i32,
    host_pid: i32,
    img: &SignalImage,
) -> Result<()> {
    // The image lists only signals caught or ignored; every other one must
    // be SIG_DFL. The process was forked from the stub, which may not have
    // reset what it inherited (it can be stopped before its executor ran):
    // put those back to the default first.
    let status = crate::proc::Status::of_pid(host_pid)?;
    let mask = |k: &str| -> Result<u64> {
        u64::from_str_radix(status.get(k)?, 16)
            .map_err(|_| Error::parse(&status.path, format!("{k}: not a hex mask")))
    };
    let listed: Vec<i32> = img.actions.iter().map(|a| a.sig).collect();
    let dfl = scratch.put(0, &[0u8; 32])?;
    for sig in stray_signals(mask("SigIgn")? | mask("SigCgt")?, &listed) {
        inj.syscall(
            "rt_sigaction(SIG_DFL)",
            libc::SYS_rt_sigaction,
            &[sig as u64, dfl, 0, 8],
        )?;
    }
    for a in &img.actions {
        let mut b = Vec::with_capacity(32);
        for w in [a.handler, a.flags, a.restorer, a.mask] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        let addr = scratch.put(0, &b)?;
        inj.syscall(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            &[a.sig as u64, addr, 0, 8],
        )?;
    }
    for s in &img.pending_shared {
        let info = unhex(s).ok_or_else(|| Error::restore(tgid, "bad pending siginfo"))?;
        let sig = i32::from_ne_bytes(info[0..4].try_into().unwrap_or([0; 4]));
        let a = scratch.put(128, &info)?;
        inj.syscall(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            &[tgid as u64, sig as u64, a],
        )?;
    }
    Ok(())
}

/// Signals not at their default (bit N-1 of `non_default` for signal N)
/// that the image does not list: to be reset to SIG_DFL. SIGKILL and
/// SIGSTOP cannot be changed and are never reported.
pub fn stray_signals(non_default: u64, listed: &[i32]) -> Vec<i32> {
    (1..=64)
        .filter(|&sig| non_default & (1u64 << (sig - 1)) != 0)
        .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
        .filter(|sig| !listed.contains(sig))
        .collect()
}

#[cfg(test)]
mod stray_tests {
    use super::stray_signals;

    #[test]
    fn unlisted_non_default_signals_are_reset() {
        // SIGPIPE (13), 32 and 33 ignored by the stub; the image catches SIGTERM (15).
        let non_default = (1 << 12) | (1 << 31) | (1 << 32) | (1 << 14);
        assert_eq!(stray_signals(non_default, &[15]), vec![13, 32, 33]);
        assert_eq!(stray_signals(0, &[15]), Vec::<i32>::new());
        assert_eq!(stray_signals(1 << 63, &[]), vec![64]);
    }
}
