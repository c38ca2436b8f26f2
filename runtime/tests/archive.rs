//! The checkpoint archive: export → import round trips (plain and zstd), and
//! every kind of bad archive refused before anything is extracted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use godwit_runtime::archive::{
    self, ArchiveConfig, ArchiveContents, ArchiveError, ImportLimits, FORMAT_MAJOR,
};
use tempfile::TempDir;

const PAGES_LEN: usize = 5 * 1024 * 1024 + 123;

/// Deterministic, poorly compressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Fixture {
    tmp: TempDir,
    contents: ArchiveContents,
}

impl Fixture {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let image = tmp.path().join("image");
        fs::create_dir(&image).unwrap();
        fs::write(
            image.join("inventory.json"),
            br#"{"format":{"major":1,"minor":0}}"#,
        )
        .unwrap();
        fs::write(image.join("process-1.json"), br#"{"pid":1}"#).unwrap();
        fs::write(image.join("pages-1.img"), noise(PAGES_LEN, 7)).unwrap();
        fs::write(image.join("empty.img"), b"").unwrap();
        fs::create_dir(image.join("sub")).unwrap();
        fs::write(image.join("sub/nested.json"), b"{}").unwrap();

        // A rootfs diff, as a tar the caller built.
        let diff = tmp.path().join("diff.tar");
        let mut b = tar::Builder::new(fs::File::create(&diff).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
        b.into_inner().unwrap();

        let mut config = ArchiveConfig::new("c1");
        config
            .annotations
            .insert("org.example/a".into(), "b".into());
        let contents = ArchiveContents {
            image_dir: image,
            spec_dump: br#"{"ociVersion":"1.0.2","process":{"args":["sh"]}}"#.to_vec(),
            config,
            rootfs_diff: Some(diff),
            deleted_files: vec!["/etc/issue".into(), "var/log/x".into()],
            stats: serde_json::json!({"freeze_us": 12, "pages_written": 1281}),
        };
        Fixture { tmp, contents }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// The error and all its causes, as the CLI prints it.
fn text(e: &ArchiveError) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn round_trip(name: &str, compressed: bool) {
    let fx = Fixture::new();
    let file = fx.path(name);
    archive::export(&fx.contents, &file).unwrap();
    assert_eq!(mode(&file), 0o600);
    // Nothing left behind but the archive.
    let leftovers: Vec<_> = fs::read_dir(fx.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let size = fs::metadata(&file).unwrap().len();
    if compressed {
        assert!(fs::read(&file)
            .unwrap()
            .starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
    } else {
        assert!(size > PAGES_LEN as u64);
    }

    let dest = fx.path("out/imported");
    let imp = archive::import(&file, &dest, &ImportLimits::default()).unwrap();
    assert_eq!(imp.compressed, compressed);
    assert_eq!(imp.dir, dest);
    assert_eq!(mode(&dest), 0o700);
    assert_eq!(imp.config, fx.contents.config);
    assert_eq!(imp.deleted_files, fx.contents.deleted_files);
    assert_eq!(imp.stats, fx.contents.stats);
    assert_eq!(fs::read(&imp.spec_dump).unwrap(), fx.contents.spec_dump);
    assert_eq!(
        fs::read(imp.rootfs_diff.as_ref().unwrap()).unwrap(),
        fs::read(fx.contents.rootfs_diff.as_ref().unwrap()).unwrap()
    );
    for f in [
        "inventory.json",
        "process-1.json",
        "pages-1.img",
        "empty.img",
        "sub/nested.json",
    ] {
        let got = imp.image_dir.join(f);
        assert_eq!(
            fs::read(&got).unwrap(),
            fs::read(fx.contents.image_dir.join(f)).unwrap(),
            "{f}"
        );
        assert_eq!(mode(&got), 0o600, "{f}");
    }
    for d in [imp.image_dir.clone(), imp.image_dir.join("sub")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in [
        "config.dump",
        "spec.dump",
        "deleted.files",
        "stats-dump",
        "rootfs-diff.tar",
    ] {
        assert_eq!(mode(&dest.join(f)), 0o600, "{f}");
    }
    // Exactly what was exported, nothing more.
    let mut top: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "checkpoint",
            "config.dump",
            "deleted.files",
            "rootfs-diff.tar",
            "spec.dump",
            "stats-dump"
        ]
    );
}

#[test]
fn round_trip_tar() {
    round_trip("ck.tar", false);
}

#[test]
fn round_trip_tar_zst() {
    round_trip("ck.tar.zst", true);
}

#[test]
fn compression_is_detected_by_content_not_name() {
    let fx = Fixture::new();
    let zst = fx.path("a.tar.zst");
    archive::export(&fx.contents, &zst).unwrap();
    let renamed = fx.path("misleading.tar");
    fs::rename(&zst, &renamed).unwrap();
    let imp = archive::import(&renamed, &fx.path("out"), &ImportLimits::default()).unwrap();
    assert!(imp.compressed);
}

#[test]
fn export_replaces_an_existing_file_and_needs_no_rootfs_diff() {
    let mut fx = Fixture::new();
    fx.contents.rootfs_diff = None;
    let file = fx.path("ck.tar");
    fs::write(&file, b"old").unwrap();
    archive::export(&fx.contents, &file).unwrap();
    let imp = archive::import(&file, &fx.path("out"), &ImportLimits::default()).unwrap();
    assert!(imp.rootfs_diff.is_none());
    assert!(!fx.path("out/rootfs-diff.tar").exists());
}

#[test]
fn export_refuses_a_symlink_in_the_image() {
    let fx = Fixture::new();
    std::os::unix::fs::symlink("/etc/passwd", fx.contents.image_dir.join("link")).unwrap();
    let file = fx.path("ck.tar");
    let err = archive::export(&fx.contents, &file).unwrap_err();
    assert!(text(&err).contains("link"), "{}", text(&err));
    assert!(!file.exists());
    assert_eq!(
        fs::read_dir(fx.tmp.path()).unwrap().count(),
        2,
        "temp file left"
    );
}

#[test]
fn import_into_an_existing_empty_dir_but_not_a_full_one() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    let empty = fx.path("empty");
    fs::create_dir(&empty).unwrap();
    archive::import(&file, &empty, &ImportLimits::default()).unwrap();
    assert_eq!(mode(&empty), 0o700);

    let full = fx.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    let err = archive::import(&file, &full, &ImportLimits::default()).unwrap_err();
    assert!(text(&err).contains("not empty"), "{}", text(&err));
    assert_eq!(fs::read(full.join("x")).unwrap(), b"x");
}

/// Imports `file` expecting a refusal whose text contains every one of `want`,
/// and that nothing was created.
fn refused(file: &Path, want: &[&str]) -> String {
    refused_with(file, want, &ImportLimits::default())
}

fn refused_with(file: &Path, want: &[&str], limits: &ImportLimits) -> String {
    let dest = file.with_extension("dest");
    let err = archive::import(file, &dest, limits).expect_err("import must refuse");
    let msg = text(&err);
    assert!(
        msg.contains(&file.display().to_string()),
        "names no archive: {msg}"
    );
    for w in want {
        assert!(msg.contains(w), "{w:?} not in: {msg}");
    }
    assert!(!dest.exists(), "{} was created: {msg}", dest.display());
    eprintln!("refused as expected: {msg}");
    msg
}

#[test]
fn refuses_random_bytes() {
    let fx = Fixture::new();
    let file = fx.path("random.tar");
    fs::write(&file, noise(100_000, 3)).unwrap();
    refused(&file, &["not a godwit checkpoint archive"]);
    let empty = fx.path("empty.tar");
    fs::write(&empty, b"").unwrap();
    refused(&empty, &["empty"]);
}

#[test]
fn refuses_a_corrupt_zst() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar.zst");
    archive::export(&fx.contents, &file).unwrap();
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    fs::write(&file, bytes).unwrap();
    refused(&file, &["corrupt"]);
}

#[test]
fn refuses_a_truncated_tar() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    let bytes = fs::read(&file).unwrap();
    // Cut mid-block, and cut on a block boundary inside the pages' data.
    fs::write(&file, &bytes[..bytes.len() / 2 + 100]).unwrap();
    refused(&file, &["cut short"]);
    fs::write(&file, &bytes[..(bytes.len() / 2) & !511]).unwrap();
    refused(&file, &["pages-1.img", "truncated"]);
}

#[test]
fn refuses_a_tar_cut_between_entries() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    let bytes = fs::read(&file).unwrap();
    // Find where rootfs-diff.tar's header starts, and cut there: every
    // remaining entry is whole, so only config.dump's list notices.
    let mut ar = tar::Archive::new(&bytes[..]);
    let cut = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"rootfs-diff.tar")
        .unwrap()
        .raw_header_position() as usize;
    fs::write(&file, &bytes[..cut]).unwrap();
    refused(&file, &["rootfs-diff.tar", "does not hold it"]);
}

#[test]
fn refuses_a_truncated_zst() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar.zst");
    archive::export(&fx.contents, &file).unwrap();
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    refused(&file, &["truncated or corrupt"]);
    // Cut just before the end: every entry is there but the frame is not whole.
    fs::write(&file, &bytes[..bytes.len() - 4]).unwrap();
    refused(&file, &["zstd"]);
}

#[test]
fn refuses_a_newer_format() {
    let mut fx = Fixture::new();
    fx.contents.config.format.major = FORMAT_MAJOR + 1;
    fx.contents.config.format.minor = 3;
    let file = fx.path("ck.tar.zst");
    archive::export(&fx.contents, &file).unwrap();
    let msg = refused(
        &file,
        &[
            &format!("format {}.3", FORMAT_MAJOR + 1),
            &format!("reads format {FORMAT_MAJOR}.x"),
        ],
    );
    assert!(msg.contains("import it with a godwit release"), "{msg}");
}

#[test]
fn refuses_a_foreign_architecture() {
    let mut fx = Fixture::new();
    let other = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    fx.contents.config.arch = other.into();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    refused(
        &file,
        &[
            &format!("taken on architecture {other}"),
            &format!("this host is {}", std::env::consts::ARCH),
            "config.dump",
        ],
    );
}

#[test]
fn refuses_entries_over_the_limits() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    let limits = ImportLimits {
        max_entry_size: 1 << 20,
        ..ImportLimits::default()
    };
    refused_with(&file, &["pages-1.img", "over the import limit"], &limits);
    let limits = ImportLimits {
        max_total_size: 1 << 20,
        ..ImportLimits::default()
    };
    refused_with(&file, &["total", "over the import limit"], &limits);
    let limits = ImportLimits {
        max_entries: 3,
        ..ImportLimits::default()
    };
    refused_with(&file, &["more than 3 entries"], &limits);
}

// Hand-made archives ---------------------------------------------------------

/// One raw tar entry. The name goes straight into the header's bytes, since
/// the tar crate's set_path refuses `..` and absolute paths.
fn raw_entry(
    out: &mut Vec<u8>,
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    data: &[u8],
    claimed_size: u64,
) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o600);
    h.set_size(claimed_size);
    h.set_mtime(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// A valid config.dump (so the refusal must come from the entry under test),
/// then `evil`, then the end of the archive.
fn with_config(evil: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    with_listing(serde_json::json!([]), evil)
}

/// A config.dump listing a file `path` of `size` bytes whose content is `data`.
fn listed(path: &str, size: u64, data: &[u8]) -> serde_json::Value {
    serde_json::json!({"path": path, "type": "file", "size": size,
        "sha256": godwit_checkpoint::digest::of(data)})
}

/// [`with_config`], config.dump listing `entries`.
fn with_listing(entries: serde_json::Value, evil: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut cfg = serde_json::to_value(ArchiveConfig::new("c1")).unwrap();
    cfg["entries"] = entries;
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let mut out = Vec::new();
    raw_entry(
        &mut out,
        b"config.dump",
        tar::EntryType::Regular,
        b"",
        &cfg,
        cfg.len() as u64,
    );
    evil(&mut out);
    out.extend_from_slice(&[0; 1024]);
    out
}

fn write_both(fx: &Fixture, stem: &str, bytes: &[u8]) -> [PathBuf; 2] {
    let plain = fx.path(&format!("{stem}.tar"));
    fs::write(&plain, bytes).unwrap();
    let zst = fx.path(&format!("{stem}.tar.zst"));
    let mut f = fs::File::create(&zst).unwrap();
    f.write_all(&zstd::encode_all(bytes, 3).unwrap()).unwrap();
    [plain, zst]
}

#[test]
fn refuses_an_absolute_path() {
    let fx = Fixture::new();
    let bytes =
        with_config(|o| raw_entry(o, b"/etc/passwd", tar::EntryType::Regular, b"", b"x", 1));
    for f in write_both(&fx, "abs", &bytes) {
        refused(&f, &["/etc/passwd", "absolute"]);
    }
}

#[test]
fn refuses_dot_dot() {
    let fx = Fixture::new();
    let bytes = with_config(|o| {
        raw_entry(
            o,
            b"checkpoint/../../evil",
            tar::EntryType::Regular,
            b"",
            b"x",
            1,
        )
    });
    for f in write_both(&fx, "dotdot", &bytes) {
        refused(&f, &["checkpoint/../../evil", "`..`"]);
    }
    assert!(!fx.tmp.path().parent().unwrap().join("evil").exists());
}

#[test]
fn refuses_a_symlink() {
    let fx = Fixture::new();
    let list = serde_json::json!([listed("checkpoint/pages-1.img", 10 << 20, b"")]);
    let bytes = with_listing(list, |o| {
        raw_entry(
            o,
            b"checkpoint/pages-1.img",
            tar::EntryType::Symlink,
            b"../../../../etc/shadow",
            b"",
            0,
        )
    });
    for f in write_both(&fx, "symlink", &bytes) {
        refused(
            &f,
            &["checkpoint/pages-1.img", "symbolic link", "etc/shadow"],
        );
    }
}

#[test]
fn refuses_a_hardlink() {
    let fx = Fixture::new();
    let bytes = with_config(|o| {
        raw_entry(
            o,
            b"spec.dump",
            tar::EntryType::Link,
            b"/etc/shadow",
            b"",
            0,
        )
    });
    for f in write_both(&fx, "hardlink", &bytes) {
        refused(&f, &["spec.dump", "hard link"]);
    }
}

#[test]
fn refuses_devices_and_fifos() {
    let fx = Fixture::new();
    for (stem, kind, what) in [
        ("char", tar::EntryType::Char, "device"),
        ("fifo", tar::EntryType::Fifo, "fifo"),
    ] {
        let bytes = with_config(|o| raw_entry(o, b"checkpoint/x", kind, b"", b"", 0));
        for f in write_both(&fx, stem, &bytes) {
            refused(&f, &["checkpoint/x", what]);
        }
    }
}

#[test]
fn refuses_a_lying_size() {
    let fx = Fixture::new();
    // The header claims 10 MiB; the archive holds 1 KiB of it.
    let list = serde_json::json!([listed("checkpoint/pages-1.img", 10 << 20, b"")]);
    let bytes = with_listing(list, |o| {
        raw_entry(
            o,
            b"checkpoint/pages-1.img",
            tar::EntryType::Regular,
            b"",
            &[7; 1024],
            10 << 20,
        )
    });
    for f in write_both(&fx, "liar", &bytes) {
        refused(&f, &["checkpoint/pages-1.img", "lying header"]);
    }
}

#[test]
fn refuses_an_unknown_top_level_entry() {
    let fx = Fixture::new();
    let bytes = with_config(|o| {
        raw_entry(
            o,
            b"run.sh",
            tar::EntryType::Regular,
            b"",
            b"#!/bin/sh\n",
            10,
        )
    });
    for f in write_both(&fx, "unknown", &bytes) {
        refused(&f, &["run.sh", "unknown top-level name"]);
    }
}

#[test]
fn refuses_an_archive_without_config_dump() {
    let fx = Fixture::new();
    let mut bytes = Vec::new();
    raw_entry(
        &mut bytes,
        b"spec.dump",
        tar::EntryType::Regular,
        b"",
        b"{}",
        2,
    );
    bytes.extend_from_slice(&[0; 1024]);
    for f in write_both(&fx, "noconfig", &bytes) {
        refused(&f, &["spec.dump", "the first entry must be config.dump"]);
    }
}

#[test]
fn refuses_an_entry_added_after_export() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    // Drop the end-of-archive blocks and append a well-formed, known-named
    // entry that config.dump does not list.
    let mut bytes = fs::read(&file).unwrap();
    let end = {
        let mut ar = tar::Archive::new(&bytes[..]);
        let last = ar.entries().unwrap().map(|e| e.unwrap()).last().unwrap();
        (last.raw_file_position() + last.size()).next_multiple_of(512) as usize
    };
    bytes.truncate(end);
    raw_entry(
        &mut bytes,
        b"checkpoint/extra.img",
        tar::EntryType::Regular,
        b"",
        b"x",
        1,
    );
    bytes.extend_from_slice(&[0; 1024]);
    fs::write(&file, &bytes).unwrap();
    refused(&file, &["checkpoint/extra.img", "does not list it"]);
}

/// A PAX extended header (`x`) for the entry after it.
fn pax(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = format!("{key}={value}\n");
    let mut n = body.len() + 2;
    let record = loop {
        let r = format!("{n} {body}");
        if r.len() == n {
            break r;
        }
        n = r.len();
    };
    raw_entry(
        out,
        b"PaxHeaders/x",
        tar::EntryType::XHeader,
        b"",
        record.as_bytes(),
        record.len() as u64,
    );
}

#[test]
fn refuses_dot_dot_hidden_in_a_pax_path() {
    let fx = Fixture::new();
    let bytes = with_config(|o| {
        pax(o, "path", "checkpoint/../../../evil");
        raw_entry(o, b"checkpoint/ok", tar::EntryType::Regular, b"", b"x", 1);
    });
    for f in write_both(&fx, "pax", &bytes) {
        refused(&f, &["checkpoint/../../../evil", "`..`"]);
    }
}

#[test]
fn refuses_dot_dot_hidden_in_a_gnu_long_name() {
    let fx = Fixture::new();
    let mut long = b"checkpoint/".to_vec();
    long.extend(std::iter::repeat_n(b'a', 120));
    long.extend_from_slice(b"/../../../evil\0");
    let bytes = with_config(|o| {
        raw_entry(
            o,
            b"././@LongLink",
            tar::EntryType::GNULongName,
            b"",
            &long,
            long.len() as u64,
        );
        raw_entry(o, b"checkpoint/ok", tar::EntryType::Regular, b"", b"x", 1);
    });
    for f in write_both(&fx, "longname", &bytes) {
        refused(&f, &["/../../../evil", "`..`"]);
    }
}

#[test]
fn refuses_duplicates_and_files_used_as_directories() {
    let fx = Fixture::new();
    let list = serde_json::json!([listed("spec.dump", 2, b"{}")]);
    let bytes = with_listing(list, |o| {
        raw_entry(o, b"spec.dump", tar::EntryType::Regular, b"", b"{}", 2);
        raw_entry(o, b"spec.dump", tar::EntryType::Regular, b"", b"{}", 2);
    });
    for f in write_both(&fx, "dup", &bytes) {
        refused(&f, &["spec.dump", "twice"]);
    }
    let list = serde_json::json!([listed("checkpoint/a", 1, b"x")]);
    let bytes = with_listing(list, |o| {
        raw_entry(o, b"checkpoint/a", tar::EntryType::Regular, b"", b"x", 1);
        raw_entry(o, b"checkpoint/a/b", tar::EntryType::Regular, b"", b"x", 1);
    });
    for f in write_both(&fx, "parent", &bytes) {
        refused(
            &f,
            &["checkpoint/a/b", "parent checkpoint/a is a regular file"],
        );
    }
}

#[test]
fn refuses_a_symlinked_destination() {
    let fx = Fixture::new();
    let file = fx.path("ck.tar");
    archive::export(&fx.contents, &file).unwrap();
    let target = fx.path("elsewhere");
    fs::create_dir(&target).unwrap();
    let link = fx.path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = archive::import(&file, &link, &ImportLimits::default()).unwrap_err();
    assert!(text(&err).contains("symbolic link"), "{}", text(&err));
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
}

// Signatures and digests ------------------------------------------------------

fn key_pair(fx: &Fixture, name: &str) -> (ed25519_dalek::SigningKey, ed25519_dalek::VerifyingKey) {
    let private = fx.path(name);
    let public = godwit_runtime::signing::write_key_pair(&private).unwrap();
    (
        godwit_runtime::signing::load_signing_key(&private).unwrap(),
        godwit_runtime::signing::load_verifying_key(&public).unwrap(),
    )
}

fn trust(key: Option<&ed25519_dalek::VerifyingKey>, require: bool) -> archive::Trust {
    archive::Trust {
        verify_key: key.cloned(),
        require_signature: require,
    }
}

/// The archive's entries as (raw header+data bytes range, name).
fn entry_spans(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let mut ar = tar::Archive::new(bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let data = e.raw_file_position() as usize;
            let end = (data + e.size() as usize).next_multiple_of(512);
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.raw_header_position() as usize,
                end,
            )
        })
        .collect()
}

fn import_with(file: &Path, t: &archive::Trust) -> Result<archive::Imported, String> {
    let dest = file.with_extension("dest");
    let _ = fs::remove_dir_all(&dest);
    let r = archive::import_trusted(file, &dest, &ImportLimits::default(), t).map_err(|e| text(&e));
    if r.is_err() {
        assert!(
            !dest.exists(),
            "a refused import leaves no {}",
            dest.display()
        );
    } else {
        fs::remove_dir_all(&dest).unwrap();
    }
    r
}

#[test]
fn a_signed_archive_verifies_and_an_unsigned_one_is_named() {
    let fx = Fixture::new();
    let (sk, vk) = key_pair(&fx, "sign.pem");
    let signed = fx.path("signed.tar.zst");
    archive::export_signed(&fx.contents, &signed, Some(&sk)).unwrap();
    let got = import_with(&signed, &trust(Some(&vk), true)).unwrap();
    assert!(matches!(
        got.signature,
        archive::SignatureStatus::Verified { .. }
    ));
    // Signed, no key: imported, and said to be unchecked.
    let got = import_with(&signed, &trust(None, false)).unwrap();
    assert!(matches!(
        got.signature,
        archive::SignatureStatus::NotChecked { .. }
    ));

    let unsigned = fx.path("unsigned.tar");
    archive::export(&fx.contents, &unsigned).unwrap();
    assert_eq!(
        import_with(&unsigned, &trust(None, false))
            .unwrap()
            .signature,
        archive::SignatureStatus::Unsigned
    );
    let e = import_with(&unsigned, &trust(Some(&vk), false)).unwrap_err();
    assert!(e.contains("not signed"), "{e}");
    let e = import_with(&unsigned, &trust(None, true)).unwrap_err();
    assert!(e.contains("no verify key"), "{e}");
    // Another key's signature.
    let (_, other) = key_pair(&fx, "other.pem");
    let e = import_with(&signed, &trust(Some(&other), true)).unwrap_err();
    assert!(e.contains("signed by key"), "{e}");
}

#[test]
fn a_tampered_signed_archive_is_refused() {
    let fx = Fixture::new();
    let (sk, vk) = key_pair(&fx, "sign.pem");
    let file = fx.path("ck.tar");
    archive::export_signed(&fx.contents, &file, Some(&sk)).unwrap();
    let good = fs::read(&file).unwrap();
    let spans = entry_spans(&good);
    let t = trust(Some(&vk), true);
    // One byte changed in the data of each entry in turn.
    for (name, header, end) in &spans {
        let data = header + 512;
        if data == *end {
            continue;
        }
        let mut bad = good.clone();
        bad[data] ^= 0x01;
        fs::write(&file, &bad).unwrap();
        let e = import_with(&file, &t).unwrap_err();
        let expect = match name.as_str() {
            "config.dump" => "altered after it was signed",
            "config.dump.sig" => "signature",
            _ => "SHA-256",
        };
        assert!(e.contains(expect), "{name}: {e}");
    }
    // An entry removed (the one before the end), and one added.
    let (_, h, end) = spans.last().unwrap().clone();
    let mut bad = good[..h].to_vec();
    bad.extend_from_slice(&[0; 1024]);
    fs::write(&file, &bad).unwrap();
    let e = import_with(&file, &t).unwrap_err();
    assert!(e.contains("does not hold it"), "{e}");
    let mut bad = good[..end].to_vec();
    raw_entry(
        &mut bad,
        b"checkpoint/zz.img",
        tar::EntryType::Regular,
        b"",
        b"x",
        1,
    );
    bad.extend_from_slice(&[0; 1024]);
    fs::write(&file, &bad).unwrap();
    let e = import_with(&file, &t).unwrap_err();
    assert!(e.contains("does not list it"), "{e}");
    // The signature of another archive made with the same key.
    let mut fx2 = Fixture::new();
    fx2.contents.spec_dump = br#"{"ociVersion":"1.0.2","process":{"args":["evil"]}}"#.to_vec();
    let other = fx2.path("other.tar");
    archive::export_signed(&fx2.contents, &other, Some(&sk)).unwrap();
    let other_bytes = fs::read(&other).unwrap();
    let other_sig = entry_spans(&other_bytes)
        .into_iter()
        .find(|s| s.0 == "config.dump.sig")
        .unwrap();
    let ours = spans.iter().find(|s| s.0 == "config.dump.sig").unwrap();
    let mut bad = good[..ours.1].to_vec();
    bad.extend_from_slice(&other_bytes[other_sig.1..other_sig.2]);
    bad.extend_from_slice(&good[ours.2..]);
    fs::write(&file, &bad).unwrap();
    let e = import_with(&file, &t).unwrap_err();
    assert!(e.contains("altered after it was signed"), "{e}");
    // Its config.dump and signature together: then the entries do not match.
    let other_cfg = entry_spans(&other_bytes)
        .into_iter()
        .find(|s| s.0 == "config.dump")
        .unwrap();
    let mut bad = other_bytes[other_cfg.1..other_sig.2].to_vec();
    bad.extend_from_slice(&good[ours.2..]);
    fs::write(&file, &bad).unwrap();
    let e = import_with(&file, &t).unwrap_err();
    assert!(e.contains("SHA-256") || e.contains("lists it as"), "{e}");
}
