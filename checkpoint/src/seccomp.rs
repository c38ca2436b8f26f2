//! Seccomp filters: read with PTRACE_SECCOMP_GET_FILTER/GET_METADATA,
//! reinstalled last (after creds) with seccomp(SET_MODE_FILTER, TSYNC) while
//! PTRACE_O_SUSPEND_SECCOMP keeps them from filtering our own injections.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proc::Status;
use crate::ptrace::{self, Injector};
use crate::sys::Scratch;
use crate::threads::{hex, unhex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// SECCOMP_FILTER_FLAG_* it was installed with (those the kernel reports).
    pub flags: u64,
    /// struct sock_filter array, hex.
    pub prog: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompImage {
    /// Oldest first (the order to install them in).
    pub filters: Vec<Filter>,
}

/// Filters of the process; every thread must have the same number of them.
pub fn dump(pid: i32, tids: &[i32]) -> Result<SeccompImage> {
    let st = Status::of_pid(pid)?;
    let mode = st.get("Seccomp")?.trim().to_string();
    match mode.as_str() {
        "0" => return Ok(SeccompImage::default()),
        "2" => {}
        m => {
            return Err(Error::Unsupported {
                pid,
                what: format!("seccomp mode {m}"),
            })
        }
    }
    let count = st.get("Seccomp_filters")?.trim().to_string();
    for &t in tids {
        let ts = Status::read(format!("/proc/{pid}/task/{t}/status"))?;
        if ts.get("Seccomp_filters")?.trim() != count {
            return Err(Error::Unsupported {
                pid,
                what: format!("threads with different seccomp filters (tid {t})"),
            });
        }
    }
    let mut filters = Vec::new();
    for index in 0.. {
        let Some(prog) = ptrace::seccomp_filter(pid, index)? else {
            break;
        };
        let flags = ptrace::seccomp_flags(pid, index)?;
        filters.push(Filter {
            flags,
            prog: hex(&prog),
        });
    }
    filters.reverse();
    Ok(SeccompImage { filters })
}

/// Installs the filters in the injected thread's process, synchronised to all
/// its threads. The caller has set PTRACE_O_SUSPEND_SECCOMP on every thread.
pub fn restore(inj: &mut Injector, scratch: &Scratch, pid: i32, img: &SeccompImage) -> Result<()> {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
    for f in &img.filters {
        let prog = unhex(&f.prog).ok_or_else(|| Error::restore(pid, "bad seccomp program"))?;
        // A program may be larger than the scratch area: a temporary mapping.
        let len = (prog.len() as u64).div_ceil(4096) * 4096;
        let buf = inj.syscall(
            "mmap(seccomp)",
            libc::SYS_mmap,
            &[
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        scratch.mem.write(buf, &prog)?;
        let mut fprog = Vec::with_capacity(16);
        fprog.extend_from_slice(&((prog.len() / 8) as u64).to_ne_bytes());
        fprog.extend_from_slice(&buf.to_ne_bytes());
        let a = scratch.put(0, &fprog)?;
        let r = inj.syscall(
            "seccomp(SET_MODE_FILTER)",
            libc::SYS_seccomp,
            &[
                SECCOMP_SET_MODE_FILTER,
                f.flags | SECCOMP_FILTER_FLAG_TSYNC,
                a,
            ],
        );
        inj.syscall("munmap(seccomp)", libc::SYS_munmap, &[buf, len])?;
        r?;
    }
    Ok(())
}
