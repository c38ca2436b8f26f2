//! `restore()`: rebuild an image inside a stopped stub process by injected
//! syscalls. The stub becomes the root of the restored tree (same ns pid);
//! every other process is forked by its parent with clone3(set_tid).
//!
//! Order (privilege and dependencies): verify the whole image → seize the
//! stub → gadget page → drop the stub's rseq, fds and mappings → fork the
//! tree (sessions on the way) → per process: VMAs, vDSO, pages, mm fields →
//! files (shared ones shared again) → cwd/umask/personality, signals, timers
//! → process groups → threads (clone3 with set_tid) and per-thread state →
//! rlimits → creds → registers → unmap the gadget from its own last
//! syscall → detach all.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dump::{ProcessImage, GADGET_OFF, SCRATCH_LEN};
use crate::error::{Error, Result};
use crate::files::FileTable;
use crate::image::{ImageReader, Pages, ProcessEntry, VdsoFingerprint};
use crate::memory::{self, MemoryImage};
use crate::proc::{self, Status};
use crate::ptrace::{self, Gadget, Injector, Mem, Stop, GADGET_BYTES};
use crate::sys::Scratch;
use crate::task::Rlimit;
use crate::{signals, task, threads, timers};

use crate::limits::TASK_END;
/// How long clone3(set_tid) may keep failing with EEXIST (a killed pid not yet reaped).
const PID_FREE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The stub's own fds 0-2 (the restorer's stdio) replace the image's
    /// external stdio (see `DumpOptions::external_stdio`).
    pub inherit_stdio: bool,
}

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

struct Loaded<'a> {
    entry: &'a ProcessEntry,
    img: ProcessImage,
    pages: Pages,
}

/// A process being rebuilt.
struct Live {
    host_pid: i32,
    inj: Injector,
    scratch: Scratch,
}

/// Restores the image in `dir` into `stub_pid` (host pid of a stopped,
/// single-threaded process whose pid in its namespace equals the image's
/// root pid, e.g. from [`crate::stub::Stub::spawn`]). On success the restored
/// processes run; on failure the stub is killed (and with it its namespace).
pub fn restore(dir: &Path, stub_pid: i32, opts: &RestoreOptions) -> Result<RestoreStats> {
    let t0 = Instant::now();
    let reader = ImageReader::open(dir)?;
    let inv = &reader.inventory;
    // Everything is read, bounded and checksummed before the stub is touched.
    let order = reader.tree_order()?;
    let mut loaded = Vec::new();
    for e in &inv.processes {
        let img: ProcessImage = reader.read_json(&e.record)?;
        crate::limits::check_process(
            &dir.join(&e.record.name),
            e.pid,
            &e.tids,
            &img,
            e.pages.len,
            inv.page_size,
        )?;
        let pages = reader.pages(&e.pages, e.pages_zstd)?;
        loaded.push(Loaded {
            entry: e,
            img,
            pages,
        });
    }
    let verify_us = t0.elapsed().as_micros() as u64;
    check_paths(stub_pid, &loaded)?;
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
    let mut boost = crate::boost::Boost::new();
    let cpu = boost.pin();
    let result = restore_tree(
        cpu,
        stub_pid,
        &loaded,
        &order,
        inv.vdso.as_ref(),
        opts.inherit_stdio,
        &mut attached,
    );
    // Unmapping a large page-file mapping takes a while (page tables): do it
    // off the caller's path, the restored processes already run.
    let pages: Vec<Pages> = loaded.into_iter().map(|l| l.pages).collect();
    std::thread::spawn(move || drop(pages));
    match result {
        Ok(mut stats) => {
            stats.verify_us = verify_us;
            stats.total_us = t0.elapsed().as_micros() as u64;
            tracing::info!(pid = stub_pid, total_us = stats.total_us, "restored");
            Ok(stats)
        }
        Err(e) => {
            // A half-restored tree must not run: kill the stub (pid 1: the
            // whole namespace goes) and reap the threads we trace.
            // SAFETY: kill(2) of the caller's stub.
            unsafe { libc::kill(stub_pid, libc::SIGKILL) };
            let all = std::mem::take(&mut attached.0);
            for &t in &all {
                // SAFETY: kill(2) of a tracee we created.
                unsafe { libc::kill(t, libc::SIGKILL) };
            }
            crate::freeze::reap_killed(&all);
            Err(e)
        }
    }
}

/// Every path the image names, looked up where restore will open it —
/// inside the stub's root, no magic links — before the stub is touched:
/// mapped files (regular, same size and content), each executable (a regular
/// file), working directory (a directory) and files opened by path (they
/// exist; those under /proc, /dev and /sys only at their reopening, in the
/// restored namespaces).
fn check_paths(stub_pid: i32, loaded: &[Loaded]) -> Result<()> {
    use nix::fcntl::OFlag;
    let root_path = format!("/proc/{stub_pid}/root");
    let root = std::fs::File::open(&root_path).map_err(|e| Error::io(&root_path, e))?;
    for l in loaded {
        let pid = l.entry.pid;
        memory::check_files(&root, pid, &l.img.memory)?;
        let refuse = |what: &str, path: &str, why: String| {
            Error::restore(pid, format!("{what} {path:?} in the image: {why}"))
        };
        let lookup = |what: &str, path: &str, flags: OFlag| {
            crate::sys::check_image_path(path).map_err(|w| refuse(what, path, w.to_string()))?;
            crate::sys::open_below(&root, path, flags)
                .map_err(|e| refuse(what, path, crate::sys::why_not_below(e)))
        };
        let exe = &l.img.memory.mm.exe;
        let f = lookup("executable", exe, OFlag::O_PATH)?;
        let meta = f.metadata().map_err(|e| Error::io(exe, e))?;
        if !meta.file_type().is_file() {
            return Err(refuse(
                "executable",
                exe,
                format!("{}, not a regular file", memory::file_kind(&meta)),
            ));
        }
        lookup(
            "working directory",
            &l.img.task.cwd,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )?;
        for f in &l.img.files.fds {
            if let crate::files::FdKind::Path { path, .. } = &f.kind {
                let late = ["/proc/", "/dev/", "/sys/"]
                    .iter()
                    .any(|p| path.starts_with(p));
                if !late {
                    lookup(&format!("open file (fd {})", f.fd), path, OFlag::O_PATH)?;
                }
            }
        }
    }
    Ok(())
}

/// Verifies a whole image as [`restore`] does before it touches anything —
/// inventory, bounds, every record, every page file's digest (unless
/// `pages` is false: the caller verified them otherwise) and every extra
/// file — without restoring it.
pub fn verify_image(dir: &Path, pages: bool) -> Result<()> {
    let reader = ImageReader::open(dir)?;
    let inv = &reader.inventory;
    for e in &inv.processes {
        let img: ProcessImage = reader.read_json(&e.record)?;
        crate::limits::check_process(
            &dir.join(&e.record.name),
            e.pid,
            &e.tids,
            &img,
            e.pages.len,
            inv.page_size,
        )?;
        if pages {
            drop(reader.pages(&e.pages, e.pages_zstd)?);
        }
    }
    Ok(())
}

/// Tracee threads of the restore; all detached on drop.
struct Attached(Vec<i32>);

impl Drop for Attached {
    fn drop(&mut self) {
        for &t in &self.0 {
            let _ = ptrace::detach(t, 0);
        }
    }
}

fn restore_tree(
    cpu: Option<usize>,
    stub: i32,
    loaded: &[Loaded],
    order: &[usize],
    vdso: Option<&VdsoFingerprint>,
    inherit_stdio: bool,
    attached: &mut Attached,
) -> Result<RestoreStats> {
    let root = &loaded[order[0]];
    let mut stats = RestoreStats {
        processes: loaded.len(),
        threads: loaded.iter().map(|l| l.img.threads.len()).sum(),
        pages_restored: loaded.iter().map(|l| l.img.memory.pages_total).sum(),
        ..Default::default()
    };
    if proc::tasks(stub)?.len() != 1 {
        return Err(Error::restore(
            root.entry.pid,
            format!("stub {stub} is not single-threaded"),
        ));
    }
    // SUSPEND_SECCOMP: filters restored at the end must not filter our
    // injections (inherited by every task the stub forks or clones).
    let opts = ptrace::OPT_TRACESYSGOOD
        | ptrace::OPT_EXITKILL
        | ptrace::OPT_TRACECLONE
        | ptrace::OPT_TRACEFORK
        | ptrace::OPT_SUSPEND_SECCOMP;
    ptrace::seize(stub, opts)?;
    attached.0.push(stub);
    // Pin the stub (and so every task it forks or clones) to our CPU while
    // injecting; everything gets the stub's affinity back at the end.
    let stub_affinity = crate::boost::get_affinity(stub);
    if let Some(c) = cpu {
        crate::boost::set_affinity(stub, &crate::boost::one_cpu(c));
    }
    // A stub stopped by SIGSTOP stays stopped after detach unless continued.
    // SAFETY: kill(2) of the stub.
    unsafe { libc::kill(stub, libc::SIGCONT) };
    ptrace::interrupt(stub)?;
    if let Stop::Exited(_) | Stop::Killed(_) = ptrace::wait(stub)? {
        return Err(Error::restore(root.entry.pid, "stub exited"));
    }

    // Gadget + scratch page at an address free in the stub and in every image.
    let stub_maps = proc::parse_maps(stub)?;
    let insn = memory::vdso_syscall_insn(stub, &stub_maps)?;
    let mut inj = Injector::new(stub, Gadget::Syscall(insn))?;
    let images: Vec<&MemoryImage> = loaded.iter().map(|l| &l.img.memory).collect();
    let g = pick_gadget_addr(&stub_maps, &images)?;
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
    Mem::open(stub)?.write(g + GADGET_OFF, &GADGET_BYTES)?;
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
    // The stub's stdio, when it is to be the restored tree's, is kept above
    // every fd number of the image until the files are restored.
    let highest_fd = loaded
        .iter()
        .flat_map(|l| l.img.files.fds.iter().map(|f| f.fd))
        .max()
        .unwrap_or(2)
        .max(2);
    // Objects shared by several fds (pipes, socket pairs, shared memory)
    // wait on spare fds above the image's fds and the held stdio, low enough
    // for the stub's RLIMIT_NOFILE (a container's is often 1024).
    let spare_min = highest_fd as u64 + 4;
    let held_stdio = if inherit_stdio {
        let base = highest_fd + 1;
        for n in 0..3u64 {
            // dup3 replaces whatever the stub had there: all its other fds go.
            let got = inj.syscall("dup3(stdio)", libc::SYS_dup3, &[n, base as u64 + n, 0])?;
            if got != base as u64 + n {
                return Err(Error::restore(
                    root.entry.pid,
                    format!("could not keep stub stdio {n} at fd {}", base as u64 + n),
                ));
            }
        }
        inj.syscall(
            "close_range",
            libc::SYS_close_range,
            &[0, base as u64 - 1, 0],
        )?;
        inj.syscall(
            "close_range",
            libc::SYS_close_range,
            &[base as u64 + 3, u32::MAX as u64, 0],
        )?;
        Some(base)
    } else {
        inj.syscall(
            "close_range",
            libc::SYS_close_range,
            &[0, u32::MAX as u64, 0],
        )?;
        None
    };
    inj.syscall("munmap(below)", libc::SYS_munmap, &[0, g])?;
    let above = g + SCRATCH_LEN;
    inj.syscall(
        "munmap(above)",
        libc::SYS_munmap,
        &[above, TASK_END - above],
    )?;

    // Fork the tree from this bare state: children inherit only the gadget.
    let mut live: HashMap<i32, Live> = HashMap::new();
    let scratch = Scratch {
        addr: g,
        size: GADGET_OFF,
        mem: Mem::open(stub)?,
    };
    live.insert(
        root.entry.pid,
        Live {
            host_pid: stub,
            inj,
            scratch,
        },
    );
    for &i in order {
        let l = &loaded[i];
        let me = live
            .get_mut(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        // Before forking children, which inherit the session. A stub that
        // already leads its session (a container's init did setsid) keeps it:
        // setsid would fail with EPERM.
        if l.entry.sid == l.entry.pid
            && me.inj.syscall("getsid", libc::SYS_getsid, &[0])? != l.entry.pid as u64
        {
            me.inj.syscall("setsid", libc::SYS_setsid, &[])?;
        }
        let kids: Vec<&Loaded> = order
            .iter()
            .map(|&k| &loaded[k])
            .filter(|k| k.entry.ppid == l.entry.pid)
            .collect();
        let mut born = Vec::new();
        for k in kids {
            let host = clone_with_tid(
                &mut me.inj,
                &me.scratch,
                l.entry.pid,
                k.entry.pid,
                false,
                k.img.task.exit_signal,
            )?;
            attached.0.push(host);
            born.push((k.entry.pid, host));
        }
        for (pid, host) in born {
            let inj = Injector::new(host, gadget)?;
            let scratch = Scratch {
                addr: g,
                size: GADGET_OFF,
                mem: Mem::open(host)?,
            };
            live.insert(
                pid,
                Live {
                    host_pid: host,
                    inj,
                    scratch,
                },
            );
        }
    }

    // Memory of every process.
    let t_mem = Instant::now();
    let mut shm = memory::ShmTable::new(spare_min);
    for &i in order {
        let l = &loaded[i];
        let me = live
            .get_mut(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        memory::restore_vmas(
            &mut me.inj,
            &me.scratch,
            l.entry.pid,
            &l.img.memory,
            &mut shm,
        )?;
        if let Some(place) = &l.img.memory.vdso {
            memory::restore_vdso(&mut me.inj, me.host_pid, place, vdso)?;
        }
        // Advice before the pages: THP regions then fault in huge pages.
        memory::restore_advice(&mut me.inj, &l.img.memory)?;
        memory::restore_pages(
            me.host_pid,
            &me.scratch.mem,
            &l.img.memory,
            l.pages.as_slice(),
            &l.entry.pages.name,
        )?;
        memory::restore_mm(&mut me.inj, &me.scratch, l.entry.pid, &l.img.memory.mm)?;
    }
    stats.memory_us = t_mem.elapsed().as_micros() as u64;

    // Files: a table across the tree so shared descriptions stay shared.
    let pipe_images = loaded
        .iter()
        .flat_map(|l| l.img.files.pipes.iter())
        .collect();
    let mut table = FileTable::new(pipe_images, spare_min);
    table.stdio = held_stdio;
    for &i in order {
        let l = &loaded[i];
        let me = live
            .get_mut(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        table.restore(
            &mut me.inj,
            &me.scratch,
            l.entry.pid,
            me.host_pid,
            &l.img.files,
            &shm,
        )?;
    }
    let mut spares = table.pipes.spares();
    // Every process was forked with the held stdio: close it everywhere.
    if let Some(base) = held_stdio {
        for (&pid, _) in live.iter() {
            for n in 0..3 {
                spares.push((pid, base as u64 + n));
            }
        }
    }
    spares.extend(table.pairs.finish()?);
    spares.extend(shm.spares());
    for (pid, fd) in spares {
        if let Some(me) = live.get_mut(&pid) {
            me.inj.syscall("close", libc::SYS_close, &[fd])?;
        }
    }

    for &i in order {
        let l = &loaded[i];
        let me = live
            .get_mut(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        task::restore_inside(
            &mut me.inj,
            &me.scratch,
            l.entry.pid,
            me.host_pid,
            &l.img.task,
        )?;
        signals::restore(&mut me.inj, &me.scratch, l.entry.pid, &l.img.signals)?;
        timers::restore(&mut me.inj, &me.scratch, &l.img.timers)?;
    }
    // Process groups: leaders first, then members (all in their sessions now).
    for leaders_pass in [true, false] {
        for &i in order {
            let e = loaded[i].entry;
            if e.pgid == 0 || (e.pgid == e.pid) != leaders_pass || e.sid == e.pid {
                continue;
            }
            let me = live
                .get_mut(&e.pid)
                .ok_or_else(|| Error::restore(e.pid, "not created"))?;
            me.inj
                .syscall("setpgid", libc::SYS_setpgid, &[0, e.pgid as u64])?;
        }
    }

    // Threads and per-thread state, rlimits, creds; final registers.
    for &i in order {
        let l = &loaded[i];
        let img = &l.img;
        let me = live
            .get_mut(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        let leader = img
            .threads
            .first()
            .filter(|t| t.tid == img.pid)
            .ok_or_else(|| Error::restore(img.pid, "first thread is not the leader"))?;
        let mut host_tids = Vec::with_capacity(img.threads.len());
        for t in &img.threads[1..] {
            let host = clone_with_tid(&mut me.inj, &me.scratch, img.pid, t.tid, true, 0)?;
            attached.0.push(host);
            host_tids.push(host);
        }
        // Seccomp now that every thread exists (TSYNC), suspended for our
        // injections until detach; before creds, which may drop the
        // privilege it needs.
        if !l.img.seccomp.filters.is_empty() {
            crate::seccomp::restore(&mut me.inj, &me.scratch, l.entry.pid, &l.img.seccomp)?;
        }
        stats
            .clamped_rlimits
            .extend(task::restore_rlimits(me.host_pid, &img.task)?);
        timers::restore_posix(&mut me.inj, &me.scratch, &img.timers.posix)?;
        threads::restore_in_thread(&mut me.inj, &me.scratch, img.pid, leader)?;
        // Threads start with the stub's credentials: nothing to do when the
        // image's are the same (saves ~5 injections per thread).
        let same_creds = task::creds_of(&Status::of_pid(me.host_pid)?)? == img.task.creds;
        if !same_creds {
            task::restore_creds(&mut me.inj, &me.scratch, &img.task.creds)?;
        }
        for (t, &host) in img.threads[1..].iter().zip(&host_tids) {
            let mut t_inj = Injector::new(host, gadget)?;
            threads::restore_in_thread(&mut t_inj, &me.scratch, img.pid, t)?;
            if !same_creds {
                task::restore_creds(&mut t_inj, &me.scratch, &img.task.creds)?;
            }
            t_inj.forget();
            threads::set_final_state(host, t)?;
        }
    }
    let hosts: HashMap<i32, i32> = live.iter().map(|(&ns, l)| (ns, l.host_pid)).collect();
    // The gadget page unmaps itself: munmap runs from it with syscall stops,
    // and at the exit stop each leader gets its own registers.
    for &i in order {
        let l = &loaded[i];
        let mut me = live
            .remove(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        me.inj.set_gadget(Gadget::Syscall(g + GADGET_OFF));
        me.inj
            .syscall("munmap(gadget)", libc::SYS_munmap, &[g, SCRATCH_LEN])?;
        me.inj.forget();
        threads::set_final_state(me.host_pid, &l.img.threads[0])?;
    }
    // Job-control stopped at dump: a SIGSTOP queued while still held stops
    // them before their first instruction.
    for &i in order {
        if loaded[i].img.task.stopped {
            if let Some(host) = hosts.get(&loaded[i].entry.pid) {
                // SAFETY: kill(2) of a process we restored.
                unsafe { libc::kill(*host, libc::SIGSTOP) };
            }
        }
    }
    // Detach every thread: they run from here.
    for t in std::mem::take(&mut attached.0) {
        if let Some(a) = &stub_affinity {
            crate::boost::set_affinity(t, a);
        }
        ptrace::detach(t, 0)?;
    }
    Ok(stats)
}

/// A page for the gadget/scratch that neither the stub nor any image uses
/// (nor a stack's guard gap below it).
fn pick_gadget_addr(stub_maps: &[proc::MapsEntry], images: &[&MemoryImage]) -> Result<u64> {
    let gap = 1 << 20;
    let busy = |a: u64| {
        let end = a + SCRATCH_LEN;
        stub_maps.iter().any(|m| a < m.end && m.start < end)
            || images.iter().any(|img| {
                img.vmas.iter().any(|v| {
                    let lo = if v.growsdown {
                        v.start.saturating_sub(gap)
                    } else {
                        v.start
                    };
                    a < v.end && lo < end
                }) || img
                    .vdso
                    .as_ref()
                    .is_some_and(|p| a < p.vdso_end && p.vvar_start < end)
            })
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

/// clone3 with set_tid = `tid`, injected: a thread of the injected process
/// (`thread`) or a child process (fork-like, `exit_signal`). Returns the new
/// task's host tid, stopped (auto-attached by TRACECLONE/TRACEFORK).
fn clone_with_tid(
    inj: &mut Injector,
    scratch: &Scratch,
    pid: i32,
    tid: i32,
    thread: bool,
    exit_signal: i32,
) -> Result<i32> {
    let flags = if thread {
        (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM) as u64
    } else {
        0
    };
    let set_tid = scratch.put(384, &tid.to_ne_bytes())?;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
    // stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    let args: [u64; 11] = [flags, 0, 0, 0, exit_signal as u64, 0, 0, 0, set_tid, 1, 0];
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
                name: if thread {
                    "clone3(thread)"
                } else {
                    "clone3(process)"
                },
                errno: nix::errno::Errno::from_raw(-r as i32),
            });
        }
        if r != tid as i64 {
            return Err(Error::restore(
                pid,
                format!("clone3 made {r}, wanted {tid}"),
            ));
        }
        break;
    }
    let host = inj
        .last_new_tid
        .ok_or_else(|| Error::restore(pid, format!("no clone event for {tid}")))?;
    // The new task starts in a ptrace stop (auto-attached).
    loop {
        match ptrace::wait(host)? {
            s if s.is_event_stop() => break,
            Stop::Exited(_) | Stop::Killed(_) => {
                return Err(Error::restore(pid, format!("new task {tid} died")))
            }
            _ => ptrace::cont(host, 0)?,
        }
    }
    Ok(host)
}
