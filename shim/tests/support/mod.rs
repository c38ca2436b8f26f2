//! A private containerd for one test: its own root, state, sockets and config
//! in a temp dir, the CRI plugin disabled, this build's shim first on its
//! PATH, a containerd namespace of its own, and the offline busybox image
//! imported. Dropping it deletes every task and container, kills containerd by
//! its pid and removes the namespace's cgroups and godwit state.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const RUNTIME: &str = "io.containerd.godwit.v2";
pub const IMAGE: &str = "godwit.test/busybox:latest";

pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub ns: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shim_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_containerd-shim-godwit-v2"))
        .parent()
        .expect("the shim binary has a directory")
        .to_path_buf()
}

/// The busybox OCI tarball, built once per target dir (the script writes it
/// atomically, so concurrent tests at worst build it twice).
fn image() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("godwit-busybox-oci.tar");
    if !path.exists() {
        let status = Command::new(repo().join("hack/make-oci-image"))
            .arg(&path)
            .arg(IMAGE)
            .env(
                "WORKLOADS_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("workloads"),
            )
            .status()
            .expect("run hack/make-oci-image");
        assert!(status.success(), "hack/make-oci-image failed");
    }
    path
}

impl Containerd {
    /// Starts containerd for the test `name` and imports the image.
    pub fn start(name: &str) -> Containerd {
        Containerd::start_in(&format!("gwt-{name}-{}", std::process::id()))
    }

    /// Starts containerd with its tasks in namespace `ns` (two containerds
    /// of one test may share a namespace name, as on a real host).
    pub fn start_in(ns: &str) -> Containerd {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run containerd and containers: run them as root"
        );
        // Short paths: unix socket names are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("gw-ctrd-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n  level = \"debug\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config.toml");
        let mut c = Containerd {
            dir,
            child: None,
            ns: ns.to_string(),
        };
        c.spawn();
        let out = c.ctr(&["images", "import", &image().display().to_string()]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("containerd.log");
        let path = format!(
            "{}:{}",
            shim_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // containerd unpacks checkpoints into $XDG_RUNTIME_DIR (else /tmp)
        // and leaves them there: keep them in the test's directory.
        let xdg = self.dir.path().join("xdg");
        std::fs::create_dir_all(&xdg).expect("create the XDG_RUNTIME_DIR");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .env("PATH", path)
            .env("XDG_RUNTIME_DIR", xdg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Kills containerd (by pid) and starts it again on the same root and state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn address(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr --address … -n NS ARGS`, stdin from /dev/null.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.address())
            .arg("-n")
            .arg(&self.ns)
            .args(args);
        cmd
    }

    /// ctr that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}\n--- containerd log ---\n{}",
            out.status,
            text(&out.stderr),
            self.log_tail()
        );
        text(&out.stdout)
    }

    /// The status column of `ctr task ls` for `id` (None if no such task).
    pub fn task_status(&self, id: &str) -> Option<String> {
        self.ok(&["task", "ls"]).lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
        })
    }

    /// Polls until the task reaches `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.task_status(id);
            if now.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} is {now:?}, expected {status}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until containerd's log has a line holding every one of `parts`
    /// (the shim's log reaches it through a fifo, a moment later); returns it.
    pub fn wait_log_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {parts:?} in containerd's log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A task-service client on the shim of task `id` (its address file is in the bundle).
    pub fn shim(&self, id: &str) -> containerd_shim_protos::TaskClient {
        let file = self
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.ns)
            .join(id)
            .join("address");
        let address = std::fs::read_to_string(&file).expect("the shim's address file");
        let client = containerd_shim_protos::ttrpc::Client::connect(address.trim())
            .expect("connect to the shim");
        containerd_shim_protos::TaskClient::new(client)
    }

    /// The test's private directory (containerd's root, state and sockets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle containerd made for task `id` (the shim mounts its rootfs there).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.ns)
            .join(id)
    }

    /// godwit's state root for this namespace (what the shim uses by
    /// default: `godwit/<ns>` beside containerd's task directory).
    pub fn godwit_root(&self) -> PathBuf {
        self.dir.path().join("state/godwit").join(&self.ns)
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let tasks = self.ctr(&["task", "ls", "-q"]);
            for id in text(&tasks.stdout).split_whitespace() {
                let _ = self.ctr(&["task", "kill", "-a", "-s", "KILL", id]);
            }
            for id in text(&tasks.stdout).split_whitespace() {
                for _ in 0..50 {
                    if self.ctr(&["task", "delete", "-f", id]).status.success() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let containers = self.ctr(&["containers", "ls", "-q"]);
            for id in text(&containers.stdout).split_whitespace() {
                let _ = self.ctr(&["containers", "rm", id]);
            }
        }
        self.stop();
        // A shim whose task could not be deleted outlives containerd: find
        // ours by the namespace it was started for, and its containers'
        // processes by their cgroups; end them by pid.
        kill_shims_of(&self.ns);
        // containerd puts each container's cgroup under /<namespace>.
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                remove_cgroup_tree(&e.path().join(&self.ns));
            }
        }
        if let Ok(dirs) = std::fs::read_dir(self.godwit_root()) {
            for d in dirs.flatten() {
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
        let _ = std::fs::remove_dir(self.godwit_root());
        // Snapshot mounts containerd may have left (it was killed).
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let prefix = self.dir.path().display().to_string();
            for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
                if m.starts_with(&prefix) {
                    let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
}

/// SIGKILLs every containerd-shim-godwit-v2 started with `-namespace ns`.
fn kill_shims_of(ns: &str) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let ours = args
            .first()
            .is_some_and(|a| a.ends_with(b"containerd-shim-godwit-v2"))
            && args
                .windows(2)
                .any(|w| w[0] == b"-namespace" && w[1] == ns.as_bytes());
        if ours {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Kills the processes left in a cgroup tree (thawed first) and removes it.
fn remove_cgroup_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            break;
        }
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir(dir);
}
