//! The self-contained checkpoint archive of `checkpoint --export FILE` and
//! `restore --import FILE` (layout in docs/image-format.md): one tar,
//! optionally zstd-compressed, holding
//!
//! ```text
//! config.dump       godwit's record (ArchiveConfig) plus the list of every other entry and its size
//! spec.dump         the OCI config.json the container ran with
//! deleted.files     JSON list of rootfs paths the container deleted
//! stats-dump        JSON timings of the dump
//! checkpoint/       the image directory, every file of it
//! rootfs-diff.tar   files the container changed or created in its rootfs (optional)
//! ```
//!
//! An archive comes from another host, so `import` trusts nothing in it: it reads
//! the whole archive once to check every header (and, when compressed, every
//! byte) before it creates the destination, then reads it again to extract,
//! refusing any entry that differs from what the first pass checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// Archive format. A reader refuses another major version; a newer minor only
/// adds fields an older reader may ignore.
pub const FORMAT_MAJOR: u32 = 1;
/// 1.1: config.dump's `rootfs_base`; 1.2: a SHA-256 for every listed file,
/// and the optional `config.dump.sig` (an Ed25519 signature over config.dump).
pub const FORMAT_MINOR: u32 = 2;

pub const IMAGE_DIR: &str = "checkpoint";
pub const SPEC_DUMP: &str = "spec.dump";
pub const CONFIG_DUMP: &str = "config.dump";
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
pub const DELETED_FILES: &str = "deleted.files";
pub const STATS_DUMP: &str = "stats-dump";

pub const SIGNATURE: &str = crate::signing::SIGNATURE_ENTRY;

/// The top-level regular files an archive may hold (besides `checkpoint/`).
const TOP_FILES: [&str; 6] = [
    SPEC_DUMP,
    CONFIG_DUMP,
    SIGNATURE,
    ROOTFS_DIFF,
    DELETED_FILES,
    STATS_DUMP,
];
const KNOWN_NAMES: &str =
    "checkpoint/, spec.dump, config.dump, config.dump.sig, rootfs-diff.tar, deleted.files, stats-dump";

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BLOCK: u64 = 512;
const IO_BUF: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot export to {archive}: {reason}")]
    Export { archive: PathBuf, reason: String },
    #[error("{archive} is not a godwit checkpoint archive: {reason}; give the file `godwit checkpoint --export` wrote (a .tar or .tar.zst)")]
    NotAnArchive { archive: PathBuf, reason: String },
    #[error("{archive}: entry {entry}: {reason}; the archive is truncated or corrupt: copy it again from the source host (or export it again)")]
    Corrupt {
        archive: PathBuf,
        entry: String,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("{archive}: entry {entry:?} refused: {reason}; godwit never writes such an entry, so the archive was altered or not made by `godwit checkpoint --export`; nothing was extracted")]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{archive}: entry {entry}: {what} is {size} bytes, over the import limit of {limit} bytes; nothing was extracted (raise the limit only for an archive you trust)")]
    TooLarge {
        archive: PathBuf,
        entry: String,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("{archive}: more than {limit} entries, over the import limit; nothing was extracted (raise the limit only for an archive you trust)")]
    TooManyEntries { archive: PathBuf, limit: usize },
    #[error("{archive}: config.dump: archive format {found_major}.{found_minor} (written by godwit {writer}) is not supported: this godwit ({ours}) reads format {supported_major}.x (up to {supported_major}.{supported_minor}); import it with a godwit release that supports format {found_major}")]
    UnsupportedFormat {
        archive: PathBuf,
        found_major: u64,
        found_minor: u64,
        supported_major: u32,
        supported_minor: u32,
        writer: String,
        ours: &'static str,
    },
    #[error("{archive}: config.dump: the checkpoint was taken on architecture {found} but this host is {host}; a process image restores only on the architecture it was dumped on: import it on a {found} host")]
    ForeignArch {
        archive: PathBuf,
        found: String,
        host: &'static str,
    },
    #[error("{archive}: {entry}: {field}: {reason}; the archive was altered or written by an incompatible godwit")]
    InvalidMetadata {
        archive: PathBuf,
        entry: &'static str,
        field: String,
        reason: String,
    },
    #[error("{archive}: {entry} is missing ({what}); the archive is incomplete: export it again")]
    Missing {
        archive: PathBuf,
        entry: &'static str,
        what: &'static str,
    },
    #[error("import destination {path}: {reason}")]
    Destination { path: PathBuf, reason: String },
    #[error("{archive}: entry {entry}: its SHA-256 is {found} but config.dump lists {listed}: the archive was altered or damaged after export; nothing was extracted")]
    DigestMismatch {
        archive: PathBuf,
        entry: String,
        found: String,
        listed: String,
    },
    #[error("{archive}: signature check failed: {reason}; nothing was extracted (restore only archives signed with the key whose public half you give with --verify-key / GODWIT_VERIFY_KEY)")]
    Signature { archive: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatVersion {
    pub major: u32,
    pub minor: u32,
}

/// godwit's own record of the checkpoint, `config.dump` in the archive.
/// `export` writes it as given (plus the entry list); `new` fills in what this
/// host knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchiveConfig {
    /// Format of the archive (not of the image inside, see `image_format`).
    pub format: FormatVersion,
    /// Container id on the source host.
    pub id: String,
    /// Architecture of the source host, as `std::env::consts::ARCH` names it.
    pub arch: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When the container was created on the source host.
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    /// When the checkpoint was taken.
    #[serde(default)]
    pub checkpointed: Option<DateTime<Utc>>,
    #[serde(default)]
    pub source_host: String,
    #[serde(default)]
    pub godwit_version: String,
    #[serde(default)]
    pub kernel_release: String,
    /// Format of the image in `checkpoint/`, which the dumper checks itself.
    #[serde(default)]
    pub image_format: Option<FormatVersion>,
    /// What `rootfs-diff.tar` applies to, for a restore without `--bundle`
    /// (absent in archives of format 1.0: those need `--bundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_base: Option<RootfsBase>,
}

/// The rootfs a checkpointed container ran on, as the source host named it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RootfsBase {
    /// An overlay rootfs: its lower dirs (top first), e.g. image layers in
    /// the container engine's store; the diff is its upper dir.
    Overlay { lowerdirs: Vec<PathBuf> },
    /// A plain directory rootfs at this absolute path.
    Directory { path: PathBuf },
}

impl RootfsBase {
    /// The directories the diff is stacked on, top first.
    pub fn lowerdirs(&self) -> Vec<PathBuf> {
        match self {
            RootfsBase::Overlay { lowerdirs } => lowerdirs.clone(),
            RootfsBase::Directory { path } => vec![path.clone()],
        }
    }
}

impl ArchiveConfig {
    /// A record for container `id` checkpointed now on this host.
    pub fn new(id: &str) -> Self {
        ArchiveConfig {
            format: FormatVersion {
                major: FORMAT_MAJOR,
                minor: FORMAT_MINOR,
            },
            id: id.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            annotations: BTreeMap::new(),
            created: None,
            checkpointed: Some(Utc::now()),
            source_host: proc_string("/proc/sys/kernel/hostname"),
            godwit_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: proc_string("/proc/sys/kernel/osrelease"),
            image_format: Some(FormatVersion {
                major: godwit_checkpoint::image::FORMAT_MAJOR,
                minor: godwit_checkpoint::image::FORMAT_MINOR,
            }),
            rootfs_base: None,
        }
    }
}

/// Informational only: an unreadable /proc file leaves the field empty.
fn proc_string(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What `export` puts into an archive.
#[derive(Clone, Debug)]
pub struct ArchiveContents {
    /// The image directory; every regular file and directory under it goes in.
    pub image_dir: PathBuf,
    /// The OCI spec the container ran with (JSON).
    pub spec_dump: Vec<u8>,
    pub config: ArchiveConfig,
    /// A tar of the rootfs changes, already built.
    pub rootfs_diff: Option<PathBuf>,
    /// Rootfs paths the container deleted.
    pub deleted_files: Vec<String>,
    pub stats: serde_json::Value,
}

/// Who an archive must come from: the public key its `config.dump.sig` must
/// verify with, and whether an unsigned archive is refused.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub verify_key: Option<ed25519_dalek::VerifyingKey>,
    /// Refuse an archive without a valid signature (a verify key is then needed).
    pub require_signature: bool,
}

/// What import found about an archive's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No `config.dump.sig` (and no key required one).
    Unsigned,
    /// Signed, but import was given no key to check it with.
    NotChecked { public_key: String },
    /// The signature verifies with the given key (hex).
    Verified { public_key: String },
}

/// Free space an import leaves by default (`--import-reserve`).
pub const DEFAULT_RESERVE: u64 = 256 << 20;

/// Bounds on what `import` accepts.
#[derive(Clone, Debug)]
pub struct ImportLimits {
    /// Largest single entry (an image's page file can be as large as the
    /// container's memory).
    pub max_entry_size: u64,
    /// All entries together.
    pub max_total_size: u64,
    pub max_entries: usize,
    /// Largest config.dump, spec.dump, deleted.files or stats-dump: these are
    /// read into memory.
    pub max_metadata_size: u64,
    /// Free space the import must leave on the destination's filesystem.
    pub reserve_bytes: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_entry_size: 256 << 30,
            max_total_size: 1 << 40,
            max_entries: 1 << 16,
            max_metadata_size: 64 << 20,
            reserve_bytes: DEFAULT_RESERVE,
        }
    }
}

/// An imported archive, extracted under `dir`.
#[derive(Clone, Debug)]
pub struct Imported {
    pub dir: PathBuf,
    /// `dir/checkpoint`, the image directory.
    pub image_dir: PathBuf,
    /// `dir/spec.dump`.
    pub spec_dump: PathBuf,
    /// `dir/rootfs-diff.tar`, when the archive has one.
    pub rootfs_diff: Option<PathBuf>,
    pub config: ArchiveConfig,
    /// Checked to hold no `..` and no NUL; still resolve them inside the rootfs
    /// without following symlinks.
    pub deleted_files: Vec<String>,
    pub stats: serde_json::Value,
    pub compressed: bool,
    pub signature: SignatureStatus,
}

/// One entry of `config.dump`'s list: every entry of the archive but
/// config.dump itself, so that an archive cut short between two entries, or
/// with an entry added or changed, is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ListedEntry {
    path: String,
    #[serde(rename = "type")]
    kind: Kind,
    size: u64,
    /// [`godwit_checkpoint::digest`] of a file's bytes (format 1.2; required
    /// by `import`, absent for directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    File,
    Dir,
}

/// The name ends in `.zst` (`.tar.zst`): zstd-compressed.
fn wants_zstd(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "zst")
}

fn io_err(path: &Path, what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    let what = what.into();
    move |source| ArchiveError::Io { path, what, source }
}

// ---------------------------------------------------------------------------
// Export

enum Source {
    Bytes(Vec<u8>),
    File(PathBuf, u64),
    Dir,
}

struct Planned {
    name: String,
    source: Source,
}

/// Writes the archive to `file`: a plain tar, or zstd-compressed when the name
/// ends in `.zst`. It is written to a temp file next to `file` (0600), synced,
/// and renamed over `file` only when complete, so `file` is never half-written.
pub fn export(contents: &ArchiveContents, file: &Path) -> Result<()> {
    export_signed(contents, file, None)
}

/// [`export`], with `config.dump.sig` (an Ed25519 signature over
/// config.dump's exact bytes) right after config.dump when `key` is given.
/// The passes: the contents checked as import would check them, every entry
/// planned, each listed with its size and digest, config.dump (and its
/// signature) put first, and the archive written whole under a temporary
/// name, then renamed.
pub fn export_signed(
    contents: &ArchiveContents,
    file: &Path,
    key: Option<&ed25519_dalek::SigningKey>,
) -> Result<()> {
    check_contents(contents, file)?;
    let body = plan_entries(contents, file)?;
    let listed = list_entries(&body)?;
    let config_bytes = config_dump_bytes(&contents.config, &listed)
        .map_err(|e| export_failed(file, format!("cannot serialize config.dump: {e}")))?;
    let signature = key.map(|key| json_bytes(&crate::signing::sign(key, &config_bytes)));
    let plan = with_head(config_bytes, signature, body);
    write_archive(&plan, file)
}

fn export_failed(file: &Path, reason: String) -> ArchiveError {
    ArchiveError::Export {
        archive: file.to_path_buf(),
        reason,
    }
}

/// Pass 1: what import refuses, export refuses to write — a spec that is
/// not a JSON object, a deleted path import would refuse, an archive path
/// that names no file or a directory.
fn check_contents(contents: &ArchiveContents, file: &Path) -> Result<()> {
    let fail = |reason: String| export_failed(file, reason);
    match serde_json::from_slice::<serde_json::Value>(&contents.spec_dump) {
        Ok(v) if v.is_object() => {}
        Ok(_) => return Err(fail("the spec (spec.dump) is not a JSON object".into())),
        Err(e) => return Err(fail(format!("the spec (spec.dump) is not JSON: {e}"))),
    }
    for (i, p) in contents.deleted_files.iter().enumerate() {
        if let Err(reason) = check_deleted_path(p) {
            return Err(fail(format!("deleted file [{i}] {p:?}: {reason}")));
        }
    }
    if file.file_name().is_none() {
        return Err(fail("the path names no file".into()));
    }
    if file.is_dir() {
        return Err(fail("it is a directory; give a file name".into()));
    }
    Ok(())
}

/// Pass 2: every entry but config.dump, in archive order: the runtime's
/// files, the image directory (sorted), the rootfs diff.
fn plan_entries(contents: &ArchiveContents, file: &Path) -> Result<Vec<Planned>> {
    let mut plan = vec![
        Planned {
            name: SPEC_DUMP.into(),
            source: Source::Bytes(contents.spec_dump.clone()),
        },
        Planned {
            name: DELETED_FILES.into(),
            source: Source::Bytes(json_bytes(&contents.deleted_files)),
        },
        Planned {
            name: STATS_DUMP.into(),
            source: Source::Bytes(json_bytes(&contents.stats)),
        },
        Planned {
            name: IMAGE_DIR.into(),
            source: Source::Dir,
        },
    ];
    let image_meta = fs::metadata(&contents.image_dir)
        .map_err(io_err(&contents.image_dir, "reading the image directory"))?;
    if !image_meta.is_dir() {
        return Err(export_failed(
            file,
            format!(
                "image directory {} is not a directory",
                contents.image_dir.display()
            ),
        ));
    }
    plan_dir(&contents.image_dir, IMAGE_DIR, &mut plan, file)?;
    plan.retain(|p| !moved_to_top(&p.name));
    if let Some(diff) = &contents.rootfs_diff {
        let meta = fs::metadata(diff).map_err(io_err(diff, "reading the rootfs diff"))?;
        if !meta.is_file() {
            return Err(export_failed(
                file,
                format!("rootfs diff {} is not a regular file", diff.display()),
            ));
        }
        plan.push(Planned {
            name: ROOTFS_DIFF.into(),
            source: Source::File(diff.clone(), meta.len()),
        });
    }
    Ok(plan)
}

/// The rootfs changes checkpoint leaves in the image directory travel at
/// the archive's top level (rootfs_diff, deleted_files), not twice.
fn moved_to_top(entry: &str) -> bool {
    entry
        .strip_prefix(IMAGE_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| {
            name == ROOTFS_DIFF || name == DELETED_FILES || name == crate::rootfs_diff::MANIFEST
        })
}

/// Pass 3: config.dump's list of the planned entries, with their sizes and
/// digests (files are read once for it, and again when written).
fn list_entries(plan: &[Planned]) -> Result<Vec<ListedEntry>> {
    plan.iter()
        .map(|p| {
            let (kind, size, sha256) = match &p.source {
                Source::Bytes(b) => (Kind::File, b.len() as u64, Some(digest_of(b))),
                Source::File(path, len) => (Kind::File, *len, Some(digest_file(path, *len)?)),
                Source::Dir => (Kind::Dir, 0, None),
            };
            Ok(ListedEntry {
                path: p.name.clone(),
                kind,
                size,
                sha256,
            })
        })
        .collect()
}

/// config.dump's bytes: the record with `entries`, the list of every other
/// entry.
fn config_dump_bytes(
    config: &ArchiveConfig,
    listed: &[ListedEntry],
) -> std::result::Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(config)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("entries".into(), serde_json::to_value(listed)?);
    }
    Ok(json_bytes(&value))
}

/// Pass 4: config.dump first (import reads it first), its signature second,
/// then the planned entries.
fn with_head(config: Vec<u8>, signature: Option<Vec<u8>>, body: Vec<Planned>) -> Vec<Planned> {
    let mut plan = Vec::with_capacity(body.len() + 2);
    plan.push(Planned {
        name: CONFIG_DUMP.into(),
        source: Source::Bytes(config),
    });
    if let Some(sig) = signature {
        plan.push(Planned {
            name: SIGNATURE.into(),
            source: Source::Bytes(sig),
        });
    }
    plan.extend(body);
    plan
}

/// The temporary name the archive `name` is written under by process `pid`
/// (the dump guard removes `.NAME.PID.*.tmp` of a killed checkpoint).
pub(crate) fn temporary_name(name: &str, pid: u32, nanos: u32) -> String {
    format!(".{name}.{pid}.{nanos}.tmp")
}

/// Whether `file_name` is a temporary name of archive `name` written by
/// process `pid` ([`temporary_name`]).
pub(crate) fn is_temporary(file_name: &str, name: &str, pid: i32) -> bool {
    file_name
        .strip_prefix(&format!(".{name}.{pid}."))
        .is_some_and(|rest| rest.ends_with(".tmp"))
}

/// Pass 5: the archive written to a temp file next to `file` (0600), tar or
/// (a `.zst` name) zstd with a checksum, synced, and renamed over `file`
/// only when complete, then the directory synced.
fn write_archive(plan: &[Planned], file: &Path) -> Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| export_failed(file, "the path names no file".into()))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(temporary_name(
        &name.to_string_lossy(),
        std::process::id(),
        Utc::now().timestamp_subsec_nanos(),
    ));
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io_err(&tmp, "creating the temporary archive"))?;
    let guard = RemoveOnDrop(Some(tmp.clone()));
    let out = BufWriter::with_capacity(IO_BUF, out);
    let out = if wants_zstd(file) {
        let mut enc = zstd::Encoder::new(out, 3).map_err(io_err(&tmp, "starting zstd"))?;
        // The frame's checksum lets import tell a damaged archive from a valid one.
        enc.include_checksum(true)
            .map_err(io_err(&tmp, "starting zstd"))?;
        let mut builder = tar::Builder::new(enc);
        write_plan(&mut builder, plan, &tmp)?;
        let enc = builder
            .into_inner()
            .map_err(io_err(&tmp, "finishing the tar stream"))?;
        enc.finish()
            .map_err(io_err(&tmp, "finishing the zstd stream"))?
    } else {
        let mut builder = tar::Builder::new(out);
        write_plan(&mut builder, plan, &tmp)?;
        builder
            .into_inner()
            .map_err(io_err(&tmp, "finishing the tar stream"))?
    };
    let out = out
        .into_inner()
        .map_err(|e| io_err(&tmp, "writing the archive")(e.into_error()))?;
    // Durable before it gets its name: a crash leaves the old file or the new
    // one, never a torn archive under `file`.
    out.sync_all()
        .map_err(io_err(&tmp, "syncing the archive"))?;
    drop(out);
    fs::rename(&tmp, file).map_err(io_err(file, format!("renaming {} to it", tmp.display())))?;
    guard.disarm();
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir, "syncing the directory of the archive"))?;
    Ok(())
}

/// The digest an archive lists for an entry's bytes (as the image's:
/// plain SHA-256 up to 64 MiB, the chunked form above).
fn digest_of(bytes: &[u8]) -> String {
    godwit_checkpoint::digest::of(bytes)
}

/// [`digest_of`] a file's first `len` bytes, read in pieces.
fn digest_file(path: &Path, len: u64) -> Result<String> {
    let f = File::open(path).map_err(io_err(path, "opening for the archive"))?;
    let mut r = BufReader::with_capacity(IO_BUF, f).take(len);
    let mut h = godwit_checkpoint::digest::Hasher::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut got = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, "reading for the archive")(e)),
        };
        h.update(&buf[..n]);
        got += n as u64;
    }
    if got != len {
        return Err(io_err(path, "reading for the archive")(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being archived",
        )));
    }
    Ok(h.finalize())
}

fn json_bytes<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    // Serializing plain data (strings, maps, numbers) into memory cannot fail.
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Adds the files and directories under `dir` (sorted, so archives are
/// reproducible) as `prefix/...`.
fn plan_dir(dir: &Path, prefix: &str, plan: &mut Vec<Planned>, archive: &Path) -> Result<()> {
    let mut names = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err(dir, "reading the image directory"))? {
        let ent = ent.map_err(io_err(dir, "reading the image directory"))?;
        names.push(ent.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(ArchiveError::Export {
                archive: archive.to_path_buf(),
                reason: format!("{}: the name is not UTF-8", path.display()),
            });
        };
        let entry = format!("{prefix}/{name}");
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path, "reading"))?;
        if meta.is_file() {
            plan.push(Planned {
                name: entry,
                source: Source::File(path, meta.len()),
            });
        } else if meta.is_dir() {
            plan.push(Planned {
                name: entry.clone(),
                source: Source::Dir,
            });
            plan_dir(&path, &entry, plan, archive)?;
        } else {
            return Err(ArchiveError::Export {
                archive: archive.to_path_buf(),
                reason: format!(
                    "{} is not a regular file or directory; an image holds nothing else",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

fn write_plan<W: Write>(builder: &mut tar::Builder<W>, plan: &[Planned], tmp: &Path) -> Result<()> {
    let mtime = Utc::now().timestamp().max(0) as u64;
    for p in plan {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        let what = || format!("writing entry {}", p.name);
        match &p.source {
            Source::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o700);
                header.set_size(0);
                builder
                    .append_data(&mut header, &p.name, io::empty())
                    .map_err(io_err(tmp, what()))?;
            }
            Source::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o600);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, &p.name, bytes.as_slice())
                    .map_err(io_err(tmp, what()))?;
            }
            Source::File(path, len) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o600);
                header.set_size(*len);
                let f = File::open(path).map_err(io_err(path, "opening for the archive"))?;
                // Streamed: page files can be many GiB. Exactly `len` bytes, the
                // size already in the header and in config.dump's list.
                let reader = ExactReader {
                    inner: BufReader::with_capacity(IO_BUF, f).take(*len),
                    remaining: *len,
                };
                builder
                    .append_data(&mut header, &p.name, reader)
                    .map_err(io_err(
                        tmp,
                        format!("writing entry {} from {}", p.name, path.display()),
                    ))?;
            }
        }
    }
    Ok(())
}

/// Yields exactly `remaining` bytes or fails: a file that shrank while being
/// archived must not leave a tar whose data disagrees with its header.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

// ---------------------------------------------------------------------------
// Import

/// An entry as the first pass checked it; the second pass must see the same.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Checked {
    path: String,
    kind: Kind,
    size: u64,
    /// The digest of the data the first pass read (files of an archive file).
    sha256: Option<String>,
}

struct Validated {
    signature: SignatureStatus,
    entries: Vec<Checked>,
    config: ArchiveConfig,
    deleted_files: Vec<String>,
    stats: serde_json::Value,
    has_rootfs_diff: bool,
    total: u64,
}

/// Checks the whole archive `file`, then extracts it into `dest` (absent, or
/// an empty directory), directories 0700 and files 0600. Nothing is created
/// unless every entry passed; an extraction that fails midway removes what
/// it wrote.
pub fn import(file: &Path, dest: &Path, limits: &ImportLimits) -> Result<Imported> {
    import_trusted(file, dest, limits, &Trust::default())
}

/// [`import`], the archive's signature checked against `trust` before
/// anything but config.dump (the digest list) is parsed.
pub fn import_trusted(
    file: &Path,
    dest: &Path,
    limits: &ImportLimits,
    trust: &Trust,
) -> Result<Imported> {
    if trust.require_signature && trust.verify_key.is_none() {
        return Err(ArchiveError::Signature {
            archive: file.to_path_buf(),
            reason:
                "a signed archive is required (--require-signature / GODWIT_REQUIRE_SIGNATURE) \
                     but no verify key was given"
                    .into(),
        });
    }
    let archive = File::open(file).map_err(io_err(file, "opening the archive"))?;
    let meta = archive
        .metadata()
        .map_err(io_err(file, "reading the archive"))?;
    if !meta.is_file() {
        return Err(not_archive(file, "it is not a regular file"));
    }
    let len = meta.len();
    let compressed = sniff(&archive, file, len)?;
    let dest_exists = check_dest(dest)?;
    let validated = validate(&archive, file, len, compressed, limits, trust)?;
    check_space(dest, validated.total, limits.reserve_bytes)?;

    if !dest_exists {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(io_err(parent, "creating the import directory's parent"))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dest)
            .map_err(io_err(dest, "creating the import directory"))?;
    }
    extract_or_clean(
        &archive,
        file,
        compressed,
        dest,
        dest_exists,
        &validated.entries,
    )?;
    Ok(Imported {
        dir: dest.to_path_buf(),
        image_dir: dest.join(IMAGE_DIR),
        spec_dump: dest.join(SPEC_DUMP),
        rootfs_diff: validated.has_rootfs_diff.then(|| dest.join(ROOTFS_DIFF)),
        config: validated.config,
        deleted_files: validated.deleted_files,
        stats: validated.stats,
        compressed,
        signature: validated.signature,
    })
}

fn not_archive(file: &Path, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::NotAnArchive {
        archive: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// Compression by the file's first bytes, never its name: true for zstd,
/// false for a plain tar (whose first header must have a valid checksum).
fn sniff(archive: &File, file: &Path, len: u64) -> Result<bool> {
    if len == 0 {
        return Err(not_archive(file, "the file is empty"));
    }
    let mut head = [0u8; BLOCK as usize];
    let n = read_at_most(archive, &mut head).map_err(io_err(file, "reading the archive"))?;
    let head = &head[..n];
    if head.starts_with(&ZSTD_MAGIC) {
        return Ok(true);
    }
    let other = if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if head.starts_with(b"BZh") {
        Some("bzip2")
    } else {
        None
    };
    if let Some(kind) = other {
        return Err(not_archive(
            file,
            format!("it is {kind}-compressed, and godwit archives are plain tar or zstd (.tar.zst); decompress it first"),
        ));
    }
    if n < BLOCK as usize || !tar_checksum_ok(head) {
        return Err(not_archive(
            file,
            "it starts with neither a tar header nor the zstd magic (corrupt, or another kind of file)",
        ));
    }
    if !len.is_multiple_of(BLOCK) {
        return Err(ArchiveError::Corrupt {
            archive: file.to_path_buf(),
            entry: "(end of file)".into(),
            reason: format!(
                "the file is {len} bytes, not a whole number of 512-byte tar blocks: it was cut short"
            ),
            source: None,
        });
    }
    Ok(false)
}

fn read_at_most(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The tar header checksum: the sum of the header's bytes with the checksum
/// field itself counted as spaces.
fn tar_checksum_ok(block: &[u8]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|b| *b as u32)
        .sum::<u32>()
        + 8 * 32;
    sum == stored
}

/// Returns whether `dest` exists (then it is an empty directory).
fn check_dest(dest: &Path) -> Result<bool> {
    let bad = |reason: &str| ArchiveError::Destination {
        path: dest.to_path_buf(),
        reason: reason.to_string(),
    };
    match fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => Err(bad(
            "is a symbolic link; give a real directory (absent or empty)",
        )),
        Ok(m) if !m.is_dir() => Err(bad(
            "exists and is not a directory; give an absent or empty directory",
        )),
        Ok(_) => {
            let mut it =
                fs::read_dir(dest).map_err(io_err(dest, "reading the import directory"))?;
            if it.next().is_some() {
                return Err(bad(
                    "is not empty; import into an absent or empty directory",
                ));
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(dest, "checking the import directory")(e)),
    }
}

/// Refuses an import that cannot fit where it goes, before writing a byte of
/// it (a restore that fails on a full disk halfway is worse).
fn check_space(dest: &Path, need: u64, reserve: u64) -> Result<()> {
    // `dest` may not exist yet: its nearest existing ancestor is the filesystem.
    let mut probe = dest;
    let st = loop {
        match nix::sys::statvfs::statvfs(probe) {
            Ok(st) => break st,
            Err(_) => match probe.parent() {
                Some(p) if p.as_os_str().is_empty() => probe = Path::new("."),
                Some(p) => probe = p,
                // Cannot tell; extraction reports ENOSPC itself.
                None => return Ok(()),
            },
        }
    };
    // c_ulong and fsblkcnt_t are 32 bits on some hosts.
    #[allow(clippy::unnecessary_cast)]
    let avail = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    if need.saturating_add(reserve) > avail {
        return Err(ArchiveError::Destination {
            path: dest.to_path_buf(),
            reason: format!(
                "the archive holds {need} bytes and {reserve} bytes must stay free (the import reserve), \
                 but only {avail} bytes are free on {}; free some space, or lower the reserve \
                 (--import-reserve / GODWIT_IMPORT_RESERVE)",
                probe.display()
            ),
        });
    }
    Ok(())
}

fn remove_contents(dir: &Path) {
    if let Ok(it) = fs::read_dir(dir) {
        for ent in it.flatten() {
            let p = ent.path();
            // file_type does not follow symlinks; import never creates one anyway.
            match ent.file_type() {
                Ok(t) if t.is_dir() => {
                    let _ = fs::remove_dir_all(&p);
                }
                _ => {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
}

/// The entry's path, normalized without a trailing slash, or why it is refused.
fn entry_path(raw: &[u8]) -> std::result::Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "its name is not UTF-8".to_string())?;
    if s.starts_with('/') {
        return Err("it is an absolute path".into());
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    if trimmed.is_empty() {
        return Err("its name is empty".into());
    }
    for c in trimmed.split('/') {
        match c {
            "" => return Err("its name has an empty component (`//`)".into()),
            "." => return Err("its name has a `.` component".into()),
            ".." => {
                return Err(
                    "its name has a `..` component, which would leave the target directory".into(),
                )
            }
            _ => {}
        }
    }
    Ok(trimmed.to_string())
}

/// A path of deleted.files: relative to the rootfs (a leading `/` allowed),
/// never leaving it.
fn check_deleted_path(p: &str) -> std::result::Result<(), &'static str> {
    if p.trim_matches('/').is_empty() {
        return Err("empty path, or the rootfs itself");
    }
    if p.contains('\0') {
        return Err("NUL in the path");
    }
    if p.split('/').any(|c| c == "..") {
        return Err("a `..` component would leave the rootfs");
    }
    Ok(())
}

/// What each pass does with one entry. `raw` is the entry's name as stored,
/// `name` the same for messages.
trait Visitor {
    fn visit<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        name: &str,
    ) -> Result<()>;
}

/// Reads `archive` from its start and hands every entry to `v`. A plain tar
/// is read with seeks (data a visitor does not read is skipped); a zstd one is
/// decoded to its very end, so the frame checksum is verified.
fn each_entry<V: Visitor>(archive: &File, file: &Path, compressed: bool, v: &mut V) -> Result<()> {
    let mut handle = archive;
    handle
        .seek(SeekFrom::Start(0))
        .map_err(io_err(file, "reading the archive"))?;
    if compressed {
        let dec = zstd::Decoder::new(handle).map_err(io_err(file, "starting zstd"))?;
        let mut ar = tar::Archive::new(dec);
        let entries = ar.entries().map_err(io_err(file, "reading the archive"))?;
        visit_all(entries, file, v)?;
        let mut rest = ar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| ArchiveError::Corrupt {
            archive: file.to_path_buf(),
            entry: "(after the last entry)".into(),
            reason: "the zstd stream is damaged or cut short".into(),
            source: Some(e),
        })?;
    } else {
        let mut ar = tar::Archive::new(BufReader::with_capacity(IO_BUF, handle));
        let entries = ar
            .entries_with_seek()
            .map_err(io_err(file, "reading the archive"))?;
        visit_all(entries, file, v)?;
    }
    Ok(())
}

fn visit_all<R: Read, V: Visitor>(
    entries: tar::Entries<'_, R>,
    file: &Path,
    v: &mut V,
) -> Result<()> {
    let mut last: Option<String> = None;
    for res in entries {
        let mut entry = res.map_err(|e| match &last {
            None => ArchiveError::NotAnArchive {
                archive: file.to_path_buf(),
                reason: format!("its first tar header cannot be read ({e})"),
            },
            Some(prev) => ArchiveError::Corrupt {
                archive: file.to_path_buf(),
                entry: format!("after {prev}"),
                reason: "the next tar header cannot be read".into(),
                source: Some(e),
            },
        })?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        v.visit(&mut entry, &raw, &name)?;
        last = Some(name);
    }
    Ok(())
}

fn entry_kind<R: Read>(entry: &tar::Entry<'_, R>) -> std::result::Result<Kind, String> {
    use tar::EntryType as T;
    let link = || {
        entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    };
    let what = match entry.header().entry_type() {
        T::Regular => return Ok(Kind::File),
        T::Directory => return Ok(Kind::Dir),
        T::Symlink => format!("a symbolic link (to {:?})", link()),
        T::Link => format!("a hard link (to {:?})", link()),
        T::Char | T::Block => "a device node".into(),
        T::Fifo => "a fifo".into(),
        T::GNUSparse => "a sparse file".into(),
        other => format!("of tar entry type {:?}", other.as_byte() as char),
    };
    Err(format!(
        "it is {what}; an archive holds only regular files and directories"
    ))
}

fn is_metadata(path: &str) -> bool {
    matches!(path, CONFIG_DUMP | SPEC_DUMP | DELETED_FILES | STATS_DUMP)
}

/// Reads exactly `size` bytes of an entry, or says why not.
fn read_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    size: u64,
    file: &Path,
    name: &str,
) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size.min(IO_BUF as u64) as usize);
    entry
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|e| corrupt_read(file, name, e))?;
    if buf.len() as u64 != size {
        return Err(short_entry(file, name, buf.len() as u64, size));
    }
    Ok(buf)
}

fn corrupt_read(file: &Path, name: &str, e: io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        archive: file.to_path_buf(),
        entry: name.to_string(),
        reason: "its data cannot be read".into(),
        source: Some(e),
    }
}

fn short_entry(file: &Path, name: &str, got: u64, size: u64) -> ArchiveError {
    ArchiveError::Corrupt {
        archive: file.to_path_buf(),
        entry: name.to_string(),
        reason: format!(
            "the archive ends after {got} of the {size} bytes its header announces (truncated, or a lying header)"
        ),
        source: None,
    }
}

/// The first pass: every check, nothing written.
struct Validator<'a> {
    file: &'a Path,
    len: u64,
    seekable: bool,
    limits: &'a ImportLimits,
    /// An archive file: config.dump first, its signature (if any) next and
    /// checked against this before anything else is parsed, every file's
    /// digest checked. `None`: a stream received by `godwit receive`
    /// (authenticated by its channel; config.dump comes last).
    trust: Option<&'a Trust>,
    /// config.dump's bytes, until its signature was looked at.
    config_raw: Option<Vec<u8>>,
    signature: SignatureStatus,
    /// config.dump's list by path, once parsed.
    listed: HashMap<String, ListedEntry>,
    entries: Vec<Checked>,
    seen: HashSet<String>,
    files: HashSet<String>,
    implied_dirs: HashSet<String>,
    total: u64,
    config: Option<(ArchiveConfig, Vec<ListedEntry>)>,
    spec: bool,
    deleted_files: Vec<String>,
    stats: serde_json::Value,
}

impl Visitor for Validator<'_> {
    fn visit<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        name: &str,
    ) -> Result<()> {
        let file = self.file;
        let refuse = |reason: String| ArchiveError::UnsafeEntry {
            archive: file.to_path_buf(),
            entry: name.to_string(),
            reason,
        };
        let kind = entry_kind(entry).map_err(refuse)?;
        let path = entry_path(raw).map_err(refuse)?;
        if self.trust.is_some() {
            if self.entries.is_empty() && path != CONFIG_DUMP {
                return Err(refuse(format!(
                    "the first entry must be {CONFIG_DUMP} (the list of every entry and its digest)"
                )));
            }
            if self.config_raw.is_some() && path != SIGNATURE {
                // Unsigned: config.dump is parsed now, under the policy.
                self.settle_config(None)?;
            }
        }
        self.check_path(&path, kind, name)?;
        let size = entry.size();
        self.check_size(&path, kind, size, name)?;
        if self.seekable {
            // Uncompressed: the data must lie within the file. (Seeking past
            // the end would succeed and the archive would look merely short.)
            let start = entry.raw_file_position();
            if start.saturating_add(size) > self.len {
                return Err(ArchiveError::Corrupt {
                    archive: file.to_path_buf(),
                    entry: name.to_string(),
                    reason: format!(
                        "its header announces {size} bytes of data but the file ends {} bytes after the header (truncated, or a lying header)",
                        self.len.saturating_sub(start)
                    ),
                    source: None,
                });
            }
        }

        if self.trust.is_some() {
            return self.visit_trusted(entry, path, kind, size, name);
        }
        if kind == Kind::File && is_metadata(&path) {
            self.check_metadata_size(size, name)?;
            let bytes = read_entry(entry, size, file, name)?;
            self.metadata(&path, &bytes)?;
        } else if kind == Kind::File && !self.seekable {
            // Compressed: only decoding every byte shows the stream is whole.
            let got = io::copy(&mut entry.take(size), &mut io::sink())
                .map_err(|e| corrupt_read(file, name, e))?;
            if got != size {
                return Err(short_entry(file, name, got, size));
            }
        }
        self.entries.push(Checked {
            path,
            kind,
            size,
            sha256: None,
        });
        Ok(())
    }
}

impl Validator<'_> {
    /// An archive file's entry after its place and size were checked:
    /// config.dump kept raw, the signature checked, every other entry listed
    /// and its every byte read and hashed against the list.
    fn visit_trusted<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: String,
        kind: Kind,
        size: u64,
        name: &str,
    ) -> Result<()> {
        let file = self.file;
        let push = |v: &mut Self, sha256| {
            v.entries.push(Checked {
                path: path.clone(),
                kind,
                size,
                sha256,
            })
        };
        if path == CONFIG_DUMP {
            self.check_metadata_size(size, name)?;
            let bytes = read_entry(entry, size, file, name)?;
            let sum = digest_of(&bytes);
            self.config_raw = Some(bytes);
            push(self, Some(sum));
            return Ok(());
        }
        if path == SIGNATURE {
            if self.entries.len() != 1 {
                return Err(ArchiveError::UnsafeEntry {
                    archive: file.to_path_buf(),
                    entry: name.to_string(),
                    reason: format!("{SIGNATURE} must come right after {CONFIG_DUMP}"),
                });
            }
            if size > crate::signing::MAX_SIGNATURE_BYTES {
                return Err(ArchiveError::TooLarge {
                    archive: file.to_path_buf(),
                    entry: name.to_string(),
                    what: "its size",
                    size,
                    limit: crate::signing::MAX_SIGNATURE_BYTES,
                });
            }
            let bytes = read_entry(entry, size, file, name)?;
            let sum = digest_of(&bytes);
            self.settle_config(Some(&bytes))?;
            push(self, Some(sum));
            return Ok(());
        }
        // Listed, with this kind and size, before a byte of it is read.
        let listed = self
            .listed
            .get(&path)
            .cloned()
            .ok_or_else(|| ArchiveError::UnsafeEntry {
                archive: file.to_path_buf(),
                entry: name.to_string(),
                reason: "config.dump does not list it (it was added after export)".into(),
            })?;
        if listed.kind != kind || listed.size != size {
            return Err(ArchiveError::Corrupt {
                archive: file.to_path_buf(),
                entry: name.to_string(),
                reason: format!(
                    "config.dump lists it as a {:?} of {} bytes, the archive holds a {kind:?} of {size} bytes",
                    listed.kind, listed.size
                ),
                source: None,
            });
        }
        if kind == Kind::Dir {
            push(self, None);
            return Ok(());
        }
        let want = listed.sha256.unwrap_or_default();
        let sum = if is_metadata(&path) {
            self.check_metadata_size(size, name)?;
            let bytes = read_entry(entry, size, file, name)?;
            let sum = digest_of(&bytes);
            // Parsed only once its bytes are the listed ones.
            if sum == want {
                self.metadata(&path, &bytes)?;
            }
            sum
        } else {
            hash_entry(entry, size, file, name)?
        };
        if sum != want {
            return Err(ArchiveError::DigestMismatch {
                archive: file.to_path_buf(),
                entry: name.to_string(),
                found: sum,
                listed: want,
            });
        }
        push(self, Some(sum));
        Ok(())
    }

    /// config.dump's bytes (kept raw until now) against the signature
    /// entry, if the archive has one, and the trust policy; then parsed.
    fn settle_config(&mut self, signature: Option<&[u8]>) -> Result<()> {
        let Some(raw) = self.config_raw.take() else {
            return Ok(());
        };
        let file = self.file;
        let refuse = |reason: String| ArchiveError::Signature {
            archive: file.to_path_buf(),
            reason,
        };
        let trust = self.trust.cloned().unwrap_or_default();
        self.signature = match (signature, &trust.verify_key) {
            (Some(sig), Some(key)) => {
                crate::signing::verify(key, &raw, sig).map_err(refuse)?;
                SignatureStatus::Verified {
                    public_key: hex::encode(key.as_bytes()),
                }
            }
            (Some(sig), None) => {
                let entry: crate::signing::SignatureEntry = serde_json::from_slice(sig)
                    .map_err(|e| refuse(format!("{SIGNATURE} is not a signature record: {e}")))?;
                SignatureStatus::NotChecked {
                    public_key: entry.public_key,
                }
            }
            (None, Some(_)) => {
                return Err(refuse(format!(
                    "the archive is not signed (it has no {SIGNATURE}) but a verify key was given; \
                     export it again with `godwit checkpoint --export FILE --sign-key KEY`"
                )))
            }
            (None, None) => SignatureStatus::Unsigned,
        };
        if trust.require_signature && !matches!(self.signature, SignatureStatus::Verified { .. }) {
            return Err(refuse("the policy requires a verified signature".into()));
        }
        let (config, listed) = parse_config(file, &raw)?;
        for (i, l) in listed.iter().enumerate() {
            let ok = match l.kind {
                Kind::File => l
                    .sha256
                    .as_deref()
                    .is_some_and(godwit_checkpoint::digest::is_digest),
                Kind::Dir => l.sha256.is_none(),
            };
            if !ok {
                return Err(ArchiveError::InvalidMetadata {
                    archive: file.to_path_buf(),
                    entry: CONFIG_DUMP,
                    field: format!("entries[{i}] ({}).sha256", l.path),
                    reason: "every file needs a SHA-256 (64 hex digits) and a directory none \
                             (archives of format 1.1 and older carry none: export it again)"
                        .into(),
                });
            }
            if l.path == CONFIG_DUMP || l.path == SIGNATURE {
                return Err(ArchiveError::InvalidMetadata {
                    archive: file.to_path_buf(),
                    entry: CONFIG_DUMP,
                    field: format!("entries[{i}]"),
                    reason: format!("lists {} itself", l.path),
                });
            }
            if self.listed.insert(l.path.clone(), l.clone()).is_some() {
                return Err(ArchiveError::InvalidMetadata {
                    archive: file.to_path_buf(),
                    entry: CONFIG_DUMP,
                    field: format!("entries[{i}] ({})", l.path),
                    reason: "listed twice".into(),
                });
            }
        }
        self.config = Some((config, listed));
        Ok(())
    }
}

/// Reads all `size` bytes of an entry; their digest.
fn hash_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    size: u64,
    file: &Path,
    name: &str,
) -> Result<String> {
    let mut h = godwit_checkpoint::digest::Hasher::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut got = 0u64;
    let mut r = entry.take(size);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt_read(file, name, e)),
        };
        h.update(&buf[..n]);
        got += n as u64;
    }
    if got != size {
        return Err(short_entry(file, name, got, size));
    }
    Ok(h.finalize())
}

impl Validator<'_> {
    /// Where an entry may go: known top-level names, one entry per path, no
    /// file where a directory is needed.
    fn check_path(&mut self, path: &str, kind: Kind, name: &str) -> Result<()> {
        let file = self.file;
        let refuse = |reason: String| ArchiveError::UnsafeEntry {
            archive: file.to_path_buf(),
            entry: name.to_string(),
            reason,
        };
        let path = path.to_string();

        let (top, below) = match path.split_once('/') {
            Some((top, _)) => (top, true),
            None => (path.as_str(), false),
        };
        if top == IMAGE_DIR {
            if !below && kind != Kind::Dir {
                return Err(refuse(format!("{IMAGE_DIR} must be a directory")));
            }
        } else if TOP_FILES.contains(&top) {
            if below || kind != Kind::File {
                return Err(refuse(format!(
                    "{top} must be a regular file at the top level"
                )));
            }
        } else {
            return Err(refuse(format!(
                "unknown top-level name {top:?}; an archive holds only {KNOWN_NAMES}"
            )));
        }

        // One entry per path, and no file where a directory is needed: else
        // extraction would fail halfway or overwrite.
        if !self.seen.insert(path.clone()) {
            return Err(refuse("it appears twice in the archive".into()));
        }
        let ancestors: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        if let Some(p) = ancestors.iter().find(|p| self.files.contains(**p)) {
            return Err(refuse(format!("its parent {p} is a regular file")));
        }
        if kind == Kind::File && self.implied_dirs.contains(&path) {
            return Err(refuse(
                "it is a regular file, but other entries are inside it".into(),
            ));
        }
        for p in ancestors {
            self.implied_dirs.insert(p.to_string());
        }
        match kind {
            Kind::File => self.files.insert(path.clone()),
            Kind::Dir => self.implied_dirs.insert(path.clone()),
        };

        Ok(())
    }

    /// The entry's size against the limits (per entry, total, count).
    fn check_size(&mut self, _path: &str, kind: Kind, size: u64, name: &str) -> Result<()> {
        let file = self.file;
        let refuse = |reason: String| ArchiveError::UnsafeEntry {
            archive: file.to_path_buf(),
            entry: name.to_string(),
            reason,
        };
        if kind == Kind::Dir && size != 0 {
            return Err(refuse(format!(
                "it is a directory with {size} bytes of data"
            )));
        }
        if self.entries.len() >= self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                archive: file.to_path_buf(),
                limit: self.limits.max_entries,
            });
        }
        let too_large = |what, size, limit| ArchiveError::TooLarge {
            archive: file.to_path_buf(),
            entry: name.to_string(),
            what,
            size,
            limit,
        };
        if size > self.limits.max_entry_size {
            return Err(too_large("its size", size, self.limits.max_entry_size));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_size {
            return Err(too_large(
                "the total of the entries up to it",
                self.total,
                self.limits.max_total_size,
            ));
        }
        Ok(())
    }
}

impl Validator<'_> {
    /// Metadata entries are read into memory: bounded.
    fn check_metadata_size(&self, size: u64, name: &str) -> Result<()> {
        if size > self.limits.max_metadata_size {
            return Err(ArchiveError::TooLarge {
                archive: self.file.to_path_buf(),
                entry: name.to_string(),
                what: "its size",
                size,
                limit: self.limits.max_metadata_size,
            });
        }
        Ok(())
    }

    fn invalid(
        &self,
        entry: &'static str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ArchiveError {
        ArchiveError::InvalidMetadata {
            archive: self.file.to_path_buf(),
            entry,
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn metadata(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        match path {
            CONFIG_DUMP => self.config = Some(parse_config(self.file, bytes)?),
            SPEC_DUMP => match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(v) if v.is_object() => self.spec = true,
                Ok(_) => return Err(self.invalid(SPEC_DUMP, "(document)", "not a JSON object")),
                Err(e) => {
                    return Err(self.invalid(SPEC_DUMP, "(document)", format!("not JSON: {e}")))
                }
            },
            DELETED_FILES => {
                let list: Vec<String> = serde_json::from_slice(bytes).map_err(|e| {
                    self.invalid(
                        DELETED_FILES,
                        "(document)",
                        format!("not a JSON list of strings: {e}"),
                    )
                })?;
                for (i, p) in list.iter().enumerate() {
                    check_deleted_path(p)
                        .map_err(|r| self.invalid(DELETED_FILES, format!("[{i}] {p:?}"), r))?;
                }
                self.deleted_files = list;
            }
            STATS_DUMP => {
                self.stats = serde_json::from_slice(bytes).map_err(|e| {
                    self.invalid(STATS_DUMP, "(document)", format!("not JSON: {e}"))
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks after the last entry: what must be there, and config.dump's list
    /// against what was found.
    fn finish(mut self) -> Result<Validated> {
        let file = self.file;
        // An archive of config.dump alone: settled here.
        self.settle_config(None)?;
        let Some((config, listed)) = self.config else {
            return Err(ArchiveError::Missing {
                archive: file.to_path_buf(),
                entry: CONFIG_DUMP,
                what: "godwit's record of the checkpoint",
            });
        };
        let found: HashMap<&str, &Checked> =
            self.entries.iter().map(|c| (c.path.as_str(), c)).collect();
        let mut listed_paths = HashSet::new();
        for l in &listed {
            listed_paths.insert(l.path.as_str());
            match found.get(l.path.as_str()) {
                None => {
                    return Err(ArchiveError::Corrupt {
                        archive: file.to_path_buf(),
                        entry: l.path.clone(),
                        reason: "config.dump lists it but the archive does not hold it (cut short?)".into(),
                        source: None,
                    })
                }
                Some(c) if c.kind != l.kind || c.size != l.size => {
                    return Err(ArchiveError::Corrupt {
                        archive: file.to_path_buf(),
                        entry: l.path.clone(),
                        reason: format!(
                            "config.dump lists it as a {:?} of {} bytes, the archive holds a {:?} of {} bytes",
                            l.kind, l.size, c.kind, c.size
                        ),
                        source: None,
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self.entries.iter().find(|c| {
            c.path != CONFIG_DUMP && c.path != SIGNATURE && !listed_paths.contains(c.path.as_str())
        }) {
            return Err(ArchiveError::UnsafeEntry {
                archive: file.to_path_buf(),
                entry: extra.path.clone(),
                reason: "config.dump does not list it (it was added after export)".into(),
            });
        }
        if !self.spec {
            return Err(ArchiveError::Missing {
                archive: file.to_path_buf(),
                entry: SPEC_DUMP,
                what: "the container's OCI spec",
            });
        }
        let image_prefix = format!("{IMAGE_DIR}/");
        if !self
            .entries
            .iter()
            .any(|c| c.kind == Kind::File && c.path.starts_with(&image_prefix))
        {
            return Err(ArchiveError::Missing {
                archive: file.to_path_buf(),
                entry: "checkpoint/",
                what: "the process image",
            });
        }
        let has_rootfs_diff = found.contains_key(ROOTFS_DIFF);
        Ok(Validated {
            signature: self.signature,
            entries: self.entries,
            config,
            deleted_files: self.deleted_files,
            stats: self.stats,
            has_rootfs_diff,
            total: self.total,
        })
    }
}

/// config.dump: the format version and the architecture first, so that a
/// newer or foreign archive gets that error rather than a parse error.
fn parse_config(file: &Path, bytes: &[u8]) -> Result<(ArchiveConfig, Vec<ListedEntry>)> {
    let invalid = |field: &str, reason: String| ArchiveError::InvalidMetadata {
        archive: file.to_path_buf(),
        entry: CONFIG_DUMP,
        field: field.to_string(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid("(document)", format!("not JSON: {e}")))?;
    let major = v
        .pointer("/format/major")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| invalid("format.major", "missing or not a number".into()))?;
    let minor = v
        .pointer("/format/minor")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if major != u64::from(FORMAT_MAJOR) {
        return Err(ArchiveError::UnsupportedFormat {
            archive: file.to_path_buf(),
            found_major: major,
            found_minor: minor,
            supported_major: FORMAT_MAJOR,
            supported_minor: FORMAT_MINOR,
            writer: v
                .get("godwit_version")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            ours: env!("CARGO_PKG_VERSION"),
        });
    }
    let arch = v
        .get("arch")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| invalid("arch", "missing or not a string".into()))?;
    if arch != std::env::consts::ARCH {
        return Err(ArchiveError::ForeignArch {
            archive: file.to_path_buf(),
            found: arch.to_string(),
            host: std::env::consts::ARCH,
        });
    }
    let listed: Vec<ListedEntry> = match v.get("entries") {
        Some(e) => serde_path_to_error::deserialize(e)
            .map_err(|err| invalid(&format!("entries{}", err.path()), err.inner().to_string()))?,
        None => return Err(invalid("entries", "missing".into())),
    };
    let config: ArchiveConfig = serde_path_to_error::deserialize(&v)
        .map_err(|err| invalid(&err.path().to_string(), err.inner().to_string()))?;
    if let Some(base) = &config.rootfs_base {
        let dirs = base.lowerdirs();
        if dirs.is_empty() {
            return Err(invalid("rootfs_base.lowerdirs", "empty".into()));
        }
        for (i, d) in dirs.iter().enumerate() {
            crate::overlay::check_option_path(d)
                .map_err(|r| invalid(&format!("rootfs_base[{i}] {}", d.display()), r.into()))?;
        }
    }
    Ok((config, listed))
}

/// `config.dump` for an archive sent entry by entry (`godwit migrate`): the
/// record plus the list of every other entry as `(path, is_dir, size)`, as
/// `export` writes it.
pub fn config_dump_for(config: &ArchiveConfig, entries: &[(String, bool, u64)]) -> Vec<u8> {
    let listed: Vec<ListedEntry> = entries
        .iter()
        .map(|(path, dir, size)| ListedEntry {
            path: path.clone(),
            kind: if *dir { Kind::Dir } else { Kind::File },
            size: *size,
            // The stream is authenticated by its channel (Noise, PSK).
            sha256: None,
        })
        .collect();
    config_dump_bytes(config, &listed).unwrap_or_default()
}

/// `import`'s checks, for an archive that arrives entry by entry and is
/// written into a directory as it comes (`godwit receive`): each entry's
/// place before a byte of it is written, its size as it grows, the metadata
/// entries' contents, and at the end what must be there and config.dump's
/// list against what came.
pub struct EntryChecker<'a> {
    v: Validator<'a>,
}

impl<'a> EntryChecker<'a> {
    /// `origin` names the stream in errors (e.g. `migration stream from ADDR`).
    pub fn new(origin: &'a Path, limits: &'a ImportLimits) -> Self {
        EntryChecker {
            v: Validator {
                file: origin,
                len: 0,
                seekable: false,
                limits,
                trust: None,
                config_raw: None,
                signature: SignatureStatus::Unsigned,
                listed: HashMap::new(),
                entries: Vec::new(),
                seen: HashSet::new(),
                files: HashSet::new(),
                implied_dirs: HashSet::new(),
                total: 0,
                config: None,
                spec: false,
                deleted_files: Vec::new(),
                stats: serde_json::Value::Null,
            },
        }
    }

    /// Before entry `path` is written. Returns the normalized path and
    /// whether its bytes must be handed to [`EntryChecker::end`] (metadata).
    pub fn begin(&mut self, path: &str, dir: bool) -> Result<(String, bool)> {
        let norm = entry_path(path.as_bytes()).map_err(|reason| ArchiveError::UnsafeEntry {
            archive: self.v.file.to_path_buf(),
            entry: path.to_string(),
            reason,
        })?;
        let kind = if dir { Kind::Dir } else { Kind::File };
        self.v.check_path(&norm, kind, path)?;
        let meta = !dir && is_metadata(&norm);
        Ok((norm, meta))
    }

    /// While entry `path` grows to `size` bytes: within the limits.
    pub fn grow(&self, path: &str, size: u64) -> Result<()> {
        let l = self.v.limits;
        let too_large = |what, size, limit| ArchiveError::TooLarge {
            archive: self.v.file.to_path_buf(),
            entry: path.to_string(),
            what,
            size,
            limit,
        };
        if size > l.max_entry_size {
            return Err(too_large("its size", size, l.max_entry_size));
        }
        if self.v.total.saturating_add(size) > l.max_total_size {
            return Err(too_large(
                "the total of the entries up to it",
                self.v.total.saturating_add(size),
                l.max_total_size,
            ));
        }
        if is_metadata(path) {
            self.v.check_metadata_size(size, path)?;
        }
        Ok(())
    }

    /// Entry `path` (normalized by `begin`) is complete.
    pub fn end(&mut self, path: &str, dir: bool, size: u64, metadata: Option<&[u8]>) -> Result<()> {
        let kind = if dir { Kind::Dir } else { Kind::File };
        self.v.check_size(path, kind, size, path)?;
        if let Some(bytes) = metadata {
            self.v.check_metadata_size(size, path)?;
            self.v.metadata(path, bytes)?;
        }
        self.v.entries.push(Checked {
            path: path.to_string(),
            kind,
            size,
            sha256: None,
        });
        Ok(())
    }

    /// After the last entry, written under `dir`: what must be there and
    /// config.dump's list against what came.
    pub fn finish(self, dir: &Path) -> Result<Imported> {
        let validated = self.v.finish()?;
        Ok(Imported {
            dir: dir.to_path_buf(),
            image_dir: dir.join(IMAGE_DIR),
            spec_dump: dir.join(SPEC_DUMP),
            rootfs_diff: validated.has_rootfs_diff.then(|| dir.join(ROOTFS_DIFF)),
            config: validated.config,
            deleted_files: validated.deleted_files,
            stats: validated.stats,
            compressed: false,
            signature: SignatureStatus::Unsigned,
        })
    }
}

fn validate(
    archive: &File,
    file: &Path,
    len: u64,
    compressed: bool,
    limits: &ImportLimits,
    trust: &Trust,
) -> Result<Validated> {
    let mut v = Validator {
        file,
        len,
        seekable: !compressed,
        limits,
        trust: Some(trust),
        config_raw: None,
        signature: SignatureStatus::Unsigned,
        listed: HashMap::new(),
        entries: Vec::new(),
        seen: HashSet::new(),
        files: HashSet::new(),
        implied_dirs: HashSet::new(),
        total: 0,
        config: None,
        spec: false,
        deleted_files: Vec::new(),
        stats: serde_json::Value::Null,
    };
    each_entry(archive, file, compressed, &mut v)?;
    v.finish()
}

/// The second pass: writes each entry, which must be the one the first pass
/// checked (the file could have been replaced in between).
struct Extractor<'a> {
    file: &'a Path,
    dest: &'a Path,
    root: OwnedFd,
    expected: &'a [Checked],
    index: usize,
    buf: Vec<u8>,
}

impl Visitor for Extractor<'_> {
    fn visit<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        name: &str,
    ) -> Result<()> {
        let file = self.file;
        let changed = || ArchiveError::Corrupt {
            archive: file.to_path_buf(),
            entry: name.to_string(),
            reason: "the archive changed while being imported (it differs from the first read)"
                .into(),
            source: None,
        };
        let Some(expected) = self.expected.get(self.index) else {
            return Err(changed());
        };
        let seen = Checked {
            path: entry_path(raw).map_err(|_| changed())?,
            kind: entry_kind(entry).map_err(|_| changed())?,
            size: entry.size(),
            sha256: expected.sha256.clone(),
        };
        if &seen != expected {
            return Err(changed());
        }
        self.index += 1;
        let target = self.dest.join(&seen.path);
        let comps: Vec<&str> = seen.path.split('/').collect();
        match seen.kind {
            Kind::Dir => {
                open_dirs(&self.root, &comps).map_err(io_err(&target, "creating the directory"))?;
            }
            Kind::File => {
                let (leaf, parents) = comps.split_last().ok_or_else(changed)?;
                let parent = open_dirs(&self.root, parents)
                    .map_err(io_err(&target, "creating its directory"))?;
                let fd = nix::fcntl::openat(
                    Some(parent.as_raw_fd()),
                    *leaf,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| io_err(&target, "creating the file")(e.into()))?;
                // SAFETY: openat just returned this descriptor, owned by no one else.
                let mut out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                // Exactly 0600 whatever the umask.
                out.set_permissions(fs::Permissions::from_mode(0o600))
                    .map_err(io_err(&target, "setting the file's mode"))?;
                let mut remaining = seen.size;
                let mut hash = godwit_checkpoint::digest::Hasher::new();
                while remaining > 0 {
                    let want = remaining.min(self.buf.len() as u64) as usize;
                    let n = match entry.read(&mut self.buf[..want]) {
                        Ok(0) => {
                            return Err(short_entry(file, name, seen.size - remaining, seen.size))
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(corrupt_read(file, name, e)),
                    };
                    hash.update(&self.buf[..n]);
                    out.write_all(&self.buf[..n])
                        .map_err(io_err(&target, "writing the extracted file"))?;
                    remaining -= n as u64;
                }
                // The bytes written are the ones the first pass verified.
                if let Some(want) = &expected.sha256 {
                    if &hash.finalize() != want {
                        return Err(changed());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Opens (creating, 0700) the directories `comps` below `root`, one at a time
/// and never following a symlink.
fn open_dirs(root: &OwnedFd, comps: &[&str]) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone()?;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    for c in comps {
        let fd = match nix::fcntl::openat(Some(cur.as_raw_fd()), *c, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => {
                nix::sys::stat::mkdirat(
                    Some(cur.as_raw_fd()),
                    *c,
                    Mode::from_bits_truncate(0o700),
                )?;
                nix::fcntl::openat(Some(cur.as_raw_fd()), *c, flags, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        // SAFETY: openat just returned this descriptor, owned by no one else.
        cur = unsafe { OwnedFd::from_raw_fd(fd) };
        // Exactly 0700 whatever the umask.
        nix::sys::stat::fchmod(cur.as_raw_fd(), Mode::from_bits_truncate(0o700))?;
    }
    Ok(cur)
}

/// Extracts into `dest` (just created, or an existing empty directory when
/// `dest_existed`); on failure leaves it as it was found.
fn extract_or_clean(
    archive: &File,
    file: &Path,
    compressed: bool,
    dest: &Path,
    dest_existed: bool,
    expected: &[Checked],
) -> Result<()> {
    let result = fs::set_permissions(dest, fs::Permissions::from_mode(0o700))
        .map_err(io_err(dest, "setting the import directory's mode"))
        .and_then(|()| extract(archive, file, compressed, dest, expected));
    if result.is_err() {
        // Leave nothing half-extracted behind.
        if dest_existed {
            remove_contents(dest);
        } else {
            let _ = fs::remove_dir_all(dest);
        }
    }
    result
}

fn extract(
    archive: &File,
    file: &Path,
    compressed: bool,
    dest: &Path,
    expected: &[Checked],
) -> Result<()> {
    let root = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(dest, "opening the import directory")(e.into()))?;
    let mut x = Extractor {
        file,
        dest,
        // SAFETY: open just returned this descriptor, owned by no one else.
        root: unsafe { OwnedFd::from_raw_fd(root) },
        expected,
        index: 0,
        buf: vec![0; IO_BUF],
    };
    each_entry(archive, file, compressed, &mut x)?;
    if x.index != expected.len() {
        return Err(ArchiveError::Corrupt {
            archive: file.to_path_buf(),
            entry: "(end)".into(),
            reason: "the archive changed while being imported (it has fewer entries than on the first read)".into(),
            source: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_changes_travel_once_at_the_top() {
        assert!(moved_to_top("checkpoint/rootfs-diff.tar"));
        assert!(moved_to_top("checkpoint/deleted.files"));
        assert!(!moved_to_top("rootfs-diff.tar"));
        assert!(!moved_to_top("checkpoint/sub/deleted.files"));
        assert!(!moved_to_top("checkpointx/deleted.files"));
        assert!(!moved_to_top("checkpoint/inventory.json"));
    }

    #[test]
    fn config_dump_then_signature_then_the_rest() {
        let body = vec![Planned {
            name: SPEC_DUMP.into(),
            source: Source::Dir,
        }];
        let names = |p: &[Planned]| p.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        let plan = with_head(b"{}".to_vec(), Some(b"sig".to_vec()), body);
        assert_eq!(names(&plan), [CONFIG_DUMP, SIGNATURE, SPEC_DUMP]);
        let plan = with_head(b"{}".to_vec(), None, Vec::new());
        assert_eq!(names(&plan), [CONFIG_DUMP]);
    }

    #[test]
    fn temporary_names_are_recognised_by_pid() {
        let t = temporary_name("c.tar.zst", 42, 7);
        assert_eq!(t, ".c.tar.zst.42.7.tmp");
        assert!(is_temporary(&t, "c.tar.zst", 42));
        assert!(!is_temporary(&t, "c.tar.zst", 4));
        assert!(!is_temporary(&t, "c.tar", 42));
        assert!(!is_temporary(".c.tar.zst.42.7", "c.tar.zst", 42));
    }

    #[test]
    fn config_dump_lists_the_entries() {
        let listed = vec![ListedEntry {
            path: "spec.dump".into(),
            kind: Kind::File,
            size: 2,
            sha256: Some("ab".into()),
        }];
        let bytes = config_dump_bytes(&ArchiveConfig::new("c1"), &listed).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["entries"][0]["path"], "spec.dump");
        assert_eq!(v["entries"][0]["type"], "file");
        assert_eq!(v["entries"][0]["sha256"], "ab");
    }

    /// An archive that differs on the second read (here: the list the first
    /// pass made is altered) fails extraction midway, and what was written
    /// is removed again.
    #[test]
    fn failed_extraction_leaves_nothing() {
        let tmp = tempfile::TempDir::new().unwrap();
        let image = tmp.path().join("image");
        fs::create_dir(&image).unwrap();
        fs::write(image.join("pages-1.img"), vec![1u8; 3 << 20]).unwrap();
        fs::write(image.join("zz-last.json"), b"{}").unwrap();
        let contents = ArchiveContents {
            image_dir: image,
            spec_dump: b"{}".to_vec(),
            config: ArchiveConfig::new("c1"),
            rootfs_diff: None,
            deleted_files: vec![],
            stats: serde_json::Value::Null,
        };
        for (name, compressed) in [("a.tar", false), ("a.tar.zst", true)] {
            let file = tmp.path().join(name);
            export(&contents, &file).unwrap();
            let archive = File::open(&file).unwrap();
            let len = archive.metadata().unwrap().len();
            let mut checked = validate(
                &archive,
                &file,
                len,
                compressed,
                &ImportLimits::default(),
                &Trust::default(),
            )
            .unwrap()
            .entries;
            checked.last_mut().unwrap().size += 1;

            let fresh = tmp.path().join(format!("{name}.fresh"));
            fs::create_dir(&fresh).unwrap();
            let err =
                extract_or_clean(&archive, &file, compressed, &fresh, false, &checked).unwrap_err();
            assert!(
                err.to_string().contains("changed while being imported"),
                "{err}"
            );
            assert!(!fresh.exists());

            let existing = tmp.path().join(format!("{name}.existing"));
            fs::create_dir(&existing).unwrap();
            extract_or_clean(&archive, &file, compressed, &existing, true, &checked).unwrap_err();
            assert_eq!(fs::read_dir(&existing).unwrap().count(), 0);
        }
    }

    #[test]
    fn entry_paths() {
        assert_eq!(entry_path(b"checkpoint/").unwrap(), "checkpoint");
        assert_eq!(
            entry_path(b"checkpoint/pages-1.img").unwrap(),
            "checkpoint/pages-1.img"
        );
        assert!(entry_path(b"/etc/passwd").unwrap_err().contains("absolute"));
        assert!(entry_path(b"checkpoint/../../x")
            .unwrap_err()
            .contains(".."));
        assert!(entry_path(b"./spec.dump").is_err());
        assert!(entry_path(b"checkpoint//x").is_err());
        assert!(entry_path(b"").is_err());
        assert!(entry_path(b"\xff").is_err());
    }

    #[test]
    fn deleted_paths() {
        assert!(check_deleted_path("/etc/motd").is_ok());
        assert!(check_deleted_path("var/log/x").is_ok());
        assert!(check_deleted_path("/../etc").is_err());
        assert!(check_deleted_path("/").is_err());
    }

    #[test]
    fn zstd_by_name() {
        assert!(wants_zstd(Path::new("/a/b.tar.zst")));
        assert!(wants_zstd(Path::new("b.zst")));
        assert!(!wants_zstd(Path::new("b.tar")));
        assert!(!wants_zstd(Path::new("zst")));
    }

    #[test]
    fn tar_checksum() {
        let mut h = tar::Header::new_gnu();
        h.set_path("spec.dump").unwrap();
        h.set_size(3);
        h.set_cksum();
        assert!(tar_checksum_ok(h.as_bytes()));
        let mut bytes = *h.as_bytes();
        bytes[0] ^= 1;
        assert!(!tar_checksum_ok(&bytes));
        assert!(!tar_checksum_ok(&[0u8; 512]));
    }
}
