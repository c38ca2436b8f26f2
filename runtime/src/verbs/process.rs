//! `godwit process dump` / `godwit process restore`: the embedded dumper on
//! any process tree, not only a container's (CRIU's `dump -t PID` and
//! `restore`), in the current namespaces and with the original pids.
//!
//! Dump: PID and its descendants (`/proc/PID/task/*/children`, recursively)
//! go to `godwit_checkpoint::dump`. Restore: the image and the files it needs
//! are checked, then a stub is cloned with the root's pid (`clone3` with
//! `set_tid`), stopped, and rebuilt by `godwit_checkpoint::restore`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use godwit_checkpoint::image::ImageReader;
use godwit_checkpoint::records::FdKind;
use godwit_checkpoint::ProcessImage;
use nix::sys::signalfd::SigSet;
use serde::Serialize;

use crate::error::{Result, RuntimeError};
use crate::requests::{
    ProcessDumpRequest as ProcessDump, ProcessRequest as ProcessCommand,
    ProcessRestoreRequest as ProcessRestore,
};

/// How long a pid of the image may stay taken (a just-killed process that the
/// host's PID 1 has not reaped yet) before the restore gives up.
const PID_FREE_WAIT: Duration = Duration::from_secs(5);

pub fn process(cmd: &ProcessCommand) -> Result<i32> {
    match cmd {
        ProcessCommand::Dump(args) => {
            let report = dump(args)?;
            print_report(args.json, &report, &report.text());
            Ok(0)
        }
        ProcessCommand::Restore(args) => restore(args),
    }
}

/// An error of the dumper (or of the checks around it) for `op`.
fn failed(op: &'static str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Unsupported {
        flag: op,
        reason: e.to_string(),
    }
}

pub(crate) fn refuse_flags(op: &'static str, tcp: bool, ext_unix: bool, locks: bool) -> Result<()> {
    let refused: [(&'static str, bool, &str); 3] = [
        (
            "--tcp-established",
            tcp,
            "established TCP connections are not carried",
        ),
        (
            "--ext-unix-sk",
            ext_unix,
            "unix sockets connected outside the tree are not supported",
        ),
        (
            "--file-locks",
            locks,
            "file locks are not dumped or restored",
        ),
    ];
    for (flag, given, why) in refused {
        if given {
            return Err(RuntimeError::Unsupported {
                flag,
                reason: format!("{op}: {why}; omit the flag"),
            });
        }
    }
    Ok(())
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn print_report<T: Serialize>(json: bool, value: &T, text: &str) {
    use std::io::Write;
    let line = if json {
        serde_json::to_string(value).unwrap_or_default() + "\n"
    } else {
        text.to_string()
    };
    // A reader that went away is not an error of the dump or restore.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// What `process dump` did, in microseconds per phase.
#[derive(Serialize, Debug)]
pub struct DumpReport {
    pub command: &'static str,
    pub pid: i32,
    pub image_path: PathBuf,
    pub pids: Vec<i32>,
    pub processes: usize,
    pub threads: usize,
    pub pages: u64,
    pub leave_running: bool,
    pub shell_job: bool,
    /// Listing the tree and checking its sessions and process groups.
    pub inspect_us: u64,
    /// Seizing and interrupting every thread.
    pub freeze_us: u64,
    /// Reading every process's state and writing its pages and record.
    pub dump_us: u64,
    /// The inventory (which makes the image complete), fsynced.
    pub write_us: u64,
    /// Detaching (--leave-running) or killing the tree.
    pub release_us: u64,
    /// From seize to the image being complete: what the tree was stopped for.
    pub frozen_us: u64,
    pub total_us: u64,
}

impl DumpReport {
    fn text(&self) -> String {
        let what = if self.leave_running {
            "left running"
        } else {
            "killed"
        };
        format!(
            "dumped pid {} ({} process(es) {:?}, {} thread(s), {} page(s)) into {}; the tree was {what}\n\
             \x20 inspect  {}  (tree listed, sessions and process groups checked)\n\
             \x20 freeze   {}  (every thread seized)\n\
             \x20 dump     {}  (state read, pages and records written)\n\
             \x20 write    {}  (inventory written, fsynced)\n\
             \x20 {:8} {}\n\
             \x20 frozen   {}  (the tree stood still)\n\
             \x20 total    {}\n",
            self.pid,
            self.processes,
            self.pids,
            self.threads,
            self.pages,
            self.image_path.display(),
            ms(self.inspect_us),
            ms(self.freeze_us),
            ms(self.dump_us),
            ms(self.write_us),
            if self.leave_running { "release" } else { "kill" },
            ms(self.release_us),
            ms(self.frozen_us),
            ms(self.total_us),
        )
    }
}

/// Process group (proc(5) field 5) and session (field 6) of `pid`.
fn pgid_sid(pid: i32) -> Result<(i32, i32)> {
    godwit_checkpoint::host::pgid_sid(pid).map_err(|e| failed("process dump", e))
}

/// Whether `pid` is `me` or one of my ancestors (PPid chain up to 0).
fn is_ancestor_or_self(pid: i32, me: i32) -> bool {
    let mut p = me;
    for _ in 0..4096 {
        if p == pid {
            return true;
        }
        match godwit_checkpoint::host::parent(p) {
            Ok(Some(pp)) => p = pp,
            _ => return false,
        }
    }
    false
}

/// The tree to dump, checked: not ourselves, sessions inside it unless it is
/// a shell job, process groups led inside it.
fn tree_to_dump(args: &ProcessDump) -> Result<Vec<i32>> {
    let pid = args.pid;
    if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(RuntimeError::InvalidValue {
            what: "--pid",
            value: pid.to_string(),
            reason: "no such process".into(),
        });
    }
    let me = std::process::id() as i32;
    if is_ancestor_or_self(pid, me) {
        return Err(RuntimeError::InvalidValue {
            what: "--pid",
            value: pid.to_string(),
            reason: "godwit itself is in that tree (it is an ancestor of this godwit)".into(),
        });
    }
    let pids = godwit_checkpoint::host::tree(pid).map_err(|e| failed("process dump", e))?;
    let set: HashSet<i32> = pids.iter().copied().collect();
    for &p in &pids {
        let (pgid, sid) = pgid_sid(p)?;
        if !set.contains(&sid) && !args.shell_job {
            return Err(RuntimeError::Unsupported {
                flag: "process dump",
                reason: format!(
                    "pid {p} belongs to session {sid}, whose leader is outside the tree (a job \
                     started from a shell?); dump it with --shell-job, and restore it with \
                     --shell-job from a terminal"
                ),
            });
        }
        if pgid != 0 && !set.contains(&pgid) {
            return Err(RuntimeError::Unsupported {
                flag: "process dump",
                reason: format!(
                    "pid {p} is in process group {pgid}, whose leader is outside the tree; a \
                     process group can only be restored with its leader (a job started by a \
                     shell with job control leads its own group)"
                ),
            });
        }
    }
    Ok(pids)
}

pub fn dump(args: &ProcessDump) -> Result<DumpReport> {
    let t0 = Instant::now();
    let image = args.image_path.as_path();
    let existed = image.exists();
    if existed
        && std::fs::read_dir(image)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(RuntimeError::InvalidValue {
            what: "--image-path",
            value: image.display().to_string(),
            reason: "the directory is not empty; choose another".into(),
        });
    }
    let pids = tree_to_dump(args)?;
    let inspect_us = t0.elapsed().as_micros() as u64;
    let opts = godwit_checkpoint::DumpOptions {
        leave_running: args.leave_running,
        // The terminal (or whatever the shell gave the job) is not the tree's.
        external_stdio: args.shell_job,
        freeze_cgroup: None,
        ..Default::default()
    };
    let stats = match godwit_checkpoint::dump(&pids, image, &opts) {
        Ok(stats) => stats,
        Err(e) => {
            // The dumper left the tree running; leave no partial image.
            if existed {
                if let Ok(entries) = std::fs::read_dir(image) {
                    for entry in entries.flatten() {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(image);
            }
            return Err(failed("process dump", e));
        }
    };
    tracing::info!(pid = args.pid, image = %image.display(), processes = stats.processes, "process tree dumped");
    Ok(DumpReport {
        command: "dump",
        pid: args.pid,
        image_path: image.to_path_buf(),
        pids,
        processes: stats.processes,
        threads: stats.threads,
        pages: stats.pages_written,
        leave_running: args.leave_running,
        shell_job: args.shell_job,
        inspect_us,
        freeze_us: stats.freeze_us,
        dump_us: stats.memdump_us,
        write_us: stats.frozen_us.saturating_sub(stats.memdump_us),
        release_us: stats
            .total_us
            .saturating_sub(stats.freeze_us + stats.frozen_us),
        frozen_us: stats.frozen_us,
        total_us: inspect_us + stats.total_us,
    })
}

/// What `process restore` did, in microseconds per phase.
#[derive(Serialize, Debug)]
pub struct RestoreReport {
    pub command: &'static str,
    pub image_path: PathBuf,
    pub root_pid: i32,
    pub pids: Vec<i32>,
    pub processes: usize,
    pub threads: usize,
    pub pages: u64,
    pub detach: bool,
    pub shell_job: bool,
    /// rlimits whose hard limit could not be restored (no CAP_SYS_RESOURCE).
    pub clamped_rlimits: Vec<String>,
    /// Image opened, every record read, open and mapped files checked.
    pub read_us: u64,
    /// Waiting for the image's pids to be free, cloning and stopping the stub.
    pub stub_us: u64,
    /// The dumper's own reading and checksumming of the image.
    pub verify_us: u64,
    /// The tree rebuilt in the stub (of which `memory_us` for memory).
    pub rebuild_us: u64,
    pub memory_us: u64,
    /// Not timed on its own: the dumper detaches every thread at the end of
    /// the rebuild, which is when the tree runs again.
    pub resume_us: Option<u64>,
    pub total_us: u64,
}

impl RestoreReport {
    fn text(&self) -> String {
        let mut s = format!(
            "restored pid {} ({} process(es) {:?}, {} thread(s), {} page(s)) from {}{}\n\
             \x20 read     {}  (image opened, records read, open and mapped files checked)\n\
             \x20 stub     {}  (pids free, clone3 with pid {}, stopped)\n\
             \x20 verify   {}  (the dumper reads and checksums the image)\n\
             \x20 rebuild  {}  (of which memory {}; ends with every thread resumed)\n\
             \x20 resume   not timed apart (part of rebuild)\n\
             \x20 total    {}\n",
            self.root_pid,
            self.processes,
            self.pids,
            self.threads,
            self.pages,
            self.image_path.display(),
            if self.detach { "; detached" } else { "" },
            ms(self.read_us),
            ms(self.stub_us),
            self.root_pid,
            ms(self.verify_us),
            ms(self.rebuild_us),
            ms(self.memory_us),
            ms(self.total_us),
        );
        if !self.clamped_rlimits.is_empty() {
            s.push_str(&format!(
                "  rlimits clamped (no CAP_SYS_RESOURCE): {}\n",
                self.clamped_rlimits.join(", ")
            ));
        }
        s
    }
}

/// Every check that needs no process: the records, the files they had open
/// (at the same paths) and mapped (same size and content), stdio, groups.
fn check_image(reader: &ImageReader, shell_job: bool) -> Result<()> {
    let inv = &reader.inventory;
    // A group's leader may be a zombie (it exited, its group lives on).
    let pids: HashSet<i32> = inv
        .processes
        .iter()
        .map(|e| e.pid)
        .chain(inv.zombies.iter().map(|z| z.pid))
        .collect();
    let root = std::fs::File::open("/proc/self/root")
        .map_err(|e| RuntimeError::io("/proc/self/root", e))?;
    for e in &inv.processes {
        let img: ProcessImage = reader
            .read_json(&e.record)
            .map_err(|err| failed("process restore", err))?;
        for f in &img.files.fds {
            match &f.kind {
                FdKind::Path {
                    path,
                    size,
                    mtime_ns,
                    ..
                } => {
                    let meta = match std::fs::metadata(path) {
                        Ok(meta) => meta,
                        Err(err) => {
                            return Err(RuntimeError::Unsupported {
                                flag: "process restore",
                                reason: format!(
                                    "pid {} fd {}: {path}: {err} (the file was open at the dump \
                                     and must exist at the same path)",
                                    e.pid, f.fd
                                ),
                            })
                        }
                    };
                    use std::os::unix::fs::MetadataExt;
                    let now_mtime =
                        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
                    let changed = match (size, mtime_ns) {
                        (Some(s), _) if *s != meta.len() => {
                            Some(format!("size {} at the dump, {} now", s, meta.len()))
                        }
                        (_, Some(m)) if *m != now_mtime => {
                            Some("modified since the dump (mtime differs)".to_string())
                        }
                        _ => None,
                    };
                    if let Some(what) = changed {
                        return Err(RuntimeError::Unsupported {
                            flag: "process restore",
                            reason: format!(
                                "pid {} fd {}: {path}: {what}; the tree would not see the file \
                                 it had open (put the file back as it was)",
                                e.pid, f.fd
                            ),
                        });
                    }
                }
                FdKind::External { .. } if !shell_job => {
                    return Err(RuntimeError::Unsupported {
                        flag: "process restore",
                        reason: format!(
                            "pid {} fd {} is stdio from outside the tree (the image was dumped \
                             with --shell-job); restore it with --shell-job",
                            e.pid, f.fd
                        ),
                    });
                }
                _ => {}
            }
        }
        // Mapped files (executables, libraries): size and content.
        godwit_checkpoint::check_mapped_files(&root, &img)
            .map_err(|err| failed("process restore", err))?;
        if e.pgid != 0 && e.sid != e.pid && !pids.contains(&e.pgid) {
            return Err(RuntimeError::Unsupported {
                flag: "process restore",
                reason: format!(
                    "pid {} was in process group {}, whose leader is not in the image",
                    e.pid, e.pgid
                ),
            });
        }
    }
    Ok(())
}

/// Who holds `tid` now, for the error: "comm (pid N)".
fn holder(tid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{tid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let tgid = godwit_checkpoint::host::tgid(tid).ok().flatten();
    let state = std::fs::read_to_string(format!("/proc/{tid}/stat"))
        .ok()
        .and_then(|s| s.rfind(") ").and_then(|i| s[i + 2..].chars().next()));
    let mut s = comm;
    if let Some(t) = tgid.filter(|&t| t != tid) {
        s.push_str(&format!(" (a thread of pid {t})"));
    }
    if state == Some('Z') {
        s.push_str(", a zombie not reaped yet");
    }
    s
}

fn pid_taken(tid: i32) -> bool {
    Path::new(&format!("/proc/{tid}")).exists()
}

/// How long a pid may be held by a live (not dead or zombie) process before
/// the restore stops waiting for it: a killed process is a zombie within ms.
const LIVE_HOLDER_WAIT: Duration = Duration::from_secs(1);

/// Waits until every pid and thread id of the image is free, up to `deadline`
/// (or [`LIVE_HOLDER_WAIT`] when a live process holds one).
fn wait_pids_free(ids: &[i32], deadline: Instant) -> Result<()> {
    let start = Instant::now();
    loop {
        let taken = ids.iter().copied().find(|&t| pid_taken(t));
        let Some(t) = taken else {
            return Ok(());
        };
        let state = std::fs::read_to_string(format!("/proc/{t}/stat"))
            .ok()
            .and_then(|s| s.rfind(") ").and_then(|i| s[i + 2..].chars().next()));
        let live = !matches!(state, None | Some('Z') | Some('X'));
        if Instant::now() >= deadline || (live && start.elapsed() >= LIVE_HOLDER_WAIT) {
            return Err(pid_in_use(t));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_in_use(tid: i32) -> RuntimeError {
    RuntimeError::Unsupported {
        flag: "process restore",
        reason: format!(
            "pid {tid} is in use by {}; the image's processes need their pids back (still \
             running after `process dump --leave-running`?)",
            holder(tid)
        ),
    }
}

/// A stopped child with the image's root pid, for the dumper to rebuild.
/// Killed and reaped on drop unless released.
struct Stub {
    pid: i32,
    keep: bool,
}

impl Stub {
    /// clone3 with set_tid = [pid]: retried while the pid is taken (EEXIST),
    /// until `deadline`. The child resets every signal disposition (ours are
    /// not the workload's: SIGPIPE is ignored here) and stops itself.
    fn spawn(pid: i32, deadline: Instant) -> Result<Stub> {
        #[repr(C)]
        #[derive(Default)]
        struct CloneArgs {
            flags: u64,
            pidfd: u64,
            child_tid: u64,
            parent_tid: u64,
            exit_signal: u64,
            stack: u64,
            stack_size: u64,
            tls: u64,
            set_tid: u64,
            set_tid_size: u64,
            cgroup: u64,
        }
        let tid: libc::pid_t = pid;
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            set_tid: &tid as *const libc::pid_t as u64,
            set_tid_size: 1,
            ..Default::default()
        };
        let child = loop {
            // SAFETY: fork-like clone3 (no CLONE_VM, no new stack); the child
            // only makes async-signal-safe raw syscalls (below).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    &args as *const CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                )
            };
            if r == 0 {
                stub_child();
            }
            if r > 0 {
                break r as i32;
            }
            let errno = nix::errno::Errno::last();
            if errno == nix::errno::Errno::EEXIST {
                if Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                return Err(pid_in_use(pid));
            }
            return Err(RuntimeError::sys(
                format!("clone3 with set_tid {pid} (the image's root pid)"),
                errno,
            ));
        };
        let stub = Stub {
            pid: child,
            keep: false,
        };
        if child != pid {
            return Err(RuntimeError::Unsupported {
                flag: "process restore",
                reason: format!("clone3 made pid {child}, wanted {pid}"),
            });
        }
        let mut status = 0;
        // SAFETY: waitpid(2) of our own child.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WUNTRACED) };
        if r != child || !libc::WIFSTOPPED(status) {
            return Err(RuntimeError::sys(
                format!("waiting for the restore stub {child} to stop"),
                nix::errno::Errno::last(),
            ));
        }
        Ok(stub)
    }

    fn release(mut self) -> i32 {
        self.keep = true;
        self.pid
    }
}

/// The stub's side: default dispositions, stop, then pause until rebuilt.
/// Raw syscalls only: glibc's cached thread ids are the parent's here.
fn stub_child() -> ! {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // struct kernel_sigaction: handler SIG_DFL, flags, restorer, mask.
        let act = [0u64; 4];
        // SAFETY: rt_sigaction(2) with a valid struct; invalid numbers fail harmlessly.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                act.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8 as libc::c_long,
            )
        };
    }
    // SAFETY: getpid/kill/pause(2) have no memory preconditions.
    unsafe {
        let me = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, me, libc::SIGSTOP as libc::c_long);
        loop {
            libc::syscall(libc::SYS_pause);
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if !self.keep {
            // SAFETY: kill and reap our own child (stopped, traced or dead).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
            }
        }
    }
}

fn us(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

pub fn restore(args: &ProcessRestore) -> Result<i32> {
    let t0 = Instant::now();
    let image = args.image_path.as_path();
    // Everything is checked before anything is created.
    let reader = ImageReader::open(image).map_err(|e| failed("process restore", e))?;
    let inv = &reader.inventory;
    let root = inv.root_pid;
    let pids: Vec<i32> = inv.processes.iter().map(|e| e.pid).collect();
    let mut ids: Vec<i32> = inv
        .processes
        .iter()
        .flat_map(|e| e.tids.iter().copied().chain([e.pid]))
        .chain(inv.zombies.iter().map(|z| z.pid))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let read_us = us(t0);

    let t_stub = Instant::now();
    let deadline = t_stub + PID_FREE_WAIT;
    wait_pids_free(&ids, deadline)?;
    // Files after pids: a tree still running (its pids taken) also changes its files.
    check_image(&reader, args.shell_job)?;
    let signals = SigSet::all();
    if !args.detach {
        // Before the root exists: its exit (SIGCHLD) must not be lost, and
        // our signals are forwarded to it.
        signals
            .thread_block()
            .map_err(|e| RuntimeError::sys("block signals", e))?;
    }
    let stub = Stub::spawn(root, deadline)?;
    let stub_us = us(t_stub);

    let opts = godwit_checkpoint::RestoreOptions {
        inherit_stdio: args.shell_job,
        ..Default::default()
    };
    let stats = godwit_checkpoint::restore(image, stub.pid, &opts)
        .map_err(|e| failed("process restore", e))?;
    let root_host = stub.release();
    tracing::info!(pid = root_host, image = %image.display(), "process tree restored");
    if let Some(pid_file) = &args.pid_file {
        std::fs::write(pid_file, root_host.to_string())
            .map_err(|e| RuntimeError::io(pid_file, e))?;
    }
    let report = RestoreReport {
        command: "restore",
        image_path: image.to_path_buf(),
        root_pid: root_host,
        pids,
        processes: stats.processes,
        threads: stats.threads,
        pages: stats.pages_restored,
        detach: args.detach,
        shell_job: args.shell_job,
        clamped_rlimits: stats
            .clamped_rlimits
            .iter()
            .map(|r| format!("{r:?}"))
            .collect(),
        read_us,
        stub_us,
        verify_us: stats.verify_us,
        rebuild_us: stats.total_us.saturating_sub(stats.verify_us),
        memory_us: stats.memory_us,
        resume_us: None,
        total_us: us(t0),
    };
    print_report(args.json, &report, &report.text());
    if args.detach {
        return Ok(0);
    }
    crate::verbs::run::wait_forwarding(nix::unistd::Pid::from_raw(root_host), &signals, None)
}
