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
use shadowgate::record::deliver::Deliverer;
use shadowgate::record::recorder::Recorder;
use shadowgate::record::{Query, Store};

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
    },
    /// Query the event store.
    Events {
        /// Event store file (or give --config).
        #[arg(long, value_name = "FILE")]
        store: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// From this time (RFC 3339, or an age such as 7d, 24h).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (RFC 3339, or an age).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// Client IP, MAC or host name.
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: EventFormat,
    },
    /// Deliver stored events to the configured SIEM sinks (until caught up, or forever with --follow).
    Deliver {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Keep running and deliver new events as they are recorded.
        #[arg(long)]
        follow: bool,
        /// Give up after this many seconds when not following.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Validate or query a policy directory.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EventFormat {
    Table,
    Json,
    Csv,
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
    // Everything shadowgate writes (event store, SIEM spool files) names staff devices: keep
    // it private to the service account.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
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
            config,
            store,
            drain_timeout,
            print_commits,
        } => {
            let cfg = Config {
                max_flows,
                max_names,
                ..Config::default()
            };
            let conf = match config
                .as_deref()
                .map(shadowgate::config::Config::load)
                .transpose()
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}\nshadowgate: the configuration is not valid, nothing replayed");
                    return ExitCode::FAILURE;
                }
            };
            let policy = policy.or_else(|| {
                conf.as_ref()
                    .and_then(|c| c.policy.as_ref().map(|p| p.dir.clone()))
            });
            let handle = match policy.as_deref().map(PolicyHandle::load).transpose() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("{e}\nshadowgate: the policy is not valid, nothing replayed");
                    return ExitCode::FAILURE;
                }
            };
            let store_conf = conf.as_ref().and_then(|c| c.store.as_ref());
            let store_path = store.or_else(|| store_conf.map(|s| s.path.clone()));
            if store_path.is_some() && handle.is_none() {
                eprintln!("shadowgate: recording events needs a policy (--policy DIR or [policy] in the configuration)");
                return ExitCode::from(2);
            }
            let recorder = match store_path.as_deref().map(Store::open).transpose() {
                Ok(s) => s.map(|st| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0);
                    if let Err(e) =
                        st.apply_retention(store_conf.map_or(400, |s| s.retention_days), now)
                    {
                        eprintln!("shadowgate: warning: retention not applied: {e}");
                    }
                    let sensor_id = conf
                        .as_ref()
                        .map(|c| c.sensor.id.clone())
                        .unwrap_or_default();
                    let mut r = Recorder::new(st, store_conf.map_or(1000, |s| s.batch), &sensor_id);
                    r.print_commits = print_commits;
                    r
                }),
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
            let sinks = conf.map(|c| c.sink).unwrap_or_default();
            replay(
                &files,
                ReplayOpts {
                    format,
                    keep_going,
                    stats,
                    quiet,
                    cfg,
                    policy: handle.as_deref(),
                    emit,
                    recorder,
                    sinks,
                    drain: std::time::Duration::from_secs(drain_timeout),
                },
            )
        }
        Cmd::Events {
            store,
            config,
            since,
            until,
            service,
            client,
            action,
            limit,
            format,
        } => events_cmd(
            store,
            config,
            since,
            until,
            Query {
                service,
                client,
                action,
                limit,
                ..Query::default()
            },
            format,
        ),
        Cmd::Deliver {
            config,
            follow,
            timeout,
        } => deliver_cmd(&config, follow, timeout),
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

/// Where observations go during a replay: the writer, the policy, and the event store.
struct Pipeline<'a, W: Write> {
    w: Writer<W>,
    policy: Option<&'a PolicyHandle>,
    emit: Emit,
    recorder: Option<Recorder>,
    observations: u64,
    write_err: Option<std::io::Error>,
    store_err: Option<String>,
}

impl<W: Write> Pipeline<'_, W> {
    fn handle(&mut self, o: &shadowgate::flow::Observation) {
        self.observations += 1;
        let d = self.policy.and_then(|h| h.current().decide_observation(o));
        if let (Some(rec), Some(d)) = (self.recorder.as_mut(), d.as_ref()) {
            if self.store_err.is_none() {
                if let Err(e) = rec.record(o, d) {
                    self.store_err = Some(e.to_string());
                }
            }
        }
        if self.write_err.is_some()
            || (self.policy.is_some() && self.emit == Emit::Decisions && d.is_none())
        {
            return;
        }
        let r = if self.policy.is_some() {
            self.w.write_event(o, d.as_ref())
        } else {
            self.w.write(o)
        };
        if let Err(e) = r {
            self.write_err = Some(e);
        }
    }
}

/// Options of `replay` beyond the capture files.
struct ReplayOpts<'a> {
    format: Format,
    keep_going: bool,
    stats: bool,
    quiet: bool,
    cfg: Config,
    policy: Option<&'a PolicyHandle>,
    emit: Emit,
    recorder: Option<Recorder>,
    sinks: Vec<shadowgate::config::SinkConf>,
    drain: std::time::Duration,
}

fn replay(files: &[PathBuf], o: ReplayOpts<'_>) -> ExitCode {
    let mut sensor = Sensor::new(o.cfg);
    let stdout = std::io::stdout().lock();
    let mut p = Pipeline {
        w: Writer::new(std::io::BufWriter::with_capacity(1 << 16, stdout), o.format),
        policy: o.policy,
        emit: o.emit,
        recorder: o.recorder,
        observations: 0,
        write_err: None,
        store_err: None,
    };
    let mut failed = false;
    let mut skipped_files = 0u64;
    let mut skipped_bytes = 0u64;
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
            |ob| p.handle(ob),
            |pos| {
                if let Some(b) = &bar {
                    b.set_position(pos);
                }
            },
        );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Some(e) = p.write_err.take() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("shadowgate: cannot write output: {e}");
            return ExitCode::FAILURE;
        }
        if let Err((e, sum)) = res {
            let _ = p.w.flush();
            if o.keep_going {
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
    shadowgate::replay::finish(&mut sensor, |ob| p.handle(ob));
    if let Err(e) = p.w.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("shadowgate: cannot write output: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(rec) = p.recorder.as_mut() {
        if p.store_err.is_none() {
            if let Err(e) = rec.commit() {
                p.store_err = Some(e.to_string());
            }
        }
    }
    if let Some(e) = &p.store_err {
        eprintln!("shadowgate: error: events could not be recorded: {e}; the events committed before it are in the store");
        failed = true;
    }
    let s = sensor.stats();
    if !o.quiet {
        let m = &s.malformed;
        eprintln!(
            "shadowgate: {} frames, {} observations; malformed: link {} ip {} tcp {} udp {} dns {} tls {} quic {} http {}; flows evicted {}, fragments reassembled {}{}{}",
            s.frames,
            p.observations,
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
            p.recorder.as_ref().map(|r| format!("; {} events recorded in {}", r.recorded, r.store.path().display())).unwrap_or_default()
        );
    }
    if o.stats {
        let mut e = std::io::stderr().lock();
        let _ = serde_json::to_writer_pretty(&mut e, &s);
        let _ = writeln!(e);
    }
    if let Some(rec) = &p.recorder {
        if !drain_sinks(&rec.store, &o.sinks, o.drain, o.quiet) {
            // Not a failure: the events wait in the store for the next delivery run.
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Deliver to every sink until each is caught up or `timeout` passes. Returns whether all are.
fn drain_sinks(
    store: &Store,
    sinks: &[shadowgate::config::SinkConf],
    timeout: std::time::Duration,
    quiet: bool,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut all = true;
    for sc in sinks {
        let sink = match sc.build() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("shadowgate: sink {}: {e}", sc.name);
                all = false;
                continue;
            }
        };
        let mut d = match Deliverer::new(sink, store, sc.batch, sc.aggregate()) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("shadowgate: sink {}: {e}", sc.name);
                all = false;
                continue;
            }
        };
        match d.drain(store, deadline) {
            Ok(true) => {
                if !quiet {
                    eprintln!(
                        "shadowgate: sink {}: delivered {} events, caught up",
                        sc.name, d.delivered
                    );
                }
            }
            Ok(false) => {
                all = false;
                let waiting = store.last_seq().unwrap_or(0) - store.cursor(&sc.name).unwrap_or(0);
                eprintln!(
                    "shadowgate: warning: sink {}: {} events wait in the store ({}); `shadowgate deliver` sends them when the SIEM is back",
                    sc.name,
                    waiting,
                    d.last_error.as_deref().unwrap_or("timed out")
                );
            }
            Err(e) => {
                all = false;
                eprintln!("shadowgate: sink {}: {e}", sc.name);
            }
        }
    }
    all
}

/// `--since 7d` / `--since 2026-11-01T00:00:00Z` -> ns since the epoch.
fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_nanosecond().max(0) as u64);
    }
    let age = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor an age like 7d or 24h"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(now.saturating_sub(age).as_nanos() as u64)
}

fn open_store(store: Option<PathBuf>, config: Option<PathBuf>) -> Result<Store, String> {
    let path = match (store, config) {
        (Some(p), _) => p,
        (None, Some(c)) => shadowgate::config::Config::load(&c)
            .map_err(|e| e.to_string())?
            .store
            .map(|s| s.path)
            .ok_or_else(|| format!("{}: no [store] section", c.display()))?,
        (None, None) => return Err("give --store FILE or --config FILE".into()),
    };
    if !path.exists() {
        return Err(format!("{}: no such event store", path.display()));
    }
    Store::open(&path).map_err(|e| e.to_string())
}

fn events_cmd(
    store: Option<PathBuf>,
    config: Option<PathBuf>,
    since: Option<String>,
    until: Option<String>,
    mut q: Query,
    format: EventFormat,
) -> ExitCode {
    let st = match open_store(store, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (arg, slot) in [(since, &mut q.since_ns), (until, &mut q.until_ns)] {
        if let Some(a) = arg {
            match parse_time(&a) {
                Ok(t) => *slot = Some(t),
                Err(e) => {
                    eprintln!("shadowgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let events = match st.query(&q) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let r: std::io::Result<()> = (|| {
        match format {
            EventFormat::Json => {
                for e in &events {
                    serde_json::to_writer(&mut out, e)?;
                    writeln!(out)?;
                }
            }
            EventFormat::Csv => {
                let mut w = csv::Writer::from_writer(&mut out);
                for e in &events {
                    w.serialize(e).map_err(std::io::Error::other)?;
                }
                w.flush()?;
            }
            EventFormat::Table => {
                let row = |o: &mut dyn Write, c: [&str; 8]| {
                    writeln!(
                        o,
                        "{:<8} {:<27} {:<16} {:<22} {:<34} {:<8} {:<26} {}",
                        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
                    )
                };
                row(
                    &mut out,
                    [
                        "SEQ", "TIME", "CLIENT", "SERVICE", "NAME", "ACTION", "RULE", "COUNT",
                    ],
                )?;
                for e in &events {
                    let (seq, time, count) =
                        (e.seq.to_string(), e.time(), e.repeat_count.to_string());
                    row(
                        &mut out,
                        [
                            &seq,
                            &time,
                            &e.client_ip,
                            e.service.as_deref().unwrap_or("-"),
                            &e.name,
                            &e.action,
                            &e.rule_id,
                            &count,
                        ],
                    )?;
                }
            }
        }
        out.flush()
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn deliver_cmd(config: &std::path::Path, follow: bool, timeout: u64) -> ExitCode {
    let conf = match shadowgate::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(sc) = conf.store.as_ref() else {
        eprintln!(
            "shadowgate: {}: no [store] section: nothing to deliver",
            config.display()
        );
        return ExitCode::FAILURE;
    };
    let store = match Store::open(&sc.path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !follow {
        let ok = drain_sinks(
            &store,
            &conf.sink,
            std::time::Duration::from_secs(timeout),
            false,
        );
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let mut ds = Vec::new();
    for s in &conf.sink {
        let d = s.build().and_then(|k| {
            Deliverer::new(k, &store, s.batch, s.aggregate()).map_err(|e| e.to_string())
        });
        match d {
            Ok(d) => ds.push(d),
            Err(e) => {
                eprintln!("shadowgate: sink {}: {e}", s.name);
                return ExitCode::FAILURE;
            }
        }
    }
    loop {
        let mut busy = false;
        for d in &mut ds {
            match d.step(&store, false) {
                Ok(shadowgate::record::deliver::Step::Delivered(_)) => busy = true,
                Ok(shadowgate::record::deliver::Step::Failed(e)) => {
                    eprintln!("shadowgate: sink {}: {e}; retrying", d.name())
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("shadowgate: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if !busy {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
