//! `shadowgate check --config FILE`: the whole setup checked before going live (see `check`).
//! Exit status 0 when all is ok, 1 with warnings only, 2 with any error; `--fail-on error`
//! (the unit's `ExecStartPre=`) lets warnings pass with 0.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::check;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 1 on warnings, 2 on errors.
    Warn,
    /// Exit 0 on warnings, 2 on errors (what the unit's ExecStartPre= uses).
    Error,
}

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file to check.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/shadowgate/shadowgate.toml"
    )]
    config: PathBuf,
    /// Output: one line per finding grouped by check, or a JSON array of
    /// {check, severity, message, fix}.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Which findings make the exit status non-zero.
    #[arg(long, value_enum, default_value = "warn")]
    fail_on: FailOn,
    /// Table output: leave out the findings that are ok.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(a: Args) -> ExitCode {
    let findings = check::run(&a.config);
    let text = match a.format {
        Format::Table => check::table(&findings, a.quiet),
        Format::Json => check::json(&findings) + "\n",
    };
    let said = super::out::print_with(|w| w.write_all(text.as_bytes()));
    let status = match check::exit_status(&findings) {
        1 if a.fail_on == FailOn::Error => 0,
        s => s,
    };
    super::out::exit(said, ExitCode::from(status))
}
