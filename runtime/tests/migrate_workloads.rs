//! Every workload of the dumper's own tests (checkpoint/tests/restore.rs),
//! run inside a godwit container on "host A" (its own --root and bundle
//! copy), checkpointed with --export, and restored with --import on "host B"
//! (another --root, another copy of the bundle): the workload's own state
//! checks still pass and it continues from where it stopped; host A has
//! nothing left of it. Only the archive passes from A to B.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use godwit_test_support::{assert_consecutive, assert_ticks, lines, ping};

const T: Duration = Duration::from_secs(30);

/// How a workload reports: a line per tick, numbered from 0, and (for all but
/// the plain counter) the word "ok" in column `ok_col`. Returns the count.
fn assert_numbered(l: &[String], ok_col: usize) -> u64 {
    for (i, s) in l.iter().enumerate() {
        let f: Vec<&str> = s.split_whitespace().collect();
        assert_eq!(
            f.first().and_then(|n| n.parse().ok()),
            Some(i as u64),
            "line {i}: {s:?}"
        );
        assert_eq!(
            f.get(ok_col),
            Some(&"ok"),
            "workload reported a failure: {s:?}"
        );
    }
    l.len() as u64
}

/// clockcheck: "<n> <monotonic ns> <boottime ns> ok".
fn assert_clock_lines(l: &[String]) -> u64 {
    assert_numbered(l, 3)
}

/// blackout: "<n> <longest gap µs> ok".
fn assert_blackout_lines(l: &[String]) -> u64 {
    assert_numbered(l, 2)
}

/// A workload and what the migration test needs to know about it.
struct Workload {
    /// process.args of the container.
    args: Vec<String>,
    /// The file (a path inside the container) the workload reports to.
    out: String,
    /// Lines to see before the checkpoint, and after the restore.
    warmup: usize,
    more: usize,
    /// The workload's own checks over its report; returns its count.
    check: fn(&[String]) -> u64,
    /// Applied to both bundle copies (files the workload needs, spec edits).
    prepare: fn(&Bundle),
    /// Called with the init's host pid on host A just before the checkpoint.
    on_a: fn(i32),
}

impl Workload {
    fn new(args: &[&str], out: &str) -> Workload {
        Workload {
            args: args.iter().map(|a| a.to_string()).collect(),
            out: out.to_string(),
            warmup: 5,
            more: 20,
            check: assert_ticks,
            prepare: |_| {},
            on_a: |_| {},
        }
    }

    fn check(self, check: fn(&[String]) -> u64) -> Workload {
        Workload { check, ..self }
    }

    fn prepare(self, prepare: fn(&Bundle)) -> Workload {
        Workload { prepare, ..self }
    }

    fn on_a(self, on_a: fn(i32)) -> Workload {
        Workload { on_a, ..self }
    }

    fn lines(self, warmup: usize, more: usize) -> Workload {
        Workload {
            warmup,
            more,
            ..self
        }
    }

    fn bundle(&self) -> Bundle {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let bundle = Bundle::new(&args);
        (self.prepare)(&bundle);
        bundle
    }

    fn report(&self, bundle: &Bundle) -> PathBuf {
        bundle.rootfs().join(self.out.trim_start_matches('/'))
    }
}

/// Two hosts and the workload that moved from A to B.
struct Migrated {
    host_b: Godwit,
    bundle_b: Bundle,
    id_b: String,
    /// /proc/PID/status of the init on A just before the checkpoint.
    status_a: String,
    /// The report on A at the checkpoint, and on B after the restore.
    before: Vec<String>,
    after: Vec<String>,
}

impl Migrated {
    /// The restored container's init, a host pid.
    fn pid(&self) -> i32 {
        self.host_b.pid(&self.id_b)
    }
}

/// Runs `w` on host A until it has reported `warmup` lines, hands it over.
fn start_on_a(w: &Workload, name: &str) -> (Godwit, Bundle, String) {
    let host_a = Godwit::new();
    let bundle_a = w.bundle();
    let id = host_a.id(name);
    host_a.start_detached_null(&bundle_a, &id);
    let report = w.report(&bundle_a);
    wait_for("the workload's first lines on host A", T, || {
        (lines(&report).len() >= w.warmup).then_some(())
    });
    (host_a, bundle_a, id)
}

/// Migrates `w` from host A to host B with one archive and checks that it
/// continues there with its own checks passing.
fn migrate(w: &Workload, name: &str) -> Migrated {
    let (host_a, bundle_a, id_a) = start_on_a(w, name);
    let bundle_b = w.bundle();
    let pid_a = host_a.pid(&id_a);
    (w.on_a)(pid_a);
    let status_a = std::fs::read_to_string(format!("/proc/{pid_a}/status")).unwrap();
    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join(format!("{name}.tar.zst"));
    host_a.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id_a]);

    // Host A has nothing left of it, and nothing of it runs any more.
    assert_eq!(
        host_a.ok(&["list", "-q"]).trim(),
        "",
        "host A lists nothing"
    );
    assert!(!host_a.state_dir(&id_a).exists());
    let names: Vec<String> = std::fs::read_dir(host_a.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("stderr-"))
        .collect();
    assert!(names.is_empty(), "left on host A: {names:?}");
    let stat = std::fs::read_to_string(format!("/proc/{pid_a}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
    let report_a = w.report(&bundle_a);
    let before = lines(&report_a);
    let last = (w.check)(&before);
    assert!(!w.report(&bundle_b).exists());

    let host_b = Godwit::new();
    let id_b = host_b.id(&format!("{name}-b"));
    host_b.restore_import(&archive, &bundle_b, &id_b);
    assert_eq!(host_b.status(&id_b), "running");
    let report_b = w.report(&bundle_b);
    let after = wait_for("the workload's lines on host B", T, || {
        let l = lines(&report_b);
        let done = l.len() >= before.len() + w.more || l.iter().any(|s| s.contains("BAD"));
        done.then_some(l)
    });
    // Its report came along whole and goes on from where it stopped.
    assert_eq!(
        after[..before.len()],
        before[..],
        "the report travelled whole"
    );
    let now = (w.check)(&after);
    assert!(
        now >= last + w.more as u64,
        "did not continue: {last} → {now}"
    );
    assert_eq!(
        lines(&report_a),
        before,
        "nothing ran on host A after the checkpoint"
    );
    Migrated {
        host_b,
        bundle_b,
        id_b,
        status_a,
        before,
        after,
    }
}

/// Adds capabilities to every set of the spec's process.
fn grant(config: &mut serde_json::Value, caps: &[&str]) {
    for set in config["process"]["capabilities"]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        set.as_array_mut()
            .unwrap()
            .extend(caps.iter().map(|&c| c.into()));
    }
}

#[test]
fn counter() {
    let w = Workload::new(&["counter", "10", "/tmp/count"], "/tmp/count").check(assert_consecutive);
    migrate(&w, "mw-counter");
}

#[test]
fn memcheck() {
    let w = Workload::new(&["memcheck", "64", "/tmp/out"], "/tmp/out").lines(3, 10);
    let m = migrate(&w, "mw-memcheck");
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", m.pid())).unwrap();
    assert!(
        smaps
            .lines()
            .any(|l| l.starts_with("VmFlags:") && l.contains(" dc")),
        "MADV_DONTFORK lost"
    );
}

#[test]
fn threads() {
    let w = Workload::new(&["threads", "40", "/tmp/out"], "/tmp/out").lines(25, 60);
    let m = migrate(&w, "mw-threads");
    let tasks = std::fs::read_dir(format!("/proc/{}/task", m.pid()))
        .unwrap()
        .count();
    assert_eq!(tasks, 41);
}

#[test]
fn sigcheck() {
    let w = Workload::new(&["sigcheck", "/tmp/out"], "/tmp/out").lines(5, 120);
    let m = migrate(&w, "mw-sigcheck");
    let mask =
        |k: &str| u64::from_str_radix(&godwit_test_support::status_field(m.pid(), k), 16).unwrap();
    assert_ne!(
        mask("SigPnd") & (1 << (libc::SIGUSR2 - 1)),
        0,
        "thread's SIGUSR2"
    );
    assert_ne!(
        mask("ShdPnd") & (1 << (libc::SIGWINCH - 1)),
        0,
        "shared SIGWINCH"
    );
}

/// Pids (container-wide) `godwit ps` lists on host B.
fn ps_pids(m: &Migrated) -> Vec<i32> {
    serde_json::from_str(&m.host_b.ok(&["ps", "--format", "json", &m.id_b])).unwrap()
}

#[test]
fn pipetree() {
    let w = Workload::new(&["pipetree", "/tmp/out"], "/tmp/out").lines(10, 40);
    let m = migrate(&w, "mw-pipetree");
    assert_eq!(ps_pids(&m).len(), 3, "parent, child and grandchild");
}

/// A container whose init has unreaped children (as a daemonizing server
/// leaves them): one exited 7, one a group leader killed by SIGTERM whose
/// group a live child is still in. They move as zombies, and the init's
/// wait() on B returns their statuses.
#[test]
fn zombies() {
    let w = Workload::new(&["zombies", "/tmp/out"], "/tmp/out")
        .check(|l| assert_numbered(l, 1))
        .lines(10, 30);
    // Every "ok" on B is the init seeing A and B as zombies and C in B's group.
    let m = migrate(&w, "mw-zombies");
    let report = m.bundle_b.rootfs().join("tmp/out");
    std::fs::write(m.bundle_b.rootfs().join("tmp/out.reap"), b"").unwrap();
    let reaped = wait_for("the init reaps its zombies on B", T, || {
        lines(&report).into_iter().find(|l| l.contains("reaped"))
    });
    assert!(reaped.ends_with("reaped a=exit:7 b=signal:15"), "{reaped}");
}

#[test]
fn shmtree() {
    let w = Workload::new(&["shmtree", "/tmp/out"], "/tmp/out").lines(25, 60);
    let m = migrate(&w, "mw-shmtree");
    assert_eq!(ps_pids(&m).len(), 2);
}

#[test]
fn evcheck() {
    let w = Workload::new(&["evcheck", "/tmp/out"], "/tmp/out").lines(10, 40);
    migrate(&w, "mw-evcheck");
}

#[test]
fn fdcheck() {
    let w = Workload::new(&["fdcheck", "/data", "/tmp/log"], "/tmp/log").prepare(|b| {
        let text: String = (0..100000).map(|i| format!("{i:07}\n")).collect();
        std::fs::write(b.rootfs().join("data"), text).unwrap();
        // The workload makes its FIFO in its cwd (/tmp of the rootfs, not a
        // tmpfs): the rootfs diff carries it to B, whose bundle has none.
        b.edit(|c| c["process"]["cwd"] = "/tmp".into());
    });
    let m = migrate(&w, "mw-fdcheck");
    let fifo = std::fs::symlink_metadata(m.bundle_b.rootfs().join("tmp/fifo")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()),
        "B's /tmp/fifo is a FIFO"
    );
}

#[test]
fn sleepcheck() {
    let w = Workload::new(&["sleepcheck", "/tmp/out", "300"], "/tmp/out").lines(2, 3);
    let m = migrate(&w, "mw-sleepcheck");
    // The round the checkpoint interrupted neither returned early nor
    // started over (the time namespace hides the blackout from it).
    let took: u64 = m.after[m.before.len()]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (300..600).contains(&took),
        "interrupted round took {took} ms"
    );
}

#[test]
fn sockcheck() {
    // Its own network namespace (the spec's): the port is free there.
    let w = Workload::new(&["sockcheck", "/tmp/out", "7300"], "/tmp/out")
        .prepare(|b| {
            b.edit(|c| {
                c["process"]["cwd"] = "/tmp".into();
                // sockcheck brings its namespace's lo up itself.
                grant(c, &["CAP_NET_ADMIN"]);
            })
        })
        .on_a(|pid| assert_eq!(ping(pid, 7300, 1), "pong 1\n"));
    let m = migrate(&w, "mw-sockcheck");
    // The namespace's lo state does not travel yet (README): bring it up.
    godwit_test_support::in_netns(m.pid(), godwit_test_support::loopback_up);
    assert_eq!(ping(m.pid(), 7300, 2), "pong 2\n");
    assert_eq!(ping(m.pid(), 7300, 3), "pong 3\n");
    let report = w.report(&m.bundle_b);
    // Served once on A, twice on B: its count went on.
    wait_for("served count 3", T, || {
        lines(&report)
            .last()
            .filter(|s| s.ends_with(" 3"))
            .map(|_| ())
    });
    assert_ticks(&lines(&report));
}

#[test]
fn seccheck() {
    let w = Workload::new(&["seccheck", "/tmp/out"], "/tmp/out");
    let m = migrate(&w, "mw-seccheck");
    assert_eq!(godwit_test_support::status_field(m.pid(), "Seccomp"), "2");
    assert_eq!(
        godwit_test_support::status_field(m.pid(), "Seccomp_filters"),
        "1"
    );
    assert_eq!(
        godwit_test_support::status_field(m.pid(), "NoNewPrivs"),
        "1"
    );
}

#[test]
fn credcheck() {
    // Not the container's init: that already leads a session, and
    // credcheck makes its own (setsid).
    let w = Workload::new(&["sh", "-c", "credcheck /tmp/out; exit 1"], "/tmp/out").prepare(|b| {
        std::fs::create_dir(b.rootfs().join("tmp/work")).unwrap();
        b.edit(|c| {
            c["process"]["cwd"] = "/tmp".into();
            // What credcheck uses to become its user (it keeps the bounding
            // set's CAP_CHOWN).
            grant(c, &["CAP_SETPCAP", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"]);
        });
    });
    migrate(&w, "mw-credcheck");
}

#[test]
fn clockcheck() {
    let w =
        Workload::new(&["clockcheck", "/tmp/clock", "10"], "/tmp/clock").check(assert_clock_lines);
    let m = migrate(&w, "mw-clockcheck");
    let mono = |l: &String| -> i128 { l.split_whitespace().nth(1).unwrap().parse().unwrap() };
    let gap_ms = (mono(&m.after[m.before.len()]) - mono(m.before.last().unwrap())) / 1_000_000;
    assert!(
        (0..1000).contains(&gap_ms),
        "monotonic step across the migration: {gap_ms} ms"
    );
}

#[test]
fn blackout() {
    let w = Workload::new(&["blackout", "32", "8", "/tmp/out"], "/tmp/out")
        .check(assert_blackout_lines)
        .lines(3, 5);
    let m = migrate(&w, "mw-blackout");
    let worst = |l: &String| -> u64 { l.split_whitespace().nth(1).unwrap().parse().unwrap() };
    // The workload saw the migration as one pause (CLOCK_REALTIME).
    assert!(worst(m.after.last().unwrap()) > worst(m.before.last().unwrap()));
}

#[test]
fn inotify_is_refused_and_the_container_runs_on() {
    let w = Workload::new(&["inotify", "/tmp/out"], "/tmp/out");
    let (host_a, bundle_a, id) = start_on_a(&w, "mw-inotify");
    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("inotify.tar.zst");
    let err = host_a.fails(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    assert!(
        err.contains("inotify") && err.contains("not supported"),
        "{err}"
    );
    assert!(err.contains("fd 4"), "names the fd: {err}");
    assert!(!archive.exists());
    assert_eq!(std::fs::read_dir(transfer.path()).unwrap().count(), 0);
    assert_eq!(host_a.status(&id), "running");
    let report = w.report(&bundle_a);
    let n = lines(&report).len();
    wait_for("it runs on", T, || {
        (lines(&report).len() >= n + 10).then_some(())
    });
    assert_ticks(&lines(&report));
}

/// The /proc/PID/status lines of credentials, capabilities and seccomp.
fn creds_lines(status: &str) -> Vec<&str> {
    const KEYS: [&str; 11] = [
        "Uid:",
        "Gid:",
        "Groups:",
        "CapInh:",
        "CapPrm:",
        "CapEff:",
        "CapBnd:",
        "CapAmb:",
        "NoNewPrivs:",
        "Seccomp:",
        "Seccomp_filters:",
    ];
    let found: Vec<&str> = status
        .lines()
        .filter(|l| KEYS.iter().any(|k| l.starts_with(k)))
        .collect();
    assert_eq!(found.len(), KEYS.len(), "{status}");
    found
}

/// issue 5, "How restore meets libcontainer": the stub is built as root with
/// every capability and no seccomp; the workload's own user, groups,
/// capability sets, no_new_privs and filter come from the image.
#[test]
fn user_groups_capabilities_no_new_privs_and_seccomp_are_the_same_after_restore() {
    const ERRNO: i32 = 77;
    let w = Workload::new(&["denied", "/tmp/out", "77"], "/tmp/out").prepare(|b| {
        b.edit(|c| {
            c["process"]["user"] =
                serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6]});
            c["process"]["capabilities"] = serde_json::json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "inheritable": ["CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"]
            });
            c["process"]["noNewPrivileges"] = true.into();
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{
                    "names": ["mkdir", "mkdirat"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": ERRNO
                }]
            });
        })
    });
    let m = migrate(&w, "mw-creds");
    let status_b = std::fs::read_to_string(format!("/proc/{}/status", m.pid())).unwrap();
    let (a, b) = (creds_lines(&m.status_a), creds_lines(&status_b));
    assert_eq!(a, b, "credentials, capabilities, no_new_privs, seccomp");
    // And they are the spec's, not the stub's (root, every capability).
    let bits = |caps: &[u32]| format!("{:016x}", caps.iter().map(|c| 1u64 << c).sum::<u64>());
    let want = [
        "Uid:\t1000\t1000\t1000\t1000".to_string(),
        "Gid:\t1000\t1000\t1000\t1000".to_string(),
        "Groups:\t5 6".to_string(),
        format!("CapInh:\t{}", bits(&[10])),
        // execve as a non-root user keeps only the ambient set permitted.
        format!("CapPrm:\t{}", bits(&[10])),
        format!("CapEff:\t{}", bits(&[10])),
        format!("CapBnd:\t{}", bits(&[0, 5, 10])),
        format!("CapAmb:\t{}", bits(&[10])),
        "NoNewPrivs:\t1".to_string(),
        "Seccomp:\t2".to_string(),
    ];
    for line in &want {
        assert!(
            b.iter().any(|l| l.trim_end() == line),
            "want {line:?} in {b:?}"
        );
    }
    // The filter still acts: mkdir fails with the profile's errno on B.
    assert!(m.after.iter().all(|l| l.ends_with(&format!(" ok {ERRNO}"))));
    assert!(!m.bundle_b.rootfs().join("tmp/denied-0").exists());
}
