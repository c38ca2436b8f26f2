//! Images edited as an attacker would, their digests recomputed so that only
//! the checks on what they say can refuse them: paths through /proc magic
//! links, special files where a mapped file was, pids and lengths out of
//! bounds. Each is refused with a message naming what it is about, and
//! (where the check needs no process) before the stub is touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, RestoreOptions};
use godwit_test_support::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A counter dumped (left running) into a fresh image.
fn dumped(tmp: &Path) -> (Child, PathBuf) {
    let out = tmp.join("out");
    let w = spawn_in_ns(&workload("counter"), &["10", out.to_str().unwrap()], tmp);
    wait_for(&out, "lines", T, |l| l.len() >= 2);
    let img = tmp.join("img");
    let opts = DumpOptions {
        leave_running: true,
        ..Default::default()
    };
    dump(&[w.pid], &img, &opts).expect("dump");
    (w, img)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn edit_inventory(img: &Path, f: impl FnOnce(&mut Value)) {
    let p = img.join("inventory.json");
    let mut v = read_json(&p);
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Edits the record of the image's first process and gives the inventory
/// its new length and digest, as a forger would.
fn edit_record(img: &Path, f: impl FnOnce(&mut Value)) {
    let inv = read_json(&img.join("inventory.json"));
    let name = inv["processes"][0]["record"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let p = img.join(&name);
    let mut v = read_json(&p);
    f(&mut v);
    let bytes = serde_json::to_vec(&v).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    edit_inventory(img, |inv| {
        inv["processes"][0]["record"]["len"] = json!(bytes.len());
        inv["processes"][0]["record"]["sha256"] = json!(godwit_checkpoint::digest::of(&bytes));
    });
}

/// A copy of the good image to edit.
fn copy_of(img: &Path, tmp: &Path, name: &str) -> PathBuf {
    let dst = tmp.join(name);
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(img).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

/// Refused before the stub was touched (it is still stopped).
fn refused_early(img: &Path, what: &str) -> String {
    let stub = Stub::spawn().unwrap();
    let err = restore(img, stub.pid, &RestoreOptions::default()).expect_err(what);
    let s = std::fs::read_to_string(format!("/proc/{}/stat", stub.pid)).unwrap();
    assert!(s.contains(") T "), "{what}: stub was touched: {s}");
    err.to_string()
}

/// Refused at all (the stub may have been used and killed).
fn refused(img: &Path, what: &str) -> String {
    let stub = Stub::spawn().unwrap();
    restore(img, stub.pid, &RestoreOptions::default())
        .expect_err(what)
        .to_string()
}

fn first_file_vma(rec: &mut Value) -> &mut Value {
    rec["memory"]["vmas"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|v| v["kind"].get("File").is_some())
        .expect("a file mapping")
}

#[test]
fn paths_through_proc_magic_links_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, img) = dumped(tmp.path());
    let host_exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe_before = std::fs::read(&host_exe).unwrap();

    // The executable: /proc/self/exe would be the restorer's own binary.
    let bad = copy_of(&img, tmp.path(), "exe");
    edit_record(&bad, |r| r["memory"]["mm"]["exe"] = json!("/proc/self/exe"));
    let e = refused_early(&bad, "exe through /proc/self");
    assert!(
        e.contains("executable \"/proc/self/exe\"") && e.contains("magic link"),
        "{e}"
    );

    // A mapped file and the working directory, the same way.
    let bad = copy_of(&img, tmp.path(), "map");
    edit_record(&bad, |r| {
        first_file_vma(r)["kind"]["File"]["path"] = json!("/proc/self/exe")
    });
    let e = refused_early(&bad, "mapping through /proc/self");
    assert!(
        e.contains("mapped file \"/proc/self/exe\"") && e.contains("magic link"),
        "{e}"
    );
    let bad = copy_of(&img, tmp.path(), "cwd");
    edit_record(&bad, |r| r["task"]["cwd"] = json!("/proc/self/root"));
    let e = refused_early(&bad, "cwd through /proc/self/root");
    assert!(
        e.contains("working directory \"/proc/self/root\"") && e.contains("magic link"),
        "{e}"
    );

    // An open file through /proc is only opened in the restored
    // namespaces: refused there by the in-root open.
    let bad = copy_of(&img, tmp.path(), "fd");
    edit_record(&bad, |r| {
        r["files"]["fds"].as_array_mut().unwrap().push(json!({
            "fd": 9, "ofd": 0, "flags": 2, "cloexec": false,
            "kind": {"Path": {"path": "/proc/self/exe", "pos": 0}}
        }))
    });
    let e = refused(&bad, "fd through /proc/self");
    assert!(
        e.contains("open file (fd 9) \"/proc/self/exe\"") && e.contains("magic link"),
        "{e}"
    );
    // Relative paths are refused by shape.
    let bad = copy_of(&img, tmp.path(), "rel");
    edit_record(&bad, |r| r["memory"]["mm"]["exe"] = json!("proc/self/exe"));
    let e = refused_early(&bad, "relative exe");
    assert!(e.contains("not an absolute path"), "{e}");

    // The host binary is what it was (the fd above asked for O_RDWR).
    assert_eq!(std::fs::read(&host_exe).unwrap(), exe_before);
}

#[test]
fn special_files_where_a_mapped_file_was_are_refused_without_reading_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, img) = dumped(tmp.path());
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, kind) in [
        ("/dev/zero".to_string(), "a character device"),
        (fifo.to_str().unwrap().to_string(), "a FIFO"),
        ("/".to_string(), "a directory"),
    ] {
        let bad = copy_of(&img, tmp.path(), &format!("special{}", kind.len()));
        edit_record(&bad, |r| {
            let v = first_file_vma(r);
            v["kind"]["File"]["path"] = json!(path);
            v["kind"]["File"]["size"] = json!(1u64 << 40);
        });
        // Would read /dev/zero for ever, or wait on the FIFO for a writer.
        let e = refused_early(&bad, kind);
        assert!(
            e.contains(&format!("mapped file {path:?}")) && e.contains(kind),
            "{e}"
        );
    }
}

#[test]
fn pids_counts_and_lengths_out_of_bounds_are_refused_before_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, img) = dumped(tmp.path());

    // A child with pid 0 (its parent list looped allocating).
    let bad = copy_of(&img, tmp.path(), "pid0");
    edit_inventory(&bad, |inv| {
        let mut child = inv["processes"][0].clone();
        child["pid"] = json!(0);
        child["ppid"] = json!(1);
        child["tids"] = json!([0]);
        inv["processes"].as_array_mut().unwrap().push(child);
    });
    let e = refused_early(&bad, "pid 0");
    assert!(e.contains("processes[1].pid: 0 is not a pid"), "{e}");

    // Two processes each the other's parent.
    let bad = copy_of(&img, tmp.path(), "cycle");
    edit_inventory(&bad, |inv| {
        let procs = inv["processes"].as_array_mut().unwrap();
        let mut a = procs[0].clone();
        let mut b = procs[0].clone();
        (a["pid"], a["ppid"], a["tids"]) = (json!(5), json!(6), json!([5]));
        (b["pid"], b["ppid"], b["tids"]) = (json!(6), json!(5), json!([6]));
        procs.push(a);
        procs.push(b);
    });
    let e = refused_early(&bad, "cycle");
    assert!(e.contains("parent cycle"), "{e}");

    // A pages file said to be 2^50 bytes, plain and compressed.
    for zstd in [false, true] {
        let bad = copy_of(&img, tmp.path(), &format!("huge{zstd}"));
        edit_inventory(&bad, |inv| {
            inv["processes"][0]["pages"]["len"] = json!(1u64 << 50);
            inv["processes"][0]["pages_zstd"] = json!(zstd);
        });
        let e = refused_early(&bad, "2^50 pages");
        assert!(e.contains("1125899906842624"), "{e}");
    }

    // A page run of 2^50 pages, an fd number past NR_OPEN, a huge auxv.
    let bad = copy_of(&img, tmp.path(), "run");
    edit_record(&bad, |r| {
        r["memory"]["runs"][0]["pages"] = json!(1u64 << 50)
    });
    let e = refused_early(&bad, "huge run");
    assert!(e.contains("field memory.runs"), "{e}");
    let bad = copy_of(&img, tmp.path(), "fdnum");
    edit_record(&bad, |r| r["files"]["fds"][0]["fd"] = json!(1 << 30));
    let e = refused_early(&bad, "fd 2^30");
    assert!(e.contains("fd 1073741824 is out of"), "{e}");
    let bad = copy_of(&img, tmp.path(), "auxv");
    edit_record(&bad, |r| {
        r["memory"]["mm"]["auxv"] = json!(vec![0u64; 100_000])
    });
    let e = refused_early(&bad, "auxv");
    assert!(e.contains("field memory.mm.auxv"), "{e}");

    // A record whose digest does not match (edited without recomputing).
    let bad = copy_of(&img, tmp.path(), "digest");
    let rec = bad.join("process-1.json");
    let r = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(&rec, r.replacen("\"umask\":", "\"umask\": ", 1)).unwrap();
    edit_inventory(&bad, |inv| {
        inv["processes"][0]["record"]["len"] = json!(r.len() + 1)
    });
    let e = refused_early(&bad, "edited record");
    assert!(e.contains("SHA-256") && e.contains("process-1.json"), "{e}");
}
