use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Process;

use crate::bundle::parse_json;
use crate::console::{ConsoleSocket, PtyProxy};
use crate::error::{Result, RuntimeError};
use crate::requests::ExecRequest as Exec;
use crate::store::{recorded_spec, StateRoot};
use crate::verbs::run::{prepare_foreground, wait_forwarding};

/// `uid[:gid]` as runc takes it.
pub fn parse_user(text: &str) -> Result<(u32, Option<u32>)> {
    let invalid = || RuntimeError::InvalidValue {
        what: "--user",
        value: text.to_string(),
        reason: "expected UID or UID:GID (numbers)".into(),
    };
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = uid.parse().map_err(|_| invalid())?;
    let gid = gid.map(|g| g.parse().map_err(|_| invalid())).transpose()?;
    Ok((uid, gid))
}

/// Runs a process in a running container. Detached, returns 0 once it runs;
/// otherwise returns its exit status (128 + signal when a signal ended it).
pub fn exec(root: &StateRoot, args: &Exec) -> Result<i32> {
    let id = args.id.as_str();
    let container = root.load(id)?;
    match container.status() {
        // runc execs into a created container too (its init waits for start).
        ContainerStatus::Running | ContainerStatus::Created => {}
        ContainerStatus::Paused if args.ignore_paused => {}
        status => {
            return Err(RuntimeError::WrongStatus {
                id: id.to_string(),
                op: "exec into",
                status: crate::verbs::state::status_name(status),
                hint:
                    "exec needs a created or running container (--ignore-paused for a paused one)",
            })
        }
    }
    let mut env = std::collections::HashMap::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| RuntimeError::InvalidValue {
                what: "--env",
                value: kv.clone(),
                reason: "expected KEY=VALUE".into(),
            })?;
        env.insert(k.to_string(), v.to_string());
    }
    let user = args.user.as_deref().map(parse_user).transpose()?;

    // A --process file is checked here so that a bad one is named by field;
    // --tty with plain args is turned into such a file, since only a process
    // document can ask libcontainer for a terminal.
    let process_file: Option<PathBuf> = match (&args.process, args.tty) {
        (Some(path), _) => Some(checked_process_file(&container, path)?),
        (None, true) => Some(tty_process_file(&container, args, &env, user)?),
        (None, false) => {
            if args.command.is_empty() {
                return Err(RuntimeError::InvalidValue {
                    what: "exec arguments",
                    value: String::new(),
                    reason: "name the command to run, or pass --process FILE".into(),
                });
            }
            None
        }
    };

    let sub_cgroups = parse_sub_cgroups(&args.cgroup)?;
    check_exec_paths(&container, args, &sub_cgroups)?;
    // A terminal and no socket to hand its master to: the pty is ours, its
    // master proxied to our stdio as `run` does.
    let wants_tty = args.tty
        || process_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<Process>(&t).ok())
            .and_then(|p| p.terminal())
            .unwrap_or(false);
    let console = if wants_tty && args.console_socket.is_none() {
        if args.detach {
            return Err(RuntimeError::Unsupported {
                flag: "--tty",
                reason: "a detached exec with a terminal needs --console-socket to hand the pty to"
                    .into(),
            });
        }
        Some(ConsoleSocket::listen(
            &container
                .root
                .join(format!("exec-{}.console", std::process::id())),
        )?)
    } else {
        None
    };
    let console_socket = args
        .console_socket
        .clone()
        .or_else(|| console.as_ref().map(|c| c.path().to_path_buf()));
    let signals = prepare_foreground(args.detach)?;
    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(crate::executor::GodwitExecutor::new(args.preserve_fds))
        .with_root_path(root.path())
        .and_then(|b| {
            b.with_console_socket(console_socket.as_ref())
                .with_pid_file(args.pid_file.as_ref())
        })
        .and_then(|b| {
            b.with_preserved_fds(args.preserve_fds)
                .as_tenant()
                .with_detach(args.detach || console_socket.is_some())
                .with_cwd(args.cwd.as_ref())
                .with_env(env)
                .with_process(process_file.as_ref())
                .with_no_new_privs(args.no_new_privs)
                .with_container_args(args.command.clone())
                .with_additional_gids(args.additional_gids.clone())
                .with_user(user.map(|u| u.0))
                .with_group(user.and_then(|u| u.1))
                .with_capabilities(args.cap.clone())
                .with_ignore_paused(args.ignore_paused)
                .with_sub_cgroup(sub_cgroups.all.clone())
                .with_controller_sub_cgroups(sub_cgroups.by_controller.clone())
                .with_apparmor(args.apparmor.clone())
                .build()
        });
    if let Some(tmp) = &process_file {
        if Some(tmp) != args.process.as_ref() {
            let _ = std::fs::remove_file(tmp);
        }
    }
    let pid = built.map_err(|e| RuntimeError::lc("exec into", id, e))?;
    let proxy = match &console {
        Some(console) => Some(console.receive_master().and_then(PtyProxy::start)?),
        None => None,
    };
    if args.detach {
        return Ok(0);
    }
    let status = wait_forwarding(pid, &signals, proxy.as_ref());
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    status
}

/// A `--process` file checked (a bad one is named by field) and completed as
/// runc completes it: a missing `user` is root (uid 0, gid 0). The file
/// given is used as is when nothing was missing; otherwise a completed copy
/// in the container's state dir (removed once the process runs).
fn checked_process_file(
    container: &libcontainer::container::Container,
    path: &PathBuf,
) -> Result<PathBuf> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    let mut value: serde_json::Value = parse_json(path, &text)?;
    let missing_user = value.get("user").is_none();
    if let (true, Some(object)) = (missing_user, value.as_object_mut()) {
        object.insert("user".into(), serde_json::json!({"uid": 0, "gid": 0}));
    }
    let process: Process = parse_json(path, &value.to_string())?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::InvalidConfig {
            path: path.clone(),
            field: "args".into(),
            reason: "empty: name the program to run".into(),
        });
    }
    if !missing_user {
        return Ok(path.clone());
    }
    let completed = container
        .root
        .join(format!("exec-process-{}.json", std::process::id()));
    std::fs::write(&completed, value.to_string()).map_err(|e| RuntimeError::io(&completed, e))?;
    Ok(completed)
}

/// Refuses what runc refuses before anything runs: a `--pid-file` whose
/// directory does not exist (libcontainer would start the process and then
/// fail to write it), and a `--cgroup` sub-cgroup the container does not have
/// (libcontainer would create it).
fn check_exec_paths(
    container: &libcontainer::container::Container,
    args: &Exec,
    sub_cgroups: &SubCgroups,
) -> Result<()> {
    if let Some(pid_file) = &args.pid_file {
        let dir = match pid_file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(RuntimeError::InvalidValue {
                what: "--pid-file",
                value: pid_file.display().to_string(),
                reason: format!(
                    "directory {} does not exist; create it or choose another path",
                    dir.display()
                ),
            });
        }
    }
    let wanted: Vec<(Option<&str>, &str)> = sub_cgroups
        .all
        .iter()
        .map(|sub| (None, sub.as_str()))
        .chain(
            sub_cgroups
                .by_controller
                .iter()
                .map(|(c, sub)| (Some(c.as_str()), sub.as_str())),
        )
        .filter(|(_, sub)| *sub != "/")
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let init = container.pid().ok_or_else(|| RuntimeError::Unsupported {
        flag: "--cgroup",
        reason: format!("container {} has no init pid", container.id()),
    })?;
    let own = container
        .spec()
        .map_err(|e| RuntimeError::lc("read the config of", container.id(), e))?
        .cgroup_path;
    for (controller, sub) in wanted {
        let missing = crate::store::sub_cgroup_missing(init.as_raw(), &own, sub, controller)?;
        if let Some(dir) = missing {
            return Err(RuntimeError::InvalidValue {
                what: "--cgroup",
                value: match controller {
                    Some(c) => format!("{c}:{sub}"),
                    None => sub.to_string(),
                },
                reason: format!(
                    "container {} has no such sub-cgroup ({} does not exist); create it first",
                    container.id(),
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// `exec --cgroup` values, as runc reads them: one PATH for every
/// controller, or CONTROLLER[,CONTROLLER]:PATH ones for some.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubCgroups {
    pub all: Option<String>,
    /// (controller, path), each controller once.
    pub by_controller: Vec<(String, String)>,
}

/// runc's rules (exec.go getSubCgroupPaths): a PATH without a controller
/// must be the only --cgroup; a controller may be named once.
pub fn parse_sub_cgroups(values: &[String]) -> Result<SubCgroups> {
    let invalid = |value: &str, reason: &str| RuntimeError::InvalidValue {
        what: "--cgroup",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut parsed = SubCgroups::default();
    for value in values {
        let mut parts = value.splitn(3, ':');
        let (first, second, third) = (parts.next(), parts.next(), parts.next());
        match (first, second, third) {
            (_, _, Some(_)) => {
                return Err(invalid(
                    value,
                    "expected PATH or CONTROLLER[,CONTROLLER]:PATH",
                ))
            }
            (Some(path), None, None) => {
                if values.len() != 1 {
                    return Err(invalid(
                        value,
                        "a PATH without a CONTROLLER: prefix must be the only --cgroup",
                    ));
                }
                parsed.all = Some(path.to_string());
            }
            (Some(controllers), Some(path), None) => {
                for controller in controllers.split(',') {
                    if controller.is_empty() {
                        return Err(invalid(value, "empty CONTROLLER before ':'"));
                    }
                    if parsed.by_controller.iter().any(|(c, _)| c == controller) {
                        return Err(invalid(
                            value,
                            &format!("controller {controller} is named more than once"),
                        ));
                    }
                    parsed
                        .by_controller
                        .push((controller.to_string(), path.to_string()));
                }
            }
            (None, _, _) => unreachable!("splitn yields at least one part"),
        }
    }
    Ok(parsed)
}

/// A process document for `exec --tty ARGS…`: the container's own process
/// (user, capabilities, rlimits, env) with the exec's overrides.
fn tty_process_file(
    container: &libcontainer::container::Container,
    args: &Exec,
    env: &std::collections::HashMap<String, String>,
    user: Option<(u32, Option<u32>)>,
) -> Result<PathBuf> {
    let spec = recorded_spec(container)?;
    let mut process = spec.process().clone().unwrap_or_default();
    if args.command.is_empty() {
        return Err(RuntimeError::InvalidValue {
            what: "exec arguments",
            value: String::new(),
            reason: "name the command to run, or pass --process FILE".into(),
        });
    }
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(true));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut merged: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| !env.contains_key(kv.split('=').next().unwrap_or_default()))
        .collect();
    merged.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    process.set_env(Some(merged));
    if let Some((uid, gid)) = user {
        let mut u = process.user().clone();
        u.set_uid(uid);
        if let Some(gid) = gid {
            u.set_gid(gid);
        }
        process.set_user(u);
    }
    let path = container
        .root
        .join(format!("exec-tty-{}.json", std::process::id()));
    let text = serde_json::to_vec(&process).map_err(|e| RuntimeError::io(&path, e.into()))?;
    std::fs::write(&path, text).map_err(|e| RuntimeError::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<SubCgroups> {
        parse_sub_cgroups(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn sub_cgroups_parse_as_runc_reads_them() {
        assert_eq!(parse(&[]).unwrap(), SubCgroups::default());
        assert_eq!(
            parse(&["sub"]).unwrap(),
            SubCgroups {
                all: Some("sub".into()),
                by_controller: vec![]
            }
        );
        assert_eq!(
            parse(&["memory,pids:a", "cpu:b/c"]).unwrap().by_controller,
            vec![
                ("memory".into(), "a".into()),
                ("pids".into(), "a".into()),
                ("cpu".into(), "b/c".into())
            ]
        );
        for bad in [
            &["a:b:c"][..],
            &["sub", "memory:x"],
            &[":x"],
            &["memory,:x"],
            &["memory:x", "pids,memory:y"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
