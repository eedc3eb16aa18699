//! The stdout output: observations (with their decisions) as JSON lines (stable schema, see
//! docs/src/decoding.md) or as a table for people.

use std::io::{self, Write};

use crate::flow::observation::{format_ts, Observation};
use crate::policy::Decision;

use super::json::{self, DecisionJson};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

pub struct Writer<W: Write> {
    w: W,
    format: Format,
    header_done: bool,
    /// One JSON line is built here and written with one call (serde_json writes many small
    /// pieces; through a `dyn Write` each would be a call of its own).
    line: Vec<u8>,
    decisions: RenderedDecisions,
}

impl<W: Write> Writer<W> {
    pub fn new(w: W, format: Format) -> Self {
        Writer {
            w,
            format,
            header_done: false,
            line: Vec::with_capacity(1024),
            decisions: RenderedDecisions::default(),
        }
    }

    pub fn write(&mut self, o: &Observation) -> io::Result<()> {
        self.write_event(o, None)
    }

    /// Write an observation with the decision about it, if any.
    pub fn write_event(&mut self, o: &Observation, d: Option<&Decision>) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.line.clear();
                json::observation_open(o, &mut self.line);
                if let Some(d) = d {
                    self.line.extend_from_slice(b",\"decision\":");
                    self.decisions.render(d, &mut self.line);
                }
                json::close(None, &mut self.line);
                self.w.write_all(&self.line)
            }
            Format::Table => {
                if !self.header_done {
                    self.header_done = true;
                    writeln!(
                        self.w,
                        "{:<27} {:<16} {:<5} {:<40} {:<40} {:<40} {:<30} FLAGS",
                        "TIME", "KIND", "PROTO", "CLIENT", "SERVER", "NAME", "DECISION"
                    )?;
                }
                let name = match (&o.name, o.inferred_names.first()) {
                    (Some(n), _) => n.clone(),
                    (None, Some(i)) => format!("~{i}"),
                    (None, None) => "-".into(),
                };
                let flags: Vec<&str> = o.flags.iter().map(|f| f.as_str()).collect();
                let decision = match d {
                    Some(d) => format!(
                        "{} {} ({})",
                        d.action.as_str(),
                        d.service.as_deref().unwrap_or("-"),
                        d.rule_id
                    ),
                    None => "-".into(),
                };
                writeln!(
                    self.w,
                    "{:<27} {:<16} {:<5} {:<40} {:<40} {:<40} {:<30} {}",
                    format_ts(o.ts),
                    o.kind.as_str(),
                    if o.transport == crate::flow::observation::Transport::Tcp {
                        "tcp"
                    } else {
                        "udp"
                    },
                    endpoint(&o.client.ip, o.client.port),
                    endpoint(&o.server.ip, o.server.port),
                    name,
                    decision,
                    flags.join(",")
                )
            }
        }
    }

    /// A JSON line rendered elsewhere (a shard of a sharded replay): the observation opened by
    /// [`json::observation_open`] and the decision's JSON, if it carries one. A table writer
    /// formats `o` and `d` itself.
    pub fn write_rendered(
        &mut self,
        o: &Observation,
        d: Option<&Decision>,
        open: &[u8],
        decision: Option<&[u8]>,
    ) -> io::Result<()> {
        if self.format != Format::Json {
            return self.write_event(o, d);
        }
        self.line.clear();
        self.line.extend_from_slice(open);
        json::close(decision.map(DecisionJson::Bytes), &mut self.line);
        self.w.write_all(&self.line)
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn endpoint(ip: &std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Decisions rendered lately (by the writer, or by a shard): a policy has few distinct ones (per
/// service, rule and evidence), and rendering one costs far more than comparing it. Replaced
/// oldest first.
#[derive(Default)]
pub(super) struct RenderedDecisions {
    entries: Vec<(Decision, Vec<u8>)>,
    next: usize,
}

const RENDERED_DECISIONS: usize = 32;

impl RenderedDecisions {
    pub(super) fn render(&mut self, d: &Decision, out: &mut Vec<u8>) {
        if let Some((_, b)) = self.entries.iter().find(|(k, _)| k == d) {
            out.extend_from_slice(b);
            return;
        }
        let at = out.len();
        json::decision(d, out);
        let e = (d.clone(), out[at..].to_vec());
        if self.entries.len() < RENDERED_DECISIONS {
            self.entries.push(e);
        } else {
            self.entries[self.next] = e;
            self.next = (self.next + 1) % RENDERED_DECISIONS;
        }
    }
}
