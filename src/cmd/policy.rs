//! `shadowgate policy check|explain`: validate a policy directory, or show for one name and
//! client which service matches, which rule fires, the action and why.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::flow::Evidence;
use crate::policy::{Client, Policy};

#[derive(clap::Subcommand)]
pub enum Args {
    /// Check the catalogue and the policy (exit 0 if valid, 1 with file:line:column errors if not).
    Check {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Show the service a name matches, the rule that fires for a client, the action, and why.
    Explain {
        /// Host name (SNI, DNS question or HTTP Host), or a server address (IP or IP:PORT, 443 by
        /// default) for a connection no name decided, matched by the catalogue's addresses and ports.
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
        /// How the name was seen: on the wire, or inferred from whose DNS lookup.
        #[arg(long, default_value = "wire",
              value_parser = clap::builder::PossibleValuesParser::new(Evidence::NAMES))]
        evidence: String,
        /// Policy directory.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
    },
}

pub fn run(a: Args) -> ExitCode {
    match a {
        Args::Check { dir } => check(&dir),
        Args::Explain {
            name,
            client,
            mac,
            hostname,
            evidence,
            dir,
        } => {
            let c = (client, mac.as_deref(), hostname.as_deref());
            let ev = Evidence::parse(&evidence).unwrap_or(Evidence::Wire);
            explain(&name, c, ev, &dir)
        }
    }
}

fn check(dir: &std::path::Path) -> ExitCode {
    match Policy::load(dir) {
        Ok(p) => {
            let said = super::out::line(format_args!(
                "shadowgate: policy {}: {} services ({} domain patterns), {} rules: syntax is ok, test is successful",
                dir.display(),
                p.services().len(),
                p.pattern_count(),
                p.rule_count()
            ));
            // The clinic's files win over the vendor catalogue: say where.
            for o in p.catalog_overrides() {
                eprintln!("shadowgate: note: {o}");
            }
            // Not errors: the policy is valid; a person should still read them.
            for w in p.portal_scope().warnings {
                eprintln!("shadowgate: warning: {w}");
            }
            for w in p.group_warnings() {
                eprintln!("shadowgate: warning: {w}");
            }
            super::out::exit(said, ExitCode::SUCCESS)
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
    }
}

/// A client as given on the command line: IP, MAC, DHCP host name.
type ClientArgs<'a> = (Option<std::net::IpAddr>, Option<&'a str>, Option<&'a str>);

fn explain(
    name: &str,
    (client, mac, hostname): ClientArgs<'_>,
    evidence: Evidence,
    dir: &std::path::Path,
) -> ExitCode {
    let p = match Policy::load(dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "{e}\nshadowgate: fix the policy first (`shadowgate policy check {}`)",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mac = match mac.map(crate::policy::parse_mac).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            return ExitCode::from(2);
        }
    };
    let c = Client {
        ip: client,
        mac,
        hostname,
    };
    // An address (`1.1.1.1`, `1.1.1.1:853`, `[2606:4700:4700::1111]:853`): a connection that no
    // name decided, matched by the catalogue's `addresses` and `ports` (443 when no port is given).
    let server = name.parse::<std::net::SocketAddr>().ok().or_else(|| {
        name.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, 443))
    });
    let text = match server {
        Some(a) => p.explain_address(a, &c, crate::time::now_ns()),
        None => p.explain_on(name, &c, crate::time::now_ns(), evidence),
    };
    super::out::exit(
        super::out::print_with(|w| w.write_all(text.as_bytes())),
        ExitCode::SUCCESS,
    )
}
