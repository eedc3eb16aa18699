//! The portal CA: readable (the key private to the daemon's user), valid now, name-constrained,
//! no wider than the policy allows; and the steered names it cannot certify (their pages show a
//! certificate warning instead of the portal).

use std::path::Path;
use std::time::Duration;

use super::Finding;
use crate::config::Config;
use crate::policy::Policy;
use crate::portal::ca::{self, PortalCa};

/// Days of validity left below which the CA is a warning.
const RENEW_DAYS: i64 = 30;

pub fn check(c: &Config, policy: Option<&Policy>) -> Vec<Finding> {
    let Some(p) = &c.portal else {
        return Vec::new();
    };
    let (cert, key) = match (&p.ca_cert, &p.ca_key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            return vec![Finding::ok(
                "portal-ca",
                "no [portal] ca_cert/ca_key: the portal serves HTTP only (steered HTTPS names show the browser's error, not the portal)",
            )]
        }
        _ => {
            return vec![Finding::error(
                "portal-ca",
                "[portal] sets only one of ca_cert and ca_key",
                "set both (or neither: then HTTP only)",
            )]
        }
    };
    let policy_dir = c
        .policy
        .as_ref()
        .map(|p| p.dir.as_path())
        .unwrap_or(Path::new("/etc/shadowgate/policies"));
    let remake = ca::new_ca_command(policy_dir, cert, key, &p.clinic_name);
    let loaded = PortalCa::load(cert, key, Duration::from_secs(3600), 1);
    let ca = match loaded {
        Ok(ca) => ca,
        Err(e) => {
            let missing = !cert.exists() || !key.exists();
            return vec![Finding::error(
                "portal-ca",
                e,
                if missing {
                    format!("make the CA: {remake}")
                } else {
                    format!("fix the file as said, or make a new CA: {remake}")
                },
            )];
        }
    };
    let mut out = Vec::new();
    match validity_days_left(ca.ca_der()) {
        Some(d) if d < 0 => out.push(Finding::error(
            "portal-ca",
            format!("{}: expired {} days ago", cert.display(), -d),
            format!("make a new CA and install it on the workstations: {remake}"),
        )),
        Some(d) if d < RENEW_DAYS => out.push(Finding::warn(
            "portal-ca",
            format!("{}: expires in {d} days", cert.display()),
            format!("make a new CA and install it on the workstations before then: {remake}"),
        )),
        Some(_) => {}
        None => out.push(Finding::error(
            "portal-ca",
            format!("{}: cannot read its validity", cert.display()),
            format!("make a new CA: {remake}"),
        )),
    }
    let (perm, excl) = ca.constraints();
    out.push(Finding::ok(
        "portal-ca",
        format!(
            "{}: loads; name constraints permit {} subtree{} ({}), exclude {}",
            cert.display(),
            perm.len(),
            if perm.len() == 1 { "" } else { "s" },
            perm.join(", "),
            excl.len()
        ),
    ));
    let Some(policy) = policy else {
        return out;
    };
    let scope = policy.portal_scope();
    if let Err(e) = ca.fits(&scope, cert, &remake) {
        out.push(Finding::error(
            "portal-ca",
            e,
            format!("the daemon refuses this CA: {remake}"),
        ));
    }
    let cannot = policy.uncertifiable(&scope, perm, excl);
    if !cannot.is_empty() {
        out.push(Finding::warn(
            "portal-ca",
            format!(
                "the CA cannot certify {} steered name{}: {} (clients see a certificate warning there, not the portal)",
                cannot.len(),
                if cannot.len() == 1 { "" } else { "s" },
                cannot.join(", ")
            ),
            format!("make a CA for the current policy and install it on the workstations: {remake}"),
        ));
    }
    out
}

/// Days until the certificate's notAfter (negative: expired), or None if it does not parse or
/// is not valid yet.
fn validity_days_left(der: &[u8]) -> Option<i64> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let v = x.validity();
    if v.not_before.timestamp() > now {
        return None;
    }
    Some((v.not_after.timestamp() - now).div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_of_a_fresh_ca() {
        let (pem, _) = ca::make_ca(&["example.com".into()], &[], 90, "t").unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let d = validity_days_left(&der).unwrap();
        assert!((88..=90).contains(&d), "{d}");
        assert_eq!(validity_days_left(b"junk"), None);
    }
}
