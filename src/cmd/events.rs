//! `shadowgate events`: query the event store by time, service, client (device), group, action
//! and severity, as a table, JSON lines or CSV; with `--follow`, keep printing new events as the
//! daemon stores them (like `tail -f`).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::csv_out::CsvWriter;
use crate::record::{Event, Query, Store};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub struct Args {
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
    /// Client IP, MAC or host name (`--device` is the same).
    #[arg(long, visible_alias = "device")]
    client: Option<String>,
    #[arg(long)]
    action: Option<String>,
    /// Events of clients in this group (the policy's client groups).
    #[arg(long)]
    group: Option<String>,
    /// Events at or above this severity: info, low, medium, high, critical.
    #[arg(long)]
    severity: Option<String>,
    /// At most this many events (with --follow: the newest this many before following).
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    format: EventFormat,
    /// Keep printing new events as they are stored, until Ctrl-C. Without --since it starts with
    /// the newest 10 matching events (or --limit), as `tail -f` does.
    #[arg(long, short = 'f')]
    follow: bool,
    /// With --follow: how often to look for new events, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS", requires = "follow")]
    poll_ms: u64,
}

/// Events shown before following when neither --since nor --limit is given (`tail`'s 10).
const FOLLOW_TAIL: usize = 10;

pub fn run(a: Args) -> ExitCode {
    let path = match super::store_path(a.store, a.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Following beside the daemon: read only (never a migration or a write lock on its store).
    let opened = if a.follow {
        Store::open_read_only(&path).map_err(|e| e.to_string())
    } else {
        Store::open(&path).map_err(|e| e.to_string())
    };
    let st = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let action = match a.action.as_deref().map(crate::record::event::parse_action) {
        None => None,
        Some(Ok(act)) => Some(act),
        Some(Err(e)) => {
            eprintln!("shadowgate: --action: {e}");
            return ExitCode::from(2);
        }
    };
    let min_severity = match a.severity.as_deref() {
        None => None,
        Some(s) => match <crate::policy::Severity as crate::record::words::Word>::from_word(s) {
            Some(v) => Some(v),
            None => {
                eprintln!(
                    "shadowgate: --severity: unknown severity `{s}`: use one of info, low, medium, high, critical"
                );
                return ExitCode::from(2);
            }
        },
    };
    if a.follow && a.until.is_some() {
        eprintln!("shadowgate: --until and --follow do not go together: following has no end");
        return ExitCode::from(2);
    }
    if a.follow && a.format == EventFormat::Csv {
        eprintln!("shadowgate: --follow prints a table or JSON lines (--format table or json)");
        return ExitCode::from(2);
    }
    let mut q = Query {
        service: a.service,
        client: a.client,
        action,
        limit: a.limit,
        group: a.group,
        min_severity,
        ..Query::default()
    };
    if a.follow {
        // Like `tail -f`: the newest few matching events, then what comes. With --since:
        // everything since (the first --limit of it, as without --follow).
        if a.since.is_none() {
            q.limit = Some(a.limit.unwrap_or(FOLLOW_TAIL));
            q.newest = true;
        }
    }
    let now = crate::time::now_ns();
    for (arg, slot) in [(a.since, &mut q.since_ns), (a.until, &mut q.until_ns)] {
        if let Some(arg) = arg {
            match crate::time::parse_since(&arg, now) {
                Ok(t) => *slot = Some(t),
                Err(e) => {
                    eprintln!("shadowgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    if a.follow {
        drop(st);
        return super::out::exit(
            follow(&path, q, a.format, Duration::from_millis(a.poll_ms.max(10))),
            ExitCode::SUCCESS,
        );
    }
    let events = match st.query(&q) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    super::out::exit(
        super::out::print_with(|w| write_events(w, &events, a.format)),
        ExitCode::SUCCESS,
    )
}

/// Print the history `q` selects, then every new matching event as it is stored, until SIGINT
/// or SIGTERM (exit 0), or the reader of standard output goes away (exit 0). Each poll reads
/// only the new rows (`seq` above the last one seen, up to the newest at that moment), so a quiet
/// store costs one index lookup per poll. A store removed or replaced under it (restored, moved
/// away) is an error: the sequence numbers of another file mean nothing here.
fn follow(path: &Path, mut q: Query, format: EventFormat, every: Duration) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let inode = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let gone = |why: &str| {
        format!(
            "{}: the event store {why} while following (rotated, restored or moved?): run `shadowgate events --follow` again on the store the daemon writes now",
            path.display()
        )
    };
    let st = Store::open_read_only(path).map_err(|e| e.to_string())?;
    let id = inode(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut seen = st.last_seq().map_err(|e| e.to_string())?;
    q.upto_seq = Some(seen);
    let history = st.query(&q).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let r = (|| -> std::io::Result<()> {
        if format == EventFormat::Table {
            write_table_header(&mut out)?;
        }
        for e in &history {
            write_one(&mut out, e, format)?;
        }
        out.flush()
    })();
    if let Err(e) = r {
        return super::out::quiet_on_closed_pipe(Err(e));
    }
    // Following: no limit, no newest-first; only rows after the last one seen.
    q.limit = None;
    q.newest = false;
    q.since_ns = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if reader_gone() {
            return Ok(());
        }
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50).min(every));
            continue;
        }
        next = Instant::now() + every;
        match inode(path) {
            Ok(now) if now == id => {}
            Ok(_) => return Err(gone("was replaced by another file")),
            Err(_) => return Err(gone("was removed")),
        }
        let newest = st.last_seq().map_err(|e| e.to_string())?;
        if newest < seen {
            return Err(gone("went back to an earlier event"));
        }
        if newest == seen {
            continue;
        }
        q.after_seq = Some(seen);
        q.upto_seq = Some(newest);
        let events = st.query(&q).map_err(|e| e.to_string())?;
        seen = newest;
        let r = (|| -> std::io::Result<()> {
            for e in &events {
                write_one(&mut out, e, format)?;
                // Line-buffered: a reader (`| grep`) sees each event as it comes.
                out.flush()?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            return super::out::quiet_on_closed_pipe(Err(e));
        }
    }
    Ok(())
}

/// Has the reader of standard output gone (a closed pipe: `events --follow | head -3`)? Checked
/// while idle, so a follower whose reader went away ends without waiting for the next event.
fn reader_gone() -> bool {
    let mut p = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1, zero timeout: poll only writes `revents`.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn write_one(out: &mut dyn Write, e: &Event, format: EventFormat) -> std::io::Result<()> {
    match format {
        EventFormat::Json | EventFormat::Csv => {
            serde_json::to_writer(&mut *out, e)?;
            writeln!(out)
        }
        EventFormat::Table => write_table_row(out, e),
    }
}

fn table_row(o: &mut dyn Write, c: [&str; 8]) -> std::io::Result<()> {
    writeln!(
        o,
        "{:<8} {:<27} {:<16} {:<22} {:<34} {:<8} {:<26} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    )
}

fn write_table_header(out: &mut dyn Write) -> std::io::Result<()> {
    table_row(
        out,
        [
            "SEQ", "TIME", "CLIENT", "SERVICE", "NAME", "ACTION", "RULE", "COUNT",
        ],
    )
}

fn write_table_row(out: &mut dyn Write, e: &Event) -> std::io::Result<()> {
    let (seq, time, count) = (e.seq.to_string(), e.time(), e.repeat_count.to_string());
    table_row(
        out,
        [
            &seq,
            &time,
            &e.client_ip,
            e.service.as_deref().unwrap_or("-"),
            &e.name,
            e.action_word(),
            &e.rule_id,
            &count,
        ],
    )
}

fn write_events(out: &mut dyn Write, events: &[Event], format: EventFormat) -> std::io::Result<()> {
    match format {
        EventFormat::Json => {
            for e in events {
                serde_json::to_writer(&mut *out, e)?;
                writeln!(out)?;
            }
        }
        EventFormat::Csv => {
            // A fixed header and one row per event with its columns: system and decision
            // events alike (their optional fields are empty cells, never missing ones).
            let mut w = CsvWriter::new(&mut *out, Event::CSV_HEADER).map_err(csv_io)?;
            for e in events {
                w.row(e.csv_cells()).map_err(csv_io)?;
            }
            w.flush()?;
        }
        EventFormat::Table => {
            write_table_header(out)?;
            for e in events {
                write_table_row(out, e)?;
            }
        }
    }
    Ok(())
}

/// A CSV write error as the I/O error under it (a closed pipe stays `BrokenPipe`).
fn csv_io(e: csv::Error) -> std::io::Error {
    if !e.is_io_error() {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        k => std::io::Error::other(format!("{k:?}")),
    }
}
