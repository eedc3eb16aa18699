//! `shadowgate break-glass on|off|status`: turn enforcement off (and on again) at once, through
//! the break-glass file the daemon watches; it survives restarts until turned off.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enforcement off now: decide and record only (as monitor mode).
    On,
    /// Enforcement back on.
    Off,
    /// Say whether break-glass is on.
    Status,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum, required_unless_present = "cleanup")]
    switch: Option<Switch>,
    /// Delete a table `inet shadowgate` a stopped daemon left behind (systemd's ExecStopPost);
    /// a running daemon's table is not touched.
    #[arg(long, conflicts_with = "switch")]
    cleanup: bool,
    /// Configuration file (its [enforce] break_glass_file is used).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/shadowgate/shadowgate.toml"
    )]
    config: PathBuf,
    /// Who and why, kept in the file for the record.
    #[arg(long)]
    reason: Option<String>,
}

pub fn run(a: Args) -> ExitCode {
    if a.cleanup {
        return match crate::enforce::nft::remove_stale_table() {
            Ok(true) => super::out::exit(
                super::out::line(format_args!(
                    "removed the table inet shadowgate a stopped daemon left behind"
                )),
                ExitCode::SUCCESS,
            ),
            Ok(false) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shadowgate: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(switch) = a.switch else {
        return ExitCode::FAILURE;
    };
    let conf = match crate::config::Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = conf
        .enforce
        .map(|e| e.break_glass_file)
        .unwrap_or_else(|| PathBuf::from("/run/shadowgate/break-glass"));
    let r = match switch {
        Switch::On => {
            if let Some(d) = file.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let body = format!(
                "break-glass set {} by uid {}: {}\n",
                crate::time::rfc3339_micros(crate::time::now_ns()),
                // SAFETY: getuid has no preconditions.
                unsafe { libc::getuid() },
                a.reason.as_deref().unwrap_or("no reason given")
            );
            std::fs::write(&file, body).map(|_| "on: enforcement is off within 100 ms")
        }
        Switch::Off => match std::fs::remove_file(&file) {
            Ok(()) => Ok("off: enforcement is back on (if [enforce] mode = \"enforce\")"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("was not on"),
            Err(e) => Err(e),
        },
        Switch::Status => Ok(if file.exists() { "on" } else { "off" }),
    };
    match r {
        Ok(msg) => super::out::exit(
            super::out::line(format_args!("break-glass {msg} ({})", file.display())),
            ExitCode::SUCCESS,
        ),
        Err(e) => {
            eprintln!(
                "shadowgate: {}: {e} (run as root or as the service user)",
                file.display()
            );
            ExitCode::FAILURE
        }
    }
}
