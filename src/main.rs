//! Command line of shadowgate: parses arguments and hands over to the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use shadowgate::capture::CaptureFile;
use shadowgate::flow::{Config, Sensor};
use shadowgate::output::{Format, Writer};
use shadowgate::policy::reload::PolicyHandle;
use shadowgate::policy::{Client, Policy};

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
        /// Decide about each observation with the policy in this directory (policy.toml and
        /// catalog/). It is reloaded on SIGHUP and when its files change.
        #[arg(long, value_name = "DIR")]
        policy: Option<PathBuf>,
        /// With --policy: print every observation (with its decision when there is one), or only
        /// the decision events.
        #[arg(long, value_enum, default_value = "all", requires = "policy")]
        emit: Emit,
    },
    /// Validate or query a policy directory.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    All,
    Decisions,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Check the catalogue and the policy (exit 0 if valid, 1 with file:line:column errors if not).
    Check {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Show the service a name matches, the rule that fires for a client, the action, and why.
    Explain {
        /// Host name (SNI, DNS question or HTTP Host).
        name: String,
        /// Client IP address (selects client groups).
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        /// Client MAC address.
        #[arg(long)]
        mac: Option<String>,
        /// Client DHCP host name.
        #[arg(long)]
        hostname: Option<String>,
        /// Policy directory.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
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
            policy,
            emit,
        } => {
            let cfg = Config {
                max_flows,
                max_names,
                ..Config::default()
            };
            let handle = match policy.as_deref().map(PolicyHandle::load).transpose() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("{e}\nshadowgate: the policy is not valid, nothing replayed");
                    return ExitCode::FAILURE;
                }
            };
            // Keep the watcher alive for the whole replay (SIGHUP / file changes reload).
            let _watch = handle.as_ref().and_then(|h| {
                h.watch()
                    .map_err(|e| eprintln!("shadowgate: warning: no policy hot reload: {e}"))
                    .ok()
            });
            replay(
                &files,
                format,
                keep_going,
                stats,
                quiet,
                cfg,
                handle.as_deref(),
                emit,
            )
        }
        Cmd::Policy {
            cmd: PolicyCmd::Check { dir },
        } => match Policy::load(&dir) {
            Ok(p) => {
                println!(
                    "shadowgate: policy {}: {} services ({} domain patterns), {} rules: syntax is ok, test is successful",
                    dir.display(),
                    p.services().len(),
                    p.pattern_count(),
                    p.rule_count()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!(
                    "shadowgate: policy {}: test failed ({} error{})",
                    dir.display(),
                    e.0.len(),
                    if e.0.len() == 1 { "" } else { "s" }
                );
                ExitCode::FAILURE
            }
        },
        Cmd::Policy {
            cmd:
                PolicyCmd::Explain {
                    name,
                    client,
                    mac,
                    hostname,
                    dir,
                },
        } => {
            let p = match Policy::load(&dir) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "{e}\nshadowgate: fix the policy first (`shadowgate policy check {}`)",
                        dir.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let mac = match mac.as_deref().map(parse_mac).transpose() {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("shadowgate: {e}");
                    return ExitCode::from(2);
                }
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            print!(
                "{}",
                p.explain(
                    &name,
                    &Client {
                        ip: client,
                        mac,
                        hostname: hostname.as_deref()
                    },
                    now
                )
            );
            ExitCode::SUCCESS
        }
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address (write 02:1a:2b:3c:4d:5e)");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
fn replay(
    files: &[PathBuf],
    format: Format,
    keep_going: bool,
    stats: bool,
    quiet: bool,
    cfg: Config,
    policy: Option<&PolicyHandle>,
    emit: Emit,
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
                    if let Err(e) = emit_event(&mut w, o, policy, emit) {
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
            if let Err(e) = emit_event(&mut w, o, policy, emit) {
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

/// Write one observation, deciding about it first when a policy is loaded.
fn emit_event<W: Write>(
    w: &mut Writer<W>,
    o: &shadowgate::flow::Observation,
    policy: Option<&PolicyHandle>,
    emit: Emit,
) -> std::io::Result<()> {
    let Some(h) = policy else { return w.write(o) };
    let d = h.current().decide_observation(o);
    if emit == Emit::Decisions && d.is_none() {
        return Ok(());
    }
    w.write_event(o, d.as_ref())
}
