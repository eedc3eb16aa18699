//! Command line of shadowgate: parses arguments and hands over to the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shadowgate::capture::CaptureFile;
use shadowgate::flow::{Config, Sensor};
use shadowgate::output::{Format, Writer};

#[derive(Parser)]
#[command(
    name = "shadowgate",
    version,
    about = "See, decide and record consumer generative-AI use on a clinic gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay pcap/pcapng files and print one observation per DNS question, TLS/QUIC ClientHello
    /// and HTTP request.
    Replay {
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
        /// Do not print the one-line summary on stderr.
        #[arg(short, long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Replay {
            files,
            format,
            keep_going,
            stats,
            max_flows,
            max_names,
            quiet,
        } => {
            let cfg = Config {
                max_flows,
                max_names,
                ..Config::default()
            };
            replay(&files, format, keep_going, stats, quiet, cfg)
        }
    }
}

fn replay(
    files: &[PathBuf],
    format: Format,
    keep_going: bool,
    stats: bool,
    quiet: bool,
    cfg: Config,
) -> ExitCode {
    let mut sensor = Sensor::new(cfg);
    let stdout = std::io::stdout().lock();
    let mut w = Writer::new(std::io::BufWriter::with_capacity(1 << 16, stdout), format);
    let mut failed = false;
    let mut skipped_files = 0u64;
    let mut skipped_bytes = 0u64;
    let mut write_err = None;
    let mut observations = 0u64;
    for path in files {
        let len = CaptureFile::open(path).map(|f| f.len()).unwrap_or(0);
        let bar = (std::io::stderr().is_terminal() && len > 64 << 20).then(|| {
            let b = indicatif::ProgressBar::new(len);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(path.display().to_string());
            b
        });
        let res = shadowgate::replay::replay_file(
            path,
            &mut sensor,
            |o| {
                observations += 1;
                if write_err.is_none() {
                    if let Err(e) = w.write(o) {
                        write_err = Some(e);
                    }
                }
            },
            |pos| {
                if let Some(b) = &bar {
                    b.set_position(pos);
                }
            },
        );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Some(e) = write_err.take() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("shadowgate: cannot write output: {e}");
            return ExitCode::FAILURE;
        }
        if let Err((e, sum)) = res {
            let _ = w.flush();
            if keep_going {
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
    shadowgate::replay::finish(&mut sensor, |o| {
        observations += 1;
        if write_err.is_none() {
            if let Err(e) = w.write(o) {
                write_err = Some(e);
            }
        }
    });
    if let Err(e) = w.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("shadowgate: cannot write output: {e}");
            return ExitCode::FAILURE;
        }
    }
    let s = sensor.stats();
    if !quiet {
        let m = &s.malformed;
        eprintln!(
            "shadowgate: {} frames, {} observations; malformed: link {} ip {} tcp {} udp {} dns {} tls {} quic {} http {}; flows evicted {}, fragments reassembled {}{}",
            s.frames,
            observations,
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
            if skipped_files > 0 { format!("; skipped {skipped_bytes} bytes in {skipped_files} damaged file(s)") } else { String::new() }
        );
    }
    if stats {
        let mut e = std::io::stderr().lock();
        let _ = serde_json::to_writer_pretty(&mut e, &s);
        let _ = writeln!(e);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
