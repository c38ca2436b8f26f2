//! `godwit checkpoint` / `godwit restore` of real containers on this host.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

/// `godwit restore --detach` of the image in `image` on `bundle` as `id`.
fn restore_detached(g: &Godwit, image: &std::path::Path, bundle: &Bundle, id: &str) {
    g.ok_null(&[
        "restore",
        "--detach",
        "--image-path",
        image.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        id,
    ]);
}

fn counts(file: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn checkpointed_counter_continues_after_restore() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("ckpt");
    g.start_detached_null(&bundle, &id);
    let first_pid = g.pid(&id);
    wait_for("counter ticks", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n >= 5)
    });
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    // The source container is gone, and the counter stopped with it.
    assert!(!g.state_dir(&id).exists());
    // Gone, or a zombie awaiting the host's (slow) reaper.
    let stat = std::fs::read_to_string(format!("/proc/{first_pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
    let at_dump = last_count(&count).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        last_count(&count),
        Some(at_dump),
        "nothing runs after the checkpoint"
    );
    // Image files are private.
    for entry in std::fs::read_dir(&image).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(
        std::fs::metadata(&image).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let id2 = g.id("restored");
    restore_detached(&g, &image, &bundle, &id2);
    assert_eq!(g.status(&id2), "running");
    wait_for("counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n >= at_dump + 5)
    });
    // Every number once, in order: no reset, no gap, no repeat.
    let numbers = counts(&count);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "counter continued from {at_dump}: {numbers:?}"
    );
    // The restored container is an ordinary one: exec, ps, kill, delete.
    let out = g.ok(&[
        "exec",
        &id2,
        "sh",
        "-c",
        "echo $$ > /dev/null; tail -n1 /tmp/count",
    ]);
    assert!(out.trim().parse::<u64>().unwrap() > at_dump);
    let pids: Vec<i32> = serde_json::from_str(&g.ok(&["ps", "--format", "json", &id2])).unwrap();
    assert!(pids.contains(&g.pid(&id2)));
    g.ok(&["kill", &id2, "KILL"]);
    wait_for("stopped", Duration::from_secs(10), || {
        (g.status(&id2) == "stopped").then_some(())
    });
    g.ok(&["delete", &id2]);
    assert!(!g.state_dir(&id2).exists());
}

#[test]
fn leave_running_keeps_the_container_going() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("leave");
    g.start_detached_null(&bundle, &id);
    wait_for("counter ticks", Duration::from_secs(10), || {
        last_count(&count)
    });
    let image = g.root.path().join("image");
    g.ok(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        image.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(g.status(&id), "running");
    let at_dump = last_count(&count).unwrap();
    wait_for("counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n >= at_dump + 5)
    });
    assert!(counts(&count)
        .iter()
        .enumerate()
        .all(|(i, &n)| n == i as u64));
    assert!(image.join("inventory.json").exists());
}

#[test]
fn failed_checkpoint_leaves_the_container_running() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("ckfail");
    g.start_detached_null(&bundle, &id);
    wait_for("counter ticks", Duration::from_secs(10), || {
        last_count(&count)
    });
    let image = g.root.path().join("image");
    // A flag the dumper does not implement is refused by name.
    let err = g.fails(&[
        "checkpoint",
        "--pre-dump",
        "--image-path",
        image.to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("--pre-dump"), "{err}");
    // A process holding an fd of a kind the dumper does not support (an
    // inotify instance) fails the dump by name.
    g.ok_detached(&["exec", "--detach", &id, "inotify", "/tmp/inotify.out"]);
    let err = g.fails(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    assert!(err.contains("not supported"), "{err}");
    assert!(!image.exists(), "the partial image is removed");
    assert_eq!(g.status(&id), "running");
    let before = last_count(&count).unwrap();
    wait_for("counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n > before + 3)
    });
}

#[test]
fn failed_restore_leaves_nothing_behind() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("src");
    g.start_detached_null(&bundle, &id);
    wait_for("counter ticks", Duration::from_secs(10), || {
        last_count(&count)
    });
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);

    // Not an image at all.
    let empty = g.root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let id2 = g.id("bad");
    let err = g.fails(&[
        "restore",
        "--detach",
        "--image-path",
        empty.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id2,
    ]);
    assert!(err.contains("inventory.json"), "{err}");
    assert!(!g.state_dir(&id2).exists());

    // A bundle without the program the image maps: refused, naming it. (The
    // image's rootfs diff holds every file made just before the container was,
    // the whole fresh test bundle: an empty diff stands for an older base.)
    let stripped = Bundle::new(&["counter", "10", "/tmp/count"]);
    std::fs::remove_file(stripped.rootfs().join("bin/counter")).unwrap();
    let no_diff = g.root.path().join("image-no-diff");
    std::fs::create_dir(&no_diff).unwrap();
    for e in std::fs::read_dir(&image).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), no_diff.join(e.file_name())).unwrap();
    }
    std::fs::write(no_diff.join("rootfs-diff.tar"), [0u8; 1024]).unwrap();
    // (Without the diff's digests, as an image of an older godwit: checked
    // digests would refuse the edited diff, see hostile_archive.rs.)
    std::fs::remove_file(no_diff.join("rootfs.sha256")).unwrap();
    let err = g.fails(&[
        "restore",
        "--detach",
        "--image-path",
        no_diff.to_str().unwrap(),
        "--bundle",
        stripped.path().to_str().unwrap(),
        &id2,
    ]);
    assert!(
        err.contains("mapped file /bin/counter is not in the container's rootfs"),
        "{err}"
    );
    assert!(!g.state_dir(&id2).exists(), "no state dir");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/{id2}")).exists(),
        "no cgroup"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(stripped.path().to_str().unwrap()),
        "nothing mounted on the bundle"
    );

    // A corrupted page file: refused, and no container, cgroup or state left.
    let pages = std::fs::read_dir(&image)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pages-")
        })
        .expect("a pages file");
    let mut bytes = std::fs::read(&pages).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pages, bytes).unwrap();
    let err = g.fails(&[
        "restore",
        "--detach",
        "--image-path",
        image.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id2,
    ]);
    assert!(err.contains("restore of container"), "{err}");
    assert!(!g.state_dir(&id2).exists(), "no state dir");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/{id2}")).exists(),
        "no cgroup"
    );
    assert_eq!(g.ok(&["list", "-q"]).trim(), "");
}

/// Runs godwit with stdout into `out` (a host file the container cannot see).
fn godwit_with_stdout(g: &Godwit, args: &[&str], out: &std::path::Path) {
    let file = std::fs::File::create(out).unwrap();
    let status = g
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "godwit {args:?}: {status}");
}

#[test]
fn stdio_is_reconnected_to_the_restorer() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10"]);
    let id = g.id("stdio");
    let first_out = g.root.path().join("first.out");
    godwit_with_stdout(
        &g,
        &[
            "run",
            "--detach",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
        &first_out,
    );
    wait_for("output", Duration::from_secs(10), || {
        last_count(&first_out).filter(|&n| n >= 5)
    });
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    let at_dump = last_count(&first_out).unwrap();

    // The restored counter writes to the restorer's stdout, from where it stopped.
    let second_out = g.root.path().join("second.out");
    let id2 = g.id("stdio-restored");
    godwit_with_stdout(
        &g,
        &[
            "restore",
            "--detach",
            "--image-path",
            image.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id2,
        ],
        &second_out,
    );
    wait_for("output after restore", Duration::from_secs(10), || {
        last_count(&second_out).filter(|&n| n >= at_dump + 5)
    });
    let numbers = counts(&second_out);
    assert_eq!(
        numbers[0],
        at_dump + 1,
        "continues at {}: {numbers:?}",
        at_dump + 1
    );
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(
        last_count(&first_out),
        Some(at_dump),
        "the old stdout gets nothing more"
    );
}

/// Lines of clockcheck: (n, monotonic ns, boottime ns, ok).
fn clock_lines(file: &std::path::Path) -> Vec<(u64, i128, i128, bool)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                *f.get(3)? == "ok",
            ))
        })
        .collect()
}

#[test]
fn clocks_continue_across_a_restore() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["clockcheck", "/tmp/clock", "10"]);
    let file = bundle.rootfs().join("tmp/clock");
    let id = g.id("clock");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || {
        (clock_lines(&file).len() >= 5).then_some(())
    });
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    let before = clock_lines(&file);
    // A long blackout: without a time namespace the clocks would jump by it.
    std::thread::sleep(Duration::from_millis(1500));
    let id2 = g.id("clock-restored");
    restore_detached(&g, &image, &bundle, &id2);
    wait_for("ticks after restore", Duration::from_secs(10), || {
        (clock_lines(&file).len() >= before.len() + 5).then_some(())
    });
    let lines = clock_lines(&file);
    assert!(lines.iter().all(|l| l.3), "no clock went backwards");
    assert!(
        lines.iter().enumerate().all(|(i, l)| l.0 == i as u64),
        "the count continued"
    );
    let (last, next) = (&before[before.len() - 1], &lines[before.len()]);
    let gap_ms = (next.1 - last.1) / 1_000_000;
    assert!(
        (0..1000).contains(&gap_ms),
        "monotonic went on from the dump, not across the 1.5 s blackout: gap {gap_ms} ms"
    );
    assert!(next.2 >= last.2);
    // The restored init runs in a time namespace with offsets.
    let pid = g.pid(&id2);
    let host_ns = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/time")).unwrap(),
        host_ns
    );
}

#[test]
fn a_restored_container_checkpoints_again() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["clockcheck", "/tmp/clock", "10"]);
    let file = bundle.rootfs().join("tmp/clock");
    let mut id = g.id("again");
    g.start_detached_null(&bundle, &id);
    for round in 0..3 {
        let n = clock_lines(&file).len();
        wait_for("ticks", Duration::from_secs(10), || {
            (clock_lines(&file).len() >= n + 5).then_some(())
        });
        let image = g.root.path().join(format!("image-{round}"));
        g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
        std::thread::sleep(Duration::from_millis(300));
        id = g.id("again");
        restore_detached(&g, &image, &bundle, &id);
    }
    let n = clock_lines(&file).len();
    wait_for("ticks", Duration::from_secs(10), || {
        (clock_lines(&file).len() >= n + 5).then_some(())
    });
    let lines = clock_lines(&file);
    assert!(lines.iter().all(|l| l.3), "no clock went backwards");
    assert!(lines.iter().enumerate().all(|(i, l)| l.0 == i as u64));
    // Three blackouts of >= 300 ms each, none seen by the monotonic clock.
    let max_gap = lines.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap() / 1_000_000;
    assert!(max_gap < 300, "largest monotonic step {max_gap} ms");
}

/// Lines of `notified`: (n, signals seen).
fn notified_lines(file: &std::path::Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, s) = l.split_once(' ')?;
            Some((n.parse().ok()?, s.parse().ok()?))
        })
        .collect()
}

#[test]
fn notifications_before_checkpoint_and_after_restore() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["notified", "/tmp/notes", "10"]);
    bundle.edit(|c| {
        c["annotations"] = serde_json::json!({
            "org.godwit.checkpoint.notify-signal": "SIGUSR1",
            "org.godwit.checkpoint.notify-delay-ms": "200"
        })
    });
    let file = bundle.rootfs().join("tmp/notes");
    let id = g.id("notify");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || {
        (notified_lines(&file).len() >= 3).then_some(())
    });
    assert_eq!(notified_lines(&file).last().unwrap().1, 0);
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    let before = notified_lines(&file);
    assert_eq!(before.last().unwrap().1, 1, "notified once before the dump");
    let id2 = g.id("notify-restored");
    restore_detached(&g, &image, &bundle, &id2);
    let after = wait_for("notified after restore", Duration::from_secs(10), || {
        let lines = notified_lines(&file);
        (lines.len() > before.len() + 2).then_some(lines)
    });
    assert_eq!(
        after.last().unwrap().1,
        2,
        "notified again after the restore"
    );
    assert!(after.iter().enumerate().all(|(i, l)| l.0 == i as u64));
}

#[test]
fn opted_out_container_is_not_checkpointed() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    bundle
        .edit(|c| c["annotations"] = serde_json::json!({"org.godwit.checkpoint.opt-out": "true"}));
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("optout");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || last_count(&count));
    let image = g.root.path().join("image");
    let err = g.fails(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    assert!(err.contains("opted out"), "{err}");
    assert!(err.contains("org.godwit.checkpoint.opt-out"), "{err}");
    assert!(!image.exists());
    assert_eq!(g.status(&id), "running");
    let n = last_count(&count).unwrap();
    wait_for("counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&m| m > n + 3)
    });
}

#[test]
fn migrates_between_two_hosts_as_one_archive() {
    // Two "hosts": separate state roots and separate copies of the bundle;
    // only the archive file passes from one to the other.
    let host_a = Godwit::new();
    let host_b = Godwit::new();
    let bundle_a = Bundle::new(&["counter", "10", "/tmp/count"]);
    let bundle_b = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count_a = bundle_a.rootfs().join("tmp/count");
    let count_b = bundle_b.rootfs().join("tmp/count");
    // A file the container writes and never holds open travels too.
    let id = host_a.id("migrate");
    host_a.start_detached_null(&bundle_a, &id);
    host_a.ok(&["exec", &id, "sh", "-c", "echo made-on-a > /tmp/note"]);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&count_a).filter(|&n| n >= 5)
    });
    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("migrate.tar.zst");
    host_a.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    let at_dump = last_count(&count_a).unwrap();
    assert_eq!(
        host_a.ok(&["list", "-q"]).trim(),
        "",
        "host A has nothing left"
    );
    assert!(
        std::fs::read_dir(host_a.root.path()).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            !name.to_string_lossy().contains("migrate")
        }),
        "no temporary image left on host A"
    );
    assert!(!count_b.exists());

    let id_b = host_b.id("migrated");
    host_b.ok_null(&[
        "restore",
        "--detach",
        "--import",
        archive.to_str().unwrap(),
        "--bundle",
        bundle_b.path().to_str().unwrap(),
        &id_b,
    ]);
    assert_eq!(host_b.status(&id_b), "running");
    wait_for(
        "counter continues on host B",
        Duration::from_secs(10),
        || last_count(&count_b).filter(|&n| n >= at_dump + 5),
    );
    let numbers = counts(&count_b);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "host B's copy holds the whole count, continued: {numbers:?}"
    );
    assert_eq!(
        std::fs::read_to_string(bundle_b.rootfs().join("tmp/note")).unwrap(),
        "made-on-a\n"
    );
    // Nothing of the import is left beside host B's state.
    assert!(std::fs::read_dir(host_b.root.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}

#[test]
fn a_bad_archive_is_refused_before_anything_is_created() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, vec![0x5a; 10_000]).unwrap();
    let id = g.id("badarchive");
    let err = g.fails(&[
        "restore",
        "--detach",
        "--import",
        bad.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("bad.tar"), "names the archive: {err}");
    assert!(!g.state_dir(&id).exists());
    assert_eq!(g.ok(&["list", "-q"]).trim(), "");
    assert!(std::fs::read_dir(g.root.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}

#[test]
fn tmpfs_contents_travel_with_the_container() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/scratch/count"]);
    bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=16m"]
        }));
    });
    std::fs::create_dir_all(bundle.rootfs().join("scratch")).unwrap();
    let id = g.id("tmpfs");
    g.start_detached_null(&bundle, &id);
    let read_count = |id: &str| -> Vec<u64> {
        let out = g.run(&["exec", id, "cat", "/scratch/count"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    wait_for("ticks", Duration::from_secs(10), || {
        (read_count(&id).len() >= 5).then_some(())
    });
    g.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir -p /scratch/d && echo kept > /scratch/d/f",
    ]);
    // The tmpfs is the container's own: nothing of it is in the bundle.
    assert!(!bundle.rootfs().join("scratch/count").exists());
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    let id2 = g.id("tmpfs-restored");
    restore_detached(&g, &image, &bundle, &id2);
    let numbers = wait_for(
        "counter continues in the tmpfs",
        Duration::from_secs(10),
        || {
            let n = read_count(&id2);
            (n.len() >= 15).then_some(n)
        },
    );
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "the file came back whole and the counter continued: {numbers:?}"
    );
    assert_eq!(g.ok(&["exec", &id2, "cat", "/scratch/d/f"]), "kept\n");
}

#[test]
fn restored_workload_keeps_default_signal_dispositions() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("sigdfl");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || last_count(&count));
    let ignored = |pid: i32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let before = ignored(g.pid(&id));
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    let id2 = g.id("sigdfl-restored");
    restore_detached(&g, &image, &bundle, &id2);
    // godwit itself ignores SIGPIPE; the restored workload must not inherit that.
    assert_eq!(ignored(g.pid(&id2)), before);
}

#[test]
fn a_paused_container_is_checkpointed_and_stays_paused() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("paused");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n >= 3)
    });
    g.ok(&["pause", &id]);
    let frozen_at = last_count(&count).unwrap();
    // Left running: still paused afterwards, and nothing ticks.
    let image = g.root.path().join("image-leave");
    g.ok(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        image.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(g.status(&id), "paused");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_count(&count), Some(frozen_at), "still frozen");
    // Checkpointed for good: restored, it continues from where it was paused.
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    assert!(!g.state_dir(&id).exists());
    let id2 = g.id("paused-restored");
    restore_detached(&g, &image, &bundle, &id2);
    wait_for("counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n >= frozen_at + 5)
    });
    assert!(counts(&count)
        .iter()
        .enumerate()
        .all(|(i, &n)| n == i as u64));
}
