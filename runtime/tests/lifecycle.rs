//! The container lifecycle end to end: real bundles, real containers, as root.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn run_echo_prints_and_exits_zero() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["echo", "hello"]);
    let id = g.id("echo");
    let out = g.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(out.status.code(), Some(0));
    // run without --keep deletes the container afterwards.
    assert!(!g.state_dir(&id).exists());
}

#[test]
fn run_propagates_exit_codes() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sh", "-c", "exit 7"]);
    let id = g.id("exit7");
    let out = g.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A container ended by SIGKILL reports 128 + 9, as a shell would.
    let bundle = Bundle::new(&["sleep", "100"]);
    let id = g.id("killed");
    let child = g
        .cmd()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    wait_for("container running", Duration::from_secs(10), || {
        let out = g.run(&["state", &id]);
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (state["status"] == "running").then_some(())
    });
    g.ok(&["kill", &id, "KILL"]);
    let out = child.wait_with_output().expect("wait run");
    assert_eq!(out.status.code(), Some(137));
}

/// A container holding a GiB: its killed process takes a while to exit, and
/// its cgroup dirs refuse rmdir until then; delete --force still succeeds.
#[test]
fn force_delete_of_a_big_container_leaves_nothing() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["blackout", "1024", "1", "/tmp/out"]);
    let id = g.id("big");
    g.start_detached_null(&bundle, &id);
    let out = bundle.rootfs().join("tmp/out");
    wait_for("the GiB touched", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).ok().filter(|t| !t.is_empty())
    });
    let pid = g.pid(&id);
    let cgroups = cgroup_dirs(pid);
    assert!(!cgroups.is_empty());
    g.ok(&["delete", "--force", &id]);
    assert!(!g.state_dir(&id).exists(), "no state dir");
    let left: Vec<_> = cgroups.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
}

#[test]
fn create_start_kill_delete_leaves_nothing() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("life");
    g.ok_detached(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let state = g.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(
        state["bundle"].as_str().unwrap(),
        std::fs::canonicalize(bundle.path())
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert!(state["rootfs"].as_str().unwrap().ends_with("/rootfs"));
    assert!(state["created"].as_str().unwrap().starts_with("20"));
    assert_eq!(state["owner"], "root");
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    // The created container's process waits; start runs the workload.
    g.ok(&["start", &id]);
    assert_eq!(g.status(&id), "running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"sleep\x001000"), "{cmdline:?}");
    let cgroups = cgroup_dirs(pid);
    assert!(!cgroups.is_empty(), "container has its own cgroups");
    assert!(cgroups.iter().all(|d| d.exists()), "{cgroups:?}");

    let list: serde_json::Value =
        serde_json::from_str(&g.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(g.ok(&["list", "-q"]).trim(), id);

    g.ok(&["kill", &id, "SIGKILL"]);
    wait_for("stopped", Duration::from_secs(10), || {
        (g.status(&id) == "stopped").then_some(())
    });
    assert_eq!(g.pid(&id), 0);
    g.ok(&["delete", &id]);
    assert!(!g.state_dir(&id).exists(), "state dir removed");
    for d in &cgroups {
        assert!(!d.exists(), "cgroup {} removed", d.display());
    }
    assert_eq!(g.ok(&["list", "-q"]).trim(), "");
}

#[test]
fn pause_freezes_and_resume_continues() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    let id = g.id("pause");
    g.start_detached(&bundle, &id);
    wait_for("counter ticks", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n >= 3)
    });
    g.ok(&["pause", &id]);
    assert_eq!(g.status(&id), "paused");
    let frozen = last_count(&count).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(last_count(&count).unwrap(), frozen, "no tick while paused");
    g.ok(&["resume", &id]);
    assert_eq!(g.status(&id), "running");
    wait_for("counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n > frozen + 2)
    });
    // The count continued rather than restarting.
    let text = std::fs::read_to_string(&count).unwrap();
    let numbers: Vec<u64> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn exec_runs_with_output_status_env_cwd_user() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("exec");
    g.start_detached(&bundle, &id);

    let out = g.run(&["exec", &id, "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(5));

    let out = g.ok(&[
        "exec",
        "--env",
        "GREETING=hi there",
        "--cwd",
        "/tmp",
        "--user",
        "65534:65534",
        &id,
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u; id -g",
    ]);
    assert_eq!(out, "hi there\n/tmp\n65534\n65534\n");

    // The spec's environment is the base an exec adds to.
    let out = g.ok(&["exec", &id, "sh", "-c", "echo $PATH"]);
    assert!(out.contains("/bin"), "{out}");

    // --process FILE runs the given process document.
    let process = serde_json::json!({
        "args": ["sh", "-c", "echo from-process-file; id -u"],
        "cwd": "/",
        "user": {"uid": 65534, "gid": 65534},
        "env": ["PATH=/bin"]
    });
    let pfile = bundle.path().join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let out = g.ok(&["exec", "--process", pfile.to_str().unwrap(), &id]);
    assert_eq!(out, "from-process-file\n65534\n");

    // A runtime bug seen elsewhere chowned the host's /dev/null on exec --user.
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o666));
}

#[test]
fn ps_lists_the_container_pids() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("ps");
    g.start_detached(&bundle, &id);
    let init = g.pid(&id);
    let pid_file = bundle.path().join("exec.pid");
    g.ok_detached(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "999",
    ]);
    let exec_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<i32> = serde_json::from_str(&g.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&init), "{pids:?} has init {init}");
    assert!(pids.contains(&exec_pid), "{pids:?} has exec {exec_pid}");
    assert_eq!(pids.len(), 2);
    let table = g.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("sleep 999"));
}

/// Receives the pty master that godwit sends over the console socket.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (stream, _) = listener.accept().expect("accept console socket");
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the fd was just received and is owned by nobody else.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received over the console socket");
}

#[test]
fn console_socket_hands_over_a_working_pty() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sh", "-c", "read line; echo got:$line; tty"]);
    bundle.edit(|c| c["process"]["terminal"] = true.into());
    let sock = bundle.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = g.id("tty");
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    g.ok_detached(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let master = std::fs::File::from(receiver.join().unwrap());
    g.ok(&["start", &id]);
    let mut master_w = master.try_clone().unwrap();
    master_w.write_all(b"ping\n").unwrap();
    let mut seen = Vec::new();
    let mut reader = master;
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("/dev/pts/") {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("got:ping"), "{text}");
    assert!(
        text.contains("/dev/pts/0"),
        "the process has a pty as its terminal: {text}"
    );
}

#[test]
fn update_memory_changes_the_cgroup_limit() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("update");
    g.start_detached(&bundle, &id);
    let pid = g.pid(&id);
    g.ok(&["update", "--memory", "48m", "--pids-limit", "77", &id]);
    let dirs = cgroup_dirs(pid);
    let limit_file = dirs
        .iter()
        .map(|d| d.join("memory.limit_in_bytes"))
        .chain(dirs.iter().map(|d| d.join("memory.max")))
        .find(|f| f.exists())
        .expect("memory limit file");
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        (48u64 << 20).to_string()
    );
    let pids_max = dirs
        .iter()
        .map(|d| d.join("pids.max"))
        .find(|f| f.exists())
        .unwrap();
    assert_eq!(std::fs::read_to_string(pids_max).unwrap().trim(), "77");

    // --resources takes the same as a runtime-spec document.
    let res = bundle.path().join("res.json");
    std::fs::write(&res, r#"{"memory": {"limit": 33554432}}"#).unwrap();
    g.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        "33554432"
    );

    // One stats sample reports the same limit.
    let stats: serde_json::Value =
        serde_json::from_str(&g.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["id"], id.as_str());
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], 33554432);
}

#[test]
fn hooks_run_at_their_points() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let log = bundle.path().join("hooks.log");
    let host_hook = |name: &str| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}", log.display())]});
    // startContainer runs in the container after pivot_root: it sees the rootfs.
    // (createContainer runs in the container's mount namespace before pivot_root,
    // where host paths still resolve.)
    let container_hook = |name: &str| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> /tmp/hooks.log")]});
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": [host_hook("createRuntime")],
            "createContainer": [host_hook("createContainer")],
            "startContainer": [container_hook("startContainer")],
            "poststart": [host_hook("poststart")],
            "poststop": [host_hook("poststop")],
        });
    });
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let id = g.id("hooks");
    g.ok_detached(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(read(&log), "createRuntime\ncreateContainer\n");
    let inner = bundle.rootfs().join("tmp/hooks.log");
    assert_eq!(read(&inner), "");
    g.ok(&["start", &id]);
    // startContainer runs in the init after `start` has signalled it.
    wait_for("startContainer hook", Duration::from_secs(10), || {
        (read(&inner) == "startContainer\n").then_some(())
    });
    assert_eq!(read(&log), "createRuntime\ncreateContainer\npoststart\n");
    g.ok(&["delete", "--force", &id]);
    assert_eq!(
        read(&log),
        "createRuntime\ncreateContainer\npoststart\npoststop\n"
    );
}

#[test]
fn features_and_spec() {
    let g = Godwit::new();
    let features: serde_json::Value = serde_json::from_str(&g.ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    let hooks = features["hooks"].as_array().unwrap();
    assert!(hooks.iter().any(|h| h == "poststop"));
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "time"));

    let dir = tempfile::tempdir().unwrap();
    g.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"][0], "sh");
    assert_eq!(spec["root"]["path"], "rootfs");
    let err = g.fails(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn json_log_has_runc_error_lines() {
    let g = Godwit::new();
    let log = g.root.path().join("log.json");
    let out = g
        .cmd()
        .args([
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"]
            .as_str()
            .unwrap()
            .contains("nope does not exist"),
        "{last}"
    );
    assert!(last["time"].as_str().is_some());
}

#[test]
fn foreground_terminal_run_gets_a_pty() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sh", "-c", "tty; echo $((6*7)); exit 4"]);
    bundle.edit(|c| c["process"]["terminal"] = true.into());
    let id = g.id("fgtty");
    // No controlling tty here: run godwit under script(1), which gives it one.
    let cmd = format!(
        "{} --root {} run --bundle {} {}",
        godwit_bin().display(),
        g.root.path().display(),
        bundle.path().display(),
        id
    );
    let out = std::process::Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/0"), "the process has a pty: {text}");
    assert!(text.contains("42"), "{text}");
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(!g.state_dir(&id).exists());
}
