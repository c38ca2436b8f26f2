//! Checkpoint and restore through containerd 1.6: `ctr containers checkpoint`,
//! export and import into a second containerd ("host B"), `ctr containers
//! restore --live --rw`; `ctr tasks checkpoint`; options sent as containerd
//! sends them; bad checkpoints refused at Create with nothing left behind.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::CheckpointOptions;
use containerd_shim_protos::shim::shim::{CheckpointTaskRequest, WaitRequest};
use containerd_shim_protos::ttrpc::context;
use support::{text, Containerd, IMAGE, RUNTIME};

/// The counter's lines, read from the task's rootfs as the shim mounted it.
fn counts(c: &Containerd, id: &str) -> Vec<u64> {
    let path = c.bundle(id).join("rootfs/tmp/count");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    // The last line may be half-written.
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

fn last_count(c: &Containerd, id: &str) -> Option<u64> {
    counts(c, id).last().copied()
}

/// Waits until the counter has written more than `after`.
fn wait_past(c: &Containerd, id: &str, after: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(n) = last_count(c, id).filter(|&n| Some(n) > after) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "counter of {id} stays at {after:?}\n{}",
            c.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_contiguous(values: &[u64], what: &str) {
    for w in values.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: {} follows {}", w[1], w[0]);
    }
}

fn run_counter(c: &Containerd, id: &str) {
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "counter",
        "50",
        "/tmp/count",
    ]);
    c.wait_status(id, "RUNNING");
    wait_past(c, id, Some(3));
}

/// Lines of the task's stdout, read through `ctr task attach` (killed with
/// SIGKILL afterwards: ctr forwards every other signal to the task).
fn stdout_lines(c: &Containerd, id: &str, n: usize) -> Vec<u64> {
    let mut attach = c
        .ctr_cmd(&["task", "attach", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctr task attach");
    let mut lines = Vec::new();
    let reader = BufReader::new(attach.stdout.take().unwrap());
    for line in reader.lines().take(n) {
        lines.push(line.unwrap().trim().parse().unwrap());
    }
    let _ = attach.kill();
    let _ = attach.wait();
    lines
}

#[test]
fn checkpoint_moves_a_counter_to_a_second_containerd() {
    let a = Containerd::start("ckA");
    let b = Containerd::start("ckB");
    let id = "mover";
    run_counter(&a, id);

    let before = last_count(&a, id);
    let out = a.ctr(&[
        "containers",
        "checkpoint",
        "--task",
        "--rw",
        "--image",
        id,
        "godwit.test/ckpt-mover:1",
    ]);
    assert!(
        out.status.success(),
        "checkpoint: {}\n{}",
        text(&out.stderr),
        a.log_tail()
    );
    let after = last_count(&a, id);
    // Without --exit the task runs on on host A.
    assert_eq!(a.task_status(id).as_deref(), Some("RUNNING"));
    wait_past(&a, id, after);

    // The two flags containerd 1.6 needs for an image holding a checkpoint.
    let tar = b.dir().join("ckpt-mover.tar");
    let tar = tar.display().to_string();
    a.ok(&[
        "images",
        "export",
        "--skip-manifest-json",
        &tar,
        "godwit.test/ckpt-mover:1",
    ]);
    b.ok(&["images", "import", "--no-unpack", &tar]);
    // A migration: the original goes away. (It must here: containerd copies
    // the checkpointed spec, cgroupsPath /<A's namespace>/<id> included, so
    // on one machine both would share a cgroup.)
    a.ok(&["task", "kill", "-s", "KILL", id]);
    a.wait_status(id, "STOPPED");
    let final_a = last_count(&a, id).unwrap();
    a.ok(&["task", "delete", id]);
    b.ok(&[
        "containers",
        "restore",
        "--live",
        "--rw",
        id,
        "godwit.test/ckpt-mover:1",
    ]);
    assert_eq!(b.task_status(id).as_deref(), Some("RUNNING"));

    // The rw layer brought the file as it was at the dump (a value between
    // the two readings on A); the restored counter appends from the next
    // value on: no gap, no repeat, no restart from 0.
    let first = wait_past(&b, id, None);
    let last = wait_past(&b, id, Some(first + 5));
    let values = counts(&b, id);
    assert_eq!(values[0], 0);
    assert_contiguous(&values, "host B's /tmp/count");
    assert!(last > first);
    let (before, after) = (before.unwrap(), after.unwrap());
    assert!(after <= final_a);

    // stdout reaches host B's fifo: its first line is the value after the
    // checkpoint's, which lies between the readings before and after it.
    let lines = stdout_lines(&b, id, 8);
    assert_contiguous(&lines, "host B's stdout");
    assert!(
        before < lines[0] && lines[0] <= after + 1,
        "host B's stdout starts at {} but the checkpoint was taken between {before} and {after}: \
         stdout {lines:?}",
        lines[0]
    );

    // The restored task is a task like any other.
    let ps = b.ok(&["task", "ps", id]);
    assert_eq!(ps.lines().count(), 2, "init only:\n{ps}");
    let out = b.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "tail -n 1 /tmp/count; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let seen: u64 = text(&out.stdout).trim().parse().unwrap();
    assert!(seen >= last, "exec saw {seen}, the counter was past {last}");
    b.ok(&["task", "pause", id]);
    b.ok(&["task", "resume", id]);
    b.ok(&["task", "kill", "-s", "KILL", id]);
    b.wait_status(id, "STOPPED");
    b.ok(&["task", "delete", id]);
    assert!(b.task_status(id).is_none());
}

#[test]
fn tasks_checkpoint_without_options_and_of_a_paused_task() {
    let c = Containerd::start("cktask");
    // ctr sends no options for a non-runc runtime.
    let id = "plain";
    run_counter(&c, id);
    let image = c.ok(&["task", "checkpoint", id]);
    let image = image.trim();
    assert!(
        image.starts_with("containerd.io/checkpoint/plain"),
        "ctr printed {image:?}"
    );
    assert!(c.ok(&["images", "ls", "-q"]).lines().any(|l| l == image));
    assert_eq!(c.task_status(id).as_deref(), Some("RUNNING"));
    let now = last_count(&c, id);
    wait_past(&c, id, now);
    // The runtime's tracing events (here its "checkpointed" line with the
    // dump's numbers) reach containerd's log through the shim.
    c.wait_log_line(&["checkpointed", "id=plain", "processes="]);

    // containerd pauses the task around Checkpoint; one paused by the user
    // stays paused, its counter still.
    let id = "paused";
    run_counter(&c, id);
    c.ok(&["task", "pause", id]);
    let image = c.ok(&["task", "checkpoint", id]);
    assert!(image.trim().starts_with("containerd.io/checkpoint/paused"));
    assert_eq!(c.task_status(id).as_deref(), Some("PAUSED"));
    let frozen = last_count(&c, id);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_count(&c, id), frozen, "a paused task's counter moved");
    c.ok(&["task", "resume", id]);
    wait_past(&c, id, frozen);
}

fn checkpoint_request(id: &str, path: &Path, opts: CheckpointOptions) -> CheckpointTaskRequest {
    CheckpointTaskRequest {
        id: id.into(),
        path: path.display().to_string(),
        // As containerd sends it: a type name without '/'.
        options: MessageField::some(Any {
            type_url: "containerd.runc.v1.CheckpointOptions".into(),
            value: opts.write_to_bytes().unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn checkpoint_options_refused_by_name_and_exit_ends_the_task() {
    let c = Containerd::start("ckopts");
    let id = "opts";
    run_counter(&c, id);
    let timeout = || context::with_timeout(Duration::from_secs(30).as_nanos() as i64);

    // open_tcp is refused by name; the task runs on.
    let refused = c.dir().join("refused");
    let err = c
        .shim(id)
        .checkpoint(
            timeout(),
            &checkpoint_request(
                id,
                &refused,
                CheckpointOptions {
                    open_tcp: true,
                    ..Default::default()
                },
            ),
        )
        .expect_err("open_tcp must be refused");
    assert!(format!("{err:?}").contains("options.open_tcp"), "{err:?}");
    c.wait_status(id, "RUNNING");
    let now = last_count(&c, id);
    wait_past(&c, id, now);

    // exit: the image is written, then the task ends (Wait returns), also
    // when it was paused; nothing is left once it is deleted.
    checkpoint_with_exit(&c, id, false);
    let id = "opts-paused";
    run_counter(&c, id);
    c.ok(&["task", "pause", id]);
    checkpoint_with_exit(&c, id, true);
}

fn checkpoint_with_exit(c: &Containerd, id: &str, paused: bool) {
    let waiter = c.shim(id);
    let task = id.to_string();
    let wait = std::thread::spawn(move || {
        waiter.wait(
            context::with_timeout(Duration::from_secs(60).as_nanos() as i64),
            &WaitRequest {
                id: task,
                ..Default::default()
            },
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let image = c.dir().join(format!("exit-image-{id}"));
    std::fs::create_dir(&image).unwrap();
    c.shim(id)
        .checkpoint(
            context::with_timeout(Duration::from_secs(30).as_nanos() as i64),
            &checkpoint_request(
                id,
                &image,
                CheckpointOptions {
                    exit: true,
                    file_locks: true,
                    ..Default::default()
                },
            ),
        )
        .expect("checkpoint with exit");
    assert!(image.join("inventory.json").is_file());
    let exit = wait.join().unwrap().expect("Wait");
    assert_eq!(
        exit.exit_status, 137,
        "killed after the dump (paused: {paused})"
    );
    c.wait_status(id, "STOPPED");
    let stopped = last_count(c, id);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(last_count(c, id), stopped);
    c.ok(&["task", "delete", id]);
    assert!(cgroup_dirs(&c.ns, id).is_empty(), "cgroup of {id} left");
    assert!(
        !c.godwit_root().join(id).exists(),
        "godwit state of {id} left"
    );
}

#[test]
fn failing_checkpoint_leaves_the_task_running_or_paused() {
    let c = Containerd::start("ckfail");
    // An inotify fd is a kind of file the dumper refuses.
    let id = "inotify";
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "inotify",
        "/tmp/out",
        "50",
    ]);
    c.wait_status(id, "RUNNING");
    let lines = || {
        std::fs::read_to_string(c.bundle(id).join("rootfs/tmp/out"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let wait_more = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines() <= n {
            assert!(Instant::now() < deadline, "the task does not advance");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_more(2);
    let out = c.ctr(&["task", "checkpoint", id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("inotify"),
        "the error names the fd: {}",
        text(&out.stderr)
    );
    assert_eq!(c.task_status(id).as_deref(), Some("RUNNING"));
    wait_more(lines());

    c.ok(&["task", "pause", id]);
    let out = c.ctr(&["task", "checkpoint", id]);
    assert!(!out.status.success());
    assert_eq!(c.task_status(id).as_deref(), Some("PAUSED"));
    let frozen = lines();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lines(),
        frozen,
        "a paused task ran during the failed checkpoint"
    );
    c.ok(&["task", "resume", id]);
    wait_more(frozen);
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn store_blob(layout: &Path, file: &Path) -> (String, u64) {
    let sum = sh(Command::new("sha256sum").arg(file));
    let hex = sum.split_whitespace().next().unwrap().to_string();
    let size = std::fs::metadata(file).unwrap().len();
    std::fs::rename(file, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), size)
}

/// A change made to an unpacked godwit image.
type Edit = Box<dyn Fn(&Path)>;

const CHECKPOINT_TAR: &str = "application/vnd.containerd.container.criu.checkpoint.criu.tar";

/// Exports checkpoint image `src`, rewrites the godwit image inside it with
/// `edit` (given the unpacked image directory) and imports it as `dst`.
fn rewrite_checkpoint(c: &Containerd, src: &str, dst: &str, edit: impl Fn(&Path)) {
    let work = tempfile::tempdir_in(c.dir()).unwrap();
    let tar = work.path().join("export.tar");
    c.ok(&[
        "images",
        "export",
        "--skip-manifest-json",
        &tar.display().to_string(),
        src,
    ]);
    let layout = work.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout));
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };

    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let index_digest = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&index_digest)).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["mediaType"] == CHECKPOINT_TAR)
        .expect("a checkpoint entry in the index");
    let image = work.path().join("image");
    std::fs::create_dir(&image).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(blob(entry["digest"].as_str().unwrap()))
        .arg("-C")
        .arg(&image));
    edit(&image);
    let new_tar = work.path().join("checkpoint.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&new_tar)
        .arg("-C")
        .arg(&image)
        .arg("."));
    let (digest, size) = store_blob(&layout, &new_tar);
    entry["digest"] = digest.into();
    entry["size"] = size.into();

    let index_file = work.path().join("index.json");
    std::fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();
    let (digest, size) = store_blob(&layout, &index_file);
    top["manifests"][0]["digest"] = digest.into();
    top["manifests"][0]["size"] = size.into();
    top["manifests"][0]["annotations"]["io.containerd.image.name"] = dst.into();
    top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = dst.into();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let out_tar = work.path().join("rewritten.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&out_tar)
        .arg("-C")
        .arg(&layout)
        .arg("."));
    c.ok(&[
        "images",
        "import",
        "--no-unpack",
        &out_tar.display().to_string(),
    ]);
}

fn cgroup_dirs(ns: &str, id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for dir in [
            e.path().join(ns).join(id),
            Path::new("/sys/fs/cgroup").join(ns).join(id),
        ] {
            if dir.exists() {
                found.push(dir);
            }
        }
    }
    found
}

#[test]
fn bad_checkpoints_fail_create_and_leave_nothing() {
    let c = Containerd::start("ckbad");
    let id = "src";
    run_counter(&c, id);
    c.ok(&[
        "containers",
        "checkpoint",
        "--task",
        id,
        "godwit.test/ckpt-src:1",
    ]);

    let cases: [(&str, &str, Edit); 3] = [
        (
            "empty",
            "it is empty",
            Box::new(|image: &Path| {
                for e in std::fs::read_dir(image).unwrap().flatten() {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }),
        ),
        (
            "corrupt",
            "process-1.json",
            Box::new(|image: &Path| {
                // One byte of the init's record changed: its SHA-256 no longer matches.
                let path = image.join("process-1.json");
                let mut bytes = std::fs::read(&path).unwrap();
                let i = bytes.len() / 2;
                bytes[i] ^= 0x20;
                std::fs::write(&path, bytes).unwrap();
            }),
        ),
        (
            "newer",
            "format",
            Box::new(|image: &Path| {
                let path = image.join("inventory.json");
                let mut inv: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let major = inv["format"]["major"].as_u64().unwrap();
                inv["format"]["major"] = (major + 1).into();
                std::fs::write(&path, serde_json::to_vec(&inv).unwrap()).unwrap();
            }),
        ),
    ];
    for (name, expected, edit) in cases {
        let image = format!("godwit.test/ckpt-{name}:1");
        rewrite_checkpoint(&c, "godwit.test/ckpt-src:1", &image, edit);
        let task = format!("bad-{name}");
        let out = c.ctr(&["containers", "restore", "--live", &task, &image]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{name}: restore succeeded");
        assert!(
            stderr.contains("checkpoint") && stderr.contains(expected),
            "{name}: the error should name the problem ({expected}): {stderr}"
        );
        // Nothing is left: no task, no godwit state, no cgroup, no mount.
        assert!(c.task_status(&task).is_none(), "{name}: a task is left");
        assert!(
            !c.godwit_root().join(&task).exists(),
            "{name}: godwit state left"
        );
        assert!(cgroup_dirs(&c.ns, &task).is_empty(), "{name}: cgroup left");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let bundle = c.bundle(&task).display().to_string();
        assert!(
            !mountinfo.contains(&bundle),
            "{name}: a mount is left on {bundle}"
        );
        c.ok(&["containers", "rm", &task]);
    }
    // The source task was never disturbed.
    let now = last_count(&c, id);
    wait_past(&c, id, now);
}
