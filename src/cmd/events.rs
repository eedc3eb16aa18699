//! `shadowgate events`: query the event store by time, service, client and action, as a table,
//! JSON lines or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::csv_out::CsvWriter;
use crate::record::{Event, Query};

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
    /// Client IP, MAC or host name.
    #[arg(long)]
    client: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    format: EventFormat,
}

pub fn run(a: Args) -> ExitCode {
    let st = match super::open_existing_store(a.store, a.config) {
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
    let mut q = Query {
        service: a.service,
        client: a.client,
        action,
        limit: a.limit,
        ..Query::default()
    };
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
            let row = |o: &mut dyn Write, c: [&str; 8]| {
                writeln!(
                    o,
                    "{:<8} {:<27} {:<16} {:<22} {:<34} {:<8} {:<26} {}",
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
                )
            };
            row(
                out,
                [
                    "SEQ", "TIME", "CLIENT", "SERVICE", "NAME", "ACTION", "RULE", "COUNT",
                ],
            )?;
            for e in events {
                let (seq, time, count) = (e.seq.to_string(), e.time(), e.repeat_count.to_string());
                row(
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
                )?;
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
