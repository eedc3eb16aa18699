//! `shadowgate deliver`: send what waits in the store to the configured SIEM sinks, until each is
//! caught up (exit 1 if one is not) or, with `--follow`, forever.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::record::feed;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Keep running and deliver new events as they are recorded.
    #[arg(long)]
    follow: bool,
    /// Give up after this many seconds when not following.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

pub fn run(a: Args) -> ExitCode {
    let conf = match crate::config::Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(sc) = conf.store.as_ref() else {
        eprintln!(
            "shadowgate: {}: no [store] section: nothing to deliver",
            a.config.display()
        );
        return ExitCode::FAILURE;
    };
    // Open once here so that a missing or damaged store is reported before any sink starts.
    if let Err(e) = crate::record::Store::open(&sc.path) {
        eprintln!("shadowgate: {e}");
        return ExitCode::FAILURE;
    }
    if !a.follow {
        let reports = feed::drain(
            &sc.path,
            &conf.sink,
            Duration::from_secs(a.timeout),
            &conf.sensor.id,
        );
        return if feed::report(&reports, false) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let stop = AtomicBool::new(false);
    match feed::follow(&sc.path, &conf.sink, &stop, &conf.sensor.id) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            ExitCode::FAILURE
        }
    }
}
