//! Command line of shadowgate: parses arguments and hands over to the command's module in
//! `shadowgate::cmd`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use shadowgate::cmd;

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
    Replay(cmd::replay::Args),
    /// Query the event store.
    Events(cmd::events::Args),
    /// Deliver stored events to the configured SIEM sinks (until caught up, or forever with --follow).
    Deliver(cmd::deliver::Args),
    /// Write one ISO week's shadow-AI report (HTML with charts, CSV, JSON) from the event store.
    Report(cmd::report::Args),
    /// Validate or query a policy directory.
    Policy {
        #[command(subcommand)]
        cmd: cmd::policy::Args,
    },
    /// The service catalogue: list its services, compare two catalogues.
    Catalog {
        #[command(subcommand)]
        cmd: cmd::catalog::Args,
    },
    /// Check the whole setup before going live (config, policy, ports, interfaces, kernel,
    /// capabilities, store, portal CA, upstreams, sinks); exit 0 ok, 1 warnings, 2 errors.
    Check(cmd::check::Args),
    /// Run the gateway daemon: capture live, decide, record, enforce, answer DNS.
    Run(cmd::run::Args),
    /// Turn enforcement off at once (on), back on (off), or show it (status).
    BreakGlass(cmd::breakglass::Args),
    /// The steering portal: make its name-constrained CA, show a CA's constraints.
    Portal {
        #[command(subcommand)]
        cmd: cmd::portal::Args,
    },
    /// Write the manual pages and shell completions (what the Debian package ships).
    #[command(hide = true)]
    Docs(cmd::docs::Args),
}

fn main() -> ExitCode {
    // Everything shadowgate writes (event store, SIEM spool files) names staff devices: keep
    // it private to the service account.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    match Cli::parse().cmd {
        Cmd::Replay(a) => cmd::replay::run(a),
        Cmd::Events(a) => cmd::events::run(a),
        Cmd::Deliver(a) => cmd::deliver::run(a),
        Cmd::Report(a) => cmd::report::run(a),
        Cmd::Policy { cmd } => cmd::policy::run(cmd),
        Cmd::Catalog { cmd } => cmd::catalog::run(cmd),
        Cmd::Check(a) => cmd::check::run(a),
        Cmd::Run(a) => cmd::run::run(a),
        Cmd::BreakGlass(a) => cmd::breakglass::run(a),
        Cmd::Portal { cmd } => cmd::portal::run(cmd),
        Cmd::Docs(a) => cmd::docs::run(a, Cli::command()),
    }
}
