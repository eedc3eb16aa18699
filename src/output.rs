//! Writers for observations on stdout: JSON lines (stable schema, see README) or a table.

use std::io::{self, Write};

use crate::flow::observation::{format_ts, Observation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

pub struct Writer<W: Write> {
    w: W,
    format: Format,
    header_done: bool,
}

impl<W: Write> Writer<W> {
    pub fn new(w: W, format: Format) -> Self {
        Writer {
            w,
            format,
            header_done: false,
        }
    }

    pub fn write(&mut self, o: &Observation) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.w, o)?;
                self.w.write_all(b"\n")
            }
            Format::Table => {
                if !self.header_done {
                    self.header_done = true;
                    writeln!(
                        self.w,
                        "{:<27} {:<16} {:<5} {:<40} {:<40} {:<40} FLAGS",
                        "TIME", "KIND", "PROTO", "CLIENT", "SERVER", "NAME"
                    )?;
                }
                let name = match (&o.name, o.inferred_names.first()) {
                    (Some(n), _) => n.clone(),
                    (None, Some(i)) => format!("~{i}"),
                    (None, None) => "-".into(),
                };
                let flags: Vec<String> = o
                    .flags
                    .iter()
                    .map(|f| {
                        serde_json::to_value(f)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    })
                    .collect();
                writeln!(
                    self.w,
                    "{:<27} {:<16} {:<5} {:<40} {:<40} {:<40} {}",
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
                    flags.join(",")
                )
            }
        }
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
