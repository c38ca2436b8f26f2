//! CVE-2019-5736: whoever can reach a godwit process's /proc/PID/exe (a
//! container process can, for every godwit process that enters the
//! container) must not be able to write the runtime's binary through it. The
//! attacker's primitive is reproduced from the host: keep an O_PATH fd on
//! /proc/PID/exe of a running `godwit run` / `godwit exec`, and once godwit
//! has exited, reopen it for writing through /proc/self/fd/N. Runs a copy of
//! the binary so that a failure cannot damage the suite's own binary.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{godwit_bin, wait_for, Bundle};

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read binary")
}

fn o_path(path: &str) -> Option<OwnedFd> {
    let c = std::ffi::CString::new(path).expect("path");
    // SAFETY: open with a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    // SAFETY: a fresh descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The attack: reopen the held exe for writing and write into it.
fn try_overwrite(fd: &OwnedFd) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    f.write_all(b"PWNED")
}

fn attack(verb_args: impl Fn(&Path, &Path) -> Vec<String>, name: &str) {
    let dir = tempfile::Builder::new()
        .prefix("godwit-sealed-")
        .tempdir()
        .expect("tmp");
    let bin = dir.path().join("godwit");
    std::fs::copy(godwit_bin(), &bin).expect("copy godwit");
    let before = sha(&bin);
    let root = dir.path().join("root");
    let bundle = Bundle::new(&["sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done"]);
    let id = format!("sealed-{name}-{}", std::process::id());
    let args = verb_args(bundle.path(), &root);
    let mut cmd = Command::new(&bin);
    cmd.arg("--root").arg(&root);
    for a in &args {
        cmd.arg(a.replace("ID", &id));
    }
    if args[0] == "exec" {
        let status = Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run --detach");
        assert!(status.success());
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn godwit");
    let pid = child.id();
    // A container process sees godwit only once godwit entered the
    // container: wait until the workload runs (for exec: a second process in
    // the container), then hold the exe of the running godwit process.
    let want = if args[0] == "exec" { 2 } else { 1 };
    wait_for("the workload to run", Duration::from_secs(30), || {
        let out = Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .args(["ps", "--format", "json", &id])
            .output()
            .ok()?;
        let pids: Vec<i64> = serde_json::from_slice(&out.stdout).ok()?;
        (pids.len() >= want).then_some(())
    });
    let held = o_path(&format!("/proc/{pid}/exe")).expect("hold /proc/PID/exe of godwit");
    std::fs::write(bundle.rootfs().join("go"), b"").expect("release the workload");
    child.wait().expect("wait godwit");
    let _ = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", &id])
        .output();
    let attempt = try_overwrite(&held);
    assert!(
        attempt.is_err(),
        "the runtime's binary was writable through /proc/{pid}/exe after `godwit {}` exited",
        args[0]
    );
    assert_eq!(sha(&bin), before, "the runtime's binary changed");
}

#[test]
fn run_binary_cannot_be_written_through_proc_exe() {
    attack(
        |bundle, _| {
            vec![
                "run".into(),
                "--bundle".into(),
                bundle.display().to_string(),
                "ID".into(),
            ]
        },
        "run",
    );
}

#[test]
fn exec_binary_cannot_be_written_through_proc_exe() {
    attack(
        |_, _| {
            vec![
                "exec".into(),
                "ID".into(),
                "sh".into(),
                "-c".into(),
                "while [ ! -e /go ]; do sleep 0.05; done; exit 0".into(),
            ]
        },
        "exec",
    );
}
