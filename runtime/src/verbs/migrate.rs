//! `godwit migrate`: the source side of a migration (docs/migrate.md). The
//! container is frozen and dumped straight onto the encrypted stream (no
//! image directory), the receiver restores it, and only once it says the
//! container runs there is the tree here killed. Until then every failure —
//! refused key, network gone, receiver killed or failing — lets the
//! container run on here as if nothing had happened.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::migrate::{us, Channel, Hello, Kind, Progress, StreamSink};
use crate::store::StateRoot;

/// What `godwit migrate` is asked to do.
#[derive(Clone, Debug)]
pub struct MigrateRequest {
    pub id: String,
    /// ADDR:PORT of `godwit receive`.
    pub to: String,
    pub key: PathBuf,
    /// zstd level for the stream, or none.
    pub compress: Option<i32>,
    /// No progress lines on stderr.
    pub quiet: bool,
}

/// Parses `--compress none|zstd[:LEVEL]`.
pub fn parse_compress(text: &str) -> Result<Option<i32>> {
    let bad = |reason: &str| RuntimeError::InvalidValue {
        what: "--compress",
        value: text.to_string(),
        reason: reason.to_string(),
    };
    match text.split_once(':') {
        None if text == "none" => Ok(None),
        None if text == "zstd" => Ok(Some(1)),
        Some(("zstd", level)) => {
            let l: i32 = level
                .parse()
                .map_err(|_| bad("the level is not a number (zstd:1 .. zstd:19)"))?;
            if !(1..=19).contains(&l) {
                return Err(bad("the level must be 1 .. 19"));
            }
            Ok(Some(l))
        }
        _ => Err(bad("use none, zstd or zstd:LEVEL")),
    }
}

/// Phase timings (µs) and sizes of a migration, as the source saw them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MigrateSummary {
    pub id: String,
    pub to: String,
    pub mode: String,
    pub handshake_us: u64,
    /// Freezing every thread.
    pub freeze_us: u64,
    /// The dump onto the wire (pages included), frozen.
    pub dump_us: u64,
    /// Rootfs changes, spec and records after the dump.
    pub rootfs_us: u64,
    /// From the end of the stream to the receiver's "running".
    pub restore_wait_us: u64,
    /// From the freeze to the receiver's "running": the container ran nowhere.
    pub blackout_us: u64,
    pub total_us: u64,
    /// Bytes of the archive (before compression) and on the wire.
    pub bytes_raw: u64,
    pub bytes_sent: u64,
    pub pages: u64,
    pub processes: usize,
    pub threads: usize,
    /// The receiver's own report.
    pub receiver: serde_json::Value,
}

/// How long the source waits for the receiver's verdict (the container stays
/// frozen meanwhile; after it, it runs on here).
const VERDICT_WAIT: Duration = Duration::from_secs(300);

pub fn migrate(root: &StateRoot, req: &MigrateRequest) -> Result<MigrateSummary> {
    let t0 = Instant::now();
    let id = req.id.as_str();
    let key = crate::migrate::read_key(&req.key)?;
    let mut target = crate::verbs::checkpoint::read_target(root, id, "migrate")?;
    let progress = Progress::new(format!("migrate {id}"), req.quiet);
    progress.phase("connecting");
    // Before anything of the container changes: a wrong key or no receiver
    // costs the container nothing.
    let mut ch = Channel::connect(
        &req.to,
        &key,
        &Hello {
            godwit_version: env!("CARGO_PKG_VERSION").to_string(),
            id: id.to_string(),
            compress: req.compress,
        },
    )?;
    let mut summary = MigrateSummary {
        id: id.to_string(),
        to: req.to.clone(),
        mode: "stop-and-copy".into(),
        handshake_us: us(t0),
        ..Default::default()
    };

    crate::verbs::checkpoint::notify_before(&target)?;
    let mut extra_files = crate::verbs::checkpoint::extra_files(target.init, &target.spec)?;
    // A migrate process killed from here on leaves the container running
    // and thawed (the kernel detaches the tracees; the guard thaws).
    let mut guard = crate::dump_guard::DumpGuard::arm(crate::dump_guard::GuardPlan {
        id: id.to_string(),
        freezer: target.freezer_dir(),
        paused: target.paused,
        image: None,
        export: None,
    })?;
    let t_freeze = Instant::now();
    let scratch = match crate::verbs::checkpoint::capture_scratch(&target, &mut extra_files) {
        Ok(scratch) => scratch,
        Err(e) => {
            let _ = ch.send(Kind::Abort, e.to_string().as_bytes());
            return Err(e);
        }
    };
    progress.phase("dumping");
    let options = godwit_checkpoint::DumpOptions {
        extra_files,
        external_stdio: true,
        freeze_cgroup: target.freezer_dir(),
        keep_frozen: target.paused,
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut raw = 0;
    let held = crate::verbs::checkpoint::dump(&target, options, |opts| {
        let mut sink = StreamSink::new(&mut ch, req.compress, &progress)?;
        let r = sink.dir(crate::archive::IMAGE_DIR).and_then(|()| {
            sink.set_prefix("checkpoint/");
            godwit_checkpoint::dump_and_hold_to(&target.pids, &mut sink, opts)
                .map_err(|e| crate::verbs::checkpoint::dump_error(id, e))
        });
        entries = std::mem::take(&mut sink.entries);
        raw = sink.raw_bytes;
        r
    });
    let held = match held {
        Ok(h) => h,
        Err(e) => {
            scratch.thaw(id);
            let _ = ch.send(Kind::Abort, format!("{e}").as_bytes());
            return Err(e);
        }
    };
    let stats = held.stats().clone();
    summary.freeze_us = stats.freeze_us;
    summary.dump_us = us(t_freeze);
    summary.pages = stats.pages_written;
    summary.processes = stats.processes;
    summary.threads = stats.threads;

    // The rest of the archive: rootfs changes (staged in a private directory
    // beside the state), the spec, stats, and config.dump last with the list
    // of everything sent.
    progress.phase("rootfs changes");
    let t_rootfs = Instant::now();
    let staging = root.path().join(format!(".{id}.migrate"));
    let _ = std::fs::remove_dir_all(&staging);
    let rest = (|| -> Result<()> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| RuntimeError::io(&staging, e))?;
        let (container, spec) = (&target.container, &target.spec);
        let captured = crate::verbs::checkpoint::capture_rootfs(container, spec, &staging)?;
        let mut sink = StreamSink::new(&mut ch, req.compress, &progress)?;
        sink.entries = std::mem::take(&mut entries);
        sink.raw_bytes = raw;
        let spec_bytes = serde_json::to_vec(spec)
            .map_err(|e| RuntimeError::io(crate::archive::SPEC_DUMP, e.into()))?;
        sink.file(crate::archive::SPEC_DUMP, &spec_bytes)?;
        sink.file_from(crate::archive::ROOTFS_DIFF, &captured.diff)?;
        let deleted = serde_json::to_vec(&captured.deleted)
            .map_err(|e| RuntimeError::io(crate::archive::DELETED_FILES, e.into()))?;
        sink.file(crate::archive::DELETED_FILES, &deleted)?;
        let stats_bytes = serde_json::to_vec(&crate::verbs::checkpoint::stats_json(
            &stats,
            captured.entries,
        ))
        .map_err(|e| RuntimeError::io(crate::archive::STATS_DUMP, e.into()))?;
        sink.file(crate::archive::STATS_DUMP, &stats_bytes)?;
        let config = crate::verbs::checkpoint::archive_config(container, spec, &captured);
        let config_bytes = crate::archive::config_dump_for(&config, &sink.entries);
        sink.file(crate::archive::CONFIG_DUMP, &config_bytes)?;
        raw = sink.raw_bytes;
        sink.channel().send(Kind::Done, b"{}")
    })();
    let _ = std::fs::remove_dir_all(&staging);
    summary.rootfs_us = us(t_rootfs);
    if let Err(e) = rest {
        let _ = ch.send(Kind::Abort, e.to_string().as_bytes());
        let _ = held.abort();
        scratch.thaw(id);
        return Err(e);
    }
    summary.bytes_raw = raw;

    // The receiver's verdict. Until "restored" the tree is only held here.
    progress.phase("waiting for the receiver to restore");
    let t_wait = Instant::now();
    ch.set_read_timeout(Some(VERDICT_WAIT));
    let verdict = ch.expect(Kind::Restored);
    summary.restore_wait_us = us(t_wait);
    let receiver = match verdict {
        Ok(body) => serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        Err(e) => {
            let _ = held.abort();
            scratch.thaw(id);
            progress.finish();
            return Err(RuntimeError::Migrate {
                role: "to",
                peer: req.to.clone(),
                reason: format!("{e}; the container runs on here"),
            });
        }
    };
    summary.blackout_us = us(t_freeze);
    summary.receiver = receiver;
    // It runs there: it must not run here too.
    progress.phase("ending the container here");
    guard.keep_image();
    let finished = held
        .finish()
        .map_err(|e| crate::verbs::checkpoint::dump_error(id, e));
    let deleted =
        finished.and_then(|_| crate::verbs::checkpoint::remove_dumped(&mut target.container, id));
    drop(guard);
    let gone = match &deleted {
        Ok(()) => "{}".to_string(),
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
    };
    let _ = ch.send(Kind::SourceGone, gone.as_bytes());
    summary.bytes_sent = ch.bytes_sent;
    summary.total_us = us(t0);
    progress.finish();
    deleted?;
    Ok(summary)
}
