//! containerd-shim-godwit-v2: containerd's runtime `io.containerd.godwit.v2`.

mod checkpoint;
mod console;
mod container;
mod error;
mod events;
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
    let config = containerd_shim::Config {
        // The shim reaps its own children (see reaper.rs): libcontainer waits
        // for its intermediate processes by pid, which a blind reaper breaks.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<shim::GodwitShim>("io.containerd.godwit.v2", Some(config));
}
