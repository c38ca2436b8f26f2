//! Process-wide attributes: cwd, root, umask, personality, rlimits, creds.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proc::{self, Status};
use crate::ptrace::Injector;
use crate::sys::Scratch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub cur: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    /// real, effective, saved, fs
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskImage {
    /// Signal sent to the parent on exit (stat field 38), usually SIGCHLD.
    #[serde(default)]
    pub exit_signal: i32,
    /// Job-control stopped (SIGSTOP/SIGTSTP...) when dumped: stopped again
    /// after restore (and after a leave-running dump).
    #[serde(default)]
    pub stopped: bool,
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub personality: u64,
    pub rlimits: Vec<Rlimit>,
    pub creds: Creds,
}

fn prlimit(
    pid: i32,
    resource: u32,
    new: Option<&libc::rlimit64>,
) -> std::result::Result<libc::rlimit64, nix::errno::Errno> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let newp = new.map_or(std::ptr::null(), |n| n as *const libc::rlimit64);
    // SAFETY: valid pointers to rlimit64 structs.
    let r = unsafe { libc::prlimit64(pid, resource as _, newp, &mut old) };
    if r != 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(old)
}

/// rlimits from /proc/PID/limits (prlimit on another user's process needs
/// CAP_SYS_RESOURCE). Rows are in resource order after the header.
fn read_limits(pid: i32) -> Result<Vec<Rlimit>> {
    let path = format!("/proc/{pid}/limits");
    let text = proc::read_string(&path)?;
    let mut out = Vec::new();
    for (resource, line) in text.lines().skip(1).enumerate() {
        // "%-25s %-20s %-20s %-10s": name, soft, hard, units.
        let vals = line.get(26..).unwrap_or("");
        let mut it = vals.split_whitespace();
        let mut val = |what: &str| -> Result<u64> {
            match it.next() {
                Some("unlimited") => Ok(u64::MAX),
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::parse(&path, format!("{what} in {line:?}"))),
                None => Err(Error::parse(&path, format!("no {what} in {line:?}"))),
            }
        };
        let cur = val("soft limit")?;
        let max = val("hard limit")?;
        out.push(Rlimit {
            resource: resource as u32,
            cur,
            max,
        });
    }
    Ok(out)
}

/// Whether `pid` is in a job-control stop (state T, not a ptrace stop).
pub fn job_stopped(pid: i32) -> Result<bool> {
    let st = proc::read_string(format!("/proc/{pid}/stat"))?;
    Ok(st
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next())
        == Some('T'))
}

pub fn dump(pid: i32) -> Result<TaskImage> {
    let st = Status::of_pid(pid)?;
    let pers = proc::read_string(format!("/proc/{pid}/personality"))?;
    let personality = u64::from_str_radix(pers.trim(), 16)
        .map_err(|_| Error::parse(format!("/proc/{pid}/personality"), pers.trim()))?;
    let rlimits = read_limits(pid)?;
    Ok(TaskImage {
        stopped: false,
        exit_signal: proc::Stat::read(pid)?.field(38)? as i32,
        cwd: proc::read_link(format!("/proc/{pid}/cwd"))?
            .to_string_lossy()
            .into_owned(),
        root: proc::read_link(format!("/proc/{pid}/root"))?
            .to_string_lossy()
            .into_owned(),
        umask: st.octal("Umask")?,
        personality,
        rlimits,
        creds: creds_of(&st)?,
    })
}

/// Credentials as /proc/PID/status shows them.
pub fn creds_of(st: &Status) -> Result<Creds> {
    let ids =
        |k: &str| -> Result<Vec<u32>> { Ok(st.ints(k)?.into_iter().map(|v| v as u32).collect()) };
    Ok(Creds {
        uids: ids("Uid")?,
        gids: ids("Gid")?,
        groups: ids("Groups").unwrap_or_default(),
        cap_inh: st.hex("CapInh")?,
        cap_prm: st.hex("CapPrm")?,
        cap_eff: st.hex("CapEff")?,
        cap_bnd: st.hex("CapBnd")?,
        cap_amb: st.hex("CapAmb")?,
        no_new_privs: st.get("NoNewPrivs")? == "1",
    })
}

/// cwd, umask, personality by injection. The root directory is the stub's
/// (the caller built it); a different one is only reported.
pub fn restore_inside(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    host_pid: i32,
    img: &TaskImage,
) -> Result<()> {
    let cwd = crate::sys::open_image_path(
        inj,
        scratch,
        ns_pid,
        "working directory",
        &img.cwd,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )?;
    let r = inj.syscall("fchdir", libc::SYS_fchdir, &[cwd]);
    inj.syscall("close", libc::SYS_close, &[cwd])?;
    r?;
    inj.syscall("umask", libc::SYS_umask, &[img.umask as u64])?;
    inj.syscall("personality", libc::SYS_personality, &[img.personality])?;
    let root = proc::read_link(format!("/proc/{host_pid}/root"))?;
    if root.to_string_lossy() != img.root {
        tracing::warn!(pid = host_pid, dumped = %img.root, now = %root.display(), "root directory differs");
    }
    Ok(())
}

/// Sets rlimits from outside. Without CAP_SYS_RESOURCE a hard limit cannot be
/// raised: such limits are clamped to the current hard limit and returned.
pub fn restore_rlimits(host_pid: i32, img: &TaskImage) -> Result<Vec<Rlimit>> {
    let mut clamped = Vec::new();
    for r in &img.rlimits {
        let now = prlimit(host_pid, r.resource, None)
            .map_err(|e| Error::sys(format!("prlimit({host_pid}, {})", r.resource), e))?;
        let want = libc::rlimit64 {
            rlim_cur: r.cur,
            rlim_max: r.max,
        };
        if prlimit(host_pid, r.resource, Some(&want)).is_ok() {
            continue;
        }
        let max = r.max.min(now.rlim_max);
        let cur = r.cur.min(max);
        let fallback = libc::rlimit64 {
            rlim_cur: cur,
            rlim_max: max,
        };
        prlimit(host_pid, r.resource, Some(&fallback))
            .map_err(|e| Error::sys(format!("prlimit({host_pid}, {}) clamped", r.resource), e))?;
        tracing::warn!(
            pid = host_pid,
            resource = r.resource,
            want_max = r.max,
            got_max = max,
            "rlimit clamped"
        );
        clamped.push(*r);
    }
    Ok(clamped)
}

/// Credentials last (after everything that needs privilege; seccomp is
/// installed before, suspended for the tracer): bounding set, groups, gids,
/// uids (keeping capabilities across the switch), capability sets, ambient
/// set, no_new_privs. Runs in every thread (credentials are per thread).
pub fn restore_creds(inj: &mut Injector, scratch: &Scratch, c: &Creds) -> Result<()> {
    let last_cap: u64 = proc::read_string("/proc/sys/kernel/cap_last_cap")?
        .trim()
        .parse()
        .unwrap_or(40);
    // Bounding set first: dropping needs CAP_SETPCAP, which may go below.
    for cap in 0..=last_cap.min(63) {
        if c.cap_bnd & (1 << cap) == 0 {
            inj.syscall(
                "prctl(PR_CAPBSET_DROP)",
                libc::SYS_prctl,
                &[libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0],
            )?;
        }
    }
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
    let a = scratch.put(0, &groups)?;
    inj.syscall(
        "setgroups",
        libc::SYS_setgroups,
        &[c.groups.len() as u64, a],
    )?;
    let root = c.uids.iter().all(|&u| u == 0);
    if !root {
        // Keep the permitted set across leaving uid 0; capset sets it below.
        inj.syscall(
            "prctl(PR_SET_KEEPCAPS)",
            libc::SYS_prctl,
            &[libc::PR_SET_KEEPCAPS as u64, 1, 0, 0, 0],
        )?;
    }
    let g = |i: usize| c.gids.get(i).copied().unwrap_or(0) as u64;
    let u = |i: usize| c.uids.get(i).copied().unwrap_or(0) as u64;
    inj.syscall("setresgid", libc::SYS_setresgid, &[g(0), g(1), g(2)])?;
    inj.syscall("setresuid", libc::SYS_setresuid, &[u(0), u(1), u(2)])?;
    if c.gids.len() > 3 {
        inj.syscall("setfsgid", libc::SYS_setfsgid, &[g(3)])?;
    }
    if c.uids.len() > 3 {
        inj.syscall("setfsuid", libc::SYS_setfsuid, &[u(3)])?;
    }
    // capset(v3): header {version, pid 0}, then low and high words of
    // (effective, permitted, inheritable).
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&0x2008_0522u32.to_ne_bytes());
    b.extend_from_slice(&0i32.to_ne_bytes());
    for half in [0u32, 32] {
        for set in [c.cap_eff, c.cap_prm, c.cap_inh] {
            b.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
        }
    }
    let hdr = scratch.put(0, &b[..8])?;
    let data = scratch.put(16, &b[8..])?;
    inj.syscall("capset", libc::SYS_capset, &[hdr, data])?;
    for cap in 0..=last_cap.min(63) {
        if c.cap_amb & (1 << cap) != 0 {
            inj.syscall(
                "prctl(PR_CAP_AMBIENT_RAISE)",
                libc::SYS_prctl,
                &[
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap,
                    0,
                    0,
                ],
            )?;
        }
    }
    if !root {
        inj.syscall(
            "prctl(PR_SET_KEEPCAPS)",
            libc::SYS_prctl,
            &[libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0],
        )?;
    }
    if c.no_new_privs {
        inj.syscall(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_file_matches_getrlimit() {
        let pid = std::process::id() as i32;
        let l = read_limits(pid).unwrap();
        assert_eq!(l.len(), 16);
        let mut r = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::getrlimit64(libc::RLIMIT_NOFILE, &mut r) };
        let nofile = l[libc::RLIMIT_NOFILE as usize];
        assert_eq!((nofile.cur, nofile.max), (r.rlim_cur, r.rlim_max));
    }
}
