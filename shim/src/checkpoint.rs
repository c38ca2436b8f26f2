//! Checkpoint and restore of a task: containerd's `CheckpointOptions` mapped
//! onto the runtime's checkpoint verb, and the checks a checkpoint directory
//! passes at Create before anything is mounted or created.

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::CheckpointOptions;
use godwit_checkpoint::image::ImageReader;
use godwit_checkpoint::ProcessImage;
use godwit_runtime::requests::{CheckpointRequest, RestoreRequest};
use godwit_runtime::verbs::checkpoint::SPEC_DUMP;

use crate::error::{Result, ShimError};

/// What a Checkpoint call asks for, once every option was accepted.
#[derive(Debug, Clone)]
pub struct Request {
    /// Where the image is written.
    pub image: PathBuf,
    /// The task ends after a successful dump.
    pub exit: bool,
    /// The caller asked for file locks to travel (see [`check_no_locks`]).
    pub file_locks: bool,
    /// Where work files go (the dumper writes none for an image directory).
    pub work_path: Option<PathBuf>,
}

/// Decodes `containerd.runc.v1.CheckpointOptions` (absent: the defaults) and
/// refuses, by field name, what godwit's dumper does not do.
pub fn decode(any: Option<&Any>, path: &str) -> Result<Request> {
    let opts = match any {
        Some(any) if !any.value.is_empty() => {
            // containerd sends the type name without a '/': Any::unpack fails on it.
            if !any
                .type_url
                .ends_with("containerd.runc.v1.CheckpointOptions")
            {
                return Err(ShimError::invalid(
                    "options",
                    format!(
                        "type {:?} is not supported; godwit takes containerd.runc.v1.CheckpointOptions",
                        any.type_url
                    ),
                ));
            }
            CheckpointOptions::parse_from_bytes(&any.value)
                .map_err(|e| ShimError::invalid("options", e.to_string()))?
        }
        _ => CheckpointOptions::default(),
    };
    let refused: [(&str, bool, &str); 4] = [
        (
            "options.open_tcp",
            opts.open_tcp,
            "established TCP connections are not carried by godwit's dumper",
        ),
        (
            "options.external_unix_sockets",
            opts.external_unix_sockets,
            "unix sockets connected outside the container are not supported",
        ),
        (
            "options.terminal",
            opts.terminal,
            "tasks with a terminal cannot be restored by godwit yet, so they are not checkpointed",
        ),
        (
            "options.empty_namespaces",
            !opts.empty_namespaces.is_empty(),
            "every namespace is recreated from the spec on restore; the option has no meaning for godwit",
        ),
    ];
    for (field, given, why) in refused {
        if given {
            return Err(ShimError::invalid(field, format!("{why}; leave it unset")));
        }
    }
    if !opts.cgroups_mode.is_empty() && opts.cgroups_mode != "soft" {
        return Err(ShimError::invalid(
            "options.cgroups_mode",
            format!(
                "{:?}: only \"soft\" (cgroups recreated from the spec on restore) is supported; leave it unset",
                opts.cgroups_mode
            ),
        ));
    }
    let image = if opts.image_path.is_empty() {
        PathBuf::from(path)
    } else {
        PathBuf::from(&opts.image_path)
    };
    if image.as_os_str().is_empty() {
        return Err(ShimError::invalid(
            "path",
            "empty: containerd names the directory to write the image into",
        ));
    }
    Ok(Request {
        image,
        exit: opts.exit,
        file_locks: opts.file_locks,
        work_path: (!opts.work_path.is_empty()).then(|| PathBuf::from(&opts.work_path)),
    })
}

/// Refuses a dump of processes holding file locks, which the dumper does not
/// carry: `file_locks` (which `ctr containers checkpoint` always sets) is
/// honoured when there is nothing to carry. OFD locks name no pid in
/// /proc/locks and are not seen here.
pub fn check_no_locks(id: &str, pids: &[i32], file_locks: bool) -> Result<()> {
    let text =
        std::fs::read_to_string("/proc/locks").map_err(|e| ShimError::io("/proc/locks", e))?;
    let held: Vec<i32> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<i32>().ok())
        .filter(|pid| pids.contains(pid))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    let field = if file_locks {
        "options.file_locks"
    } else {
        "checkpoint"
    };
    Err(ShimError::invalid(
        field,
        format!(
            "task {id}: processes {held:?} hold file locks, which godwit's dumper does not carry; \
             release them before the checkpoint"
        ),
    ))
}

/// The runtime's checkpoint request for `request`. With `exit` the runtime
/// kills the dumped tree itself (its TCP peers get a reset) and removes the
/// container's state; the shim reports the init's exit as for any task.
pub fn runtime_request(id: &str, request: &Request) -> CheckpointRequest {
    CheckpointRequest {
        work_path: request.work_path.clone(),
        leave_running: !request.exit,
        ..CheckpointRequest::new(id, &request.image)
    }
}

/// The runtime's restore request: image `image` restored as `id` on the
/// bundle's (already mounted) rootfs, returning once it runs.
pub fn restore_request(id: &str, bundle: &Path, image: &Path, no_pivot: bool) -> RestoreRequest {
    RestoreRequest {
        no_pivot,
        ..RestoreRequest::detached(id, image, bundle)
    }
}

/// Checks a checkpoint directory before a restore is recorded: a godwit image
/// of a format this build reads, whose records are whole, with the spec the
/// container ran with. containerd unpacks the checkpoint's content into the
/// directory itself; an image one level down is accepted too. Returns the
/// image directory.
pub fn check_image(id: &str, dir: &Path) -> Result<PathBuf> {
    let image = find_image(dir)?;
    let bad = |e: godwit_checkpoint::Error| {
        ShimError::invalid(
            "checkpoint",
            format!(
                "task {id}: {} is not a usable godwit checkpoint image: {e}; \
                 checkpoint the task again with this godwit (`ctr containers checkpoint --task`)",
                image.display()
            ),
        )
    };
    let reader = ImageReader::open(&image).map_err(bad)?;
    for entry in &reader.inventory.processes {
        let _: ProcessImage = reader.read_json(&entry.record).map_err(bad)?;
    }
    let spec_path = image.join(SPEC_DUMP);
    let text = std::fs::read_to_string(&spec_path).map_err(|e| {
        ShimError::invalid(
            "checkpoint",
            format!(
                "task {id}: {}: {e} (not an image written by godwit's checkpoint)",
                spec_path.display()
            ),
        )
    })?;
    let _: oci_spec::runtime::Spec = godwit_runtime::bundle::parse_json(&spec_path, &text)
        .map_err(|e| ShimError::runtime(id, e))?;
    godwit_runtime::timens::read_dump(&image).map_err(|e| ShimError::runtime(id, e))?;
    Ok(image)
}

/// The directory holding the image's inventory: `dir`, or its only subdirectory.
fn find_image(dir: &Path) -> Result<PathBuf> {
    let inventory = godwit_checkpoint::image::INVENTORY;
    if dir.join(inventory).exists() {
        return Ok(dir.to_path_buf());
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ShimError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    if let [only] = entries.as_slice() {
        if only.join(inventory).exists() {
            return Ok(only.clone());
        }
    }
    let what = if entries.is_empty() {
        "it is empty".to_string()
    } else {
        format!("it has no {inventory}")
    };
    Err(ShimError::invalid(
        "checkpoint",
        format!(
            "{}: {what}: no godwit checkpoint image there (was it written by `ctr containers \
             checkpoint --task` with runtime io.containerd.godwit.v2?)",
            dir.display()
        ),
    ))
}
