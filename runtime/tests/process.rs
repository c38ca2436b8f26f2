//! `godwit process dump` / `godwit process restore` of plain processes in the
//! host's pid namespace (no container): same pids, the workloads' own checks.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The workload programs, built (if needed) where the bundles take them.
fn workloads() -> PathBuf {
    let dir = repo_dir().join("target/workloads");
    let out = Command::new(repo_dir().join("test-bundles/build-workloads.sh"))
        .arg(&dir)
        .output()
        .expect("run build-workloads.sh");
    assert!(
        out.status.success(),
        "build-workloads.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// proc(5) state letter of `pid`, None when it is gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(") ").and_then(|i| stat[i + 2..].chars().next())
}

/// Running or sleeping (not stopped, not in a ptrace stop) and not traced.
fn assert_running_untraced(pid: i32) {
    let st = state(pid);
    assert!(
        matches!(st, Some('S' | 'R' | 'D')),
        "pid {pid} state {st:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status.contains("TracerPid:\t0\n"),
        "pid {pid} is traced: {status}"
    );
}

fn alive(pid: i32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Processes this test started (or restored): SIGKILLed by pid on drop, as
/// long as the pid still runs the program we started there.
struct Procs(Vec<(i32, String)>);

impl Procs {
    fn add(&mut self, pid: i32) {
        if let Some(c) = comm(pid) {
            self.0.push((pid, c));
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (pid, c) in &self.0 {
            if comm(*pid).as_deref() == Some(c.as_str()) {
                // SAFETY: kill(2) of a process this test started.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
}

/// A scratch directory of its own for each test.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("godwit-process-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// Starts `program args` as a plain process of its own session (setsid),
/// stdio on /dev/null, orphaned (its parent is the host's reaper, as for a
/// daemon) and with `cwd`; returns its pid.
fn start_orphan(cwd: &Path, program: &str, args: &[&str]) -> i32 {
    start_orphan_with(cwd, "setsid", program, args)
}

/// [`start_orphan`] with `wrapper` (`setsid`, or `exec` for a workload that
/// calls setsid itself) in front of the program.
fn start_orphan_with(cwd: &Path, wrapper: &str, program: &str, args: &[&str]) -> i32 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"{wrapper} "$@" </dev/null >/dev/null 2>&1 & echo $!"#
        ))
        .arg("sh")
        .arg(workloads().join(program))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("spawn sh");
    assert!(out.status.success());
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid from sh");
    wait_for("workload started", Duration::from_secs(10), || {
        // (credcheck renames itself "credcheck-x")
        comm(pid).filter(|c| c.starts_with(program)).map(|_| ())
    });
    pid
}

fn godwit(args: &[&str]) -> Output {
    Command::new(godwit_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn godwit")
}

fn ok(args: &[&str]) -> String {
    let out = godwit(args);
    assert!(
        out.status.success(),
        "godwit {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = godwit(args);
    assert!(
        !out.status.success(),
        "godwit {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Lines "<n> ..." of a workload's file, as (n, line).
fn lines(file: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let n = l.split_whitespace().next()?.parse().ok()?;
            Some((n, l.to_string()))
        })
        .collect()
}

fn last_n(file: &Path) -> Option<u64> {
    lines(file).last().map(|(n, _)| *n)
}

/// Every tick once, in order (no reset, no gap), and every check held.
fn assert_continuous(file: &Path) {
    let all = lines(file);
    assert!(!all.is_empty(), "{} is empty", file.display());
    let first = all[0].0;
    for (i, (n, line)) in all.iter().enumerate() {
        assert_eq!(
            *n,
            first + i as u64,
            "{}: line {i} is {line:?}",
            file.display()
        );
        assert!(
            !line.contains("BAD") && !line.contains("BACKWARDS"),
            "{}: {line:?}",
            file.display()
        );
    }
}

/// The tree is gone: every pid of it dead or a zombie awaiting the reaper.
fn assert_gone(pids: &[i32]) {
    for &p in pids {
        wait_for("dumped process killed", Duration::from_secs(10), || {
            (!alive(p)).then_some(())
        });
    }
}

fn dump_json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("dump --json: {e}: {out}"))
}

fn pids_of(report: &serde_json::Value) -> Vec<i32> {
    report["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_i64().expect("pid") as i32)
        .collect()
}

/// Dump (killing the tree) → restore detached → same pids, the workload's own
/// checks hold and its ticks continue without reset or gap.
fn dump_kill_restore(name: &str, program: &str, args: &[&str], file: &str, procs_min: usize) {
    let dir = scratch(name);
    dump_kill_restore_in(dir.path(), name, program, args, file, procs_min);
}

/// [`dump_kill_restore`] for a tree with zombies: they come back as zombies
/// (same pids), and the restored tree, still running, is handed back with
/// its scratch directory.
fn dump_kill_restore_keep(
    name: &str,
    program: &str,
    args: &[&str],
    file: &str,
    procs_min: usize,
) -> (tempfile::TempDir, Procs) {
    let dir = scratch(name);
    dump_kill_restore_in(dir.path(), name, program, args, file, procs_min)
}

/// [`dump_kill_restore`] with the workload's cwd (and files) in `cwd`.
fn dump_kill_restore_in(
    cwd: &Path,
    name: &str,
    program: &str,
    args: &[&str],
    file: &str,
    procs_min: usize,
) -> (tempfile::TempDir, Procs) {
    let dir = scratch(name);
    let file = dir.path().join(file);
    let mut procs = Procs(Vec::new());
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{dir}", s(dir.path())))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // credcheck makes its own session (setsid must not fail there).
    let wrapper = if program == "credcheck" {
        "exec"
    } else {
        "setsid"
    };
    let pid = start_orphan_with(cwd, wrapper, program, &args);
    procs.add(pid);
    wait_for("workload ticks", Duration::from_secs(20), || {
        last_n(&file).filter(|&n| n >= 3)
    });
    let tree: Vec<i32> = {
        let mut t = vec![pid];
        let mut i = 0;
        while i < t.len() {
            let kids = std::fs::read_dir(format!("/proc/{}/task", t[i]))
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| std::fs::read_to_string(e.path().join("children")).ok())
                        .flat_map(|c| {
                            c.split_whitespace()
                                .filter_map(|p| p.parse().ok())
                                .collect::<Vec<i32>>()
                        })
                        .collect::<Vec<i32>>()
                })
                .unwrap_or_default();
            t.extend(kids);
            i += 1;
        }
        t
    };
    for &p in &tree[1..] {
        procs.add(p);
    }
    // Zombies before the dump (the workload never reaps them unasked).
    let zombies: Vec<i32> = tree
        .iter()
        .copied()
        .filter(|&p| state(p) == Some('Z'))
        .collect();
    let image = dir.path().join("image");
    let report = dump_json(&[
        "process",
        "dump",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
        "--json",
    ]);
    let pids = pids_of(&report);
    assert!(pids.len() >= procs_min, "{report}");
    assert_eq!(pids[0], pid);
    for key in ["freeze_us", "dump_us", "write_us", "total_us"] {
        assert!(report[key].is_u64(), "{key} in {report}");
    }
    let comms: Vec<(i32, Option<String>)> = pids.iter().map(|&p| (p, comm(p))).collect();

    assert_gone(&pids);
    let at_dump = last_n(&file).expect("ticks");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(last_n(&file), Some(at_dump), "nothing runs after the dump");

    let pid_file = dir.path().join("pid");
    let out = ok(&[
        "process",
        "restore",
        "--detach",
        "--image-path",
        s(&image),
        "--pid-file",
        s(&pid_file),
        "--json",
    ]);
    let restored: serde_json::Value = serde_json::from_str(out.trim()).expect("restore --json");
    assert_eq!(restored["root_pid"], pid, "{restored}");
    for key in ["read_us", "stub_us", "rebuild_us", "total_us"] {
        assert!(restored[key].is_u64(), "{key} in {restored}");
    }
    let written: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid in pid file");
    assert_eq!(written, pid);
    // Same pids, same programs; zombies are zombies again.
    for (p, c) in &comms {
        if zombies.contains(p) {
            assert_eq!(state(*p), Some('Z'), "zombie {p} not restored as one");
        } else {
            assert!(alive(*p), "pid {p} not restored");
            assert_eq!(&comm(*p), c, "pid {p}");
        }
    }
    wait_for("workload continues", Duration::from_secs(20), || {
        last_n(&file).filter(|&n| n >= at_dump + 5)
    });
    assert_continuous(&file);
    for &p in pids.iter().filter(|p| !zombies.contains(p)) {
        assert!(
            alive(p),
            "pid {p} died after the restore: {:?}",
            lines(&file).last()
        );
    }
    (dir, procs)
}

#[test]
fn counter_continues_with_its_pid() {
    dump_kill_restore("counter", "counter", &["10", "{dir}/count"], "count", 1);
}

/// A parent's unreaped children (one exited 7, one a process-group leader
/// killed by SIGTERM whose group a live child is still in) come back as
/// zombies with the same pids, group and status: the parent's wait()
/// returns what it would have returned before the dump.
#[test]
fn zombies_come_back_unreaped_with_their_status() {
    let (dir, _procs) =
        dump_kill_restore_keep("zombies", "zombies", &["{dir}/out", "10"], "out", 4);
    let out = dir.path().join("out");
    std::fs::write(dir.path().join("out.reap"), b"").expect("reap trigger");
    let reaped = wait_for("the parent reaps", Duration::from_secs(20), || {
        lines(&out)
            .into_iter()
            .find(|(_, l)| l.contains("reaped"))
            .map(|(_, l)| l)
    });
    assert!(reaped.ends_with("reaped a=exit:7 b=signal:15"), "{reaped}");
    wait_for("ticks after the reap", Duration::from_secs(20), || {
        lines(&out)
            .last()
            .filter(|(_, l)| !l.contains("reaped"))
            .map(|_| ())
    });
    assert_continuous(&out);
}

#[test]
fn memcheck_memory_intact() {
    dump_kill_restore("memcheck", "memcheck", &["16", "{dir}/out", "10"], "out", 1);
}

#[test]
fn threads_all_continue() {
    dump_kill_restore("threads", "threads", &["4", "{dir}/out", "10"], "out", 1);
}

#[test]
fn pipetree_three_processes_same_pids() {
    dump_kill_restore("pipetree", "pipetree", &["{dir}/out", "10"], "out", 3);
}

#[test]
fn shmtree_shared_memory() {
    dump_kill_restore("shmtree", "shmtree", &["{dir}/out", "10"], "out", 2);
}

#[test]
fn sigcheck_signals_and_timers() {
    dump_kill_restore("sigcheck", "sigcheck", &["{dir}/out", "10"], "out", 1);
}

#[test]
fn evcheck_event_fds() {
    dump_kill_restore("evcheck", "evcheck", &["{dir}/out", "10"], "out", 1);
}

#[test]
fn seccheck_seccomp_filter() {
    dump_kill_restore("seccheck", "seccheck", &["{dir}/out", "10"], "out", 1);
}

#[test]
fn sleepcheck_nanosleep() {
    dump_kill_restore("sleepcheck", "sleepcheck", &["{dir}/out", "100"], "out", 1);
}

#[test]
fn fdcheck_file_descriptors() {
    let dir = scratch("fddata");
    let data: String = (0..200_000).map(|n| format!("{n:07}\n")).collect();
    // The data file must outlive the test's scratch dir handling below.
    let data_path = dir.path().join("data");
    std::fs::write(&data_path, data).expect("data file");
    let args = [
        s(&data_path).to_string(),
        "{dir}/log".to_string(),
        "10".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dump_kill_restore("fdcheck", "fdcheck", &args, "log", 1);
}

#[test]
fn leave_running_keeps_the_process_going() {
    let dir = scratch("leave");
    let count = dir.path().join("count");
    let mut procs = Procs(Vec::new());
    let pid = start_orphan(dir.path(), "counter", &["10", s(&count)]);
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || last_n(&count));
    let image = dir.path().join("image");
    let out = ok(&[
        "process",
        "dump",
        "--leave-running",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert!(
        out.contains("left running") && out.contains("freeze"),
        "{out}"
    );
    assert!(image.join("inventory.json").exists());
    let at_dump = last_n(&count).expect("ticks");
    wait_for("counter continues", Duration::from_secs(10), || {
        last_n(&count).filter(|&n| n >= at_dump + 5)
    });
    assert_running_untraced(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("TracerPid:\t0"), "{status}");
    assert_continuous(&count);
}

/// Restoring while the original still runs: an error naming the pid, and
/// nothing created (no stub, no pid file), the original untouched.
#[test]
fn taken_pid_is_refused_by_name() {
    let dir = scratch("taken");
    let count = dir.path().join("count");
    let mut procs = Procs(Vec::new());
    let pid = start_orphan(dir.path(), "counter", &["10", s(&count)]);
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || last_n(&count));
    let image = dir.path().join("image");
    ok(&[
        "process",
        "dump",
        "--leave-running",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    let pid_file = dir.path().join("pid");
    let t = Instant::now();
    let err = fails(&[
        "process",
        "restore",
        "--detach",
        "--image-path",
        s(&image),
        "--pid-file",
        s(&pid_file),
    ]);
    assert!(
        err.contains(&format!("pid {pid} is in use by counter")),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(!pid_file.exists());
    assert!(alive(pid));
    assert_running_untraced(pid);
    // No stopped stub left anywhere: a godwit child stopped and orphaned.
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        assert!(
            !(stat.contains("(godwit) T 1 ") || stat.contains("(godwit) t 1 ")),
            "a stopped godwit stub was left: {stat}"
        );
    }
    let at = last_n(&count).expect("ticks");
    wait_for("original continues", Duration::from_secs(10), || {
        last_n(&count).filter(|&n| n >= at + 3)
    });
    assert_continuous(&count);
}

/// A file the tree had open is gone: restore refuses before creating anything.
#[test]
fn missing_file_is_refused_before_anything_is_created() {
    let dir = scratch("missing");
    let count = dir.path().join("count");
    let mut procs = Procs(Vec::new());
    let pid = start_orphan(dir.path(), "counter", &["10", s(&count)]);
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || last_n(&count));
    let image = dir.path().join("image");
    ok(&[
        "process",
        "dump",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert_gone(&[pid]);
    std::fs::remove_file(&count).expect("remove the open file");
    let pid_file = dir.path().join("pid");
    let err = fails(&[
        "process",
        "restore",
        "--detach",
        "--image-path",
        s(&image),
        "--pid-file",
        s(&pid_file),
    ]);
    assert!(
        err.contains(&format!("pid {pid} fd 3: {}", count.display())),
        "{err}"
    );
    assert!(!count.exists(), "restore must not create the file");
    assert!(!pid_file.exists());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(pid), "nothing restored at pid {pid}");
}

/// A kind of fd the dumper does not support: the dump fails naming pid and
/// fd, leaves no image and the process running.
#[test]
fn unsupported_fd_fails_the_dump_and_the_process_runs_on() {
    let dir = scratch("inotify");
    let out = dir.path().join("out");
    let mut procs = Procs(Vec::new());
    let pid = start_orphan(dir.path(), "inotify", &[s(&out), "10"]);
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || last_n(&out));
    let image = dir.path().join("image");
    let err = fails(&[
        "process",
        "dump",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert!(
        err.contains(&format!("pid {pid} fd")) && err.contains("inotify"),
        "{err}"
    );
    assert!(!image.exists(), "partial image left");
    let at = last_n(&out).expect("ticks");
    wait_for("process runs on", Duration::from_secs(10), || {
        last_n(&out).filter(|&n| n >= at + 3)
    });
    assert_running_untraced(pid);
}

#[test]
fn unimplemented_flags_are_refused_by_name() {
    let dir = scratch("flags");
    let image = dir.path().join("image");
    for flag in ["--tcp-established", "--ext-unix-sk", "--file-locks"] {
        let err = fails(&[
            "process",
            "dump",
            "--pid",
            "1",
            "--image-path",
            s(&image),
            flag,
        ]);
        assert!(err.contains(flag), "{err}");
        let err = fails(&["process", "restore", "--image-path", s(&image), flag]);
        assert!(err.contains(flag), "{err}");
    }
    assert!(!image.exists());
    // Dumping a tree that holds godwit itself is refused.
    let err = fails(&["process", "dump", "--pid", "1", "--image-path", s(&image)]);
    assert!(err.contains("godwit itself"), "{err}");
}

/// A job started from a shell on a pty (under `script`): refused without
/// --shell-job; with it, dumped, and restored in the foreground under another
/// `script`: the output goes on on the new terminal, and the restoring godwit
/// exits with the job's status (128+9 when it is killed).
#[test]
fn shell_job_continues_on_the_restoring_terminal() {
    let dir = scratch("shelljob");
    let d = dir.path();
    let count = d.join("count");
    let pid_path = d.join("jobpid");
    let mut procs = Procs(Vec::new());
    let job = format!(
        "sh -c 'set -m; {} 20 {} & echo $! > {}; wait'",
        s(&workloads().join("counter")),
        s(&count),
        s(&pid_path)
    );
    let tty1 = std::fs::File::create(d.join("tty1")).expect("tty1");
    let mut script1 = Command::new("script")
        .args(["-qefc", &job, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(tty1)
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    let pid: i32 = wait_for("job pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_path).ok()?.trim().parse().ok()
    });
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || {
        last_n(&count).filter(|&n| n >= 3)
    });
    let image = d.join("image");
    let err = fails(&[
        "process",
        "dump",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert!(err.contains("--shell-job"), "{err}");
    assert!(!image.exists());
    ok(&[
        "process",
        "dump",
        "--shell-job",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert_gone(&[pid]);
    let _ = script1.wait();
    let at_dump = last_n(&count).expect("ticks");

    // Restored without --shell-job: the terminal is not there to reconnect.
    let err = fails(&["process", "restore", "--detach", "--image-path", s(&image)]);
    assert!(err.contains("--shell-job"), "{err}");

    let restore = format!(
        "{} process restore --shell-job --image-path {}",
        s(&godwit_bin()),
        s(&image)
    );
    let tty2_path = d.join("tty2");
    let tty2 = std::fs::File::create(&tty2_path).expect("tty2");
    let mut script2 = Command::new("script")
        .args(["-qefc", &restore, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(tty2)
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    wait_for(
        "restored job ticks on the new terminal",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&tty2_path).ok()?;
            let on_tty: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            on_tty.iter().any(|&n| n >= at_dump + 5).then_some(())
        },
    );
    assert!(alive(pid));
    let text = std::fs::read_to_string(&tty2_path).expect("tty2");
    assert!(text.contains(&format!("restored pid {pid}")), "{text}");
    assert_continuous(&count);
    // SAFETY: kill(2) of the job this test started (restored at its pid).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let status = script2.wait().expect("script");
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "godwit exits with the job's status"
    );
}

#[test]
fn clockcheck_clocks_never_go_backwards() {
    dump_kill_restore("clockcheck", "clockcheck", &["{dir}/out", "10"], "out", 1);
}

#[test]
fn credcheck_credentials_and_attributes() {
    // credcheck works in "work/" under its cwd (the scratch dir).
    let dir = scratch("credcwd");
    std::fs::create_dir(dir.path().join("work")).expect("work dir");
    dump_kill_restore_in(
        dir.path(),
        "credcheck",
        "credcheck",
        &["{dir}/out", "10"],
        "out",
        1,
    );
}

/// Without --detach the restoring godwit is the root's parent: it forwards
/// signals to it and exits with its status (128+15 for SIGTERM).
#[test]
fn foreground_restore_forwards_signals_and_exits_with_the_status() {
    let dir = scratch("foreground");
    let count = dir.path().join("count");
    let mut procs = Procs(Vec::new());
    let pid = start_orphan(dir.path(), "counter", &["10", s(&count)]);
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || last_n(&count));
    let image = dir.path().join("image");
    ok(&[
        "process",
        "dump",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert_gone(&[pid]);
    let at_dump = last_n(&count).expect("ticks");
    let mut restorer = Command::new(godwit_bin())
        .args(["process", "restore", "--image-path", s(&image)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn godwit");
    let godwit_pid = restorer.id() as i32;
    wait_for("counter continues", Duration::from_secs(20), || {
        last_n(&count).filter(|&n| n >= at_dump + 5)
    });
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("PPid:").map(|v| v.trim().to_string()));
    assert_eq!(
        ppid,
        Some(godwit_pid.to_string()),
        "the restorer is the parent"
    );
    // SAFETY: kill(2) of the godwit this test started.
    unsafe { libc::kill(godwit_pid, libc::SIGTERM) };
    let status = restorer.wait().expect("wait godwit");
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!alive(pid));
    assert_continuous(&count);
}

/// A file the tree had open changed after the dump (size, then only mtime):
/// restore refuses before creating anything, naming the file and what changed.
#[test]
fn changed_file_is_refused_before_anything_is_created() {
    let dir = scratch("changed");
    let count = dir.path().join("count");
    let mut procs = Procs(Vec::new());
    let pid = start_orphan(dir.path(), "counter", &["10", s(&count)]);
    procs.add(pid);
    wait_for("ticks", Duration::from_secs(10), || last_n(&count));
    let image = dir.path().join("image");
    ok(&[
        "process",
        "dump",
        "--pid",
        &pid.to_string(),
        "--image-path",
        s(&image),
    ]);
    assert_gone(&[pid]);
    let original = std::fs::read(&count).unwrap();
    let pid_file = dir.path().join("pid");
    let restore = [
        "process",
        "restore",
        "--detach",
        "--image-path",
        s(&image),
        "--pid-file",
        s(&pid_file),
    ];
    // Grown by someone else.
    std::fs::write(&count, [original.as_slice(), b"999\n"].concat()).unwrap();
    let err = fails(&restore);
    assert!(
        err.contains(&format!("pid {pid} fd 3: {}", count.display())),
        "{err}"
    );
    assert!(err.contains("size"), "{err}");
    // Same size, other content: the modification time tells.
    let mut same_size = original.clone();
    if let Some(b) = same_size.first_mut() {
        *b = b'9';
    }
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&count, &same_size).unwrap();
    let err = fails(&restore);
    assert!(err.contains("modified since the dump"), "{err}");
    assert!(!pid_file.exists());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(pid), "nothing restored at pid {pid}");
}
