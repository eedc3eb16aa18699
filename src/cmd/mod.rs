//! The commands of the `shadowgate` binary, one module each: their arguments (clap) and what they
//! run. `main.rs` only parses the command line and calls `run` of the chosen command.

pub mod breakglass;
pub mod catalog;
pub mod check;
pub mod deliver;
pub mod docs;
pub mod events;
mod out;
pub mod policy;
pub mod portal;
pub mod replay;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};

/// Load the configuration file, if one was given.
pub(crate) fn load_config(path: Option<&Path>) -> Result<Option<crate::config::Config>, String> {
    path.map(crate::config::Config::load)
        .transpose()
        .map_err(|e| e.to_string())
}

/// The path of the event store named by `--store`, or by `[store]` of `--config`; it must exist.
pub(crate) fn store_path(
    store: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<PathBuf, String> {
    let path = match (store, config) {
        (Some(p), _) => p,
        (None, Some(c)) => crate::config::Config::load(&c)
            .map_err(|e| e.to_string())?
            .store
            .map(|s| s.path)
            .ok_or_else(|| format!("{}: no [store] section", c.display()))?,
        (None, None) => return Err("give --store FILE or --config FILE".into()),
    };
    if !path.exists() {
        return Err(format!("{}: no such event store", path.display()));
    }
    Ok(path)
}
