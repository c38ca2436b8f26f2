//! podman (Debian's 4.3, installed by hack/setup) driving this worktree's
//! godwit through `--runtime`: checkpoint/restore, --leave-running then a
//! second checkpoint, --export/--import, --import --name on a second storage,
//! --print-stats, and the flags godwit refuses by name. Every podman has a
//! storage, run root, tmpdir, containers.conf and godwit state root of its
//! own under a temp dir; the counter must go on with every number once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{godwit_bin, repo_dir, wait_for};

const IMAGE: &str = "godwit.test/busybox:latest";
const COUNTER: &str = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done";
const WAIT: Duration = Duration::from_secs(30);

/// One podman "host": its own storage and godwit state, torn down on drop.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new(image_tar: &Path) -> Podman {
        assert!(
            Command::new("podman").arg("--version").output().is_ok(),
            "podman is not installed: run hack/setup (it installs podman, skopeo and docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("godwit-podman-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("tmp")).expect("tmpdir");
        // The wrapper logs every call podman and conmon make, and gives
        // godwit this host's own state root.
        let wrapper = d.join("godwit-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' --root '{}' \"$@\"\n",
                d.join("calls.log").display(),
                godwit_bin().display(),
                d.join("godwit-state").display()
            ),
        )
        .expect("wrapper");
        set_mode(&wrapper, 0o755);
        // This host lacks CAP_SYS_RESOURCE: podman's default rlimits
        // (1048576 open files and processes) could not be set; these can.
        // godwit is registered by name: podman restores an archive only with
        // the runtime (by name) that made it, and each host's godwit has its
        // own path here.
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\n\
                 runtime = \"godwit\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 [engine.runtimes]\n\
                 godwit = [\"{}\"]\n",
                wrapper.display()
            ),
        )
        .expect("containers.conf");
        let p = Podman { dir };
        p.ok(&["load", "-i", image_tar.to_str().expect("utf-8 path")]);
        p
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> Command {
        let d = self.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}\n{}\ncalls:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.calls()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "podman {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Every godwit command line podman and conmon ran.
    fn calls(&self) -> String {
        std::fs::read_to_string(self.path().join("calls.log")).unwrap_or_default()
    }

    fn run_counter(&self, name: &str, script: &str) {
        self.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            script,
        ]);
    }

    fn status(&self, name: &str) -> String {
        self.ok(&["inspect", "--format", "{{.State.Status}}", name])
            .trim()
            .to_string()
    }

    fn userdata(&self, name: &str) -> PathBuf {
        let id = self.ok(&["inspect", "--format", "{{.Id}}", name]);
        self.path()
            .join("root/overlay-containers")
            .join(id.trim())
            .join("userdata")
    }

    /// The numbers the counter logged, in order.
    fn numbers(&self, name: &str) -> Vec<u64> {
        let out = self.run(&["logs", name]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits until the counter has logged a number above `n`.
    fn wait_past(&self, name: &str, n: u64) -> u64 {
        wait_for(&format!("{name} to count past {n}"), WAIT, || {
            self.numbers(name).last().copied().filter(|&l| l > n)
        })
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        // Whatever godwit still runs in this host's state root goes too.
        let state = self.path().join("godwit-state");
        if let Ok(out) = Command::new(godwit_bin())
            .arg("--root")
            .arg(&state)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new(godwit_bin())
                    .arg("--root")
                    .arg(&state)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        // Overlay mounts podman left under the storage would keep the
        // temp dir from going.
        let prefix = self.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The offline busybox image (hack/make-oci-image) as an image tar.
fn image_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("busybox.tar");
    let out = Command::new(repo_dir().join("hack/make-oci-image"))
        .arg(&tar)
        .arg(IMAGE)
        .env("WORKLOADS_DIR", repo_dir().join("target/workloads"))
        .output()
        .expect("run hack/make-oci-image");
    assert!(
        out.status.success(),
        "make-oci-image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}

/// Asserts the counter logged 0, 1, 2, ... with every number once.
fn assert_every_number_once(numbers: &[u64], what: &str) {
    assert!(!numbers.is_empty(), "{what}: nothing logged");
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(
            *n, i as u64,
            "{what}: number {i} of the log is {n} (a number lost or repeated): {numbers:?}"
        );
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn podman_checkpoint_restore_leave_running_and_print_stats() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let host = Podman::new(&image_tar(scratch.path()));
    let name = format!("godwit-pd-{}", std::process::id());
    host.run_counter(&name, COUNTER);
    host.wait_past(&name, 3);

    // -R: podman passes --leave-running (twice); the container goes on.
    host.ok(&["container", "checkpoint", "-R", &name]);
    assert!(host.calls().contains("--leave-running"), "{}", host.calls());
    assert_eq!(host.status(&name), "running");
    let userdata = host.userdata(&name);
    assert!(userdata.join("checkpoint/inventory.img").is_file());
    let after_r = host.numbers(&name).last().copied().unwrap_or(0);
    host.wait_past(&name, after_r + 3);

    // A second checkpoint into the same directory, with podman's statistics.
    let out = host.ok(&["container", "checkpoint", "--print-stats", &name]);
    let stats = json(&out);
    let criu = &stats["container_statistics"][0]["criu_statistics"];
    assert!(
        criu["pages_written"].as_u64().unwrap_or(0) > 0,
        "podman read no pages_written from godwit's stats-dump: {out}"
    );
    assert!(criu["frozen_time"].as_u64().unwrap_or(0) > 0, "{out}");
    assert_eq!(host.status(&name), "exited");
    let at_checkpoint = host.numbers(&name);
    let last = *at_checkpoint.last().expect("numbers");

    let out = host.ok(&["container", "restore", "--print-stats", &name]);
    let stats = json(&out);
    let criu = &stats["container_statistics"][0]["criu_statistics"];
    assert!(
        criu["pages_restored"].as_u64().unwrap_or(0) > 0,
        "podman read no pages_restored from godwit's stats-restore: {out}"
    );
    assert_eq!(host.status(&name), "running");
    let calls = host.calls();
    let restore = calls
        .lines()
        .find(|l| l.starts_with("restore "))
        .expect("podman ran godwit restore");
    for flag in [
        "--bundle",
        "--pid-file",
        "--detach",
        "--image-path",
        "--work-path",
    ] {
        assert!(restore.contains(flag), "restore without {flag}: {restore}");
    }
    host.wait_past(&name, last + 5);
    assert_every_number_once(
        &host.numbers(&name),
        "after checkpoint -R, checkpoint, restore",
    );
    host.ok(&["rm", "-f", "-t", "0", &name]);
}

#[test]
fn podman_export_import_and_import_on_a_second_storage() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let tar = image_tar(scratch.path());
    let a = Podman::new(&tar);
    let name = format!("godwit-px-{}", std::process::id());
    // Rootfs changes travel in podman's archive: a new file and a deletion.
    let script = format!("echo kept > /kept; rm /etc/group; {COUNTER}");
    a.run_counter(&name, &script);
    a.wait_past(&name, 3);

    let archive = scratch.path().join("checkpoint.tar.gz");
    let archive_s = archive.to_str().expect("utf-8");
    a.ok(&[
        "container",
        "checkpoint",
        "--compress",
        "gzip",
        "--export",
        archive_s,
        &name,
    ]);
    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .expect("tar");
    assert!(listed.status.success(), "tar -tzf failed");
    let members = String::from_utf8_lossy(&listed.stdout).into_owned();
    for want in [
        "config.dump",
        "spec.dump",
        "stats-dump",
        "rootfs-diff.tar",
        "deleted.files",
        "checkpoint/inventory.img",
        "checkpoint/inventory.json",
    ] {
        assert!(
            members.lines().any(|m| m.trim_start_matches("./") == want),
            "podman's archive has no {want}: {members}"
        );
    }
    let last = *a.numbers(&name).last().expect("numbers");

    // Removed, then restored from the archive on the same storage.
    a.ok(&["rm", "-f", "-t", "0", &name]);
    a.ok(&["container", "restore", "--import", archive_s]);
    assert_eq!(a.status(&name), "running");
    assert_eq!(a.ok(&["exec", &name, "cat", "/kept"]).trim(), "kept");
    assert!(!a
        .run(&["exec", &name, "test", "-e", "/etc/group"])
        .status
        .success());
    a.wait_past(&name, last + 5);
    assert_every_number_once(&a.numbers(&name), "after export, rm, import");
    // "Host A" lets its container go before "host B" takes the checkpoint.
    a.ok(&["rm", "-f", "-t", "0", &name]);

    // "Host B": another storage restores the archive as a new container.
    // podman 4.3 gives conmon (and godwit) a pid file in the checkpointed
    // container's run directory, which must exist (README).
    let b = Podman::new(&tar);
    let old_id = {
        let config = Command::new("tar")
            .arg("-xzOf")
            .arg(&archive)
            .arg("config.dump")
            .output()
            .expect("tar");
        json(&String::from_utf8_lossy(&config.stdout))["id"]
            .as_str()
            .expect("config.dump id")
            .to_string()
    };
    let old_run = a
        .path()
        .join("run/overlay-containers")
        .join(&old_id)
        .join("userdata");
    std::fs::create_dir_all(&old_run).expect("old run dir");
    let renamed = format!("{name}-b");
    b.ok(&[
        "container",
        "restore",
        "--import",
        archive_s,
        "--name",
        &renamed,
    ]);
    assert_eq!(b.status(&renamed), "running");
    assert_eq!(b.ok(&["exec", &renamed, "cat", "/kept"]).trim(), "kept");
    b.wait_past(&renamed, last + 5);
    assert_every_number_once(&b.numbers(&renamed), "restored on a second storage");
    b.ok(&["rm", "-f", "-t", "0", &renamed]);
}

#[test]
fn podman_refused_flags_are_named_and_leave_the_container_running() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let host = Podman::new(&image_tar(scratch.path()));
    let name = format!("godwit-pf-{}", std::process::id());
    host.run_counter(&name, COUNTER);
    host.wait_past(&name, 2);
    for flag in ["--tcp-established", "--file-locks"] {
        let err = host.fails(&["container", "checkpoint", flag, &name]);
        assert!(
            err.contains(flag),
            "podman's error does not name {flag}: {err}"
        );
        assert_eq!(host.status(&name), "running");
    }
    let last = *host.numbers(&name).last().expect("numbers");
    host.wait_past(&name, last + 3);
    assert_every_number_once(&host.numbers(&name), "after refused checkpoints");
    host.ok(&["rm", "-f", "-t", "0", &name]);
}

/// Debian's docker-registry (distribution 2.8) on 127.0.0.1 with its own
/// config and storage, stopped by pid on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed: run hack/setup"
        );
        let dir = tempfile::Builder::new()
            .prefix("godwit-registry-")
            .tempdir()
            .expect("temp dir");
        // A port the kernel just handed out (and took back).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: godwit-test\n",
                dir.path().join("storage").display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        wait_for("docker-registry to answer /v2/", WAIT, || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .ok()?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).ok()?;
            reply.starts_with("HTTP/1.0 200").then_some(())
        });
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn podman_checkpoint_image_through_a_registry() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let tar = image_tar(scratch.path());
    let registry = Registry::start();
    let a = Podman::new(&tar);
    let name = format!("godwit-pr-{}", std::process::id());
    a.run_counter(&name, COUNTER);
    a.wait_past(&name, 3);

    // The checkpoint as an OCI image, pushed to the registry.
    let image = format!("localhost:{}/godwit/{name}:checkpoint", registry.port);
    a.ok(&["container", "checkpoint", "--create-image", &image, &name]);
    let last = *a.numbers(&name).last().expect("numbers");
    a.ok(&["push", "--tls-verify=false", &image]);
    let manifest = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("skopeo");
    assert!(manifest.status.success(), "skopeo inspect failed");
    let manifest = json(&String::from_utf8_lossy(&manifest.stdout));
    let notes = &manifest["annotations"];
    assert_eq!(
        notes["io.podman.annotations.checkpoint.runtime.name"], "godwit",
        "{manifest}"
    );
    assert_eq!(
        notes["io.podman.annotations.checkpoint.name"],
        name.as_str(),
        "{manifest}"
    );
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );

    // "Host B" pulls it and restores from it; the counter goes on.
    let b = Podman::new(&tar);
    b.ok(&["pull", "--tls-verify=false", &image]);
    b.ok(&["container", "restore", &image]);
    assert_eq!(b.status(&name), "running");
    b.wait_past(&name, last + 5);
    // The image carries no log: B's starts where A's stopped.
    assert_every_number_once(&a.numbers(&name), "up to the checkpoint");
    let on_b = b.numbers(&name);
    assert_eq!(
        on_b.first(),
        Some(&(last + 1)),
        "B's first number: {on_b:?}"
    );
    assert!(
        on_b.windows(2).all(|w| w[1] == w[0] + 1),
        "restored from a registry image, a number lost or repeated: {on_b:?}"
    );
    b.ok(&["rm", "-f", "-t", "0", &name]);
    a.ok(&["rm", "-f", "-t", "0", &name]);
}
