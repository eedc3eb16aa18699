//! `shadowgate run --config FILE`: the gateway daemon (live capture, enforcement, DNS mode,
//! portal, metrics); see `daemon`. Exit status: 0 after a clean stop, 78 (`EX_CONFIG`) when the
//! configuration must be fixed (the unit does not restart on it), 1 on any other failure.

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
            eprintln!("shadowgate: {}", e.journal_line());
            ExitCode::from(e.exit_status())
        }
    }
}
