//! `restore()`: rebuild an image inside a stopped stub process by injected
//! syscalls. The stub becomes the root of the restored tree (same ns pid).
//!
//! Order (privilege and dependencies): verify the whole image → seize the
//! stub → gadget page → drop the stub's rseq, fds and mappings → VMAs, vDSO,
//! pages, mm fields → files → cwd/umask/personality → signals → threads
//! (clone3 with set_tid) and their per-thread state → rlimits → creds →
//! registers → unmap the gadget from its own last syscall → detach all.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dump::{ProcessImage, GADGET_OFF, SCRATCH_LEN};
use crate::error::{Error, Result};
use crate::image::{ImageReader, Pages};
use crate::memory::{self, MemoryImage};
use crate::proc::{self, Status};
use crate::ptrace::{self, Gadget, Injector, Mem, Stop, GADGET_BYTES};
use crate::sys::Scratch;
use crate::task::Rlimit;
use crate::{files, signals, task, threads, timers};

/// Highest user address + 1 with 4-level paging.
const TASK_END: u64 = 0x7fff_ffff_f000;
/// How long clone3(set_tid) may keep failing with EEXIST (a killed pid not yet reaped).
const PID_FREE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreStats {
    pub processes: usize,
    pub threads: usize,
    pub pages_restored: u64,
    /// rlimits whose hard limit could not be restored (no CAP_SYS_RESOURCE).
    pub clamped_rlimits: Vec<Rlimit>,
    pub verify_us: u64,
    pub memory_us: u64,
    pub total_us: u64,
}

struct Loaded {
    img: ProcessImage,
    pages: Pages,
    pages_name: String,
}

/// Restores the image in `dir` into `stub_pid` (host pid of a stopped,
/// single-threaded process whose pid in its namespace equals the image's
/// root pid, e.g. from [`crate::stub::Stub::spawn`]). On success the restored
/// processes run; on failure the stub is killed.
pub fn restore(dir: &Path, stub_pid: i32, _opts: &RestoreOptions) -> Result<RestoreStats> {
    let t0 = Instant::now();
    let reader = ImageReader::open(dir)?;
    let inv = &reader.inventory;
    if inv.processes.len() != 1 {
        return Err(Error::Unsupported {
            pid: inv.root_pid,
            what: format!(
                "restoring a tree of {} processes (one for now)",
                inv.processes.len()
            ),
        });
    }
    // Everything is read and checksummed before the stub is touched.
    let mut loaded = Vec::new();
    for e in &inv.processes {
        let img: ProcessImage = reader.read_json(&e.record)?;
        let pages = reader.pages(&e.pages, e.pages_zstd)?;
        loaded.push(Loaded {
            img,
            pages,
            pages_name: e.pages.name.clone(),
        });
    }
    let verify_us = t0.elapsed().as_micros() as u64;
    let stub_ns_pid = Status::of_pid(stub_pid)?.ns_pid()?;
    if stub_ns_pid != inv.root_pid {
        return Err(Error::restore(
            inv.root_pid,
            format!(
                "stub {stub_pid} has pid {stub_ns_pid} in its namespace, the image's root is {}",
                inv.root_pid
            ),
        ));
    }
    let mut attached = Attached(Vec::new());
    let result = restore_root(stub_pid, &loaded[0], inv.vdso.as_ref(), &mut attached);
    match result {
        Ok(mut stats) => {
            stats.verify_us = verify_us;
            stats.total_us = t0.elapsed().as_micros() as u64;
            tracing::info!(pid = stub_pid, total_us = stats.total_us, "restored");
            Ok(stats)
        }
        Err(e) => {
            // A half-restored process must not run: kill the stub, and reap
            // the threads we trace so that it can finish dying.
            // SAFETY: kill(2) of the caller's stub.
            unsafe { libc::kill(stub_pid, libc::SIGKILL) };
            crate::freeze::reap_killed(&std::mem::take(&mut attached.0));
            Err(e)
        }
    }
}

/// Tracee threads of the restore; all detached on drop (after a kill on error).
struct Attached(Vec<i32>);

impl Drop for Attached {
    fn drop(&mut self) {
        for &t in &self.0 {
            let _ = ptrace::detach(t, 0);
        }
    }
}

fn restore_root(
    stub: i32,
    l: &Loaded,
    vdso: Option<&crate::image::VdsoFingerprint>,
    attached: &mut Attached,
) -> Result<RestoreStats> {
    let img = &l.img;
    let mut stats = RestoreStats {
        processes: 1,
        threads: img.threads.len(),
        pages_restored: img.memory.pages_total,
        ..Default::default()
    };
    if proc::tasks(stub)?.len() != 1 {
        return Err(Error::restore(
            img.pid,
            format!("stub {stub} is not single-threaded"),
        ));
    }
    let opts = ptrace::OPT_TRACESYSGOOD
        | ptrace::OPT_EXITKILL
        | ptrace::OPT_TRACECLONE
        | ptrace::OPT_TRACEFORK;
    ptrace::seize(stub, opts)?;
    attached.0.push(stub);
    // A stub stopped by SIGSTOP stays stopped after detach unless continued.
    // SAFETY: kill(2) of the stub.
    unsafe { libc::kill(stub, libc::SIGCONT) };
    ptrace::interrupt(stub)?;
    match ptrace::wait(stub)? {
        Stop::Exited(_) | Stop::Killed(_) => return Err(Error::restore(img.pid, "stub exited")),
        _ => {}
    }

    let stub_maps = proc::parse_maps(stub)?;
    let insn = memory::vdso_syscall_insn(stub, &stub_maps)?;
    let mut inj = Injector::new(stub, Gadget::Syscall(insn))?;
    let g = pick_gadget_addr(&stub_maps, &img.memory)?;
    inj.syscall(
        "mmap(gadget)",
        libc::SYS_mmap,
        &[
            g,
            SCRATCH_LEN,
            (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
            u64::MAX,
            0,
        ],
    )?;
    let mem = Mem::open(stub)?;
    mem.write(g + GADGET_OFF, &GADGET_BYTES)?;
    let scratch = Scratch {
        addr: g,
        size: GADGET_OFF,
        mem: Mem::open(stub)?,
    };
    let gadget = Gadget::SyscallTrap(g + GADGET_OFF);
    inj.set_gadget(gadget);

    // The kernel writes to a registered rseq area on every return to user:
    // drop the stub's before its memory goes.
    let rseq = ptrace::get_rseq(stub)?;
    if rseq.rseq_abi_pointer != 0 {
        inj.syscall(
            "rseq(unregister)",
            libc::SYS_rseq,
            &[
                rseq.rseq_abi_pointer,
                rseq.rseq_abi_size as u64,
                1,
                rseq.signature as u64,
            ],
        )?;
    }
    inj.syscall(
        "close_range",
        libc::SYS_close_range,
        &[0, u32::MAX as u64, 0],
    )?;
    inj.syscall("munmap(below)", libc::SYS_munmap, &[0, g])?;
    let above = g + SCRATCH_LEN;
    inj.syscall(
        "munmap(above)",
        libc::SYS_munmap,
        &[above, TASK_END - above],
    )?;

    let t_mem = Instant::now();
    memory::restore_vmas(&mut inj, &scratch, &img.memory)?;
    if let Some(place) = &img.memory.vdso {
        memory::restore_vdso(&mut inj, stub, place, vdso)?;
    }
    memory::restore_pages(&mem, &img.memory, l.pages.as_slice(), &l.pages_name)?;
    memory::restore_mm(&mut inj, &scratch, &img.memory.mm)?;
    stats.memory_us = t_mem.elapsed().as_micros() as u64;

    files::restore(&mut inj, &scratch, stub, &img.files)?;
    task::restore_inside(&mut inj, &scratch, stub, &img.task)?;
    signals::restore(&mut inj, &scratch, img.pid, &img.signals)?;
    timers::restore(&mut inj, &scratch, &img.timers)?;

    // Threads: the stub is the leader; the others are cloned with their tids.
    let leader = img
        .threads
        .first()
        .ok_or_else(|| Error::restore(img.pid, "no threads in image"))?;
    if leader.tid != img.pid {
        return Err(Error::restore(
            img.pid,
            format!("first thread {} is not the leader", leader.tid),
        ));
    }
    let mut host_tids = vec![stub];
    for t in &img.threads[1..] {
        let host = clone_thread(&mut inj, &scratch, img.pid, t.tid)?;
        attached.0.push(host);
        host_tids.push(host);
    }
    stats.clamped_rlimits = task::restore_rlimits(stub, &img.task)?;
    threads::restore_in_thread(&mut inj, &scratch, img.pid, leader)?;
    task::restore_creds(&mut inj, &scratch, img.pid, &img.task.creds)?;
    for (t, &host) in img.threads.iter().zip(&host_tids).skip(1) {
        let mut t_inj = Injector::new(host, gadget)?;
        threads::restore_in_thread(&mut t_inj, &scratch, img.pid, t)?;
        task::restore_creds(&mut t_inj, &scratch, img.pid, &img.task.creds)?;
        t_inj.forget();
        threads::set_final_state(host, t)?;
    }

    // The gadget page unmaps itself: run munmap from it with syscall stops,
    // and at the exit stop give the leader its own registers.
    inj.set_gadget(Gadget::Syscall(g + GADGET_OFF));
    inj.syscall("munmap(gadget)", libc::SYS_munmap, &[g, SCRATCH_LEN])?;
    inj.forget();
    threads::set_final_state(stub, leader)?;
    // Detach every thread: they run from here.
    for t in std::mem::take(&mut attached.0) {
        ptrace::detach(t, 0)?;
    }
    Ok(stats)
}

/// A page for the gadget/scratch that neither the stub nor the image uses
/// (nor a stack's guard gap below it).
fn pick_gadget_addr(stub_maps: &[proc::MapsEntry], img: &MemoryImage) -> Result<u64> {
    let gap = 1 << 20;
    let busy = |a: u64| {
        let end = a + SCRATCH_LEN;
        stub_maps.iter().any(|m| a < m.end && m.start < end)
            || img.vmas.iter().any(|v| {
                let lo = if v.growsdown {
                    v.start.saturating_sub(gap)
                } else {
                    v.start
                };
                a < v.end && lo < end
            })
            || img
                .vdso
                .as_ref()
                .is_some_and(|p| a < p.vdso_end && p.vvar_start < end)
    };
    let mut a = 0x10000u64;
    while a < 0x1_0000_0000 {
        if !busy(a) {
            return Ok(a);
        }
        a += 0x10000;
    }
    Err(Error::restore(
        0,
        "no free address below 4 GiB for the restore gadget",
    ))
}

/// clone3 with CLONE_THREAD and set_tid = `tid`, injected in the leader.
/// Returns the new thread's host tid, stopped (auto-attached).
fn clone_thread(inj: &mut Injector, scratch: &Scratch, pid: i32, tid: i32) -> Result<i32> {
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let set_tid = scratch.put(384, &tid.to_ne_bytes())?;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
    // stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    let args: [u64; 11] = [flags, 0, 0, 0, 0, 0, 0, 0, set_tid, 1, 0];
    let bytes: Vec<u8> = args.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let a = scratch.put(256, &bytes)?;
    let deadline = Instant::now() + PID_FREE_WAIT;
    inj.last_new_tid = None;
    loop {
        let r = inj.raw_syscall(libc::SYS_clone3, &[a, bytes.len() as u64])?;
        if r == -(libc::EEXIST as i64) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if r < 0 {
            return Err(Error::Syscall {
                tid: inj.tid(),
                name: "clone3(thread)",
                errno: nix::errno::Errno::from_raw(-r as i32),
            });
        }
        if r != tid as i64 {
            return Err(Error::restore(
                pid,
                format!("clone3 made thread {r}, wanted {tid}"),
            ));
        }
        break;
    }
    let host = inj
        .last_new_tid
        .ok_or_else(|| Error::restore(pid, format!("no clone event for thread {tid}")))?;
    // The new thread starts in a ptrace stop (auto-attached).
    loop {
        match ptrace::wait(host)? {
            s if s.is_event_stop() => break,
            Stop::Exited(_) | Stop::Killed(_) => {
                return Err(Error::restore(pid, format!("new thread {tid} died")))
            }
            _ => ptrace::cont(host, 0)?,
        }
    }
    Ok(host)
}
