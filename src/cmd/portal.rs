//! `shadowgate portal`: make the portal CA (name-constrained to what the policy steers or
//! coaches) and show which names an existing portal CA may certify.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::portal::ca;

#[derive(clap::Subcommand)]
pub enum Args {
    /// Make the portal CA: ECDSA P-256, name constraints permitting only the domains some steer
    /// or coach rule selects, never the approved route, enterprise AI APIs or DNS resolvers (and
    /// no IP address). Writes portal-ca.pem (install it on workstations) and portal-ca.key (mode
    /// 0600; give it to the daemon's user: chown shadowgate:shadowgate).
    Ca {
        /// Directory to write portal-ca.pem and portal-ca.key into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Policy directory whose steer and coach rules bound the CA (or give --config).
        #[arg(long, value_name = "DIR")]
        policy: Option<PathBuf>,
        /// shadowgate configuration: its [policy] dir and [portal] clinic_name are used.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Validity of the CA in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Clinic name in the CA's subject (default: [portal] clinic_name of --config).
        #[arg(long)]
        clinic: Option<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the DNS names a portal CA certificate may certify: its permitted subtrees, one a
    /// line, then `except NAME` for each excluded subtree inside them.
    Constraints {
        /// The CA certificate (PEM).
        cert: PathBuf,
    },
}

pub fn run(a: Args) -> ExitCode {
    let r = match a {
        Args::Ca {
            out,
            policy,
            config,
            days,
            clinic,
            force,
        } => make(&out, policy, config, days, clinic, force),
        Args::Constraints { cert } => constraints(&cert),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn make(
    out: &Path,
    policy: Option<PathBuf>,
    config: Option<PathBuf>,
    days: u32,
    clinic: Option<String>,
    force: bool,
) -> Result<(), String> {
    let conf = super::load_config(config.as_deref())?;
    let dir = policy
        .or_else(|| {
            conf.as_ref()
                .and_then(|c| c.policy.as_ref().map(|p| p.dir.clone()))
        })
        .ok_or("give --policy DIR (the policy directory) or --config FILE with a [policy] dir")?;
    let clinic = clinic
        .or_else(|| {
            conf.as_ref()
                .and_then(|c| c.portal.as_ref().map(|p| p.clinic_name.clone()))
        })
        .unwrap_or_else(|| "the clinic".into());
    let scope = ca::policy_scope(&dir)?;
    let (cert, key) = ca::make_ca_for(&scope, days, &clinic)?;
    std::fs::create_dir_all(out)
        .map_err(|e| format!("{}: cannot create the directory: {e}", out.display()))?;
    let cert_p = out.join("portal-ca.pem");
    let key_p = out.join("portal-ca.key");
    if !force && (cert_p.exists() || key_p.exists()) {
        return Err(format!(
            "{} already holds a portal CA; workstations may trust it. Give --force to replace it (then install the new portal-ca.pem everywhere)",
            out.display()
        ));
    }
    write(&key_p, key.as_bytes(), 0o600)?;
    write(&cert_p, cert.as_bytes(), 0o644)?;
    super::out::print_with(|w| {
        writeln!(
            w,
            "portal CA written: {} (certificate) and {} (key, mode 0600)",
            cert_p.display(),
            key_p.display()
        )?;
        writeln!(
            w,
            "it may certify {} domain subtrees that rules in {} steer or coach, except {} inside them, never the approved route, enterprise AI APIs or DNS resolvers, and no IP address (list them with `shadowgate portal constraints {}`)",
            scope.permitted.len(),
            dir.display(),
            scope.excluded.len(),
            cert_p.display()
        )?;
        for warn in &scope.warnings {
            writeln!(w, "warning: {warn}")?;
        }
        writeln!(
            w,
            "next: give the key to the daemon's user (it refuses a key others or its group can read):"
        )?;
        writeln!(
            w,
            "  chown shadowgate:shadowgate {k} && chmod 0600 {k}",
            k = key_p.display()
        )?;
        writeln!(w, "in the configuration's [portal] set")?;
        writeln!(w, "  ca_cert = \"{}\"", cert_p.display())?;
        writeln!(w, "  ca_key = \"{}\"", key_p.display())?;
        writeln!(
            w,
            "and install portal-ca.pem as a trusted root on the clinic's workstations."
        )?;
        writeln!(
            w,
            "The constraints are fixed in this CA: when rules steer or coach new domains, make a new one. The daemon refuses it if the policy comes to steer less than it covers."
        )
    })
}

fn write(p: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    let mut f = o
        .open(p)
        .map_err(|e| format!("{}: cannot write: {e}", p.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: cannot set its mode: {e}", p.display()))?;
    }
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: cannot write: {e}", p.display()))
}

fn constraints(cert: &Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert)
        .map_err(|e| format!("{}: not a PEM certificate ({e})", cert.display()))?;
    let (names, excluded) =
        ca::dns_constraints(&der).map_err(|e| format!("{}: {e}", cert.display()))?;
    if names.is_empty() {
        return Err(format!(
            "{}: no DNS name constraints: this CA can certify any site; do not use it as a portal CA",
            cert.display()
        ));
    }
    super::out::print_with(|w| {
        names.iter().try_for_each(|n| writeln!(w, "{n}"))?;
        excluded.iter().try_for_each(|n| writeln!(w, "except {n}"))
    })
}
