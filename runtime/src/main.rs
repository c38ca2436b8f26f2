use std::process::ExitCode;

use clap::Parser;

use godwit_runtime::cli::{Cli, Command, ListFormat};
use godwit_runtime::store::StateRoot;
use godwit_runtime::verbs;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Verbs that put processes into a container run from a copy of the
    // binary that no container can write (CVE-2019-5736; sealed.rs).
    if matches!(
        cli.command,
        Command::Create(_)
            | Command::Run(_)
            | Command::Exec(_)
            | Command::Restore(_)
            | Command::Receive(_)
    ) {
        if let Err(e) = godwit_runtime::sealed::reexec_protected() {
            eprintln!("godwit: {e}: refusing to start a container process from a writable binary");
            return ExitCode::from(1);
        }
    }
    if let Err(e) = godwit_runtime::logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        eprintln!("godwit: cannot open log file: {e}");
        return ExitCode::from(1);
    }
    // runc: a failed exec (no such container, binary or pid-file directory)
    // exits 255, which callers tell from the process's own status.
    let failure = if matches!(cli.command, Command::Exec(_)) {
        255
    } else {
        1
    };
    let logs_to_file = cli.global.log.is_some();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = format!("{e:#}");
            // As runc: the error goes through the logger — to stderr as a
            // logrus line (`time=… level=error msg=…`, or JSON with
            // --log-format json) — and, when the log is a file, also plainly
            // to stderr.
            tracing::error!("{msg}");
            if logs_to_file {
                eprintln!("{msg}");
            }
            ExitCode::from(failure)
        }
    }
}

/// Writes to stdout; a reader that went away (`godwit list | head`) is not an
/// error. (SIGPIPE stays ignored: hooks that do not read their stdin must not
/// kill us while libcontainer writes the state to them.)
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    out(&(serde_json::to_string_pretty(value)? + "\n"))
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let global = &cli.global;
    // `spec` and `features` need no state root.
    match &cli.command {
        Command::Spec(args) => {
            verbs::spec::write_spec(&args.bundle, args.rootless)?;
            return Ok(0);
        }
        Command::Features => {
            print_json(&verbs::features::features()?)?;
            return Ok(0);
        }
        Command::Keygen(args) if args.sign => {
            let public = godwit_runtime::signing::write_key_pair(&args.file)?;
            eprintln!(
                "godwit: private key {} (for checkpoint --sign-key), public key {} (for restore --verify-key)",
                args.file.display(),
                public.display()
            );
            return Ok(0);
        }
        Command::Keygen(args) => {
            godwit_runtime::migrate::keygen(&args.file)?;
            return Ok(0);
        }
        // Any process tree, no container: no state root either.
        Command::Process(cmd) => return Ok(verbs::process::process(&cmd.request()?)?),
        _ => {}
    }
    // Its errors name the root (and, when denied, its owner and the fix).
    let root = StateRoot::open(&global.root)?;
    match &cli.command {
        Command::Create(args) => {
            verbs::create::create(
                &root,
                &global.options(),
                &args.opts.request(&args.container_id)?,
                true,
            )?;
        }
        Command::Start(args) => verbs::start::start(&root, &args.container_id)?,
        Command::Run(args) => {
            return Ok(verbs::run::run(&root, &global.options(), &args.request()?)?)
        }
        Command::State(args) => print_json(&verbs::state::state(&root, &args.container_id)?)?,
        Command::List(args) => {
            let states = verbs::list::list(&root)?;
            if args.quiet {
                let ids: String = states.iter().map(|s| format!("{}\n", s.id)).collect();
                out(&ids)?;
            } else if args.format == ListFormat::Json {
                out(&(serde_json::to_string(&states)? + "\n"))?;
            } else {
                out(&verbs::list::table(&states))?;
            }
        }
        Command::Kill(args) => {
            verbs::kill::kill(&root, &args.container_id, &args.signal, args.all)?
        }
        Command::Delete(args) => verbs::delete::delete(&root, &args.container_id, args.force)?,
        Command::Exec(args) => return Ok(verbs::exec::exec(&root, &args.request()?)?),
        Command::Ps(args) => {
            let pids = verbs::ps::pids(&root, &args.container_id)?;
            if args.format == ListFormat::Json {
                out(&(serde_json::to_string(&pids)? + "\n"))?;
            } else {
                out(&verbs::ps::table(&pids, &args.ps_options)?)?;
            }
        }
        Command::Pause(args) => verbs::pause::pause(&root, &args.container_id)?,
        Command::Resume(args) => verbs::pause::resume(&root, &args.container_id)?,
        Command::Events(args) => {
            let interval = verbs::events::parse_interval(&args.interval)?;
            loop {
                out(&format!(
                    "{}\n",
                    verbs::events::stats(&root, &args.container_id)?
                ))?;
                if args.stats {
                    break;
                }
                std::thread::sleep(interval);
            }
        }
        Command::Update(args) => {
            verbs::update::update(&root, &args.container_id, &args.resources()?)?
        }
        Command::Checkpoint(args) => {
            let stats = verbs::checkpoint::checkpoint(&root, &args.request()?)?;
            tracing::info!(?stats, "checkpoint statistics");
        }
        Command::Restore(args) => {
            return Ok(verbs::restore::restore(
                &root,
                &global.options(),
                &args.request()?,
            )?)
        }
        Command::Migrate(args) => {
            for (flag, given, why) in [
                (
                    "--pre-copy",
                    args.pre_copy,
                    "pre-copy rounds are not implemented yet",
                ),
                (
                    "--lazy",
                    args.lazy,
                    "lazy (post-copy) restore is not implemented yet",
                ),
                (
                    "--tcp-established",
                    args.tcp_established,
                    "established TCP connections are not carried (they come back closed)",
                ),
            ] {
                if given {
                    anyhow::bail!("{flag}: {why}; omit the flag (stop-and-copy)");
                }
            }
            let req = verbs::migrate::MigrateRequest {
                id: args.container_id.clone(),
                to: args.to.clone(),
                key: args.key.clone(),
                compress: verbs::migrate::parse_compress(&args.compress)?,
                quiet: false,
            };
            let summary = verbs::migrate::migrate(&root, &req)?;
            eprintln!(
                "godwit: {} moved to {}: blackout {:.3} s, {} sent",
                summary.id,
                summary.to,
                summary.blackout_us as f64 / 1e6,
                godwit_runtime::migrate::human(summary.bytes_sent)
            );
            if args.json {
                print_json(&summary)?;
            }
        }
        Command::Receive(args) => {
            let req = verbs::receive::ReceiveRequest {
                id: args.container_id.clone(),
                listen: args.listen.clone(),
                key: args.key.clone(),
                bundle: (!args.bundle.as_os_str().is_empty()).then(|| args.bundle.clone()),
                pid_file: args.pid_file.clone(),
                work_path: args.work_path.clone(),
                rootfs_base_dirs: godwit_runtime::restore_policy::rootfs_base_dirs(
                    &args.rootfs_base_dir,
                    std::env::var_os(godwit_runtime::restore_policy::ROOTFS_BASE_DIRS_ENV)
                        .as_deref(),
                ),
                quiet: false,
            };
            let listener = verbs::receive::listen(&req.listen)?;
            eprintln!(
                "godwit: waiting for container {} on {}",
                req.id,
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            );
            let id = req.id.clone();
            let summary =
                verbs::receive::receive(&root, &global.options(), &req, &listener, |pid| {
                    let _ = out(&format!("container {id} runs here (pid {pid})\n"));
                })?;
            if args.json {
                print_json(&summary)?;
            }
        }
        Command::Spec(_) | Command::Features | Command::Process(_) | Command::Keygen(_) => {
            unreachable!("handled above")
        }
    }
    Ok(0)
}
