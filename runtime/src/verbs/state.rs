use serde::Serialize;

use libcontainer::container::Container;

use crate::error::Result;
use crate::store::StateRoot;

/// runc's `state` output.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StateDoc {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

pub fn describe(container: &Container) -> StateDoc {
    let bundle = crate::restored::shown_bundle(container);
    let rootfs = crate::store::recorded_spec(container)
        .map(|spec| crate::bundle::rootfs(&bundle, &spec))
        .unwrap_or_else(|_| bundle.join("rootfs"));
    let running = matches!(
        container.status(),
        libcontainer::container::ContainerStatus::Running
            | libcontainer::container::ContainerStatus::Created
            | libcontainer::container::ContainerStatus::Paused
    );
    StateDoc {
        oci_version: container.state.oci_version.clone(),
        id: container.id().to_string(),
        // runc reports 0 once the process is gone.
        pid: if running {
            container.pid().map(|p| p.as_raw()).unwrap_or(0)
        } else {
            0
        },
        status: status_name(container.status()).to_string(),
        bundle: bundle.display().to_string(),
        rootfs: rootfs.display().to_string(),
        created: container
            .created()
            .map(|c| c.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default(),
        owner: container
            .creator()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        annotations: container.state.annotations.clone(),
    }
}

pub fn state(root: &StateRoot, id: &str) -> Result<StateDoc> {
    Ok(describe(&root.load(id)?))
}

/// The status as runc spells it.
pub fn status_name(status: libcontainer::container::ContainerStatus) -> &'static str {
    use libcontainer::container::ContainerStatus::*;
    match status {
        Creating => "creating",
        Created => "created",
        Running => "running",
        Stopped => "stopped",
        Paused => "paused",
    }
}
