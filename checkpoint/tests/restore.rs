//! End-to-end: real workloads in their own pid + mount namespace, dumped,
//! killed, restored into a stub, checked by their own output.

use std::time::Duration;

use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, Error, RestoreOptions};
use godwit_test_support::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn counter_continues_after_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let count = tmp.path().join("count");
    let mut w = spawn_in_ns(
        &workload("counter"),
        &["10", count.to_str().unwrap()],
        tmp.path(),
    );
    wait_for(&count, "5 lines", T, |l| l.len() >= 5);
    let img = tmp.path().join("img");
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", w.pid)).unwrap();
    // mm fields: exe link, argument and environment areas, auxv.
    let mm = |pid: i32| {
        (
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
            std::fs::read(format!("/proc/{pid}/environ")).unwrap(),
            std::fs::read(format!("/proc/{pid}/auxv")).unwrap(),
        )
    };
    let mm_before = mm(w.pid);
    let stats = dump(&[w.pid], &img, &DumpOptions::default()).expect("dump");
    assert_eq!(stats.processes, 1);
    w.wait_gone();
    let before = lines(&count);
    let last = assert_consecutive(&before);

    let stub = Stub::spawn().unwrap();
    let _r = restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let restored = Child::adopt(stub.release());
    let after = wait_for(&count, "new lines after restore", T, |l| {
        l.len() >= before.len() + 5
    });
    assert!(restored.alive());
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", restored.pid)).unwrap();
    assert_eq!(
        mm_before,
        mm(restored.pid),
        "exe/cmdline/environ/auxv differ"
    );
    assert_eq!(
        strip_dev_ino(&maps_before),
        strip_dev_ino(&maps_after),
        "maps differ"
    );
    let n = assert_consecutive(&after);
    assert!(n > last + 4, "counter did not continue: {last} → {n}");
    // stdout (not O_APPEND) continued at the dumped offset.
    let out = lines(&tmp.path().join("stdout"));
    assert_consecutive(&out);
}

/// maps lines without the dev/inode columns.
fn strip_dev_ino(m: &str) -> Vec<String> {
    m.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {}", f[0], f[1], f[2], f.get(5).unwrap_or(&""))
        })
        .collect()
}

#[test]
fn memory_of_every_kind_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (c, ds, _rs) = roundtrip(
        "memcheck",
        &["200", out.to_str().unwrap()],
        tmp.path(),
        &out,
        3,
        10,
        assert_ticks,
    );
    // MADV_DONTFORK on the big mapping survives (smaps VmFlags "dc").
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", c.pid)).unwrap();
    assert!(
        smaps
            .lines()
            .any(|l| l.starts_with("VmFlags:") && l.contains(" dc")),
        "no dc flag"
    );
    // 200 MiB of pattern plus heap etc., but not untouched file pages.
    assert!(
        ds.pages_written >= 200 * 256,
        "pages written {}",
        ds.pages_written
    );
    assert!(
        ds.pages_written < 220 * 256,
        "pages written {}",
        ds.pages_written
    );
}

#[test]
fn threads_blocked_in_syscalls_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (c, ds, _) = roundtrip(
        "threads",
        &["40", out.to_str().unwrap()],
        tmp.path(),
        &out,
        25,
        60,
        assert_ticks,
    );
    assert_eq!(ds.threads, 41);
    // Same tids in the namespace: the restored process has 41 tasks.
    assert_eq!(
        std::fs::read_dir(format!("/proc/{}/task", c.pid))
            .unwrap()
            .count(),
        41
    );
}

#[test]
fn signals_handlers_altstack_pending_itimer_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (c, _, _) = roundtrip(
        "sigcheck",
        &[out.to_str().unwrap()],
        tmp.path(),
        &out,
        5,
        120,
        assert_ticks,
    );
    // Pending in the right queues: SIGUSR2 for the thread, SIGWINCH shared.
    let st = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    let mask = |k: &str| {
        let v = st.lines().find(|l| l.starts_with(k)).unwrap();
        u64::from_str_radix(v.split_whitespace().last().unwrap(), 16).unwrap()
    };
    assert_ne!(mask("SigPnd:") & (1 << (libc::SIGUSR2 - 1)), 0, "{st}");
    assert_ne!(mask("ShdPnd:") & (1 << (libc::SIGWINCH - 1)), 0, "{st}");
}

#[test]
fn files_offsets_flags_and_pipe_bytes_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let text: String = (0..100000).map(|i| format!("{i:07}\n")).collect();
    std::fs::write(&data, text).unwrap();
    let log = tmp.path().join("log");
    roundtrip(
        "fdcheck",
        &[data.to_str().unwrap(), log.to_str().unwrap()],
        tmp.path(),
        &log,
        5,
        20,
        assert_ticks,
    );
}

#[test]
fn leave_running_keeps_the_workload_running() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let w = spawn_in_ns(
        &workload("memcheck"),
        &["16", out.to_str().unwrap()],
        tmp.path(),
    );
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    let img = tmp.path().join("img");
    let opts = DumpOptions {
        leave_running: true,
        ..Default::default()
    };
    dump(&[w.pid], &img, &opts).expect("dump");
    let n = lines(&out).len();
    let l = wait_for(&out, "lines after dump", T, |l| l.len() >= n + 20);
    assert_ticks(&l);
    assert!(w.alive());
    assert!(!matches!(w.state(), 't' | 'T' | 'Z'), "state {}", w.state());
    // And the image restores (into a second namespace) with the same state.
    let out2 = tmp.path().join("out");
    let _ = out2;
}

#[test]
fn unsupported_fd_fails_cleanly_and_workload_keeps_running() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let w = spawn_in_ns(&workload("inotify"), &[out.to_str().unwrap()], tmp.path());
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    let img = tmp.path().join("img");
    let err = dump(&[w.pid], &img, &DumpOptions::default()).expect_err("dump must fail");
    match &err {
        Error::UnsupportedFd { pid, fd, kind } => {
            assert_eq!(*pid, w.pid);
            assert_eq!(*fd, 4, "{err}");
            assert_eq!(kind, "inotify");
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("fd 4") && msg.contains("inotify"), "{msg}");
    let n = lines(&out).len();
    let l = wait_for(&out, "lines after failed dump", T, |l| l.len() >= n + 10);
    assert_ticks(&l);
    assert!(!matches!(w.state(), 't' | 'T' | 'Z'), "state {}", w.state());
}

/// Dumps a counter (leave running) for the corruption tests.
fn dumped_counter(tmp: &std::path::Path) -> (Child, std::path::PathBuf) {
    let out = tmp.join("out");
    let w = spawn_in_ns(&workload("counter"), &["10", out.to_str().unwrap()], tmp);
    wait_for(&out, "lines", T, |l| l.len() >= 2);
    let img = tmp.join("img");
    let opts = DumpOptions {
        leave_running: true,
        ..Default::default()
    };
    dump(&[w.pid], &img, &opts).expect("dump");
    (w, img)
}

/// Restoring `img` must fail before the stub is touched: it stays stopped.
fn assert_refused(img: &std::path::Path, what: &str) -> String {
    let stub = Stub::spawn().unwrap();
    let err = restore(img, stub.pid, &RestoreOptions::default()).expect_err(what);
    let s = std::fs::read_to_string(format!("/proc/{}/stat", stub.pid)).unwrap();
    assert!(s.contains(") T "), "stub was touched: {s}");
    err.to_string()
}

#[test]
fn corrupt_truncated_and_foreign_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, img) = dumped_counter(tmp.path());
    let pages = std::fs::read_dir(&img)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pages-")
        })
        .unwrap();
    let orig = std::fs::read(&pages).unwrap();

    // One flipped bit in the page data.
    let mut bad = orig.clone();
    bad[orig.len() / 2] ^= 1;
    std::fs::write(&pages, &bad).unwrap();
    let e = assert_refused(&img, "corrupt pages");
    assert!(e.contains("corrupt") && e.contains("pages-"), "{e}");

    // Truncated.
    std::fs::write(&pages, &orig[..orig.len() - 4096]).unwrap();
    let e = assert_refused(&img, "truncated pages");
    assert!(e.contains("truncated"), "{e}");
    std::fs::write(&pages, &orig).unwrap();

    // A process record changed.
    let rec = img.join("process-1.json");
    let r = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(&rec, r.replacen("\"comm\":\"", "\"comm\":\"X", 1)).unwrap();
    let e = assert_refused(&img, "modified record");
    assert!(e.contains("process-1.json"), "{e}");
    std::fs::write(&rec, r).unwrap();

    // Unknown major version, other architecture, truncated inventory.
    let inv = img.join("inventory.json");
    let i = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        i.replace(
            &format!("\"major\":{}", godwit_checkpoint::image::FORMAT_MAJOR),
            "\"major\":99",
        ),
    )
    .unwrap();
    let e = assert_refused(&img, "major 99");
    assert!(e.contains("format version 99"), "{e}");
    std::fs::write(&inv, i.replace("\"x86_64\"", "\"aarch64\"")).unwrap();
    let e = assert_refused(&img, "aarch64");
    assert!(e.contains("aarch64"), "{e}");
    std::fs::write(&inv, &i[..i.len() / 2]).unwrap();
    let e = assert_refused(&img, "half inventory");
    assert!(e.contains("inventory.json"), "{e}");
}

#[test]
fn process_tree_with_pipes_in_flight_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (c, ds, rs) = roundtrip(
        "pipetree",
        &[out.to_str().unwrap()],
        tmp.path(),
        &out,
        10,
        40,
        assert_ticks,
    );
    assert_eq!(ds.processes, 3);
    assert_eq!(rs.processes, 3);
    let tree = godwit_checkpoint::host::tree(c.pid).unwrap();
    assert_eq!(tree.len(), 3, "restored tree {tree:?}");
}

#[test]
fn eventfd_epoll_timerfd_signalfd_loop_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    roundtrip(
        "evcheck",
        &[out.to_str().unwrap()],
        tmp.path(),
        &out,
        10,
        40,
        assert_ticks,
    );
}

#[test]
fn tcp_server_in_its_netns_serves_after_restore_with_sockets_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let port = 7300u16;
    let mut w = spawn_in_ns_with(
        &workload("sockcheck"),
        &[out.to_str().unwrap(), &port.to_string()],
        tmp.path(),
        libc::CLONE_NEWNET,
    );
    wait_for(&out, "lines", T, |l| l.len() >= 5);
    assert_eq!(ping(w.pid, port, 1), "pong 1\n");
    let img = tmp.path().join("img");
    dump(&[w.pid], &img, &DumpOptions::default()).expect("dump");
    w.wait_gone();
    let before = lines(&out);
    assert_ticks(&before);

    let stub = Stub::spawn_with(libc::CLONE_NEWNET).unwrap();
    // The runtime sets up the network namespace; here: loopback up.
    in_netns(stub.pid, loopback_up);
    restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let c = Child::adopt(stub.release());
    let l = wait_for(&out, "lines after restore", T, |l| {
        l.len() >= before.len() + 20
    });
    assert_ticks(&l);
    assert_eq!(ping(c.pid, port, 2), "pong 2\n");
    assert_eq!(ping(c.pid, port, 3), "pong 3\n");
    let l = wait_for(&out, "served count", T, |l| {
        l.last().is_some_and(|s| s.ends_with(" 3"))
    });
    assert_ticks(&l);
}

#[test]
fn interrupted_nanosleep_continues_with_its_remaining_time() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut w = spawn_in_ns(
        &workload("sleepcheck"),
        &[out.to_str().unwrap(), "400"],
        tmp.path(),
    );
    wait_for(&out, "first round", T, |l| !l.is_empty());
    // Dump in the middle of a round.
    std::thread::sleep(Duration::from_millis(150));
    let img = tmp.path().join("img");
    let frozen = std::time::Instant::now();
    dump(&[w.pid], &img, &DumpOptions::default()).expect("dump");
    w.wait_gone();
    let n = lines(&out).len();
    std::thread::sleep(Duration::from_millis(100));
    let stub = Stub::spawn().unwrap();
    restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let _c = Child::adopt(stub.release());
    // The blackout as seen from here (dump, wait, restore: longer on a
    // loaded machine); the workload's clock does not see it stop.
    let blackout = frozen.elapsed().as_millis() as u64;
    let l = wait_for(&out, "rounds after restore", T, |l| l.len() >= n + 2);
    assert_ticks(&l);
    // The interrupted round: >= 150 ms before the dump + the blackout + the
    // remaining <= 250 ms; restarting from the beginning would take >= 150 +
    // blackout + 400.
    let took: u64 = l[n].split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        (400..blackout + 520).contains(&took),
        "interrupted round took {took} ms (blackout {blackout} ms)"
    );
}

#[test]
fn seccomp_filter_and_no_new_privs_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (c, _, _) = roundtrip(
        "seccheck",
        &[out.to_str().unwrap()],
        tmp.path(),
        &out,
        5,
        20,
        assert_ticks,
    );
    let st = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    assert!(
        st.contains("Seccomp:\t2") && st.contains("Seccomp_filters:\t1"),
        "{st}"
    );
}

#[test]
fn shared_anonymous_memory_and_memfd_stay_shared_between_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (_, ds, _) = roundtrip(
        "shmtree",
        &[out.to_str().unwrap()],
        tmp.path(),
        &out,
        25,
        60,
        assert_ticks,
    );
    assert_eq!(ds.processes, 2);
    // Both processes hold the memfd open: its content is a file of the
    // image per fd (format 2), not hex inside the process record.
    let img = tmp.path().join("img");
    let blobs: Vec<String> = std::fs::read_dir(&img)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("memfd-") && n.ends_with(".img"))
        .collect();
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    for blob in &blobs {
        assert_eq!(std::fs::metadata(img.join(blob)).unwrap().len(), 65536);
    }
    let inventory = std::fs::read_to_string(img.join("inventory.json")).unwrap();
    assert!(
        blobs.iter().all(|b| inventory.contains(b.as_str())),
        "{inventory}"
    );
    let record = std::fs::read_to_string(img.join("process-1.json")).unwrap();
    assert!(record.contains("\"blob\"") && !record.contains("\"data\""));
}

#[test]
fn creds_session_umask_cwd_personality_comm_rlimits_survive() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("work")).unwrap();
    let out = tmp.path().join("out");
    let (c, _, rs) = roundtrip(
        "credcheck",
        &[out.to_str().unwrap()],
        tmp.path(),
        &out,
        5,
        20,
        assert_ticks,
    );
    assert!(rs.clamped_rlimits.is_empty(), "{:?}", rs.clamped_rlimits);
    let st = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    // setsid() in the namespace's init: it leads its own session, id 1.
    assert!(
        st.lines()
            .any(|l| l.starts_with("NSsid:") && l.split_whitespace().last() == Some("1")),
        "{st}"
    );
}

#[test]
fn zstd_compressed_image_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut w = spawn_in_ns(
        &workload("memcheck"),
        &["32", out.to_str().unwrap()],
        tmp.path(),
    );
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    let img = tmp.path().join("img");
    let opts = DumpOptions {
        zstd_level: Some(3),
        ..Default::default()
    };
    dump(&[w.pid], &img, &opts).expect("dump");
    w.wait_gone();
    // A zstd frame (the pattern data itself is incompressible).
    let head = std::fs::read(img.join("pages-1.img")).unwrap();
    assert_eq!(&head[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not zstd");
    let n = lines(&out).len();
    let stub = Stub::spawn().unwrap();
    restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let _c = Child::adopt(stub.release());
    let l = wait_for(&out, "lines after restore", T, |l| l.len() >= n + 10);
    assert_ticks(&l);
}

/// A cgroup directory removed on drop (after its processes are gone).
struct TempCgroup(std::path::PathBuf);

impl Drop for TempCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn dump_with_the_cgroup_frozen_v1_and_v2() {
    for (root, name) in [
        ("/sys/fs/cgroup/freezer", "v1"),
        ("/sys/fs/cgroup/unified", "v2"),
    ] {
        if !std::path::Path::new(root).exists() {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let cg = TempCgroup(std::path::PathBuf::from(format!(
            "{root}/godwit-test-{}-{name}",
            std::process::id()
        )));
        std::fs::create_dir(&cg.0).unwrap();
        let mut w = spawn_in_ns(&workload("pipetree"), &[out.to_str().unwrap()], tmp.path());
        wait_for(&out, "lines", T, |l| l.len() >= 5);
        let pids = godwit_checkpoint::host::tree(w.pid).unwrap();
        for p in &pids {
            std::fs::write(cg.0.join("cgroup.procs"), p.to_string()).unwrap();
        }
        let img = tmp.path().join("img");
        let opts = DumpOptions {
            freeze_cgroup: Some(cg.0.clone()),
            ..Default::default()
        };
        let ds = dump(&pids, &img, &opts).unwrap_or_else(|e| panic!("dump ({name}): {e}"));
        assert_eq!(ds.processes, 3);
        w.wait_gone();
        let n = lines(&out).len();
        let stub = Stub::spawn().unwrap();
        restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
        let _c = Child::adopt(stub.release());
        let l = wait_for(&out, "lines after restore", T, |l| l.len() >= n + 20);
        assert_ticks(&l);
    }
}

#[test]
fn restore_refuses_a_mapped_file_that_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("counter-copy");
    std::fs::copy(workload("counter"), &exe).unwrap();
    let out = tmp.path().join("out");
    let mut w = spawn_in_ns(&exe, &["10", out.to_str().unwrap()], tmp.path());
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    let img = tmp.path().join("img");
    dump(&[w.pid], &img, &DumpOptions::default()).expect("dump");
    w.wait_gone();
    // Same path, different content.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let msg = assert_refused(&img, "changed file");
    assert!(
        msg.contains("counter-copy") && msg.contains("changed since the dump"),
        "{msg}"
    );
}

#[test]
fn a_stopped_process_stays_stopped_after_dump_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut w = spawn_in_ns(
        &workload("counter"),
        &["10", out.to_str().unwrap()],
        tmp.path(),
    );
    wait_for(&out, "lines", T, |l| l.len() >= 3);
    // SAFETY: signals to our own child.
    unsafe { libc::kill(w.pid, libc::SIGSTOP) };
    let stopped = |c: &Child| {
        for _ in 0..200 {
            if c.state() == 'T' {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    };
    assert!(stopped(&w));
    let img = tmp.path().join("img");
    let opts = DumpOptions {
        leave_running: true,
        ..Default::default()
    };
    dump(&[w.pid], &img, &opts).expect("dump");
    assert!(
        stopped(&w),
        "leave-running woke a stopped process: {}",
        w.state()
    );
    let n = lines(&out).len();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lines(&out).len(), n, "the stopped process ran");
    // SAFETY: kill our own child.
    unsafe { libc::kill(w.pid, libc::SIGKILL) };
    w.wait_gone();

    let stub = Stub::spawn().unwrap();
    restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let c = Child::adopt(stub.release());
    assert!(
        stopped(&c),
        "restored process is not stopped: {}",
        c.state()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lines(&out).len(), n, "the restored stopped process ran");
    // SAFETY: continue our own child.
    unsafe { libc::kill(c.pid, libc::SIGCONT) };
    let l = wait_for(&out, "lines after SIGCONT", T, |l| l.len() >= n + 5);
    assert_consecutive(&l);
}
