//! `godwit migrate` / `godwit receive` between two "hosts": two network
//! namespaces made here, joined by a veth pair made here (private addresses
//! inside those namespaces only), each with its own state root and bundle.
//! The counter moves with every number once; a wrong key, a tampered stream
//! and a receiver killed mid-stream each leave the source running and
//! nothing restored on the destination.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);
static NET_SEQ: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect(cmd[0]);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces ("host A" and "host B") joined by a veth pair,
/// 10.213.N.1 in A and 10.213.N.2 in B; both removed on drop.
struct TwoHosts {
    a: String,
    b: String,
    n: u32,
}

impl TwoHosts {
    fn new() -> TwoHosts {
        let n = NET_SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}{n}", std::process::id());
        let h = TwoHosts {
            a: format!("gw-mig-{tag}-a"),
            b: format!("gw-mig-{tag}-b"),
            n: n % 250,
        };
        let (va, vb) = (format!("gm{tag}a"), format!("gm{tag}b"));
        sh(&["ip", "netns", "add", &h.a]);
        sh(&["ip", "netns", "add", &h.b]);
        sh(&[
            "ip", "link", "add", &va, "netns", &h.a, "type", "veth", "peer", "name", &vb, "netns",
            &h.b,
        ]);
        for (ns, dev, ip) in [(&h.a, &va, h.addr_a()), (&h.b, &vb, h.addr_b())] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        h
    }

    fn addr_a(&self) -> String {
        format!("10.213.{}.1", self.n)
    }

    fn addr_b(&self) -> String {
        format!("10.213.{}.2", self.n)
    }

    /// A command run in namespace `ns` (only the network namespace changes).
    fn cmd(ns: &str, g: &Godwit) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg(godwit_bin())
            .arg("--root")
            .arg(g.root.path());
        c
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Enters network namespace `ns` on the calling thread only.
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A `godwit receive` running on host B, its output in files; killed by pid
/// on drop if still running.
struct Receiver {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Receiver {
    fn start(
        hosts: &TwoHosts,
        g: &Godwit,
        listen: &str,
        key: &Path,
        bundle: &Bundle,
        id: &str,
    ) -> Receiver {
        let out = g.root.path().join(format!("receive-{id}.out"));
        let err = g.root.path().join(format!("receive-{id}.err"));
        let child = TwoHosts::cmd(&hosts.b, g)
            .args(["receive", "--json", "--listen", listen, "--key"])
            .arg(key)
            .arg("--bundle")
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn godwit receive");
        let r = Receiver { child, out, err };
        wait_for("the receiver to listen", T, || {
            std::fs::read_to_string(&r.err)
                .unwrap_or_default()
                .contains("waiting for container")
                .then_some(())
        });
        r
    }

    /// Waits for it to exit: (success, stdout, stderr).
    fn wait(mut self) -> (bool, String, String) {
        let st = self.child.wait().expect("wait receive");
        (
            st.success(),
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default(),
        )
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn counts(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn keygen(g: &Godwit, name: &str) -> PathBuf {
    let k = g.root.path().join(name);
    g.ok(&["keygen", k.to_str().unwrap()]);
    k
}

/// A counter container running on host A (ticks seen).
fn counter_on_a(g: &Godwit, id: &str) -> (Bundle, PathBuf) {
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let count = bundle.rootfs().join("tmp/count");
    g.start_detached_null(&bundle, id);
    wait_for("counter ticks", T, || {
        last_count(&count).filter(|&n| n >= 5)
    });
    (bundle, count)
}

/// The source container runs on, unfrozen, its counter moving, and host B
/// holds no container and no staging directory.
fn assert_source_runs_and_b_is_empty(ga: &Godwit, id: &str, count: &Path, gb: &Godwit) {
    assert_eq!(ga.status(id), "running");
    for dir in cgroup_dirs(ga.pid(id)) {
        if let Ok(state) = std::fs::read_to_string(dir.join("freezer.state")) {
            assert_eq!(state.trim(), "THAWED", "{}", dir.display());
        }
    }
    let now = last_count(count).unwrap();
    wait_for("the source counter to go on", T, || {
        last_count(count).filter(|&n| n >= now + 5)
    });
    let numbers = counts(count);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "{numbers:?}"
    );
    let listed = gb.ok(&["list", "--quiet"]);
    assert!(listed.trim().is_empty(), "B holds {listed}");
    let left: Vec<_> = std::fs::read_dir(gb.root.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "B's state root holds {left:?}");
}

#[test]
fn counter_moves_over_the_network_with_every_number_once() {
    let hosts = TwoHosts::new();
    let (ga, gb) = (Godwit::new(), Godwit::new());
    let key = keygen(&ga, "key");
    let mode = std::fs::metadata(&key).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let id_a = ga.id("mig-src");
    let id_b = gb.id("mig-dst");
    let (_bundle_a, count) = counter_on_a(&ga, &id_a);
    let bundle_b = Bundle::new(&["counter", "10", "/tmp/count"]);
    let listen = format!("{}:7676", hosts.addr_b());
    let rx = Receiver::start(&hosts, &gb, &listen, &key, &bundle_b, &id_b);
    let out = TwoHosts::cmd(&hosts.a, &ga)
        .args([
            "migrate",
            "--json",
            "--compress",
            "zstd:3",
            "--to",
            &listen,
            "--key",
        ])
        .arg(&key)
        .arg(&id_a)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate failed: {stderr}");
    // Progress lines on stderr, a summary on stdout.
    assert!(stderr.contains("dumping"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["blackout_us"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["bytes_sent"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["receiver"]["restore_us"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let (ok, rout, rerr) = rx.wait();
    assert!(ok, "receive failed: {rerr}");
    assert!(
        rout.contains(&format!("container {id_b} runs here")),
        "{rout}"
    );
    let rsum: serde_json::Value = serde_json::from_str(&rout[rout.find('{').unwrap()..]).unwrap();
    assert_eq!(rsum["source_gone"], true, "{rsum}");

    // Gone on A, running on B, the counter going on with every number once.
    assert!(!ga.state_dir(&id_a).exists());
    assert_eq!(gb.status(&id_b), "running");
    let count_b = bundle_b.rootfs().join("tmp/count");
    let at_move = last_count(&count_b).unwrap();
    wait_for("the counter to go on at B", T, || {
        last_count(&count_b).filter(|&n| n >= at_move + 5)
    });
    let numbers = counts(&count_b);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "{numbers:?}"
    );
    // The source's file stopped where B's began.
    let last_a = last_count(&count).unwrap();
    assert!(last_a < at_move + 5, "A ran on after the move: {last_a}");
}

#[test]
fn a_wrong_key_is_refused_and_the_source_runs_on() {
    let hosts = TwoHosts::new();
    let (ga, gb) = (Godwit::new(), Godwit::new());
    let key_a = keygen(&ga, "key-a");
    let key_b = keygen(&gb, "key-b");
    let id_a = ga.id("mig-key");
    let id_b = gb.id("mig-key-dst");
    let (_bundle, count) = counter_on_a(&ga, &id_a);
    let bundle_b = Bundle::new(&["counter", "10", "/tmp/count"]);
    let listen = format!("{}:7676", hosts.addr_b());
    let rx = Receiver::start(&hosts, &gb, &listen, &key_b, &bundle_b, &id_b);
    let out = TwoHosts::cmd(&hosts.a, &ga)
        .args(["migrate", "--to", &listen, "--key"])
        .arg(&key_a)
        .arg(&id_a)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key"), "{err}");
    let (ok, _, rerr) = rx.wait();
    assert!(!ok);
    assert!(rerr.contains("does not authenticate"), "{rerr}");
    assert_source_runs_and_b_is_empty(&ga, &id_a, &count, &gb);
}

/// A proxy on host B between the source and the receiver (which listens on
/// B's loopback): forwards both ways; `tamper` flips one bit of the source's
/// byte at that offset; `stall_after` stops forwarding after that many bytes
/// and reports it, holding the connection until released (then closing it
/// with data unread: the source sees a reset). Returns the address to
/// migrate to.
struct Proxy {
    stalled: Arc<Mutex<bool>>,
    release: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(
        hosts: &TwoHosts,
        upstream: String,
        tamper: Option<usize>,
        stall_after: Option<usize>,
    ) -> (Proxy, String) {
        let ns = hosts.b.clone();
        let listen = format!("{}:7000", hosts.addr_b());
        let (tx, rx) = std::sync::mpsc::channel();
        let stalled = Arc::new(Mutex::new(false));
        let st = stalled.clone();
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rel = release.clone();
        let l = listen.clone();
        std::thread::spawn(move || {
            enter_netns(&ns);
            let listener = TcpListener::bind(&l).expect("proxy bind");
            tx.send(()).unwrap();
            let Ok((mut down, _)) = listener.accept() else {
                return;
            };
            let mut up = TcpStream::connect(&upstream).expect("proxy connect");
            let (mut down2, mut up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            // Receiver → source, untouched.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up2, &mut down2);
                let _ = down2.shutdown(std::net::Shutdown::Both);
            });
            let mut seen = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match down.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(at) = tamper {
                    if (seen..seen + n).contains(&at) {
                        buf[at - seen] ^= 0x10;
                    }
                }
                if let Some(limit) = stall_after {
                    if seen + n >= limit {
                        *st.lock().unwrap() = true;
                        while !rel.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        return;
                    }
                }
                if up.write_all(&buf[..n]).is_err() {
                    break;
                }
                seen += n;
            }
            let _ = up.shutdown(std::net::Shutdown::Both);
            let _ = down.shutdown(std::net::Shutdown::Both);
        });
        rx.recv_timeout(T).expect("proxy listening");
        (Proxy { stalled, release }, listen)
    }
}

fn migrate_through(
    hosts: &TwoHosts,
    ga: &Godwit,
    to: &str,
    key: &Path,
    id: &str,
) -> std::process::Output {
    TwoHosts::cmd(&hosts.a, ga)
        .args(["migrate", "--to", to, "--key"])
        .arg(key)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_tampered_stream_is_refused_and_the_source_runs_on() {
    let hosts = TwoHosts::new();
    let (ga, gb) = (Godwit::new(), Godwit::new());
    let key = keygen(&ga, "key");
    let id_a = ga.id("mig-tamper");
    let id_b = gb.id("mig-tamper-dst");
    let (_bundle, count) = counter_on_a(&ga, &id_a);
    let bundle_b = Bundle::new(&["counter", "10", "/tmp/count"]);
    let rx = Receiver::start(&hosts, &gb, "127.0.0.1:7676", &key, &bundle_b, &id_b);
    // One bit, well past the handshake, inside the archive's data.
    let (_proxy, to) = Proxy::start(&hosts, "127.0.0.1:7676".into(), Some(20_000), None);
    let out = migrate_through(&hosts, &ga, &to, &key, &id_a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a tampered migration succeeded: {err}"
    );
    assert!(
        err.contains("runs on here") || err.contains("receiver"),
        "{err}"
    );
    let (ok, _, rerr) = rx.wait();
    assert!(!ok);
    assert!(rerr.contains("does not authenticate"), "{rerr}");
    assert_source_runs_and_b_is_empty(&ga, &id_a, &count, &gb);
}

#[test]
fn a_receiver_killed_mid_stream_leaves_the_source_running() {
    let hosts = TwoHosts::new();
    let (ga, gb) = (Godwit::new(), Godwit::new());
    let key = keygen(&ga, "key");
    let id_a = ga.id("mig-kill");
    let id_b = gb.id("mig-kill-dst");
    let (_bundle, count) = counter_on_a(&ga, &id_a);
    let bundle_b = Bundle::new(&["counter", "10", "/tmp/count"]);
    let mut rx = Receiver::start(&hosts, &gb, "127.0.0.1:7676", &key, &bundle_b, &id_b);
    let (proxy, to) = Proxy::start(&hosts, "127.0.0.1:7676".into(), None, Some(30_000));
    let mig = TwoHosts::cmd(&hosts.a, &ga)
        .args(["migrate", "--to", &to, "--key"])
        .arg(&key)
        .arg(&id_a)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the stream to be halfway", T, || {
        (*proxy.stalled.lock().unwrap()).then_some(())
    });
    // Mid-stream: the source is frozen, the receiver holds part of it.
    rx.child.kill().unwrap();
    let _ = rx.child.wait();
    proxy.release.store(true, Ordering::SeqCst);
    let out = mig.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    // Nothing runs on B; the source goes on. (A receive killed mid-stream
    // may leave its staging directory; the next receive of the id removes it.)
    assert!(gb.ok(&["list", "--quiet"]).trim().is_empty());
    assert_eq!(ga.status(&id_a), "running");
    let now = last_count(&count).unwrap();
    wait_for("the source counter to go on", T, || {
        last_count(&count).filter(|&n| n >= now + 5)
    });
    let numbers = counts(&count);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "{numbers:?}"
    );
}
