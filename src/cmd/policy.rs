//! `shadowgate policy check|explain`: validate a policy directory, or show for one name and
//! client which service matches, which rule fires, the action and why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::flow::Evidence;
use crate::policy::{Client, Policy};

#[derive(clap::Subcommand)]
pub enum Args {
    /// Check the catalogue and the policy (exit 0 if valid, 1 with file:line:column errors if not).
    Check {
        /// Policy directory (default: ./policies if there, else [policy] dir of
        /// /etc/shadowgate/shadowgate.toml, else /etc/shadowgate/policies).
        dir: Option<PathBuf>,
        /// Take the policy directory from this configuration's [policy] dir.
        #[arg(long, value_name = "FILE", conflicts_with = "dir")]
        config: Option<PathBuf>,
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
        /// Policy directory (default: ./policies if there, else [policy] dir of
        /// /etc/shadowgate/shadowgate.toml, else /etc/shadowgate/policies).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Take the policy directory from this configuration's [policy] dir.
        #[arg(long, value_name = "FILE", conflicts_with = "dir")]
        config: Option<PathBuf>,
    },
}

pub fn run(a: Args) -> ExitCode {
    match a {
        Args::Check { dir, config } => match policy_dir(dir, config.as_deref()) {
            Ok(dir) => check(&dir),
            Err(e) => {
                eprintln!("shadowgate: {e}");
                ExitCode::FAILURE
            }
        },
        Args::Explain {
            name,
            client,
            mac,
            hostname,
            evidence,
            dir,
            config,
        } => {
            let dir = match policy_dir(dir, config.as_deref()) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("shadowgate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let c = (client, mac.as_deref(), hostname.as_deref());
            let ev = Evidence::parse(&evidence).unwrap_or(Evidence::Wire);
            explain(&name, c, ev, &dir)
        }
    }
}

/// The installed configuration, whose [policy] dir is the default outside a source tree.
const SYSTEM_CONFIG: &str = "/etc/shadowgate/shadowgate.toml";
/// The installed policy directory, when the installed configuration names none.
const SYSTEM_POLICIES: &str = "/etc/shadowgate/policies";

/// The policy directory: `--dir`; else `--config`'s [policy] dir; else ./policies if it
/// exists (a source tree); else [policy] dir of the installed configuration; else the installed
/// policy directory. Unless given with `--dir`, stderr says which was used and why.
fn policy_dir(dir: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let from_config = |c: &Path| -> Result<PathBuf, String> {
        crate::config::Config::load(c)
            .map_err(|e| e.to_string())?
            .policy
            .map(|p| p.dir)
            .ok_or_else(|| {
                format!(
                    "{}: no [policy] section; give the directory with --dir DIR",
                    c.display()
                )
            })
    };
    let (d, why) = match config {
        Some(c) => (from_config(c)?, format!("[policy] dir of {}", c.display())),
        None => default_dir(Path::new("policies"), Path::new(SYSTEM_CONFIG), from_config),
    };
    eprintln!("shadowgate: policy directory {} ({why})", d.display());
    Ok(d)
}

/// The default policy directory and why: `local` if it exists, else [policy] dir of `system`
/// (read by `from_config`) if that loads, else [`SYSTEM_POLICIES`].
fn default_dir(
    local: &Path,
    system: &Path,
    from_config: impl Fn(&Path) -> Result<PathBuf, String>,
) -> (PathBuf, String) {
    if local.is_dir() {
        return (local.to_path_buf(), "./policies, the default".into());
    }
    if system.exists() {
        if let Ok(d) = from_config(system) {
            return (
                d,
                format!(
                    "no ./policies here: [policy] dir of {}; --dir DIR or --config FILE to choose",
                    system.display()
                ),
            );
        }
    }
    (
        PathBuf::from(SYSTEM_POLICIES),
        "no ./policies here and no readable installed configuration; --dir DIR to choose".into(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_directory_falls_back_to_the_installed_configuration() {
        let d = std::env::temp_dir().join(format!("sg-policy-dir-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("policies")).unwrap();
        let cfg = d.join("shadowgate.toml");
        std::fs::write(&cfg, "[policy]\ndir = \"/srv/clinic/policies\"\n").unwrap();
        let read = |c: &Path| -> Result<PathBuf, String> {
            crate::config::Config::load(c)
                .map_err(|e| e.to_string())?
                .policy
                .map(|p| p.dir)
                .ok_or_else(|| "none".to_string())
        };
        // A source tree: ./policies.
        let (p, why) = default_dir(&d.join("policies"), &cfg, read);
        assert_eq!(p, d.join("policies"));
        assert!(why.contains("default"), "{why}");
        // Elsewhere: the installed configuration's [policy] dir.
        let (p, why) = default_dir(&d.join("nowhere"), &cfg, read);
        assert_eq!(p, PathBuf::from("/srv/clinic/policies"));
        assert!(why.contains(&cfg.display().to_string()), "{why}");
        // No configuration either: the installed directory.
        let (p, _) = default_dir(&d.join("nowhere"), &d.join("none.toml"), read);
        assert_eq!(p, PathBuf::from(SYSTEM_POLICIES));
        // An explicit --dir wins, --config reads [policy] dir.
        assert_eq!(
            policy_dir(Some("x".into()), None).unwrap(),
            PathBuf::from("x")
        );
        assert_eq!(
            policy_dir(None, Some(&cfg)).unwrap(),
            PathBuf::from("/srv/clinic/policies")
        );
        std::fs::write(&cfg, "[sensor]\nid = \"x\"\n").unwrap();
        assert!(policy_dir(None, Some(&cfg)).unwrap_err().contains("--dir"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
