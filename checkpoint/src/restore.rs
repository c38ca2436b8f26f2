//! `restore()`: rebuild an image inside a stopped stub process by injected
//! syscalls. The stub becomes the root of the restored tree (same ns pid);
//! every other process is forked by its parent with clone3(set_tid).
//!
//! Order (privilege and dependencies): verify the whole image → seize the
//! stub → gadget page → drop the stub's rseq, fds and mappings → fork the
//! tree (sessions on the way) → per process: VMAs, vDSO, pages, mm fields →
//! files (shared ones shared again) → cwd/umask/personality, signals, timers
//! → process groups → threads (clone3 with set_tid) and per-thread state →
//! rlimits → creds → zombies exit with their status → registers → unmap the
//! gadget from its own last syscall → detach all.

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
use crate::terminal::ForegroundGroup;
use crate::zombie::ZombieEntry;
use crate::{signals, task, threads, timers};

use crate::limits::TASK_END;
/// capability(7) number of CAP_SYS_NICE.
const CAP_SYS_NICE: u32 = 23;
/// How long clone3(set_tid) may keep failing with EEXIST (a killed pid not yet reaped).
const PID_FREE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The stub's own fds 0-2 (the restorer's stdio) replace the image's
    /// external stdio (see `DumpOptions::external_stdio`).
    pub inherit_stdio: bool,
    /// Once the tree runs, make the image's terminal foreground process
    /// group ([`crate::terminal`], if recorded) the foreground group of the
    /// root's terminal again; failing that is a warning in the stats.
    pub restore_terminal: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreStats {
    pub processes: usize,
    /// Unreaped children restored as such (not counted in `processes`).
    #[serde(default)]
    pub zombies: usize,
    pub threads: usize,
    pub pages_restored: u64,
    /// rlimits whose hard limit could not be restored (no CAP_SYS_RESOURCE).
    pub clamped_rlimits: Vec<Rlimit>,
    pub verify_us: u64,
    pub memory_us: u64,
    pub total_us: u64,
    /// What could not be restored without failing the restore (the tree
    /// runs): for the caller to show.
    #[serde(default)]
    pub warnings: Vec<String>,
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
        let mut img: ProcessImage = reader.read_json(&e.record)?;
        crate::memfd::load_blobs(&reader, e.pid, &mut img.files)?;
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
    let terminal = if opts.restore_terminal {
        crate::terminal::read(&reader)?
    } else {
        None
    };
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
    let images = Images {
        loaded: &loaded,
        zombies: &inv.zombies,
        order: &order,
    };
    let result = restore_tree(
        cpu,
        stub_pid,
        &images,
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
            if opts.restore_terminal {
                if let Some(w) = restore_foreground_group(terminal, stub_pid) {
                    stats.warnings.push(w);
                }
            }
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

/// The terminal record of the image restored into the running root `pid`;
/// a warning when that failed.
fn restore_foreground_group(group: Option<ForegroundGroup>, pid: i32) -> Option<String> {
    let group = group?;
    crate::terminal::restore(pid, &group).err().map(|e| {
        format!(
            "the terminal's foreground process group {} was not restored: {e}",
            group.foreground_pgrp
        )
    })
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
        let mut img: ProcessImage = reader.read_json(&e.record)?;
        crate::memfd::load_blobs(&reader, e.pid, &mut img.files)?;
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

/// Where the restore keeps fds while it works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FdLayout {
    /// The stub's stdio (when it is to be the restored tree's) moved to
    /// fds `base..base + 3`, above every fd number of the image, until the
    /// files are restored.
    held_stdio: Option<i32>,
    /// Objects shared by several fds (pipes, socket pairs, shared memory)
    /// wait on spare fds from here: above the image's fds and the held
    /// stdio, low enough for the stub's RLIMIT_NOFILE (a container's is
    /// often 1024).
    spare_min: u64,
}

fn fd_layout(highest_image_fd: Option<i32>, inherit_stdio: bool) -> FdLayout {
    let highest = highest_image_fd.unwrap_or(2).max(2);
    FdLayout {
        held_stdio: inherit_stdio.then_some(highest + 1),
        spare_min: highest as u64 + 4,
    }
}

/// Which processes call setpgid and to which group, in order: group
/// leaders first, then members (a member's group must exist). Session
/// leaders and processes without a recorded group are left alone.
/// `tree` holds (pid, pgid, sid) in tree order.
fn setpgid_calls(tree: &[(i32, i32, i32)]) -> Vec<(i32, i32)> {
    let mut calls = Vec::new();
    for leaders_pass in [true, false] {
        for &(pid, pgid, sid) in tree {
            if pgid == 0 || (pgid == pid) != leaders_pass || sid == pid {
                continue;
            }
            calls.push((pid, pgid));
        }
    }
    calls
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

/// What the image holds of the tree: the processes, their zombies, and the
/// processes' order (parents first).
#[derive(Clone, Copy)]
struct Images<'a> {
    loaded: &'a [Loaded<'a>],
    zombies: &'a [ZombieEntry],
    order: &'a [usize],
}

/// The tree being rebuilt: every process's injector, in tree order.
struct Tree<'a> {
    loaded: &'a [Loaded<'a>],
    /// Forked with the tree, ended last (their `live` entries go then).
    zombies: &'a [ZombieEntry],
    order: &'a [usize],
    live: HashMap<i32, Live>,
    /// The gadget/scratch page, at the same address in every process.
    page: u64,
    gadget: Gadget,
}

impl<'a> Tree<'a> {
    /// Runs `f` for every process, parents before children.
    fn each(&mut self, mut f: impl FnMut(&'a Loaded<'a>, &mut Live) -> Result<()>) -> Result<()> {
        for &i in self.order {
            let l = &self.loaded[i];
            let me = self
                .live
                .get_mut(&l.entry.pid)
                .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
            f(l, me)?;
        }
        Ok(())
    }

    fn scratch(&self, host: i32) -> Result<Scratch> {
        Ok(Scratch {
            addr: self.page,
            size: GADGET_OFF,
            mem: Mem::open(host)?,
        })
    }
}

/// The passes of a restore, in the order of docs/architecture.md.
fn restore_tree(
    cpu: Option<usize>,
    stub: i32,
    images: &Images,
    vdso: Option<&VdsoFingerprint>,
    inherit_stdio: bool,
    attached: &mut Attached,
) -> Result<RestoreStats> {
    let Images {
        loaded,
        zombies,
        order,
    } = *images;
    let root = &loaded[order[0]];
    let mut stats = RestoreStats {
        processes: loaded.len(),
        threads: loaded.iter().map(|l| l.img.threads.len()).sum(),
        pages_restored: loaded.iter().map(|l| l.img.memory.pages_total).sum(),
        ..Default::default()
    };
    let stub_affinity = seize_stub(cpu, stub, root.entry.pid, attached)?;
    let highest_fd = loaded
        .iter()
        .flat_map(|l| l.img.files.fds.iter().map(|f| f.fd))
        .max();
    let layout = fd_layout(highest_fd, inherit_stdio);
    let (inj, page) = strip_stub(stub, root.entry.pid, loaded, layout)?;
    let mut tree = Tree {
        loaded,
        zombies,
        order,
        live: HashMap::new(),
        page,
        gadget: Gadget::SyscallTrap(page + GADGET_OFF),
    };
    let scratch = tree.scratch(stub)?;
    tree.live.insert(
        root.entry.pid,
        Live {
            host_pid: stub,
            inj,
            scratch,
        },
    );
    fork_tree(&mut tree, attached)?;
    let t_mem = Instant::now();
    let shm = restore_memory(&mut tree, vdso, layout.spare_min)?;
    stats.memory_us = t_mem.elapsed().as_micros() as u64;
    restore_files(&mut tree, layout, shm)?;
    restore_task_state(&mut tree)?;
    restore_process_groups(&mut tree)?;
    let (clamped, warnings) = restore_threads_and_creds(&mut tree, attached)?;
    stats.clamped_rlimits = clamped;
    stats.warnings.extend(warnings);
    end_zombies(&mut tree, attached)?;
    stats.zombies = zombies.len();
    release_tree(tree, attached, stub_affinity)?;
    Ok(stats)
}

/// Seizes the single-threaded stub with the options every task it forks or
/// clones inherits, pinned to our CPU; returns the stub's own affinity,
/// which every restored task gets back at the end.
fn seize_stub(
    cpu: Option<usize>,
    stub: i32,
    root_pid: i32,
    attached: &mut Attached,
) -> Result<Option<libc::cpu_set_t>> {
    if proc::tasks(stub)?.len() != 1 {
        return Err(Error::restore(
            root_pid,
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
    // injecting.
    let stub_affinity = crate::boost::get_affinity(stub);
    if let Some(c) = cpu {
        crate::boost::set_affinity(stub, &crate::boost::one_cpu(c));
    }
    // A stub stopped by SIGSTOP stays stopped after detach unless continued.
    // SAFETY: kill(2) of the stub.
    unsafe { libc::kill(stub, libc::SIGCONT) };
    ptrace::interrupt(stub)?;
    if let Stop::Exited(_) | Stop::Killed(_) = ptrace::wait(stub)? {
        return Err(Error::restore(root_pid, "stub exited"));
    }
    Ok(stub_affinity)
}

/// Leaves the stub bare: a gadget + scratch page at an address free in the
/// stub and in every image, no rseq, no fds but the held stdio, no other
/// mapping. Returns its injector (running on the page's gadget) and the page.
fn strip_stub(
    stub: i32,
    root_pid: i32,
    loaded: &[Loaded],
    layout: FdLayout,
) -> Result<(Injector, u64)> {
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
    inj.set_gadget(Gadget::SyscallTrap(g + GADGET_OFF));
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
    if let Some(base) = layout.held_stdio {
        let base = base as u64;
        for n in 0..3u64 {
            // dup3 replaces whatever the stub had there: all its other fds go.
            let got = inj.syscall("dup3(stdio)", libc::SYS_dup3, &[n, base + n, 0])?;
            if got != base + n {
                return Err(Error::restore(
                    root_pid,
                    format!("could not keep stub stdio {n} at fd {}", base + n),
                ));
            }
        }
        inj.syscall("close_range", libc::SYS_close_range, &[0, base - 1, 0])?;
        inj.syscall(
            "close_range",
            libc::SYS_close_range,
            &[base + 3, u32::MAX as u64, 0],
        )?;
    } else {
        inj.syscall(
            "close_range",
            libc::SYS_close_range,
            &[0, u32::MAX as u64, 0],
        )?;
    }
    inj.syscall("munmap(below)", libc::SYS_munmap, &[0, g])?;
    let above = g + SCRATCH_LEN;
    inj.syscall(
        "munmap(above)",
        libc::SYS_munmap,
        &[above, TASK_END - above],
    )?;
    Ok((inj, g))
}

/// Forks the tree from the bare stub (children inherit only the gadget
/// page), each process with its old pid, sessions made on the way; a
/// process's zombies are forked with its live children.
fn fork_tree(tree: &mut Tree, attached: &mut Attached) -> Result<()> {
    let (loaded, order, zombies) = (tree.loaded, tree.order, tree.zombies);
    for &i in order {
        let l = &loaded[i];
        let me = tree
            .live
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
        let mut born = Vec::new();
        for k in order
            .iter()
            .map(|&k| &loaded[k])
            .filter(|k| k.entry.ppid == l.entry.pid)
        {
            let host = clone_with_tid(
                &mut me.inj,
                &me.scratch,
                l.entry.pid,
                k.entry.pid,
                false,
                k.img.task.exit_signal,
            )?;
            attached.0.push(host);
            born.push((k.entry.pid, host, false));
        }
        for z in zombies.iter().filter(|z| z.ppid == l.entry.pid) {
            let host = clone_with_tid(
                &mut me.inj,
                &me.scratch,
                l.entry.pid,
                z.pid,
                false,
                z.exit_signal,
            )?;
            attached.0.push(host);
            born.push((z.pid, host, z.sid == z.pid));
        }
        for (pid, host, own_session) in born {
            let mut inj = Injector::new(host, tree.gadget)?;
            if own_session {
                inj.syscall("setsid", libc::SYS_setsid, &[])?;
            }
            let scratch = tree.scratch(host)?;
            tree.live.insert(
                pid,
                Live {
                    host_pid: host,
                    inj,
                    scratch,
                },
            );
        }
    }
    Ok(())
}

/// VMAs, vDSO, advice, pages and mm fields of every process; returns the
/// shared-memory objects still open on spare fds.
fn restore_memory(
    tree: &mut Tree,
    vdso: Option<&VdsoFingerprint>,
    spare_min: u64,
) -> Result<memory::ShmTable> {
    let mut shm = memory::ShmTable::new(spare_min);
    tree.each(|l, me| {
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
        memory::restore_mm(&mut me.inj, &me.scratch, l.entry.pid, &l.img.memory.mm)
    })?;
    Ok(shm)
}

/// Files of every process, through one table across the tree so that
/// shared open file descriptions stay shared; then the spare fds (and the
/// held stdio) are closed everywhere.
fn restore_files(tree: &mut Tree, layout: FdLayout, shm: memory::ShmTable) -> Result<()> {
    let loaded = tree.loaded;
    let pipe_images = loaded
        .iter()
        .flat_map(|l| l.img.files.pipes.iter())
        .collect();
    let mut table = FileTable::new(pipe_images, layout.spare_min);
    table.stdio = layout.held_stdio;
    tree.each(|l, me| {
        table.restore(
            &mut me.inj,
            &me.scratch,
            l.entry.pid,
            me.host_pid,
            &l.img.files,
            &shm,
        )
    })?;
    let mut spares = table.pipes.spares();
    // Every process was forked with the held stdio: close it everywhere.
    if let Some(base) = layout.held_stdio {
        for &pid in tree.live.keys() {
            for n in 0..3 {
                spares.push((pid, base as u64 + n));
            }
        }
    }
    spares.extend(table.pairs.finish()?);
    spares.extend(shm.spares());
    for (pid, fd) in spares {
        if let Some(me) = tree.live.get_mut(&pid) {
            me.inj.syscall("close", libc::SYS_close, &[fd])?;
        }
    }
    Ok(())
}

/// cwd, umask, personality and the like; signal handlers and pending
/// signals; timers.
fn restore_task_state(tree: &mut Tree) -> Result<()> {
    tree.each(|l, me| {
        task::restore_inside(
            &mut me.inj,
            &me.scratch,
            l.entry.pid,
            me.host_pid,
            &l.img.task,
        )?;
        signals::restore(
            &mut me.inj,
            &me.scratch,
            l.entry.pid,
            me.host_pid,
            &l.img.signals,
        )?;
        timers::restore(&mut me.inj, &me.scratch, &l.img.timers)
    })
}

/// Process groups, once every process is in its session.
fn restore_process_groups(tree: &mut Tree) -> Result<()> {
    let ids: Vec<(i32, i32, i32)> = tree
        .order
        .iter()
        .map(|&i| {
            let e = tree.loaded[i].entry;
            (e.pid, e.pgid, e.sid)
        })
        .chain(tree.zombies.iter().map(|z| (z.pid, z.pgid, z.sid)))
        .collect();
    for (pid, pgid) in setpgid_calls(&ids) {
        let me = tree
            .live
            .get_mut(&pid)
            .ok_or_else(|| Error::restore(pid, "not created"))?;
        me.inj
            .syscall("setpgid", libc::SYS_setpgid, &[0, pgid as u64])?;
    }
    Ok(())
}

/// Threads (clone3 with set_tid) and per-thread state, seccomp, rlimits,
/// POSIX timers, prctl flags, creds, then what creds reset (dumpable,
/// parent-death signal) and scheduling. Returns the rlimits that had to be
/// clamped and what could not be applied.
fn restore_threads_and_creds(
    tree: &mut Tree,
    attached: &mut Attached,
) -> Result<(Vec<Rlimit>, Vec<String>)> {
    let gadget = tree.gadget;
    let mut clamped = Vec::new();
    let mut warnings = Vec::new();
    tree.each(|l, me| {
        let img = &l.img;
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
        if !img.seccomp.filters.is_empty() {
            crate::seccomp::restore(&mut me.inj, &me.scratch, l.entry.pid, &img.seccomp)?;
        }
        clamped.extend(task::restore_rlimits(me.host_pid, &img.task)?);
        timers::restore_posix(&mut me.inj, &me.scratch, &img.timers.posix)?;
        threads::restore_in_thread(&mut me.inj, &me.scratch, img.pid, leader)?;
        // Threads start with the stub's credentials: nothing to do when the
        // image's are the same (saves ~5 injections per thread).
        crate::attrs::restore_before_creds(&mut me.inj, &img.attrs)?;
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
        // After every thread's creds: a change of creds in any thread
        // resets the process's dumpable flag.
        crate::attrs::restore_after_creds(&mut me.inj, &img.attrs, l.entry.ppid == 0)?;
        // From outside, now that every thread exists.
        let sys_nice = img.task.creds.cap_eff & (1 << CAP_SYS_NICE) != 0;
        let hosts = std::iter::once(me.host_pid).chain(host_tids.iter().copied());
        for (t, host) in img.threads.iter().zip(hosts) {
            warnings.extend(crate::attrs::restore_outside(
                host, t.tid, &t.attrs, sys_nice,
            ));
        }
        warnings.extend(crate::attrs::restore_oom_score_adj(
            me.host_pid,
            img.pid,
            &img.attrs,
        ));
        Ok(())
    })?;
    Ok((clamped, warnings))
}

/// Every zombie exits (or dies) with its recorded status, its parent still
/// held: released, the parent's wait() finds it as it was at dump.
fn end_zombies(tree: &mut Tree, attached: &mut Attached) -> Result<()> {
    for z in tree.zombies {
        let me = tree
            .live
            .remove(&z.pid)
            .ok_or_else(|| Error::restore(z.pid, "zombie not created"))?;
        let host = me.host_pid;
        crate::zombie::finish(me.inj, &me.scratch, z)?;
        // Gone to its parent: nothing to detach (or kill on a failure).
        attached.0.retain(|&t| t != host);
    }
    Ok(())
}

/// The gadget page unmaps itself (munmap runs from it with syscall stops,
/// and at the exit stop each leader gets its own registers); processes
/// job-control stopped at dump get a SIGSTOP while still held; every
/// thread gets the stub's affinity back and is detached: they run.
fn release_tree(
    mut tree: Tree,
    attached: &mut Attached,
    stub_affinity: Option<libc::cpu_set_t>,
) -> Result<()> {
    let hosts: HashMap<i32, i32> = tree.live.iter().map(|(&ns, l)| (ns, l.host_pid)).collect();
    for &i in tree.order {
        let l = &tree.loaded[i];
        let mut me = tree
            .live
            .remove(&l.entry.pid)
            .ok_or_else(|| Error::restore(l.entry.pid, "not created"))?;
        me.inj.set_gadget(Gadget::Syscall(tree.page + GADGET_OFF));
        me.inj.syscall(
            "munmap(gadget)",
            libc::SYS_munmap,
            &[tree.page, SCRATCH_LEN],
        )?;
        me.inj.forget();
        threads::set_final_state(me.host_pid, &l.img.threads[0])?;
    }
    // Job-control stopped at dump: a SIGSTOP queued while still held stops
    // them before their first instruction.
    for &i in tree.order {
        if tree.loaded[i].img.task.stopped {
            if let Some(host) = hosts.get(&tree.loaded[i].entry.pid) {
                // SAFETY: kill(2) of a process we restored.
                unsafe { libc::kill(*host, libc::SIGSTOP) };
            }
        }
    }
    for t in std::mem::take(&mut attached.0) {
        if let Some(a) = &stub_affinity {
            crate::boost::set_affinity(t, a);
        }
        ptrace::detach(t, 0)?;
    }
    Ok(())
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

/// struct clone_args (flags, pidfd, child_tid, parent_tid, exit_signal,
/// stack, stack_size, tls, set_tid, set_tid_size, cgroup) for a thread of
/// the calling process or a fork-like child, with one pid to take, read
/// from `set_tid` in the tracee.
fn clone_args(thread: bool, exit_signal: i32, set_tid: u64) -> [u64; 11] {
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
    // A thread has no exit signal of its own.
    let exit_signal = if thread { 0 } else { exit_signal as u64 };
    [flags, 0, 0, 0, exit_signal, 0, 0, 0, set_tid, 1, 0]
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
    let set_tid = scratch.put(384, &tid.to_ne_bytes())?;
    let bytes: Vec<u8> = clone_args(thread, exit_signal, set_tid)
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::MapsEntry;

    #[test]
    fn fd_layout_keeps_stdio_and_spares_above_the_image() {
        assert_eq!(
            fd_layout(Some(10), true),
            FdLayout {
                held_stdio: Some(11),
                spare_min: 14
            }
        );
        assert_eq!(
            fd_layout(Some(10), false),
            FdLayout {
                held_stdio: None,
                spare_min: 14
            }
        );
        // No fds, or only stdio: above fd 2 all the same.
        assert_eq!(fd_layout(None, true).held_stdio, Some(3));
        assert_eq!(fd_layout(Some(0), true).spare_min, 6);
        // The held stdio never overlaps the spares.
        let l = fd_layout(Some(1000), true);
        assert!(l.held_stdio.unwrap() as u64 + 3 <= l.spare_min);
    }

    #[test]
    fn setpgid_leaders_before_members_sessions_skipped() {
        // (pid, pgid, sid): 1 leads its session; 5 leads group 5 with 6 in
        // it; 7 joins 5's group; 8 has no recorded group.
        let tree = [(1, 1, 1), (6, 5, 1), (5, 5, 1), (7, 5, 1), (8, 0, 1)];
        assert_eq!(setpgid_calls(&tree), [(5, 5), (6, 5), (7, 5)]);
    }

    #[test]
    fn clone_args_for_a_thread_and_a_process() {
        let t = clone_args(true, libc::SIGCHLD, 0x1000);
        assert_ne!(t[0] & libc::CLONE_THREAD as u64, 0);
        assert_eq!(t[4], 0, "threads have no exit signal");
        assert_eq!((t[8], t[9]), (0x1000, 1));
        let p = clone_args(false, libc::SIGCHLD, 0x2000);
        assert_eq!(p[0], 0);
        assert_eq!(p[4], libc::SIGCHLD as u64);
        assert_eq!((p[8], p[9]), (0x2000, 1));
    }

    fn maps(ranges: &[(u64, u64)]) -> Vec<MapsEntry> {
        ranges
            .iter()
            .map(|&(start, end)| MapsEntry {
                start,
                end,
                read: true,
                write: true,
                exec: false,
                shared: false,
                offset: 0,
                dev: "00:00".into(),
                inode: 0,
                path: String::new(),
            })
            .collect()
    }

    fn image(vmas: Vec<crate::memory::Vma>) -> MemoryImage {
        MemoryImage {
            vmas,
            mm: Default::default(),
            vdso: None,
            runs: Vec::new(),
            pages_total: 0,
        }
    }

    fn stack(start: u64, end: u64) -> crate::memory::Vma {
        crate::memory::Vma {
            start,
            end,
            prot: 3,
            shared: false,
            growsdown: true,
            name: "[stack]".into(),
            kind: crate::memory::VmaKind::Anon,
            shm_inode: None,
            shm_size: 0,
            madvise: Vec::new(),
        }
    }

    #[test]
    fn gadget_page_avoids_stub_and_image_mappings() {
        let stub = maps(&[(0x10000, 0x30000)]);
        let img = image(Vec::new());
        assert_eq!(pick_gadget_addr(&stub, &[&img]).unwrap(), 0x30000);
    }

    #[test]
    fn gadget_page_keeps_off_a_stack_guard_gap() {
        let img = image(vec![stack(0x200000, 0x210000)]);
        // Everything from 0x10000 up to the stack is within its 1 MiB gap
        // (0x100000..0x200000) or free below it.
        let a = pick_gadget_addr(&maps(&[(0x10000, 0x100000)]), &[&img]).unwrap();
        assert_eq!(a, 0x210000);
    }

    #[test]
    fn no_gadget_page_below_4_gib_is_an_error() {
        let stub = maps(&[(0, 0x1_0000_0000)]);
        assert!(pick_gadget_addr(&stub, &[]).is_err());
    }
}
