//! The controlling terminal's foreground process group: a record the dumper
//! captures from a tree's root and restores into the restored root, so that
//! a shell job in a terminal container gets its keyboard back.
//!
//! The kernel takes TIOCSPGRP only from a process of the terminal's session,
//! so restore runs the ioctl inside the root (a session leader holding the
//! pty on fd 0, 1 or 2) as an injected syscall, the pgid written just below
//! its stack's red zone and put back.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::ImageReader;
use crate::proc::Status;
use crate::ptrace::{self, Gadget, Injector, Mem};

/// File of an image holding the [`ForegroundGroup`] record (JSON).
pub const TERMINAL_DUMP: &str = "terminal.dump";

/// A terminal's foreground process group, as a pid of the dumped pid namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForegroundGroup {
    pub foreground_pgrp: i32,
}

/// `tty_nr` and `tpgid` (proc(5) fields 7 and 8) from the text of
/// /proc/PID/stat; `None` when the process has no controlling terminal.
pub(crate) fn tty_of_stat(stat: &str) -> Option<i32> {
    let after = stat.rfind(") ").map(|i| &stat[i + 2..])?;
    // state ppid pgrp session tty_nr tpgid
    let f: Vec<&str> = after.split(' ').collect();
    let tty_nr: i64 = f.get(4).and_then(|v| v.parse().ok()).unwrap_or(0);
    let tpgid: i32 = f.get(5).and_then(|v| v.parse().ok()).unwrap_or(-1);
    (tty_nr != 0 && tpgid > 0).then_some(tpgid)
}

/// The foreground process group of `root`'s controlling terminal, in the
/// root's pid namespace; `None` without a controlling terminal.
pub fn capture(root: i32) -> Result<Option<ForegroundGroup>> {
    let path = format!("/proc/{root}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let Some(tpgid) = tty_of_stat(&stat) else {
        return Ok(None);
    };
    // tpgid is a host pid here; the namespace knows it by its last NSpid.
    let ns_pid = Status::of_pid(tpgid)?.ns_pid()?;
    Ok(Some(ForegroundGroup {
        foreground_pgrp: ns_pid,
    }))
}

/// Reads the record from an image, verified like its other files (`None`
/// if it has none).
pub fn read(image: &ImageReader) -> Result<Option<ForegroundGroup>> {
    let Some(bytes) = image.extra(TERMINAL_DUMP)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::parse(
            image.dir.join(TERMINAL_DUMP),
            format!("field foreground_pgrp: {e}"),
        )
    })
}

/// The record as the bytes of [`TERMINAL_DUMP`].
pub fn to_bytes(group: &ForegroundGroup) -> Vec<u8> {
    // A struct of one integer always serializes.
    serde_json::to_vec(group).unwrap_or_default()
}

/// Whether `root` (host pid) must be made to set the group: TIOCSCTTY made
/// the root's own group the foreground one, nothing to do when it was.
pub(crate) fn needs_set(root_ns_pgid: Option<i32>, group: &ForegroundGroup) -> bool {
    root_ns_pgid != Some(group.foreground_pgrp)
}

/// Makes `group` the foreground process group of the terminal of the
/// restored, running `root` (host pid). A root without a pty on fd 0-2 is
/// left alone (a warning); a group that no longer exists is a warning too.
pub fn restore(root: i32, group: &ForegroundGroup) -> Result<()> {
    let status = Status::of_pid(root)?;
    let ns_pgid = status
        .ints("NSpgid")
        .ok()
        .and_then(|v| v.last().copied())
        .map(|v| v as i32);
    if !needs_set(ns_pgid, group) {
        return Ok(());
    }
    let Some(fd) = (0..3).find(|fd| {
        std::fs::read_link(format!("/proc/{root}/fd/{fd}"))
            .map(|l| l.to_string_lossy().contains("/pts/"))
            .unwrap_or(false)
    }) else {
        tracing::warn!(
            pid = root,
            "no pty on fd 0-2: the terminal's foreground group is the root's"
        );
        return Ok(());
    };
    // TRACESYSGOOD: the injector tells its syscall stops by it.
    ptrace::seize(root, ptrace::OPT_TRACESYSGOOD)?;
    let result = (|| -> Result<i64> {
        ptrace::interrupt(root)?;
        loop {
            let stop = ptrace::wait(root)?;
            if stop.is_event_stop() {
                break;
            }
            ptrace::cont(root, 0)?;
        }
        let maps = crate::proc::parse_maps(root)?;
        let insn = crate::memory::vdso_syscall_insn(root, &maps)?;
        let mut inj = Injector::new(root, Gadget::Syscall(insn))?;
        let mem = Mem::open(root)?;
        let at = inj.saved_regs().rsp - 1024;
        let mut saved = [0u8; 4];
        mem.read(at, &mut saved)?;
        mem.write(at, &group.foreground_pgrp.to_ne_bytes())?;
        let r = inj.raw_syscall(libc::SYS_ioctl, &[fd as u64, libc::TIOCSPGRP, at]);
        mem.write(at, &saved)?;
        inj.finish()?;
        r
    })();
    let _ = ptrace::detach(root, 0);
    let r = result?;
    if r < 0 {
        // The group may be gone (its processes exited): not worth failing for.
        tracing::warn!(
            pid = root,
            pgrp = group.foreground_pgrp,
            errno = -r,
            "could not make the foreground group"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tty_of_stat_reads_tpgid_after_the_command_name() {
        // A command name with ") " inside: fields counted from the last ") ".
        let s = "42 (a) b) S 1 42 42 34816 57 4194560 0 0";
        assert_eq!(tty_of_stat(s), Some(57));
    }

    #[test]
    fn no_controlling_terminal_is_none() {
        assert_eq!(tty_of_stat("42 (sh) S 1 42 42 0 -1 4194560"), None);
        assert_eq!(tty_of_stat("42 (sh) S 1 42 42 34816 -1 0"), None);
        assert_eq!(tty_of_stat("garbage"), None);
    }

    #[test]
    fn foreground_group_set_only_when_it_differs() {
        let g = ForegroundGroup { foreground_pgrp: 7 };
        assert!(!needs_set(Some(7), &g));
        assert!(needs_set(Some(1), &g));
        assert!(needs_set(None, &g));
    }

    #[test]
    fn record_round_trips_as_the_file_format() {
        let g = ForegroundGroup {
            foreground_pgrp: 12,
        };
        let bytes = to_bytes(&g);
        assert_eq!(bytes, br#"{"foreground_pgrp":12}"#);
        let back: ForegroundGroup = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, g);
    }
}
