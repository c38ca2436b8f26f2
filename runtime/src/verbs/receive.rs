//! `godwit receive`: the destination side of a migration (docs/migrate.md).
//! Waits for one `godwit migrate`, refuses a peer without the key before
//! reading anything else, takes the archive entry by entry under
//! `restore --import`'s checks (each record authenticated before it is
//! used), restores it as a detached container and tells the source, which
//! only then ends its copy.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::archive::{EntryChecker, ImportLimits};
use crate::error::{Result, RuntimeError};
use crate::migrate::{us, Channel, Kind, Progress, MAX_BODY};
use crate::requests::{RestoreRequest, RestoreSource, RuntimeOptions};
use crate::store::{validate_id, StateRoot};

/// What `godwit receive` is asked to do.
#[derive(Clone, Debug)]
pub struct ReceiveRequest {
    pub id: String,
    pub listen: String,
    pub key: PathBuf,
    /// A copy of the source's bundle; None: recreated as `restore --import` does.
    pub bundle: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub work_path: Option<PathBuf>,
    /// As `RestoreRequest::rootfs_base_dirs`.
    pub rootfs_base_dirs: Vec<PathBuf>,
    pub quiet: bool,
}

/// Phase timings (µs) and sizes of a migration, as the receiver saw them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReceiveSummary {
    pub id: String,
    pub from: String,
    pub source_id: String,
    /// From the accepted connection to the last record of the archive.
    pub transfer_us: u64,
    /// The restore, from the end of the stream to the container running.
    pub restore_us: u64,
    pub total_us: u64,
    pub bytes_received: u64,
    pub bytes_raw: u64,
    pub pid: i32,
    /// The source said it ended its copy (false: it may still run there).
    pub source_gone: bool,
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Binds the listening socket (so a caller can print where it waits).
pub fn listen(addr: &str) -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).map_err(|e| RuntimeError::Migrate {
        role: "on",
        peer: addr.to_string(),
        reason: format!("cannot listen: {e}"),
    })
}

pub fn receive(
    root: &StateRoot,
    global: &RuntimeOptions,
    req: &ReceiveRequest,
    listener: &std::net::TcpListener,
    on_running: impl FnOnce(i32),
) -> Result<ReceiveSummary> {
    let id = req.id.as_str();
    validate_id(id)?;
    let key = crate::migrate::read_key(&req.key)?;
    if root.exists(id) || root.container_dir(id).exists() {
        return Err(RuntimeError::AlreadyExists {
            id: id.to_string(),
            root: root.path().to_path_buf(),
        });
    }
    let (mut ch, hello) = Channel::accept(listener, &key)?;
    let t0 = Instant::now();
    let progress = Progress::new(format!("receive {id}"), req.quiet);
    progress.phase(&format!(
        "receiving {} from {} (godwit {})",
        hello.id,
        ch.peer(),
        hello.godwit_version
    ));
    let staging = root.path().join(format!(".{id}.receive"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| RuntimeError::io(&staging, e))?;
    let _cleanup = RemoveOnDrop(staging.clone());
    let origin = PathBuf::from(format!("migration stream from {}", ch.peer()));
    let limits = ImportLimits::default();
    let received = take_archive(&mut ch, &staging, &origin, &limits, &progress);
    let (imported, raw) = match received {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            let _ = ch.send(Kind::Failed, e.to_string().as_bytes());
            return Err(e);
        }
    };
    let transfer_us = us(t0);
    progress.phase("restoring");
    let t_restore = Instant::now();
    let args = restore_args(req, &origin);
    let restored = crate::verbs::restore::restore_imported(root, global, &args, &imported, None);
    if let Err(e) = restored {
        progress.finish();
        let _ = ch.send(Kind::Failed, format!("{e:#}").as_bytes());
        return Err(e);
    }
    let restore_us = us(t_restore);
    let pid = root
        .load(id)
        .ok()
        .and_then(|c| c.pid())
        .map(|p| p.as_raw())
        .unwrap_or(0);
    let mut summary = ReceiveSummary {
        id: id.to_string(),
        from: ch.peer().to_string(),
        source_id: hello.id.clone(),
        transfer_us,
        restore_us,
        bytes_raw: raw,
        pid,
        ..Default::default()
    };
    let report = serde_json::to_vec(&summary).unwrap_or_default();
    if let Err(e) = ch.send(Kind::Restored, &report) {
        // The source never heard that it runs here: it lets its own copy
        // run on. Two copies must not run: end ours.
        progress.finish();
        let _ = crate::verbs::delete::delete(root, id, true);
        return Err(RuntimeError::Migrate {
            role: "from",
            peer: summary.from.clone(),
            reason: format!("{e}; the source keeps the container, removed here"),
        });
    }
    on_running(pid);
    progress.phase("waiting for the source to end its copy");
    ch.set_read_timeout(Some(Duration::from_secs(60)));
    match ch.expect(Kind::SourceGone) {
        Ok(body) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match v.get("error") {
                Some(err) => eprintln!(
                    "godwit: warning: the source could not remove its copy of {}: {err}",
                    hello.id
                ),
                None => summary.source_gone = true,
            }
        }
        Err(e) => eprintln!(
            "godwit: warning: no word from the source that its copy of {} ended ({e}); check it is gone there",
            hello.id
        ),
    }
    summary.bytes_received = ch.bytes_received;
    summary.total_us = us(t0);
    progress.finish();
    Ok(summary)
}

/// `restore --import --detach` of the received archive.
fn restore_args(req: &ReceiveRequest, origin: &Path) -> RestoreRequest {
    RestoreRequest {
        id: req.id.clone(),
        source: RestoreSource::Archive(origin.to_path_buf()),
        bundle: req.bundle.clone(),
        work_path: req.work_path.clone(),
        detach: true,
        pid_file: req.pid_file.clone(),
        console_socket: None,
        no_pivot: false,
        import: Default::default(),
        rootfs_base_dirs: req.rootfs_base_dirs.clone(),
    }
}

/// Receives the archive's entries into `dir` until the source says it is
/// complete; every check of `restore --import` applies (EntryChecker).
fn take_archive(
    ch: &mut Channel,
    dir: &Path,
    origin: &Path,
    limits: &ImportLimits,
    progress: &Progress,
) -> Result<(crate::archive::Imported, u64)> {
    let mut checker = EntryChecker::new(origin, limits);
    let refuse = |reason: String| RuntimeError::Migrate {
        role: "from",
        peer: origin.display().to_string(),
        reason: format!("refused: {reason}"),
    };
    let mut zstd = zstd::bulk::Decompressor::new().map_err(|e| refuse(e.to_string()))?;
    let mut unz = vec![0u8; MAX_BODY];
    let mut raw_total = 0u64;
    // The entry being received: (path, file or None for a directory,
    // metadata bytes, length so far).
    type Cur = (
        String,
        Option<std::io::BufWriter<std::fs::File>>,
        Option<Vec<u8>>,
        u64,
    );
    let mut cur: Option<Cur> = None;
    loop {
        let (kind, body) = ch.recv()?;
        match kind {
            Kind::Begin => {
                if cur.is_some() {
                    return Err(refuse("an entry begins inside another".into()));
                }
                let name = std::str::from_utf8(body)
                    .map_err(|_| refuse("an entry name that is not UTF-8".into()))?
                    .to_string();
                let is_dir = name.ends_with('/');
                let (path, meta) = checker.begin(&name, is_dir)?;
                let target = dir.join(&path);
                if is_dir {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&target)
                        .map_err(|e| RuntimeError::io(&target, e))?;
                    cur = Some((path, None, None, 0));
                } else {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(&target)
                        .map_err(|e| RuntimeError::io(&target, e))?;
                    let w = std::io::BufWriter::with_capacity(1 << 20, f);
                    cur = Some((path, Some(w), meta.then(Vec::new), 0));
                }
            }
            Kind::Data | Kind::DataZstd => {
                let data: &[u8] = if kind == Kind::DataZstd {
                    let n = zstd
                        .decompress_to_buffer(body, &mut unz)
                        .map_err(|e| refuse(format!("a compressed record does not decode: {e}")))?;
                    &unz[..n]
                } else {
                    body
                };
                let Some((path, Some(w), meta, len)) = cur.as_mut() else {
                    return Err(refuse("data outside a file entry".into()));
                };
                *len += data.len() as u64;
                checker.grow(path, *len)?;
                if let Some(m) = meta {
                    m.extend_from_slice(data);
                }
                w.write_all(data)
                    .map_err(|e| RuntimeError::io(dir.join(&*path), e))?;
                raw_total += data.len() as u64;
                progress.add(data.len() as u64);
            }
            Kind::End => {
                let (path, w, meta, len) = cur
                    .take()
                    .ok_or_else(|| refuse("an entry ends that never began".into()))?;
                let said = body
                    .try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| refuse("a malformed entry end".into()))?;
                if said != len {
                    return Err(refuse(format!(
                        "entry {path}: the source says {said} bytes, {len} came"
                    )));
                }
                let is_dir = w.is_none();
                if let Some(w) = w {
                    let f = w
                        .into_inner()
                        .map_err(|e| RuntimeError::io(dir.join(&path), e.into_error()))?;
                    drop(f);
                }
                checker.end(&path, is_dir, len, meta.as_deref())?;
            }
            Kind::Done => {
                if cur.is_some() {
                    return Err(refuse("the stream ends inside an entry".into()));
                }
                let imported = checker.finish(dir)?;
                return Ok((imported, raw_total));
            }
            Kind::Abort => {
                return Err(RuntimeError::Migrate {
                    role: "from",
                    peer: origin.display().to_string(),
                    reason: format!(
                        "the source gave up (its container runs on there): {}",
                        String::from_utf8_lossy(body)
                    ),
                })
            }
            other => return Err(refuse(format!("unexpected record {other:?}"))),
        }
    }
}
