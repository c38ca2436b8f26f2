//! Benchmark (not a test): dump/restore time and MB/s for resident memory of
//! several sizes, dump/restore time for many threads, against this machine's
//! own limits measured in the same run (dd bs=4M into the image directory;
//! a fresh process faulting in and filling the same memory), and against
//! CRIU when `CRIU=/path/to/criu` is set. Run through `hack/bench-dump`.
//!
//! Environment: WORKLOADS (dir with memcheck, threads), BENCH_DIR (image
//! directory parent), BENCH_MIB (e.g. "64,1024,4096"), BENCH_THREADS
//! (e.g. "10,100,1000,5000"), CRIU.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, RestoreOptions};

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

struct Child(i32);

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own child by pid.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// `prog args` as pid 1 of a new pid + mount namespace, output to /dev/null.
fn spawn_in_ns(prog: &Path, args: &[&str]) -> Child {
    let path = CString::new(prog.to_str().expect("utf-8 path")).expect("path");
    let mut argv_c = vec![path.clone()];
    argv_c.extend(args.iter().map(|a| CString::new(*a).expect("arg")));
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let null = CString::new("/dev/null").expect("cstr");
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::SIGCHLD;
    // SAFETY: fork-like clone; the child makes async-signal-safe calls only.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags as u64, 0u64, 0u64, 0u64, 0u64) };
    assert!(pid >= 0, "clone failed");
    if pid == 0 {
        // SAFETY: child side.
        unsafe {
            let n = libc::open(null.as_ptr(), libc::O_RDWR);
            libc::dup2(n, 0);
            libc::dup2(n, 1);
            libc::dup2(n, 2);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    Child(pid as i32)
}

fn wait_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let l: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if l.len() >= n {
            return l;
        }
        assert!(
            start.elapsed() < timeout,
            "timeout waiting for {} lines in {}",
            n,
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// dd bs=4M of `mib` MiB into `dir` (fsync'd, as the dump is).
fn dd_rate(dir: &Path, mib: u64) -> f64 {
    let f = dir.join("dd.img");
    let t = Instant::now();
    let st = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", f.display()))
        .arg("bs=4M")
        .arg(format!("count={}", mib.div_ceil(4)))
        .arg("conv=fsync")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("dd");
    let d = t.elapsed();
    let _ = std::fs::remove_file(&f);
    assert!(st.success());
    mib as f64 / secs(d)
}

/// A fresh process mapping and filling `mib` MiB (first touch of every page).
fn fill_rate(mib: u64) -> f64 {
    let t = Instant::now();
    // SAFETY: fork in a single-threaded program; the child only mmaps, writes, exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let len = (mib << 20) as usize;
        // SAFETY: anonymous mapping, filled and abandoned.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                libc::_exit(1);
            }
            libc::memset(p, 0x5a, len);
            libc::_exit(0);
        }
    }
    let mut st = 0;
    // SAFETY: reap our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    mib as f64 / secs(t.elapsed())
}

struct Round {
    dump: Duration,
    restore: Duration,
}

/// Starts a workload, waits until it printed `warm` lines, dumps, restores,
/// and checks that it continues.
fn round(prog: &Path, args: &[&str], out: &Path, img: &Path, warm: usize) -> Round {
    let w = spawn_in_ns(prog, args);
    wait_lines(out, warm, Duration::from_secs(600));
    let t = Instant::now();
    let ds = dump(&[w.0], img, &DumpOptions::default()).expect("dump");
    let dump_t = t.elapsed();
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("{ds:?}");
    }
    drop(w);
    let n = wait_lines(out, 0, Duration::from_secs(1)).len();
    let stub = Stub::spawn().expect("stub");
    let t = Instant::now();
    let rs = restore(img, stub.pid, &RestoreOptions::default()).expect("restore");
    let restore_t = t.elapsed();
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("{rs:?}");
    }
    let restored = Child(stub.release());
    let l = wait_lines(out, n + 2, Duration::from_secs(600));
    assert!(
        l.iter().all(|s| s.contains(" ok")),
        "workload reported a failure after restore"
    );
    drop(restored);
    Round {
        dump: dump_t,
        restore: restore_t,
    }
}

fn criu_round(
    criu: &str,
    prog: &Path,
    args: &[&str],
    out: &Path,
    dir: &Path,
    warm: usize,
) -> Option<Round> {
    let w = spawn_in_ns(prog, args);
    wait_lines(out, warm, Duration::from_secs(600));
    let img = dir.join("criu");
    std::fs::create_dir_all(&img).ok()?;
    let t = Instant::now();
    let ok = Command::new(criu)
        .args([
            "dump",
            "-t",
            &w.0.to_string(),
            "-D",
            img.to_str()?,
            "--shell-job",
            "--file-locks",
        ])
        .status()
        .ok()?
        .success();
    let dump_t = t.elapsed();
    drop(w);
    if !ok {
        eprintln!("criu dump failed");
        return None;
    }
    let t = Instant::now();
    let ok = Command::new(criu)
        .args([
            "restore",
            "-D",
            img.to_str()?,
            "--shell-job",
            "-d",
            "--pidfile",
            img.join("pid").to_str()?,
        ])
        .status()
        .ok()?
        .success();
    let restore_t = t.elapsed();
    if let Ok(p) = std::fs::read_to_string(img.join("pid")) {
        if let Ok(pid) = p.trim().parse::<i32>() {
            // SAFETY: kill the restored tree by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = std::fs::remove_dir_all(&img);
    ok.then_some(Round {
        dump: dump_t,
        restore: restore_t,
    })
}

fn main() {
    let workloads =
        PathBuf::from(std::env::var("WORKLOADS").expect("WORKLOADS=dir of built workloads"));
    let base = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into()));
    let criu = std::env::var("CRIU").ok();
    let tmp = base.join(format!("godwit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("bench dir");
    println!("# godwit bench-dump: images in {}", tmp.display());

    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>10}",
        "MiB",
        "dump s",
        "dump MB/s",
        "dd MB/s",
        "rest s",
        "rest MB/s",
        "fill MB/s",
        "dump/dd",
        "rest/fill",
        "criu dump",
        "criu rest"
    );
    for mib in env_list("BENCH_MIB", "64,1024,4096") {
        let out = tmp.join(format!("mem-{mib}.out"));
        let img = tmp.join(format!("mem-{mib}"));
        // First touch of guest memory is expensive in a VM: warm up as much
        // as the round will use (workload + image + restored copy) so that
        // the limits and godwit see the same kind of memory.
        fill_rate(2 * mib);
        let fill = fill_rate(mib);
        let dd = dd_rate(&tmp, mib);
        let r = round(
            &workloads.join("memcheck"),
            &[&mib.to_string(), out.to_str().unwrap_or_default(), "200"],
            &out,
            &img,
            1,
        );
        let _ = std::fs::remove_dir_all(&img);
        let (dr, rr) = (mib as f64 / secs(r.dump), mib as f64 / secs(r.restore));
        let c = criu.as_deref().and_then(|c| {
            criu_round(
                c,
                &workloads.join("memcheck"),
                &[&mib.to_string(), out.to_str().unwrap_or_default(), "200"],
                &out,
                &tmp,
                1,
            )
        });
        let (cd, cr) = c.map_or(("-".to_string(), "-".to_string()), |c| {
            (
                format!("{:.2}", secs(r.dump) / secs(c.dump)),
                format!("{:.2}", secs(r.restore) / secs(c.restore)),
            )
        });
        println!("{mib:>8} {:>9.3} {dr:>9.0} {dd:>9.0} {:>9.3} {rr:>9.0} {fill:>9.0} {:>8.2} {:>9.2} {cd:>10} {cr:>10}",
            secs(r.dump), secs(r.restore), dr / dd, rr / fill);
        let _ = std::fs::remove_file(&out);
    }

    println!();
    println!(
        "{:>8} {:>9} {:>9} {:>10} {:>10}",
        "threads", "dump s", "rest s", "criu dump", "criu rest"
    );
    let mut dump_at = std::collections::BTreeMap::new();
    for n in env_list("BENCH_THREADS", "10,100,1000,5000") {
        let out = tmp.join(format!("thr-{n}.out"));
        let img = tmp.join(format!("thr-{n}"));
        let r = round(
            &workloads.join("threads"),
            &[&n.to_string(), out.to_str().unwrap_or_default(), "50"],
            &out,
            &img,
            2,
        );
        let _ = std::fs::remove_dir_all(&img);
        let c = criu.as_deref().and_then(|c| {
            criu_round(
                c,
                &workloads.join("threads"),
                &[&n.to_string(), out.to_str().unwrap_or_default(), "50"],
                &out,
                &tmp,
                2,
            )
        });
        let (cd, cr) = c.map_or(("-".to_string(), "-".to_string()), |c| {
            (
                format!("{:.2}", secs(r.dump) / secs(c.dump)),
                format!("{:.2}", secs(r.restore) / secs(c.restore)),
            )
        });
        println!(
            "{n:>8} {:>9.3} {:>9.3} {cd:>10} {cr:>10}",
            secs(r.dump),
            secs(r.restore)
        );
        dump_at.insert(n, secs(r.dump));
        let _ = std::fs::remove_file(&out);
    }
    if let (Some(a), Some(b)) = (dump_at.get(&1000), dump_at.get(&5000)) {
        println!("dump time 5000/1000 threads: {:.2} (target <= 6)", b / a);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
