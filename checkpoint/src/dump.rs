//! `dump()`: freeze a process tree, read its state, write the image, then
//! release (leave running) or kill it once the image is durable.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{self, FilesImage};
use crate::freeze::Frozen;
use crate::image::{self, Clocks, FormatVersion, Inventory, PagesWriter, ProcessEntry, Versioned};
use crate::memory::{self, MemoryImage};
use crate::proc::{self, Status};
use crate::ptrace::{self, Gadget, Injector, Mem, GADGET_BYTES};
use crate::signals::{self, SignalImage};
use crate::stream::Sink;
use crate::sys::Scratch;
use crate::task::{self, TaskImage};
use crate::threads::{self, ThreadImage};
use crate::timers::{self, TimersImage};

/// Size of the scratch page mapped into a process while it is dumped; the
/// `syscall; int3` gadget sits at its end.
pub(crate) const SCRATCH_LEN: u64 = 4096;
pub(crate) const GADGET_OFF: u64 = SCRATCH_LEN - 16;

#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Detach after the dump instead of killing the processes.
    pub leave_running: bool,
    /// Compress page data with zstd at this level.
    pub zstd_level: Option<i32>,
    /// Files of the caller's (e.g. the runtime's `spec.dump`) written into the
    /// image before the inventory, so that they too are durable before the
    /// processes are killed.
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// The root's fds 0-2 (and every fd sharing their open file description)
    /// come from outside the tree — a container's stdio — and are recorded as
    /// external, to be reconnected at restore, whatever their kind.
    pub external_stdio: bool,
    /// The processes' cgroup (v2 directory, or v1 freezer directory): frozen
    /// while every thread is seized, so nothing forks behind our back.
    pub freeze_cgroup: Option<std::path::PathBuf>,
    /// With `freeze_cgroup`: freeze the cgroup again before the processes
    /// are released (`leave_running`, or a [`Held`] dump aborted), so a
    /// paused container stays paused without running an instruction in
    /// between.
    pub keep_frozen: bool,
    /// Record the foreground process group of the root's controlling
    /// terminal ([`crate::terminal`]), for `RestoreOptions::restore_terminal`.
    pub record_terminal: bool,
}

/// Timings in microseconds and sizes, for `stats-dump` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpStats {
    pub processes: usize,
    /// Unreaped children recorded (not counted in `processes`).
    #[serde(default)]
    pub zombies: usize,
    pub threads: usize,
    pub pages_written: u64,
    pub freeze_us: u64,
    pub frozen_us: u64,
    pub memdump_us: u64,
    pub total_us: u64,
}

/// The record of one process: one image type per module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessImage {
    pub format: FormatVersion,
    pub pid: i32,
    pub memory: MemoryImage,
    pub threads: Vec<ThreadImage>,
    pub signals: SignalImage,
    pub files: FilesImage,
    pub task: TaskImage,
    #[serde(default)]
    pub timers: TimersImage,
    #[serde(default)]
    pub seccomp: crate::seccomp::SeccompImage,
    /// prctl flags and oom_score_adj (format 2.2).
    #[serde(default)]
    pub attrs: crate::attrs::ProcessAttrs,
}

impl Versioned for ProcessImage {
    fn format(&self) -> FormatVersion {
        self.format
    }
}

fn us(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

pub fn clocks() -> Clocks {
    let ns = |id| {
        nix::time::clock_gettime(id)
            .map(|t| t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128)
            .unwrap_or(0)
    };
    Clocks {
        realtime_ns: ns(nix::time::ClockId::CLOCK_REALTIME),
        monotonic_ns: ns(nix::time::ClockId::CLOCK_MONOTONIC),
        boottime_ns: ns(nix::time::ClockId::CLOCK_BOOTTIME),
    }
}

/// Dumps the processes `pids` (host pids; one of them the root whose parent
/// is outside the set) into the empty or new directory `dir`.
pub fn dump(pids: &[i32], dir: &Path, opts: &DumpOptions) -> Result<DumpStats> {
    dump_and_hold(pids, dir, opts)?.finish()
}

/// A dumped tree still held in its ptrace stops, the image complete and
/// durable: [`Held::finish`] kills or releases it as the options say,
/// [`Held::abort`] (or drop) lets it run on as if nothing had happened. A
/// caller that has more to do before the tree may die (write the image into
/// an archive) does it in between, and aborts if that fails.
pub struct Held {
    frozen: Frozen,
    /// Processes that were in a job-control stop before the dump.
    stopped: HashSet<i32>,
    /// TCP connections (host pid, fd): not carried, reset when killed.
    connections: Vec<(i32, i32)>,
    leave_running: bool,
    keep_frozen: Option<std::path::PathBuf>,
    stats: DumpStats,
    t0: Instant,
}

impl Held {
    pub fn stats(&self) -> &DumpStats {
        &self.stats
    }

    /// Ends the dump: kills the tree, or with `leave_running` releases it.
    pub fn finish(mut self) -> Result<DumpStats> {
        if self.leave_running {
            self.release()?;
        } else {
            for &(pid, fd) in &self.connections {
                if let Err(e) = crate::sockets::reset_on_close(pid, fd) {
                    tracing::warn!("the peer of a TCP connection will see it end, not reset: {e}");
                }
            }
            let frozen = std::mem::replace(&mut self.frozen, Frozen::empty());
            frozen.kill();
        }
        self.stats.total_us = us(self.t0);
        let stats = self.stats.clone();
        tracing::info!(
            processes = stats.processes,
            threads = stats.threads,
            pages = stats.pages_written,
            freeze_us = stats.freeze_us,
            frozen_us = stats.frozen_us,
            total_us = stats.total_us,
            "dumped"
        );
        Ok(stats)
    }

    /// Lets the tree run on (the image stays where it is).
    pub fn abort(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        // Injection took them out of their group stop: queue a SIGSTOP
        // while they are still held, so they stop again before any user
        // instruction once released.
        for &pid in &self.stopped {
            // SAFETY: kill(2) of a process we hold stopped.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        if let Some(cgroup) = &self.keep_frozen {
            crate::freezer::Freezer::at(cgroup)?.request_freeze()?;
        }
        std::mem::replace(&mut self.frozen, Frozen::empty()).release()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.frozen.procs.is_empty() {
            if let Err(e) = self.release() {
                tracing::error!("releasing the dumped processes: {e}");
            }
        }
    }
}

/// [`dump`] without its end: the tree stays held, see [`Held`]. The passes:
/// note job-control stops, freeze, read the tree's ids, dump every process,
/// link shared open file descriptions, write the records and the inventory.
pub fn dump_and_hold(pids: &[i32], dir: &Path, opts: &DumpOptions) -> Result<Held> {
    let mut sink = crate::stream::DirSink::create(dir)?;
    dump_and_hold_to(pids, &mut sink, opts)
}

/// [`dump_and_hold`] into any [`Sink`] (files in the order described there):
/// the pages go from the frozen process to the sink once.
pub fn dump_and_hold_to(pids: &[i32], sink: &mut dyn Sink, opts: &DumpOptions) -> Result<Held> {
    let t0 = Instant::now();
    let mut stats = DumpStats::default();
    // Not starved by the (possibly thousands of) runnable threads we stop.
    let _boost = crate::boost::Boost::new();
    // Job-control stops are seen before our own ptrace stops hide them.
    let stopped: HashSet<i32> = pids
        .iter()
        .copied()
        .filter(|&pid| task::job_stopped(pid).unwrap_or(false))
        .collect();
    let frozen = match &opts.freeze_cgroup {
        Some(cg) => Frozen::freeze_cgroup(pids, cg)?,
        None => Frozen::freeze(pids)?,
    };
    stats.freeze_us = us(t0);
    stats.processes = frozen.procs.len();
    stats.threads = frozen.thread_count();
    let t_frozen = Instant::now();

    let (tree, root) = read_tree(&frozen, pids)?;
    let zombies = {
        let parents: Vec<i32> = frozen.procs.iter().map(|p| p.pid).collect();
        crate::zombie::children_of(&parents)?
            .into_iter()
            .map(crate::zombie::dump)
            .collect::<Result<Vec<_>>>()?
    };
    stats.zombies = zombies.len();
    let vdso = memory::vdso_fingerprint(root, &proc::parse_maps(root)?)?;
    let external = if opts.external_stdio {
        let all: Vec<i32> = frozen.procs.iter().map(|p| p.pid).collect();
        files::external_stdio(root, &all)?
    } else {
        Default::default()
    };
    let t_mem = Instant::now();
    let mut dumped = Vec::with_capacity(tree.len());
    for (p, ids) in frozen.procs.iter().zip(tree) {
        let pages_name = format!("pages-{}.img", ids.pid);
        let mut pages = PagesWriter::create(sink, &pages_name, opts.zstd_level)?;
        let mut img = dump_process(
            p.pid,
            ids.pid,
            &p.tids,
            &ids.tids,
            external.get(&p.pid),
            &mut pages,
        )?;
        stats.pages_written += img.memory.pages_total;
        img.task.stopped = stopped.contains(&p.pid);
        dumped.push((p.pid, img, ids, pages.finish()?));
    }
    // Open file descriptions shared between fds and processes.
    {
        let mut refs: Vec<(i32, &mut FilesImage)> = dumped
            .iter_mut()
            .map(|(pid, img, _, _)| (*pid, &mut img.files))
            .collect();
        files::assign_ofds(&mut refs)?;
    }
    // memfd contents go into files of their own, beside the records.
    let mut extras = Vec::new();
    for (_, img, ids, _) in &mut dumped {
        for (name, bytes) in crate::memfd::take_blobs(ids.pid, &mut img.files) {
            extras.push(image::put_extra(sink, &name, &bytes)?);
        }
    }
    let mut entries = Vec::with_capacity(dumped.len());
    for (_, img, ids, pages) in &dumped {
        let record = image::put_json(sink, &format!("process-{}.json", ids.pid), img)?;
        entries.push(ProcessEntry {
            pid: ids.pid,
            ppid: ids.ppid,
            pgid: ids.pgid,
            sid: ids.sid,
            tids: ids.tids.clone(),
            record,
            pages: pages.clone(),
            pages_zstd: opts.zstd_level.is_some(),
        });
    }
    stats.memdump_us = us(t_mem);
    if opts.record_terminal {
        if let Some(group) = crate::terminal::capture(root)? {
            let bytes = crate::terminal::to_bytes(&group);
            extras.push(image::put_extra(
                sink,
                crate::terminal::TERMINAL_DUMP,
                &bytes,
            )?);
        }
    }
    write_inventory(sink, opts, vdso, entries, zombies, extras)?;
    stats.frozen_us = us(t_frozen);
    let connections = tcp_connections(dumped.iter().map(|(pid, img, _, _)| (*pid, img)));
    Ok(Held {
        frozen,
        stopped,
        connections,
        leave_running: opts.leave_running,
        keep_frozen: opts.freeze_cgroup.clone().filter(|_| opts.keep_frozen),
        stats,
        t0,
    })
}

/// A process's ids in the dumped pid namespace.
struct NsIds {
    pid: i32,
    /// 0 for the root.
    ppid: i32,
    pgid: i32,
    sid: i32,
    /// Leader first.
    tids: Vec<i32>,
}

/// The tree in the dumped pid namespace's numbers (in `frozen`'s order),
/// and the root's host pid.
fn read_tree(frozen: &Frozen, pids: &[i32]) -> Result<(Vec<NsIds>, i32)> {
    let mut parents = Vec::with_capacity(frozen.procs.len());
    for p in &frozen.procs {
        let st = Status::of_pid(p.pid)?;
        let host_ppid = st.ints("PPid")?.first().copied().unwrap_or(0) as i32;
        parents.push((p.pid, host_ppid));
    }
    let root = find_root(&parents, pids.first().copied().unwrap_or(0))?;
    let mut tree = Vec::with_capacity(frozen.procs.len());
    for (p, &(_, host_ppid)) in frozen.procs.iter().zip(&parents) {
        let st = Status::of_pid(p.pid)?;
        let ns_last = |k: &str| -> Result<i32> {
            st.ints(k)?
                .last()
                .map(|&v| v as i32)
                .ok_or_else(|| Error::parse(&st.path, k.to_string()))
        };
        let ppid = if p.pid == root {
            0
        } else {
            Status::of_pid(host_ppid)?.ns_pid()?
        };
        let mut tids = Vec::with_capacity(p.tids.len());
        for &t in &p.tids {
            tids.push(Status::read(format!("/proc/{}/task/{t}/status", p.pid))?.ns_pid()?);
        }
        tree.push(NsIds {
            pid: ns_last("NSpid")?,
            ppid,
            pgid: ns_last("NSpgid")?,
            sid: ns_last("NSsid")?,
            tids,
        });
    }
    Ok((tree, root))
}

/// The one process of `procs` (host pid, host ppid) whose parent is not in
/// the set; `first` names the set in the error.
fn find_root(procs: &[(i32, i32)], first: i32) -> Result<i32> {
    let mut roots = procs
        .iter()
        .filter(|&&(_, ppid)| !procs.iter().any(|&(pid, _)| pid == ppid));
    let root = roots.next().ok_or_else(|| Error::Unsupported {
        pid: first,
        what: "a process set without a root (cycle?)".into(),
    })?;
    if let Some(&(second, _)) = roots.next() {
        return Err(Error::Unsupported {
            pid: second,
            what: "a set of processes with more than one root".into(),
        });
    }
    Ok(root.0)
}

/// Writes the caller's extra files, then the inventory: the image is
/// complete once the inventory exists.
fn write_inventory(
    sink: &mut dyn Sink,
    opts: &DumpOptions,
    vdso: Option<crate::image::VdsoFingerprint>,
    processes: Vec<ProcessEntry>,
    zombies: Vec<crate::zombie::ZombieEntry>,
    extras: Vec<crate::image::FileRef>,
) -> Result<()> {
    let root_ns = processes
        .iter()
        .find(|e| e.ppid == 0)
        .map(|e| e.pid)
        .unwrap_or(0);
    let uts = nix::sys::utsname::uname().map_err(|e| Error::sys("uname", e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut inv = Inventory {
        format: FormatVersion::CURRENT,
        godwit_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: image::ARCH.to_string(),
        kernel_release: uts.release().to_string_lossy().into_owned(),
        page_size: crate::page_size(),
        vdso,
        dumped_at_unix_ns: now,
        clocks: clocks(),
        root_pid: root_ns,
        processes,
        zombies,
        extras,
    };
    for (name, bytes) in &opts.extra_files {
        inv.extras.push(image::put_extra(sink, name, bytes)?);
    }
    image::put_inventory(sink, &inv)
}

/// TCP connections (host pid, fd) of the dumped processes: not carried,
/// reset when the tree is killed.
fn tcp_connections<'a>(images: impl Iterator<Item = (i32, &'a ProcessImage)>) -> Vec<(i32, i32)> {
    images
        .flat_map(|(pid, img)| {
            img.files.fds.iter().filter_map(move |f| {
                matches!(
                    f.kind,
                    crate::files::FdKind::Socket(crate::sockets::SocketImage::TcpConnection { .. })
                )
                .then_some((pid, f.fd))
            })
        })
        .collect()
}

/// Dumps one frozen process. Injection runs on the vDSO's syscall instruction
/// until a scratch page is mapped; the page is unmapped before returning.
fn dump_process(
    pid: i32,
    ns_pid: i32,
    host_tids: &[i32],
    ns_tids: &[i32],
    external: Option<&std::collections::HashMap<i32, i32>>,
    pages: &mut PagesWriter,
) -> Result<ProcessImage> {
    let maps = proc::parse_maps(pid)?;
    // Files and task attributes first: an unsupported fd fails before any injection.
    let files = files::dump(pid, external)?;
    let task = task::dump(pid)?;
    let seccomp = crate::seccomp::dump(pid, host_tids)?;
    let vdso_insn = memory::vdso_syscall_insn(pid, &maps)?;
    let leader = host_tids[0];
    // Injection runs with us and the injected thread on one CPU (no
    // migration per stop); every pin is undone on drop.
    let mut me = crate::boost::Boost::new();
    let cpu = me.pin();
    let _leader_pin = crate::boost::PinnedTask::new(leader, cpu);
    let mut inj = Injector::new(leader, Gadget::Syscall(vdso_insn))?;
    let addr = inj.syscall(
        "mmap(scratch)",
        libc::SYS_mmap,
        &[
            0,
            SCRATCH_LEN,
            (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )?;
    let result = (|| {
        let scratch = Scratch {
            addr,
            size: GADGET_OFF,
            mem: Mem::open(pid)?,
        };
        scratch.mem.write(addr + GADGET_OFF, &GADGET_BYTES)?;
        inj.set_gadget(Gadget::SyscallTrap(addr + GADGET_OFF));
        let brk = inj.syscall("brk", libc::SYS_brk, &[0])?;
        let attrs = crate::attrs::dump_process(pid, &mut inj, &scratch)?;
        let signals = signals::dump(pid, leader, &mut inj, &scratch)?;
        let mut timers = timers::dump(&mut inj, &scratch)?;
        timers.posix = timers::dump_posix(pid, &mut inj, &scratch, |host| {
            host_tids
                .iter()
                .position(|&t| t == host)
                .map(|i| ns_tids[i])
        })?;
        let mut threads = Vec::with_capacity(host_tids.len());
        threads.push(threads::dump(pid, leader, ns_tids[0], &mut inj, &scratch)?);
        for (&tid, &ns_tid) in host_tids.iter().zip(ns_tids).skip(1) {
            let _pin = crate::boost::PinnedTask::new(tid, cpu);
            let mut t_inj = Injector::new(tid, Gadget::SyscallTrap(addr + GADGET_OFF))?;
            threads.push(threads::dump(pid, tid, ns_tid, &mut t_inj, &scratch)?);
            t_inj.finish()?;
        }
        Ok((brk, attrs, signals, timers, threads))
    })();
    // Always take the scratch page away again (the process may keep running).
    inj.set_gadget(Gadget::Syscall(vdso_insn));
    let unmap = inj.syscall("munmap(scratch)", libc::SYS_munmap, &[addr, SCRATCH_LEN]);
    inj.finish()?;
    let (brk, attrs, signals, timers, threads) = result?;
    unmap?;
    // Unpinned (the copy uses both CPUs), and the leader's affinity back;
    // still at the real-time priority (`me` lives on): measured on 1 GiB,
    // the copy took twice as long at the normal policy.
    drop(_leader_pin);
    crate::boost::unpin_current();
    // The pages are copied only now, with every thread back on its own
    // registers, signal mask and affinity and no scratch page mapped: the
    // copy is the long part of a dump, and a dumper killed during it (its
    // tracees are detached by the kernel and run on) must leave nothing of
    // the injection behind.
    let mm = memory::dump_mm(pid, brk)?;
    let memory = memory::dump(pid, &maps, mm, pages)?;
    let _ = ptrace::get_regs(leader)?;
    Ok(ProcessImage {
        format: FormatVersion::CURRENT,
        pid: ns_pid,
        memory,
        threads,
        signals,
        files,
        task,
        timers,
        seccomp,
        attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_process_whose_parent_is_outside() {
        // 10 ─ 11 ─ 12, 10's parent 1 is not dumped.
        assert_eq!(find_root(&[(11, 10), (10, 1), (12, 11)], 11).unwrap(), 10);
        assert_eq!(find_root(&[(5, 0)], 5).unwrap(), 5);
    }

    #[test]
    fn two_roots_or_none_are_refused() {
        let e = find_root(&[(10, 1), (20, 1)], 10).unwrap_err();
        assert!(e.to_string().contains("more than one root"), "{e}");
        let e = find_root(&[(10, 11), (11, 10)], 10).unwrap_err();
        assert!(e.to_string().contains("without a root"), "{e}");
    }
}
