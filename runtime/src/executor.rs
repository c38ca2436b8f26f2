//! The workload executor godwit hands libcontainer: libcontainer's default
//! one (execvp of `process.args`), preceded by what runc guarantees a
//! container process and libcontainer does not — it starts as a fresh
//! process would: every signal at its default disposition, an empty signal
//! mask, and no fd open but 0–2 and the `--preserve-fds` ones.
//!
//! What leaked before: Rust's runtime ignores SIGPIPE in godwit itself (and an
//! ignored signal stays ignored across execve), a foreground `run`/`exec`
//! blocks every signal before the process is forked so that none is lost, the
//! shim's process ignores signal 32, and libcontainer opens fds after its own
//! fd clean-up.

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::Spec;

#[derive(Clone, Default)]
pub struct GodwitExecutor {
    /// Extra fds the process keeps (3 .. 3+preserve_fds-1).
    pub preserve_fds: i32,
}

impl GodwitExecutor {
    pub fn new(preserve_fds: i32) -> Self {
        GodwitExecutor { preserve_fds }
    }
}

/// The kernel's `struct sigaction` for rt_sigaction(2): the raw syscall
/// reaches signals 32 and 33 too, which glibc's wrapper refuses.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Puts every signal's disposition back to SIG_DFL (a caught one is reset
/// by execve anyway; an ignored one would stay ignored) and empties the mask.
pub fn reset_signals() {
    reset_dispositions();
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

/// Every signal's disposition back to SIG_DFL, 32 and 33 included (glibc's
/// signal() refuses those; a caller may have left them ignored).
pub fn reset_dispositions() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid sigaction for rt_sigaction with the kernel's 8-byte
        // sigset; the old action is not asked for. Failures (none expected
        // for these numbers) leave that signal as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
}

/// Marks every fd from `first` up close-on-exec.
fn cloexec_from(first: u32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Kernels before 5.11: walk /proc/self/fd instead.
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect();
            for fd in fds.into_iter().filter(|&fd| fd >= first as i32) {
                // SAFETY: F_SETFD on an fd number; a closed one fails harmlessly.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// How many extra fds the process keeps: `--preserve-fds` plus systemd's
/// socket-activation LISTEN_FDS, as libcontainer counts them.
fn kept_fds(preserve_fds: i32) -> u32 {
    let listen = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(0);
    (3 + preserve_fds.max(0) + listen) as u32
}

impl Executor for GodwitExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        cloexec_from(kept_fds(self.preserve_fds));
        reset_signals();
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // A program named by path needs no PATH (libcontainer insists on one;
        // runc runs `{"args":["/bin/id"]}` without `env`).
        let process = spec.process().as_ref();
        let has_path = process
            .and_then(|p| p.env().as_ref())
            .is_some_and(|env| env.iter().any(|e| e.starts_with("PATH=")));
        let program = process
            .and_then(|p| p.args().as_ref())
            .and_then(|a| a.first());
        match program {
            Some(program) if !has_path && program.contains('/') => {
                if std::path::Path::new(program).is_file() {
                    Ok(())
                } else {
                    Err(ExecutorValidationError::ArgValidationError(format!(
                        "executable '{program}' not found"
                    )))
                }
            }
            _ => DefaultExecutor {}.validate(spec),
        }
    }
}
