//! Checkpoints edited as an attacker would, every digest and size recomputed
//! so that only the check under test can refuse them: the spec an archive
//! carries, and the credentials its process records ask for. Each test
//! builds its hostile input from a good checkpoint of a real container,
//! asserts the specific refusal (or that the destination's spec won), that
//! a host canary file is untouched and that nothing is left in the state root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

/// An archive read into memory, entry by entry, in order.
struct Archive {
    entries: Vec<(String, tar::EntryType, u32, Vec<u8>)>,
}

impl Archive {
    fn read(path: &Path) -> Archive {
        let bytes = std::fs::read(path).expect("read archive");
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut entries = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = String::from_utf8(e.path_bytes().into_owned()).expect("utf-8 name");
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap_or(0o600);
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).expect("entry data");
            entries.push((name, kind, mode, data));
        }
        Archive { entries }
    }

    fn get(&self, name: &str) -> &[u8] {
        &self
            .entries
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("no {name} in the archive"))
            .3
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(self.get(name)).expect("JSON entry")
    }

    fn set(&mut self, name: &str, bytes: Vec<u8>) {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("no {name} in the archive"));
        e.3 = bytes;
    }

    fn edit_json(&mut self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut v = self.json(name);
        f(&mut v);
        self.set(name, serde_json::to_vec(&v).unwrap());
    }

    /// The checkpointed spec, both copies (the archive's and the image's).
    fn edit_spec(&mut self, f: impl Fn(&mut Value)) {
        self.edit_json("spec.dump", &f);
        self.edit_json("checkpoint/spec.dump", &f);
    }

    /// Writes the archive as a forger would: the image inventory's lengths
    /// and digests and config.dump's entry sizes made to match.
    fn write(&mut self, path: &Path) {
        let mut inv = self.json("checkpoint/inventory.json");
        let files: Vec<(String, Vec<u8>)> = self
            .entries
            .iter()
            .filter_map(|e| {
                e.0.strip_prefix("checkpoint/")
                    .map(|n| (n.to_string(), e.3.clone()))
            })
            .collect();
        fix_inventory(&mut inv, &files);
        self.set(
            "checkpoint/inventory.json",
            serde_json::to_vec(&inv).unwrap(),
        );
        let sizes: Vec<(String, u64, String)> = self
            .entries
            .iter()
            .map(|e| {
                (
                    e.0.trim_end_matches('/').to_string(),
                    e.3.len() as u64,
                    godwit_checkpoint::digest::of(&e.3),
                )
            })
            .collect();
        self.edit_json("config.dump", |c| {
            for listed in c["entries"].as_array_mut().into_iter().flatten() {
                let path = listed["path"].as_str().unwrap_or("").trim_end_matches('/');
                if let Some((_, len, sum)) = sizes.iter().find(|s| s.0 == path) {
                    if listed["type"] == "file" {
                        listed["size"] = json!(len);
                        if listed.get("sha256").is_some() {
                            listed["sha256"] = json!(sum);
                        }
                    }
                }
            }
        });
        let mut b = tar::Builder::new(std::fs::File::create(path).expect("create archive"));
        for (name, kind, mode, data) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            b.append_data(&mut h, name, &data[..]).expect("append");
        }
        b.finish().expect("finish archive");
    }
}

/// Gives the files of an image (name, bytes) their lengths and digests in
/// the inventory `inv`.
fn fix_inventory(inv: &mut Value, files: &[(String, Vec<u8>)]) {
    let mut refs: Vec<&mut Value> = Vec::new();
    for p in inv["processes"].as_array_mut().into_iter().flatten() {
        let p = p.as_object_mut().expect("process entry");
        for (k, v) in p.iter_mut() {
            if k == "record" || k == "pages" {
                refs.push(v);
            }
        }
    }
    // Two passes: the borrow of processes ends before extras.
    let fix = |r: &mut Value| {
        let name = r["name"].as_str().unwrap_or("").to_string();
        if let Some((_, bytes)) = files.iter().find(|f| f.0 == name) {
            r["len"] = json!(bytes.len());
            r["sha256"] = json!(godwit_checkpoint::digest::of(bytes));
        }
    };
    for r in refs {
        fix(r);
    }
    for r in inv["extras"].as_array_mut().into_iter().flatten() {
        fix(r);
    }
}

/// An image directory edited in place, its inventory made to match.
struct Image(PathBuf);

impl Image {
    fn read_json(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.0.join(name)).expect("image file"))
            .expect("JSON")
    }

    fn edit_json(&self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut v = self.read_json(name);
        f(&mut v);
        let bytes = serde_json::to_vec(&v).unwrap();
        std::fs::write(self.0.join(name), &bytes).unwrap();
        let mut inv = self.read_json("inventory.json");
        fix_inventory(&mut inv, &[(name.to_string(), bytes)]);
        std::fs::write(
            self.0.join("inventory.json"),
            serde_json::to_vec(&inv).unwrap(),
        )
        .unwrap();
    }

    /// Edits the record of every process of the image.
    fn edit_records(&self, f: impl Fn(&mut Value)) {
        let inv = self.read_json("inventory.json");
        for p in inv["processes"].as_array().expect("processes") {
            let name = p["record"]["name"].as_str().expect("record name");
            self.edit_json(name, &f);
        }
    }
}

/// A host file no restore may change.
struct Canary {
    dir: tempfile::TempDir,
}

const CANARY_TEXT: &str = "the host's own file\n";

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("godwit-canary-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("canary"), CANARY_TEXT).unwrap();
        Canary { dir }
    }

    fn assert_untouched(&self) {
        let p = self.dir.path().join("canary");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), CANARY_TEXT);
        let names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "nothing added beside the canary: {names:?}");
    }
}

/// Nothing in the state root but the stderr files of the harness.
fn assert_nothing_left(g: &Godwit) {
    assert_eq!(g.ok(&["list", "-q"]).trim(), "");
    let left: Vec<_> = std::fs::read_dir(g.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("stderr-"))
        .collect();
    assert!(left.is_empty(), "left in the state root: {left:?}");
}

/// A counter container (its bundle edited by `edit`) checkpointed once it
/// ticks; returns its bundle, the export and the image directory.
fn checkpointed(
    g: &Godwit,
    name: &str,
    edit: impl FnOnce(&mut Value),
) -> (Bundle, PathBuf, tempfile::TempDir) {
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    bundle.edit(edit);
    let id = g.id(name);
    g.start_detached_null(&bundle, &id);
    let count = bundle.rootfs().join("tmp/count");
    wait_for("counter ticks", T, || {
        last_count(&count).filter(|&n| n >= 3)
    });
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("ck.tar");
    let image = out.path().join("image");
    g.ok(&[
        "checkpoint",
        "--image-path",
        image.to_str().unwrap(),
        "--export",
        archive.to_str().unwrap(),
        &id,
    ]);
    (bundle, archive, out)
}

fn restore_fails(g: &Godwit, args: &[&str]) -> String {
    let mut all = vec!["restore", "--detach"];
    all.extend_from_slice(args);
    g.fails(&all)
}

#[test]
fn an_archive_spec_with_a_host_bind_and_no_netns_is_refused_against_the_bundle() {
    let a = Godwit::new();
    let canary = Canary::new();
    let (bundle, archive, out) = checkpointed(&a, "hbind", |_| {});
    let mut ar = Archive::read(&archive);
    ar.edit_spec(|s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/host", "type": "bind", "source": "/",
            "options": ["rbind", "rw"]
        }));
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
    });
    let evil = out.path().join("evil.tar");
    ar.write(&evil);
    let b = Godwit::new();
    let id = b.id("hbind-b");
    let err = restore_fails(
        &b,
        &[
            "--import",
            evil.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    );
    let err = err.replace('\\', "");
    assert!(
        err.contains(
            "refused: linux.namespaces (types) differs: the checkpoint's spec has \
                      {\"ipc\", \"mnt\", \"pid\", \"uts\"}, the destination's config.json has \
                      {\"ipc\", \"mnt\", \"net\", \"pid\", \"uts\"}"
        ),
        "{err}"
    );
    assert_nothing_left(&b);
    canary.assert_untouched();
}

#[test]
fn the_bundle_decides_mount_sources_and_namespaces() {
    let a = Godwit::new();
    let canary = Canary::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("marker"), "bundle's data\n").unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let (bundle, archive, out) = checkpointed(&a, "srcs", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": data_dir,
            "options": ["rbind", "ro"]
        }));
    });
    std::fs::create_dir_all(bundle.rootfs().join("data")).unwrap();
    // The archive's spec binds the canary's directory (rw) at /data instead.
    let canary_dir = canary.dir.path().to_str().unwrap().to_string();
    let mut ar = Archive::read(&archive);
    ar.edit_spec(|s| {
        for m in s["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/data" {
                m["source"] = json!(canary_dir);
                m["options"] = json!(["rbind", "rw"]);
            }
        }
    });
    let evil = out.path().join("evil.tar");
    ar.write(&evil);
    let b = Godwit::new();
    let id = b.id("srcs-b");
    b.ok_null(&[
        "restore",
        "--detach",
        "--import",
        evil.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let listing = b.ok(&["exec", &id, "ls", "/data"]);
    assert_eq!(
        listing.trim(),
        "marker",
        "the bundle's /data, not the archive's"
    );
    let pid = b.pid(&id);
    let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(netns, std::fs::read_link("/proc/self/ns/net").unwrap());
    let count = bundle.rootfs().join("tmp/count");
    let now = last_count(&count).unwrap();
    wait_for("the restored counter ticks", T, || {
        last_count(&count).filter(|&n| n > now + 2)
    });
    b.ok(&["delete", "--force", &id]);
    assert_nothing_left(&b);
    canary.assert_untouched();
}

/// A spec giving uid 1000, the default capabilities, no_new_privs and a
/// seccomp profile.
fn confined(c: &mut Value) {
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c["process"]["noNewPrivileges"] = json!(true);
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["kexec_load", "swapon", "open_by_handle_at"], "action": "SCMP_ACT_ERRNO"}]
    });
}

/// A confined counter checkpointed to an image whose records `edit`
/// changes; restoring it on its clean bundle is refused with `want`.
fn raised_creds_refused(name: &str, edit: impl Fn(&mut Value), want: &[&str]) {
    let a = Godwit::new();
    let canary = Canary::new();
    let (bundle, _archive, out) = checkpointed(&a, name, confined);
    let image = Image(out.path().join("image"));
    // The image as dumped restores (the check passes what the spec gave).
    let inv = image.read_json("inventory.json");
    let first = inv["processes"][0]["record"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let rec = image.read_json(&first);
    assert_eq!(
        rec["task"]["creds"]["uids"],
        json!([1000, 1000, 1000, 1000])
    );
    assert_eq!(rec["task"]["creds"]["no_new_privs"], json!(true));
    assert_eq!(rec["seccomp"]["filters"].as_array().unwrap().len(), 1);
    image.edit_records(edit);
    let b = Godwit::new();
    let id = b.id(&format!("{name}-b"));
    let err = restore_fails(
        &b,
        &[
            "--image-path",
            image.0.to_str().unwrap(),
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    );
    for w in want {
        assert!(err.contains(w), "wanted {w:?} in: {err}");
    }
    assert_nothing_left(&b);
    canary.assert_untouched();
}

#[test]
fn a_record_with_uid_0_under_spec_uid_1000_is_refused() {
    raised_creds_refused(
        "uid0",
        |r| r["task"]["creds"]["uids"] = json!([0, 0, 0, 0]),
        &["refused: process 1 of the image: uid is 0 (real), the destination's spec allows 1000"],
    );
}

#[test]
fn a_record_with_all_capabilities_is_refused() {
    let all = (1u64 << 41) - 1;
    raised_creds_refused(
        "allcaps",
        |r| {
            for set in ["cap_bnd", "cap_prm", "cap_eff", "cap_inh", "cap_amb"] {
                r["task"]["creds"][set] = json!(all);
            }
        },
        &[
            "refused: process 1 of the image: bounding capabilities is",
            "CAP_SYS_ADMIN",
        ],
    );
}

#[test]
fn a_record_without_no_new_privs_under_a_spec_with_it_is_refused() {
    raised_creds_refused(
        "nonnp",
        |r| r["task"]["creds"]["no_new_privs"] = json!(false),
        &["refused: process 1 of the image: no_new_privs is not set"],
    );
}

#[test]
fn a_record_with_its_seccomp_filter_removed_is_refused() {
    raised_creds_refused(
        "noseccomp",
        |r| r["seccomp"]["filters"] = json!([]),
        &["refused: process 1 of the image: seccomp filters is 0 filter(s), none of them the spec's"],
    );
}

#[test]
fn a_confined_container_restores_with_its_credentials_checked() {
    let a = Godwit::new();
    let (bundle, _archive, out) = checkpointed(&a, "confined", confined);
    let image = out.path().join("image");
    let id = a.id("confined-b");
    a.ok_null(&[
        "restore",
        "--detach",
        "--image-path",
        image.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let pid = a.pid(&id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("{k} in {status}"))
            .to_string()
    };
    assert!(
        field("Uid:")
            .split_whitespace()
            .skip(1)
            .all(|u| u == "1000"),
        "{status}"
    );
    assert_eq!(field("NoNewPrivs:").split_whitespace().nth(1), Some("1"));
    assert_eq!(field("Seccomp:").split_whitespace().nth(1), Some("2"));
    let count = bundle.rootfs().join("tmp/count");
    let now = last_count(&count).unwrap();
    wait_for("the restored counter ticks", T, || {
        last_count(&count).filter(|&n| n > now + 2)
    });
}

/// The hostile archive of the first test, restored without `--bundle`: the
/// archive's spec is all there is, and the policy refuses the host bind.
#[test]
fn a_host_bind_in_the_archive_spec_is_refused_without_a_bundle() {
    let a = Godwit::new();
    let canary = Canary::new();
    let (_bundle, archive, out) = checkpointed(&a, "nobundle", |_| {});
    let mut ar = Archive::read(&archive);
    ar.edit_spec(|s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/host", "type": "bind", "source": "/",
            "options": ["rbind", "rw"]
        }));
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
    });
    let evil = out.path().join("evil.tar");
    ar.write(&evil);
    let b = Godwit::new();
    let id = b.id("nobundle-b");
    let err = restore_fails(
        &b,
        &[
            "--import",
            evil.to_str().unwrap(),
            "--rootfs-base-dir",
            "/tmp",
            &id,
        ],
    );
    assert!(
        err.contains("refused: the archive's spec mounts[")
            && err.contains("(/host): binds host path / (outside the recorded rootfs base"),
        "{err}"
    );
    assert_nothing_left(&b);
    canary.assert_untouched();
    // Without the host bind, the missing network namespace is refused too.
    let mut ar = Archive::read(&evil);
    ar.edit_spec(|s| {
        s["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/host");
    });
    ar.write(&evil);
    let err = restore_fails(
        &b,
        &[
            "--import",
            evil.to_str().unwrap(),
            "--rootfs-base-dir",
            "/tmp",
            &id,
        ],
    );
    assert!(
        err.contains("refused: the archive's spec linux.namespaces: has no net namespace"),
        "{err}"
    );
    assert_nothing_left(&b);
    canary.assert_untouched();
}

/// A good archive whose config.dump records `base` as its rootfs base,
/// restored without `--bundle` by `godwit` with `extra` arguments (and
/// `env`): refused with `want`.
fn base_refused(name: &str, base: &str, extra: &[&str], env: Option<&str>, want: &str) {
    let a = Godwit::new();
    let canary = Canary::new();
    let (_bundle, archive, out) = checkpointed(&a, name, |_| {});
    let mut ar = Archive::read(&archive);
    ar.edit_json("config.dump", |c| {
        c["rootfs_base"] = json!({"kind": "directory", "path": base});
    });
    let evil = out.path().join("evil.tar");
    ar.write(&evil);
    let b = Godwit::new();
    let id = b.id(&format!("{name}-b"));
    let mut cmd = b.cmd();
    cmd.args(["restore", "--detach", "--import", evil.to_str().unwrap()])
        .args(extra)
        .arg(&id)
        .stdin(std::process::Stdio::null());
    match env {
        Some(v) => cmd.env("GODWIT_ROOTFS_BASE_DIRS", v),
        None => cmd.env_remove("GODWIT_ROOTFS_BASE_DIRS"),
    };
    let res = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success(), "{name}: restored");
    assert!(err.contains(want), "{name}: wanted {want:?} in: {err}");
    assert_nothing_left(&b);
    canary.assert_untouched();
}

#[test]
fn a_rootfs_base_of_proc_self_root_is_refused() {
    base_refused(
        "procroot",
        "/proc/self/root",
        &["--rootfs-base-dir", "/tmp"],
        None,
        "refused: the archive's rootfs base: /proc/self/root is the host's root or in /proc, /sys or /dev: never a rootfs base",
    );
}

#[test]
fn a_rootfs_base_outside_the_allowed_directories_is_refused() {
    let allowed = tempfile::tempdir().unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(host_dir.path().join("bin")).unwrap();
    let host = host_dir.path().to_str().unwrap();
    let allowed_dir = allowed.path().to_str().unwrap();
    base_refused(
        "hostdir",
        host,
        &[],
        Some(allowed_dir),
        &format!("refused: the archive's rootfs base: {host} is not under a directory this host allows rootfs bases in ({allowed_dir};"),
    );
    // None allowed at all: the error says what to give.
    base_refused(
        "hostdir-none",
        host,
        &[],
        None,
        "(none is configured): give --bundle DIR with a copy of the container's bundle, or allow the image store with --rootfs-base-dir DIR",
    );
    // A symlink in the allowed directory that leads out of it.
    let link = allowed.path().join("layer");
    std::os::unix::fs::symlink(host_dir.path(), &link).unwrap();
    base_refused(
        "hostdir-link",
        link.to_str().unwrap(),
        &["--rootfs-base-dir", allowed_dir],
        None,
        &format!(
            "refused: the archive's rootfs base: {} leads to {host} is not under",
            link.display()
        ),
    );
}

#[test]
fn a_record_with_a_raised_hard_rlimit_is_refused() {
    raised_creds_refused(
        "rlimit",
        |r| {
            for l in r["task"]["rlimits"].as_array_mut().unwrap() {
                if l["resource"] == 7 {
                    l["max"] = json!(1u64 << 20);
                    l["cur"] = json!(1u64 << 20);
                }
            }
        },
        &["refused: process 1 of the image: rlimit hard limit is RLIMIT_NOFILE = 1048576, the destination's spec allows 1024"],
    );
}
