//! What a restored container's environment gets back besides its processes:
//! an overlay rootfs's changes and deletions (and a bundle recreated from the
//! archive), a terminal, the network namespace's `lo`, and `exec` joining
//! the restored time namespace.

mod common;

/// Where the tests' bundles (the archives' rootfs bases) are: allowed for
/// `restore --import` without `--bundle`.
const TMP: &str = "/tmp";

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn counts(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn is_mount_point(path: &Path) -> bool {
    let path = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path))
}

/// Names under `root` starting with a dot (godwit's temporary and recreated
/// bundles, imports).
fn dot_entries(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A bundle whose rootfs is an overlay (what podman and containerd give a
/// container): `lower` below, its own upper/work, unmounted on drop.
struct OverlayBundle {
    dir: tempfile::TempDir,
}

impl OverlayBundle {
    fn new(config_from: &Bundle, lower: &Path) -> OverlayBundle {
        let dir = tempfile::Builder::new()
            .prefix("godwit-ovl-")
            .tempdir()
            .unwrap();
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::copy(
            config_from.path().join("config.json"),
            dir.path().join("config.json"),
        )
        .unwrap();
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                dir.path().join("upper").display(),
                dir.path().join("work").display()
            ))
            .arg(dir.path().join("rootfs"))
            .status()
            .unwrap();
        assert!(status.success(), "mount overlay");
        OverlayBundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn unmount(&self) {
        let _ = Command::new("umount")
            .arg(self.dir.path().join("rootfs"))
            .status();
    }
}

impl Drop for OverlayBundle {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Copies a directory tree (cp -a).
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn overlay_changes_and_deletions_travel_with_or_without_a_bundle() {
    // The "image store": a base rootfs both hosts have at the same path.
    let image = Bundle::new(&["counter", "10", "/tmp/count"]);
    let base = image.rootfs();
    std::fs::write(base.join("etc/motd"), "from the image\n").unwrap();
    std::fs::create_dir_all(base.join("data/sub")).unwrap();
    std::fs::write(base.join("data/old"), "old\n").unwrap();
    std::fs::write(base.join("data/sub/older"), "older\n").unwrap();
    std::fs::write(base.join("etc/kept"), "kept\n").unwrap();

    let host_a = Godwit::new();
    let bundle_a = OverlayBundle::new(&image, &base);
    let id = host_a.id("ovl");
    host_a.ok_null(&[
        "run",
        "--detach",
        "--bundle",
        bundle_a.path().to_str().unwrap(),
        &id,
    ]);
    // A change, a new file, a deletion, a directory removed and made again
    // (an opaque directory in the upper dir).
    host_a.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo changed > /etc/kept && echo new > /etc/added && rm /etc/motd && \
         rm -rf /data && mkdir -p /data/sub && echo fresh > /data/sub/fresh",
    ]);
    let upper = bundle_a.path().join("upper");
    assert!(
        upper.join("etc/added").exists(),
        "the rootfs is the overlay"
    );
    let count_a = bundle_a.path().join("rootfs/tmp/count");
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&count_a).filter(|&n| n >= 5)
    });
    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("ovl.tar.zst");
    // Both an image directory and an archive: the image directory carries
    // the same rootfs changes (for `restore --image-path`).
    let image_dir = transfer.path().join("image");
    host_a.ok(&[
        "checkpoint",
        "--image-path",
        image_dir.to_str().unwrap(),
        "--export",
        archive.to_str().unwrap(),
        &id,
    ]);
    let mut deleted: Vec<String> =
        serde_json::from_slice(&std::fs::read(image_dir.join("deleted.files")).unwrap()).unwrap();
    deleted.sort();
    assert_eq!(
        deleted,
        vec!["/data/old", "/data/sub/older", "/etc/motd"],
        "a whiteout, and the names hidden below the replaced /data"
    );
    assert!(image_dir.join("rootfs-diff.tar").is_file());
    let at_dump = last_count(&count_a).unwrap();
    bundle_a.unmount();

    let check = |g: &Godwit, id: &str| {
        let out = g.ok(&[
            "exec",
            id,
            "sh",
            "-c",
            "cat /etc/kept /etc/added /data/sub/fresh; ls /etc/motd /data/old /data/sub/older 2>&1; ls /data /data/sub",
        ]);
        assert!(
            out.starts_with("changed\nnew\nfresh\n"),
            "changed and new files came back: {out}"
        );
        for gone in ["/etc/motd", "/data/old", "/data/sub/older"] {
            assert!(
                out.contains(&format!("{gone}: No such file")),
                "{gone} stays deleted: {out}"
            );
        }
        assert!(out.ends_with("/data:\nsub\n\n/data/sub:\nfresh\n"), "{out}");
    };

    // Host B: no bundle; it is recreated from the archive on the image.
    let host_b = Godwit::new();
    let id_b = host_b.id("ovl-b");
    host_b.ok_null(&[
        "restore",
        "--detach",
        "--import",
        archive.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        &id_b,
    ]);
    let recreated = host_b.root.path().join(format!(".{id_b}.bundle"));
    assert_eq!(
        host_b.state(&id_b)["bundle"].as_str().unwrap(),
        recreated.to_str().unwrap()
    );
    assert!(is_mount_point(&recreated.join("rootfs")));
    check(&host_b, &id_b);
    let count_b = recreated.join("rootfs/tmp/count");
    wait_for("counter continues on B", Duration::from_secs(10), || {
        last_count(&count_b).filter(|&n| n >= at_dump + 5)
    });
    let numbers = counts(&count_b);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "{numbers:?}"
    );
    // The image itself is untouched.
    assert_eq!(
        std::fs::read_to_string(base.join("etc/motd")).unwrap(),
        "from the image\n"
    );
    assert!(base.join("data/sub/older").exists());

    // Hosts C and E: a copy of the bundle (plain directory) given with
    // --bundle, restored from the archive (C) or the image directory (E).
    let restore_on_copy = |source: &str, from: &Path, name: &str| {
        let host = Godwit::new();
        let bundle = tempfile::tempdir().unwrap();
        copy_tree(&base, &bundle.path().join("rootfs"));
        std::fs::copy(
            image.path().join("config.json"),
            bundle.path().join("config.json"),
        )
        .unwrap();
        let id = host.id(name);
        host.ok_null(&[
            "restore",
            "--detach",
            source,
            from.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ]);
        check(&host, &id);
        (host, bundle, id)
    };
    let (host_c, bundle_c, id_c) = restore_on_copy("--import", &archive, "ovl-c");
    assert!(!bundle_c.path().join("rootfs/etc/motd").exists());
    host_c.ok(&["delete", "--force", &id_c]);
    let (host_e, _bundle_e, id_e) = restore_on_copy("--image-path", &image_dir, "ovl-e");
    host_e.ok(&["delete", "--force", &id_e]);
    host_b.ok(&["exec", &id_b, "sh", "-c", "rm /etc/added"]);
    // Moving on from B (a recreated bundle: itself an overlay on the image)
    // to D: B's bundle goes with the container, D gets everything again.
    let at_b = last_count(&count_b).unwrap();
    let archive2 = transfer.path().join("ovl2.tar");
    host_b.ok(&["checkpoint", "--export", archive2.to_str().unwrap(), &id_b]);
    assert!(!is_mount_point(&recreated.join("rootfs")));
    assert!(!recreated.exists());
    assert_eq!(dot_entries(host_b.root.path()), Vec::<String>::new());
    let host_d = Godwit::new();
    let id_d = host_d.id("ovl-d");
    host_d.ok_null(&[
        "restore",
        "--detach",
        "--import",
        archive2.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        &id_d,
    ]);
    let out = host_d.ok(&[
        "exec",
        &id_d,
        "sh",
        "-c",
        "cat /etc/kept /data/sub/fresh; ls /etc/added /etc/motd /data/old 2>&1 | wc -l",
    ]);
    assert_eq!(
        out, "changed\nfresh\n3\n",
        "changes and both deletions came along"
    );
    let count_d = host_d
        .root
        .path()
        .join(format!(".{id_d}.bundle/rootfs/tmp/count"));
    wait_for("counter continues on D", Duration::from_secs(10), || {
        last_count(&count_d).filter(|&n| n >= at_b + 3)
    });
    let numbers = counts(&count_d);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u64),
        "{numbers:?}"
    );
    host_d.ok(&["delete", "--force", &id_d]);
    assert_eq!(dot_entries(host_d.root.path()), Vec::<String>::new());
}

#[test]
fn import_without_bundle_refuses_a_missing_base_and_leaves_nothing() {
    let host_a = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let id = host_a.id("nobase");
    host_a.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&bundle.rootfs().join("tmp/count"))
    });
    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("nobase.tar");
    host_a.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    // The plain-directory base (the bundle's rootfs) is not on "host B".
    let moved = bundle.path().join("rootfs.elsewhere");
    std::fs::rename(bundle.rootfs(), &moved).unwrap();

    let host_b = Godwit::new();
    let work = tempfile::tempdir().unwrap();
    let id_b = host_b.id("nobase-b");
    let err = host_b.fails(&[
        "restore",
        "--detach",
        "--import",
        archive.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        "--work-path",
        work.path().to_str().unwrap(),
        &id_b,
    ]);
    assert!(
        err.contains(bundle.rootfs().to_str().unwrap()),
        "names the missing base: {err}"
    );
    assert!(err.contains("--bundle"), "says the fix: {err}");
    assert!(!host_b.state_dir(&id_b).exists());
    assert_eq!(host_b.ok(&["list", "-q"]).trim(), "");
    assert_eq!(dot_entries(host_b.root.path()), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);

    // With the base back, the same archive restores with a bundle recreated
    // under --work-path.
    std::fs::rename(&moved, bundle.rootfs()).unwrap();
    host_b.ok_null(&[
        "restore",
        "--detach",
        "--import",
        archive.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        "--work-path",
        work.path().to_str().unwrap(),
        &id_b,
    ]);
    let recreated = work.path().join(format!(".{id_b}.bundle"));
    assert!(is_mount_point(&recreated.join("rootfs")));
    assert_eq!(host_b.status(&id_b), "running");
    host_b.ok(&["delete", "--force", &id_b]);
    assert!(!recreated.exists());
}

/// A bundle whose path overlay cannot name (a ':'): the archive records no
/// base, restores onto a given bundle and asks for one without.
#[test]
fn a_base_overlay_cannot_name_is_not_recorded() {
    let host_a = Godwit::new();
    let made = Bundle::new(&["counter", "10", "/tmp/count"]);
    let odd = tempfile::tempdir().unwrap();
    let bundle_a = odd.path().join("bundle:a");
    let copied = std::process::Command::new("cp")
        .args(["-a", made.path().to_str().unwrap()])
        .arg(&bundle_a)
        .status()
        .unwrap();
    assert!(copied.success());
    let id = host_a.id("colon");
    host_a.ok_null(&[
        "run",
        "--detach",
        "--bundle",
        bundle_a.to_str().unwrap(),
        &id,
    ]);
    let count_a = bundle_a.join("rootfs/tmp/count");
    wait_for("ticks", Duration::from_secs(10), || last_count(&count_a));
    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("colon.tar");
    host_a.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    let at_checkpoint = last_count(&count_a).unwrap();

    let host_b = Godwit::new();
    let id_b = host_b.id("colon-b");
    let err = host_b.fails(&[
        "restore",
        "--detach",
        "--import",
        archive.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        &id_b,
    ]);
    assert!(err.contains("--bundle"), "asks for --bundle: {err}");
    assert!(!host_b.state_dir(&id_b).exists());

    host_b.restore_import(&archive, &made, &id_b);
    let count_b = made.rootfs().join("tmp/count");
    let after = wait_for("ticks on B", Duration::from_secs(10), || {
        last_count(&count_b).filter(|&n| n > at_checkpoint)
    });
    assert!(after > at_checkpoint);
    assert_eq!(
        counts(&count_b)[..=at_checkpoint as usize],
        counts(&count_a)[..]
    );
    host_b.ok(&["delete", "--force", &id_b]);
}

/// An archive as `checkpoint --export` writes it, with `rootfs_base` as given.
fn archive_with_base(dir: &Path, base: Option<godwit_runtime::archive::RootfsBase>) -> PathBuf {
    use godwit_runtime::archive::{ArchiveConfig, ArchiveContents};
    let image = dir.join("image");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(image.join("inventory.json"), b"{}").unwrap();
    let mut config = ArchiveConfig::new("c1");
    config.rootfs_base = base;
    let file = dir.join("a.tar");
    godwit_runtime::archive::export(
        &ArchiveContents {
            image_dir: image,
            spec_dump: b"{}".to_vec(),
            config,
            rootfs_diff: None,
            deleted_files: vec![],
            stats: serde_json::Value::Null,
        },
        &file,
    )
    .unwrap();
    file
}

#[test]
fn import_without_bundle_needs_a_usable_recorded_base() {
    use godwit_runtime::archive::RootfsBase;
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let restore = |archive: &Path| {
        let id = g.id("base");
        let err = g.fails(&[
            "restore",
            "--detach",
            "--import",
            archive.to_str().unwrap(),
            "--rootfs-base-dir",
            TMP,
            &id,
        ]);
        assert!(!g.state_dir(&id).exists());
        assert_eq!(dot_entries(g.root.path()), Vec::<String>::new());
        err
    };
    // Written before config.dump recorded the base (format 1.0): --bundle it is.
    let older = archive_with_base(&dir.path().join("older"), None);
    let err = restore(&older);
    assert!(
        err.contains("does not record") && err.contains("--bundle"),
        "{err}"
    );
    // A base that is the host's root, or not absolute, is refused on import.
    for (name, path) in [("root", "/"), ("relative", "srv/image")] {
        let bad = archive_with_base(
            &dir.path().join(name),
            Some(RootfsBase::Directory { path: path.into() }),
        );
        let err = restore(&bad);
        assert!(err.contains("rootfs_base"), "{name}: {err}");
    }
}

/// Receives the pty master sent over a console socket.
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

/// Reads from a pty master until `want` shows up (or 10 s pass).
fn read_until(master: &mut std::fs::File, want: &str) -> String {
    let fd = master.as_raw_fd();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "waited for {want:?}, got {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut pfd = [nix::poll::PollFd::new(
            // SAFETY: the fd is the master's, alive for this call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut pfd, 200u16).unwrap_or(0) == 0 {
            continue;
        }
        let mut buf = [0u8; 256];
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn a_terminal_container_gets_a_new_pty_over_the_console_socket() {
    let g = Godwit::new();
    // A shell reading lines and numbering them: its state is the count.
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "n=0; while read l; do n=$((n+1)); echo \"line$n:$l\"; [ \"$l\" = quit ] && exit 5; done",
    ]);
    bundle.edit(|c| c["process"]["terminal"] = true.into());
    let sock = g.root.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = g.id("tty");
    let receiver = std::thread::spawn(move || {
        let fd = receive_fd(&listener);
        (fd, listener)
    });
    g.ok_null(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let (fd, listener) = receiver.join().unwrap();
    let mut master = std::fs::File::from(fd);
    g.ok(&["start", &id]);
    master.write_all(b"first\n").unwrap();
    read_until(&mut master, "line1:first");
    master.write_all(b"second\n").unwrap();
    read_until(&mut master, "line2:second");

    let image = g.root.path().join("image");
    let archive = g.root.path().join("tty.tar");
    g.ok(&[
        "checkpoint",
        "--image-path",
        image.to_str().unwrap(),
        "--export",
        archive.to_str().unwrap(),
        &id,
    ]);
    drop(master);

    // A detached restore of a terminal container needs a console socket; the
    // refusal comes after the bundle was recreated from the archive, and
    // removes it again.
    let id2 = g.id("tty-restored");
    let err = g.fails(&[
        "restore",
        "--detach",
        "--import",
        archive.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        &id2,
    ]);
    assert!(err.contains("--console-socket"), "{err}");
    assert!(!g.state_dir(&id2).exists());
    assert_eq!(dot_entries(g.root.path()), Vec::<String>::new());
    let root = g.root.path().to_str().unwrap().to_string();
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&root),
        "no mount left under the state root"
    );

    let receiver = std::thread::spawn(move || receive_fd(&listener));
    g.ok_null(&[
        "restore",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        "--import",
        archive.to_str().unwrap(),
        "--rootfs-base-dir",
        TMP,
        &id2,
    ]);
    let mut master = std::fs::File::from(receiver.join().unwrap());
    master.write_all(b"third\n").unwrap();
    let text = read_until(&mut master, "line3:third");
    assert!(!text.contains("line1:third"), "the count went on: {text}");
    // The new pty is the shell's controlling terminal (tty_nr in stat).
    let pid = g.pid(&id2);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let tty_nr: i64 = after.split(' ').nth(4).unwrap().parse().unwrap();
    assert_ne!(
        tty_nr, 0,
        "the restored shell has a controlling terminal: {stat}"
    );
}

/// tpgid of `pid` (host pid of the terminal's foreground group) and its pgrp.
fn tpgid_and_pgrp(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (f[5].parse().unwrap(), f[2].parse().unwrap())
}

#[test]
fn a_foreground_job_keeps_the_terminal_after_restore() {
    let g = Godwit::new();
    // A job-control shell runs the reader as a foreground job: its own
    // process group, the terminal's foreground one.
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "set -m; sh -c 'n=0; while read l; do n=$((n+1)); echo \"job$n:$l\"; done'; echo outer-done",
    ]);
    bundle.edit(|c| c["process"]["terminal"] = true.into());
    let sock = g.root.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = g.id("fgjob");
    let receiver = std::thread::spawn(move || (receive_fd(&listener), listener));
    g.ok_null(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let (fd, listener) = receiver.join().unwrap();
    let mut master = std::fs::File::from(fd);
    g.ok(&["start", &id]);
    master.write_all(b"one\n").unwrap();
    read_until(&mut master, "job1:one");
    let init = g.pid(&id);
    let (tpgid, pgrp) = tpgid_and_pgrp(init);
    assert_ne!(
        tpgid, pgrp,
        "the job is in the foreground, not the init's group"
    );
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    drop(master);

    let id2 = g.id("fgjob-restored");
    let receiver = std::thread::spawn(move || receive_fd(&listener));
    g.ok_null(&[
        "restore",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        "--image-path",
        image.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id2,
    ]);
    let mut master = std::fs::File::from(receiver.join().unwrap());
    let init = g.pid(&id2);
    let (tpgid, pgrp) = tpgid_and_pgrp(init);
    assert_ne!(tpgid, pgrp, "the job is the foreground group again");
    // Without that the job's read would stop it (SIGTTIN) and nothing come back.
    master.write_all(b"two\n").unwrap();
    read_until(&mut master, "job2:two");
}

#[test]
fn lo_state_travels_and_missing_interfaces_are_named() {
    let host_a = Godwit::new();
    let host_b = Godwit::new();
    let args = [
        "sh",
        "-c",
        "mkdir -p /www && echo served > /www/hello && ip link set lo up && \
         ip addr add 127.0.0.2/8 dev lo && ip route add 10.77.0.0/16 dev lo && \
         exec httpd -f -p 127.0.0.2:8080 -h /www",
    ];
    let bundle_a = Bundle::new(&args);
    let bundle_b = Bundle::new(&args);
    // The workload plumbs its own lo: it needs CAP_NET_ADMIN.
    for b in [&bundle_a, &bundle_b] {
        b.edit(|c| {
            let caps = &mut c["process"]["capabilities"];
            for set in ["bounding", "effective", "permitted"] {
                caps[set]
                    .as_array_mut()
                    .unwrap()
                    .push("CAP_NET_ADMIN".into());
            }
        });
    }
    let id = host_a.id("lo");
    host_a.start_detached_null(&bundle_a, &id);
    let fetch = |g: &Godwit, id: &str| {
        let out = g.run(&[
            "exec",
            id,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.2:8080/hello",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("server up", Duration::from_secs(10), || {
        (fetch(&host_a, &id) == "served\n").then_some(())
    });
    // An interface plumbed in from outside, as CNI would.
    let pid = host_a.pid(&id);
    let n = std::process::id() % 100_000;
    let (outer, inner) = (format!("gwo{n}"), format!("gwi{n}"));
    let ok = Command::new("ip")
        .args([
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])
        .status()
        .unwrap()
        .success()
        && Command::new("ip")
            .args(["link", "set", &inner, "netns", &pid.to_string()])
            .status()
            .unwrap()
            .success();
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.0])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _outer = DelLink(outer.clone());
    assert!(ok, "veth into the container");
    let lo_a = host_a.ok(&["exec", &id, "ip", "addr", "show", "dev", "lo"]);
    assert!(lo_a.contains("127.0.0.2/8"), "{lo_a}");

    let transfer = tempfile::tempdir().unwrap();
    let archive = transfer.path().join("lo.tar");
    host_a.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);

    let id_b = host_b.id("lo-b");
    let out = host_b
        .cmd()
        .args(["restore", "--detach", "--import"])
        .arg(&archive)
        .arg("--bundle")
        .arg(bundle_b.path())
        .arg(&id_b)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr to its end without waiting on the container's copies of it.
    let mut stderr = String::new();
    let mut child = out;
    let mut err_pipe = child.stderr.take().unwrap();
    let status = child.wait().unwrap();
    let _ = nix::fcntl::fcntl(
        err_pipe.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 4096];
    while let Ok(n) = err_pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        stderr.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(status.success(), "restore failed: {stderr}");
    assert!(
        stderr.contains(&format!(
            "interface {inner} was plumbed in from outside: plumb it again"
        )),
        "{stderr}"
    );
    let lo_b = host_b.ok(&["exec", &id_b, "ip", "addr", "show", "dev", "lo"]);
    assert!(lo_b.contains("UP"), "lo is up again: {lo_b}");
    assert!(lo_b.contains("127.0.0.2/8"), "with its address: {lo_b}");
    let routes = host_b.ok(&["exec", &id_b, "ip", "route", "show", "dev", "lo"]);
    assert!(routes.contains("10.77.0.0/16"), "and its route: {routes}");
    // The server restored with its listening socket serves on that address.
    assert_eq!(fetch(&host_b, &id_b), "served\n");
}

/// The first number of /proc/uptime (boottime seconds, time-namespace aware).
fn uptime(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn exec_joins_the_restored_time_namespace() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let id = g.id("texec");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&bundle.rootfs().join("tmp/count"))
    });
    let image = g.root.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    // The blackout becomes the restored namespace's (negative) offset.
    std::thread::sleep(Duration::from_millis(1500));
    let id2 = g.id("texec-restored");
    g.ok_null(&[
        "restore",
        "--detach",
        "--image-path",
        image.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id2,
    ]);
    let pid = g.pid(&id2);
    let offsets = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap();
    let boottime: f64 = offsets
        .lines()
        .find(|l| l.starts_with("boottime"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1].parse::<f64>().unwrap() + f[2].parse::<f64>().unwrap() / 1e9
        })
        .unwrap();
    assert!(boottime < -1.0, "a real offset: {offsets}");
    let host_before = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    let inside = uptime(&g.ok(&["exec", &id2, "cat", "/proc/uptime"]));
    let host_after = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(
        inside >= host_before + boottime - 0.05 && inside <= host_after + boottime + 0.05,
        "exec sees the workload's clock (host {host_before}..{host_after}, offset {boottime}): {inside}"
    );
    // The same namespace as the init, not a new one.
    let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/time")).unwrap();
    let out = g.ok(&["exec", &id2, "readlink", "/proc/self/ns/time"]);
    assert_eq!(out.trim(), init_ns.to_str().unwrap());
}
