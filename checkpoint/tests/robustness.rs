//! The dumper under conditions a container brings: a stub with a low
//! RLIMIT_NOFILE, and a dumper killed in the middle of a dump.

use std::time::Duration;

use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, RestoreOptions};
use godwit_test_support::*;

const T: Duration = Duration::from_secs(20);

fn set_nofile(pid: i32, limit: u64) {
    let l = libc::rlimit64 {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit64 with a valid struct and no old-value pointer.
    let r = unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, &l, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A container's init has RLIMIT_NOFILE 1024 (the OCI default): pipes and
/// shared memory, parked on spare fds while the tree is rebuilt, must fit.
#[test]
fn restore_into_a_stub_limited_to_1024_files() {
    for prog in ["pipetree", "shmtree"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut w = spawn_in_ns(&workload(prog), &[out.to_str().unwrap()], tmp.path());
        wait_for(&out, "lines", T, |l| l.len() >= 10);
        let img = tmp.path().join("img");
        let pids = godwit_checkpoint::host::tree(w.pid).unwrap();
        dump(&pids, &img, &DumpOptions::default()).expect("dump");
        w.wait_gone();
        let n = lines(&out).len();
        let stub = Stub::spawn().unwrap();
        set_nofile(stub.pid, 1024);
        restore(&img, stub.pid, &RestoreOptions::default())
            .unwrap_or_else(|e| panic!("restore of {prog} into a 1024-file stub: {e}"));
        let _c = Child::adopt(stub.release());
        let l = wait_for(&out, "lines after restore", T, |l| {
            l.len() >= n + 20 || l.iter().any(|s| s.contains("BAD"))
        });
        assert!(assert_ticks(&l) >= n as u64 + 20);
    }
}

/// A dumper SIGKILLed while it copies the pages: the kernel detaches its
/// tracees and they run on — on their own registers, signal mask and CPU
/// affinity, with no scratch page left in their address space.
#[test]
fn a_dumper_killed_while_copying_pages_leaves_the_workload_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let w = spawn_in_ns(
        &workload("memcheck"),
        &["400", out.to_str().unwrap(), "5"],
        tmp.path(),
    );
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    let maps = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let (maps_before, blocked, cpus) = (
        maps(w.pid),
        status_field(w.pid, "SigBlk"),
        status_field(w.pid, "Cpus_allowed_list"),
    );
    let img = tmp.path().join("img");
    // SAFETY: the child only runs the dump and _exits; it never returns
    // into the test harness.
    let dumper = unsafe { libc::fork() };
    assert!(dumper >= 0);
    if dumper == 0 {
        let r = dump(&[w.pid], &img, &DumpOptions::default());
        // SAFETY: leave the forked child without running the harness's code.
        unsafe { libc::_exit(if r.is_ok() { 0 } else { 1 }) };
    }
    let dumper = Child::adopt(dumper);
    // Kill it once the copy is under way (some MiB of pages written).
    let pages = img.join("pages-1.img");
    let deadline = std::time::Instant::now() + T;
    while std::fs::metadata(&pages).map(|m| m.len()).unwrap_or(0) < 16 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never copied pages"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(dumper); // SIGKILL and reap
    let n = lines(&out).len();
    let l = wait_for(&out, "lines after the dumper died", T, |l| {
        l.len() >= n + 20 || l.iter().any(|s| s.contains("BAD"))
    });
    assert_ticks(&l);
    assert!(w.alive(), "the workload died with its dumper");
    assert!(!matches!(w.state(), 't' | 'T' | 'Z'), "state {}", w.state());
    assert_eq!(status_field(w.pid, "TracerPid"), "0");
    assert_eq!(status_field(w.pid, "SigBlk"), blocked, "signal mask");
    assert_eq!(
        status_field(w.pid, "Cpus_allowed_list"),
        cpus,
        "CPU affinity"
    );
    assert_eq!(maps(w.pid), maps_before, "no scratch page left");
}

/// A tmpfs of `size` on a temp dir of its own, unmounted on drop.
struct SmallTmpfs(tempfile::TempDir);

impl SmallTmpfs {
    fn new(size: &str) -> SmallTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (src, target, opts) = (
            c("tmpfs"),
            c(dir.path().to_str().unwrap()),
            c(&format!("size={size}")),
        );
        // SAFETY: mount(2) with valid C strings.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        SmallTmpfs(dir)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.path().to_str().unwrap()).unwrap();
        // SAFETY: umount2(2) of the mount we made.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// An image directory on a full disk: the dump fails (naming ENOSPC) — it
/// used to hang, its page reader waiting for a buffer the failed writer
/// would never hand back — and the workload runs on.
#[test]
fn a_full_disk_fails_the_dump_and_the_workload_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let w = spawn_in_ns(
        &workload("memcheck"),
        &["32", out.to_str().unwrap()],
        tmp.path(),
    );
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    let small = SmallTmpfs::new("2m");
    let img = small.0.path().join("img");
    let pid = w.pid;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(dump(&[pid], &img, &DumpOptions::default()).map(|_| ()));
    });
    let err = rx
        .recv_timeout(T)
        .expect("the dump hung on a full disk")
        .expect_err("a dump into 2 MiB must fail");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    let n = lines(&out).len();
    let l = wait_for(&out, "lines after the failed dump", T, |l| {
        l.len() >= n + 10 || l.iter().any(|s| s.contains("BAD"))
    });
    assert_ticks(&l);
    assert!(!matches!(w.state(), 't' | 'T' | 'Z'), "state {}", w.state());
    assert_eq!(status_field(w.pid, "TracerPid"), "0");
}
