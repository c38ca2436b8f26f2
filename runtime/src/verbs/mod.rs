//! One file per verb of the command line, each thin over libcontainer and
//! the state root, so that the shim can call the same functions in-process.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod migrate;
pub mod pause;
pub mod process;
pub mod ps;
pub mod receive;
pub mod restore;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;
