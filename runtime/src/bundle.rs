//! Reading a bundle's config.json before libcontainer does, so that a bad
//! bundle is refused with an error naming the file and the field.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

/// Loads and checks `<bundle>/config.json`; returns the absolute bundle path and the spec.
pub fn load(bundle: &Path) -> Result<(PathBuf, Spec)> {
    let bundle_abs = std::fs::canonicalize(bundle).map_err(|e| RuntimeError::Bundle {
        path: bundle.to_path_buf(),
        reason: format!("{e} (pass --bundle DIR, a directory holding config.json and its rootfs)"),
    })?;
    if !bundle_abs.is_dir() {
        return Err(RuntimeError::Bundle {
            path: bundle_abs,
            reason: "not a directory".into(),
        });
    }
    let config = bundle_abs.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| RuntimeError::Bundle {
        path: bundle_abs.clone(),
        reason: format!("cannot read config.json: {e} (`godwit spec` writes a default one)"),
    })?;
    let spec = parse_json::<Spec>(&config, &text)?;
    check(&config, &bundle_abs, &spec)?;
    Ok((bundle_abs, spec))
}

/// The rootfs directory a spec names, relative to its bundle.
pub fn rootfs(bundle: &Path, spec: &Spec) -> PathBuf {
    bundle.join(
        spec.root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| "rootfs".into()),
    )
}

/// Parses JSON, naming the field (as a path like `process.args[0]`) that is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        RuntimeError::InvalidConfig {
            path: path.to_path_buf(),
            field: if field == "." {
                format!("line {} column {}", inner.line(), inner.column())
            } else {
                field
            },
            reason: inner.to_string(),
        }
    })
}

fn check(config: &Path, bundle: &Path, spec: &Spec) -> Result<()> {
    let invalid = |field: &str, reason: &str| RuntimeError::InvalidConfig {
        path: config.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing: a container needs a process to run"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid(
            "process.args",
            "empty: name the program to run, e.g. [\"sh\"]",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", "must be an absolute path"));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing: name the rootfs directory"))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(invalid(
            "root.path",
            &format!("{} is not a directory", rootfs.display()),
        ));
    }
    if spec.linux().is_none() {
        return Err(invalid("linux", "missing: godwit runs Linux containers"));
    }
    Ok(())
}
