//! A checkpoint that fails — disk full, the checkpoint process killed in the
//! middle — leaves the source container running, unfrozen and untraced, and
//! no partial image or archive; a listening server serves after a restore on
//! another "host"; a container migrates A → B → A.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use godwit_test_support::{assert_ticks, lines};

const T: Duration = Duration::from_secs(30);

/// A tmpfs of `size` mounted on a temp dir of its own, unmounted on drop.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn new(size: &str) -> SmallTmpfs {
        let dir = tempfile::Builder::new()
            .prefix("godwit-small-")
            .tempdir()
            .unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .expect("mount a small tmpfs");
        SmallTmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn is_empty(&self) -> bool {
        std::fs::read_dir(self.path()).unwrap().next().is_none()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Force-deletes container `id` of another host's root when dropped (a
/// migrated container keeps its id; only its first host made it).
struct AlsoOn<'a>(&'a Godwit, &'a str);

impl Drop for AlsoOn<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["delete", "--force", self.1]);
    }
}

/// The container runs on as if nothing had happened: "running", its cgroup
/// thawed, no process of it stopped or traced, and its report goes on with
/// its own checks passing.
fn assert_runs_on(g: &Godwit, id: &str, report: &Path) {
    assert_eq!(g.status(id), "running");
    let init = g.pid(id);
    for dir in cgroup_dirs(init) {
        if let Ok(state) = std::fs::read_to_string(dir.join("freezer.state")) {
            assert_eq!(state.trim(), "THAWED", "{}", dir.display());
        }
        if let Ok(frozen) = std::fs::read_to_string(dir.join("cgroup.freeze")) {
            assert_eq!(frozen.trim(), "0", "{}", dir.display());
        }
    }
    let pids: Vec<i32> = serde_json::from_str(&g.ok(&["ps", "--format", "json", id])).unwrap();
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let tid: i32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
            let state = godwit_test_support::status_field(tid, "State");
            assert!(
                !state.starts_with('t') && !state.starts_with('T'),
                "task {tid}: {state}"
            );
            assert_eq!(
                godwit_test_support::status_field(tid, "TracerPid"),
                "0",
                "task {tid} traced"
            );
        }
    }
    let n = lines(report).len();
    let l = wait_for("the workload goes on", T, || {
        let l = lines(report);
        (l.len() >= n + 10 || l.iter().any(|s| s.contains("BAD"))).then_some(l)
    });
    assert_ticks(&l);
}

/// A container running memcheck with `mib` MiB, reporting to /tmp/out.
fn memcheck_container(g: &Godwit, name: &str, mib: &str) -> (Bundle, String, PathBuf) {
    let bundle = Bundle::new(&["memcheck", mib, "/tmp/out", "20"]);
    let report = bundle.rootfs().join("tmp/out");
    let id = g.id(name);
    g.start_detached_null(&bundle, &id);
    wait_for("memcheck's first lines", T, || {
        (lines(&report).len() >= 3).then_some(())
    });
    (bundle, id, report)
}

#[test]
fn image_dir_on_a_full_disk_fails_cleanly() {
    let g = Godwit::new();
    let (_bundle, id, report) = memcheck_container(&g, "enospc-image", "16");
    let small = SmallTmpfs::new("2m");
    let image = small.path().join("img");
    let err = g.fails(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&id), "names the container: {err}");
    assert!(small.is_empty(), "the partial image is removed");
    assert_runs_on(&g, &id, &report);
}

#[test]
fn export_to_a_full_disk_fails_cleanly() {
    let g = Godwit::new();
    let (_bundle, id, report) = memcheck_container(&g, "enospc-export", "16");
    let small = SmallTmpfs::new("2m");
    let archive = small.path().join("c.tar");
    let err = g.fails(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(small.is_empty(), "the partial archive is removed");
    let left: Vec<_> = std::fs::read_dir(g.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        left.is_empty(),
        "temporary image left in the state root: {left:?}"
    );
    assert_runs_on(&g, &id, &report);
}

/// `godwit checkpoint ARGS` started in the background, SIGKILLed as soon as
/// `dumping()` says the dump is under way.
fn kill_checkpoint_midway(g: &Godwit, args: &[&str], dumping: impl Fn() -> bool) {
    let mut checkpoint = g
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let killed = wait_for("the dump under way", T, || {
        if dumping() {
            return Some(true);
        }
        checkpoint.try_wait().unwrap().map(|_| false)
    });
    assert!(killed, "the checkpoint ended before it could be killed");
    // SAFETY: kill(2) of our own child by pid.
    unsafe { libc::kill(checkpoint.id() as i32, libc::SIGKILL) };
    checkpoint.wait().unwrap();
}

/// Some MiB of pages written into an image directory.
fn pages_written(image: &Path) -> bool {
    std::fs::read_dir(image)
        .map(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_string_lossy().starts_with("pages-")
                    && e.metadata().map(|m| m.len() > 8 << 20).unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

#[test]
fn checkpoint_killed_mid_dump_leaves_the_container_running() {
    let g = Godwit::new();
    let (_bundle, id, report) = memcheck_container(&g, "killed", "400");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img");
    kill_checkpoint_midway(
        &g,
        &["checkpoint", "--image-path", image.to_str().unwrap(), &id],
        || pages_written(&image),
    );
    // The guard puts things back once the checkpoint process is gone.
    wait_for("the partial image removed", T, || {
        (!image.exists()).then_some(())
    });
    assert_runs_on(&g, &id, &report);
    // And it can be checkpointed for good afterwards.
    let image = dir.path().join("img2");
    g.ok(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        image.to_str().unwrap(),
        &id,
    ]);
    assert!(image.join("inventory.json").exists());
}

#[test]
fn export_killed_mid_dump_leaves_the_container_running() {
    let g = Godwit::new();
    let (_bundle, id, report) = memcheck_container(&g, "killed-export", "400");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("c.tar.zst");
    // With --export alone the image is a hidden directory in the state root.
    let temp_image = g.root.path().join(format!(".{id}.export"));
    kill_checkpoint_midway(
        &g,
        &["checkpoint", "--export", archive.to_str().unwrap(), &id],
        || pages_written(&temp_image),
    );
    wait_for("the partial image removed", T, || {
        (!temp_image.exists()).then_some(())
    });
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no archive"
    );
    assert_runs_on(&g, &id, &report);
}

/// A client of the listener workload, in the container's network namespace.
struct Client {
    stream: BufReader<std::net::TcpStream>,
}

impl Client {
    fn connect(pid: i32, port: u16) -> Client {
        let stream = godwit_test_support::in_netns(pid, move || {
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect")
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            stream: BufReader::new(stream),
        }
    }

    /// One request; the reply is the server's request count.
    fn request(&mut self) -> u64 {
        self.stream.get_mut().write_all(b"next\n").unwrap();
        let mut reply = String::new();
        self.stream.read_line(&mut reply).unwrap();
        reply
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("reply {reply:?}"))
    }
}

/// listener's report: (served, connection errors, last errno) of the last line.
fn listener_state(report: &Path) -> Option<(u64, u64, i32)> {
    let l = lines(report);
    let f: Vec<&str> = l.last()?.split_whitespace().collect();
    Some((
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
        f.get(4)?.parse().ok()?,
    ))
}

#[test]
fn listening_server_serves_after_restore_and_connections_come_back_closed() {
    const PORT: u16 = 7400;
    let host_a = Godwit::new();
    let host_b = Godwit::new();
    let args = ["listener", "/tmp/out", "7400"];
    let (bundle_a, bundle_b) = (Bundle::new(&args), Bundle::new(&args));
    let id = host_a.id("listener");
    let _on_b = AlsoOn(&host_b, &id);
    host_a.start_detached_null(&bundle_a, &id);
    let report_a = bundle_a.rootfs().join("tmp/out");
    wait_for("listener ticks", T, || listener_state(&report_a));
    // lo is brought up from outside, as a hook would (the spec's
    // capabilities do not let the workload do it); its state travels.
    let pid = host_a.pid(&id);
    godwit_test_support::in_netns(pid, godwit_test_support::loopback_up);
    let served = Client::connect(pid, PORT).request();
    assert_eq!(served, 1);
    // A connection still open at the checkpoint.
    let mut open = Client::connect(pid, PORT);
    assert_eq!(open.request(), served + 1);

    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("listener.tar.zst");
    host_a.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    // The peer of a connection that is not carried sees a reset.
    let mut buf = [0u8; 16];
    let err = open
        .stream
        .get_mut()
        .read(&mut buf)
        .expect_err("connection reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    host_b.restore_import(&archive, &bundle_b, &id);
    let report_b = bundle_b.rootfs().join("tmp/out");
    // The restored server sees an error on the connection it had open (it
    // came back closed: ENOTCONN) and closes it...
    let (_, errors, errno) = wait_for("the closed connection noticed", T, || {
        listener_state(&report_b).filter(|s| s.1 >= 1)
    });
    assert_eq!((errors, errno), (1, libc::ENOTCONN));
    // ...and serves new ones, its count going on from where it was.
    let pid_b = host_b.pid(&id);
    let mut client = Client::connect(pid_b, PORT);
    assert_eq!(client.request(), served + 2);
    assert_eq!(client.request(), served + 3);
    assert_ticks(&lines(&report_b));
}

#[test]
fn migrates_a_to_b_and_back_to_a_under_the_same_id() {
    let hosts = [Godwit::new(), Godwit::new()];
    let args = ["counter", "10", "/tmp/count"];
    let bundles = [Bundle::new(&args), Bundle::new(&args)];
    let count = |host: usize| bundles[host].rootfs().join("tmp/count");
    let id = hosts[0].id("abba");
    let _on_b = AlsoOn(&hosts[1], &id);
    hosts[0].start_detached_null(&bundles[0], &id);
    let transfer = tempfile::tempdir().unwrap();
    let mut at = 0;
    for hop in 0..3 {
        let seen = last_count(&count(at)).unwrap_or(0);
        wait_for("the counter ticks", T, || {
            last_count(&count(at)).filter(|&n| n >= seen + 5)
        });
        let archive = transfer.path().join(format!("hop-{hop}.tar"));
        hosts[at].ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
        assert_eq!(
            hosts[at].ok(&["list", "-q"]).trim(),
            "",
            "hop {hop}: source empty"
        );
        let stopped_at = last_count(&count(at)).unwrap();
        let to = 1 - at;
        hosts[to].restore_import(&archive, &bundles[to], &id);
        assert_eq!(hosts[to].status(&id), "running");
        wait_for("the counter goes on", T, || {
            last_count(&count(to)).filter(|&n| n >= stopped_at + 3)
        });
        let numbers: Vec<u64> = lines(&count(to))
            .iter()
            .map(|l| l.parse().unwrap())
            .collect();
        assert!(
            numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
            "hop {hop}: every number once, in order: {numbers:?}"
        );
        at = to;
    }
}
