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

/// The archive `good` (a plain tar) with entry `name`'s data replaced by
/// `data`, and config.dump's list made to agree (as an attacker would).
fn with_entry(good: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    with_entries(good, &[(name, data.to_vec())])
}

/// [`with_entry`] for several entries at once.
fn with_entries(good: &[u8], changes: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut entries: Vec<(String, tar::Header, Vec<u8>)> = Vec::new();
    let mut ar = tar::Archive::new(good);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        entries.push((path, e.header().clone(), bytes));
    }
    for (path, _, bytes) in entries.iter_mut() {
        if let Some((_, data)) = changes.iter().find(|(n, _)| n == path) {
            *bytes = data.clone();
        }
    }
    let digests: BTreeMap<String, (u64, String)> = entries
        .iter()
        .map(|(p, _, b)| {
            (
                p.clone(),
                (b.len() as u64, godwit_checkpoint::digest::of(b)),
            )
        })
        .collect();
    let mut config: serde_json::Value = serde_json::from_slice(&entries[0].2).unwrap();
    for l in config["entries"].as_array_mut().unwrap() {
        if let Some((size, sum)) = digests.get(l["path"].as_str().unwrap()) {
            if l["type"] == "file" {
                l["size"] = (*size).into();
                l["sha256"] = sum.clone().into();
            }
        }
    }
    entries[0].2 = serde_json::to_vec(&config).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (path, mut h, bytes) in entries {
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, path, &bytes[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar of hand-made entries: (path, type, link target, data).
fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// A host file and directory no restore may touch, and their state.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("godwit-canary-")
            .tempdir()
            .unwrap();
        fs::write(dir.path().join("secret"), b"host secret\n").unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        Canary { dir }
    }
    fn secret(&self) -> String {
        self.dir.path().join("secret").display().to_string()
    }
    fn dir(&self) -> String {
        self.dir.path().join("d").display().to_string()
    }
    fn assert_untouched(&self, what: &str) {
        let s = self.dir.path().join("secret");
        assert_eq!(
            fs::read(&s).unwrap(),
            b"host secret\n",
            "{what}: canary content"
        );
        assert_eq!(
            fs::metadata(&s).unwrap().nlink(),
            1,
            "{what}: no link to the canary"
        );
        assert_eq!(
            fs::read_dir(self.dir.path().join("d")).unwrap().count(),
            0,
            "{what}: nothing written into the host dir"
        );
    }
}

#[test]
fn a_rootfs_diff_never_reaches_outside_the_rootfs() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("ck.tar");
    checkpointed(&g, "diffsrc", &archive, &[]);
    let good = fs::read(&archive).unwrap();
    let canary = Canary::new();
    let (secret, hostdir) = (canary.secret(), canary.dir());
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "hard link to a host file",
            tar_of(&[("etc/stolen", T::Link, &secret, b"")]),
            "hard link to",
        ),
        (
            "write through a symlink to a host dir",
            tar_of(&[
                ("out", T::Symlink, &hostdir, b""),
                ("out/planted", T::Regular, "", b"pwned"),
            ]),
            "a symlink the diff made",
        ),
        (
            "dot-dot path",
            tar_of(&[("../../../../../../tmp/escaped", T::Regular, "", b"pwned")]),
            "`..`",
        ),
        (
            "device node",
            tar_of(&[("dev/evil", T::Block, "", b"")]),
            "device node",
        ),
    ];
    for (what, diff, want) in cases {
        let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
        let before = tree(&bundle.rootfs());
        let hostile = dir.path().join("hostile.tar");
        fs::write(&hostile, with_entry(&good, "rootfs-diff.tar", &diff)).unwrap();
        let id = g.id("diff");
        let out = restore(&g, &hostile, &bundle, &id, &[], &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: restored: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(err.contains("nothing was applied"), "{what}: {err}");
        assert_nothing_left(&g, &id);
        assert_eq!(
            tree(&bundle.rootfs()),
            before,
            "{what}: bundle rootfs unchanged"
        );
        canary.assert_untouched(what);
    }
    assert!(!Path::new("/tmp/escaped").exists());

    // A symlink to a host file, then a file of that name: the file replaces
    // the link inside the rootfs; the host file is untouched.
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let diff = tar_of(&[
        ("etc/x", T::Symlink, &secret, b""),
        ("etc/x", T::Regular, "", b"inside\n"),
    ]);
    // After the checkpoint's own changes (the counter's file is among them).
    let original = &good[entry_data(&good, "rootfs-diff.tar")];
    let end = {
        let mut ar = tar::Archive::new(original);
        let last = ar.entries().unwrap().map(|e| e.unwrap()).last().unwrap();
        (last.raw_file_position() + last.size()).next_multiple_of(512) as usize
    };
    let diff = [&original[..end], &diff[..]].concat();
    let hostile = dir.path().join("replace.tar");
    fs::write(&hostile, with_entry(&good, "rootfs-diff.tar", &diff)).unwrap();
    let id = g.id("diffok");
    let out = restore(&g, &hostile, &bundle, &id, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(bundle.rootfs().join("etc/x")).unwrap(),
        b"inside\n"
    );
    canary.assert_untouched("symlink replaced by a file");
}

/// The archive with the image's extra file `name` replaced by `data`, the
/// inventory's digest of it and config.dump's list made to agree.
fn with_image_extra(good: &[u8], name: &str, data: Vec<u8>) -> Vec<u8> {
    let inv_range = entry_data(good, "checkpoint/inventory.json");
    let mut inv: serde_json::Value = serde_json::from_slice(&good[inv_range]).unwrap();
    let extra = inv["extras"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no extra {name} in the image"));
    extra["len"] = (data.len() as u64).into();
    extra["sha256"] = godwit_checkpoint::digest::of(&data).into();
    let inv = serde_json::to_vec(&inv).unwrap();
    with_entries(
        good,
        &[
            (&format!("checkpoint/{name}"), data),
            ("checkpoint/inventory.json", inv),
        ],
    )
}

#[test]
fn tmpfs_contents_go_only_into_the_specs_tmpfs_mounts() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = Bundle::new(&["counter", "10", "/scratch/count"]);
    let with_tmpfs = |b: &Bundle| {
        b.edit(|c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=16m"]
            }));
        });
        fs::create_dir_all(b.rootfs().join("scratch")).unwrap();
    };
    with_tmpfs(&bundle);
    let id = g.id("tmpfssrc");
    g.start_detached_null(&bundle, &id);
    wait_for("ticks", Duration::from_secs(10), || {
        let out = g.run(&["exec", &id, "cat", "/scratch/count"]);
        (String::from_utf8_lossy(&out.stdout).lines().count() >= 3).then_some(())
    });
    let archive = dir.path().join("ck.tar");
    g.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    let good = fs::read(&archive).unwrap();
    let tmpfs = good[entry_data(&good, "checkpoint/tmpfs.tar")].to_vec();
    let end = {
        let mut ar = tar::Archive::new(&tmpfs[..]);
        let last = ar.entries().unwrap().map(|e| e.unwrap()).last().unwrap();
        (last.raw_file_position() + last.size()).next_multiple_of(512) as usize
    };
    use tar::EntryType as T;
    for (what, extra, want) in [
        (
            "a file in the rootfs",
            tar_of(&[("bin/planted", T::Regular, "", b"pwned")]),
            "not inside one of the spec's tmpfs mounts",
        ),
        (
            "through a symlink out of the tmpfs",
            tar_of(&[
                ("scratch/out", T::Symlink, "/bin", b""),
                ("scratch/out/planted", T::Regular, "", b"pwned"),
            ]),
            "outside the tmpfs mount",
        ),
    ] {
        let hostile = dir.path().join("hostile.tar");
        let data = [&tmpfs[..end], &extra[..]].concat();
        fs::write(&hostile, with_image_extra(&good, "tmpfs.tar", data)).unwrap();
        let b = Bundle::new(&["counter", "10", "/scratch/count"]);
        with_tmpfs(&b);
        let before = tree(&b.rootfs());
        let id = g.id("tmpfs");
        let out = restore(&g, &hostile, &b, &id, &[], &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: restored: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(!b.rootfs().join("bin/planted").exists(), "{what}");
        assert_nothing_left(&g, &id);
        // The diff was applied (the archive is whole); nothing else changed.
        let after = tree(&b.rootfs());
        assert!(
            after
                .keys()
                .all(|k| before.contains_key(k) || k.starts_with("tmp")),
            "{what}: only the checkpoint's own changes: {:?}",
            after
                .keys()
                .filter(|k| !before.contains_key(*k))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_corrupt_image_directory_is_refused_before_its_diff_touches_the_bundle() {
    let g = Godwit::new();
    let src = Bundle::new(&["counter", "10", "/tmp/count"]);
    let id = g.id("imgsrc");
    g.start_detached_null(&src, &id);
    g.ok(&["exec", &id, "sh", "-c", "echo made-before > /tmp/note"]);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&src.rootfs().join("tmp/count")).filter(|&n| n >= 3)
    });
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    g.ok(&["checkpoint", "--image-path", image.to_str().unwrap(), &id]);
    let pages = fs::read_dir(&image)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pages-")
        })
        .unwrap();
    for (what, file, want) in [
        ("page file", pages.clone(), "SHA-256"),
        (
            "rootfs diff",
            image.join("rootfs-diff.tar"),
            "rootfs.sha256",
        ),
    ] {
        let saved = fs::read(&file).unwrap();
        let mut bad = saved.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        fs::write(&file, &bad).unwrap();
        let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
        let before = tree(&bundle.rootfs());
        let rid = g.id("img");
        let out = g.run(&[
            "restore",
            "--detach",
            "--image-path",
            image.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &rid,
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: restored: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert_nothing_left(&g, &rid);
        assert_eq!(
            tree(&bundle.rootfs()),
            before,
            "{what}: bundle rootfs unchanged"
        );
        fs::write(&file, &saved).unwrap();
    }
}

#[test]
fn import_is_bounded_by_a_maximum_and_by_free_space_minus_a_reserve() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("ck.tar.zst");
    checkpointed(&g, "boundsrc", &archive, &[]);
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let before = tree(&bundle.rootfs());
    let id = g.id("bounded");
    // A maximum below the archive's size (flag, then environment).
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &["--import-max-size", "64K"],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("over the import limit of 65536 bytes"),
        "{err}"
    );
    assert_nothing_left(&g, &id);
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &[],
        &[("GODWIT_IMPORT_MAX_SIZE", "1K")],
    );
    assert!(
        stderr(&out).contains("over the import limit of 1024 bytes"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&g, &id);
    // A reserve larger than the free space.
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &["--import-reserve", "1000000T"],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("must stay free"), "{err}");
    assert_nothing_left(&g, &id);
    assert_eq!(tree(&bundle.rootfs()), before);
    // A bad size is named.
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &["--import-max-size", "12Q"],
        &[],
    );
    assert!(stderr(&out).contains("unknown unit"), "{}", stderr(&out));
    // Within the bounds: restored.
    let out = restore(
        &g,
        &archive,
        &bundle,
        &id,
        &["--import-max-size", "1G", "--import-reserve", "1M"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
