//! Where godwit must behave as runc does, because clients (containerd,
//! podman) and conformance suites (runc's bats files, runtime-tools,
//! youki's contest) look there: the default spec, terminals, mount options,
//! hooks, exit codes, cgroup names, what leaks into a container, error lines
//! and help.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cgroup_dirs, wait_for, Bundle, Godwit};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `godwit run` in the foreground: (exit code, stdout, stderr).
fn run_fg(g: &Godwit, bundle: &Bundle, id: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--bundle", s(bundle.path()), id]);
    let out = g.run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn runc_spec(rootless: bool) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("runc");
    cmd.arg("spec").current_dir(dir.path());
    if rootless {
        cmd.arg("--rootless");
    }
    let out = cmd
        .output()
        .expect("runc (hack/setup installs it) to compare specs with");
    assert!(out.status.success(), "runc spec failed");
    serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap()
}

#[test]
fn spec_is_runcs_and_rootless_spec_is_runcs_rootless_one() {
    let g = Godwit::new();
    for rootless in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["spec", "--bundle", s(dir.path())];
        if rootless {
            args.push("--rootless");
        }
        g.ok(&args);
        let ours: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let mut theirs = runc_spec(rootless);
        // The only field allowed to differ: the version of the spec written.
        theirs["ociVersion"] = ours["ociVersion"].clone();
        assert_eq!(
            ours,
            theirs,
            "godwit spec{} differs from runc's",
            if rootless { " --rootless" } else { "" }
        );
    }
}

/// A detached container running `sleep 1000`, stdio on /dev/null.
fn sleeper(g: &Godwit, name: &str) -> (Bundle, String) {
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id(name);
    g.start_detached_null(&bundle, &id);
    (bundle, id)
}

#[test]
fn exec_tty_allocates_a_pty_owned_by_the_user() {
    let g = Godwit::new();
    let (_bundle, id) = sleeper(&g, "rp-exectty");
    let out = g.ok(&[
        "exec",
        "-t",
        "-u",
        "65534:65534",
        &id,
        "sh",
        "-c",
        "test -t 0 && test -t 1 && stat -c 'owner=%u' $(tty) && tty",
    ]);
    assert!(out.contains("owner=65534"), "pty not chowned: {out:?}");
    assert!(out.contains("/dev/pts/"), "stdout is not a pty: {out:?}");
    // Without --tty: no terminal.
    let out = g.run(&["exec", &id, "sh", "-c", "test -t 1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn run_terminal_pty_is_owned_by_the_user() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sh", "-c", "stat -c 'owner=%u' $(tty)"]);
    bundle.edit(|c| {
        c["process"]["terminal"] = true.into();
        c["process"]["user"] = serde_json::json!({"uid": 65534, "gid": 65534});
    });
    let id = g.id("rp-runtty");
    let (code, out, err) = run_fg(&g, &bundle, &id, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("owner=65534"), "{out:?}");
}

#[test]
fn exec_process_file_without_user_runs_as_root() {
    let g = Godwit::new();
    let (bundle, id) = sleeper(&g, "rp-execp");
    let file = bundle.path().join("process.json");
    std::fs::write(&file, r#"{"args":["/bin/id","-u"],"cwd":"/"}"#).unwrap();
    let out = g.ok(&["exec", "-p", s(&file), &id]);
    assert_eq!(out.trim(), "0");
}

/// Options of the mounts at `points` as the container's mountinfo shows them.
fn mount_options(out: &str, point: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[4] == point)
        .map(|f| f[5].to_string())
        .collect()
}

#[test]
fn every_mount_option_is_applied() {
    let g = Godwit::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "cat /proc/self/mountinfo; echo ---; grep -E ' (/dev|/mnt/t) ' /proc/self/mounts; \
         touch /dev/x 2>/dev/null && echo dev-writable; \
         mkdir /sys/fs/cgroup/pids/x 2>/dev/null && echo cgroup-writable; \
         touch /sys/fs/cgroup/x 2>/dev/null && echo cgroup-tmpfs-writable; \
         touch /mnt/t/x 2>/dev/null && echo t-writable; \
         touch /mnt/b/x 2>/dev/null && echo b-writable; true",
    ]);
    let bind_src = tempfile::tempdir().unwrap();
    bundle.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for m in mounts.iter_mut() {
            if m["destination"] == "/dev" {
                m["options"].as_array_mut().unwrap().push("ro".into());
            }
        }
        mounts.push(serde_json::json!({
            "destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
            "options": ["ro", "nosuid", "nodev", "noexec", "mode=700", "size=1m"]
        }));
        mounts.push(serde_json::json!({
            "destination": "/mnt/b", "type": "bind", "source": bind_src.path(),
            "options": ["rbind", "ro", "nosuid", "noexec"]
        }));
    });
    let id = g.id("rp-mounts");
    let (code, out, err) = run_fg(&g, &bundle, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let (mountinfo, rest) = out.split_once("---").unwrap();
    let has = |point: &str, wanted: &[&str]| {
        let options = mount_options(mountinfo, point);
        assert!(!options.is_empty(), "{point} not mounted: {mountinfo}");
        let last = options.last().unwrap();
        for w in wanted {
            assert!(
                last.split(',').any(|o| o == *w),
                "{point}: {w} missing in {last}"
            );
        }
    };
    has("/dev", &["ro", "nosuid"]);
    has("/dev/pts", &["rw", "nosuid", "noexec"]);
    has("/dev/shm", &["nosuid", "nodev", "noexec"]);
    has("/sys", &["ro", "nosuid", "nodev", "noexec"]);
    has("/sys/fs/cgroup", &["ro", "nosuid", "nodev", "noexec"]);
    has("/mnt/t", &["ro", "nosuid", "nodev", "noexec"]);
    has("/mnt/b", &["ro", "nosuid", "noexec"]);
    // Every cgroup hierarchy under /sys/fs/cgroup is read-only too.
    let cgroup_mounts: Vec<_> = mountinfo
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[4].starts_with("/sys/fs/cgroup/"))
        .map(|f| (f[4].to_string(), f[5].to_string()))
        .collect();
    assert!(!cgroup_mounts.is_empty(), "{mountinfo}");
    for (point, options) in &cgroup_mounts {
        assert!(
            options.split(',').any(|o| o == "ro"),
            "{point} is {options}"
        );
    }
    // tmpfs data options (mode, size) from /proc/self/mounts.
    let t = rest
        .lines()
        .find(|l| l.contains(" /mnt/t "))
        .unwrap_or_else(|| panic!("{rest}"));
    assert!(t.contains("mode=700"), "{t}");
    assert!(t.contains("size=1024k"), "{t}");
    for writable in [
        "dev-writable",
        "cgroup-writable",
        "cgroup-tmpfs-writable",
        "t-writable",
        "b-writable",
    ] {
        assert!(!out.contains(writable), "{writable}: {out}");
    }
}

#[test]
fn no_pivot_masks_every_host_proc() {
    // A second full proc mount on the host, as any other container's or
    // tool's may be: after chroot it would let the container mount a proc.
    let extra = tempfile::Builder::new()
        .prefix("godwit-rp-proc-")
        .tempdir()
        .unwrap();
    let status = Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(extra.path())
        .status()
        .unwrap();
    assert!(status.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(extra.path().to_path_buf());

    let g = Godwit::new();
    let bundle = Bundle::new(&[
        "unshare",
        "-mrpf",
        "sh",
        "-c",
        "mount -t proc none /proc && echo MOUNTED",
    ]);
    bundle.edit(|c| {
        for set in ["bounding", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push("CAP_SETFCAP".into());
        }
    });
    let id = g.id("rp-nopivot");
    let (code, out, err) = run_fg(&g, &bundle, &id, &["--no-pivot"]);
    assert!(!out.contains("MOUNTED"), "proc mounted: {out} {err}");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn failing_poststop_runs_once_and_the_container_is_removed() {
    let g = Godwit::new();
    let log = g.root.path().join("hooks.log");
    let bundle = Bundle::new(&["sleep", "1000"]);
    let hook = |name: &str, code: i32| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo {name} >> {}; exit {code}", log.display())]
        })
    };
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            "poststart": [hook("poststart", 3)],
            "poststop": [hook("poststop", 4)],
        });
    });
    let id = g.id("rp-hooks");
    // A failing poststart hook: a warning, and the container runs on.
    g.ok_detached(&["run", "--detach", "--bundle", s(bundle.path()), &id]);
    assert_eq!(g.status(&id), "running");
    g.ok(&["kill", &id, "KILL"]);
    wait_for("container stopped", Duration::from_secs(10), || {
        (g.status(&id) == "stopped").then_some(())
    });
    let out = g.run(&["delete", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("poststop"),
        "no warning"
    );
    assert!(!g.state_dir(&id).exists(), "container not removed");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "poststart\npoststop\n"
    );
}

#[test]
fn exit_codes_and_flags_as_runc() {
    let g = Godwit::new();
    // exec into a created container is allowed.
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("rp-codes");
    g.ok_null(&["create", "--bundle", s(bundle.path()), &id]);
    assert_eq!(g.status(&id), "created");
    assert_eq!(g.ok(&["exec", &id, "echo", "hi"]).trim(), "hi");
    // kill ID 0 checks the init is alive.
    g.ok(&["kill", &id, "0"]);
    g.ok(&["start", &id]);
    g.ok(&["kill", &id, "0"]);

    let code = |args: &[&str]| g.run(args).status.code();
    // exec failures: 255.
    let missing_dir = g.root.path().join("no-such-dir/pid");
    assert_eq!(
        code(&["exec", "--pid-file", s(&missing_dir), &id, "true"]),
        Some(255)
    );
    assert!(!missing_dir.exists());
    assert_eq!(code(&["exec", &id, "/no/such/binary"]), Some(255));
    assert_eq!(code(&["exec", "rp-no-such-container", "true"]), Some(255));
    // --cgroup of a sub-cgroup that does not exist fails and creates none.
    let init = g.pid(&id);
    let dirs = cgroup_dirs(init);
    assert!(!dirs.is_empty());
    assert_eq!(
        code(&["exec", "--cgroup", "rp-nonexistent", &id, "true"]),
        Some(255)
    );
    for d in &dirs {
        assert!(!d.join("rp-nonexistent").exists(), "{}", d.display());
    }
    // The process's own exit status otherwise.
    assert_eq!(code(&["exec", &id, "sh", "-c", "exit 7"]), Some(7));

    // A flag given twice (podman passes --leave-running twice) is accepted:
    // the failure is the missing container, not the command line (clap: 2).
    let out = g.run(&[
        "checkpoint",
        "--leave-running",
        "--leave-running",
        "rp-no-such-container",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    g.ok(&["kill", &id, "KILL"]);
    wait_for("container stopped", Duration::from_secs(10), || {
        (g.status(&id) == "stopped").then_some(())
    });
    assert!(!g.run(&["kill", &id, "0"]).status.success());
}

#[test]
fn cgroups_are_named_by_id_deleted_with_sub_cgroups_and_oom_killer_disabled() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 200_000_000i64, "disableOOMKiller": true});
    });
    let id = g.id("rp-cgroup");
    g.start_detached_null(&bundle, &id);
    let dirs = cgroup_dirs(g.pid(&id));
    assert!(!dirs.is_empty());
    // runc's name without cgroupsPath: /<id> in every hierarchy.
    for d in &dirs {
        assert_eq!(
            d.file_name().and_then(|n| n.to_str()),
            Some(id.as_str()),
            "{}",
            d.display()
        );
    }
    let memory = PathBuf::from("/sys/fs/cgroup/memory").join(&id);
    if memory.is_dir() {
        let oom = std::fs::read_to_string(memory.join("memory.oom_control")).unwrap();
        assert!(oom.contains("oom_kill_disable 1"), "{oom}");
    }
    // Sub-cgroups in every hierarchy, one with a process in it.
    for d in &dirs {
        std::fs::create_dir_all(d.join("rp-sub/deeper")).unwrap();
    }
    g.ok_null(&[
        "exec", "--detach", "--cgroup", "rp-sub", &id, "sleep", "1000",
    ]);
    let procs = std::fs::read_to_string(dirs[0].join("rp-sub/cgroup.procs")).unwrap();
    assert!(!procs.trim().is_empty(), "exec --cgroup put nothing there");
    // runc's CONTROLLER:PATH form (cgroup v1): those controllers only.
    let memory_dir = PathBuf::from("/sys/fs/cgroup/memory").join(&id);
    if memory_dir.is_dir() {
        let out = g.ok(&[
            "exec",
            "--cgroup",
            "memory,pids:rp-sub/deeper",
            &id,
            "cat",
            "/proc/self/cgroup",
        ]);
        let line_of = |controller: &str| -> String {
            out.lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|c| c == controller))
                })
                .unwrap_or_else(|| panic!("no {controller} line in {out}"))
                .to_string()
        };
        assert!(
            line_of("memory").ends_with(&format!("/{id}/rp-sub/deeper")),
            "{out}"
        );
        assert!(
            line_of("pids").ends_with(&format!("/{id}/rp-sub/deeper")),
            "{out}"
        );
        assert!(line_of("devices").ends_with(&format!("/{id}")), "{out}");
        // A sub-cgroup missing in a named controller, or a controller named
        // twice, fails before anything runs (255, as runc).
        let code = |args: &[&str]| g.run(args).status.code();
        assert_eq!(
            code(&["exec", "--cgroup", "memory:rp-none", &id, "true"]),
            Some(255)
        );
        assert!(!memory_dir.join("rp-none").exists());
        assert_eq!(
            code(&[
                "exec",
                "--cgroup",
                "memory:rp-sub",
                "--cgroup",
                "memory:rp-sub",
                &id,
                "true"
            ]),
            Some(255)
        );
        assert_eq!(
            code(&[
                "exec",
                "--cgroup",
                "rp-sub",
                "--cgroup",
                "memory:rp-sub",
                &id,
                "true"
            ]),
            Some(255)
        );
    }
    g.ok(&["delete", "--force", &id]);
    assert!(!g.state_dir(&id).exists());
    for d in &dirs {
        assert!(!d.exists(), "{} left", d.display());
    }
}

/// SigIgn, SigBlk (hex masks) and the fds of a process, as its own
/// /proc/self shows them; the script prints `KEY value` lines.
const PROBE: &str = "grep -E '^Sig(Ign|Blk)' /proc/self/status; \
                     for f in /proc/self/fd/*; do echo fd ${f##*/}; done";

fn probe_lines(out: &str) -> (String, String, Vec<String>) {
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{k} in {out}"))
    };
    let fds = out
        .lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .map(String::from)
        .collect();
    (field("SigIgn:"), field("SigBlk:"), fds)
}

#[test]
fn container_processes_start_clean() {
    let g = Godwit::new();
    // The init of a foreground run, with one preserved fd.
    let bundle = Bundle::new(&["sh", "-c", PROBE]);
    let id = g.id("rp-clean");
    let extra = std::fs::File::open("/dev/null").unwrap();
    let out = {
        use std::os::fd::AsRawFd;
        let fd = extra.as_raw_fd();
        let mut cmd = g.cmd();
        cmd.args([
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            s(bundle.path()),
            &id,
        ])
        .stdin(Stdio::null());
        // SAFETY: dup2 in the child before exec, onto fd 3.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.output().unwrap()
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ign, blk, fds) = probe_lines(&text);
    assert_eq!(ign, "0000000000000000", "ignored signals in init: {text}");
    assert_eq!(blk, "0000000000000000", "blocked signals in init: {text}");
    // 0-2, the preserved 3, and the fd the shell's glob reads /proc/self/fd with.
    let unexpected: Vec<_> = fds
        .iter()
        .filter(|f| !["0", "1", "2", "3"].contains(&f.as_str()))
        .collect();
    assert!(unexpected.len() <= 1, "fds in init: {fds:?}");

    // A foreground exec: nothing blocked, and a host SIGTERM ends it.
    let (_b, id) = sleeper(&g, "rp-clean-exec");
    let out = g.ok(&["exec", &id, "sh", "-c", PROBE]);
    let (ign, blk, _) = probe_lines(&out);
    assert_eq!(ign, "0000000000000000", "{out}");
    assert_eq!(blk, "0000000000000000", "{out}");
    let pid_file = g.root.path().join("exec.pid");
    let mut child = g
        .cmd()
        .args(["exec", "--pid-file", s(&pid_file), &id, "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid: i32 = wait_for("exec pid file", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    });
    // SAFETY: a signal to the pid the exec reported, which is its child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}

#[test]
fn errors_are_logrus_lines_on_stderr() {
    let g = Godwit::new();
    let out = g.run(&["state", "rp-no-such-container"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("level=error msg=\"container rp-no-such-container does not exist"),
        "{err}"
    );
    let out = g.run(&["--log-format", "json", "state", "rp-no-such-container"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(err.trim()).expect("one JSON line");
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));
    // With --log, the file has the line and stderr the bare message.
    let log = g.root.path().join("log.json");
    let out = g.run(&[
        "--log",
        s(&log),
        "--log-format",
        "json",
        "state",
        "rp-no-such-container",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("container rp-no-such-container does not exist"));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("\"level\":\"error\""));
}

#[test]
fn help_lists_every_flag_with_a_description() {
    let g = Godwit::new();
    let help = g.ok(&["--help"]);
    assert!(help.contains("--criu"), "{help}");
    assert!(help.contains("--rootless"), "{help}");
    for verb in ["checkpoint", "restore", "create", "update", "exec"] {
        let help = g.ok(&[verb, "--help"]);
        let options: Vec<&str> = help.split_once("Options:").unwrap().1.lines().collect();
        for (i, line) in options.iter().enumerate() {
            let trimmed = line.trim_start();
            if !trimmed.starts_with('-') {
                continue;
            }
            // clap puts the description beside the flag or on the next line.
            let beside = trimmed
                .split_once("  ")
                .is_some_and(|(_, d)| !d.trim().is_empty());
            let below = options
                .get(i + 1)
                .is_some_and(|next| !next.trim().is_empty() && !next.trim_start().starts_with('-'));
            assert!(beside || below, "{verb}: no description: {line}");
        }
    }
}

/// Runs the godwit binary as uid/gid 65534 (nobody), without capabilities.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::godwit_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) to run godwit as nobody")
}

#[test]
fn non_root_caller_of_an_unreadable_state_root_is_told_so() {
    let g = Godwit::new();
    let (_bundle, id) = sleeper(&g, "rp-denied");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(g.root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = s(g.root.path());
    // The root is root's, mode 0700 (as godwit creates /run/godwit and runc
    // /run/runc): nobody may not look in it. runc says
    // "permission denied"; "does not exist" would send them looking elsewhere.
    for args in [
        vec!["--root", root, "state", id.as_str()],
        vec!["--root", root, "list"],
        vec!["--root", root, "kill", id.as_str(), "KILL"],
    ] {
        let out = as_nobody(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "state root {root}: permission denied for uid 65534"
            )) && err.contains("which belongs to uid 0")
                && err.contains("pass --root"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("does not exist"), "{err}");
    }
    // A root nobody cannot even create names the same cause.
    let missing = g.root.path().join("sub/root");
    let out = as_nobody(&["--root", s(&missing), "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied for uid 65534"), "{err}");
    // The container was not touched.
    assert_eq!(g.status(&id), "running");
}

/// Errors from inside container setup name the field or path, the cause
/// (with its errno) and the fix.
#[test]
fn errors_name_the_cause_and_the_fix() {
    let g = Godwit::new();
    let fails = |bundle: &Bundle, name: &str, wrap: Option<&[&str]>| -> String {
        let id = g.id(name);
        let args = ["run", "--bundle", s(bundle.path()), id.as_str()];
        let out = match wrap {
            Some(prefix) => Command::new(prefix[0])
                .args(&prefix[1..])
                .arg(common::godwit_bin())
                .arg("--root")
                .arg(g.root.path())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
            None => g.run(&args),
        };
        assert_eq!(out.status.code(), Some(1), "{name} should fail");
        assert!(!g.state_dir(&id).exists(), "{name} left its state");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // An rlimit above what the kernel allows: field, values, errno, fix.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|c| {
        c["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": nr_open + 1}]);
    });
    let err = fails(&bundle, "rp-rlimit", None);
    assert!(
        err.contains("process.rlimits")
            && err.contains(&format!("hard {}", nr_open + 1))
            && err.contains("EPERM")
            && err.contains("lower it"),
        "{err}"
    );

    // oom_score_adj below the caller's without CAP_SYS_RESOURCE.
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|c| c["process"]["oomScoreAdj"] = serde_json::json!(-1000));
    let no_resource: &[&str] = &[
        "setpriv",
        "--bounding-set=-sys_resource",
        "--inh-caps=-sys_resource",
        "--",
    ];
    let err = fails(&bundle, "rp-oom", Some(no_resource));
    assert!(
        err.contains("process.oomScoreAdj -1000")
            && err.contains("Permission denied (os error 13)")
            && err.contains("CAP_SYS_RESOURCE")
            && err.contains("raise process.oomScoreAdj"),
        "{err}"
    );

    // A bind mount whose source is missing: the mount, the source, the errno.
    let missing = g.root.path().join("no-such-source");
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/mnt", "type": "bind", "source": s(&missing), "options": ["bind"]
        }))
    });
    let err = fails(&bundle, "rp-bindsrc", None);
    assert!(
        err.contains(&format!("mount /mnt: bind source {}", missing.display()))
            && err.contains("No such file or directory (os error 2)")
            && err.contains("create it or fix the mount's source"),
        "{err}"
    );

    // /proc in the rootfs is a symlink.
    let bundle = Bundle::new(&["true"]);
    let proc_dir = bundle.rootfs().join("proc");
    std::fs::remove_dir(&proc_dir).unwrap();
    std::os::unix::fs::symlink("/etc", &proc_dir).unwrap();
    let err = fails(&bundle, "rp-procsym", None);
    assert!(
        err.contains(&format!("{} is a symlink", proc_dir.display()))
            && err.contains("make it a directory in the rootfs"),
        "{err}"
    );

    // restore from a missing image directory: said once, with the fix.
    let bundle = Bundle::new(&["true"]);
    let image = g.root.path().join("no-such-image");
    let id = g.id("rp-noimage");
    let err = g.fails(&[
        "restore",
        "--image-path",
        s(&image),
        "--bundle",
        s(bundle.path()),
        &id,
    ]);
    assert!(
        err.contains(&format!(
            "--image-path \\\"{}\\\": no such directory",
            image.display()
        )) && err.contains("give the directory `godwit checkpoint --image-path` wrote"),
        "{err}"
    );
    assert!(!err.contains("os error"), "errno printed: {err}");
}

#[test]
fn log_times_are_rfc3339_seconds_as_logrus() {
    let g = Godwit::new();
    let out = g.run(&["--log-format", "json", "state", "rp-no-such-container"]);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stderr).trim()).expect("JSON line");
    let time = line["time"].as_str().unwrap();
    // 2006-01-02T15:04:05Z: no fraction, as runc's logrus writes it.
    assert_eq!(time.len(), 20, "{time}");
    assert!(time.ends_with('Z') && !time.contains('.'), "{time}");
}
