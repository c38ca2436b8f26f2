//! Test helpers shared by the dumper's tests (checkpoint/tests) and the
//! runtime's (runtime/tests): build the C workloads, start one as pid 1 of a
//! new pid + mount namespace, watch its output, dump and restore it. Every
//! process started here is killed (by pid) when its guard drops.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Directory holding the built workloads (inside the target dir, not committed).
pub fn workloads_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/test-binary → target/workloads
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    target.join("workloads")
}

pub fn workload(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let dir = workloads_dir();
    BUILD.call_once(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-bundles/build-workloads.sh");
        let st = std::process::Command::new("sh")
            .arg(&script)
            .arg(&dir)
            .status()
            .expect("run build-workloads.sh");
        assert!(st.success(), "building workloads failed");
    });
    let p = dir.join(name);
    assert!(p.exists(), "workload {} not built", p.display());
    p
}

/// A child process we own: SIGKILLed and reaped on drop.
pub struct Child {
    pub pid: i32,
    reaped: bool,
}

impl Child {
    pub fn adopt(pid: i32) -> Child {
        Child { pid, reaped: false }
    }

    /// Waits for exit after a kill by someone else (e.g. dump without
    /// leave-running). The dumper, being tracer and parent, may have reaped it.
    pub fn wait_gone(&mut self) {
        let mut status = 0;
        // SAFETY: waitpid of our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        let e = std::io::Error::last_os_error();
        assert!(
            r == self.pid || e.raw_os_error() == Some(libc::ECHILD),
            "waitpid: {e}"
        );
        self.reaped = true;
    }

    /// Still running (not exited, not a zombie)?
    pub fn alive(&self) -> bool {
        let mut status = 0;
        // SAFETY: non-blocking waitpid of our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        r == 0
    }

    /// State letter from /proc/PID/stat (R, S, t, T, Z ...).
    pub fn state(&self) -> char {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        s.rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next())
            .unwrap_or('?')
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Starts `prog args` as pid 1 of a new pid + mount namespace, stdout and
/// stderr to files in `dir`, stdin /dev/null.
pub fn spawn_in_ns(prog: &Path, args: &[&str], dir: &Path) -> Child {
    spawn_in_ns_with(prog, args, dir, 0)
}

/// [`spawn_in_ns`] with more namespaces (`CLONE_NEWNET` ...).
pub fn spawn_in_ns_with(prog: &Path, args: &[&str], dir: &Path, extra_flags: i32) -> Child {
    let path = CString::new(prog.to_str().unwrap()).unwrap();
    let mut argv_c: Vec<CString> = vec![path.clone()];
    argv_c.extend(args.iter().map(|a| CString::new(*a).unwrap()));
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let out = CString::new(dir.join("stdout").to_str().unwrap()).unwrap();
    let err = CString::new(dir.join("stderr").to_str().unwrap()).unwrap();
    let null = CString::new("/dev/null").unwrap();
    let cwd = CString::new(dir.to_str().unwrap()).unwrap();
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::SIGCHLD | extra_flags;
    // SAFETY: fork-like clone; the child only makes async-signal-safe calls.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags as u64, 0u64, 0u64, 0u64, 0u64) };
    assert!(pid >= 0, "clone: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: child side, raw syscalls only.
        unsafe {
            let i = libc::open(null.as_ptr(), libc::O_RDONLY);
            let o = libc::open(
                out.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            );
            let e = libc::open(
                err.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                0o644,
            );
            libc::dup2(i, 0);
            libc::dup2(o, 1);
            libc::dup2(e, 2);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::chdir(cwd.as_ptr());
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    Child::adopt(pid as i32)
}

/// Lines of a text file (missing file: none).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `pred(lines)` holds, or panics with the file's tail.
pub fn wait_for(
    path: &Path,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    loop {
        let l = lines(path);
        if pred(&l) {
            return l;
        }
        if start.elapsed() > timeout {
            let tail: Vec<_> = l.iter().rev().take(5).collect();
            panic!(
                "timeout waiting for {what} in {}: last lines {tail:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Numbers of a counter file; asserts every line is the previous + 1, from 0.
pub fn assert_consecutive(l: &[String]) -> u64 {
    let mut expect = 0u64;
    for (i, s) in l.iter().enumerate() {
        let v: u64 = s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("line {i} {s:?} not a number"));
        assert_eq!(
            v,
            expect,
            "line {i}: counter jumped or reset (lines around: {:?})",
            &l[i.saturating_sub(2)..(i + 2).min(l.len())]
        );
        expect += 1;
    }
    expect
}

pub fn init_tracing() {}

/// For workloads printing "<n> ok ...": asserts ticks are 0,1,2,... with no
/// gap or reset and every line ok; returns the count.
pub fn assert_ticks(l: &[String]) -> u64 {
    let mut expect = 0u64;
    for (i, s) in l.iter().enumerate() {
        let mut it = s.split_whitespace();
        let v: u64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("line {i} {s:?} has no tick"));
        assert_eq!(it.next(), Some("ok"), "workload reported a failure: {s:?}");
        assert_eq!(
            v,
            expect,
            "line {i}: tick jumped or reset: {:?}",
            &l[i.saturating_sub(2)..(i + 2).min(l.len())]
        );
        expect += 1;
    }
    expect
}

/// Runs `prog args` in a new pid+mount ns until `out` has `warmup` lines,
/// dumps it (killing it), restores it into a fresh stub, and checks with
/// `check` that it continues for `more` lines. Returns the restored child.
pub fn roundtrip(
    prog: &str,
    args: &[&str],
    dir: &Path,
    out: &Path,
    warmup: usize,
    more: usize,
    check: fn(&[String]) -> u64,
) -> (
    Child,
    godwit_checkpoint::DumpStats,
    godwit_checkpoint::RestoreStats,
) {
    use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, RestoreOptions};
    let t = Duration::from_secs(30);
    let mut w = spawn_in_ns(&workload(prog), args, dir);
    wait_for(out, "warm-up lines", t, |l| l.len() >= warmup);
    let img = dir.join("img");
    let pids = godwit_checkpoint::host::tree(w.pid).expect("tree");
    let ds = dump(&pids, &img, &DumpOptions::default()).expect("dump");
    w.wait_gone();
    let before = lines(out);
    let last = check(&before);
    let stub = Stub::spawn().expect("stub");
    let rs = restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let restored = Child::adopt(stub.release());
    let after = wait_for(out, "lines after restore", t, |l| {
        l.len() >= before.len() + more || l.last().is_some_and(|s| s.contains("BAD"))
    });
    let n = check(&after);
    assert!(n >= last + more as u64, "did not continue: {last} → {n}");
    assert!(restored.alive(), "restored workload exited");
    (restored, ds, rs)
}

/// Runs `f` on a thread inside the network namespace of `pid`.
pub fn in_netns<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns of this helper thread only.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns"
            );
            f()
        })
        .join()
        .unwrap()
    })
}

/// "ping N" → "pong N" against sockcheck's TCP server in the netns of `pid`.
pub fn ping(pid: i32, port: u16, n: u32) -> String {
    in_netns(pid, move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("ping {n}\n").as_bytes()).unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    })
}

/// Brings the loopback interface up in the calling thread's network namespace.
pub fn loopback_up() {
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS on a plain socket with an ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        assert_eq!(libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(s, libc::SIOCSIFFLAGS, &mut ifr), 0);
        libc::close(s);
    }
}

/// A field of /proc/PID/status without its key ("" if missing).
pub fn status_field(pid: i32, key: &str) -> String {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
        .to_string()
}
