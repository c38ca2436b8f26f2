use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeatureBuilder, LinuxNamespaceType, MountExtensionsBuilder, SeccompBuilder,
    SelinuxBuilder, VERSION,
};

use crate::error::{Result, RuntimeError};

const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The runtime-spec features document: what this build of godwit can do.
pub fn features() -> Result<Features> {
    let err = |e: oci_spec::OciSpecError| RuntimeError::InvalidValue {
        what: "features document",
        value: String::new(),
        reason: e.to_string(),
    };
    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Time,
    ];
    let capabilities = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>();
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .capabilities(capabilities)
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(true)
                .systemd_user(false)
                .rdma(false)
                .build()
                .map_err(err)?,
        )
        .seccomp(
            SeccompBuilder::default()
                .enabled(true)
                .build()
                .map_err(err)?,
        )
        .apparmor(
            ApparmorBuilder::default()
                .enabled(true)
                .build()
                .map_err(err)?,
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(false)
                .build()
                .map_err(err)?,
        )
        .intel_rdt(
            IntelRdtBuilder::default()
                .enabled(false)
                .build()
                .map_err(err)?,
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(false)
                        .build()
                        .map_err(err)?,
                )
                .build()
                .map_err(err)?,
        )
        .build()
        .map_err(err)?;
    let mut annotations = std::collections::HashMap::new();
    annotations.insert(
        "org.godwit.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    annotations.insert(
        "org.godwit.checkpoint.enabled".to_string(),
        "false".to_string(),
    );
    FeaturesBuilder::default()
        .oci_version_min("1.0.0".to_string())
        .oci_version_max(VERSION.to_string())
        .hooks(HOOKS.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .mount_options(libcontainer::syscall::linux::MountOption::known_options())
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(err)
}
