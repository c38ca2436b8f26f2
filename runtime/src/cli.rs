//! runc's command line, as containerd's and podman's runc drivers speak it.
//!
//! Flags that runc accepts but godwit cannot honour are still parsed, so that
//! callers passing them get a message naming the flag rather than a parse error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use crate::bundle::parse_json;
use crate::error::{Result, RuntimeError};
use crate::requests::{
    refuse, CheckpointRequest, CreateRequest, ExecRequest, ProcessDumpRequest, ProcessRequest,
    ProcessRestoreRequest, RestoreRequest, RestoreSource, RunRequest, RuntimeOptions,
};

#[derive(Parser, Debug)]
#[command(
    name = "godwit",
    version,
    args_override_self = true,
    about = "godwit: an OCI container runtime with its own checkpoint/restore"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Directory holding the state of containers (one directory per container id).
    #[arg(long, global = true, default_value = "/run/godwit")]
    pub root: PathBuf,
    /// Write log lines to this file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (json lines as runc writes them: level, msg, time).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (only where systemd is PID 1).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Path to a CRIU binary: accepted for runc compatibility and ignored
    /// (godwit checkpoints with its own dumper, never CRIU).
    #[arg(long)]
    pub criu: Option<String>,
    /// Rootless mode (true, false, auto): accepted for runc compatibility and
    /// ignored (rootless follows the spec's user namespace).
    #[arg(long)]
    pub rootless: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(Create),
    /// Start the process of a created container.
    Start(Id),
    /// Create and start a container; in the foreground, exit with its status.
    Run(Run),
    /// Print a container's state as JSON.
    State(Id),
    /// List containers.
    #[command(alias = "ls")]
    List(List),
    /// Send a signal to a container's init (or, with --all, to every process).
    Kill(Kill),
    /// Delete a container's resources and state.
    Delete(Delete),
    /// Run a new process inside a running container.
    Exec(Exec),
    /// List the processes of a container.
    Ps(Ps),
    /// Freeze every process of a container.
    Pause(Id),
    /// Thaw a paused container.
    Resume(Id),
    /// Print a container's resource usage.
    Events(Events),
    /// Change a running container's resource limits.
    Update(Update),
    /// Print the features this runtime supports (runtime-spec features document).
    Features,
    /// Write a default config.json into a bundle.
    Spec(SpecArgs),
    /// Checkpoint a running container with godwit's embedded dumper.
    Checkpoint(Checkpoint),
    /// Restore a container from a checkpoint.
    Restore(Restore),
    /// Dump or restore any process tree (not a container) with the embedded dumper.
    #[command(subcommand)]
    Process(ProcessCommand),
    /// Make a new secret key file (mode 0600) for `migrate` / `receive`.
    Keygen(Keygen),
    /// Move a running container to a host where `godwit receive` waits.
    Migrate(Migrate),
    /// Wait for one container sent by `godwit migrate` and run it here.
    Receive(Receive),
}

#[derive(Args, Debug, Clone)]
pub struct Keygen {
    /// Make an Ed25519 key pair for signing archives instead: FILE gets the
    /// private key (PEM, 0600; `checkpoint --sign-key`), FILE.pub the public
    /// key (`restore --verify-key`).
    #[arg(long)]
    pub sign: bool,
    /// File to create (refused if it exists).
    pub file: PathBuf,
}

/// Default key file of `migrate` and `receive`.
pub const DEFAULT_KEY: &str = "/etc/godwit/migrate.key";

#[derive(Args, Debug, Clone)]
pub struct Migrate {
    /// The receiver: ADDR:PORT where `godwit receive` listens.
    #[arg(long)]
    pub to: String,
    /// Secret shared with the receiver (`godwit keygen FILE`).
    #[arg(long, default_value = DEFAULT_KEY)]
    pub key: PathBuf,
    /// Compression of the stream: none, or zstd[:LEVEL] (only where it shrinks the data).
    #[arg(long, default_value = "none")]
    pub compress: String,
    /// Pre-copy rounds while the container runs (not implemented yet: refused).
    #[arg(long)]
    pub pre_copy: bool,
    #[arg(long, requires = "pre_copy")]
    pub max_rounds: Option<u32>,
    /// Lazy (post-copy) restore (not implemented yet: refused).
    #[arg(long)]
    pub lazy: bool,
    /// Established TCP connections (not carried: refused).
    #[arg(long)]
    pub tcp_established: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Receive {
    /// Address to listen on for the one migration.
    #[arg(long, default_value = "0.0.0.0:7676")]
    pub listen: String,
    /// Bundle whose rootfs the container runs on (a copy of the source's);
    /// without it, the bundle is recreated as `restore --import` does.
    #[arg(short, long, default_value = "", hide_default_value = true, value_parser = any_path)]
    pub bundle: PathBuf,
    /// Secret shared with the source (`godwit keygen FILE`).
    #[arg(long, default_value = DEFAULT_KEY)]
    pub key: PathBuf,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Where a recreated bundle goes (as `restore --work-path`).
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// A directory the rootfs base may be in, without --bundle (as `restore
    /// --rootfs-base-dir`; also GODWIT_ROOTFS_BASE_DIRS).
    #[arg(long = "rootfs-base-dir", value_name = "DIR")]
    pub rootfs_base_dir: Vec<PathBuf>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    pub container_id: String,
}

/// `godwit process dump|restore`: the dumper on an ordinary process tree, in
/// the current namespaces (CRIU's `dump -t PID` / `restore`).
#[derive(Subcommand, Debug)]
pub enum ProcessCommand {
    /// Dump PID and all its descendants (threads included) into --image-path.
    Dump(ProcessDump),
    /// Restore a dumped process tree with its original pids.
    Restore(ProcessRestore),
}

#[derive(Args, Debug, Clone)]
pub struct ProcessDump {
    /// Root of the tree to dump (its descendants are dumped with it).
    #[arg(short = 't', long)]
    pub pid: i32,
    /// Directory to write the image into (created; must be empty if it exists).
    #[arg(long)]
    pub image_path: PathBuf,
    /// Leave the processes running after the dump.
    #[arg(long)]
    pub leave_running: bool,
    /// The tree is a shell's job: its session and terminal lie outside it; the
    /// root's stdio is recorded as external and reconnected at restore.
    #[arg(long)]
    pub shell_job: bool,
    /// Refused: established TCP connections are not carried.
    #[arg(long)]
    pub tcp_established: bool,
    /// Refused: unix sockets connected outside the tree are not supported.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Refused: file locks are not dumped.
    #[arg(long)]
    pub file_locks: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ProcessRestore {
    /// Directory holding the image.
    #[arg(long)]
    pub image_path: PathBuf,
    /// Return once the tree runs (it is left to the nearest subreaper).
    #[arg(short, long)]
    pub detach: bool,
    /// Write the restored root's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Reconnect the stdio of a tree dumped with --shell-job to ours.
    #[arg(long)]
    pub shell_job: bool,
    /// Refused: established TCP connections are not carried.
    #[arg(long)]
    pub tcp_established: bool,
    /// Refused: unix sockets connected outside the tree are not supported.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Refused: file locks are not restored.
    #[arg(long)]
    pub file_locks: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// runc's checkpoint flags. Each is honoured or refused with a message naming it.
#[derive(Args, Debug, Clone)]
pub struct Checkpoint {
    /// Directory to write the image into (default: ./checkpoint, or a
    /// temporary one with --export).
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Also write the self-contained archive (image, spec, rootfs changes) to
    /// FILE: `.tar`, or zstd-compressed when the name ends in `.zst`.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Sign the --export archive with this Ed25519 private key (PEM, as
    /// `godwit keygen --sign` or `openssl genpkey -algorithm ed25519` make).
    #[arg(long, env = crate::signing::SIGN_KEY_ENV, requires = "export")]
    pub sign_key: Option<PathBuf>,
    /// Directory for work files: the temporary image of --export without
    /// --image-path is made here (default: next to the state). The dumper
    /// writes no logs.
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Leave the processes running after the checkpoint.
    #[arg(long)]
    pub leave_running: bool,
    /// Refused: incremental images (pre-dump parents) are not supported.
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    /// Refused: established TCP connections are not carried (they come back closed).
    #[arg(long)]
    pub tcp_established: bool,
    /// Refused: unix sockets connected outside the container are not supported.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Accepted: the container's stdio is always recorded as external (what
    /// the flag asks for), with or without it.
    #[arg(long)]
    pub shell_job: bool,
    /// Refused: lazy (post-copy) pages are not supported.
    #[arg(long)]
    pub lazy_pages: bool,
    /// Refused: no status fd is written (lazy pages are not supported).
    #[arg(long)]
    pub status_fd: Option<i32>,
    /// Refused: no page server; use --export and copy the archive.
    #[arg(long)]
    pub page_server: Option<String>,
    /// Refused: file locks are not dumped.
    #[arg(long)]
    pub file_locks: bool,
    /// Refused: pre-dump (iterative migration) is not supported.
    #[arg(long)]
    pub pre_dump: bool,
    /// Refused unless "soft" (the default): cgroups are always recreated from the spec.
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    /// Refused: every namespace of the spec is made anew at restore.
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Refused: images are not deduplicated.
    #[arg(long)]
    pub auto_dedup: bool,
    pub container_id: String,
}

/// A size in bytes: digits, optionally followed by K, M, G or T (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: unknown unit {c:?} (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, or a number with K/M/G/T)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A path, empty allowed (clap's own path parser refuses an empty one).
fn any_path(text: &str) -> std::result::Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

/// runc's restore flags. Each is honoured or refused with a message naming it.
#[derive(Args, Debug, Clone)]
pub struct Restore {
    /// Directory holding the image (default: ./checkpoint).
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Restore from an archive written by `checkpoint --export` (checked
    /// whole before anything is extracted); its rootfs changes are applied to
    /// the --bundle's rootfs.
    #[arg(long, conflicts_with = "image_path")]
    pub import: Option<PathBuf>,
    /// Accept only an --import archive signed with the private half of this
    /// Ed25519 public key (PEM); an unsigned or altered archive is refused.
    #[arg(long, env = crate::signing::VERIFY_KEY_ENV)]
    pub verify_key: Option<PathBuf>,
    /// Refuse an --import archive without a valid signature (needs --verify-key).
    #[arg(long, env = crate::signing::REQUIRE_ENV, action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub require_signature: bool,
    /// Largest total size of an --import archive's entries (bytes, or with a
    /// K/M/G/T suffix); default 1T.
    #[arg(long, env = "GODWIT_IMPORT_MAX_SIZE", value_parser = parse_size)]
    pub import_max_size: Option<u64>,
    /// Free space an --import must leave on the state root's filesystem
    /// (bytes, or with a K/M/G/T suffix); default 256M.
    #[arg(long, env = "GODWIT_IMPORT_RESERVE", value_parser = parse_size)]
    pub import_reserve: Option<u64>,
    /// Directory for work files: where `--import` without `--bundle`
    /// recreates the bundle (default: the state root). No logs are written.
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// A directory the rootfs base an archive records may be in (repeatable;
    /// also GODWIT_ROOTFS_BASE_DIRS=DIR:DIR). Without one, `--import` needs
    /// `--bundle`.
    #[arg(long = "rootfs-base-dir", value_name = "DIR")]
    pub rootfs_base_dir: Vec<PathBuf>,
    /// Bundle whose rootfs the restored container uses (default: the current
    /// directory; with --import and no --bundle, the bundle is recreated from
    /// the archive under --work-path or the state root). Empty: not given.
    #[arg(short, long, default_value = "", hide_default_value = true, value_parser = any_path)]
    pub bundle: PathBuf,
    /// Return once the container runs again.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the restored init's pid (host's view) to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket on which to send the new pty master of a terminal container.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Refused: established TCP connections are not carried (they come back closed).
    #[arg(long)]
    pub tcp_established: bool,
    /// Refused: unix sockets connected outside the container are not supported.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Accepted: the container's stdio is always reconnected to ours (what
    /// the flag asks for), with or without it.
    #[arg(long)]
    pub shell_job: bool,
    /// Refused: file locks are not restored.
    #[arg(long)]
    pub file_locks: bool,
    /// Refused unless "soft" (the default): cgroups are always recreated from the spec.
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    /// Do not become a subreaper (only with --detach).
    #[arg(long)]
    pub no_subreaper: bool,
    /// Do not use pivot_root to enter the rootfs.
    #[arg(long)]
    pub no_pivot: bool,
    /// Refused: every namespace of the spec is made anew.
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Refused: images are not deduplicated.
    #[arg(long)]
    pub auto_dedup: bool,
    /// Refused: lazy (post-copy) pages are not supported.
    #[arg(long)]
    pub lazy_pages: bool,
    /// Refused: the spec's LSM profile is used.
    #[arg(long)]
    pub lsm_profile: Option<String>,
    /// Refused: the spec's mount label is used.
    #[arg(long)]
    pub lsm_mount_context: Option<String>,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Id {
    /// Container id.
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct CreateOpts {
    /// Bundle directory (holding config.json); default: the current directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket on which to send the pty master of a terminal container.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the container init's pid (host's view) to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to enter the rootfs.
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring (godwit never creates one).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3 .. 3+N-1) to the container process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Refused: sd_notify forwarding is not supported.
    #[arg(long)]
    pub notify_socket: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Create {
    #[command(flatten)]
    pub opts: CreateOpts,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Run {
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Return once the container runs instead of waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground only).
    #[arg(long)]
    pub keep: bool,
    /// Do not become a subreaper: only with --detach (a foreground run waits
    /// for the init, which needs it).
    #[arg(long)]
    pub no_subreaper: bool,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct List {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Kill {
    /// Send the signal to every process of the container.
    #[arg(short, long)]
    pub all: bool,
    pub container_id: String,
    /// Signal by name (TERM, SIGTERM) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug, Clone)]
pub struct Delete {
    /// Kill a running container before deleting it; no error if it does not exist.
    #[arg(short, long)]
    pub force: bool,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Exec {
    /// Unix socket on which to send the pty master (with --tty).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variable KEY=VALUE (repeatable).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a pty.
    #[arg(short, long)]
    pub tty: bool,
    /// User as UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids (repeatable).
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// JSON file with the process to run (runtime-spec `process`).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// SELinux process label: refused, godwit has no SELinux support.
    #[arg(long)]
    pub process_label: Option<String>,
    /// AppArmor profile for the process.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Add a capability (repeatable).
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Pass N extra fds to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Run the process in an existing sub-cgroup of the container: PATH (every
    /// controller), or CONTROLLER[,CONTROLLER]:PATH (cgroup v1; repeatable).
    #[arg(long, value_name = "[CONTROLLER:]PATH")]
    pub cgroup: Vec<String>,
    /// Allow exec into a paused container.
    #[arg(long)]
    pub ignore_paused: bool,
    pub container_id: String,
    /// Command and arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Ps {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    pub container_id: String,
    /// Options passed to ps(1) for the table format (default: -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Events {
    /// Print one sample of statistics and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between samples, in seconds (runc accepts e.g. "5s").
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Update {
    /// JSON file with runtime-spec `linux.resources` ("-" for stdin).
    #[arg(short = 'r', long = "resources")]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for unlimited).
    #[arg(long, short = 'm')]
    pub memory: Option<String>,
    /// Memory + swap limit.
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Kernel memory limit: refused (deprecated in runc, ignored by the kernel).
    #[arg(long)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit: refused (deprecated in runc).
    #[arg(long)]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: unlimited).
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (e.g. 0-2,5).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use (e.g. 0).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// L3 cache schema (Intel RDT): refused.
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// Memory bandwidth schema (Intel RDT): refused.
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct SpecArgs {
    /// Bundle directory to write config.json into.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write a spec for a rootless container (user namespace, no network namespace).
    #[arg(long)]
    pub rootless: bool,
}

impl GlobalOpts {
    /// The settings the library's verbs take.
    pub fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            systemd_cgroup: self.systemd_cgroup,
        }
    }
}

impl Update {
    /// The resources an `update` asks for, from `--resources FILE` or the flags
    /// (kernel memory and Intel RDT flags refused by name).
    pub fn resources(&self) -> Result<LinuxResources> {
        let args = self;
        for (flag, given) in [
            ("--kernel-memory", args.kernel_memory.is_some()),
            ("--kernel-memory-tcp", args.kernel_memory_tcp.is_some()),
            ("--l3-cache-schema", args.l3_cache_schema.is_some()),
            ("--mem-bw-schema", args.mem_bw_schema.is_some()),
        ] {
            if given {
                return Err(RuntimeError::Unsupported {
                    flag,
                    reason: "not supported by godwit (kernel memory limits are gone from current \
                         kernels; Intel RDT is not managed by update); omit the flag"
                        .into(),
                });
            }
        }
        if let Some(path) = &args.resources {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| RuntimeError::io(path, e))?
            } else {
                std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?
            };
            return parse_json(path, &text);
        }
        let build_err = |e: oci_spec::OciSpecError| RuntimeError::InvalidValue {
            what: "resources",
            value: String::new(),
            reason: e.to_string(),
        };
        let mut res = LinuxResourcesBuilder::default();
        if args.memory.is_some() || args.memory_swap.is_some() || args.memory_reservation.is_some()
        {
            let mut mem = LinuxMemoryBuilder::default();
            if let Some(m) = &args.memory {
                mem = mem.limit(crate::verbs::update::parse_size("--memory", m)?);
            }
            if let Some(m) = &args.memory_swap {
                mem = mem.swap(crate::verbs::update::parse_size("--memory-swap", m)?);
            }
            if let Some(m) = &args.memory_reservation {
                mem = mem.reservation(crate::verbs::update::parse_size("--memory-reservation", m)?);
            }
            res = res.memory(mem.build().map_err(build_err)?);
        }
        let cpu_given = args.cpu_shares.is_some()
            || args.cpu_period.is_some()
            || args.cpu_quota.is_some()
            || args.cpu_rt_period.is_some()
            || args.cpu_rt_runtime.is_some()
            || args.cpuset_cpus.is_some()
            || args.cpuset_mems.is_some();
        if cpu_given {
            let mut cpu = LinuxCpuBuilder::default();
            if let Some(v) = args.cpu_shares {
                cpu = cpu.shares(v);
            }
            if let Some(v) = args.cpu_period {
                cpu = cpu.period(v);
            }
            if let Some(v) = args.cpu_quota {
                cpu = cpu.quota(v);
            }
            if let Some(v) = args.cpu_rt_period {
                cpu = cpu.realtime_period(v);
            }
            if let Some(v) = args.cpu_rt_runtime {
                cpu = cpu.realtime_runtime(v);
            }
            if let Some(v) = &args.cpuset_cpus {
                cpu = cpu.cpus(v.clone());
            }
            if let Some(v) = &args.cpuset_mems {
                cpu = cpu.mems(v.clone());
            }
            res = res.cpu(cpu.build().map_err(build_err)?);
        }
        if let Some(limit) = args.pids_limit {
            res = res.pids(
                LinuxPidsBuilder::default()
                    .limit(limit)
                    .build()
                    .map_err(build_err)?,
            );
        }
        if let Some(weight) = args.blkio_weight {
            res = res.block_io(
                LinuxBlockIoBuilder::default()
                    .weight(weight)
                    .build()
                    .map_err(build_err)?,
            );
        }
        res.build().map_err(build_err)
    }
}

impl ProcessCommand {
    /// The library's request; `--tcp-established`, `--ext-unix-sk` and
    /// `--file-locks` are refused by name.
    pub fn request(&self) -> Result<ProcessRequest> {
        use crate::verbs::process::refuse_flags;
        Ok(match self {
            ProcessCommand::Dump(a) => {
                refuse_flags(
                    "process dump",
                    a.tcp_established,
                    a.ext_unix_sk,
                    a.file_locks,
                )?;
                ProcessRequest::Dump(ProcessDumpRequest {
                    pid: a.pid,
                    image_path: a.image_path.clone(),
                    leave_running: a.leave_running,
                    shell_job: a.shell_job,
                    json: a.json,
                })
            }
            ProcessCommand::Restore(a) => {
                refuse_flags(
                    "process restore",
                    a.tcp_established,
                    a.ext_unix_sk,
                    a.file_locks,
                )?;
                ProcessRequest::Restore(ProcessRestoreRequest {
                    image_path: a.image_path.clone(),
                    detach: a.detach,
                    pid_file: a.pid_file.clone(),
                    shell_job: a.shell_job,
                    json: a.json,
                })
            }
        })
    }
}

impl Exec {
    /// The library's request; `--process-label` is refused by name.
    pub fn request(&self) -> Result<ExecRequest> {
        refuse(&[(
            "--process-label",
            self.process_label.is_some(),
            "godwit has no SELinux support",
        )])?;
        Ok(ExecRequest {
            id: self.container_id.clone(),
            console_socket: self.console_socket.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            tty: self.tty,
            user: self.user.clone(),
            additional_gids: self.additional_gids.clone(),
            process: self.process.clone(),
            detach: self.detach,
            pid_file: self.pid_file.clone(),
            apparmor: self.apparmor.clone(),
            no_new_privs: self.no_new_privs,
            cap: self.cap.clone(),
            preserve_fds: self.preserve_fds,
            cgroup: self.cgroup.clone(),
            ignore_paused: self.ignore_paused,
            command: self.command.clone(),
        })
    }
}

impl CreateOpts {
    /// The library's request for container `id`; `--notify-socket` is
    /// refused by name, `--no-new-keyring` is what godwit always does.
    pub fn request(&self, id: &str) -> Result<CreateRequest> {
        refuse(&[(
            "--notify-socket",
            self.notify_socket.is_some(),
            "sd_notify forwarding is not supported by godwit",
        )])?;
        Ok(CreateRequest {
            id: id.to_string(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
        })
    }
}

impl Run {
    /// The library's request; `--no-subreaper` is what a detached run does
    /// and is refused in the foreground.
    pub fn request(&self) -> Result<RunRequest> {
        if self.no_subreaper && !self.detach {
            return Err(RuntimeError::Unsupported {
                flag: "--no-subreaper",
                reason: "a foreground run must be the subreaper to wait for the container's init; \
                         use it with --detach, or omit it"
                    .into(),
            });
        }
        Ok(RunRequest {
            create: self.opts.request(&self.container_id)?,
            detach: self.detach,
            keep: self.keep,
        })
    }
}

impl Checkpoint {
    /// The library's request, once every flag godwit cannot honour was
    /// refused by name. `--shell-job` and `--manage-cgroups-mode soft` are
    /// what godwit always does.
    pub fn request(&self) -> Result<CheckpointRequest> {
        refuse(&[
            ("--parent-path", self.parent_path.is_some(), "incremental images (pre-dump) are not supported yet"),
            ("--pre-dump", self.pre_dump, "pre-copy rounds are not supported yet"),
            ("--lazy-pages", self.lazy_pages, "lazy (userfaultfd) restore is not supported yet"),
            ("--page-server", self.page_server.is_some(), "streaming to a page server is not supported yet"),
            ("--tcp-established", self.tcp_established, "established TCP connections are not carried; without the flag they are restored as closed"),
            ("--ext-unix-sk", self.ext_unix_sk, "unix sockets connected outside the container are not supported"),
            ("--file-locks", self.file_locks, "file locks are not dumped"),
            ("--auto-dedup", self.auto_dedup, "deduplication against a parent image is not supported"),
            ("--empty-ns", !self.empty_ns.is_empty(), "every namespace is recreated from the spec on restore; this flag has no meaning for godwit"),
            ("--status-fd", self.status_fd.is_some(), "status notifications on an fd are not supported"),
            ("--manage-cgroups-mode", self.manage_cgroups_mode.as_deref().is_some_and(|m| m != "soft"), "only the default mode (soft: cgroups recreated from the spec) is supported"),
        ])?;
        Ok(CheckpointRequest {
            id: self.container_id.clone(),
            image_path: self.image_path.clone(),
            export: self.export.clone(),
            work_path: self.work_path.clone(),
            leave_running: self.leave_running,
            sign_key: self.sign_key.clone(),
        })
    }
}

impl Restore {
    /// The library's request, once every flag godwit cannot honour was
    /// refused by name. `--shell-job` and `--manage-cgroups-mode soft` are
    /// what godwit always does; `--no-subreaper` is what a detached restore
    /// does.
    pub fn request(&self) -> Result<RestoreRequest> {
        refuse(&[
            (
                "--tcp-established",
                self.tcp_established,
                "established TCP connections are not carried",
            ),
            (
                "--ext-unix-sk",
                self.ext_unix_sk,
                "unix sockets connected outside the container are not supported",
            ),
            (
                "--file-locks",
                self.file_locks,
                "file locks are not restored",
            ),
            (
                "--lazy-pages",
                self.lazy_pages,
                "lazy (userfaultfd) restore is not supported yet",
            ),
            (
                "--auto-dedup",
                self.auto_dedup,
                "deduplication is not supported",
            ),
            (
                "--empty-ns",
                !self.empty_ns.is_empty(),
                "every namespace is recreated from the spec; this flag has no meaning for godwit",
            ),
            (
                "--lsm-profile",
                self.lsm_profile.is_some(),
                "LSM profiles are taken from the spec",
            ),
            (
                "--manage-cgroups-mode",
                self.manage_cgroups_mode
                    .as_deref()
                    .is_some_and(|m| m != "soft"),
                "only the default mode (soft) is supported",
            ),
            (
                "--lsm-mount-context",
                self.lsm_mount_context.is_some(),
                "godwit has no SELinux support",
            ),
        ])?;
        if self.no_subreaper && !self.detach {
            return Err(RuntimeError::Unsupported {
                flag: "--no-subreaper",
                reason:
                    "a foreground restore must be the subreaper to wait for the init; use --detach"
                        .into(),
            });
        }
        let source = match (&self.import, &self.image_path) {
            (Some(file), _) => RestoreSource::Archive(file.clone()),
            (None, Some(dir)) => RestoreSource::Image(dir.clone()),
            (None, None) => RestoreSource::default(),
        };
        Ok(RestoreRequest {
            id: self.container_id.clone(),
            source,
            bundle: (!self.bundle.as_os_str().is_empty()).then(|| self.bundle.clone()),
            work_path: self.work_path.clone(),
            detach: self.detach,
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            rootfs_base_dirs: crate::restore_policy::rootfs_base_dirs(
                &self.rootfs_base_dir,
                std::env::var_os(crate::restore_policy::ROOTFS_BASE_DIRS_ENV).as_deref(),
            ),
            import: crate::requests::ImportOptions {
                verify_key: self.verify_key.clone(),
                require_signature: self.require_signature,
                max_size: self.import_max_size,
                reserve: self.import_reserve,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        let mut argv = vec!["godwit"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").command
    }

    fn refused_flag(e: RuntimeError) -> &'static str {
        match e {
            RuntimeError::Unsupported { flag, .. } => flag,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn create_and_run_flags_become_requests() {
        let Command::Create(c) = parse(&[
            "create",
            "-b",
            "/b",
            "--pid-file",
            "/p",
            "--preserve-fds",
            "2",
            "--no-pivot",
            "c1",
        ]) else {
            panic!("not create")
        };
        assert_eq!(
            c.opts.request(&c.container_id).expect("accepted"),
            CreateRequest {
                id: "c1".into(),
                bundle: "/b".into(),
                console_socket: None,
                pid_file: Some("/p".into()),
                no_pivot: true,
                preserve_fds: 2,
            }
        );
        let Command::Create(c) = parse(&["create", "--notify-socket", "/s", "c1"]) else {
            panic!("not create")
        };
        let e = c.opts.request(&c.container_id).unwrap_err();
        assert_eq!(refused_flag(e), "--notify-socket");
        let Command::Run(r) = parse(&["run", "-d", "--no-subreaper", "--keep", "c2"]) else {
            panic!("not run")
        };
        let req = r.request().expect("accepted");
        assert!(req.detach && req.keep);
        assert_eq!(req.create.id, "c2");
        assert_eq!(req.create.bundle, PathBuf::from("."));
        let Command::Run(r) = parse(&["run", "--no-subreaper", "c2"]) else {
            panic!("not run")
        };
        assert_eq!(refused_flag(r.request().unwrap_err()), "--no-subreaper");
    }

    #[test]
    fn checkpoint_flags_become_the_request() {
        let Command::Checkpoint(c) = parse(&[
            "checkpoint",
            "--image-path",
            "/img",
            "--work-path",
            "/w",
            "--leave-running",
            "--shell-job",
            "--manage-cgroups-mode",
            "soft",
            "c1",
        ]) else {
            panic!("not checkpoint")
        };
        assert_eq!(
            c.request().expect("accepted"),
            CheckpointRequest {
                id: "c1".into(),
                image_path: Some("/img".into()),
                export: None,
                work_path: Some("/w".into()),
                leave_running: true,
                sign_key: None,
            }
        );
    }

    #[test]
    fn checkpoint_refuses_by_name() {
        for (args, flag) in [
            (&["checkpoint", "--pre-dump", "c"][..], "--pre-dump"),
            (
                &["checkpoint", "--tcp-established", "c"][..],
                "--tcp-established",
            ),
            (&["checkpoint", "--status-fd", "3", "c"][..], "--status-fd"),
            (
                &["checkpoint", "--empty-ns", "network", "c"][..],
                "--empty-ns",
            ),
            (
                &["checkpoint", "--manage-cgroups-mode", "full", "c"][..],
                "--manage-cgroups-mode",
            ),
        ] {
            let Command::Checkpoint(c) = parse(args) else {
                panic!("not checkpoint")
            };
            assert_eq!(refused_flag(c.request().unwrap_err()), flag, "{args:?}");
        }
    }

    #[test]
    fn restore_flags_become_the_request() {
        let Command::Restore(r) =
            parse(&["restore", "--import", "/a.tar", "-d", "--shell-job", "c2"])
        else {
            panic!("not restore")
        };
        let req = r.request().expect("accepted");
        assert_eq!(req.source, RestoreSource::Archive("/a.tar".into()));
        assert_eq!(req.bundle, None);
        assert!(req.detach);
        let Command::Restore(r) = parse(&["restore", "-b", "/b", "c3"]) else {
            panic!("not restore")
        };
        let req = r.request().expect("accepted");
        assert_eq!(req.source, RestoreSource::Image("checkpoint".into()));
        assert_eq!(req.bundle, Some("/b".into()));
    }

    #[test]
    fn restore_refuses_by_name() {
        for (args, flag) in [
            (&["restore", "--lazy-pages", "c"][..], "--lazy-pages"),
            (
                &["restore", "--lsm-mount-context", "x", "c"][..],
                "--lsm-mount-context",
            ),
            (&["restore", "--no-subreaper", "c"][..], "--no-subreaper"),
        ] {
            let Command::Restore(r) = parse(args) else {
                panic!("not restore")
            };
            assert_eq!(refused_flag(r.request().unwrap_err()), flag, "{args:?}");
        }
    }
}
