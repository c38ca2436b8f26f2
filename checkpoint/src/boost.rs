//! Scheduling for the tracer while it drives many tracees: a real-time
//! priority so that thousands of runnable tracee threads cannot starve it
//! between two ptrace calls (CFS would give it 1/N of a CPU), and an optional
//! CPU pin shared with the tracee so an injected syscall does not migrate
//! (KERNEL-NOTES: ≈11 µs pinned vs 32–53 µs unpinned).

/// Restores the calling thread's policy and affinity on drop.
pub struct Boost {
    policy: i32,
    param: libc::sched_param,
    affinity: Option<libc::cpu_set_t>,
}

impl Boost {
    /// SCHED_FIFO for the calling thread if allowed (silently not otherwise).
    pub fn new() -> Boost {
        // SAFETY: sched_* calls on the calling thread with valid out-pointers.
        unsafe {
            let policy = libc::sched_getscheduler(0);
            let mut param: libc::sched_param = std::mem::zeroed();
            libc::sched_getparam(0, &mut param);
            let fifo = libc::sched_param { sched_priority: 10 };
            if libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) != 0 {
                tracing::debug!("no real-time priority for the tracer");
            }
            Boost {
                policy,
                param,
                affinity: None,
            }
        }
    }

    /// Also pins the calling thread to the CPU it runs on; returns that CPU.
    pub fn pin(&mut self) -> Option<usize> {
        // SAFETY: as above.
        unsafe {
            let cpu = libc::sched_getcpu();
            if cpu < 0 {
                return None;
            }
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
                return None;
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                return None;
            }
            self.affinity.get_or_insert(old);
            Some(cpu as usize)
        }
    }
}

impl Default for Boost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Boost {
    fn drop(&mut self) {
        // SAFETY: restoring what new()/pin() read.
        unsafe {
            libc::sched_setscheduler(0, self.policy, &self.param);
            if let Some(a) = &self.affinity {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), a);
            }
        }
    }
}

/// Affinity of a task (any tid), to put back after pinning it.
pub fn get_affinity(tid: i32) -> Option<libc::cpu_set_t> {
    // SAFETY: valid out-pointer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

pub fn set_affinity(tid: i32, set: &libc::cpu_set_t) -> bool {
    // SAFETY: valid in-pointer.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

pub fn one_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: plain bit set on a zeroed set.
    unsafe {
        let mut s: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut s);
        s
    }
}

/// Lets the calling thread run on every CPU again (a helper spawned by a
/// pinned thread inherits its pin).
pub fn unpin_current() {
    // SAFETY: a full set for the calling thread.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        let n = libc::sysconf(libc::_SC_NPROCESSORS_CONF).clamp(1, 1024) as usize;
        for c in 0..n {
            libc::CPU_SET(c, &mut all);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &all);
    }
}

/// Pins a task (any tid, e.g. a tracee being injected into) to `cpu`,
/// putting its own affinity back on drop.
pub struct PinnedTask {
    tid: i32,
    old: Option<libc::cpu_set_t>,
}

impl PinnedTask {
    pub fn new(tid: i32, cpu: Option<usize>) -> PinnedTask {
        let old = cpu.and_then(|c| {
            let old = get_affinity(tid)?;
            set_affinity(tid, &one_cpu(c)).then_some(old)
        });
        PinnedTask { tid, old }
    }
}

impl Drop for PinnedTask {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            set_affinity(self.tid, old);
        }
    }
}
