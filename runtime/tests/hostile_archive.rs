//! Hostile archives and images, end to end (root, real containers): each test
//! makes a good checkpoint of a real container, builds its hostile input from
//! it, and asserts the refusal message and that nothing changed or was left.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Every path under `root` with its type, mode, owner and content (or link
/// target): equal maps mean a byte-identical tree.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                format!(
                    "file {}",
                    godwit_checkpoint::digest::of(&fs::read(&p).unwrap())
                )
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!("special {:o}", m.mode())
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", m.mode(), m.uid(), m.gid()),
            );
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A running counter container that wrote a file into its rootfs (so the
/// archive has a rootfs diff), checkpointed into `archive` with `extra` args.
fn checkpointed(g: &Godwit, name: &str, archive: &Path, extra: &[&str]) -> Bundle {
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let id = g.id(name);
    g.start_detached_null(&bundle, &id);
    g.ok(&["exec", &id, "sh", "-c", "echo made-before > /tmp/note"]);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&bundle.rootfs().join("tmp/count")).filter(|&n| n >= 3)
    });
    let mut args = vec!["checkpoint", "--export", archive.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&id);
    g.ok(&args);
    bundle
}

/// `godwit restore --detach --import ARCHIVE --bundle BUNDLE ID EXTRA...`
/// with `env`; stdio to files (the container keeps them); returns the
/// output with stderr read back.
fn restore(
    g: &Godwit,
    archive: &Path,
    bundle: &Bundle,
    id: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let err_path = g.root.path().join(format!("{id}.stderr"));
    let err = fs::File::create(&err_path).unwrap();
    let mut cmd = g.cmd();
    cmd.args(["restore", "--detach", "--import"])
        .arg(archive)
        .arg("--bundle")
        .arg(bundle.path())
        .args(extra)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: fs::read(&err_path).unwrap(),
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Nothing of a failed restore of `id` is left: no container, no hidden
/// work directory in the state root, no mount under it.
fn assert_nothing_left(g: &Godwit, id: &str) {
    assert!(!g.state_dir(id).exists(), "no state dir of {id}");
    let debris: Vec<String> = fs::read_dir(g.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n == id)
        .collect();
    assert!(debris.is_empty(), "left in the state root: {debris:?}");
    let root = fs::canonicalize(g.root.path()).unwrap();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let under: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| Path::new(m).starts_with(&root))
        })
        .collect();
    assert!(
        under.is_empty(),
        "mounts left under the state root: {under:?}"
    );
}

/// The data range of the entry `name` in a plain tar.
fn entry_data(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == name.as_bytes() {
            let start = e.raw_file_position() as usize;
            return start..start + e.size() as usize;
        }
    }
    panic!("no entry {name} in the archive");
}

fn keygen(g: &Godwit, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(name);
    g.ok(&["keygen", "--sign", private.to_str().unwrap()]);
    let mut public = private.clone().into_os_string();
    public.push(".pub");
    (private, PathBuf::from(public))
}

#[test]
fn a_signed_archive_restores_with_its_key_and_a_tampered_one_changes_nothing() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keygen(&g, dir.path(), "sign.pem");
    assert_eq!(
        fs::metadata(&private).unwrap().mode() & 0o777,
        0o600,
        "the private key is the owner's only"
    );
    let archive = dir.path().join("ck.tar");
    checkpointed(
        &g,
        "signed",
        &archive,
        &["--sign-key", private.to_str().unwrap()],
    );
    let good = fs::read(&archive).unwrap();
    let verify = ["--verify-key", public.to_str().unwrap()];

    // One byte of the rootfs diff changed: refused before the bundle's
    // rootfs is touched (its tree is byte-identical afterwards).
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let before = tree(&bundle.rootfs());
    let diff = entry_data(&good, "rootfs-diff.tar");
    for (what, at) in [
        ("rootfs diff", diff.start + 600),
        (
            "image",
            entry_data(&good, "checkpoint/inventory.json").start + 3,
        ),
        ("signed list", entry_data(&good, "config.dump").start + 40),
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        let tampered = dir.path().join("tampered.tar");
        fs::write(&tampered, &bad).unwrap();
        let id = g.id("tampered");
        let out = restore(&g, &tampered, &bundle, &id, &verify, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: restored: {err}");
        let want = if what == "signed list" {
            "altered after it was signed"
        } else {
            "SHA-256"
        };
        assert!(err.contains(want), "{what}: {err}");
        assert!(err.contains("nothing was extracted"), "{what}: {err}");
        assert_nothing_left(&g, &id);
        assert_eq!(
            tree(&bundle.rootfs()),
            before,
            "{what}: the bundle's rootfs is unchanged"
        );
    }

    // Without a key: restored, with a warning that it is not checked.
    let id = g.id("nokey");
    let out = restore(&g, &archive, &bundle, &id, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("signature was not checked"),
        "{}",
        stderr(&out)
    );
    g.ok(&["delete", "--force", &id]);

    // With its key (given by the environment variable): restored, the
    // counter continues.
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let id = g.id("verified");
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &["--require-signature"],
        &[("GODWIT_VERIFY_KEY", public.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(g.status(&id), "running");
    let count = bundle.rootfs().join("tmp/count");
    let at = last_count(&count).unwrap();
    wait_for("the counter continues", Duration::from_secs(10), || {
        last_count(&count).filter(|&n| n > at + 2)
    });
    assert_eq!(
        fs::read_to_string(bundle.rootfs().join("tmp/note")).unwrap(),
        "made-before\n"
    );
}

#[test]
fn an_unsigned_archive_is_refused_when_a_signature_is_required() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("ck.tar.zst");
    checkpointed(&g, "unsigned", &archive, &[]);
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let before = tree(&bundle.rootfs());

    // A key made by openssl, as the README says.
    let private = dir.path().join("ossl.pem");
    let public = dir.path().join("ossl.pub.pem");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success());
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private));
    ok(Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&private)
        .arg("-pubout")
        .arg("-out")
        .arg(&public));

    let id = g.id("required");
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &["--verify-key", public.to_str().unwrap()],
        &[("GODWIT_REQUIRE_SIGNATURE", "1")],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not signed"), "{err}");
    assert_nothing_left(&g, &id);
    assert_eq!(tree(&bundle.rootfs()), before);

    // Required without a key to check with: refused too, naming the fix.
    let out = restore(&g, &archive, &bundle, &id, &["--require-signature"], &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--verify-key"), "{err}");
    assert_nothing_left(&g, &id);

    // No policy: restored, with the warning.
    let out = restore(&g, &archive, &bundle, &id, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    assert_eq!(g.status(&id), "running");

    // An openssl-made key signs too.
    let id2 = g.id("ossl-signed");
    let signed = dir.path().join("signed.tar");
    checkpointed(
        &g,
        "ossl",
        &signed,
        &["--sign-key", private.to_str().unwrap()],
    );
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let out = restore(
        &g,
        &signed,
        &bundle,
        &id2,
        &["--verify-key", public.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_restore_killed_midway_leaves_nothing_and_the_id_is_usable_again() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("ck.tar");
    // Kept: its rootfs is the base a restore without --bundle stacks on.
    let _source = checkpointed(&g, "killsrc", &archive, &[]);
    // (pause point, --bundle given, what cleans up: the next restore of the
    // id, or delete --force)
    for (point, with_bundle, cleaner) in [
        ("after-import", true, "restore"),
        ("after-bundle", false, "delete"),
        ("after-create", true, "delete"),
        ("after-rebuild", false, "restore"),
    ] {
        let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
        let id = g.id("killed");
        let marker = dir.path().join(format!("{point}.pid"));
        let mut cmd = g.cmd();
        cmd.args(["restore", "--detach", "--import"]).arg(&archive);
        if with_bundle {
            cmd.arg("--bundle").arg(bundle.path());
        } else {
            // The source's rootfs (a temporary directory) is the recorded base.
            cmd.args(["--rootfs-base-dir", "/tmp"]);
        }
        let mut child = cmd
            .arg(&id)
            .env(
                "GODWIT_TEST_PAUSE_AT",
                format!("{point}:{}", marker.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid: i32 = wait_for(point, Duration::from_secs(30), || {
            fs::read_to_string(&marker).ok()?.trim().parse().ok()
        });
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = child.kill();
        child.wait().unwrap();
        assert!(
            g.root.path().join(format!(".{id}.restoring")).exists(),
            "{point}: the killed restore left its journal"
        );
        // What it left, as the issue found it.
        let left = |name: String| g.root.path().join(name).exists();
        assert!(left(format!(".{id}.import")), "{point}: import dir");
        match point {
            "after-bundle" => {
                let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
                assert!(
                    mounts.contains(&format!(".{id}.bundle/rootfs")),
                    "{point}: the overlay is mounted"
                );
            }
            "after-create" | "after-rebuild" => {
                assert!(
                    g.state_dir(&id).join("state.json").exists(),
                    "{point}: state"
                );
                assert!(left(format!(".{id}.restore")), "{point}: stub bundle");
            }
            _ => {}
        }
        if cleaner == "delete" {
            g.ok(&["delete", "--force", &id]);
            assert_nothing_left(&g, &id);
        }
        // The id restores again (after a kill at this point).
        let mut args = vec!["restore", "--detach", "--import", archive.to_str().unwrap()];
        if with_bundle {
            args.extend(["--bundle", bundle.path().to_str().unwrap()]);
        } else {
            args.extend(["--rootfs-base-dir", "/tmp"]);
        }
        args.push(&id);
        g.ok_null(&args);
        assert_eq!(g.status(&id), "running", "{point}");
        g.ok(&["delete", "--force", &id]);
        assert_nothing_left(&g, &id);
    }
}

#[test]
fn ids_beginning_with_a_dot_are_refused_by_every_verb() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["true"]);
    let b = bundle.path().to_str().unwrap();
    for args in [
        vec!["create", "--bundle", b, ".x.import"],
        vec!["run", "--bundle", b, ".x"],
        vec!["restore", "--import", "/nonexistent.tar", ".x.restore"],
        vec!["delete", "--force", ".x"],
        vec!["state", ".x"],
        vec!["kill", ".x", "KILL"],
        vec!["checkpoint", ".x"],
    ] {
        let err = g.fails(&args);
        assert!(err.contains("reserved for godwit"), "{args:?}: {err}");
    }
    assert_eq!(fs::read_dir(g.root.path()).unwrap().count(), 0);
}
