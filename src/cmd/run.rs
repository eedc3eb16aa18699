//! `shadowgate run --config FILE`: the gateway daemon (live capture, enforcement, DNS mode,
//! portal, metrics); see `daemon`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (see deploy/shadowgate.toml).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/shadowgate/shadowgate.toml"
    )]
    config: PathBuf,
}

pub fn run(a: Args) -> ExitCode {
    match crate::daemon::run(&a.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            ExitCode::FAILURE
        }
    }
}
