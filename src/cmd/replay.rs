//! `shadowgate replay`: capture files through the pipeline (sensor, policy, stdout writer,
//! recorder), a summary on stderr, then the SIEM feed drained for a while.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::capture::CaptureFile;
use crate::flow::Config;
use crate::pipeline::{Emit, Format, Pipeline};
use crate::policy::reload::PolicyHandle;
use crate::record::recorder::Recorder;
use crate::record::system::SystemLog;
use crate::record::{feed, Store, SystemKind};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Capture files (pcap or pcapng), processed in order through one sensor state.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// On a corrupt or truncated file, report it, count what was skipped and go on.
    #[arg(long)]
    keep_going: bool,
    /// Print the sensor's counters as JSON on stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Flow table limit (oldest flows are evicted beyond it).
    #[arg(long, default_value_t = Config::default().max_flows)]
    max_flows: usize,
    /// DNS name cache limit (server addresses).
    #[arg(long, default_value_t = Config::default().max_names)]
    max_names: usize,
    /// Threads to replay on: flows are sharded by their address pair (both directions and
    /// every fragment on one thread), DNS and DHCP are read by every thread, and the output is
    /// merged back into capture order. --max-flows is shared between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Do not print the one-line summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Decide about each observation with the policy in this directory (policy.toml and
    /// catalog/). It is reloaded on SIGHUP and when its files change.
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// With --policy: print every observation (with its decision when there is one), or only
    /// the decision events.
    #[arg(long, value_enum, default_value = "all")]
    emit: Emit,
    /// Configuration file (sensor id, policy, event store, SIEM sinks): decisions are
    /// recorded in the store and delivered to the sinks.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Record decisions in this event store (overrides the configuration's).
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
    /// Seconds to keep delivering to the sinks after the replay before leaving the rest in
    /// the store.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Print each committed store sequence on stderr (crash tests).
    #[arg(long, hide = true)]
    print_commits: bool,
}

pub fn run(a: Args) -> ExitCode {
    let mut cfg = Config {
        max_flows: a.max_flows,
        max_names: a.max_names,
        ..Config::default()
    };
    let conf = match super::load_config(a.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\nshadowgate: the configuration is not valid, nothing replayed");
            return ExitCode::FAILURE;
        }
    };
    if let Some(c) = &conf {
        c.sensor.apply(&mut cfg);
    }
    let policy_dir = a.policy.clone().or_else(|| {
        conf.as_ref()
            .and_then(|c| c.policy.as_ref().map(|p| p.dir.clone()))
    });
    // With a configuration, its resolvers are the clinic's own, as in the daemon.
    let resolvers = conf
        .as_ref()
        .map(|c| c.clinic_resolvers())
        .unwrap_or_default();
    let handle = match policy_dir
        .as_deref()
        .map(|d| PolicyHandle::load_with(d, &resolvers))
        .transpose()
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}\nshadowgate: the policy is not valid, nothing replayed");
            return ExitCode::FAILURE;
        }
    };
    let store_conf = conf.as_ref().and_then(|c| c.store.as_ref());
    let store_path = a
        .store
        .clone()
        .or_else(|| store_conf.map(|s| s.path.clone()));
    if store_path.is_some() && handle.is_none() {
        eprintln!("shadowgate: recording events needs a policy (--policy DIR or [policy] in the configuration)");
        return ExitCode::from(2);
    }
    let sensor_id = conf
        .as_ref()
        .map(|c| c.sensor.id.clone())
        .unwrap_or_default();
    let opened = store_path.as_deref().map(|p| {
        let st = Store::open(p)?;
        let log = SystemLog::open(p, &sensor_id)?;
        Ok::<_, crate::record::StoreError>((st, log))
    });
    let (recorder, system) = match opened.transpose() {
        Ok(Some((st, log))) => {
            log.sensor_start(
                "replay",
                handle.as_deref(),
                json!({ "files": a.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>() }),
            );
            if let Some(h) = &handle {
                log.watch_policy(h);
            }
            let days = store_conf.map_or(400, |s| s.retention_days);
            // The configured sinks' cursors hold undelivered events back; with no configuration
            // the sinks are unknown, so every cursor in the store does.
            let sinks = match &conf {
                Some(c) => Ok(c.sink.iter().map(|s| s.name.clone()).collect()),
                None => st.cursor_names(),
            };
            match sinks.and_then(|s| st.apply_retention(&s, days, crate::time::now_ns())) {
                Ok(r) => crate::record::retention::record_retention(&log, days, &r),
                Err(e) => eprintln!("shadowgate: warning: retention not applied: {e}"),
            }
            let mut r = Recorder::new(st, store_conf.map_or(1000, |s| s.batch), &sensor_id);
            r.print_commits = a.print_commits;
            (Some(r), Some(log))
        }
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("shadowgate: cannot open the event store: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Keep the watcher alive for the whole replay (SIGHUP / file changes reload).
    let _watch = handle.as_ref().and_then(|h| {
        h.watch()
            .map_err(|e| eprintln!("shadowgate: warning: no policy hot reload: {e}"))
            .ok()
    });
    let stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    let mut p = Pipeline::new(cfg)
        .with_threads(a.threads as usize)
        .with_writer(Box::new(stdout), a.format, a.emit);
    if let Some(h) = handle {
        p = p.with_policy(h);
    }
    if let Some(r) = recorder {
        p = p.with_recorder(r);
    }
    let sinks = conf.map(|c| c.sink).unwrap_or_default();
    replay(&a.files, p, &a, &sinks, system.as_deref())
}

/// A progress bar on a terminal for files over 64 MB.
fn progress_bar(path: &Path) -> Option<indicatif::ProgressBar> {
    let len = CaptureFile::open(path).map(|f| f.len()).unwrap_or(0);
    (std::io::stderr().is_terminal() && len > 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(len);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(path.display().to_string());
        b
    })
}

fn replay(
    files: &[PathBuf],
    mut p: Pipeline,
    a: &Args,
    sinks: &[crate::config::SinkConf],
    system: Option<&SystemLog>,
) -> ExitCode {
    let mut failed = false;
    let mut skipped_files = 0u64;
    let mut skipped_bytes = 0u64;
    for path in files {
        let bar = progress_bar(path);
        let res = p.replay_file(path, |pos| {
            if let Some(b) = &bar {
                b.set_position(pos);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Some(e) = p.take_write_error() {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("shadowgate: cannot write output: {e}");
                return ExitCode::FAILURE;
            }
            // The reader has gone (`| head`): stop quietly, unless events are being recorded:
            // then every file still goes into the store (and the end of the run is recorded),
            // only the printing stops.
            if p.recorder().is_none() {
                return ExitCode::SUCCESS;
            }
        }
        if let Err((e, sum)) = &res {
            p.flush_writer();
            if let Some(log) = system {
                let _ = log.record(
                    SystemKind::CaptureGap,
                    &format!(
                        "{}: {} bytes not read (damaged capture)",
                        path.display(),
                        sum.skipped_bytes
                    ),
                    json!({ "file": path.display().to_string(), "skipped_bytes": sum.skipped_bytes, "error": e.to_string() }),
                );
            }
        }
        if let Err((e, sum)) = res {
            if a.keep_going {
                eprintln!("shadowgate: warning: {e}");
                skipped_files += 1;
                skipped_bytes += sum.skipped_bytes;
            } else {
                eprintln!("shadowgate: error: {e}");
                failed = true;
                break;
            }
        }
    }
    p.finish();
    if let Some(e) = p.take_write_error() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("shadowgate: cannot write output: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(e) = p.store_error() {
        eprintln!("shadowgate: error: events could not be recorded: {e}; the events committed before it are in the store");
        failed = true;
    }
    let s = p.stats();
    if !a.quiet {
        let m = &s.malformed;
        eprintln!(
            "shadowgate: {} frames, {} observations; malformed: link {} ip {} tcp {} udp {} dns {} tls {} quic {} http {}; flows evicted {}, fragments reassembled {}{}{}",
            s.frames,
            p.counts().observations,
            m.link,
            m.ip,
            m.tcp,
            m.udp,
            m.dns,
            m.tls,
            m.quic,
            m.http,
            s.flows.evicted,
            s.fragments.reassembled,
            if skipped_files > 0 { format!("; skipped {skipped_bytes} bytes in {skipped_files} damaged file(s)") } else { String::new() },
            p.recorder().map(|r| format!("; {} events recorded in {}", r.recorded, r.store.path().display())).unwrap_or_default()
        );
    }
    if a.stats {
        let mut e = std::io::stderr().lock();
        let _ = serde_json::to_writer_pretty(&mut e, &s);
        let _ = writeln!(e);
    }
    if let Some(log) = system {
        let m = &s.malformed;
        log.sensor_stop(
            if failed { "error" } else { "end of input" },
            json!({
                "frames": s.frames,
                "observations": p.counts().observations,
                "decisions": p.counts().decisions,
                "recorded": p.recorder().map(|r| r.recorded),
                "malformed": m,
                "skipped_files": skipped_files,
                "skipped_bytes": skipped_bytes,
            }),
        );
    }
    if let Some(rec) = p.recorder() {
        // Not a failure when a sink is behind: the events wait in the store for the next
        // delivery run.
        let reports = feed::drain(
            rec.store.path(),
            sinks,
            Duration::from_secs(a.drain_timeout),
            system.map_or("", |l| l.sensor()),
        );
        feed::report(&reports, a.quiet);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
