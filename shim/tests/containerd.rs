//! containerd 1.6 drives godwit through containerd-shim-godwit-v2: each test
//! runs its own containerd (see support/) and uses `ctr` as a user would.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::shim::UpdateTaskRequest;
use containerd_shim_protos::ttrpc::context;
use support::{text, Containerd, IMAGE, RUNTIME};

#[test]
fn foreground_run_prints_output_and_returns_exit_codes() {
    let c = Containerd::start("fg");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "echo1",
        "echo",
        "hello",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        c.log_tail()
    );
    assert_eq!(text(&out.stdout), "hello\n");

    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "exit3",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // stderr reaches its own fifo; a task killed by signal N exits 128+N.
    let mut run = c
        .ctr_cmd(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            IMAGE,
            "sig",
            "sh",
            "-c",
            "echo oops >&2; exec sleep 1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    // Killed only once the shell's echo has come out: RUNNING alone does
    // not say the shell got that far.
    let stderr = Collected::start(run.stderr.take().expect("piped stderr"));
    c.wait_status("sig", "RUNNING");
    stderr.wait_for(|text| text.contains("oops"), "echo on stderr");
    c.ok(&["task", "kill", "-s", "KILL", "sig"]);
    let status = run.wait().expect("wait ctr run");
    let stderr = stderr.finish();
    assert_eq!(status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("oops"), "stderr: {stderr}");
    assert!(c.ok(&["task", "ls", "-q"]).trim().is_empty());
    assert!(
        std::fs::read_dir(c.godwit_root())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "godwit state left in {}",
        c.godwit_root().display()
    );
}

#[test]
fn detached_task_exec_ps_metrics_pause_resume_kill_delete() {
    let c = Containerd::start("detached");
    let id = "counter1";
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "counter",
        "100",
        "/tmp/count",
    ]);
    c.wait_status(id, "RUNNING");

    // exec: output, exit status, and the exec's pid listed by ps.
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-exec\n");

    let mut sleeper = c
        .ctr_cmd(&["task", "exec", "--exec-id", "sleeper", id, "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("ctr task exec");
    let mut ps = String::new();
    for _ in 0..100 {
        ps = c.ok(&["task", "ps", id]);
        if ps.lines().count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ps.lines().count(), 3, "init and sleeper expected:\n{ps}");
    assert!(ps.contains("sleeper"), "the exec's id is its INFO:\n{ps}");

    let metrics = c.ok(&["task", "metrics", id]);
    assert!(metrics.contains("pids.current"), "{metrics}");
    assert!(
        metrics.contains("memory.usage_in_bytes") || metrics.contains("memory.usage"),
        "{metrics}"
    );

    // The counter stops while paused and goes on after resume.
    let count = || -> u64 {
        let out = c.ok(&[
            "task",
            "exec",
            "--exec-id",
            "tail",
            id,
            "tail",
            "-n1",
            "/tmp/count",
        ]);
        out.trim().parse().unwrap_or(0)
    };
    c.ok(&["task", "pause", id]);
    c.wait_status(id, "PAUSED");
    let exec_paused = c.ctr(&["task", "exec", "--exec-id", "p", id, "true"]);
    assert!(
        !exec_paused.status.success(),
        "exec into a paused task must fail"
    );
    c.ok(&["task", "resume", id]);
    c.wait_status(id, "RUNNING");
    let before = count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() <= before {
        assert!(
            Instant::now() < deadline,
            "counter does not advance after resume (stays at {before})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // kill --all reaches the exec too; the init is pid 1 of its namespace and
    // ignores TERM, so KILL.
    c.ok(&["task", "kill", "-a", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED");
    let status = sleeper.wait().expect("wait ctr exec");
    assert_eq!(
        status.code(),
        Some(137),
        "the exec'd sleep dies with the task"
    );
    c.ok(&["task", "delete", id]);
    assert_eq!(c.task_status(id), None);
    c.ok(&["containers", "rm", id]);
    assert!(
        !c.godwit_root().join(id).exists(),
        "godwit state left behind"
    );
    let cgroup = format!("/sys/fs/cgroup/pids/{}/{id}", c.ns);
    let unified = format!("/sys/fs/cgroup/{}/{id}", c.ns);
    assert!(
        !std::path::Path::new(&cgroup).exists() && !std::path::Path::new(&unified).exists(),
        "cgroup left behind"
    );
}

/// Runs a shell command line with a terminal, as an interactive user would:
/// script(1) gives it a pty. script's stdin stays open until it is done, since
/// on EOF script may hang up the terminal before the command has finished.
fn in_pty(command: &str) -> std::process::Output {
    let mut child = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) (bsdutils)");
    let stdin = child.stdin.take();
    let out = child.wait_with_output().expect("wait for script");
    drop(stdin);
    out
}

#[test]
fn terminal_run_gets_a_pty() {
    let c = Containerd::start("tty");
    // script(1) gives ctr a terminal, as an interactive user would have.
    let ctr = format!(
        "ctr --address {} -n {} run --rm -t --runtime {RUNTIME} {IMAGE} tty1 sh -c 'tty; echo hi-tty; exit 4'",
        c.address().display(),
        c.ns
    );
    let out = in_pty(&ctr);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/dev/pts/"),
        "no pty: {stdout:?} (script exited {:?}, stderr {:?})",
        out.status.code(),
        text(&out.stderr)
    );
    assert!(stdout.contains("hi-tty"), "{stdout:?}");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{stdout:?} {}",
        text(&out.stderr)
    );

    // exec -t into a detached task.
    let id = "tty2";
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "counter",
        "100",
        "/tmp/count",
    ]);
    c.wait_status(id, "RUNNING");
    let exec = format!(
        "ctr --address {} -n {} task exec -t --exec-id t1 {id} sh -c 'tty; echo in-exec; exit 6'",
        c.address().display(),
        c.ns
    );
    let out = in_pty(&exec);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/dev/pts/") && stdout.contains("in-exec"),
        "{stdout:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "{stdout:?} {}",
        text(&out.stderr)
    );
}

#[test]
fn task_survives_containerd_restart() {
    let mut c = Containerd::start("restart");
    let id = "survivor";
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "counter",
        "100",
        "/tmp/count",
    ]);
    c.wait_status(id, "RUNNING");
    c.restart();
    c.wait_status(id, "RUNNING");
    let out = c.ok(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        id,
        "sh",
        "-c",
        "echo still-here",
    ]);
    assert_eq!(out, "still-here\n");
    // The exit reaches the new containerd as an event (the shim reconnects).
    let events = EventLog::start(&c);
    c.ok(&["task", "kill", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED");
    c.ok(&["task", "delete", id]);
    let exited = |log: &str| {
        log.lines()
            .any(|l| l.contains("/tasks/exit") && l.contains(id))
    };
    let log = events.stop_when(exited);
    assert!(exited(&log), "no /tasks/exit after the restart:\n{log}");
    c.ok(&["containers", "rm", id]);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let c = Containerd::start("bad");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "nobin",
        "/no/such/binary",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/no/such/binary") || text(&out.stderr).contains("nobin"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.task_status("nobin"), None);
    assert!(!c.godwit_root().join("nobin").exists());

    // Checkpoint is not there yet, and says so.
    let id = "nockpt";
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "counter",
        "100",
        "/tmp/count",
    ]);
    c.wait_status(id, "RUNNING");

    // An exec of a missing program fails at once, naming it; the task runs on.
    let out = c.ctr(&["task", "exec", "--exec-id", "missing", id, "/no/such"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/no/such"),
        "{}",
        text(&out.stderr)
    );
    c.wait_status(id, "RUNNING");
}

/// What a child prints on one of its pipes, collected by a thread as it
/// comes, so that a test can wait for a line before acting.
struct Collected {
    text: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collected {
    fn start(pipe: impl std::io::Read + Send + 'static) -> Collected {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        let reader = std::thread::spawn(move || {
            let mut pipe = std::io::BufReader::new(pipe);
            let mut line = String::new();
            while matches!(std::io::BufRead::read_line(&mut pipe, &mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Collected { text, reader }
    }

    fn now(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until what came so far satisfies `done`.
    fn wait_for(&self, done: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.now()) {
            assert!(
                Instant::now() < deadline,
                "no {what} within 20 s; got:\n{}",
                self.now()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything, once the pipe is closed (the child exited or was killed).
    fn finish(self) -> String {
        let Collected { text, reader } = self;
        let _ = reader.join();
        let all = text.lock().unwrap().clone();
        all
    }
}

/// `ctr events` in the background.
struct EventLog {
    child: std::process::Child,
    lines: Collected,
}

impl EventLog {
    /// Starts `ctr events` and returns once its subscription is live: a
    /// change of a namespace label has come through it.
    fn start(c: &Containerd) -> EventLog {
        let mut child = c
            .ctr_cmd(&["events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        let lines = Collected::start(child.stdout.take().expect("piped stdout"));
        let events = EventLog { child, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in 0u32.. {
            let label = format!("godwit.test/probe={n}");
            c.ok(&["namespaces", "label", &c.ns, &label]);
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                if events.lines.now().contains("/namespaces/update") {
                    return events;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let seen = events.stop_when(|_| true);
        panic!("ctr events shows no event within 20 s: {seen:?}");
    }

    /// Waits until the events satisfy `done` (at most 20 s), then stops
    /// `ctr events` and returns every line it printed.
    fn stop_when(mut self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.lines.now()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.finish()
    }
}

#[test]
fn events_update_and_oom_are_reported() {
    let c = Containerd::start("events");
    let events = EventLog::start(&c);
    let id = "ev1";
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "counter",
        "100",
        "/tmp/count",
    ]);
    c.wait_status(id, "RUNNING");
    c.ok(&["task", "exec", "--exec-id", "ex1", id, "true"]);
    c.ok(&["task", "pause", id]);
    c.ok(&["task", "resume", id]);

    // update (ctr 1.6 has no `task update`; call the shim as containerd would):
    // the new memory limit lands in the task's cgroup.
    let resources = br#"{"memory":{"limit":33554432}}"#;
    c.shim(id)
        .update(
            context::with_timeout(Duration::from_secs(10).as_nanos() as i64),
            &UpdateTaskRequest {
                id: id.into(),
                resources: MessageField::some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .into(),
                    value: resources.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("Update");
    let v1 = format!("/sys/fs/cgroup/memory/{}/{id}/memory.limit_in_bytes", c.ns);
    let v2 = format!("/sys/fs/cgroup/{}/{id}/memory.max", c.ns);
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("memory limit file of the task's cgroup");
    assert_eq!(limit.trim(), "33554432");

    c.ok(&["task", "kill", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED");
    c.ok(&["task", "delete", id]);

    // memcheck holds 64 MiB: over a 16 MiB limit, the kernel kills it.
    let oom = "oom1";
    c.ok(&[
        "run",
        "-d",
        "--memory-limit",
        "16777216",
        "--runtime",
        RUNTIME,
        IMAGE,
        oom,
        "memcheck",
        "64",
        "/tmp/m",
    ]);
    c.wait_status(oom, "STOPPED");
    c.ok(&["task", "delete", oom]);

    let topics = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    let has = |log: &str, topic: &str, id: &str| {
        log.lines()
            .any(|l| l.contains(&c.ns) && l.contains(topic) && l.contains(id))
    };
    let log = events
        .stop_when(|log| topics.iter().all(|t| has(log, t, id)) && has(log, "/tasks/oom", oom));
    for topic in topics {
        assert!(has(&log, topic, id), "no {topic} for {id} in:\n{log}");
    }
    assert!(
        has(&log, "/tasks/oom", oom),
        "no /tasks/oom for {oom} in:\n{log}"
    );
}

/// Two containerds on one host (their own --state), the same namespace and
/// the same task id: each shim keeps godwit's state under its containerd's
/// state dir, so both tasks run, and deleting one leaves the other running.
#[test]
fn private_containerds_do_not_share_godwit_state() {
    let ns = format!("gwt-shared-{}", std::process::id());
    let a = Containerd::start_in(&ns);
    let b = Containerd::start_in(&ns);
    assert_ne!(a.godwit_root(), b.godwit_root());
    let id = "same";
    for (c, cgroup) in [(&a, "a"), (&b, "b")] {
        // Distinct cgroups (containerd's default /<ns>/<id> would be
        // shared), under /<ns>, which the test's clean-up removes.
        let cgroup = format!("/{ns}/{cgroup}-{id}");
        c.ok(&[
            "run",
            "-d",
            "--cgroup",
            &cgroup,
            "--runtime",
            RUNTIME,
            IMAGE,
            id,
            "sleep",
            "1000",
        ]);
        c.wait_status(id, "RUNNING");
        assert!(c.godwit_root().join(id).join("state.json").exists());
    }
    b.ok(&["task", "kill", "-s", "KILL", id]);
    b.wait_status(id, "STOPPED");
    b.ok(&["task", "delete", id]);
    assert!(!b.godwit_root().join(id).exists());
    // A's task is untouched.
    let status = a.ok(&["task", "ls"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(id) && l.contains("RUNNING")),
        "{status}"
    );
    assert!(a.godwit_root().join(id).join("state.json").exists());
}

/// Processes the shim starts (the task and its execs) begin with default
/// signal dispositions (the shim's own process ignores signal 32), an empty
/// mask and only fds 0-2.
#[test]
fn task_and_exec_processes_start_clean() {
    let c = Containerd::start("clean");
    let probe = "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/self/fd | tr '\\n' ' '";
    let check = |out: &str| {
        for key in ["SigIgn:", "SigBlk:"] {
            let line = out
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("{key} in {out}"));
            assert!(line.ends_with("0000000000000000"), "{line} (all of: {out})");
        }
        // 0-2 and the fd ls reads the directory with.
        let fds = out.lines().last().unwrap_or_default();
        assert!(fds.split_whitespace().count() <= 4, "fds: {fds}");
    };
    let out = c.ok(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "probe1",
        "sh",
        "-c",
        probe,
    ]);
    check(&out);
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "probe2",
        "sleep",
        "1000",
    ]);
    c.wait_status("probe2", "RUNNING");
    let out = c.ok(&[
        "task",
        "exec",
        "--exec-id",
        "p",
        "probe2",
        "sh",
        "-c",
        probe,
    ]);
    check(&out);
}
