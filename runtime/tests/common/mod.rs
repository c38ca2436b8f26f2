//! Test harness: real `godwit` processes on real bundles, each test with its own
//! state root and container ids, and every container force-deleted on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub fn godwit_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_godwit"))
}

pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A bundle built offline by test-bundles/make-bundle.sh into a temp dir.
pub struct Bundle {
    pub dir: TempDir,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("godwit-bundle-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new(repo_dir().join("test-bundles/make-bundle.sh"))
            .arg(dir.path())
            .args(args)
            .env("GODWIT", godwit_bin())
            .env("WORKLOADS_DIR", repo_dir().join("target/workloads"))
            .output()
            .expect("run make-bundle.sh");
        assert!(
            out.status.success(),
            "make-bundle.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Bundle { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join("config.json")).expect("config.json");
        serde_json::from_str(&text).expect("config.json parses")
    }

    pub fn set_config(&self, config: &serde_json::Value) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(config).expect("serialize"),
        )
        .expect("write config.json");
    }

    /// Edits config.json in place.
    pub fn edit(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let mut config = self.config();
        f(&mut config);
        self.set_config(&config);
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A state root of its own, and the containers this test made in it.
pub struct Godwit {
    pub root: TempDir,
    ids: std::sync::Mutex<Vec<String>>,
}

impl Godwit {
    pub fn new() -> Godwit {
        Godwit {
            root: tempfile::Builder::new()
                .prefix("godwit-root-")
                .tempdir()
                .expect("temp dir"),
            ids: Default::default(),
        }
    }

    /// A container id unique across concurrently running tests, deleted on drop.
    pub fn id(&self, name: &str) -> String {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        self.ids.lock().expect("ids").push(id.clone());
        id
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(godwit_bin());
        cmd.arg("--root").arg(self.root.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn godwit")
    }

    /// Runs godwit and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "godwit {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs godwit and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "godwit {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .expect("status")
            .to_string()
    }

    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().expect("pid") as i32
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }

    /// Runs godwit for a command that leaves processes behind (run -d,
    /// exec -d): their stdio must not be our pipes, or we would wait for them.
    pub fn ok_detached(&self, args: &[&str]) {
        let err_path = self
            .root
            .path()
            .join(format!("stderr-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
        let err_file = std::fs::File::create(&err_path).expect("stderr file");
        let status = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .expect("spawn godwit");
        // The file stays: a container started here keeps it as its stderr.
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(
            status.success(),
            "godwit {args:?} failed ({status}): {stderr}"
        );
    }

    /// Runs godwit with all stdio on /dev/null (what it leaves running keeps
    /// that); asserts success.
    pub fn ok_null(&self, args: &[&str]) {
        let status = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn godwit");
        assert!(status.success(), "godwit {args:?} failed: {status}");
    }

    /// Creates and starts a detached container whose stdio is /dev/null (a
    /// path that exists inside the container too, so the dumper can carry it).
    pub fn start_detached_null(&self, bundle: &Bundle, id: &str) {
        let status = self
            .cmd()
            .args(["run", "--detach", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn godwit run");
        assert!(
            status.success(),
            "godwit run --detach {id} failed: {status}"
        );
    }

    /// `restore --detach --import ARCHIVE --bundle BUNDLE ID`, asserting
    /// success (stderr in the error).
    pub fn restore_import(&self, archive: &Path, bundle: &Bundle, id: &str) {
        self.ok_detached(&[
            "restore",
            "--detach",
            "--import",
            archive.to_str().expect("utf-8 path"),
            "--bundle",
            bundle.path().to_str().expect("utf-8 path"),
            id,
        ]);
    }

    /// Creates and starts a detached container running the bundle.
    pub fn start_detached(&self, bundle: &Bundle, id: &str) {
        let bundle = bundle.path().to_str().expect("utf-8 path");
        self.ok_detached(&["run", "--detach", "--bundle", bundle, id]);
    }
}

impl Drop for Godwit {
    fn drop(&mut self) {
        let ids = self.ids.lock().map(|i| i.clone()).unwrap_or_default();
        for id in ids {
            let _ = self.cmd().args(["delete", "--force", &id]).output();
        }
    }
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last number a counter wrote to `file`.
pub fn last_count(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().rev().find_map(|l| l.trim().parse().ok())
}

/// Host cgroup directories of a process (v1 controllers and the v2 path).
pub fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if path == "/" {
            continue;
        }
        let base = if controllers.is_empty() {
            if Path::new("/sys/fs/cgroup/unified").is_dir() {
                PathBuf::from("/sys/fs/cgroup/unified")
            } else {
                PathBuf::from("/sys/fs/cgroup")
            }
        } else {
            let c = controllers.trim_start_matches("name=");
            PathBuf::from("/sys/fs/cgroup").join(c)
        };
        dirs.push(base.join(path.trim_start_matches('/')));
    }
    dirs
}
