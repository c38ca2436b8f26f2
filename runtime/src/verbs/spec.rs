use std::path::Path;

use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceCgroupBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, Spec,
};

use crate::error::{Result, RuntimeError};

fn spec_error(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::InvalidValue {
        what: "default spec",
        value: String::new(),
        reason: e.to_string(),
    }
}

/// The default spec, runc's (`runc spec`): a terminal `sh`, hostname "runc",
/// the bounding/effective/permitted/ambient capabilities AUDIT_WRITE, KILL and
/// NET_BIND_SERVICE (no inheritable ones), a deny-all device rule, and the
/// pid, network, ipc, uts and mount namespaces.
///
/// Rootless (`runc spec --rootless`): no device rule, a user namespace
/// mapping the caller to root instead of a network namespace, devpts without
/// `gid=5`, and `/sys` bind-mounted from the host read-only.
pub fn default_spec(rootless: bool) -> Result<Spec> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("runc".to_string()));
    spec.set_annotations(None);
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None);
            process.set_capabilities(Some(caps));
        }
    }
    let namespace = |typ| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .map_err(spec_error)
    };
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid)?,
        namespace(LinuxNamespaceType::Network)?,
        namespace(LinuxNamespaceType::Ipc)?,
        namespace(LinuxNamespaceType::Uts)?,
        namespace(LinuxNamespaceType::Mount)?,
    ];
    let Some(linux) = spec.linux_mut() else {
        return Err(RuntimeError::InvalidValue {
            what: "default spec",
            value: String::new(),
            reason: "oci-spec's default has no `linux` section".into(),
        });
    };
    if !rootless {
        linux.set_namespaces(Some(namespaces));
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(spec_error)?;
        linux.set_resources(Some(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_all])
                .build()
                .map_err(spec_error)?,
        ));
        return Ok(spec);
    }
    namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    namespaces.push(namespace(LinuxNamespaceType::User)?);
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .host_id(host)
            .container_id(0u32)
            .size(1u32)
            .build()
            .map_err(spec_error)
    };
    let mut rootless_linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .uid_mappings(vec![map(nix::unistd::geteuid().as_raw())?])
        .gid_mappings(vec![map(nix::unistd::getegid().as_raw())?])
        .masked_paths(linux.masked_paths().clone().unwrap_or_default())
        .readonly_paths(linux.readonly_paths().clone().unwrap_or_default())
        .build()
        .map_err(spec_error)?;
    rootless_linux.set_resources(None);
    spec.set_linux(Some(rootless_linux));
    let mounts: Vec<Mount> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|mut m| -> Result<Mount> {
            if m.destination() == Path::new("/dev/pts") {
                let options = m.options().clone().unwrap_or_default();
                m.set_options(Some(options.into_iter().filter(|o| o != "gid=5").collect()));
            } else if m.destination() == Path::new("/sys") {
                m = MountBuilder::default()
                    .destination("/sys")
                    .typ("none")
                    .source("/sys")
                    .options(
                        ["rbind", "nosuid", "noexec", "nodev", "ro"]
                            .map(String::from)
                            .to_vec(),
                    )
                    .build()
                    .map_err(spec_error)?;
            }
            Ok(m)
        })
        .collect::<Result<_>>()?;
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

/// Writes `<bundle>/config.json`, refusing to overwrite one (as runc).
pub fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(RuntimeError::Bundle {
            path: bundle.to_path_buf(),
            reason: "config.json already exists; remove it first".into(),
        });
    }
    let spec = default_spec(rootless)?;
    let mut value = serde_json::to_value(&spec).map_err(|e| RuntimeError::io(&path, e.into()))?;
    // oci-spec keeps capabilities in hash sets: write them sorted, as runc.
    if let Some(sets) = value
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for list in sets.values_mut().filter_map(|l| l.as_array_mut()) {
            list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
    let text =
        serde_json::to_string_pretty(&value).map_err(|e| RuntimeError::io(&path, e.into()))?;
    std::fs::write(&path, text + "\n").map_err(|e| RuntimeError::io(&path, e))
}
