//! What a caller needs to know about live processes before it dumps them:
//! the tree under a pid and each process's ids, read from /proc.

use crate::error::Result;
use crate::proc::{self, Stat, Status};

/// `root` and all its descendants (host pids), parents before children.
pub fn tree(root: i32) -> Result<Vec<i32>> {
    proc::tree(root)
}

/// The parent (PPid) of `pid`; `None` for a process without one (pid 1's 0).
pub fn parent(pid: i32) -> Result<Option<i32>> {
    let ppid = Status::of_pid(pid)?.ints("PPid")?.first().copied();
    Ok(ppid.filter(|&p| p > 0).map(|p| p as i32))
}

/// The thread group (process) that task `tid` belongs to.
pub fn tgid(tid: i32) -> Result<Option<i32>> {
    let t = Status::of_pid(tid)?.ints("Tgid")?.first().copied();
    Ok(t.map(|t| t as i32))
}

/// Process group and session of `pid` (proc(5) stat fields 5 and 6), host pids.
pub fn pgid_sid(pid: i32) -> Result<(i32, i32)> {
    let stat = Stat::read(pid)?;
    Ok((stat.field(5)? as i32, stat.field(6)? as i32))
}
