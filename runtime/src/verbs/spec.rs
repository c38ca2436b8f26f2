use std::path::Path;

use oci_spec::runtime::{
    LinuxBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec,
};

use crate::error::{Result, RuntimeError};

/// The default spec (runc's: busybox-style `sh`, default mounts and namespaces);
/// rootless adds a user namespace mapping the caller to root and drops the
/// network namespace.
pub fn default_spec(rootless: bool) -> Result<Spec> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("godwit".to_string()));
    if rootless {
        let err = |e: oci_spec::OciSpecError| RuntimeError::InvalidValue {
            what: "rootless spec",
            value: String::new(),
            reason: e.to_string(),
        };
        let mut namespaces: Vec<_> = oci_spec::runtime::get_default_namespaces()
            .into_iter()
            .filter(|ns| {
                ns.typ() != LinuxNamespaceType::Network && ns.typ() != LinuxNamespaceType::User
            })
            .collect();
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .map_err(err)?,
        );
        let map = |host: u32| {
            LinuxIdMappingBuilder::default()
                .host_id(host)
                .container_id(0u32)
                .size(1u32)
                .build()
        };
        let linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .uid_mappings(vec![map(nix::unistd::geteuid().as_raw()).map_err(err)?])
            .gid_mappings(vec![map(nix::unistd::getegid().as_raw()).map_err(err)?])
            .build()
            .map_err(err)?;
        spec.set_linux(Some(linux));
    }
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
    let text =
        serde_json::to_string_pretty(&spec).map_err(|e| RuntimeError::io(&path, e.into()))?;
    std::fs::write(&path, text + "\n").map_err(|e| RuntimeError::io(&path, e))
}
