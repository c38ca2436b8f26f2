//! containerd-shim-godwit-v2: containerd's runtime `io.containerd.godwit.v2`.

mod checkpoint;
mod console;
mod container;
mod error;
mod events;
mod logging;
mod metrics;
mod oom;
mod options;
mod process;
mod reaper;
mod rootfs;
mod service;
mod shim;
mod stdio;

fn main() {
    // The daemon (no `start`/`delete` action) forks the containers'
    // processes: it runs from a copy of its binary that no container can
    // write (CVE-2019-5736; godwit_runtime::sealed). `start` must keep its real
    // path, which containerd-shim re-executes to spawn the daemon.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let daemon = !args
        .iter()
        .any(|a| a == "start" || a == "delete" || a == "-v" || a == "--version" || a == "-info");
    if daemon {
        if let Err(e) = godwit_runtime::sealed::reexec_protected() {
            eprintln!("containerd-shim-godwit-v2: {e}");
            std::process::exit(1);
        }
    }
    // The runtime's, the dumper's and libcontainer's tracing events go to
    // containerd-shim's logger (containerd's log).
    logging::init();
    let config = containerd_shim::Config {
        // The shim reaps its own children (see reaper.rs): libcontainer waits
        // for its intermediate processes by pid, which a blind reaper breaks.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<shim::GodwitShim>("io.containerd.godwit.v2", Some(config));
}
