//! The only module that calls `libc::ptrace`: seizing, stopping, waiting for a
//! specific tid, registers, and injecting syscalls into a stopped thread.
//! Also the tracer's access to tracee memory (/proc/PID/mem, process_vm_readv).
//!
//! Injection runs a syscall instruction that already exists in the tracee
//! ([`Gadget::Syscall`], driven by PTRACE_SYSCALL stops) or a `syscall; int3`
//! sequence we placed in a page of our own ([`Gadget::SyscallTrap`], one stop).

use std::fs::File;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// `syscall; int3`: the trap after the syscall gives us one stop per injection.
pub const GADGET_BYTES: [u8; 3] = [0x0f, 0x05, 0xcc];

pub const OPT_TRACESYSGOOD: u32 = libc::PTRACE_O_TRACESYSGOOD as u32;
pub const OPT_TRACEFORK: u32 = libc::PTRACE_O_TRACEFORK as u32;
pub const OPT_TRACECLONE: u32 = libc::PTRACE_O_TRACECLONE as u32;
pub const OPT_EXITKILL: u32 = libc::PTRACE_O_EXITKILL as u32;
pub const OPT_SUSPEND_SECCOMP: u32 = libc::PTRACE_O_SUSPEND_SECCOMP as u32;

const PTRACE_EVENT_STOP: i32 = 128;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const NT_X86_XSTATE: usize = 0x202;
/// Large enough for the XSAVE area of any current x86 CPU (AMX is ~11 KiB).
const XSTATE_MAX: usize = 16384;

/// `struct user_regs_struct` of x86-64, in the kernel's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// What `waitpid(tid, __WALL)` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// PTRACE_EVENT_* stop; `event == 128` is PTRACE_EVENT_STOP (interrupt or group-stop).
    Event {
        sig: i32,
        event: i32,
    },
    /// Signal-delivery-stop.
    Signal(i32),
    /// Syscall-enter or -exit stop (PTRACE_O_TRACESYSGOOD).
    Syscall,
    Exited(i32),
    Killed(i32),
}

impl Stop {
    pub fn is_event_stop(&self) -> bool {
        matches!(self, Stop::Event { event, .. } if *event == PTRACE_EVENT_STOP)
    }
}

/// ptrace(2) with `addr` and `data` passed through as the kernel reads them.
///
/// # Safety
/// For a request that reads or writes memory of the caller through `addr`
/// or `data` (GETREGS, SETREGS, GETSIGINFO, SECCOMP_GET_FILTER, ...), that
/// argument must be 0 or point to a live buffer of the size the request
/// uses, which nothing else accesses during the call.
unsafe fn raw(
    op: libc::c_uint,
    tid: i32,
    addr: usize,
    data: usize,
) -> std::result::Result<i64, Errno> {
    Errno::clear();
    // SAFETY: the caller guarantees `addr`/`data` as the request needs them.
    let r = unsafe {
        libc::ptrace(
            op,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 {
        let e = Errno::last();
        if e != Errno::UnknownErrno {
            return Err(e);
        }
    }
    Ok(r)
}

/// [`raw`] with the error naming the request and the tid.
///
/// # Safety
/// As for [`raw`].
unsafe fn req(
    op_name: &'static str,
    op: libc::c_uint,
    tid: i32,
    addr: usize,
    data: usize,
) -> Result<i64> {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { raw(op, tid, addr, data) }.map_err(|errno| Error::Ptrace {
        op: op_name,
        tid,
        errno,
    })
}

/// A request whose `addr` and `data` are plain integers (no memory of ours).
fn req_int(
    op_name: &'static str,
    op: libc::c_uint,
    tid: i32,
    addr: usize,
    data: usize,
) -> Result<i64> {
    // SAFETY: the kernel reads or writes no memory of the caller for these
    // requests (SEIZE, INTERRUPT, CONT, SYSCALL, DETACH, SETOPTIONS).
    unsafe { req(op_name, op, tid, addr, data) }
}

pub fn seize(tid: i32, options: u32) -> Result<()> {
    req_int("SEIZE", libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

pub fn interrupt(tid: i32) -> Result<()> {
    req_int("INTERRUPT", libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

pub fn cont(tid: i32, sig: i32) -> Result<()> {
    req_int("CONT", libc::PTRACE_CONT, tid, 0, sig as usize).map(drop)
}

pub fn cont_syscall(tid: i32, sig: i32) -> Result<()> {
    req_int("SYSCALL", libc::PTRACE_SYSCALL, tid, 0, sig as usize).map(drop)
}

pub fn detach(tid: i32, sig: i32) -> Result<()> {
    req_int("DETACH", libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}

/// Waits for a state change of exactly `tid` (never -1: waiting on any child
/// walks the whole tracee list and makes thousands of threads quadratic).
pub fn wait(tid: i32) -> Result<Stop> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == -1 {
            let errno = Errno::last();
            if errno == Errno::EINTR {
                continue;
            }
            return Err(Error::Wait { tid, errno });
        }
        break;
    }
    Ok(decode(status))
}

/// Like [`wait`] but returns None at once if `tid` has nothing to report.
pub fn try_wait(tid: i32) -> Result<Option<Stop>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == -1 {
            let errno = Errno::last();
            if errno == Errno::EINTR {
                continue;
            }
            return Err(Error::Wait { tid, errno });
        }
        return Ok(if r == 0 { None } else { Some(decode(status)) });
    }
}

fn decode(status: libc::c_int) -> Stop {
    if libc::WIFEXITED(status) {
        return Stop::Exited(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        return Stop::Killed(libc::WTERMSIG(status));
    }
    let sig = libc::WSTOPSIG(status);
    let event = status >> 16;
    if sig == libc::SIGTRAP | 0x80 {
        Stop::Syscall
    } else if event != 0 {
        Stop::Event { sig, event }
    } else {
        Stop::Signal(sig)
    }
}

pub fn get_regs(tid: i32) -> Result<Regs> {
    let mut regs = Regs::default();
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "GETREGS",
            libc::PTRACE_GETREGS,
            tid,
            0,
            &mut regs as *mut Regs as usize,
        )
    }?;
    Ok(regs)
}

pub fn set_regs(tid: i32, regs: &Regs) -> Result<()> {
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "SETREGS",
            libc::PTRACE_SETREGS,
            tid,
            0,
            regs as *const Regs as usize,
        )
    }
    .map(drop)
}

/// The thread's XSAVE area (FPU, SSE, AVX, AVX-512 ...) as the kernel lays it out.
pub fn get_xstate(tid: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "GETREGSET(NT_X86_XSTATE)",
            libc::PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec as usize,
        )
    }?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

pub fn set_xstate(tid: i32, xstate: &[u8]) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_ptr() as *mut libc::c_void,
        iov_len: xstate.len(),
    };
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "SETREGSET(NT_X86_XSTATE)",
            libc::PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec as usize,
        )
    }
    .map(drop)
}

pub fn get_sigmask(tid: i32) -> Result<u64> {
    let mut mask = 0u64;
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "GETSIGMASK",
            libc::PTRACE_GETSIGMASK,
            tid,
            8,
            &mut mask as *mut u64 as usize,
        )
    }?;
    Ok(mask)
}

pub fn set_sigmask(tid: i32, mask: u64) -> Result<()> {
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "SETSIGMASK",
            libc::PTRACE_SETSIGMASK,
            tid,
            8,
            &mask as *const u64 as usize,
        )
    }
    .map(drop)
}

pub fn get_rseq(tid: i32) -> Result<RseqConfig> {
    let mut conf = RseqConfig::default();
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "GET_RSEQ_CONFIGURATION",
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            std::mem::size_of::<RseqConfig>(),
            &mut conf as *mut RseqConfig as usize,
        )
    }?;
    Ok(conf)
}

pub fn get_event_msg(tid: i32) -> Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "GETEVENTMSG",
            libc::PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut msg as *mut libc::c_ulong as usize,
        )
    }?;
    Ok(msg as u64)
}

/// Raw 128-byte siginfo records of pending signals: the thread's own queue or
/// (with `shared`) the process-wide one. Nothing is dequeued.
pub fn peek_siginfo(tid: i32, shared: bool) -> Result<Vec<[u8; 128]>> {
    #[repr(C)]
    struct Args {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let mut out = Vec::new();
    let mut buf = [[0u8; 128]; 32];
    loop {
        let args = Args {
            off: out.len() as u64,
            flags: if shared { 1 } else { 0 },
            nr: buf.len() as i32,
        };
        let n = // SAFETY: the pointer argument is to a live local buffer of the size
        // this request uses, not otherwise accessed during the call.
        unsafe {
            req(
                "PEEKSIGINFO",
                libc::PTRACE_PEEKSIGINFO,
                tid,
                &args as *const Args as usize,
                buf.as_mut_ptr() as usize,
            )
        }? as usize;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// The `index`-th seccomp filter of `tid` (0 = most recent) as raw
/// `struct sock_filter` bytes; None past the last one.
pub fn seccomp_filter(tid: i32, index: usize) -> Result<Option<Vec<u8>>> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    // SAFETY: with data 0 the request only returns the filter's length.
    let n = match unsafe { raw(PTRACE_SECCOMP_GET_FILTER, tid, index, 0) } {
        Ok(n) => n as usize,
        Err(Errno::ENOENT) => return Ok(None),
        Err(errno) => {
            return Err(Error::Ptrace {
                op: "SECCOMP_GET_FILTER",
                tid,
                errno,
            })
        }
    };
    let mut buf = vec![0u8; n * 8];
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "SECCOMP_GET_FILTER",
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index,
            buf.as_mut_ptr() as usize,
        )
    }?;
    Ok(Some(buf))
}

/// Flags the `index`-th seccomp filter was installed with.
pub fn seccomp_flags(tid: i32, index: usize) -> Result<u64> {
    const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
    let mut md = [index as u64, 0u64];
    // SAFETY: the pointer argument is to a live local buffer of the size
    // this request uses, not otherwise accessed during the call.
    unsafe {
        req(
            "SECCOMP_GET_METADATA",
            PTRACE_SECCOMP_GET_METADATA,
            tid,
            16,
            md.as_mut_ptr() as usize,
        )
    }?;
    Ok(md[1])
}

/// The tracer's handle on a tracee's memory. /proc/PID/mem writes with
/// FOLL_FORCE, so it reaches read-only and PROT_NONE pages too.
pub struct Mem {
    pid: i32,
    file: File,
}

impl Mem {
    pub fn open(pid: i32) -> Result<Self> {
        let path = format!("/proc/{pid}/mem");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Mem { pid, file })
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, addr)
            .map_err(|source| Error::Memory {
                pid: self.pid,
                addr,
                source,
            })
    }

    pub fn write(&self, addr: u64, buf: &[u8]) -> Result<()> {
        self.file
            .write_all_at(buf, addr)
            .map_err(|source| Error::Memory {
                pid: self.pid,
                addr,
                source,
            })
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }
}

/// Reads remote ranges `(addr, len)` into consecutive bytes of `buf` with one
/// process_vm_readv per 1024 ranges. Returns bytes read (short on a fault).
pub fn vm_readv(pid: i32, ranges: &[(u64, usize)], buf: &mut [u8]) -> Result<usize> {
    let mut done = 0usize;
    for chunk in ranges.chunks(1024) {
        let total: usize = chunk.iter().map(|r| r.1).sum();
        let local = libc::iovec {
            iov_base: buf[done..done + total].as_mut_ptr().cast(),
            iov_len: total,
        };
        let remote: Vec<libc::iovec> = chunk
            .iter()
            .map(|&(a, l)| libc::iovec {
                iov_base: a as *mut libc::c_void,
                iov_len: l,
            })
            .collect();
        // SAFETY: local points into buf with the length checked by slicing.
        let n = unsafe {
            libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), remote.len() as u64, 0)
        };
        if n < 0 {
            return Err(Error::Memory {
                pid,
                addr: chunk[0].0,
                source: std::io::Error::last_os_error(),
            });
        }
        done += n as usize;
        if (n as usize) < total {
            return Ok(done);
        }
    }
    Ok(done)
}

/// Writes `data` at `addr` in `pid` with process_vm_writev; returns how many
/// bytes were written (short at the first page that is not writable).
pub fn vm_writev(pid: i32, addr: u64, data: &[u8]) -> usize {
    let mut done = 0usize;
    while done < data.len() {
        let local = libc::iovec {
            iov_base: data[done..].as_ptr() as *mut libc::c_void,
            iov_len: data.len() - done,
        };
        let remote = libc::iovec {
            iov_base: (addr + done as u64) as *mut libc::c_void,
            iov_len: data.len() - done,
        };
        // SAFETY: local points into data; the kernel only reads it.
        let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    done
}

/// Where an injected syscall runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gadget {
    /// A `syscall` instruction already in the tracee (e.g. in its vDSO): the
    /// tracee's code is not modified; costs two stops (enter, exit).
    Syscall(u64),
    /// `syscall; int3` in a page we own: one stop per injection.
    SyscallTrap(u64),
}

/// Runs syscalls inside a stopped thread. Saves the thread's registers and
/// signal mask on creation, blocks all signals while injecting (so no handler
/// runs on our registers), and puts both back on `finish` or drop.
pub struct Injector {
    tid: i32,
    saved: Regs,
    saved_mask: u64,
    gadget: Gadget,
    /// Whether the thread now sits in a stop inside get_signal(), from which
    /// it resumes with the kernel's syscall-restart handling intact.
    in_signal_stop: bool,
    done: bool,
    /// PTRACE_GETEVENTMSG of the last clone/fork event seen while injecting.
    pub last_new_tid: Option<i32>,
}

impl Injector {
    /// `tid` must be in a ptrace stop (interrupt, group-stop or signal stop).
    pub fn new(tid: i32, gadget: Gadget) -> Result<Self> {
        let saved = get_regs(tid)?;
        let saved_mask = get_sigmask(tid)?;
        set_sigmask(tid, !0u64)?;
        Ok(Injector {
            tid,
            saved,
            saved_mask,
            gadget,
            in_signal_stop: true,
            done: false,
            last_new_tid: None,
        })
    }

    pub fn tid(&self) -> i32 {
        self.tid
    }

    pub fn saved_regs(&self) -> &Regs {
        &self.saved
    }

    pub fn saved_mask(&self) -> u64 {
        self.saved_mask
    }

    pub fn set_gadget(&mut self, gadget: Gadget) {
        self.gadget = gadget;
    }

    /// Runs one syscall; returns the raw result (negative errno on failure).
    pub fn raw_syscall(&mut self, nr: i64, args: &[u64]) -> Result<i64> {
        let mut r = self.syscall_regs(nr, args);
        let tid = self.tid;
        match self.gadget {
            Gadget::Syscall(addr) => {
                r.rip = addr;
                set_regs(tid, &r)?;
                cont_syscall(tid, 0)?;
                let mut syscall_stops = 0;
                loop {
                    match wait(tid)? {
                        Stop::Syscall => {
                            syscall_stops += 1;
                            if syscall_stops == 2 {
                                break;
                            }
                        }
                        Stop::Event { event, .. } => self.note_event(event)?,
                        // Only SIGSTOP/SIGKILL get through the blocked mask: swallow.
                        Stop::Signal(_) => {}
                        other => return Err(self.died(other)),
                    }
                    cont_syscall(tid, 0)?;
                }
                self.in_signal_stop = false;
            }
            Gadget::SyscallTrap(addr) => {
                r.rip = addr;
                set_regs(tid, &r)?;
                cont(tid, 0)?;
                loop {
                    match wait(tid)? {
                        Stop::Signal(libc::SIGTRAP) => {
                            let now = get_regs(tid)?;
                            if now.rip == addr + 3 {
                                self.in_signal_stop = true;
                                return Ok(now.rax as i64);
                            }
                            return Err(Error::UnexpectedStop {
                                tid,
                                what: format!(
                                    "SIGTRAP at {:#x} while injecting at {addr:#x}",
                                    now.rip
                                ),
                            });
                        }
                        Stop::Event { event, .. } => self.note_event(event)?,
                        Stop::Signal(_) | Stop::Syscall => {}
                        other => return Err(self.died(other)),
                    }
                    cont(tid, 0)?;
                }
            }
        }
        Ok(get_regs(tid)?.rax as i64)
    }

    /// The saved registers with syscall `nr` and its arguments loaded.
    fn syscall_regs(&self, nr: i64, args: &[u64]) -> Regs {
        let mut r = self.saved;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rax = nr as u64;
        // -1: no syscall-restart fixup when the thread resumes from this stop.
        r.orig_rax = u64::MAX;
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.r10 = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        r
    }

    fn note_event(&mut self, event: i32) -> Result<()> {
        if event == libc::PTRACE_EVENT_CLONE || event == libc::PTRACE_EVENT_FORK {
            self.last_new_tid = Some(get_event_msg(self.tid)? as i32);
        }
        Ok(())
    }

    fn died(&mut self, stop: Stop) -> Error {
        self.done = true;
        Error::UnexpectedStop {
            tid: self.tid,
            what: format!("{stop:?} during an injected syscall"),
        }
    }

    /// Runs one syscall and turns a -errno result into an error naming it.
    pub fn syscall(&mut self, name: &'static str, nr: i64, args: &[u64]) -> Result<u64> {
        let r = self.raw_syscall(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(Error::Syscall {
                tid: self.tid,
                name,
                errno: Errno::from_raw(-r as i32),
            });
        }
        Ok(r as u64)
    }

    /// Moves the thread from a syscall-exit stop into a stop inside
    /// get_signal(), so that detaching later applies the kernel's restart
    /// rules to the registers we put back.
    fn settle(&mut self) -> Result<()> {
        if self.in_signal_stop {
            return Ok(());
        }
        interrupt(self.tid)?;
        cont(self.tid, 0)?;
        loop {
            match wait(self.tid)? {
                s if s.is_event_stop() => break,
                Stop::Exited(_) | Stop::Killed(_) => {
                    return Err(Error::UnexpectedStop {
                        tid: self.tid,
                        what: "exited while settling".into(),
                    })
                }
                _ => cont(self.tid, 0)?,
            }
        }
        self.in_signal_stop = true;
        Ok(())
    }

    /// Puts the saved registers and signal mask back.
    pub fn finish(mut self) -> Result<()> {
        self.done = true;
        self.settle()?;
        set_regs(self.tid, &self.saved)?;
        set_sigmask(self.tid, self.saved_mask)
    }

    /// Starts a syscall that does not return (exit_group) and gives the
    /// thread up: the caller waits for its end.
    pub fn start_noreturn(mut self, nr: i64, args: &[u64]) -> Result<()> {
        self.done = true;
        let mut r = self.syscall_regs(nr, args);
        r.rip = match self.gadget {
            Gadget::Syscall(addr) | Gadget::SyscallTrap(addr) => addr,
        };
        set_regs(self.tid, &r)?;
        cont(self.tid, 0)
    }

    /// Ends injection without putting anything back (restore sets the
    /// thread's final state itself).
    pub fn forget(mut self) {
        self.done = true;
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if !self.done {
            // Best effort after an error: the thread must not resume on our registers.
            let _ = self.settle();
            let _ = set_regs(self.tid, &self.saved);
            let _ = set_sigmask(self.tid, self.saved_mask);
        }
    }
}
